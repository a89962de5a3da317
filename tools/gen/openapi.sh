#!/usr/bin/env bash
# OpenAPI v2 (Swagger) from the google.api.http rules: one merged document,
# gen/openapi/godel.swagger.json (protoc-gen-openapiv2, options in
# buf.gen.openapi.yaml and gen/openapi/openapiv2.config.yaml, which is hand-written
# and kept). Installs the pinned plugin into .cache/bin when the one on PATH / in
# $(go env GOPATH)/bin is missing or differs. Validate with tools/gen/check-openapi.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

PLUGINS=(
  "protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0"
)

export PATH="$ROOT/.cache/bin:$(go env GOPATH)/bin:$ROOT/.venv/bin:$PATH"

# ensure_go_plugin BIN PKG@VERSION: keep BIN from PATH if `go version -m` says it
# was built from exactly VERSION, else `go install` it into .cache/bin (first on PATH).
ensure_go_plugin() {
  local bin=$1 pkg=$2 want=${2##*@} path have=""
  path=$(command -v "$bin" || true)
  if [[ -n $path ]]; then
    have=$(go version -m "$path" 2>/dev/null | awk '$1 == "mod" { print $3; exit }' || true)
  fi
  if [[ $have != "$want" ]]; then
    echo "openapi.sh: installing $pkg into .cache/bin (found: ${path:-none} ${have})" >&2
    GOBIN="$ROOT/.cache/bin" go install "$pkg"
  fi
}
for p in "${PLUGINS[@]}"; do ensure_go_plugin $p; done

rm -f gen/openapi/*.swagger.json
buf generate --template buf.gen.openapi.yaml

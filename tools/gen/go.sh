#!/usr/bin/env bash
# Go messages (protoc-gen-go) and grpc stubs (protoc-gen-go-grpc) into gen/go, the
# Go module github.com/godel-ai/godel/gen/go (go.mod/go.sum are kept; only the
# generated gen/go/godel tree is replaced). Installs the pinned plugins into
# .cache/bin when the ones on PATH / in $(go env GOPATH)/bin are missing or differ.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

# Pinned plugin versions. protoc-gen-go must match google.golang.org/protobuf in
# gen/go/go.mod (generated code asserts the runtime is at least that version).
PLUGINS=(
  "protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12"
  "protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2"
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
    echo "go.sh: installing $pkg into .cache/bin (found: ${path:-none} ${have})" >&2
    GOBIN="$ROOT/.cache/bin" go install "$pkg"
  fi
}
for p in "${PLUGINS[@]}"; do ensure_go_plugin $p; done

rm -rf gen/go/godel
buf generate --template buf.gen.go.yaml

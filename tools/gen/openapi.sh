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

for p in "${PLUGINS[@]}"; do tools/go-tool.sh $p >/dev/null; done

rm -f gen/openapi/*.swagger.json
buf generate --template buf.gen.openapi.yaml

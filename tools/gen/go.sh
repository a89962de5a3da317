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

for p in "${PLUGINS[@]}"; do tools/go-tool.sh $p >/dev/null; done

rm -rf gen/go/godel
buf generate --template buf.gen.go.yaml

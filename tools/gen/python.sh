#!/usr/bin/env bash
# Python messages, grpc stubs and mypy stubs into gen/python.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf gen/python/godel
buf generate --template buf.gen.python.yaml 2>/dev/null
# PEP 561: the generated .pyi stubs are the package's types (shipped in the godel-client wheel).
touch gen/python/godel/v1/py.typed

#!/usr/bin/env bash
# TypeScript (protobuf-es v2, @bufbuild/protoc-gen-es) into gen/ts, the npm package
# @godel/gen: godel/v1 plus the vendored google/api + google/rpc protos. The plugin
# is the one pinned in gen/ts/package-lock.json; `npm ci` runs when gen/ts/node_modules
# is missing or older than the lockfile. Type-check with tools/gen/check-ts.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"

if [[ ! -x gen/ts/node_modules/.bin/protoc-gen-es \
   || gen/ts/package-lock.json -nt gen/ts/node_modules/.package-lock.json ]]; then
  (cd gen/ts && npm ci --no-audit --no-fund)
fi

rm -rf gen/ts/godel gen/ts/google
buf generate --template buf.gen.ts.yaml

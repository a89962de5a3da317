#!/usr/bin/env bash
# go-tool.sh BIN PKG@VERSION [GO-INSTALL-FLAGS...]: prints the path of the Go tool BIN built from
# exactly VERSION (the flags, e.g. -tags, are passed to `go install` when it has to build).
# Keeps the one on PATH (or in .cache/bin, $(go env GOPATH)/bin) when `go version -m` says it
# was built from VERSION, else `go install`s it into .cache/bin (git-ignored) from the Go
# module proxy. Used by tools/gen/{go,openapi}.sh and by the tests that run grpcurl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bin=$1 pkg=$2 want=${2##*@}
shift 2
export PATH="$ROOT/.cache/bin:$(go env GOPATH)/bin:$PATH"
path=$(command -v "$bin" || true)
have=""
if [[ -n $path ]]; then
  have=$(go version -m "$path" 2>/dev/null | awk '$1 == "mod" { print $3; exit }' || true)
fi
if [[ $have != "$want" ]]; then
  echo "go-tool.sh: installing $pkg into .cache/bin (found: ${path:-none} ${have})" >&2
  GOBIN="$ROOT/.cache/bin" go install "$@" "$pkg"
  path=$ROOT/.cache/bin/$bin
fi
echo "$path"

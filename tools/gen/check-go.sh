#!/usr/bin/env bash
# go build + go vet of the generated module (gen/go) and of the Go client (clients/go,
# which uses gen/go through a replace directive). Binaries are discarded.
set -euo pipefail
cd "$(dirname "$0")/../.."
for mod in gen/go clients/go; do
  (cd "$mod" && go build -o /dev/null ./... && go vet ./...)
done

#!/usr/bin/env bash
# tsc --strict --noEmit of the generated package (gen/ts) and of the TS client's examples
# (clients/ts), and the build of the npm package @godel-ai/client (clients/ts/src -> dist, strict
# tsc with .d.ts). Runs `npm ci` where node_modules is missing or older than the lockfile.
# (From the repo root, plain `npx tsc` would NOT find TypeScript: there is no root
# package.json, and npx would offer the unrelated `tsc` package instead.)
set -euo pipefail
cd "$(dirname "$0")/../.."
for pkg in gen/ts clients/ts; do
  if [[ ! -x $pkg/node_modules/.bin/tsc || $pkg/package-lock.json -nt $pkg/node_modules/.package-lock.json ]]; then
    (cd "$pkg" && npm ci --no-audit --no-fund)
  fi
  "$pkg/node_modules/.bin/tsc" --strict --noEmit -p "$pkg"
done
(cd clients/ts && npm run --silent build)

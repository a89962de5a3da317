#!/usr/bin/env bash
# Builds the web console (console/ -> console/dist, served by the gateway under /ui/): first the
# TypeScript client it uses (clients/ts, from gen/ts), then the console with Vite. Dependencies
# come from the npm registry at the exact versions of each package-lock.json (`npm ci`, run again
# only when a lock file changed).
set -euo pipefail
cd "$(dirname "$0")/../.."

install() {  # npm ci in $1 unless its node_modules already matches its package-lock.json
  if [[ ! -f "$1/node_modules/.package-lock.json" || "$1/package-lock.json" -nt "$1/node_modules/.package-lock.json" ]]; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

install clients/ts
# The client's dist/ is rebuilt only when it is older than its sources or the generated code.
stamp=clients/ts/dist/index.js
if [[ ! -f $stamp ]] || [[ -n "$(find clients/ts/src gen/ts/godel clients/ts/package-lock.json -path clients/ts/src/gen -prune -o -type f -newer "$stamp" -print -quit)" ]]; then
  (cd clients/ts && node scripts/build.mjs)
fi
install console
(cd console && npm run --silent build -- --logLevel warn)
echo "console built: console/dist (served at /ui/ by the gateway)"

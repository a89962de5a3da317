#!/usr/bin/env bash
# Creates deploy/compose/secrets/: the PostgreSQL password and the API keys of a compose
# deployment (admin, team-service, cluster-service, agent-service, worker), mode 600. Existing
# files are kept.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
key() { python3 -c 'import secrets; print("godel_sk_" + secrets.token_urlsafe(32))'; }
[[ -s secrets/postgres-password ]] || python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > secrets/postgres-password
for name in admin team-service cluster-service agent-service worker; do
  [[ -s secrets/$name.key ]] || key > "secrets/$name.key"
done
echo "secrets in $(pwd)/secrets (the admin key: secrets/admin.key)"

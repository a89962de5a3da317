#!/usr/bin/env bash
# Validates gen/openapi/godel.swagger.json (Swagger 2.0) with openapi-spec-validator
# (PyPI; installed in .venv). Override the interpreter with PYTHON=...;
# without .venv it falls back to python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -m openapi_spec_validator gen/openapi/godel.swagger.json

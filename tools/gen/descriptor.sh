#!/usr/bin/env bash
# Descriptor set for Envoy's grpc_json_transcoder (includes google/rpc/* so error
# details survive transcoding).
set -euo pipefail
cd "$(dirname "$0")/../.."
buf build --as-file-descriptor-set --exclude-source-info -o gateway/godel.pb

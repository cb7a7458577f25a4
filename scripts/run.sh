#!/usr/bin/env bash
# Installs dependencies, builds, and runs tailord on the embedded default: RocksDB in
# ./tailor-data, the built-in PersonalLLM schema, gRPC on :50051, metrics on :9464.
# Extra arguments go to tailord, e.g. scripts/run.sh --listen=127.0.0.1:6000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
exec build/bin/tailord "$@"

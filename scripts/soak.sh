#!/usr/bin/env bash
# The soak test (bench/soak.py): mixed traffic against one tailord for a bounded time, with
# RSS, open fds, data-directory size and latency sampled every 30 s and their slopes
# reported. Not part of scripts/test.sh (10 minutes by default).
#   scripts/soak.sh                        10 minutes
#   scripts/soak.sh --minutes=2 --out=soak.md
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bin/tailord ] || scripts/build.sh
exec scripts/python.sh bench/soak.py "$@"

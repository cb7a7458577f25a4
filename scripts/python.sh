#!/usr/bin/env bash
# Runs Python with an interpreter that has Debian's python3-grpcio and python3-protobuf.
# On some machines the python3 first on PATH is another installation without them, so
# /usr/bin/python3 (Debian's) is preferred, then whatever python3 is on PATH.
set -euo pipefail
for candidate in /usr/bin/python3 "$(command -v python3 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] &&
     "$candidate" -c 'import grpc, google.protobuf' 2>/dev/null; then
    exec "$candidate" "$@"
  fi
done
echo "python.sh: no python3 with grpc and protobuf; run scripts/install-deps.sh" >&2
exit 1

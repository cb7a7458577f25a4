#!/bin/sh
# A local three-node NATS JetStream cluster (Debian's nats-server) for cluster mode's
# benchmarks and for trying cluster mode by hand, on loopback:
#
#   scripts/nats-cluster.sh DIR -- COMMAND...   runs COMMAND with NATS_URL set, then stops
#                                               the cluster and removes DIR
#
# Clients ports 4222-4224 (override with NATS_BASE_PORT), routes on the ports 2000 above.
set -eu
if [ $# -lt 3 ] || [ "$2" != "--" ]; then
  echo "usage: $0 DIR -- COMMAND..." >&2
  exit 64
fi
dir=$1
shift 2
base=${NATS_BASE_PORT:-4222}
mkdir -p "$dir"
routes=""
for i in 0 1 2; do
  routes="$routes${routes:+,}nats://127.0.0.1:$((base + 2000 + i))"
done
pids=""
stop() {
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  for pid in $pids; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap stop EXIT INT TERM
for i in 0 1 2; do
  nats-server -a 127.0.0.1 -p $((base + i)) -js -sd "$dir/n$i" -n "n$i" --cluster_name tailor \
    --cluster "nats://127.0.0.1:$((base + 2000 + i))" --routes "$routes" >"$dir/n$i.log" 2>&1 &
  pids="$pids $!"
done
NATS_URL="nats://127.0.0.1:$base,nats://127.0.0.1:$((base + 1)),nats://127.0.0.1:$((base + 2))"
export NATS_URL
# The servers elect their JetStream meta leader within a few seconds; the commands retry
# meanwhile (tailord waits --cluster_join_timeout_s).
sleep 1
"$@"

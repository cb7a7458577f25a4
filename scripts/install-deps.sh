#!/usr/bin/env bash
# Installs everything Tailor needs from Debian bookworm packages. Idempotent: packages that
# are already installed are skipped, and apt is only updated when something is missing.
#   scripts/install-deps.sh            build + test dependencies (developers, CI, Docker build)
#   scripts/install-deps.sh --build    only what building needs (Docker build stage)
#   scripts/install-deps.sh --runtime  only the shared libraries tailord needs (Docker runtime)
set -euo pipefail

build_packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libeigen3-dev librocksdb-dev prometheus-cpp-dev libhnswlib-dev
  libgtest-dev libgmock-dev clang-format libnats-dev
)
# Real components the tests start: Prometheus (promtool), nginx, openssl for test
# certificates, nats-server (JetStream) for cluster mode, and Debian's Python with gRPC for
# the Python client.
test_packages=(
  prometheus nginx-light openssl procps python3-yaml
  python3 python3-grpcio python3-protobuf python3-numpy
  clang-14 libfuzzer-14-dev nats-server
)
runtime_packages=(
  libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 librocksdb7.8
  libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 ca-certificates
)

case "${1:-}" in
  --runtime) wanted=("${runtime_packages[@]}") ;;
  --build) wanted=("${build_packages[@]}") ;;
  "") wanted=("${build_packages[@]}" "${test_packages[@]}") ;;
  *) echo "usage: $0 [--build|--runtime]" >&2; exit 64 ;;
esac

# Node.js and npm check the Kubernetes manifests (tests/deploy/k8s-schemas): the machine's own
# if it has them, else Debian's.
if [ -z "${1:-}" ] && ! command -v npm >/dev/null; then
  wanted+=(nodejs npm)
fi

missing=()
for package in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#wanted[@]} packages present"
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Kubernetes schemas and the manifest checker's other npm packages, at the versions of
# its package-lock.json (from the npm registry).
if [ -z "${1:-}" ]; then
  k8s_checks="$(dirname "$0")/../tests/deploy/k8s-schemas"
  if [ ! -d "$k8s_checks/node_modules" ] ||
     [ "$k8s_checks/package-lock.json" -nt "$k8s_checks/node_modules" ]; then
    echo "install-deps: npm ci in tests/deploy/k8s-schemas"
    (cd "$k8s_checks" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

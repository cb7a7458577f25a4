#!/usr/bin/env bash
# Configures and builds Tailor into build/ (or $TAILOR_BUILD_DIR). Extra arguments go to
# CMake, e.g. scripts/build.sh -DTAILOR_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${TAILOR_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-RelWithDebInfo}" "$@"
cmake --build "$build_dir" -j "$(nproc)"

#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang-14 + ASan + UBSan in build-fuzz/ and
# runs each for a bounded time from its seed corpus (tests/fuzz/corpus/<target>/). Fails if
# any target crashes; the crashing input is left in build-fuzz/crashes/.
#   scripts/fuzz.sh              60 s per target (what scripts/test.sh runs)
#   scripts/fuzz.sh 3600         an hour per target
#   scripts/fuzz.sh 600 fuzz_request   one target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuzz_request fuzz_storage_records fuzz_text_inputs)
fi

# Line tables (-g1) are all a crash report needs.
CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DTAILOR_FUZZ=ON > /dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]}"

mkdir -p build-fuzz/crashes
for target in "${targets[@]}"; do
  corpus="build-fuzz/corpus/$target"  # grows across runs; the seeds stay in the repo
  mkdir -p "$corpus"
  echo "== $target: ${seconds} s"
  if ! build-fuzz/bin/"$target" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix=build-fuzz/crashes/"$target"- "$corpus" "tests/fuzz/corpus/$target" \
      > "build-fuzz/$target.log" 2>&1; then
    tail -n 60 "build-fuzz/$target.log"
    echo "fuzz.sh: $target found a crash; input in build-fuzz/crashes/" >&2
    exit 1
  fi
  grep -E "^(Done|stat::number_of_executed_units)" "build-fuzz/$target.log" || true
done
echo "== fuzzing: no crashes"

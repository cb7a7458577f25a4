// MemoryBenchmark: the engine's in-memory footprint per user, measured as the heap growth of
// loading a database of N users at startup (glibc mallinfo2). The slope between two sizes
// cancels fixed costs (RocksDB's caches and table readers, thread stacks).
#ifndef TAILOR_BENCH_MEMORY_BENCHMARK_H_
#define TAILOR_BENCH_MEMORY_BENCHMARK_H_

#include "absl/status/statusor.h"

namespace tailor::bench {

struct MemoryResult {
  int dimension = 0;
  int users_small = 0;
  int users_large = 0;
  // Heap bytes per user for users past the neighbour hand-over (posterior only) ...
  double bytes_per_established_user = 0;
  // ... and for cold users with `cold_pairs` pairs, whose pairs are kept for cold start.
  int cold_pairs = 0;
  double bytes_per_cold_user = 0;
  double load_seconds_large = 0;  // startup time with users_large established users
};

absl::StatusOr<MemoryResult> MeasureMemoryPerUser(int dimension, int users_small, int users_large,
                                                  int cold_pairs);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_MEMORY_BENCHMARK_H_

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
  double load_seconds_large = 0;     // engine open with users_large established users, of which
  double refresh_seconds_large = 0;  // the full refresh (reference set, population, index)
};

// Engine-only RankResponses latency (8 candidates) at dimension d: warm users (a learned
// state past the neighbour hand-over) and cold users (`cold_pairs` pairs, blended with the
// `established` users as neighbours; the blend is cached, as in serving).
struct RankLatency {
  int dimension = 0;
  double warm_p50_us = 0, warm_p99_us = 0;
  double cold_p50_us = 0, cold_p99_us = 0;
};
absl::StatusOr<RankLatency> MeasureRankLatency(int d, int established, int cold_users,
                                               int cold_pairs, int calls);

absl::StatusOr<MemoryResult> MeasureMemoryPerUser(int dimension, int users_small, int users_large,
                                                  int cold_pairs);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_MEMORY_BENCHMARK_H_

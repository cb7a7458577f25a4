// ClusterBenchmark: what cluster mode costs ingestion, and how long a lost shard takes to
// rebuild. In-process, against a NATS JetStream cluster the caller runs
// (scripts/nats-cluster.sh starts three local servers): the same events are recorded by a
// single node (engine + RocksDB) and, in the same run, by a cluster shard (each event appended
// to the replicated log, then applied), from the same number of writer threads. Then the
// shard's data directory is deleted and the shard started again: it replays its partitions.
// The run uses a stream and KV bucket of its own (TAILOR_BENCH_<pid>), deleted at the end.
#ifndef TAILOR_BENCH_CLUSTER_BENCHMARK_H_
#define TAILOR_BENCH_CLUSTER_BENCHMARK_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tailor::bench {

struct ClusterBenchOptions {
  std::string nats;  // comma-separated URLs
  int replicas = 3;
  int partitions = 64;
  int users = 2000;
  int events = 20000;
  int threads = 8;
  uint64_t seed = 1;
};

struct ClusterBenchResult {
  double single_node_seconds = 0;
  double cluster_seconds = 0;
  double append_p50_seconds = 0;  // from the shard's append latency histogram (upper bounds)
  double append_p99_seconds = 0;
  double rebuild_seconds = 0;  // from an empty data directory to serving every partition
  uint64_t rebuilt_events = 0;
};

absl::StatusOr<ClusterBenchResult> RunClusterBenchmark(const ClusterBenchOptions& options);
std::string ClusterMarkdown(const ClusterBenchOptions& options, const ClusterBenchResult& result);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_CLUSTER_BENCHMARK_H_

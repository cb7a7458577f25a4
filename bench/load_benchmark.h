// LoadBenchmark: Tailor's serving and ingestion cost on a realistic population, against
// baselines measured in the same run.
//  - The population: --established_users users with 16 pairs each (every one established and
//    in the neighbour reference set, through the HNSW index at 100,000) and --veteran_users
//    past the 128-pair neighbour hand-over, streamed in first; the server then restarts with
//    --refresh_ms=0 so the measured runs see one fixed, fully built knowledge.
//  - StreamFeedback ingestion (durable acks) per class of user — new users (no pairs yet),
//    users inside the hand-over, users past it — and all three mixed, at the default
//    durability and with --sync, against raw RocksDB WriteBatches of the same bytes in this
//    process with as many writers as streams.
//  - RankResponses (8 candidates, d = the schema's) through tailord against an echo server
//    (bench/echo_server.h, its own process) with the same messages: throughput and latency
//    ratios at saturation (closed loop), latency at half of Tailor's saturation (open loop)
//    with the server-side p99 from tailord's own histogram. Unpinned (generator and server
//    share every CPU) and pinned (generator on the lower half of the CPUs, server on the
//    upper half), each with its own echo baseline.
#ifndef TAILOR_BENCH_LOAD_BENCHMARK_H_
#define TAILOR_BENCH_LOAD_BENCHMARK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/load_generator.h"

namespace tailor::bench {

struct LoadBenchmarkOptions {
  std::string tailord_binary;
  std::string bench_binary;  // tailor-bench itself: runs the echo server as its own process
  LoadOptions load;
  int established_users = 100000;          // 16 pairs each: established, inside the hand-over
  int veteran_users = 2000;                // 128 pairs each: past the hand-over
  int class_users = 4000;                  // users in each measured class (and durability)
  int class_pairs = 8;                     // events per user in a measured class
  int ingest_streams = 32;                 // concurrent StreamFeedback calls
  bool include_sync = true;                // also measure ingestion with tailord --sync
  bool pinned = true;                      // also measure serving pinned (needs two CPUs)
  std::vector<std::string> tailord_flags;  // extra flags for every tailord
  uint64_t seed = 1;
};

struct PopulationReport {
  uint64_t events = 0;
  double seconds = 0;          // streaming them in (knowledge refreshed every 30 s meanwhile)
  double restart_seconds = 0;  // to SERVING with the full refresh (reference set and index)
  uint64_t reference_users = 0;
  double compaction_wait_seconds = 0;  // until RocksDB had compacted it, after the restart
};

struct IngestionRow {
  std::string durability;  // "wal" or "wal+fsync"
  std::string users;       // the class
  uint64_t events = 0;
  double tailor_events_per_second = 0;
  double raw_batches_per_second = 0;
  double server_cpu_us_per_event = 0;  // tailord's user + system CPU time over the run
};

struct ServingRun {
  std::string placement;  // "unpinned" or which CPUs each side had
  LoadResult echo;
  LoadResult tailor;
  LoadResult tailor_half;         // open loop at half of tailor.throughput
  double server_p99_half_us = 0;  // tailord's histogram over the open-loop run (bucket bound)
};

struct LoadReport {
  LoadBenchmarkOptions options;
  int dimension = 0;
  PopulationReport population;
  std::vector<IngestionRow> ingestion;
  size_t batch_bytes = 0;  // bytes of one feedback commit (keys + values)
  std::vector<ServingRun> serving;
};

absl::StatusOr<LoadReport> RunLoadBenchmark(const LoadBenchmarkOptions& options);
std::string LoadMarkdown(const LoadReport& report);

// `tailor-bench echo-server`: serves the echo baseline on `address` in this process until
// killed, logging tailord's startup line so that TailordProcess can run it.
int RunEchoServerProcess(const std::string& address);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_LOAD_BENCHMARK_H_

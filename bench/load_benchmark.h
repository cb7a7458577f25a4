// LoadBenchmark: Tailor's serving cost against baselines measured in the same run.
//  - RankResponses (8 candidates, d = 10, warm users) through a live tailord vs the echo
//    server (bench/echo_server.h) with the same messages: throughput and latency ratios, at
//    saturation (closed loop), and latency at half of Tailor's saturation (open loop), with
//    the server-side p99 read from tailord's own latency histogram.
//  - StreamFeedback ingestion (durable acks) at the default durability and with --sync, vs raw
//    RocksDB WriteBatches of the same bytes in this process with as many writers as streams.
#ifndef TAILOR_BENCH_LOAD_BENCHMARK_H_
#define TAILOR_BENCH_LOAD_BENCHMARK_H_

#include <string>

#include "absl/status/statusor.h"
#include "bench/load_generator.h"

namespace tailor::bench {

struct LoadBenchmarkOptions {
  std::string tailord_binary;
  LoadOptions load;
  int users = 2000;          // warm users: each streams `pairs` events first (the ingestion run)
  int pairs = 20;            // > 16, so every user is established
  int ingest_streams = 32;   // concurrent StreamFeedback calls during ingestion
  bool include_sync = true;  // also measure ingestion with tailord --sync
  uint64_t seed = 1;
};

struct IngestionRow {
  std::string durability;  // "wal" or "wal+fsync"
  uint64_t events = 0;
  double tailor_events_per_second = 0;
  double raw_batches_per_second = 0;
};

struct LoadReport {
  LoadOptions load;
  LoadResult echo;
  LoadResult tailor;
  LoadResult tailor_half;         // open loop at half of tailor.throughput
  double server_p99_half_us = 0;  // tailord's histogram over the open-loop run (bucket bound)
  std::vector<IngestionRow> ingestion;
  size_t batch_bytes = 0;  // bytes of one feedback commit (keys + values)
};

absl::StatusOr<LoadReport> RunLoadBenchmark(const LoadBenchmarkOptions& options);
std::string LoadMarkdown(const LoadReport& report);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_LOAD_BENCHMARK_H_

// RefreshBenchmark: what a knowledge refresh costs the neighbour reference set and its HNSW
// graph when a little has changed, against building the graph anew over the same set in the
// same run, and whether the graph changed in place still finds the nearest users as well as a
// new one. In-process, on the engine's ReferencePool (engine/reference_pool.h) with the
// engine's default options, over synthetic PersonalLLM-style established users (d = 10).
#ifndef TAILOR_BENCH_REFRESH_BENCHMARK_H_
#define TAILOR_BENCH_REFRESH_BENCHMARK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "engine/reference_pool.h"

namespace tailor::bench {

struct RefreshOptions {
  int users = 1000000;
  int rounds = 3;
  // Per round, as shares of the users: estimates that change, users who arrive, users who go.
  double moved = 0.01;
  double added = 0.005;
  double removed = 0.001;
  int queries = 200;  // searches per round for recall against the exact nearest users
  engine::ReferencePoolOptions pool;
  uint64_t seed = 1;
};

struct RefreshRound {
  engine::ReferenceChanges changes;
  double offer_seconds = 0;    // Offer for every user and Update (the new reference set)
  double index_seconds = 0;    // Index: the graph changed in place
  double rebuild_seconds = 0;  // baseline: a new graph over the same set
  // Share of the exact `near` nearest users (whitened) that a search returns.
  double recall_changed = 0;
  double recall_rebuilt = 0;
};

struct RefreshResult {
  int users = 0;
  double first_offer_seconds = 0;
  double first_index_seconds = 0;  // the first graph, built from scratch
  // Heap bytes per reference user held by the pool after the first refresh: the published
  // set (vectors, ids), the id -> row map, and the graph.
  double heap_bytes_per_user = 0;
  std::vector<RefreshRound> rounds;
};

RefreshResult RunRefreshBenchmark(const RefreshOptions& options);
std::string RefreshMarkdown(const RefreshOptions& options, const RefreshResult& result);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_REFRESH_BENCHMARK_H_

// ColdStartBenchmark: the neighbour lookup a cold user's ranking costs, exact scan against the
// HNSW index, on synthetic populations of established users (PersonalLLM-style Dirichlet
// users over d = 10 reward models), and the accuracy the approximation costs. In-process,
// single-threaded, one lookup at a time: the latency of one ranking's neighbour step.
#ifndef TAILOR_BENCH_COLDSTART_BENCHMARK_H_
#define TAILOR_BENCH_COLDSTART_BENCHMARK_H_

#include <string>
#include <vector>

#include "model/neighbour_index.h"

namespace tailor::bench {

struct ColdStartOptions {
  std::vector<int> populations = {10000, 100000, 1000000};
  std::vector<int> ks = {4, 8, 32};  // pairs the cold user has given
  int queries = 200;                 // cold users per (population, k) through the index
  // The exact scan is timed on fewer users when the population is large: at most this many
  // user-pair products per (population, k), and never fewer than `min_exact_queries` users.
  double exact_budget = 4e8;
  int min_exact_queries = 20;
  int eval_prompts = 50;  // held-out prompts per cold user for top-1
  int build_threads = 2;
  model::NeighbourIndexOptions index;
  uint64_t seed = 1;
};

struct ColdStartRow {
  int population = 0;
  int k = 0;
  double build_seconds = 0;  // HNSW build for this population (same for every k)
  int exact_queries = 0;
  int index_queries = 0;
  double exact_p50_us = 0, exact_p99_us = 0;
  double index_p50_us = 0, index_p99_us = 0;
  // A live cold user's k-th pair: their neighbour track (model/neighbour_track.h) extended by
  // it (choosing its near rows again when k is a power of two from 4 on) and mixed.
  double next_pair_p50_us = 0, next_pair_p99_us = 0;
  // On the users both were run for: share of prompts where both pick the same response, and
  // each one's top-1 against the user's true favourite.
  double agreement = 0;
  double exact_top1 = 0, index_top1 = 0;
};

std::vector<ColdStartRow> RunColdStartBenchmark(const ColdStartOptions& options);
std::string ColdStartMarkdown(const std::vector<ColdStartRow>& rows);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_COLDSTART_BENCHMARK_H_

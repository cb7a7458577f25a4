// Schema change scenarios of `tailor-bench quality` (--scenario=add_feature|remove_feature):
// what a reward model that arrives or is retired costs the users, through live tailord
// servers. Simulated users weigh every reward model of the catalogue; before the change the
// schema has `old` features, after it `new` ones. A historical population and the test users
// give pairs under the old schema; then the data directory changes schema (tailord restarted
// with --evolve_schema) and the test users go on giving pairs under the new one. Measured on
// held-out prompts, per test user (means ± standard errors over users), against baselines in
// the same run: starting over on a new data directory with the new schema (what a schema
// change cost before evolution: every history thrown away), keeping the old schema (not
// adopting the change), the new server's population prior, and the oracle.
#ifndef TAILOR_BENCH_SCHEMA_CHANGE_BENCHMARK_H_
#define TAILOR_BENCH_SCHEMA_CHANGE_BENCHMARK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/replay_benchmark.h"
#include "bench/synthetic_catalogue.h"

namespace tailor::bench {

struct SchemaChangeOptions {
  std::string tailord_binary;
  // "add_feature": the catalogue's last reward model arrives; "remove_feature": its first is
  // retired.
  std::string scenario = "add_feature";
  int historical_users = 2000;
  int min_pairs = 25;
  int max_pairs = 50;
  int test_users = 100;
  int history_pairs = 24;  // each test user's pairs before the change
  // Pairs each test user gives after the change, cumulative (measured after each).
  std::vector<int> ks = {0, 4, 8, 16, 32};
  // Pairs each historical user gives after the change (they teach the population the new
  // reward model).
  int historical_pairs_after = 8;
  int eval_prompts = 50;
  double alpha = 0.05;
  double train_fraction = 0.75;
  uint64_t seed = 1;
  int threads = 4;
  bool progress = true;
};

struct SchemaChangeRow {
  std::string stage;  // "before the change", "at restart", "after k pairs"
  int k = -1;         // pairs since the change (-1: before it)
  // Pairwise accuracy and top-1 of: the evolved directory; starting over; the old schema kept;
  // the population; the oracle (means ± standard errors over users). Methods absent at a stage
  // (before the change) have n = 0.
  MeanSe evolved_pairwise, evolved_top1;
  MeanSe started_over_pairwise, started_over_top1;
  MeanSe kept_pairwise, kept_top1;
  MeanSe population_pairwise, oracle_pairwise;
  // Paired differences over users: evolved minus starting over, evolved minus kept.
  MeanSe evolved_minus_started_over, evolved_minus_kept;
};

struct SchemaChangeReport {
  std::string catalogue;
  std::string scenario;
  std::string change;  // tailord's log line for the change
  std::vector<std::string> old_features, new_features;
  std::vector<SchemaChangeRow> rows;
  double seconds = 0;
};

absl::StatusOr<SchemaChangeReport> RunSchemaChangeBenchmark(const Catalogue& catalogue,
                                                            const std::string& name,
                                                            const SchemaChangeOptions& options);

std::string SchemaChangeMarkdown(const SchemaChangeReport& report);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_SCHEMA_CHANGE_BENCHMARK_H_

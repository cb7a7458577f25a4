// ReplayBenchmark: offline evaluation on logged feedback, through live tailord servers — the
// tool to run on your own logs before turning personalization on. Users are split into folds
// by a seeded shuffle; in each fold the other folds' users are the history, and each test
// user's prompts are split in two: k events from one half are sent, and every event of the
// other half (prompts the user never gave feedback on, as in serving) is predicted. Tailor,
// the population model (an unknown user on the same server) and the own posterior alone (a
// second server with neighbour cold start off) are measured in the same run, per user, so
// their differences come with paired standard errors.
#ifndef TAILOR_BENCH_REPLAY_BENCHMARK_H_
#define TAILOR_BENCH_REPLAY_BENCHMARK_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tailor::bench {

struct ReplayOptions {
  std::string tailord_binary;
  std::string events_path;  // tailorctl feedback CSV
  std::string schema_path;  // tailord --schema CSV for those features
  int folds = 5;
  int max_folds = 0;  // run only the first this many folds (0 = all)
  std::vector<int> ks = {0, 1, 2, 4, 8, 16, 32};
  uint64_t seed = 1;
  int threads = 4;
  bool progress = true;
  // Extra tailord flags for the Tailor server (e.g. to compare settings).
  std::vector<std::string> tailord_flags;
  // Above 0: both servers run with token auth and this many tenants, each user in the tenant
  // its id hashes to (knowledge is then per tenant unless tailord_flags share it).
  int tenants = 0;
};

// One method's held-out predictions at one k.
struct ReplayMethod {
  // Per test user, in the same user order for every method of a row.
  std::vector<double> accuracy;  // a tie (P = 0.5) counts half
  std::vector<double> log_loss;  // mean -ln P(the user's actual choice)
  // Reliability over all predicted pairs, each oriented by a seeded coin flip: bin b holds
  // predictions of P(first preferred) in [b/10, (b+1)/10).
  static constexpr int kBins = 10;
  std::array<double, kBins> bin_pairs{};
  std::array<double, kBins> bin_predicted{};  // summed predictions
  std::array<double, kBins> bin_observed{};   // summed outcomes (first preferred = 1)
  double ExpectedCalibrationError() const;
};

struct ReplayRow {
  int k = 0;
  ReplayMethod tailor;
  ReplayMethod own;         // own posterior only (neighbour cold start off)
  ReplayMethod population;  // an unknown user on the Tailor server
};

struct ReplayReport {
  std::string events;
  int tenants = 0;  // ReplayOptions::tenants
  int users = 0;
  int folds = 0;
  int folds_run = 0;
  int skipped_users = 0;  // test users with fewer than two prompts (no prompt to hold out)
  int held_out_pairs = 0;
  std::vector<std::string> knowledge;  // what each fold's Tailor server fitted
  double seconds = 0;
  std::vector<ReplayRow> rows;
};

absl::StatusOr<ReplayReport> RunReplayBenchmark(const ReplayOptions& options);

// Mean and standard error of a per-user series, and of paired differences a - b.
struct MeanSe {
  double mean = 0;
  double se = 0;
  int n = 0;
};
MeanSe Summarize(const std::vector<double>& values);
MeanSe PairedDifference(const std::vector<double>& a, const std::vector<double>& b);

std::string ReplayMarkdown(const ReplayReport& report);
std::string ReplayJson(const ReplayReport& report);
// Held-out accuracy and log loss against k for the three methods.
std::string ReplaySvg(const ReplayReport& report);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_REPLAY_BENCHMARK_H_

// QualityBenchmark: the PersonalLLM protocol replayed through live tailord servers over gRPC.
// A historical population streams its feedback in; then fresh test users give k pairs each
// (random, or chosen by SuggestComparison) and are scored on held-out prompts, next to
// baselines measured in the same run: population only, own posterior only (a second tailord
// with neighbour cold start off), and the oracle (true weights).
#ifndef TAILOR_BENCH_QUALITY_BENCHMARK_H_
#define TAILOR_BENCH_QUALITY_BENCHMARK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/simulator.h"
#include "bench/synthetic_catalogue.h"

namespace tailor::bench {

struct QualityOptions {
  std::string tailord_binary;
  int historical_users = 10000;
  int min_pairs = 25;
  int max_pairs = 50;
  std::vector<int> ks = {0, 1, 2, 4, 8, 16, 32};
  int test_users = 100;
  int eval_prompts = 100;
  double alpha = 0.05;
  double train_fraction = 0.75;
  uint64_t seed = 1;
  int threads = 4;
  bool progress = true;
};

struct QualityRow {
  int k = 0;
  QualityScore random;     // Tailor, random pairs
  QualityScore suggested;  // Tailor, pairs from SuggestComparison
  QualityScore own;        // own posterior only (neighbours off), random pairs
  QualityScore population;
  QualityScore oracle;
};

struct QualityReport {
  std::string catalogue;
  int prompts = 0;
  int responses = 0;
  int features = 0;
  std::string reference_name;  // the catalogue's reference response, if any
  double seconds = 0;
  std::vector<QualityRow> rows;
  // What the Tailor server had fitted once the history was in, and at the end (after the test
  // users' feedback moved its live safety net).
  std::vector<std::string> knowledge;
};

absl::StatusOr<QualityReport> RunQualityBenchmark(const Catalogue& catalogue,
                                                  const std::string& name,
                                                  const QualityOptions& options);

std::string ReportMarkdown(const QualityReport& report);
// Mean and sample standard deviation across runs of the same protocol with other seeds (other
// catalogue draws where the catalogue is synthetic, other users, splits and pairs): how much
// of a difference between two numbers in one report is the draw.
std::string SeedSpreadMarkdown(const std::vector<QualityReport>& runs,
                               const std::vector<uint64_t>& seeds);
std::string ReportJson(const QualityReport& report);
// Top-1 and pairwise accuracy against k for every method.
std::string ReportSvg(const QualityReport& report);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_QUALITY_BENCHMARK_H_

// A reduced run of the quality benchmark through real tailord processes (fixed seed): the
// learning curve must rise, and at k = 8 Tailor must beat the population baseline measured in
// the same run by a stated margin.
#include "bench/quality_benchmark.h"

#include <random>

#include "gtest/gtest.h"

namespace tailor::bench {
namespace {

TEST(QualityBenchmarkTest, ReducedRunLearnsAndBeatsThePopulation) {
  std::mt19937_64 rng(11);
  const Catalogue catalogue = MakeSyntheticCatalogue(600, 8, 10, 0.42, rng);
  QualityOptions options;
  options.tailord_binary = TAILORD_BINARY;
  options.historical_users = 400;
  options.test_users = 40;
  options.eval_prompts = 40;
  options.ks = {0, 8, 32};
  options.threads = 2;
  options.seed = 11;
  options.progress = false;
  absl::StatusOr<QualityReport> report = RunQualityBenchmark(catalogue, "reduced", options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->rows.size(), 3u);
  const QualityRow& k0 = report->rows[0];
  const QualityRow& k8 = report->rows[1];
  const QualityRow& k32 = report->rows[2];
  std::printf("%s", ReportMarkdown(*report).c_str());

  // Stated margins: +0.05 top-1 over the population at k = 8 with random pairs, +0.10 with
  // suggested pairs; every curve rises from k = 0 to 8 to 32.
  EXPECT_GE(k8.random.top1(), k8.population.top1() + 0.05);
  EXPECT_GE(k8.suggested.top1(), k8.population.top1() + 0.10);
  EXPECT_GT(k8.random.pairwise_accuracy(), k0.random.pairwise_accuracy());
  EXPECT_GT(k32.random.top1(), k8.random.top1());
  EXPECT_GT(k32.suggested.top1(), k8.suggested.top1());
  EXPECT_GT(k32.own.top1(), k0.own.top1());
  // Neighbours help: with few pairs Tailor beats the own-posterior-only baseline.
  EXPECT_GT(k8.random.top1(), k8.own.top1());
  EXPECT_NEAR(k0.oracle.top1(), 1.0, 1e-9);
}

}  // namespace
}  // namespace tailor::bench

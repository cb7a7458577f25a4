// A reduced replay of real people's pairwise preferences (../shared/data/real/movielens-small,
// beside the checkout) through two live tailords, with a fixed seed: at every k >= 1 Tailor's
// held-out accuracy must be no more than 0.003 below the population model's (paired, same run)
// and its log loss no more than 0.002 above it — personalization must never make real people's
// rankings worse. Also checks the report's own arithmetic.
#include "bench/replay_benchmark.h"

#include <cstdio>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/real_data.h"

namespace tailor::bench {
namespace {

TEST(ReplayBenchmarkTest, RealPeopleAreNeverServedWorseThanThePopulation) {
  const std::string kData = testing::FindMovielensData();
  if (kData.empty()) {
    GTEST_SKIP() << "no real-people data: set TAILOR_REAL_DATA to the movielens-small folder "
                    "(looked beside the checkout and in /work/shared)";
  }
  ReplayOptions options;
  options.tailord_binary = TAILORD_BINARY;
  options.events_path = kData + "/events.csv";
  options.schema_path = kData + "/schema.csv";
  options.folds = 5;
  options.max_folds = 2;  // 214 test users, 430 historical users per fold
  options.ks = {0, 2, 8, 32};
  options.threads = 2;
  options.seed = 1;
  options.progress = false;
  absl::StatusOr<ReplayReport> report = RunReplayBenchmark(options);
  ASSERT_TRUE(report.ok()) << report.status();
  std::printf("%s", ReplayMarkdown(*report).c_str());
  ASSERT_EQ(report->rows.size(), 4u);
  EXPECT_EQ(report->folds_run, 2);
  for (const ReplayRow& row : report->rows) {
    ASSERT_EQ(row.tailor.accuracy.size(), row.population.accuracy.size());
    ASSERT_GT(row.tailor.accuracy.size(), 150u) << "k = " << row.k;
    if (row.k == 0) {
      // No feedback: Tailor is the population.
      EXPECT_NEAR(PairedDifference(row.tailor.accuracy, row.population.accuracy).mean, 0, 1e-9);
      continue;
    }
    EXPECT_GE(PairedDifference(row.tailor.accuracy, row.population.accuracy).mean, -0.003)
        << "k = " << row.k;
    EXPECT_LE(PairedDifference(row.tailor.log_loss, row.population.log_loss).mean, 0.002)
        << "k = " << row.k;
  }
}

TEST(ReplayBenchmarkTest, SummariesAndCalibrationError) {
  const MeanSe m = Summarize({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_NEAR(m.se, std::sqrt(5.0 / 3.0 / 4.0), 1e-12);
  const MeanSe d = PairedDifference({1, 2, 3}, {1, 1, 1});
  EXPECT_DOUBLE_EQ(d.mean, 1.0);
  ReplayMethod method;
  method.bin_pairs[2] = 10;
  method.bin_predicted[2] = 2.5;  // mean predicted 0.25
  method.bin_observed[2] = 5;     // observed 0.5
  method.bin_pairs[8] = 30;
  method.bin_predicted[8] = 25.5;  // 0.85
  method.bin_observed[8] = 25.5;
  EXPECT_NEAR(method.ExpectedCalibrationError(), (10 * 0.25 + 30 * 0) / 40.0, 1e-12);
}

}  // namespace
}  // namespace tailor::bench

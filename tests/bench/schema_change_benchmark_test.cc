// A reduced run of the schema change scenarios through real tailord processes (fixed seed):
// adding a reward model keeps the test users' held-out accuracy where it was at the restart
// (within 0.005) and is then better than starting over; removing one is still far better than
// starting over.
#include "bench/schema_change_benchmark.h"

#include <cstdio>
#include <random>

#include "gtest/gtest.h"

namespace tailor::bench {
namespace {

SchemaChangeOptions Reduced(const std::string& scenario) {
  SchemaChangeOptions options;
  options.tailord_binary = TAILORD_BINARY;
  options.scenario = scenario;
  options.historical_users = 300;
  options.test_users = 40;
  options.eval_prompts = 30;
  options.ks = {0, 8};
  options.threads = 2;
  options.seed = 11;
  options.progress = false;
  return options;
}

TEST(SchemaChangeBenchmarkTest, AddingAFeatureHoldsAtTheRestartAndBeatsStartingOver) {
  std::mt19937_64 rng(11);
  const Catalogue catalogue = MakeSyntheticCatalogue(400, 8, 10, 0.42, rng);
  absl::StatusOr<SchemaChangeReport> report =
      RunSchemaChangeBenchmark(catalogue, "reduced", Reduced("add_feature"));
  ASSERT_TRUE(report.ok()) << report.status();
  std::printf("%s", SchemaChangeMarkdown(*report).c_str());
  ASSERT_EQ(report->rows.size(), 3u);  // before, at restart, after 8 pairs
  EXPECT_EQ(report->change,
            "schema version 2: added rm9; every user is rebuilt from history "
            "under it");
  EXPECT_NEAR(report->rows[1].evolved_pairwise.mean, report->rows[0].evolved_pairwise.mean, 0.005);
  EXPECT_GT(report->rows[2].evolved_minus_started_over.mean,
            2 * report->rows[2].evolved_minus_started_over.se);
  EXPECT_GT(report->rows[2].evolved_pairwise.mean, report->rows[1].evolved_pairwise.mean);
}

TEST(SchemaChangeBenchmarkTest, RemovingAFeatureIsFarBetterThanStartingOver) {
  std::mt19937_64 rng(11);
  const Catalogue catalogue = MakeSyntheticCatalogue(400, 8, 10, 0.42, rng);
  absl::StatusOr<SchemaChangeReport> report =
      RunSchemaChangeBenchmark(catalogue, "reduced", Reduced("remove_feature"));
  ASSERT_TRUE(report.ok()) << report.status();
  std::printf("%s", SchemaChangeMarkdown(*report).c_str());
  EXPECT_EQ(report->new_features.size(), 9u);
  EXPECT_GT(report->rows[1].evolved_minus_started_over.mean, 0.2);
}

TEST(SchemaChangeBenchmarkTest, AnUnknownScenarioIsRefused) {
  std::mt19937_64 rng(11);
  const Catalogue catalogue = MakeSyntheticCatalogue(50, 4, 3, 0.42, rng);
  EXPECT_EQ(RunSchemaChangeBenchmark(catalogue, "x", Reduced("rename")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tailor::bench

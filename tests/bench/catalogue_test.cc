// Catalogue loaders: the PersonalLLM dataset CSV (quoted text with commas, quotes and
// newlines; score columns in any order; rows without scores skipped) and the win rate against
// its reference response (response 3, GPT-4o's).
#include <fstream>
#include <sstream>

#include "bench/simulator.h"
#include "bench/synthetic_catalogue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor::bench {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CsvTest, QuotedFieldsKeepCommasQuotesAndNewlines) {
  std::istringstream in("a,\"b, \"\"quoted\"\"\nline\",c\r\nx,,\"\"\n");
  std::vector<std::string> fields;
  ASSERT_TRUE(ReadCsvRecord(in, fields));
  EXPECT_THAT(fields, ElementsAre("a", "b, \"quoted\"\nline", "c"));
  ASSERT_TRUE(ReadCsvRecord(in, fields));
  EXPECT_THAT(fields, ElementsAre("x", "", ""));
  EXPECT_FALSE(ReadCsvRecord(in, fields));
}

class PersonalLlmTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text) {
    const std::string path = dir_.Sub("personalllm.csv");
    std::ofstream(path) << text;
    return path;
  }
  testing::TempDir dir_;
};

TEST_F(PersonalLlmTest, LoadsScoresByResponseAndModelWithResponseThreeAsReference) {
  // Score columns interleaved, an extra column, text with commas and a newline, and a row
  // with a missing score.
  const std::string path = Write(
      "prompt,subset,response_1,response_2,response_3,response_1_rm_a,response_2_rm_a,"
      "response_3_rm_a,response_1_rm_b,response_3_rm_b,response_2_rm_b\n"
      "\"Hi, there\",x,\"one, \"\"1\"\"\",two,\"three\nlines\",1,2,3,10,30,20\n"
      "p2,x,a,b,c,4,5,6,40,60,50\n"
      "p3,x,a,b,c,7,,9,70,90,80\n");
  int skipped = 0;
  auto catalogue = LoadPersonalLlmCsv(path, &skipped);
  ASSERT_TRUE(catalogue.ok()) << catalogue.status();
  EXPECT_EQ(skipped, 1);
  EXPECT_THAT(catalogue->feature_names, ElementsAre("rm_a", "rm_b"));
  ASSERT_EQ(catalogue->scores.size(), 2u);
  EXPECT_EQ(catalogue->responses(), 3);
  EXPECT_EQ(catalogue->reference_response, 2);
  // Raw scores come back through the z-scoring: response 2 of prompt 2 is (5, 50).
  const Eigen::VectorXd raw =
      catalogue->raw_mean + catalogue->raw_sd.cwiseProduct(catalogue->scores[1].row(1).transpose());
  EXPECT_NEAR(raw[0], 5, 1e-9);
  EXPECT_NEAR(raw[1], 50, 1e-9);
  EXPECT_NEAR(catalogue->raw_mean[0], 3.5, 1e-9);

  // A user who only likes rm_a: picking response 3 ties the reference, response 1 loses.
  QualityScore score;
  const Eigen::Vector2d likes_a(1, 0);
  const std::vector<int> best_first = {2, 1, 0};
  const std::vector<int> worst_first = {0, 1, 2};
  ScoreRanking(*catalogue, likes_a, 0, best_first, score);
  ScoreRanking(*catalogue, likes_a, 0, worst_first, score);
  EXPECT_DOUBLE_EQ(score.reference_prompts, 2);
  EXPECT_DOUBLE_EQ(score.win_rate_vs_reference(), 0.25);
}

TEST_F(PersonalLlmTest, BadFilesSayWhy) {
  EXPECT_THAT(std::string(LoadPersonalLlmCsv(dir_.Sub("missing.csv")).status().message()),
              HasSubstr("cannot read"));
  EXPECT_THAT(std::string(LoadPersonalLlmCsv(Write("prompt,response_1\np,a\n")).status().message()),
              HasSubstr("response_{i}_{reward_model}"));
  EXPECT_THAT(std::string(LoadPersonalLlmCsv(Write("prompt,response_1_a,response_2_b\np,1,2\n"))
                              .status()
                              .message()),
              HasSubstr("no column response_2_a"));
  EXPECT_THAT(std::string(LoadPersonalLlmCsv(Write("prompt,response_1_a,response_2_a\np,1,x\n"))
                              .status()
                              .message()),
              HasSubstr("no usable rows"));
}

}  // namespace
}  // namespace tailor::bench

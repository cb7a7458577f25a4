#include "model/schema.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tailor::model {
namespace {

using ::testing::HasSubstr;

TEST(FeatureSchemaTest, DefaultSchemaIsPersonalLlmsTenRewardModels) {
  absl::StatusOr<FeatureSchema> schema = FeatureSchema::FromCsv(DefaultSchemaCsv());
  ASSERT_TRUE(schema.ok()) << schema.status();
  EXPECT_EQ(schema->dimension(), 10);
  EXPECT_EQ(schema->features()[0].name, "beaver_7b");
  EXPECT_NEAR(schema->features()[0].mean, 6.233516894340515, 1e-12);
  EXPECT_NEAR(schema->features()[0].sd, 3.012641148973965, 1e-12);
  EXPECT_EQ(schema->fingerprint().size(), 16u);
}

TEST(FeatureSchemaTest, FingerprintIsStableAndSensitive) {
  auto a = FeatureSchema::FromCsv("name,mean,sd\nx,0,1\ny,1,2\n");
  auto b = FeatureSchema::FromCsv("name,mean,sd\r\nx,0,1\r\ny,1,2\r\n");
  auto c = FeatureSchema::FromCsv("name,mean,sd\nx,0,1\ny,1,2.5\n");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  EXPECT_NE(a->fingerprint(), c->fingerprint());
}

TEST(FeatureSchemaTest, ExtraColumnsAreIgnoredAndOrderFollowsRows) {
  auto schema = FeatureSchema::FromCsv("model_id,sd,name,mean\nm/a,2,a,1\nm/b,4,b,0\n");
  ASSERT_TRUE(schema.ok()) << schema.status();
  ASSERT_EQ(schema->dimension(), 2);
  EXPECT_EQ(schema->features()[1].name, "b");
  EXPECT_EQ(schema->features()[1].sd, 4);
}

TEST(FeatureSchemaTest, NormalizeZScores) {
  auto schema = FeatureSchema::FromCsv("name,mean,sd\na,1,2\nb,-1,0.5\n");
  ASSERT_TRUE(schema.ok());
  const float raw[] = {5.0f, -2.0f};
  Eigen::VectorXd z = schema->Normalize(raw);
  EXPECT_DOUBLE_EQ(z[0], 2.0);
  EXPECT_DOUBLE_EQ(z[1], -2.0);
}

struct BadSchemaCase {
  const char* csv;
  const char* message;
};

class BadSchemaTest : public ::testing::TestWithParam<BadSchemaCase> {};

TEST_P(BadSchemaTest, IsRejectedWithAClearMessage) {
  absl::StatusOr<FeatureSchema> schema = FeatureSchema::FromCsv(GetParam().csv);
  ASSERT_FALSE(schema.ok());
  EXPECT_EQ(schema.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(schema.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Rules, BadSchemaTest,
    ::testing::Values(BadSchemaCase{"", "empty file"},
                      BadSchemaCase{"name,mean\nx,0\n", "must name the columns"},
                      BadSchemaCase{"name,mean,sd\n", "no features"},
                      BadSchemaCase{"name,mean,sd\nx,0,1\nx,0,1\n", "duplicate name x"},
                      BadSchemaCase{"name,mean,sd\n,0,1\n", "empty name"},
                      BadSchemaCase{"name,mean,sd\nx,abc,1\n", "mean must be a finite number"},
                      BadSchemaCase{"name,mean,sd\nx,nan,1\n", "mean must be a finite number"},
                      BadSchemaCase{"name,mean,sd\nx,0,0\n", "sd must be a finite number > 0"},
                      BadSchemaCase{"name,mean,sd\nx,0,-1\n", "sd must be a finite number > 0"},
                      BadSchemaCase{"name,mean,sd\nx,0\n", "line 2: has 2 cells"}));

}  // namespace
}  // namespace tailor::model

// Per-tenant request quotas (server/quota.h): the file's rules, each refused with its line and
// reason, and the token bucket at explicit times (no sleeping, no wall clock).
#include "server/quota.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tailor::server {
namespace {

using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

TEST(QuotaFileTest, ParsesTenantsTheDefaultAndBursts) {
  auto quotas =
      TenantQuotas::ParseText("# tenant rate [burst]\nacme 200 400\nglobex 0.5\n* 50\n", "quotas");
  ASSERT_TRUE(quotas.ok()) << quotas.status();
  EXPECT_EQ(quotas->at("acme").rate, 200);
  EXPECT_EQ(quotas->at("acme").burst, 400);
  EXPECT_EQ(quotas->at("globex").burst, 1);  // one second's worth, at least 1
  EXPECT_EQ(quotas->at("*").burst, 50);
}

TEST(QuotaFileTest, EachRuleIsRefusedWithItsLineAndReason) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"acme\n", ":1: expected 'TENANT REQUESTS_PER_SECOND [BURST]'"},
      {"acme 1 2 3\n", ":1: expected"},
      {"ac/me 10\n", ":1: tenant must be '*' or 1-64 characters"},
      {"acme ten\n", ":1: requests per second must be a number above 0"},
      {"acme 0\n", "above 0"},
      {"acme -5\n", "above 0"},
      {"acme nan\n", "above 0"},
      {"acme inf\n", "above 0"},
      {"acme 10 0.5\n", ":1: burst must be a number of at least 1"},
      {"acme 10 many\n", "burst must be"},
      {"acme 10\n\nacme 20\n", ":3: tenant 'acme' has a quota already"},
  };
  for (const auto& [text, reason] : cases) {
    auto quotas = TenantQuotas::ParseText(text, "quotas");
    ASSERT_FALSE(quotas.ok()) << text;
    EXPECT_EQ(quotas.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(quotas.status().message()), HasSubstr("quotas"));
    EXPECT_THAT(std::string(quotas.status().message()), HasSubstr(reason)) << text;
  }
}

TEST(TokenBucketTest, BurstThenRefillAtTheRate) {
  TenantQuotas quotas({{"acme", {2, 5}}});
  // A full bucket: the burst at once, then nothing.
  EXPECT_EQ(quotas.TakeUpTo("acme", 3, kStart), 3u);
  EXPECT_EQ(quotas.TakeUpTo("acme", 3, kStart), 2u);
  const absl::Status over = quotas.Take("acme", kStart);
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(over.message()), HasSubstr("tenant 'acme'"));
  EXPECT_THAT(std::string(over.message()), HasSubstr("2/s (burst 5)"));
  // 2 per second: after 1.5 s, 3 requests are back.
  EXPECT_EQ(quotas.TakeUpTo("acme", 10, kStart + absl::Milliseconds(1500)), 3u);
  // Never more than the burst, however long the quiet spell.
  EXPECT_EQ(quotas.TakeUpTo("acme", 10, kStart + absl::Hours(1)), 5u);
  // A clock that goes backwards refills nothing.
  EXPECT_EQ(quotas.TakeUpTo("acme", 1, kStart), 0u);
}

TEST(TokenBucketTest, TenantsHaveBucketsOfTheirOwnAndUnlistedOnesFollowTheDefault) {
  TenantQuotas quotas({{"acme", {1, 1}}, {"*", {1, 2}}});
  EXPECT_TRUE(quotas.Take("acme", kStart).ok());
  EXPECT_FALSE(quotas.Take("acme", kStart).ok());
  // globex and initech fall under '*', each with a bucket of its own.
  EXPECT_EQ(quotas.TakeUpTo("globex", 5, kStart), 2u);
  EXPECT_EQ(quotas.TakeUpTo("initech", 5, kStart), 2u);
  // Without a default, unlisted tenants are unlimited.
  TenantQuotas listed({{"acme", {1, 1}}});
  EXPECT_EQ(listed.TakeUpTo("globex", 1000, kStart), 1000u);
}

}  // namespace
}  // namespace tailor::server

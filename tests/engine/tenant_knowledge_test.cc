// Per-tenant knowledge (EngineOptions::knowledge_by_tenant): each tenant's population prior,
// neighbour reference set, trust and live safety net are fitted from its own users and serve only
// them. The guarantee tested: tenant B's rankings, suggestions and profiles do not change at all
// (bit for bit) when tenant A's users' feedback changes — A's users learn the opposite taste, new
// A users arrive, some are deleted, and knowledge is refitted. The same steps with one shared
// knowledge (knowledge off, or both tenants opting in to share) do change B's answers, so the
// comparison can see a leak. Fixed seeds.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/preference_engine.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_inputs.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

constexpr int kD = 5;
constexpr int kEstablished = 60;  // per tenant: enough to fit trust (min_calibration_users 30)
constexpr int kEstablishedPairs = 20;
constexpr int kCold = 12;
constexpr int kColdPairs = 3;

using Pair = testing::AnsweredPair;
using testing::Answer;

Eigen::VectorXd Taste(std::mt19937_64& rng, double sign) {
  std::normal_distribution<double> normal(0, 1);
  Eigen::VectorXd taste(kD);
  for (int f = 0; f < kD; ++f) taste[f] = sign * (f < 2 ? 2.0 : 0.0) + normal(rng);
  return taste;
}

// Everything tenant B's users are answered, as exact numbers.
struct Answers {
  std::vector<double> numbers;
  std::vector<int> orders;
  bool operator==(const Answers&) const = default;
};

class TenantKnowledgeTest : public ::testing::Test {
 protected:
  std::unique_ptr<PreferenceEngine> Engine(const std::string& name, EngineOptions options) {
    storage::StoreOptions store_options;
    store_options.path = dir_.Sub(name);
    store_options.min_free_bytes = 0;
    stores_.push_back(*storage::FeedbackStore::Open(store_options));
    options.refresh_period = absl::ZeroDuration();
    options.count_by_tenant = true;
    return *PreferenceEngine::Open(testing::IdentitySchema(kD), *stores_.back(), options);
  }

  static void Record(PreferenceEngine& engine, const std::string& user, int first,
                     const std::vector<Pair>& pairs) {
    for (size_t i = 0; i < pairs.size(); ++i) {
      FeedbackInput input;
      input.user_id = user;
      input.event_id = absl::StrCat("e", first + static_cast<int>(i));
      input.chosen = {"c", pairs[i].chosen};
      input.rejected = {"r", pairs[i].rejected};
      ASSERT_TRUE(engine.RecordFeedback(input).ok());
    }
  }

  static std::vector<Pair> Pairs(const Eigen::VectorXd& taste, int n, std::mt19937_64& rng) {
    std::vector<Pair> pairs;
    for (int i = 0; i < n; ++i) pairs.push_back(Answer(taste, rng));
    return pairs;
  }

  // Tenant `tenant`'s established and cold users, tastes leaning `sign`.
  static void Populate(PreferenceEngine& engine, const std::string& tenant, double sign,
                       uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int u = 0; u < kEstablished; ++u) {
      Record(engine, absl::StrCat(tenant, "/est-", u), 0,
             Pairs(Taste(rng, sign), kEstablishedPairs, rng));
    }
    for (int u = 0; u < kCold; ++u) {
      Record(engine, absl::StrCat(tenant, "/cold-", u), 0,
             Pairs(Taste(rng, sign), kColdPairs, rng));
    }
  }

  // Tenant A changes: its users learn the opposite taste, new users arrive, some leave.
  static void ChangeTenantA(PreferenceEngine& engine) {
    std::mt19937_64 rng(99);
    for (int u = 0; u < kEstablished; u += 2) {
      Record(engine, absl::StrCat("a/est-", u), kEstablishedPairs, Pairs(Taste(rng, -3), 30, rng));
    }
    for (int u = 0; u < 40; ++u) {
      Record(engine, absl::StrCat("a/new-", u), 0, Pairs(Taste(rng, -3), kEstablishedPairs, rng));
    }
    for (int u = 1; u < kEstablished; u += 6) {
      ASSERT_TRUE(engine.DeleteUser(absl::StrCat("a/est-", u)).ok());
    }
    engine.RefreshKnowledge();
    engine.RefreshKnowledge();
  }

  // Rankings (scores, P(best), order, source), suggestions and profiles of B's users — cold,
  // established and unknown — and B's trust, on fixed candidates.
  static Answers AnswersOfB(PreferenceEngine& engine) {
    std::mt19937_64 rng(7);
    std::vector<std::vector<float>> features;
    for (int c = 0; c < 6; ++c) features.push_back(testing::RandomFeatures(kD, rng));
    std::vector<CandidateInput> candidates;
    for (int c = 0; c < 6; ++c) candidates.push_back({absl::StrCat("c", c), features[c]});
    std::vector<std::string> users = {"b/nobody-yet"};
    for (int u = 0; u < kCold; ++u) users.push_back(absl::StrCat("b/cold-", u));
    for (int u = 0; u < kEstablished; u += 10) users.push_back(absl::StrCat("b/est-", u));
    Answers answers;
    for (const std::string& user : users) {
      absl::StatusOr<RankResult> ranked = engine.Rank(user, candidates, /*explore=*/false);
      EXPECT_TRUE(ranked.ok()) << ranked.status();
      if (!ranked.ok()) continue;
      answers.orders.push_back(static_cast<int>(ranked->source));
      for (const RankedCandidate& c : ranked->ranked) {
        answers.orders.push_back(c.index);
        answers.numbers.push_back(c.score);
        answers.numbers.push_back(c.probability_best);
      }
      absl::StatusOr<Comparison> suggested = engine.Suggest(user, candidates);
      EXPECT_TRUE(suggested.ok()) << suggested.status();
      if (suggested.ok()) {
        answers.orders.push_back(suggested->first);
        answers.orders.push_back(suggested->second);
        answers.numbers.push_back(suggested->probability_first);
        answers.numbers.push_back(suggested->information_bits);
      }
      absl::StatusOr<UserProfile> profile = engine.GetUser(user);
      if (profile.ok()) {
        for (double w : profile->weight_mean) answers.numbers.push_back(w);
        for (double s : profile->weight_stddev) answers.numbers.push_back(s);
      }
    }
    const TrustReport trust = engine.Trust(engine.KnowledgeGroupOfTenant("b"));
    answers.numbers.push_back(trust.trust.prior_scale);
    answers.numbers.push_back(trust.trust.neighbour_temperature);
    for (const LiveGuard::Shares& shares : trust.live_shares) {
      answers.numbers.insert(answers.numbers.end(), shares.begin(), shares.end());
    }
    return answers;
  }

  // B's answers before and after A changes.
  std::pair<Answers, Answers> BeforeAndAfter(const std::string& name, EngineOptions options) {
    std::unique_ptr<PreferenceEngine> engine = Engine(name, std::move(options));
    Populate(*engine, "a", +3, 1);
    Populate(*engine, "b", -1, 2);
    engine->RefreshKnowledge();
    engine->RefreshKnowledge();
    Answers before = AnswersOfB(*engine);
    ChangeTenantA(*engine);
    return {before, AnswersOfB(*engine)};
  }

  testing::TempDir dir_;
  std::vector<std::unique_ptr<storage::FeedbackStore>> stores_;
};

TEST_F(TenantKnowledgeTest, TenantBsAnswersDoNotChangeAtAllWhenTenantAsFeedbackChanges) {
  EngineOptions options;
  options.knowledge_by_tenant = true;
  const auto [before, after] = BeforeAndAfter("isolated", options);
  ASSERT_FALSE(before.numbers.empty());
  EXPECT_TRUE(before == after) << "tenant B's answers moved with tenant A's feedback";
}

TEST_F(TenantKnowledgeTest, WithOneSharedKnowledgeTheSameChangeMovesTenantBsAnswers) {
  // The control: what the test above would see if knowledge leaked between tenants.
  const auto [before, after] = BeforeAndAfter("one-knowledge", EngineOptions{});
  EXPECT_FALSE(before == after);
  EngineOptions opted_in;
  opted_in.knowledge_by_tenant = true;
  opted_in.shared_knowledge_tenants = {"a", "b"};
  const auto [shared_before, shared_after] = BeforeAndAfter("opted-in", opted_in);
  EXPECT_FALSE(shared_before == shared_after);
}

TEST_F(TenantKnowledgeTest, EachTenantsKnowledgeIsFittedFromItsOwnUsersOnly) {
  EngineOptions options;
  options.knowledge_by_tenant = true;
  options.shared_knowledge_tenants = {"c", "d"};
  std::unique_ptr<PreferenceEngine> engine = Engine("groups", options);
  Populate(*engine, "a", +3, 1);
  Populate(*engine, "b", -1, 2);
  Populate(*engine, "c", +1, 3);
  Populate(*engine, "d", +1, 4);
  engine->RefreshKnowledge();
  EXPECT_EQ(engine->KnowledgeGroupOf("a/x"), "a");
  EXPECT_EQ(engine->KnowledgeGroupOf("c/x"), kSharedKnowledgeGroup);
  EXPECT_EQ(engine->KnowledgeGroupOfTenant("d"), kSharedKnowledgeGroup);
  EXPECT_EQ(engine->KnowledgeGroups(), (std::vector<std::string>{"*", "a", "b"}));
  for (const char* tenant : {"a", "b"}) {
    const KnowledgeSummary own = engine->KnowledgeOf(tenant);
    EXPECT_EQ(own.reference_users, static_cast<uint64_t>(kEstablished)) << tenant;
    EXPECT_EQ(own.population_users, static_cast<uint64_t>(kEstablished)) << tenant;
    EXPECT_GT(engine->Trust(tenant).trust.calibration_users, 0) << tenant;
  }
  // The tenants that opted in share one knowledge of both their users.
  EXPECT_EQ(engine->KnowledgeOf(kSharedKnowledgeGroup).reference_users,
            2u * static_cast<uint64_t>(kEstablished));
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.knowledge_groups, 3u);
  EXPECT_EQ(stats.reference_users, 4u * static_cast<uint64_t>(kEstablished));
  // A new user of each tenant is served that tenant's population (a leans +, b leans -).
  const std::vector<float> plus = {1, 1, 0, 0, 0}, minus = {-1, -1, 0, 0, 0};
  const CandidateInput candidates[] = {{"plus", plus}, {"minus", minus}};
  absl::StatusOr<RankResult> for_a = engine->Rank("a/new", candidates, false);
  absl::StatusOr<RankResult> for_b = engine->Rank("b/new", candidates, false);
  ASSERT_TRUE(for_a.ok() && for_b.ok());
  EXPECT_EQ(for_a->ranked[0].index, 0);
  EXPECT_EQ(for_b->ranked[0].index, 1);
}

TEST_F(TenantKnowledgeTest, OtherShardsUsersServeOnlyTheirOwnTenantsColdUsers) {
  EngineOptions options;
  options.knowledge_by_tenant = true;
  std::unique_ptr<PreferenceEngine> lender = Engine("lender", options);
  std::unique_ptr<PreferenceEngine> borrower = Engine("borrower", options);
  Populate(*lender, "a", +3, 1);
  Populate(*lender, "b", -1, 2);
  Populate(*borrower, "b", -1, 3);
  lender->RefreshKnowledge();
  const std::vector<ExternalReference> sample = lender->ReferenceSample(1000, "lender/");
  ASSERT_EQ(sample.size(), 2u * kEstablished);
  for (const ExternalReference& r : sample) EXPECT_TRUE(r.group == "a" || r.group == "b");
  borrower->SetExternalReferences(std::make_shared<const std::vector<ExternalReference>>(sample));
  borrower->SetExternalPopulations(lender->LocalPopulations());
  borrower->RefreshKnowledge();
  // b borrows the lender's b users and pools its b fit; a has no users here, so nothing of a's
  // reaches this shard's knowledge.
  EXPECT_EQ(borrower->KnowledgeOf("b").reference_users, 2u * kEstablished);
  EXPECT_EQ(borrower->KnowledgeOf("b").population_users, 2u * kEstablished);
  EXPECT_EQ(borrower->KnowledgeGroups(), (std::vector<std::string>{"b"}));
  EXPECT_EQ(borrower->Stats().reference_users, 2u * kEstablished);
}

}  // namespace
}  // namespace tailor::engine

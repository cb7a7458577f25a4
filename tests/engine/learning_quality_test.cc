// Statistical acceptance of the engine on the PersonalLLM-style synthetic population of
// ../shared/reference/ceiling_sim.py (rho = 0.42, alpha = 0.05, d = 10, 8 responses per
// prompt): established users are learned through the engine itself, then fresh test users
// give k pairs and are scored on held-out prompts. The reference estimator of ceiling_sim.py
// (batch Laplace fits of the established users' pairs, a pure likelihood-weighted mixture over
// all of them) runs on the very same catalogue, users and pairs as a same-run baseline, and
// the engine must reach it minus 0.02 (pairwise accuracy and top-1), at k = 0, 4, 8, 32, with
// random and with suggested pairs. Fixed seeds throughout.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/simulator.h"
#include "bench/synthetic_catalogue.h"
#include "engine/preference_engine.h"
#include "gtest/gtest.h"
#include "model/belief.h"
#include "model/posterior.h"
#include "tests/testing/temp_dir.h"

namespace tailor::engine {
namespace {

using bench::Catalogue;
using bench::QualityScore;

constexpr int kD = 10;
constexpr int kResponses = 8;

model::FeatureSchema IdentitySchema() {
  std::string csv = "name,mean,sd\n";
  for (int i = 0; i < kD; ++i) absl::StrAppend(&csv, "rm", i, ",0,1\n");
  return *model::FeatureSchema::FromCsv(csv);
}

class LearningQualityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::mt19937_64 rng(2025);
    catalogue_ = new Catalogue(bench::MakeSyntheticCatalogue(2000, kResponses, kD, 0.42, rng));
    for (int p = 0; p < 1500; ++p) train_.push_back(p);
    for (int p = 1500; p < 2000; ++p) test_.push_back(p);
    // One float copy of each prompt's candidates, as the serving stack would send them.
    features_.resize(2000);
    for (int p = 0; p < 2000; ++p) {
      for (int r = 0; r < kResponses; ++r) {
        std::vector<float>& f = features_[static_cast<size_t>(p)].emplace_back(kD);
        for (int b = 0; b < kD; ++b)
          f[static_cast<size_t>(b)] =
              static_cast<float>(catalogue_->scores[static_cast<size_t>(p)](r, b));
      }
    }
    dir_ = new testing::TempDir();
    storage::StoreOptions options;
    options.path = dir_->Sub("db");
    store_ = storage::FeedbackStore::Open(options)->release();
    EngineOptions engine_options;
    engine_options.refresh_period = absl::ZeroDuration();  // refresh only when told
    engine_ = PreferenceEngine::Open(IdentitySchema(), *store_, engine_options)->release();
    std::vector<Eigen::VectorXd> batch_vectors;

    // 1,500 established users, 50 random pairs each, streamed through the engine.
    for (int u = 0; u < 1500; ++u) {
      const Eigen::VectorXd w = bench::SampleDirichlet(kD, 0.05, rng);
      const std::string user = absl::StrCat("hist-", u);
      std::vector<Eigen::VectorXd> diffs;
      for (int i = 0; i < 50; ++i) {
        const bench::Comparison c = bench::RandomComparison(*catalogue_, w, train_, rng);
        Give(user, c, i);
        diffs.push_back(Diff(c));
      }
      batch_vectors.push_back(model::BatchLaplaceFit(diffs, Eigen::VectorXd::Zero(kD),
                                                     Eigen::MatrixXd::Identity(kD, kD))
                                  .mean);
    }
    engine_->RefreshKnowledge();
    reference_ = new model::ReferenceSet;
    reference_->weights.resize(static_cast<Eigen::Index>(batch_vectors.size()), kD);
    for (size_t j = 0; j < batch_vectors.size(); ++j) {
      reference_->weights.row(static_cast<Eigen::Index>(j)) = batch_vectors[j].transpose();
    }
  }

  static void TearDownTestSuite() {
    delete reference_;
    delete engine_;
    delete store_;
    delete dir_;
    delete catalogue_;
  }

  static std::vector<CandidateInput> Candidates(int prompt) {
    std::vector<CandidateInput> out;
    for (int r = 0; r < kResponses; ++r) {
      out.push_back(
          {absl::StrCat("r", r), features_[static_cast<size_t>(prompt)][static_cast<size_t>(r)]});
    }
    return out;
  }

  static Eigen::VectorXd Diff(const bench::Comparison& c) {
    const Eigen::MatrixXd& z = catalogue_->scores[static_cast<size_t>(c.prompt)];
    return (z.row(c.chosen) - z.row(c.rejected)).transpose();
  }

  // The reference estimator's belief: every established user weighted by the likelihood of
  // the test user's pairs, nothing else.
  static model::Belief ReferenceBelief(const std::vector<Eigen::VectorXd>& diffs) {
    model::Belief belief(
        model::Posterior(Eigen::VectorXd::Zero(kD), Eigen::MatrixXd::Identity(kD, kD)));
    belief.neighbours = model::MixNeighbours(diffs, *reference_, -1, {1.0, reference_->size()});
    belief.reference = reference_;
    belief.personal_weight = 0;
    return belief;
  }

  static void Give(const std::string& user, const bench::Comparison& c, int index) {
    FeedbackInput event;
    event.event_id = absl::StrCat(user, "/", index);
    event.user_id = user;
    event.chosen = {"c", features_[static_cast<size_t>(c.prompt)][static_cast<size_t>(c.chosen)]};
    event.rejected = {"r",
                      features_[static_cast<size_t>(c.prompt)][static_cast<size_t>(c.rejected)]};
    ASSERT_TRUE(engine_->RecordFeedback(event).ok());
  }

  struct Cell {
    QualityScore engine;
    QualityScore reference;
  };

  // Mean held-out quality over `users` fresh test users after k pairs each, for the engine
  // and for the reference estimator given the same users (and, for random pairs, the same
  // pairs; suggested pairs follow each estimator's own suggestions).
  static Cell Measure(int k, bool suggested, int users, uint64_t seed) {
    std::mt19937_64 rng(seed);
    Cell cell;
    for (int u = 0; u < users; ++u) {
      const Eigen::VectorXd w = bench::SampleDirichlet(kD, 0.05, rng);
      const std::string user =
          absl::StrCat(run_, suggested ? "sugg-" : "rand-", k, "-", seed, "-", u);
      std::vector<Eigen::VectorXd> reference_diffs;
      for (int i = 0; i < k; ++i) {
        if (suggested) {
          const int prompt =
              train_[std::uniform_int_distribution<size_t>(0, train_.size() - 1)(rng)];
          absl::StatusOr<Comparison> pair = engine_->Suggest(user, Candidates(prompt));
          EXPECT_TRUE(pair.ok());
          Give(user, bench::Answer(*catalogue_, w, prompt, pair->first, pair->second), i);
          const model::SuggestedPair ref = model::SuggestPair(
              ReferenceBelief(reference_diffs), catalogue_->scores[static_cast<size_t>(prompt)]);
          reference_diffs.push_back(
              Diff(bench::Answer(*catalogue_, w, prompt, ref.first, ref.second)));
        } else {
          const bench::Comparison c = bench::RandomComparison(*catalogue_, w, train_, rng);
          Give(user, c, i);
          reference_diffs.push_back(Diff(c));
        }
      }
      const Eigen::VectorXd reference_mean = ReferenceBelief(reference_diffs).Mean();
      for (int e = 0; e < 100; ++e) {
        const int prompt = test_[std::uniform_int_distribution<size_t>(0, test_.size() - 1)(rng)];
        absl::StatusOr<RankResult> ranked = engine_->Rank(user, Candidates(prompt), false);
        EXPECT_TRUE(ranked.ok());
        std::vector<int> order;
        for (const RankedCandidate& c : ranked->ranked) order.push_back(c.index);
        bench::ScoreRanking(*catalogue_, w, prompt, order, cell.engine);

        const Eigen::VectorXd scores =
            catalogue_->scores[static_cast<size_t>(prompt)] * reference_mean;
        std::vector<int> reference_order(kResponses);
        std::iota(reference_order.begin(), reference_order.end(), 0);
        std::stable_sort(reference_order.begin(), reference_order.end(),
                         [&](int a, int b) { return scores[a] > scores[b]; });
        bench::ScoreRanking(*catalogue_, w, prompt, reference_order, cell.reference);
      }
    }
    return cell;
  }

  static Catalogue* catalogue_;
  static std::vector<int> train_;
  static std::vector<int> test_;
  static std::vector<std::vector<std::vector<float>>> features_;
  static testing::TempDir* dir_;
  static storage::FeedbackStore* store_;
  static PreferenceEngine* engine_;
  static model::ReferenceSet* reference_;
  static std::string run_;  // distinguishes test users when one store serves two engines
};

Catalogue* LearningQualityTest::catalogue_ = nullptr;
std::vector<int> LearningQualityTest::train_;
std::vector<int> LearningQualityTest::test_;
std::vector<std::vector<std::vector<float>>> LearningQualityTest::features_;
testing::TempDir* LearningQualityTest::dir_ = nullptr;
storage::FeedbackStore* LearningQualityTest::store_ = nullptr;
PreferenceEngine* LearningQualityTest::engine_ = nullptr;
model::ReferenceSet* LearningQualityTest::reference_ = nullptr;
std::string LearningQualityTest::run_;

void ExpectAtLeastReference(const char* label, int k, const QualityScore& engine,
                            const QualityScore& reference) {
  std::printf("%-9s k=%2d  engine %.3f / %.3f   reference %.3f / %.3f\n", label, k,
              engine.pairwise_accuracy(), engine.top1(), reference.pairwise_accuracy(),
              reference.top1());
  constexpr double kMargin = 0.02;
  EXPECT_GE(engine.pairwise_accuracy(), reference.pairwise_accuracy() - kMargin)
      << label << " pairwise accuracy at k=" << k;
  EXPECT_GE(engine.top1(), reference.top1() - kMargin) << label << " top-1 at k=" << k;
}

TEST_F(LearningQualityTest, RandomPairsReachTheReferenceNeighbourEstimator) {
  for (int k : {0, 4, 8, 32}) {
    const Cell cell = Measure(k, /*suggested=*/false, 100, 100 + k);
    ExpectAtLeastReference("random", k, cell.engine, cell.reference);
  }
}

TEST_F(LearningQualityTest, SuggestedPairsReachTheReferenceNeighbourEstimator) {
  for (int k : {0, 4, 8, 32}) {
    const Cell cell = Measure(k, /*suggested=*/true, 100, 200 + k);
    ExpectAtLeastReference("suggested", k, cell.engine, cell.reference);
  }
}

// The same store served through the HNSW index instead of the exact scan, with a near set and
// sample that together weigh about a sixth of the 1,500 reference users: the same users with
// the same pairs are ranked within 0.015 of the exact engine.
TEST_F(LearningQualityTest, IndexedNeighbourLookupMatchesTheExactScan) {
  EngineOptions options;
  options.refresh_period = absl::ZeroDuration();
  options.exact_scan_max_users = 0;
  options.neighbour_index.near = 128;
  options.neighbour_index.sampled = 128;
  PreferenceEngine* exact = engine_;
  auto indexed = PreferenceEngine::Open(IdentitySchema(), *store_, options);
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  ASSERT_GT((*indexed)->Stats().indexed_users, 1000u);
  for (int k : {4, 8, 32}) {
    engine_ = exact;
    const Cell a = Measure(k, /*suggested=*/false, 80, 400 + k);
    engine_ = indexed->get();
    run_ = "indexed-";
    const Cell b = Measure(k, /*suggested=*/false, 80, 400 + k);
    engine_ = exact;
    run_.clear();
    std::printf("k=%2d  exact %.3f / %.3f   indexed %.3f / %.3f\n", k, a.engine.pairwise_accuracy(),
                a.engine.top1(), b.engine.pairwise_accuracy(), b.engine.top1());
    EXPECT_NEAR(b.engine.pairwise_accuracy(), a.engine.pairwise_accuracy(), 0.015) << "k=" << k;
    EXPECT_NEAR(b.engine.top1(), a.engine.top1(), 0.015) << "k=" << k;
  }
}

TEST_F(LearningQualityTest, LearningCurveRisesAndBeatsThePopulation) {
  const Cell none = Measure(0, false, 60, 300);
  const Cell some = Measure(8, false, 60, 300);
  const Cell more = Measure(32, false, 60, 300);
  EXPECT_GT(some.engine.top1(), none.engine.top1() + 0.05);
  EXPECT_GT(more.engine.top1(), some.engine.top1() + 0.05);
}

}  // namespace
}  // namespace tailor::engine

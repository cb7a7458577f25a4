// The HNSW neighbour index against the exact scan it stands in for: on a PersonalLLM-style
// population (Dirichlet(0.05) users over d = 10 correlated reward models), the index's
// stratified mixture must rank held-out candidates like the exact mixture, keep the heavy
// neighbours, and estimate the same evidence. Fixed seeds; tolerances stated per test.
#include "model/neighbour_index.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "bench/simulator.h"
#include "bench/synthetic_catalogue.h"
#include "gtest/gtest.h"
#include "model/belief.h"
#include "model/neighbour_graph.h"
#include "model/neighbour_track.h"

namespace tailor::model {
namespace {

constexpr int kD = 10;
constexpr int kReferenceUsers = 30000;

class NeighbourIndexTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::mt19937_64 rng(7);
    catalogue_ = new bench::Catalogue(bench::MakeSyntheticCatalogue(600, 8, kD, 0.42, rng));
    for (int p = 0; p < 600; ++p) prompts_.push_back(p);
    reference_ = new ReferenceSet;
    reference_->weights = bench::MakeReferenceWeights(kReferenceUsers, kD, 0.05, 3.0, 0.3, rng);
    population_ = new Population;
    population_->mean = reference_->weights.colwise().mean().transpose();
    const Eigen::MatrixXd centred = reference_->weights.rowwise() - population_->mean.transpose();
    population_->cov = centred.transpose() * centred / (kReferenceUsers - 1);
    index_ = NeighbourIndex::Build(*reference_, *population_, {}).release();
  }

  static void TearDownTestSuite() {
    delete index_;
    delete population_;
    delete reference_;
    delete catalogue_;
  }

  struct User {
    Eigen::VectorXd truth;
    std::vector<Eigen::VectorXd> diffs;
  };

  // A fresh user with k random pairs.
  static User MakeUser(int k, std::mt19937_64& rng) {
    User user;
    user.truth = bench::SampleDirichlet(kD, 0.05, rng);
    for (int i = 0; i < k; ++i) {
      const bench::Comparison c = bench::RandomComparison(*catalogue_, user.truth, prompts_, rng);
      const Eigen::MatrixXd& z = catalogue_->scores[static_cast<size_t>(c.prompt)];
      user.diffs.push_back((z.row(c.chosen) - z.row(c.rejected)).transpose());
    }
    return user;
  }

  static int Favourite(const Eigen::VectorXd& w, int prompt) {
    Eigen::Index best = 0;
    (catalogue_->scores[static_cast<size_t>(prompt)] * w).maxCoeff(&best);
    return static_cast<int>(best);
  }

  // The picks two mixtures' means make on random held-out prompts: how often they agree, and
  // each one's top-1 against the user's true favourite.
  struct Picks {
    int agree = 0, exact_right = 0, index_right = 0, total = 0;
    void Score(const User& user, const Eigen::VectorXd& exact, const Eigen::VectorXd& approx,
               int prompts, std::mt19937_64& rng) {
      for (int e = 0; e < prompts; ++e) {
        const int prompt = std::uniform_int_distribution<int>(0, 599)(rng);
        const int truth = Favourite(user.truth, prompt);
        const int a = Favourite(exact, prompt);
        const int b = Favourite(approx, prompt);
        agree += a == b;
        exact_right += a == truth;
        index_right += b == truth;
        ++total;
      }
    }
    double Agreement() const { return 1.0 * agree / total; }
    double ExactTop1() const { return 1.0 * exact_right / total; }
    double IndexTop1() const { return 1.0 * index_right / total; }
  };

  static bench::Catalogue* catalogue_;
  static std::vector<int> prompts_;
  static ReferenceSet* reference_;
  static Population* population_;
  static NeighbourIndex* index_;
};

bench::Catalogue* NeighbourIndexTest::catalogue_ = nullptr;
std::vector<int> NeighbourIndexTest::prompts_;
ReferenceSet* NeighbourIndexTest::reference_ = nullptr;
Population* NeighbourIndexTest::population_ = nullptr;
NeighbourIndex* NeighbourIndexTest::index_ = nullptr;

TEST_F(NeighbourIndexTest, IndexesEveryReferenceUser) {
  EXPECT_EQ(index_->size(), kReferenceUsers);
}

// The pick the mixture's mean makes on 50 prompts per user agrees with the exact mixture's
// pick at least 95% of the time at every k, the approximation costs at most 0.01 of top-1
// against the users' true favourites, and the log-evidence is within 0.25 on average.
TEST_F(NeighbourIndexTest, RanksLikeTheExactScan) {
  const NeighbourOptions options{1.0, 256};
  for (int k : {0, 1, 2, 4, 8, 16, 32}) {
    std::mt19937_64 rng(1000 + k);
    Picks picks;
    double evidence_gap = 0;
    for (int u = 0; u < 150; ++u) {
      const User user = MakeUser(k, rng);
      const NeighbourMixture exact = MixNeighbours(user.diffs, *reference_, -1, options);
      const NeighbourMixture approx = index_->Mix(user.diffs, -1, options, rng);
      evidence_gap += std::abs(exact.log_evidence - approx.log_evidence);
      picks.Score(user, exact.mean, approx.mean, 50, rng);
    }
    std::printf("k=%2d  agreement %.3f  top-1 exact %.3f index %.3f  |evidence gap| %.3f\n", k,
                picks.Agreement(), picks.ExactTop1(), picks.IndexTop1(), evidence_gap / 150);
    EXPECT_GE(picks.Agreement(), 0.95) << "k=" << k;
    EXPECT_GE(picks.IndexTop1(), picks.ExactTop1() - 0.01) << "k=" << k;
    // The evidence only sets the hand-over's log-odds (whose prior is -6): 0.25 moves it little.
    EXPECT_LT(evidence_gap / 150, 0.25) << "k=" << k;
  }
}

// With many pairs the weight concentrates on few users, and a uniform sample misses them; the
// graph search finds them. At k = 32 and 64 the index's mixture mean is closer to the exact
// one than the mean over a uniform sample of as many users as the index weighs.
TEST_F(NeighbourIndexTest, BeatsAUniformSampleOfTheSameSizeOnceWeightConcentrates) {
  const NeighbourOptions options{1.0, 256};
  const int budget = index_->options().near + index_->options().sampled;
  for (int k : {32, 64}) {
    std::mt19937_64 rng(500 + k);
    double index_error = 0, sample_error = 0;
    for (int u = 0; u < 50; ++u) {
      const User user = MakeUser(k, rng);
      const NeighbourMixture exact = MixNeighbours(user.diffs, *reference_, -1, options);
      const NeighbourMixture approx = index_->Mix(user.diffs, -1, options, rng);
      CandidateRows uniform;
      uniform.rest = kReferenceUsers;
      for (int i = 0; i < budget; ++i) {
        uniform.sampled.push_back(std::uniform_int_distribution<int>(0, kReferenceUsers - 1)(rng));
      }
      const NeighbourMixture sampled =
          MixNeighbours(user.diffs, *reference_, -1, options, &uniform);
      index_error += (approx.mean - exact.mean).norm() / exact.mean.norm() / 50;
      sample_error += (sampled.mean - exact.mean).norm() / exact.mean.norm() / 50;
    }
    std::printf("k=%2d  relative error of the mixture mean: index %.3f, uniform sample %.3f\n", k,
                index_error, sample_error);
    EXPECT_LT(index_error, sample_error) << "k=" << k;
  }
}

TEST_F(NeighbourIndexTest, CandidatesAreDistinctFromTheExcludedUser) {
  std::mt19937_64 rng(5);
  const int self = 1234;
  const CandidateRows rows =
      index_->Candidates(reference_->weights.row(self).transpose(), self, true, rng);
  EXPECT_EQ(static_cast<int>(rows.near.size()), index_->options().near);
  EXPECT_LE(static_cast<int>(rows.sampled.size()), index_->options().sampled);
  EXPECT_EQ(rows.rest, kReferenceUsers - 1 - index_->options().near);
  const absl::flat_hash_set<int> near(rows.near.begin(), rows.near.end());
  EXPECT_EQ(near.size(), rows.near.size());
  EXPECT_FALSE(near.contains(self));
  for (int row : rows.sampled) {
    EXPECT_NE(row, self);
    EXPECT_FALSE(near.contains(row));
  }
}

// Deleted users (rows marked removed) never weigh in, through the index or the exact scan.
TEST_F(NeighbourIndexTest, RemovedRowsNeverWeighIn) {
  std::mt19937_64 rng(11);
  const User user = MakeUser(16, rng);
  NeighbourOptions options{1.0, 256};
  const NeighbourMixture before = MixNeighbours(user.diffs, *reference_, -1, options);
  std::vector<char> removed(static_cast<size_t>(kReferenceUsers), 0);
  for (const auto& [row, weight] : before.top) removed[static_cast<size_t>(row)] = 1;
  options.removed = &removed;
  options.removed_count = static_cast<int>(before.top.size());
  const NeighbourMixture exact = MixNeighbours(user.diffs, *reference_, -1, options);
  const NeighbourMixture indexed = index_->Mix(user.diffs, -1, options, rng);
  for (const NeighbourMixture* m : {&exact, &indexed}) {
    ASSERT_FALSE(m->top.empty());
    for (const auto& [row, weight] : m->top) EXPECT_EQ(removed[static_cast<size_t>(row)], 0);
  }
  EXPECT_GT((exact.mean - before.mean).norm(), 1e-6);
}

// A cold user's neighbour track, extended pair by pair, weighs the same rows as the mixture
// it stands for. Exact: the whole reference set, so it matches MixNeighbours up to the
// single-precision sums. Through the index: it ranks like the exact scan at every count, and
// its near rows hold most of the weight once the user has given 16 pairs.
TEST_F(NeighbourIndexTest, TrackFollowsTheMixturePairByPair) {
  const NeighbourOptions options{0.7, 256};
  std::mt19937_64 rng(77);
  double worst_exact = 0, index_error = 0;
  int compared = 0;
  Picks picks;
  for (int u = 0; u < 20; ++u) {
    const User user = MakeUser(40, rng);
    const std::span<const Eigen::VectorXd> all(user.diffs);
    NeighbourTrack exact = NeighbourTrack::Start({}, *reference_, nullptr, -1, options, 0);
    NeighbourTrack indexed = NeighbourTrack::Start({}, *reference_, index_, -1, options, 900 + u);
    for (int k = 1; k <= 40; ++k) {
      exact.Add(all.first(static_cast<size_t>(k)), *reference_, nullptr, options);
      indexed.Add(all.first(static_cast<size_t>(k)), *reference_, index_, options);
      const NeighbourMixture scan =
          MixNeighbours(all.first(static_cast<size_t>(k)), *reference_, -1, options);
      const NeighbourMixture tracked = exact.Mixture(*reference_, options);
      worst_exact = std::max(worst_exact, (tracked.mean - scan.mean).norm() / scan.mean.norm());
      EXPECT_NEAR(tracked.log_evidence, scan.log_evidence, 1e-3) << "k=" << k;
      EXPECT_EQ(tracked.top.front().first, scan.top.front().first) << "k=" << k;
      const NeighbourMixture approx = indexed.Mixture(*reference_, options);
      index_error += (approx.mean - scan.mean).norm() / scan.mean.norm();
      ++compared;
      picks.Score(user, scan.mean, approx.mean, 10, rng);
    }
  }
  std::printf(
      "track: worst relative error of the mean, exact %.2g; through the index: mean "
      "relative error %.3f, same pick as the scan %.3f, top-1 %.3f against %.3f\n",
      worst_exact, index_error / compared, picks.Agreement(), picks.IndexTop1(), picks.ExactTop1());
  EXPECT_LT(worst_exact, 1e-4);
  EXPECT_GE(picks.Agreement(), 0.95);
  EXPECT_GE(picks.IndexTop1(), picks.ExactTop1() - 0.01);
}

// Started from a user's pairs or extended pair by pair from the same pairs: the same track,
// bit for bit, so a cached track and a recomputed one rank alike.
TEST_F(NeighbourIndexTest, ExtendedTrackEqualsStartedTrack) {
  const NeighbourOptions options{1.0, 64};
  std::mt19937_64 rng(78);
  const User user = MakeUser(23, rng);
  const std::span<const Eigen::VectorXd> all(user.diffs);
  for (const NeighbourIndex* index :
       {static_cast<const NeighbourIndex*>(nullptr), static_cast<const NeighbourIndex*>(index_)}) {
    NeighbourTrack extended =
        NeighbourTrack::Start(all.first(1), *reference_, index, 3, options, 5);
    for (int k = 2; k <= 23; ++k) {
      NeighbourTrack copy = extended;  // as the engine carries a cached track forward
      copy.Add(all.first(static_cast<size_t>(k)), *reference_, index, options);
      extended = copy;
    }
    const NeighbourTrack started = NeighbourTrack::Start(all, *reference_, index, 3, options, 5);
    const NeighbourMixture a = extended.Mixture(*reference_, options);
    const NeighbourMixture b = started.Mixture(*reference_, options);
    EXPECT_EQ(a.log_evidence, b.log_evidence);
    EXPECT_EQ(a.mean, b.mean);
    EXPECT_EQ(a.top, b.top);
    for (const auto& [row, weight] : a.top) EXPECT_NE(row, 3);  // the user themself
    EXPECT_EQ(started.pairs(), 23);
    EXPECT_GT(started.bytes(), 0u);
  }
}

// Rows deleted after the track was started stop weighing in when it is mixed.
TEST_F(NeighbourIndexTest, TrackLeavesOutRowsRemovedLater) {
  std::mt19937_64 rng(79);
  const User user = MakeUser(12, rng);
  NeighbourOptions options{1.0, 256};
  for (const NeighbourIndex* index :
       {static_cast<const NeighbourIndex*>(nullptr), static_cast<const NeighbourIndex*>(index_)}) {
    const NeighbourTrack track =
        NeighbourTrack::Start(user.diffs, *reference_, index, -1, options, 1);
    const NeighbourMixture before = track.Mixture(*reference_, options);
    std::vector<char> removed(static_cast<size_t>(kReferenceUsers), 0);
    for (const auto& [row, weight] : before.top) removed[static_cast<size_t>(row)] = 1;
    NeighbourOptions without = options;
    without.removed = &removed;
    without.removed_count = static_cast<int>(before.top.size());
    const NeighbourMixture after = track.Mixture(*reference_, without);
    ASSERT_FALSE(after.top.empty());
    for (const auto& [row, weight] : after.top) EXPECT_EQ(removed[static_cast<size_t>(row)], 0);
    EXPECT_GT((after.mean - before.mean).norm(), 1e-6);
  }
}

// A graph changed in place finds what a graph built anew over the same vectors finds. A tenth
// of the users are replaced by new ones, and the last 1,000 rows leave (their places are
// given to nobody): the changed graph's search recall against the exact nearest neighbours
// (whitened) is within 0.02 of the rebuilt graph's and at least 0.9, and mixtures through it
// pick like the exact scan as the index always has (RanksLikeTheExactScan's tolerances).
TEST_F(NeighbourIndexTest, GraphChangedInPlaceFindsWhatARebuiltOneFinds) {
  std::mt19937_64 rng(80);
  constexpr int kLeft = kReferenceUsers - 1000;
  ReferenceSet moved;
  moved.weights = reference_->weights.topRows(kLeft);
  const Eigen::MatrixXd newcomers =
      bench::MakeReferenceWeights(kLeft / 10, kD, 0.05, 3.0, 0.3, rng);
  std::vector<int> changed;
  for (int i = 0; i < kLeft / 10; ++i) {
    const int row = i * 10 + 3;
    moved.weights.row(row) = newcomers.row(i);
    changed.push_back(row);
  }
  std::vector<int> gone;
  for (int row = kLeft; row < kReferenceUsers; ++row) gone.push_back(row);
  const std::shared_ptr<NeighbourGraph> updated =
      NeighbourGraph::Build(reference_->weights, *population_, {});
  updated->Remove(gone);
  updated->Set(moved.weights, changed);
  EXPECT_EQ(updated->live(), kLeft);
  const std::shared_ptr<NeighbourGraph> rebuilt =
      NeighbourGraph::Build(moved.weights, *population_, {});

  const Eigen::MatrixXd whitening = Eigen::LLT<Eigen::MatrixXd>(population_->cov)
                                        .matrixL()
                                        .solve(Eigen::MatrixXd::Identity(kD, kD));
  const Eigen::MatrixXd whitened =
      (moved.weights.rowwise() - population_->mean.transpose()) * whitening.transpose();
  constexpr int kNear = 256;
  double recall_updated = 0, recall_rebuilt = 0;
  constexpr int kQueries = 100;
  for (int q = 0; q < kQueries; ++q) {
    const Eigen::VectorXd centre = bench::SampleDirichlet(kD, 0.05, rng) * 3.0;
    const Eigen::VectorXd z = whitening * (centre - population_->mean);
    const Eigen::VectorXd distance = (whitened.rowwise() - z.transpose()).rowwise().squaredNorm();
    std::vector<int> order(static_cast<size_t>(kLeft));
    for (int i = 0; i < kLeft; ++i) order[static_cast<size_t>(i)] = i;
    std::partial_sort(order.begin(), order.begin() + kNear, order.end(),
                      [&](int a, int b) { return distance[a] < distance[b]; });
    const absl::flat_hash_set<int> truth(order.begin(), order.begin() + kNear);
    auto recall = [&](const NeighbourGraph& graph) {
      int found = 0;
      for (int row : graph.Search(centre, kNear)) found += truth.contains(row);
      return 1.0 * found / kNear;
    };
    recall_updated += recall(*updated) / kQueries;
    recall_rebuilt += recall(*rebuilt) / kQueries;
  }
  std::printf("recall@%d: changed in place %.3f, rebuilt %.3f\n", kNear, recall_updated,
              recall_rebuilt);
  EXPECT_GE(recall_updated, 0.9);
  EXPECT_GE(recall_updated, recall_rebuilt - 0.02);

  const NeighbourIndex index(moved, updated);
  const NeighbourOptions options{1.0, 256};
  Picks picks;
  for (int u = 0; u < 100; ++u) {
    const User user = MakeUser(8, rng);
    const NeighbourMixture exact = MixNeighbours(user.diffs, moved, -1, options);
    const NeighbourMixture approx = index.Mix(user.diffs, -1, options, rng);
    picks.Score(user, exact.mean, approx.mean, 50, rng);
  }
  EXPECT_GE(picks.Agreement(), 0.95);
  EXPECT_GE(picks.IndexTop1(), picks.ExactTop1() - 0.01);
}

// A population that has moved away from the one the graph whitens by drifts (KL); the same
// one does not.
TEST_F(NeighbourIndexTest, DriftMeasuresHowFarThePopulationMoved) {
  const std::shared_ptr<NeighbourGraph> graph =
      NeighbourGraph::Build(reference_->weights.topRows(2000), *population_, {});
  EXPECT_NEAR(graph->Drift(*population_), 0.0, 1e-9);
  Population shifted = *population_;
  shifted.mean += population_->cov.diagonal().cwiseSqrt();  // one sd along every feature
  EXPECT_GT(graph->Drift(shifted), 0.5);
  Population wider = *population_;
  wider.cov *= 1.1;
  EXPECT_GT(graph->Drift(wider), 0.0);
  EXPECT_LT(graph->Drift(wider), 0.1);
}

// When the near set and the sample together cover the whole set, the estimate is the exact
// mixture.
TEST(NeighbourIndexSmallTest, CoveringEveryUserIsExact) {
  std::mt19937_64 rng(3);
  ReferenceSet reference;
  reference.weights = Eigen::MatrixXd::Random(300, 4);
  Population population{Eigen::VectorXd::Zero(4), Eigen::MatrixXd::Identity(4, 4) / 3, 0};
  NeighbourIndexOptions options;
  options.near = 100;
  options.sampled = 512;
  const auto index = NeighbourIndex::Build(reference, population, options);
  const std::vector<Eigen::VectorXd> diffs = {Eigen::VectorXd::Random(4),
                                              Eigen::VectorXd::Random(4)};
  const CandidateRows rows = index->Candidates(Eigen::VectorXd::Zero(4), 7, true, rng);
  EXPECT_EQ(rows.near.size() + rows.sampled.size(), 299u);
  const NeighbourMixture exact = MixNeighbours(diffs, reference, 7, {1.0, 8});
  const NeighbourMixture approx = MixNeighbours(diffs, reference, 7, {1.0, 8}, &rows);
  EXPECT_LT((exact.mean - approx.mean).norm(), 1e-9);
  EXPECT_NEAR(exact.log_evidence, approx.log_evidence, 1e-9);
  ASSERT_EQ(exact.top.size(), approx.top.size());
  for (size_t i = 0; i < exact.top.size(); ++i) {
    EXPECT_EQ(exact.top[i].first, approx.top[i].first);
    EXPECT_NEAR(exact.top[i].second, approx.top[i].second, 1e-9);
  }
}

TEST(NeighbourIndexSmallTest, EmptyReferenceSetGivesNoCandidates) {
  std::mt19937_64 rng(3);
  ReferenceSet reference;
  reference.weights.resize(0, 3);
  const auto index = NeighbourIndex::Build(
      reference, {Eigen::VectorXd::Zero(3), Eigen::MatrixXd::Identity(3, 3), 0}, {});
  const CandidateRows rows = index->Candidates(Eigen::VectorXd::Zero(3), -1, true, rng);
  EXPECT_TRUE(rows.near.empty());
  EXPECT_TRUE(rows.sampled.empty());
  EXPECT_EQ(rows.rest, 0);
}

}  // namespace
}  // namespace tailor::model

// The reference pool carried across refreshes: the set follows the users offered (moved,
// added, removed), keeps a stable seeded sample when there are more users than room, leaves
// the sets it published untouched, and changes its graph in place until a threshold asks for
// a new one. Searches through an older index keep working while the graph changes.
#include "engine/reference_pool.h"

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tailor::engine {
namespace {

constexpr int kD = 4;

struct Users {
  std::vector<std::string> ids;
  std::vector<Eigen::VectorXd> means;
};

Users MakeUsers(int count, int first, std::mt19937_64& rng) {
  Users users;
  std::normal_distribution<double> normal;
  for (int i = 0; i < count; ++i) {
    users.ids.push_back(absl::StrCat("user-", first + i));
    Eigen::VectorXd mean(kD);
    for (int j = 0; j < kD; ++j) mean[j] = normal(rng);
    users.means.push_back(mean);
  }
  return users;
}

void OfferAll(ReferencePool& pool, const Users& users) {
  for (size_t i = 0; i < users.ids.size(); ++i) pool.Offer(users.ids[i], users.means[i]);
}

model::Population StandardPopulation() {
  return {Eigen::VectorXd::Zero(kD), Eigen::MatrixXd::Identity(kD, kD), 0};
}

// Every offered user has a row holding their latest mean, and every row is one of them.
void ExpectSetHolds(const ReferencePool& pool, const Users& users) {
  const model::ReferenceSet& set = *pool.reference();
  ASSERT_EQ(set.size(), static_cast<int>(users.ids.size()));
  ASSERT_EQ(pool.rows()->size(), users.ids.size());
  for (size_t i = 0; i < users.ids.size(); ++i) {
    auto found = pool.rows()->find(users.ids[i]);
    ASSERT_NE(found, pool.rows()->end()) << users.ids[i];
    EXPECT_EQ(set.user_ids[static_cast<size_t>(found->second)], users.ids[i]);
    EXPECT_EQ(set.weights.row(found->second).transpose(), users.means[i]) << users.ids[i];
  }
}

TEST(ReferencePoolTest, FollowsTheUsersOfferedAndLeavesPublishedSetsAlone) {
  std::mt19937_64 rng(1);
  ReferencePool pool({});
  Users users = MakeUsers(50, 0, rng);
  OfferAll(pool, users);
  ReferenceChanges changes = pool.Update();
  EXPECT_EQ(changes.added, 50);
  ExpectSetHolds(pool, users);

  // Nothing changed: the same set, no changes.
  const std::shared_ptr<const model::ReferenceSet> first = pool.reference();
  OfferAll(pool, users);
  changes = pool.Update();
  EXPECT_EQ(changes.added + changes.moved + changes.removed, 0);
  EXPECT_EQ(pool.reference(), first);

  // Five move, seven leave, four arrive.
  const model::ReferenceWeights before = first->weights;
  for (int i = 0; i < 5; ++i) users.means[static_cast<size_t>(i)] *= 2;
  users.ids.erase(users.ids.begin() + 10, users.ids.begin() + 17);
  users.means.erase(users.means.begin() + 10, users.means.begin() + 17);
  const Users arrivals = MakeUsers(4, 1000, rng);
  users.ids.insert(users.ids.end(), arrivals.ids.begin(), arrivals.ids.end());
  users.means.insert(users.means.end(), arrivals.means.begin(), arrivals.means.end());
  OfferAll(pool, users);
  changes = pool.Update();
  EXPECT_EQ(changes.moved, 5);
  EXPECT_EQ(changes.removed, 7);
  EXPECT_EQ(changes.added, 4);
  ExpectSetHolds(pool, users);
  EXPECT_NE(pool.reference(), first);
  EXPECT_EQ(first->weights, before);  // what was published stays as it was
  EXPECT_EQ(first->size(), 50);
}

// More users than room: the sample is the same whatever order the users come in, stays put
// while they do, and lets in a newcomer only in place of a member.
TEST(ReferencePoolTest, SampleIsStableAndIndependentOfOrder) {
  std::mt19937_64 rng(2);
  ReferencePoolOptions options;
  options.capacity = 100;
  ReferencePool forward(options), backward(options);
  Users users = MakeUsers(300, 0, rng);
  OfferAll(forward, users);
  for (int i = 299; i >= 0; --i) {
    backward.Offer(users.ids[static_cast<size_t>(i)], users.means[static_cast<size_t>(i)]);
  }
  EXPECT_EQ(forward.Update().added, 100);
  backward.Update();
  EXPECT_EQ(forward.offered(), 300u);
  const absl::flat_hash_set<std::string> a(forward.reference()->user_ids.begin(),
                                           forward.reference()->user_ids.end());
  const absl::flat_hash_set<std::string> b(backward.reference()->user_ids.begin(),
                                           backward.reference()->user_ids.end());
  EXPECT_EQ(a, b);

  OfferAll(forward, users);
  ReferenceChanges again = forward.Update();
  EXPECT_EQ(again.added + again.removed + again.moved, 0);

  const Users arrivals = MakeUsers(60, 5000, rng);
  OfferAll(forward, users);
  OfferAll(forward, arrivals);
  const ReferenceChanges grown = forward.Update();
  EXPECT_EQ(forward.reference()->size(), 100);
  EXPECT_EQ(grown.added, grown.removed);
  EXPECT_GT(grown.added, 0);  // 60 of 360 are new: about 17 of the 100 places
  EXPECT_LT(grown.added, 40);
}

// The graph is built once, then changed in place; past the changed fraction, or when the
// population moves, it is built anew. Its size follows the set.
TEST(ReferencePoolTest, GraphChangesInPlaceUntilAThresholdAsksForANewOne) {
  std::mt19937_64 rng(3);
  ReferencePoolOptions options;
  options.exact_scan_max_users = 100;
  options.rebuild_changed_fraction = 0.5;
  options.neighbour_index.near = 32;
  ReferencePool pool(options);
  Users users = MakeUsers(2000, 0, rng);
  OfferAll(pool, users);
  ReferenceChanges changes = pool.Update();
  pool.Index(StandardPopulation(), changes);
  EXPECT_TRUE(changes.rebuilt);
  ASSERT_NE(pool.index(), nullptr);
  EXPECT_EQ(pool.index()->size(), 2000);

  for (int i = 0; i < 50; ++i) users.means[static_cast<size_t>(i)] *= -1;
  users.ids.resize(1980);
  users.means.resize(1980);
  OfferAll(pool, users);
  changes = pool.Update();
  pool.Index(StandardPopulation(), changes);
  EXPECT_FALSE(changes.rebuilt);
  // 50 moved, 20 rows gone from the graph, and up to 20 rows taken by the last rows.
  EXPECT_GE(changes.graph_changes, 70);
  EXPECT_LE(changes.graph_changes, 90);
  EXPECT_EQ(pool.index()->size(), 1980);
  // A moved user is found where they are now.
  const std::vector<int> near = pool.index()->Near(users.means[7], -1, model::NeighbourOptions{});
  ASSERT_FALSE(near.empty());
  EXPECT_EQ(pool.reference()->user_ids[static_cast<size_t>(near.back())], users.ids[7]);

  // More than half the set changed since the build: a new graph.
  for (size_t i = 0; i < 1200; ++i) users.means[i] *= 0.5;
  OfferAll(pool, users);
  changes = pool.Update();
  pool.Index(StandardPopulation(), changes);
  EXPECT_TRUE(changes.rebuilt);

  // The population moved: a new graph, though no user did.
  model::Population moved = StandardPopulation();
  moved.mean.setConstant(2.0);
  OfferAll(pool, users);
  changes = pool.Update();
  pool.Index(moved, changes);
  EXPECT_TRUE(changes.rebuilt);
  EXPECT_EQ(changes.added + changes.moved + changes.removed, 0);

  // Down to a set small enough to scan: no graph.
  users.ids.resize(80);
  users.means.resize(80);
  OfferAll(pool, users);
  changes = pool.Update();
  pool.Index(moved, changes);
  EXPECT_EQ(pool.index(), nullptr);
}

// Readers search through the index of an older refresh while the next refresh changes the
// graph under it (the ThreadSanitizer pass runs this): every row they get is one of the older
// set's rows.
TEST(ReferencePoolTest, OlderIndexesServeWhileTheGraphChanges) {
  std::mt19937_64 rng(4);
  ReferencePoolOptions options;
  options.exact_scan_max_users = 100;
  options.neighbour_index.near = 32;
  ReferencePool pool(options);
  Users users = MakeUsers(3000, 0, rng);
  OfferAll(pool, users);
  ReferenceChanges changes = pool.Update();
  pool.Index(StandardPopulation(), changes);
  const std::shared_ptr<const model::ReferenceSet> old_set = pool.reference();
  const std::shared_ptr<const model::NeighbourIndex> old_index = pool.index();

  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 local(100 + t);
      std::normal_distribution<double> normal;
      while (!done) {
        Eigen::VectorXd centre(kD);
        for (int j = 0; j < kD; ++j) centre[j] = normal(local);
        for (int row : old_index->Near(centre, -1, model::NeighbourOptions{})) {
          if (row < 0 || row >= old_set->size()) ++bad;
        }
      }
    });
  }
  for (int round = 0; round < 5; ++round) {
    for (size_t i = 0; i < 200; ++i) users.means[i + 200 * static_cast<size_t>(round)] *= 1.5;
    users.ids.resize(users.ids.size() - 50);
    users.means.resize(users.means.size() - 50);
    const Users arrivals = MakeUsers(30, 10000 + 100 * round, rng);
    users.ids.insert(users.ids.end(), arrivals.ids.begin(), arrivals.ids.end());
    users.means.insert(users.means.end(), arrivals.means.begin(), arrivals.means.end());
    OfferAll(pool, users);
    changes = pool.Update();
    pool.Index(StandardPopulation(), changes);
    EXPECT_FALSE(changes.rebuilt);
  }
  done = true;
  for (std::thread& reader : readers) reader.join();
  EXPECT_EQ(bad.load(), 0);
  ExpectSetHolds(pool, users);
  EXPECT_EQ(old_set->size(), 3000);
}

}  // namespace
}  // namespace tailor::engine

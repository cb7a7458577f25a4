// Cluster shards against a real nats-server (JetStream, one node here; tests/cluster/
// test_cluster.py runs three): writes go through the log, an empty disk is rebuilt from it, a
// partition moves to a new owner (catch-up, then flip) and fences the old one off, a deleted
// user leaves nothing in the log, and shards lend each other their established users as
// cold-start neighbours and pool their population fits. Partition plans are checked on their own.
#include "cluster/shard.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cluster/nats_connection.h"
#include "cluster/partition_plan.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_inputs.h"
#include "tests/testing/nats_server.h"
#include "tests/testing/temp_dir.h"

namespace tailor::cluster {
namespace {

constexpr int kPartitions = 8;
constexpr int kDimension = 4;

// One shard: its store, engine, NATS clients and ClusterShard, closed in reverse order.
struct Shard {
  ~Shard() {
    cluster.reset();
    engine.reset();
  }
  std::unique_ptr<storage::FeedbackStore> store;
  std::unique_ptr<engine::PreferenceEngine> engine;
  std::unique_ptr<FeedbackLog> log;
  std::unique_ptr<PartitionDirectory> directory;
  std::unique_ptr<ReferenceExchange> exchange;
  std::unique_ptr<ClusterShard> cluster;
};

class ClusterShardTest : public ::testing::Test {
 protected:
  ClusterShardTest() : nats_(dir_.Sub("nats"), testing::FreePort()) {}

  std::shared_ptr<NatsConnection> Connect() {
    auto connection = NatsConnection::Connect(nats_.url(), absl::Seconds(5));
    EXPECT_TRUE(connection.ok()) << connection.status();
    return *std::move(connection);
  }
  std::unique_ptr<PartitionDirectory> Directory() {
    DirectoryOptions options;
    options.replicas = 1;
    auto directory = PartitionDirectory::Open(options, Connect());
    EXPECT_TRUE(directory.ok()) << directory.status();
    return *std::move(directory);
  }

  // Opens shard `name` on data directory `data`; `map_poll` long = a shard that does not notice
  // map changes by itself. With `started`, a shard that fails to start is not a test failure:
  // its status is stored there.
  std::unique_ptr<Shard> Open(const std::string& name, const std::string& data,
                              absl::Duration map_poll = absl::Milliseconds(20),
                              bool knowledge_by_tenant = false, absl::Status* started = nullptr) {
    auto owned = std::make_unique<Shard>();
    Shard& shard = *owned;
    storage::StoreOptions store_options;
    store_options.path = data;
    store_options.min_free_bytes = 0;
    shard.store = *storage::FeedbackStore::Open(store_options);
    engine::EngineOptions engine_options;
    engine_options.refresh_period = absl::ZeroDuration();
    engine_options.knowledge_by_tenant = knowledge_by_tenant;
    shard.engine = *engine::PreferenceEngine::Open(testing::IdentitySchema(kDimension),
                                                   *shard.store, engine_options);
    FeedbackLogOptions log_options;
    log_options.partitions = kPartitions;
    log_options.replicas = 1;
    auto log = FeedbackLog::Open(log_options, Connect());
    EXPECT_TRUE(log.ok()) << log.status();
    shard.log = *std::move(log);
    shard.directory = Directory();
    ExchangeOptions exchange_options;
    exchange_options.replicas = 1;
    // Small chunks: a sample of a few dozen users spans many (rows and calibration users).
    exchange_options.chunk_bytes = 2048;
    auto exchange = ReferenceExchange::Open(exchange_options, Connect());
    EXPECT_TRUE(exchange.ok()) << exchange.status();
    shard.exchange = *std::move(exchange);
    ShardOptions options;
    options.exchange_period = absl::Milliseconds(50);
    options.name = name;
    options.address = absl::StrCat(name, ":1");
    options.map_poll = map_poll;
    options.slow_poll = absl::Milliseconds(50);
    options.report = report_;
    auto cluster = ClusterShard::Start(*shard.engine, *shard.log, *shard.directory,
                                       shard.exchange.get(), options);
    if (started != nullptr) {
      *started = cluster.status();
    } else {
      EXPECT_TRUE(cluster.ok()) << cluster.status();
    }
    if (cluster.ok()) shard.cluster = *std::move(cluster);
    return owned;
  }

  // Writes the map that rebalancing over `shards` asks for.
  void Rebalance(const std::vector<std::string>& shards) {
    auto directory = Directory();
    MapVersion current = *directory->ReadMap();
    absl::StatusOr<v1::PartitionMap> plan = cluster::Rebalance(current.map, kPartitions, shards);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_TRUE(directory->CompareAndSetMap(*plan, current.revision).ok());
  }

  // Waits until `done` holds (the shards' loops act within tens of milliseconds).
  template <typename Done>
  static bool Eventually(Done done) {
    for (int i = 0; i < 400; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return done();
  }

  // Event `i` of `user` (features drawn from a seed of both, so a resend is identical).
  struct Event {
    std::vector<float> chosen, rejected;
    engine::FeedbackInput input;
  };
  static Event MakeEvent(const std::string& user, int i) {
    Event e;
    std::mt19937_64 rng(std::hash<std::string>()(user) + static_cast<uint64_t>(i));
    e.chosen = testing::RandomFeatures(kDimension, rng);
    e.rejected = testing::RandomFeatures(kDimension, rng);
    e.input.user_id = user;
    e.input.event_id = absl::StrCat("e", i);
    e.input.chosen = {"a", e.chosen};
    e.input.rejected = {"b", e.rejected};
    return e;
  }

  static std::vector<std::string> Users(int n, const std::string& tenant = "tenant") {
    std::vector<std::string> users;
    for (int u = 0; u < n; ++u) users.push_back(absl::StrCat(tenant, "/user-", u));
    return users;
  }

  // Feedback through whichever shard owns the user.
  static void Write(std::vector<Shard*> shards, const std::string& user, int i) {
    Event e = MakeEvent(user, i);
    for (Shard* s : shards) {
      absl::StatusOr<ClusterShard::Owner> owner = s->cluster->OwnerOf(user);
      if (!owner.ok() || !owner->local) continue;
      absl::StatusOr<engine::FeedbackResult> r = s->cluster->RecordFeedback(e.input);
      ASSERT_TRUE(r.ok()) << r.status();
      return;
    }
    FAIL() << "no shard owns " << user;
  }

  // event ids of the user's history on `shard` (empty: not there).
  static std::vector<std::string> History(Shard& shard, const std::string& user) {
    std::vector<std::string> ids;
    absl::StatusOr<engine::UserExport> exported = shard.engine->ExportUser(user);
    if (!exported.ok()) return ids;
    for (const auto& r : exported->history) ids.push_back(r.event_id());
    return ids;
  }

  testing::TempDir dir_;
  testing::NatsServer nats_;
  std::function<void(const absl::Status&)> report_;  // for the shards opened from now on
};

TEST_F(ClusterShardTest, WritesGoThroughTheLogAndAnEmptyDiskIsRebuiltFromIt) {
  const std::vector<std::string> users = Users(12);
  // The learned state (the served mix also depends on the live safety net, which learns from
  // events in arrival order and starts afresh with every process).
  std::map<std::string, storage::records::UserState> before;
  {
    std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"));
    // No map yet: nobody owns anything.
    EXPECT_EQ(a->cluster->OwnerOf(users[0]).status().code(), absl::StatusCode::kUnavailable);
    Rebalance({"a"});
    ASSERT_TRUE(Eventually([&] { return a->cluster->Stats().owned == kPartitions; }));
    for (int i = 0; i < 10; ++i) {
      for (const std::string& u : users) Write({a.get()}, u, i);
    }
    // A resend is a duplicate, appended once.
    Event again = MakeEvent(users[0], 3);
    absl::StatusOr<engine::FeedbackResult> duplicate = a->cluster->RecordFeedback(again.input);
    ASSERT_TRUE(duplicate.ok()) << duplicate.status();
    EXPECT_TRUE(duplicate->duplicate);
    // Invalid input is refused and never reaches the log.
    Event bad = MakeEvent(users[1], 99);
    bad.input.rejected = bad.input.chosen;
    EXPECT_EQ(a->cluster->RecordFeedback(bad.input).status().code(),
              absl::StatusCode::kInvalidArgument);
    for (const std::string& u : users) before[u] = **a->store->ReadState(u);
  }
  std::filesystem::remove_all(dir_.Sub("a"));
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"));
  for (const std::string& u : users) {
    std::vector<std::string> expected;
    for (int i = 0; i < 10; ++i) expected.push_back(absl::StrCat("e", i));
    EXPECT_EQ(History(*a, u), expected) << u;
    const storage::records::UserState after = **a->store->ReadState(u);
    EXPECT_EQ(after.feedback_count(), 10u);
    EXPECT_EQ(after.SerializeAsString(), before[u].SerializeAsString()) << u;
  }
  // Every entry was replayed: 120 events and the handoff.
  EXPECT_GE(a->cluster->Stats().replayed_entries, 121u);
}

TEST_F(ClusterShardTest, APartitionMovesWithItsUsersAndTheOldOwnerIsFencedOff) {
  const std::vector<std::string> users = Users(24);
  // "a" reads the map once an hour: it only learns of the move from the log.
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"), absl::Hours(1));
  Rebalance({"a"});
  // Its first read of the map was before the map existed: take over by hand.
  std::unique_ptr<Shard> b = Open("b", dir_.Sub("b"));
  ASSERT_TRUE(a->cluster->Stats().owned == 0);
  a.reset();
  a = Open("a", dir_.Sub("a"), absl::Hours(1));
  ASSERT_EQ(a->cluster->Stats().owned, kPartitions);
  for (int i = 0; i < 6; ++i) {
    for (const std::string& u : users) Write({a.get()}, u, i);
  }
  Rebalance({"a", "b"});
  ASSERT_TRUE(Eventually([&] { return b->cluster->Stats().owned == kPartitions / 2; }));
  auto directory = Directory();
  const MapVersion map = *directory->ReadMap();
  int moved_users = 0;
  for (const std::string& u : users) {
    const int p = FeedbackLog::PartitionOf(u, kPartitions);
    EXPECT_TRUE(map.map.assignments(p).moving_to().empty());
    if (map.map.assignments(p).owner() != "b") continue;
    ++moved_users;
    // The new owner has the whole history and the same estimate.
    EXPECT_EQ(History(*b, u).size(), 6u) << u;
    EXPECT_EQ((*b->store->ReadState(u))->SerializeAsString(),
              (*a->store->ReadState(u))->SerializeAsString());
    // The old owner has not noticed (its map is an hour old), but the log fences it off.
    Event e = MakeEvent(u, 6);
    absl::StatusOr<engine::FeedbackResult> refused = a->cluster->RecordFeedback(e.input);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kAborted) << refused.status();
    absl::StatusOr<engine::FeedbackResult> accepted = b->cluster->RecordFeedback(e.input);
    ASSERT_TRUE(accepted.ok()) << accepted.status();
    EXPECT_FALSE(accepted->duplicate);
    EXPECT_EQ(accepted->user_feedback_count, 7u);
  }
  EXPECT_GT(moved_users, 0);
  // Once "a" reads the map, it drops what it gave away.
  a.reset();
  a = Open("a", dir_.Sub("a"));
  for (const std::string& u : users) {
    const bool on_b = map.map.assignments(FeedbackLog::PartitionOf(u, kPartitions)).owner() == "b";
    EXPECT_EQ(History(*a, u).empty(), on_b) << u;
  }
}

TEST_F(ClusterShardTest, ADeletedUserLeavesNothingInTheLog) {
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"));
  Rebalance({"a"});
  ASSERT_TRUE(Eventually([&] { return a->cluster->Stats().owned == kPartitions; }));
  const std::vector<std::string> users = Users(6);
  for (int i = 0; i < 5; ++i) {
    for (const std::string& u : users) Write({a.get()}, u, i);
  }
  absl::StatusOr<storage::DeletedUser> deleted = a->cluster->DeleteUser(users[2]);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->history_records, 5u);
  std::map<std::string, int> logged;
  for (int p = 0; p < kPartitions; ++p) {
    ASSERT_TRUE(a->log
                    ->Replay(p, 0,
                             [&](uint64_t, absl::string_view payload) {
                               v1::LogEntry entry;
                               EXPECT_TRUE(entry.ParseFromArray(payload.data(),
                                                                static_cast<int>(payload.size())));
                               if (entry.has_feedback()) ++logged[entry.feedback().user_id()];
                               EXPECT_EQ(std::string(payload).find("user-2"), std::string::npos);
                               return true;
                             })
                    .ok());
  }
  EXPECT_EQ(logged.count(users[2]), 0u);
  EXPECT_EQ(logged[users[3]], 5);
  // A rebuilt shard does not bring the user back.
  a.reset();
  std::filesystem::remove_all(dir_.Sub("a"));
  a = Open("a", dir_.Sub("a"));
  EXPECT_TRUE(History(*a, users[2]).empty());
  EXPECT_EQ(History(*a, users[3]).size(), 5u);
}

// A newer release may log entries of a kind this one does not know (a rolling upgrade). Skipping
// one could drop acknowledged feedback without a word: its partition stops there instead, with
// an error that says why; a running shard's other partitions carry on, and a restarted shard
// refuses to start until it is upgraded.
TEST_F(ClusterShardTest, AnEntryOfAKindThisReleaseDoesNotKnowStopsItsPartition) {
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"));
  Rebalance({"a"});
  ASSERT_TRUE(Eventually([&] { return a->cluster->Stats().owned == kPartitions; }));
  const std::vector<std::string> users = Users(24);
  const std::string& user = users[0];
  const int partition = FeedbackLog::PartitionOf(user, kPartitions);
  std::string other;  // a user of another partition
  for (const std::string& u : users) {
    if (FeedbackLog::PartitionOf(u, kPartitions) != partition) other = u;
  }
  ASSERT_FALSE(other.empty());
  Write({a.get()}, user, 0);

  // Field 15 of LogEntry, which this release does not have: "x".
  const std::string unknown_kind("\x7a\x01x", 3);
  v1::LogEntry parsed;
  ASSERT_TRUE(parsed.ParseFromString(unknown_kind));
  ASSERT_EQ(parsed.entry_case(), v1::LogEntry::ENTRY_NOT_SET);
  FeedbackLogOptions log_options;
  log_options.partitions = kPartitions;
  log_options.replicas = 1;
  absl::StatusOr<std::unique_ptr<FeedbackLog>> newer = FeedbackLog::Open(log_options, Connect());
  ASSERT_TRUE(newer.ok()) << newer.status();
  const absl::StatusOr<uint64_t> last = (*newer)->LastSequence(partition);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE((*newer)->Append(partition, "newer-release-1", unknown_kind, *last).ok());

  const Event next = MakeEvent(user, 1);
  const absl::StatusOr<engine::FeedbackResult> refused = a->cluster->RecordFeedback(next.input);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find("written by a newer release"), std::string::npos)
      << refused.status();
  EXPECT_EQ(History(*a, user), std::vector<std::string>{"e0"});
  // Refused again, not skipped on a second try.
  EXPECT_EQ(a->cluster->RecordFeedback(next.input).status().code(),
            absl::StatusCode::kFailedPrecondition);
  Write({a.get()}, other, 0);
  EXPECT_EQ(History(*a, other), std::vector<std::string>{"e0"});

  // Restarted, the shard refuses to start with the same error (its operator upgrades it).
  a.reset();
  absl::Status started;
  a = Open("a", dir_.Sub("a"), absl::Milliseconds(20), false, &started);
  EXPECT_EQ(started.code(), absl::StatusCode::kFailedPrecondition) << started;
  EXPECT_NE(started.message().find("upgrade this shard"), std::string::npos) << started;
  EXPECT_EQ(History(*a, user), std::vector<std::string>{"e0"});
  a.reset();

  // A running shard given the partition cannot take it, and says why in its reports (tailord
  // logs them), once a minute rather than at every pass; it takes the others.
  std::mutex mu;
  std::vector<std::string> reports;
  report_ = [&](const absl::Status& status) {
    std::lock_guard<std::mutex> lock(mu);
    reports.push_back(status.ToString());
  };
  std::unique_ptr<Shard> b = Open("b", dir_.Sub("b"));
  Rebalance({"b"});
  auto newer_release_reports = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return std::count_if(reports.begin(), reports.end(), [](const std::string& r) {
      return r.find("written by a newer release") != std::string::npos;
    });
  };
  ASSERT_TRUE(Eventually([&] { return newer_release_reports() > 0; }));
  EXPECT_TRUE(Eventually([&] { return b->cluster->Stats().owned == kPartitions - 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // many passes of 20 ms
  EXPECT_EQ(newer_release_reports(), 1);
  EXPECT_EQ(History(*b, other), std::vector<std::string>{"e0"});
  EXPECT_EQ(History(*b, user), std::vector<std::string>{"e0"});  // up to the unknown entry
  b.reset();
  report_ = nullptr;
}

TEST_F(ClusterShardTest, ShardsLendEachOtherTheirEstablishedUsersAsNeighbours) {
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"));
  std::unique_ptr<Shard> b = Open("b", dir_.Sub("b"));
  Rebalance({"a", "b"});
  ASSERT_TRUE(Eventually(
      [&] { return a->cluster->Stats().owned + b->cluster->Stats().owned == kPartitions; }));
  // Established users (16 pairs) on both shards.
  const std::vector<std::string> users = Users(30);
  for (int i = 0; i < 16; ++i) {
    for (const std::string& u : users) Write({a.get(), b.get()}, u, i);
  }
  const uint64_t on_a = a->engine->Stats().established_users;
  const uint64_t on_b = b->engine->Stats().established_users;
  ASSERT_GT(on_a, 0u);
  ASSERT_GT(on_b, 0u);
  ASSERT_EQ(on_a + on_b, 30u);
  ASSERT_TRUE(Eventually([&] {
    return a->cluster->Stats().borrowed_references == on_b &&
           b->cluster->Stats().borrowed_references == on_a;
  }));
  // After a refresh each shard's neighbours are every established user of the cluster.
  a->engine->RefreshKnowledge();
  EXPECT_EQ(a->engine->Stats().reference_users, 30u);
  // And, once b has fitted its population and published it, a's prior pools both shards'.
  b->engine->RefreshKnowledge();
  ASSERT_EQ(a->engine->LocalPopulations().size(), 1u);
  EXPECT_EQ(a->engine->LocalPopulations()[0].population.users, on_a);
  EXPECT_TRUE(Eventually([&] {
    a->engine->RefreshKnowledge();
    return a->engine->Stats().population_users == 30u;
  }));
  // A deleted user leaves the other shard's borrowed set at the next exchange.
  std::string deleted;
  for (const std::string& u : users) {
    if (a->cluster->OwnerOf(u)->local) deleted = u;
  }
  ASSERT_TRUE(a->cluster->DeleteUser(deleted).ok());
  EXPECT_TRUE(Eventually([&] { return b->cluster->Stats().borrowed_references == on_a - 1; }));
}

TEST_F(ClusterShardTest, ShardsFitTrustOnEachOthersHeldOutUsersToo) {
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"));
  std::unique_ptr<Shard> b = Open("b", dir_.Sub("b"));
  Rebalance({"a", "b"});
  ASSERT_TRUE(Eventually(
      [&] { return a->cluster->Stats().owned + b->cluster->Stats().owned == kPartitions; }));
  const std::vector<std::string> users = Users(80);
  for (int i = 0; i < 16; ++i) {
    for (const std::string& u : users) Write({a.get(), b.get()}, u, i);
  }
  ASSERT_TRUE(Eventually([&] {
    return a->cluster->Stats().borrowed_references + b->cluster->Stats().borrowed_references == 80u;
  }));
  // Each shard fits trust on the held-out half of its own users and lends them.
  b->engine->RefreshKnowledge();
  const std::vector<engine::ExternalCalibrationUser> lent_by_b =
      b->engine->CalibrationSample(1000, "b/");
  ASSERT_GT(lent_by_b.size(), 0u);
  EXPECT_EQ(static_cast<int>(lent_by_b.size()), b->engine->Trust().trust.calibration_users);
  for (const engine::ExternalCalibrationUser& u : lent_by_b) {
    EXPECT_EQ(u.id[0], engine::kExternalIdPrefix);
    EXPECT_EQ(u.id.find("user-"), std::string::npos);  // digests, not user ids
    EXPECT_FALSE(u.user.feedback.empty());
    EXPECT_FALSE(u.user.held_out.empty());
  }
  ASSERT_TRUE(Eventually(
      [&] { return a->cluster->Stats().borrowed_calibration_users == lent_by_b.size(); }));
  // a fits its trust on its own held-out users and on b's, read back from the exchange.
  a->engine->RefreshKnowledge();
  const size_t own = a->engine->CalibrationSample(1000, "a/").size();
  ASSERT_GT(own, 0u);
  EXPECT_EQ(a->engine->Trust().trust.calibration_users, static_cast<int>(own + lent_by_b.size()));
  // What a lends is its own held-out users only (half its users), never b's it fitted with.
  EXPECT_EQ(own, a->engine->Stats().established_users / 2);
  // And its population fitted without them, for b's calibration prior.
  ASSERT_EQ(a->engine->LocalPopulations().size(), 1u);
  EXPECT_EQ(a->engine->LocalPopulations()[0].calibration.users,
            a->engine->LocalPopulations()[0].population.users - own);
}

TEST_F(ClusterShardTest, WithKnowledgePerTenantShardsLendUsersOnlyToTheirOwnTenant) {
  const absl::Duration poll = absl::Milliseconds(20);
  std::unique_ptr<Shard> a = Open("a", dir_.Sub("a"), poll, /*knowledge_by_tenant=*/true);
  std::unique_ptr<Shard> b = Open("b", dir_.Sub("b"), poll, /*knowledge_by_tenant=*/true);
  Rebalance({"a", "b"});
  ASSERT_TRUE(Eventually(
      [&] { return a->cluster->Stats().owned + b->cluster->Stats().owned == kPartitions; }));
  std::vector<std::string> users = Users(20, "t1");
  for (const std::string& u : Users(20, "t2")) users.push_back(u);
  for (int i = 0; i < 16; ++i) {
    for (const std::string& u : users) Write({a.get(), b.get()}, u, i);
  }
  ASSERT_EQ(a->engine->Stats().established_users + b->engine->Stats().established_users, 40u);
  for (Shard* s : {a.get(), b.get()}) s->engine->RefreshKnowledge();
  // Each shard's knowledge of each tenant comes to that tenant's users on both shards: its
  // neighbours and its pooled prior; never the other tenant's.
  EXPECT_TRUE(Eventually([&] {
    a->engine->RefreshKnowledge();
    return a->engine->KnowledgeOf("t1").reference_users == 20u &&
           a->engine->KnowledgeOf("t2").reference_users == 20u &&
           a->engine->KnowledgeOf("t1").population_users == 20u &&
           a->engine->KnowledgeOf("t2").population_users == 20u;
  })) << a->engine->KnowledgeOf("t1").reference_users
      << " " << a->engine->KnowledgeOf("t2").reference_users << " "
      << a->engine->KnowledgeOf("t1").population_users << " "
      << a->engine->KnowledgeOf("t2").population_users;
  EXPECT_EQ(a->engine->Stats().reference_users, 40u);
}

TEST(PartitionPlanTest, RebalancingSpreadsEvenlyAndMovesLittle) {
  absl::StatusOr<v1::PartitionMap> three = Rebalance({}, 64, {"a", "b", "c"});
  ASSERT_TRUE(three.ok()) << three.status();
  std::map<std::string, int> owned;
  for (const auto& a : three->assignments()) {
    EXPECT_TRUE(a.moving_to().empty());  // nothing owned before: assigned directly
    ++owned[a.owner()];
  }
  EXPECT_EQ(owned, (std::map<std::string, int>{{"a", 22}, {"b", 21}, {"c", 21}}));
  // A fourth shard gets a quarter, each moving from a current owner.
  absl::StatusOr<v1::PartitionMap> four = Rebalance(*three, 64, {"a", "b", "c", "d"});
  ASSERT_TRUE(four.ok());
  int moving = 0;
  for (const auto& a : four->assignments()) {
    if (a.moving_to().empty()) continue;
    ++moving;
    EXPECT_EQ(a.moving_to(), "d");
  }
  EXPECT_EQ(moving, 16);
  // Draining "a" moves all it owns, to the others.
  absl::StatusOr<v1::PartitionMap> drained = Drain(*three, 64, {"a", "b", "c"}, "a");
  ASSERT_TRUE(drained.ok());
  for (const auto& a : drained->assignments()) {
    EXPECT_NE(a.moving_to(), "a");
    if (a.owner() == "a") {
      EXPECT_FALSE(a.moving_to().empty());
    }
  }
  // A partition whose owner is gone for good is assigned directly.
  absl::StatusOr<v1::PartitionMap> without_c = Rebalance(*three, 64, {"a", "b"});
  ASSERT_TRUE(without_c.ok());
  for (int p = 0; p < 64; ++p) {
    if (three->assignments(p).owner() == "c") {
      EXPECT_NE(without_c->assignments(p).owner(), "c");
      EXPECT_TRUE(without_c->assignments(p).moving_to().empty());
    }
  }
  EXPECT_FALSE(Rebalance(*drained, 64, {"a"}).ok());  // nobody left to own
}

}  // namespace
}  // namespace tailor::cluster

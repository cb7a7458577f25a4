#include "client/cluster_commands.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/router_config.h"
#include "cluster/feedback_log.h"
#include "cluster/nats_connection.h"
#include "cluster/partition_directory.h"
#include "cluster/partition_plan.h"
#include "cluster/reference_exchange.h"
#include "google/protobuf/util/json_util.h"

namespace tailor::client {
namespace {

using cluster::MapVersion;
using cluster::PartitionDirectory;

constexpr int kUsageError = 64;
// Compare-and-set attempts against shards flipping the map meanwhile.
constexpr int kWriteAttempts = 10;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tailorctl: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return static_cast<int>(status.code());
}

std::vector<std::string> Names(const std::map<std::string, cluster::v1::ShardRecord>& shards) {
  std::vector<std::string> names;
  for (const auto& [name, record] : shards) names.push_back(name);
  return names;
}

int MovesInProgress(const cluster::v1::PartitionMap& map) {
  return static_cast<int>(std::count_if(map.assignments().begin(), map.assignments().end(),
                                        [](const auto& a) { return !a.moving_to().empty(); }));
}

int Status(PartitionDirectory& directory, bool json) {
  absl::StatusOr<MapVersion> map = directory.ReadMap();
  if (!map.ok()) return Fail(map.status());
  absl::StatusOr<std::map<std::string, cluster::v1::ShardRecord>> shards = directory.Shards();
  if (!shards.ok()) return Fail(shards.status());
  if (json) {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    std::string map_json, shards_json;
    cluster::v1::ShardDirectory directory_message;
    directory_message.mutable_shards()->insert(shards->begin(), shards->end());
    (void)google::protobuf::util::MessageToJsonString(map->map, &map_json, options);
    (void)google::protobuf::util::MessageToJsonString(directory_message, &shards_json, options);
    std::printf("{\"revision\": %llu, \"map\": %s, \"directory\": %s}\n",
                static_cast<unsigned long long>(map->revision), map_json.c_str(),
                shards_json.c_str());
    return 0;
  }
  if (map->revision == 0) {
    std::printf("no partition map yet: 'tailorctl cluster rebalance' assigns the partitions\n");
  } else {
    std::printf("partition map revision %llu, %d partitions\n",
                static_cast<unsigned long long>(map->revision), map->map.assignments_size());
  }
  std::map<std::string, std::pair<int, int>> counts;  // shard -> (owned, receiving)
  int unowned = 0;
  for (int p = 0; p < map->map.assignments_size(); ++p) {
    const cluster::v1::Assignment& a = map->map.assignments(p);
    if (a.owner().empty()) {
      ++unowned;
    } else {
      ++counts[a.owner()].first;
    }
    if (!a.moving_to().empty()) {
      ++counts[a.moving_to()].second;
      std::printf("  moving: partition %d %s -> %s\n", p, a.owner().c_str(), a.moving_to().c_str());
    }
  }
  for (const auto& [name, record] : *shards) counts[name];
  std::printf("%-20s %-28s %6s %9s %s\n", "SHARD", "ADDRESS", "OWNED", "RECEIVING", "STATE");
  for (const auto& [name, count] : counts) {
    auto record = shards->find(name);
    const bool draining = std::find(map->map.draining().begin(), map->map.draining().end(), name) !=
                          map->map.draining().end();
    std::printf("%-20s %-28s %6d %9d %s\n", name.c_str(),
                record == shards->end() ? "(not registered)" : record->second.address().c_str(),
                count.first, count.second, draining ? "draining" : "");
  }
  if (unowned > 0) std::printf("UNOWNED partitions: %d (their users get UNAVAILABLE)\n", unowned);
  return 0;
}

// Reads the map, plans with `plan`, writes by compare-and-set; again if a shard flipped it
// meanwhile.
template <typename Plan>
int Change(PartitionDirectory& directory, int partitions, Plan plan) {
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    absl::StatusOr<MapVersion> map = directory.ReadMap();
    if (!map.ok()) return Fail(map.status());
    absl::StatusOr<std::map<std::string, cluster::v1::ShardRecord>> shards = directory.Shards();
    if (!shards.ok()) return Fail(shards.status());
    const int count = map->revision == 0 ? partitions : map->map.assignments_size();
    absl::StatusOr<cluster::v1::PartitionMap> next = plan(map->map, count, Names(*shards));
    if (!next.ok()) return Fail(next.status());
    absl::StatusOr<uint64_t> written = directory.CompareAndSetMap(*next, map->revision);
    if (written.ok()) {
      std::printf("partition map revision %llu: %d partitions moving\n",
                  static_cast<unsigned long long>(*written), MovesInProgress(*next));
      return 0;
    }
    if (written.status().code() != absl::StatusCode::kAborted) return Fail(written.status());
  }
  return Fail(absl::AbortedError("the partition map kept changing; try again"));
}

int PrintRouterConfig(PartitionDirectory& directory, const ClusterFlags& flags) {
  RouterConfigInput input;
  absl::StatusOr<MapVersion> map = directory.ReadMap();
  if (!map.ok()) return Fail(map.status());
  absl::StatusOr<std::map<std::string, cluster::v1::ShardRecord>> shards = directory.Shards();
  if (!shards.ok()) return Fail(shards.status());
  input.map_revision = map->revision;
  input.map = map->map;
  input.shards = *std::move(shards);
  input.listen = flags.listen;
  absl::StatusOr<std::string> config = RouterConfig(input, flags.format);
  if (!config.ok()) return Fail(config.status());
  std::fputs(config->c_str(), stdout);
  return 0;
}

int Wait(PartitionDirectory& directory, int seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    absl::StatusOr<MapVersion> map = directory.ReadMap();
    if (!map.ok()) return Fail(map.status());
    const int moving = MovesInProgress(map->map);
    if (moving == 0) {
      std::printf("no moves in progress (revision %llu)\n",
                  static_cast<unsigned long long>(map->revision));
      return 0;
    }
    if (std::chrono::steady_clock::now() > until) {
      return Fail(absl::DeadlineExceededError(
          absl::StrCat(moving, " partitions still moving after ", seconds, " s")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int RemoveShard(PartitionDirectory& directory, cluster::ReferenceExchange& exchange,
                const std::string& shard) {
  for (int attempt = 0; attempt < kWriteAttempts; ++attempt) {
    absl::StatusOr<MapVersion> map = directory.ReadMap();
    if (!map.ok()) return Fail(map.status());
    for (const cluster::v1::Assignment& a : map->map.assignments()) {
      if (a.owner() == shard || a.moving_to() == shard) {
        return Fail(absl::FailedPreconditionError(absl::StrCat(
            "shard ", shard, " still owns or receives partitions: 'tailorctl cluster drain-shard ",
            shard, "', wait for the moves, then remove it")));
      }
    }
    cluster::v1::PartitionMap next = map->map;
    next.clear_draining();
    for (const std::string& name : map->map.draining()) {
      if (name != shard) next.add_draining(name);
    }
    absl::StatusOr<uint64_t> written = directory.CompareAndSetMap(next, map->revision);
    if (written.ok()) {
      if (absl::Status s = directory.ForgetShard(shard); !s.ok()) return Fail(s);
      // Its sample of users leaves the other shards' neighbours at their next exchange.
      if (absl::Status s = exchange.Forget(shard); !s.ok()) return Fail(s);
      std::printf("shard %s removed; it owns nothing and may be stopped\n", shard.c_str());
      return 0;
    }
    if (written.status().code() != absl::StatusCode::kAborted) return Fail(written.status());
  }
  return Fail(absl::AbortedError("the partition map kept changing; try again"));
}

}  // namespace

int ClusterCommand(const std::vector<std::string>& args, const ClusterFlags& flags) {
  if (args.empty()) {
    std::fprintf(stderr,
                 "tailorctl cluster: status | rebalance | add-shard NAME | drain-shard "
                 "NAME | remove-shard NAME | wait | router-config\n");
    return kUsageError;
  }
  absl::StatusOr<std::unique_ptr<cluster::NatsConnection>> nats =
      cluster::NatsConnection::Connect(flags.nats, absl::Seconds(5), flags.nats_tls);
  if (!nats.ok()) return Fail(nats.status());
  std::shared_ptr<cluster::NatsConnection> connection = *std::move(nats);
  cluster::DirectoryOptions options;
  options.replicas = flags.replicas;
  absl::StatusOr<std::unique_ptr<PartitionDirectory>> directory =
      PartitionDirectory::Open(options, connection);
  if (!directory.ok()) return Fail(directory.status());
  PartitionDirectory& d = **directory;
  const std::string& command = args[0];
  if (command == "status" && args.size() == 1) return Status(d, flags.json);
  if (command == "wait" && args.size() == 1) return Wait(d, flags.wait_seconds);
  if (command == "router-config" && args.size() == 1) return PrintRouterConfig(d, flags);
  if (command == "rebalance" && args.size() == 1) {
    return Change(d, flags.partitions, [](const auto& map, int partitions, const auto& shards) {
      return cluster::Rebalance(map, partitions, shards);
    });
  }
  if (command == "add-shard" && args.size() == 2) {
    // A shard registers itself when it starts; adding it is rebalancing onto it.
    return Change(
        d, flags.partitions,
        [&](const auto& map, int partitions,
            const auto& shards) -> absl::StatusOr<cluster::v1::PartitionMap> {
          if (std::find(shards.begin(), shards.end(), args[1]) == shards.end()) {
            return absl::FailedPreconditionError(absl::StrCat(
                "shard ", args[1], " is not registered: start it with --cluster_nats first"));
          }
          return cluster::Rebalance(map, partitions, shards);
        });
  }
  if (command == "drain-shard" && args.size() == 2) {
    return Change(d, flags.partitions, [&](const auto& map, int partitions, const auto& shards) {
      return cluster::Drain(map, partitions, shards, args[1]);
    });
  }
  if (command == "remove-shard" && args.size() == 2) {
    cluster::ExchangeOptions exchange_options;
    exchange_options.replicas = flags.replicas;
    absl::StatusOr<std::unique_ptr<cluster::ReferenceExchange>> exchange =
        cluster::ReferenceExchange::Open(exchange_options, connection);
    if (!exchange.ok()) return Fail(exchange.status());
    return RemoveShard(d, **exchange, args[1]);
  }
  std::fprintf(stderr, "tailorctl cluster: unknown command or wrong arguments: '%s'\n",
               command.c_str());
  return kUsageError;
}

}  // namespace tailor::client

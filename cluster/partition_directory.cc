#include "cluster/partition_directory.h"

#include <nats/nats.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "cluster/nats_connection.h"

namespace tailor::cluster {
namespace {

constexpr char kMapKey[] = "map";
constexpr char kShardsKey[] = "shards";

}  // namespace

PartitionDirectory::PartitionDirectory(std::shared_ptr<NatsConnection> nats, kvStore* kv)
    : nats_(std::move(nats)), kv_(kv) {}

PartitionDirectory::~PartitionDirectory() { kvStore_Destroy(kv_); }

absl::StatusOr<std::unique_ptr<PartitionDirectory>> PartitionDirectory::Open(
    const DirectoryOptions& options, std::shared_ptr<NatsConnection> nats) {
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, nats->js(), options.bucket.c_str());
  if (s == NATS_NOT_FOUND) {
    kvConfig config;
    kvConfig_Init(&config);
    config.Bucket = options.bucket.c_str();
    config.Description = "Tailor cluster: partition map and shard addresses";
    config.History = 1;
    config.StorageType = js_FileStorage;
    config.Replicas = options.replicas;
    s = js_CreateKeyValue(&kv, nats->js(), &config);
  }
  if (s != NATS_OK) {
    return FromNats(s, static_cast<jsErrCode>(0), "open KV bucket " + options.bucket);
  }
  return std::unique_ptr<PartitionDirectory>(new PartitionDirectory(std::move(nats), kv));
}

absl::StatusOr<MapVersion> PartitionDirectory::ReadMap() {
  kvEntry* entry = nullptr;
  const natsStatus s = kvStore_Get(&entry, kv_, kMapKey);
  if (s == NATS_NOT_FOUND) return MapVersion{};
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "read the partition map");
  MapVersion version;
  version.revision = kvEntry_Revision(entry);
  const bool parsed = version.map.ParseFromArray(kvEntry_Value(entry), kvEntry_ValueLen(entry));
  kvEntry_Destroy(entry);
  if (!parsed) return absl::DataLossError("cluster: the partition map cannot be decoded");
  return version;
}

absl::StatusOr<uint64_t> PartitionDirectory::CompareAndSetMap(const v1::PartitionMap& map,
                                                              uint64_t revision) {
  const std::string value = map.SerializeAsString();
  uint64_t written = 0;
  const natsStatus s = revision == 0 ? kvStore_Create(&written, kv_, kMapKey, value.data(),
                                                      static_cast<int>(value.size()))
                                     : kvStore_Update(&written, kv_, kMapKey, value.data(),
                                                      static_cast<int>(value.size()), revision);
  if (s == NATS_OK) return written;
  // libnats reports a revision conflict as a plain error: tell it apart by reading again.
  absl::StatusOr<MapVersion> now = ReadMap();
  if (now.ok() && now->revision != revision) {
    return absl::AbortedError(absl::StrCat("cluster: the partition map changed (revision ",
                                           revision, " is now ", now->revision,
                                           "); read it again"));
  }
  return FromNats(s, static_cast<jsErrCode>(0), "write the partition map");
}

absl::StatusOr<std::pair<v1::ShardDirectory, uint64_t>> PartitionDirectory::ReadShards() {
  std::pair<v1::ShardDirectory, uint64_t> read;
  kvEntry* entry = nullptr;
  const natsStatus s = kvStore_Get(&entry, kv_, kShardsKey);
  if (s == NATS_NOT_FOUND) return read;
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "read the shard addresses");
  read.second = kvEntry_Revision(entry);
  const bool parsed = read.first.ParseFromArray(kvEntry_Value(entry), kvEntry_ValueLen(entry));
  kvEntry_Destroy(entry);
  if (!parsed) return absl::DataLossError("cluster: the shard addresses cannot be decoded");
  return read;
}

absl::Status PartitionDirectory::ChangeShards(absl::FunctionRef<void(v1::ShardDirectory&)> change) {
  // Shards register concurrently: read, change, compare-and-set, again on a conflict.
  absl::Status status;
  for (int attempt = 0; attempt < 20; ++attempt) {
    absl::StatusOr<std::pair<v1::ShardDirectory, uint64_t>> read = ReadShards();
    if (!read.ok()) return read.status();
    change(read->first);
    const std::string value = read->first.SerializeAsString();
    uint64_t written = 0;
    const natsStatus s = read->second == 0
                             ? kvStore_Create(&written, kv_, kShardsKey, value.data(),
                                              static_cast<int>(value.size()))
                             : kvStore_Update(&written, kv_, kShardsKey, value.data(),
                                              static_cast<int>(value.size()), read->second);
    if (s == NATS_OK) return absl::OkStatus();
    status = FromNats(s, static_cast<jsErrCode>(0), "write the shard addresses");
  }
  return status;
}

absl::Status PartitionDirectory::RegisterShard(const std::string& name,
                                               const v1::ShardRecord& record) {
  return ChangeShards([&](v1::ShardDirectory& d) { (*d.mutable_shards())[name] = record; });
}

absl::Status PartitionDirectory::ForgetShard(const std::string& name) {
  return ChangeShards([&](v1::ShardDirectory& d) { d.mutable_shards()->erase(name); });
}

absl::StatusOr<std::map<std::string, v1::ShardRecord>> PartitionDirectory::Shards() {
  absl::StatusOr<std::pair<v1::ShardDirectory, uint64_t>> read = ReadShards();
  if (!read.ok()) return read.status();
  return std::map<std::string, v1::ShardRecord>(read->first.shards().begin(),
                                                read->first.shards().end());
}

}  // namespace tailor::cluster

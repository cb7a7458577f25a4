#include "cluster/partition_directory.h"

#include <nats/nats.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cluster/nats_connection.h"

namespace tailor::cluster {
namespace {

constexpr char kMapKey[] = "map";
constexpr char kShardPrefix[] = "shard.";

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

absl::Status PartitionDirectory::RegisterShard(const std::string& name,
                                               const v1::ShardRecord& record) {
  const std::string value = record.SerializeAsString();
  uint64_t revision = 0;
  return FromNats(kvStore_Put(&revision, kv_, absl::StrCat(kShardPrefix, name).c_str(),
                              value.data(), static_cast<int>(value.size())),
                  static_cast<jsErrCode>(0), "register shard " + name);
}

absl::Status PartitionDirectory::ForgetShard(const std::string& name) {
  return FromNats(kvStore_Purge(kv_, absl::StrCat(kShardPrefix, name).c_str(), nullptr),
                  static_cast<jsErrCode>(0), "forget shard " + name);
}

absl::StatusOr<std::map<std::string, v1::ShardRecord>> PartitionDirectory::Shards() {
  std::map<std::string, v1::ShardRecord> shards;
  kvKeysList keys{nullptr, 0};
  natsStatus s = kvStore_Keys(&keys, kv_, nullptr);
  if (s == NATS_NOT_FOUND) return shards;  // an empty bucket
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "list shards");
  absl::Status status;
  for (int i = 0; i < keys.Count && status.ok(); ++i) {
    const absl::string_view key = keys.Keys[i];
    if (!absl::StartsWith(key, kShardPrefix)) continue;
    kvEntry* entry = nullptr;
    s = kvStore_Get(&entry, kv_, keys.Keys[i]);
    if (s == NATS_NOT_FOUND) continue;  // forgotten meanwhile
    if (s != NATS_OK) {
      status = FromNats(s, static_cast<jsErrCode>(0), "read shard " + std::string(key));
      break;
    }
    v1::ShardRecord record;
    if (record.ParseFromArray(kvEntry_Value(entry), kvEntry_ValueLen(entry))) {
      shards[std::string(key.substr(sizeof(kShardPrefix) - 1))] = std::move(record);
    } else {
      status = absl::DataLossError(absl::StrCat("cluster: ", key, " cannot be decoded"));
    }
    kvEntry_Destroy(entry);
  }
  kvKeysList_Destroy(&keys);
  if (!status.ok()) return status;
  return shards;
}

}  // namespace tailor::cluster

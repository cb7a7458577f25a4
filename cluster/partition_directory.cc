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

absl::StatusOr<uint64_t> PartitionDirectory::Get(const char* key,
                                                 google::protobuf::Message* value) {
  kvEntry* entry = nullptr;
  const natsStatus s = kvStore_Get(&entry, kv_, key);
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), absl::StrCat("read ", key));
  const uint64_t revision = kvEntry_Revision(entry);
  const bool parsed =
      value == nullptr || value->ParseFromArray(kvEntry_Value(entry), kvEntry_ValueLen(entry));
  kvEntry_Destroy(entry);
  if (!parsed) return absl::DataLossError(absl::StrCat("cluster: ", key, " cannot be decoded"));
  return revision;
}

absl::StatusOr<uint64_t> PartitionDirectory::Put(const char* key,
                                                 const google::protobuf::Message& value,
                                                 uint64_t revision) {
  const std::string bytes = value.SerializeAsString();
  uint64_t written = 0;
  const natsStatus s = revision == 0 ? kvStore_Create(&written, kv_, key, bytes.data(),
                                                      static_cast<int>(bytes.size()))
                                     : kvStore_Update(&written, kv_, key, bytes.data(),
                                                      static_cast<int>(bytes.size()), revision);
  if (s == NATS_OK) return written;
  // libnats reports a revision conflict as a plain error: tell it apart by reading again.
  absl::StatusOr<uint64_t> now = Get(key, nullptr);
  if (now.ok() && *now != revision) {
    return absl::AbortedError(absl::StrCat("cluster: ", key, " changed (revision ", revision,
                                           " is now ", *now, "); read it again"));
  }
  return FromNats(s, static_cast<jsErrCode>(0), absl::StrCat("write ", key));
}

absl::StatusOr<MapVersion> PartitionDirectory::ReadMap() {
  MapVersion version;
  absl::StatusOr<uint64_t> revision = Get(kMapKey, &version.map);
  if (!revision.ok()) return revision.status();
  version.revision = *revision;
  return version;
}

absl::StatusOr<uint64_t> PartitionDirectory::CompareAndSetMap(const v1::PartitionMap& map,
                                                              uint64_t revision) {
  return Put(kMapKey, map, revision);
}

absl::Status PartitionDirectory::ChangeShards(absl::FunctionRef<void(v1::ShardDirectory&)> change) {
  // Shards register concurrently: read, change, compare-and-set, again on a conflict.
  absl::Status status;
  for (int attempt = 0; attempt < 20; ++attempt) {
    v1::ShardDirectory directory;
    absl::StatusOr<uint64_t> revision = Get(kShardsKey, &directory);
    if (!revision.ok()) return revision.status();
    change(directory);
    absl::StatusOr<uint64_t> written = Put(kShardsKey, directory, *revision);
    if (written.ok()) return absl::OkStatus();
    status = written.status();
    if (status.code() != absl::StatusCode::kAborted) return status;
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
  v1::ShardDirectory directory;
  absl::StatusOr<uint64_t> revision = Get(kShardsKey, &directory);
  if (!revision.ok()) return revision.status();
  return std::map<std::string, v1::ShardRecord>(directory.shards().begin(),
                                                directory.shards().end());
}

}  // namespace tailor::cluster

// PreferenceEngine: Tailor's use cases — rank candidates for a user, record feedback, cold
// start from similar users, user lifecycle — on top of model/ (math) and storage/ (RocksDB).
#ifndef TAILOR_ENGINE_PREFERENCE_ENGINE_H_
#define TAILOR_ENGINE_PREFERENCE_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "model/schema.h"
#include "storage/feedback_store.h"

namespace tailor::engine {

struct EngineStats {
  uint64_t users = 0;
  uint64_t established_users = 0;
  uint64_t feedback_events = 0;
};

class PreferenceEngine {
 public:
  // Binds the store to `schema` (refusing a data directory made for another schema) and
  // loads every user's state. `store` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<PreferenceEngine>> Open(model::FeatureSchema schema,
                                                                storage::FeedbackStore& store);

  const model::FeatureSchema& schema() const { return schema_; }
  storage::FeedbackStore& store() { return store_; }
  EngineStats Stats() const;

 private:
  PreferenceEngine(model::FeatureSchema schema, storage::FeedbackStore& store);
  absl::Status LoadUsers();

  const model::FeatureSchema schema_;
  storage::FeedbackStore& store_;
  std::atomic<uint64_t> users_{0};
  std::atomic<uint64_t> feedback_events_{0};
};

// The schema as stored in a data directory.
storage::records::SchemaRecord ToRecord(const model::FeatureSchema& schema);

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_PREFERENCE_ENGINE_H_

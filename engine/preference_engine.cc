#include "engine/preference_engine.h"

#include <utility>

#include "absl/strings/string_view.h"

namespace tailor::engine {

storage::records::SchemaRecord ToRecord(const model::FeatureSchema& schema) {
  storage::records::SchemaRecord record;
  for (const model::FeatureSpec& spec : schema.features()) {
    storage::records::SchemaFeature* feature = record.add_features();
    feature->set_name(spec.name);
    feature->set_mean(spec.mean);
    feature->set_sd(spec.sd);
  }
  record.set_fingerprint(schema.fingerprint());
  return record;
}

absl::StatusOr<std::unique_ptr<PreferenceEngine>> PreferenceEngine::Open(
    model::FeatureSchema schema, storage::FeedbackStore& store) {
  if (absl::Status bound = store.BindSchema(ToRecord(schema)); !bound.ok()) return bound;
  std::unique_ptr<PreferenceEngine> engine(new PreferenceEngine(std::move(schema), store));
  if (absl::Status loaded = engine->LoadUsers(); !loaded.ok()) return loaded;
  return engine;
}

PreferenceEngine::PreferenceEngine(model::FeatureSchema schema, storage::FeedbackStore& store)
    : schema_(std::move(schema)), store_(store) {}

absl::Status PreferenceEngine::LoadUsers() {
  uint64_t users = 0;
  uint64_t events = 0;
  absl::Status scan = store_.ScanStates(
      [&](absl::string_view, const absl::StatusOr<storage::records::UserState>& state) {
        ++users;
        if (state.ok()) events += state->feedback_count();
      });
  users_ = users;
  feedback_events_ = events;
  return scan;
}

EngineStats PreferenceEngine::Stats() const {
  EngineStats stats;
  stats.users = users_.load();
  stats.feedback_events = feedback_events_.load();
  return stats;
}

}  // namespace tailor::engine

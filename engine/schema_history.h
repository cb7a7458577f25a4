// SchemaHistory: a data directory's schema versions (model/schema_evolution.h), bound at
// startup, and every stored pair read into the current version's z-space — one reader for
// rebuilds and for trust calibration, so both learn exactly what the online path learned.
#ifndef TAILOR_ENGINE_SCHEMA_HISTORY_H_
#define TAILOR_ENGINE_SCHEMA_HISTORY_H_

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/schema.h"
#include "model/schema_evolution.h"
#include "storage/feedback_store.h"

namespace tailor::engine {

class SchemaHistory {
 public:
  // Binds `schema` to the store. A new directory gets it as version 1; a directory whose
  // current version is `schema` keeps it. Otherwise, with `evolve`, `schema` becomes the next
  // version (features matched by name or renamed_from, model::NextVersion); without it,
  // FAILED_PRECONDITION naming both schemas and --evolve_schema.
  static absl::StatusOr<std::shared_ptr<const SchemaHistory>> Bind(
      const model::FeatureSchema& schema, storage::FeedbackStore& store, bool evolve);

  const std::vector<model::SchemaVersion>& versions() const { return versions_; }
  const model::SchemaVersion& current() const { return versions_.back(); }
  uint32_t current_version() const { return current().version; }
  // What this start changed ("version 2: added f10"), or empty.
  const std::string& change() const { return change_; }

  // The pair (chosen minus rejected) of a stored record in the current z-space, or nothing
  // when it cannot be read: a version this directory never had, or features that are not of
  // its version's dimension.
  std::optional<Eigen::VectorXd> PairOf(const storage::records::FeedbackRecord& record) const;

 private:
  explicit SchemaHistory(std::vector<model::SchemaVersion> versions, std::string change);

  std::vector<model::SchemaVersion> versions_;
  std::string change_;
  absl::flat_hash_map<uint32_t, model::FeatureProjection> projections_;  // by version
};

// A schema version as stored, and back.
storage::records::SchemaRecord ToRecord(const model::SchemaVersion& version);
model::SchemaVersion FromRecord(const storage::records::SchemaRecord& record);

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_SCHEMA_HISTORY_H_

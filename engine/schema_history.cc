#include "engine/schema_history.h"

#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tailor::engine {
namespace {

namespace records = storage::records;

std::string Names(const model::FeatureSchema& schema) {
  std::vector<std::string> names;
  for (const model::FeatureSpec& f : schema.features()) names.push_back(f.name);
  return absl::StrJoin(names, ",");
}

}  // namespace

records::SchemaRecord ToRecord(const model::SchemaVersion& version) {
  records::SchemaRecord record;
  const std::vector<model::FeatureSpec>& features = version.schema.features();
  for (size_t i = 0; i < features.size(); ++i) {
    records::SchemaFeature* feature = record.add_features();
    feature->set_name(features[i].name);
    feature->set_mean(features[i].mean);
    feature->set_sd(features[i].sd);
    feature->set_id(version.ids[i]);
  }
  record.set_fingerprint(version.schema.fingerprint());
  record.set_version(version.version);
  return record;
}

model::SchemaVersion FromRecord(const records::SchemaRecord& record) {
  std::vector<model::FeatureSpec> features;
  std::vector<uint32_t> ids;
  for (const records::SchemaFeature& f : record.features()) {
    features.push_back(model::FeatureSpec{f.name(), f.mean(), f.sd(), ""});
    ids.push_back(f.id());
  }
  return model::SchemaVersion{record.version(), model::FeatureSchema(std::move(features)),
                              std::move(ids)};
}

absl::StatusOr<std::shared_ptr<const SchemaHistory>> SchemaHistory::Bind(
    const model::FeatureSchema& schema, storage::FeedbackStore& store, bool evolve) {
  absl::StatusOr<std::vector<records::SchemaRecord>> stored = store.SchemaVersions();
  if (!stored.ok()) return stored.status();
  std::vector<model::SchemaVersion> versions;
  for (const records::SchemaRecord& r : *stored) versions.push_back(FromRecord(r));
  std::string change;
  if (versions.empty()) {
    versions.push_back(model::FirstVersion(schema));
    absl::StatusOr<uint32_t> added = store.AddSchemaVersion(ToRecord(versions.back()));
    if (!added.ok()) return added.status();
  } else if (versions.back().schema.fingerprint() != schema.fingerprint()) {
    const model::SchemaVersion& current = versions.back();
    if (!evolve) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data directory ", store.path(), " holds data for schema ", current.schema.fingerprint(),
          " (version ", current.version, ", ", current.schema.dimension(),
          " features: ", Names(current.schema), ") but tailord was started with schema ",
          schema.fingerprint(), " (", schema.dimension(), " features: ", Names(schema),
          "); start with the matching --schema, or add --evolve_schema to make this schema the "
          "directory's next version (every user's history is kept and re-read)"));
    }
    absl::StatusOr<model::SchemaVersion> next = model::NextVersion(versions, schema);
    if (!next.ok()) return next.status();
    change =
        absl::StrCat("schema version ", next->version, ": ", model::DescribeChange(current, *next));
    absl::StatusOr<uint32_t> added = store.AddSchemaVersion(ToRecord(*next));
    if (!added.ok()) return added.status();
    next->version = *added;
    versions.push_back(*std::move(next));
  }
  return std::shared_ptr<const SchemaHistory>(
      new SchemaHistory(std::move(versions), std::move(change)));
}

SchemaHistory::SchemaHistory(std::vector<model::SchemaVersion> versions, std::string change)
    : versions_(std::move(versions)), change_(std::move(change)) {
  for (const model::SchemaVersion& v : versions_) {
    projections_.emplace(v.version, model::FeatureProjection(v, current()));
  }
}

std::optional<Eigen::VectorXd> SchemaHistory::PairOf(const records::FeedbackRecord& r) const {
  auto found = projections_.find(r.schema_version() == 0 ? 1 : r.schema_version());
  if (found == projections_.end()) return std::nullopt;
  const model::FeatureProjection& projection = found->second;
  if (r.chosen_features_size() != projection.from_dimension() ||
      r.rejected_features_size() != projection.from_dimension()) {
    return std::nullopt;
  }
  return projection.PairDifference(
      std::span(r.chosen_features().data(), r.chosen_features_size()),
      std::span(r.rejected_features().data(), r.rejected_features_size()));
}

}  // namespace tailor::engine

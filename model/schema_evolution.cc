#include "model/schema_evolution.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tailor::model {

SchemaVersion FirstVersion(FeatureSchema schema) {
  std::vector<uint32_t> ids(static_cast<size_t>(schema.dimension()));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint32_t>(i + 1);
  return SchemaVersion{1, std::move(schema), std::move(ids)};
}

absl::StatusOr<SchemaVersion> NextVersion(const std::vector<SchemaVersion>& versions,
                                          FeatureSchema next) {
  const SchemaVersion& current = versions.back();
  absl::flat_hash_map<std::string, uint32_t> current_ids;
  for (size_t i = 0; i < current.ids.size(); ++i) {
    current_ids[current.schema.features()[i].name] = current.ids[i];
  }
  uint32_t max_id = 0;
  for (const SchemaVersion& v : versions) {
    for (uint32_t id : v.ids) max_id = std::max(max_id, id);
  }
  std::vector<uint32_t> ids;
  absl::flat_hash_set<uint32_t> taken;
  for (const FeatureSpec& spec : next.features()) {
    uint32_t id = 0;
    if (!spec.renamed_from.empty()) {
      auto found = current_ids.find(spec.renamed_from);
      if (found == current_ids.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("schema: feature ", spec.name, " is renamed_from ", spec.renamed_from,
                         ", which the data directory's current schema (version ", current.version,
                         ") does not have"));
      }
      id = found->second;
    } else if (auto found = current_ids.find(spec.name); found != current_ids.end()) {
      id = found->second;
    } else {
      // A feature brought back keeps the id it had (unless that reward model is now another
      // current feature's), so its old pairs count again.
      absl::flat_hash_set<uint32_t> current_set(current.ids.begin(), current.ids.end());
      for (auto v = versions.rbegin(); v != versions.rend() && id == 0; ++v) {
        for (size_t i = 0; i < v->ids.size(); ++i) {
          if (v->schema.features()[i].name == spec.name && !current_set.contains(v->ids[i])) {
            id = v->ids[i];
          }
        }
      }
      if (id == 0) id = ++max_id;
    }
    if (!taken.insert(id).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("schema: feature ", spec.name,
                       " would be the same reward model as another feature (a name and a "
                       "renamed_from, or two renamed_from, name one current feature)"));
    }
    ids.push_back(id);
  }
  return SchemaVersion{current.version + 1, std::move(next), std::move(ids)};
}

std::string DescribeChange(const SchemaVersion& from, const SchemaVersion& to) {
  absl::flat_hash_map<uint32_t, int> from_position;
  for (size_t i = 0; i < from.ids.size(); ++i) from_position[from.ids[i]] = static_cast<int>(i);
  std::vector<std::string> added, renamed, renormalised, removed;
  absl::flat_hash_set<uint32_t> kept;
  for (size_t i = 0; i < to.ids.size(); ++i) {
    const FeatureSpec& now = to.schema.features()[i];
    auto found = from_position.find(to.ids[i]);
    if (found == from_position.end()) {
      added.push_back(now.name);
      continue;
    }
    kept.insert(to.ids[i]);
    const FeatureSpec& before = from.schema.features()[static_cast<size_t>(found->second)];
    if (before.name != now.name) renamed.push_back(absl::StrCat(before.name, " to ", now.name));
    if (before.mean != now.mean || before.sd != now.sd) renormalised.push_back(now.name);
  }
  for (size_t i = 0; i < from.ids.size(); ++i) {
    if (!kept.contains(from.ids[i])) removed.push_back(from.schema.features()[i].name);
  }
  std::vector<std::string> parts;
  if (!added.empty()) parts.push_back("added " + absl::StrJoin(added, ", "));
  if (!removed.empty()) parts.push_back("removed " + absl::StrJoin(removed, ", "));
  if (!renamed.empty()) parts.push_back("renamed " + absl::StrJoin(renamed, ", "));
  if (!renormalised.empty()) parts.push_back("renormalised " + absl::StrJoin(renormalised, ", "));
  if (parts.empty()) parts.push_back("reordered");
  return absl::StrJoin(parts, "; ");
}

FeatureProjection::FeatureProjection(const SchemaVersion& from, const SchemaVersion& to)
    : from_dimension_(from.schema.dimension()), to_dimension_(to.schema.dimension()) {
  absl::flat_hash_map<uint32_t, int> to_position;
  for (size_t i = 0; i < to.ids.size(); ++i) to_position[to.ids[i]] = static_cast<int>(i);
  for (size_t i = 0; i < from.ids.size(); ++i) {
    auto found = to_position.find(from.ids[i]);
    if (found == to_position.end()) continue;
    shared_.push_back(
        Shared{static_cast<int>(i), found->second, 1.0 / from.schema.features()[i].sd});
  }
  means_.resize(static_cast<size_t>(from_dimension_));
  for (int i = 0; i < from_dimension_; ++i) {
    means_[static_cast<size_t>(i)] = from.schema.features()[static_cast<size_t>(i)].mean;
  }
}

Eigen::VectorXd FeatureProjection::PairDifference(std::span<const float> chosen,
                                                  std::span<const float> rejected) const {
  Eigen::VectorXd diff = Eigen::VectorXd::Zero(to_dimension_);
  for (const Shared& s : shared_) {
    // As FeatureSchema::Normalize computes it, so that a pair of the current version reads
    // exactly as the online path learned it.
    const double mean = means_[static_cast<size_t>(s.from)];
    diff[s.to] = (static_cast<double>(chosen[static_cast<size_t>(s.from)]) - mean) * s.inverse_sd -
                 (static_cast<double>(rejected[static_cast<size_t>(s.from)]) - mean) * s.inverse_sd;
  }
  return diff;
}

}  // namespace tailor::model

// Schema evolution: reward models come and go, so a data directory's schema has versions.
// Each feature has a stable id that survives renames and changes of normalisation; a new
// feature gets a new id. A pair recorded under any version is read into the current version's
// z-space by id: each feature is z-scored with the mean and sd of the version it was recorded
// under (a recorded value is never re-read with another version's normalisation), and a
// current feature the old version did not have contributes 0 (the pair says nothing about it).
// Features the current version dropped are ignored. Users' weights therefore carry over on the
// features that survive, and a new feature starts from the prior and is learned from the pairs
// that carry it.
#ifndef TAILOR_MODEL_SCHEMA_EVOLUTION_H_
#define TAILOR_MODEL_SCHEMA_EVOLUTION_H_

#include <Eigen/Core>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "model/schema.h"

namespace tailor::model {

struct SchemaVersion {
  uint32_t version = 1;
  FeatureSchema schema;
  std::vector<uint32_t> ids;  // per feature of `schema`, stable across versions
};

// The first version of a data directory: ids 1..n.
SchemaVersion FirstVersion(FeatureSchema schema);

// The version after `versions` (oldest first, non-empty) for `next`. A feature of `next` keeps
// the id of the current (last) version's feature it names, or of the feature its
// `renamed_from` names there; failing both, the id it had in the newest older version that
// had its name (a reward model brought back); else it is new. INVALID_ARGUMENT when a
// renamed_from names no current feature, or two features would share an id.
absl::StatusOr<SchemaVersion> NextVersion(const std::vector<SchemaVersion>& versions,
                                          FeatureSchema next);

// Human-readable summary of what changed from `from` to `to` ("added x; removed y; renamed a
// to b; renormalised c").
std::string DescribeChange(const SchemaVersion& from, const SchemaVersion& to);

// Reads pairs recorded under `from` into `to`'s z-space.
class FeatureProjection {
 public:
  FeatureProjection(const SchemaVersion& from, const SchemaVersion& to);
  int from_dimension() const { return from_dimension_; }
  // chosen minus rejected, z-scored feature by feature with `from`'s normalisation, placed at
  // `to`'s positions (0 where `from` lacks the feature). Both spans have from_dimension()
  // values.
  Eigen::VectorXd PairDifference(std::span<const float> chosen,
                                 std::span<const float> rejected) const;

 private:
  int from_dimension_ = 0;
  int to_dimension_ = 0;
  // (position in `from`, position in `to`, 1 / sd in `from`) per shared feature.
  struct Shared {
    int from = 0;
    int to = 0;
    double inverse_sd = 1;
  };
  std::vector<Shared> shared_;
  std::vector<double> means_;  // of `from`'s features
};

}  // namespace tailor::model

#endif  // TAILOR_MODEL_SCHEMA_EVOLUTION_H_

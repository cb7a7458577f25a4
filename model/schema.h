// The feature schema: which features a candidate carries (e.g. reward-model scores), in
// which order, and the mean/sd used to z-score them. Every vector Tailor learns lives in it.
#ifndef TAILOR_MODEL_SCHEMA_H_
#define TAILOR_MODEL_SCHEMA_H_

#include <Eigen/Core>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tailor::model {

struct FeatureSpec {
  std::string name;
  double mean = 0.0;
  double sd = 1.0;
  // Schema evolution (model/schema_evolution.h): the name this feature had in the data
  // directory's current schema, if it is being renamed; not part of the fingerprint.
  std::string renamed_from;
};

class FeatureSchema {
 public:
  // Parses CSV text with a header naming at least the columns `name`, `mean` and `sd`, and
  // optionally `renamed_from` (other columns, such as PersonalLLM's `model_id`, are ignored).
  // Names must be unique and non-empty; means finite; sds finite and > 0.
  static absl::StatusOr<FeatureSchema> FromCsv(absl::string_view csv);

  explicit FeatureSchema(std::vector<FeatureSpec> features);

  int dimension() const { return static_cast<int>(features_.size()); }
  const std::vector<FeatureSpec>& features() const { return features_; }

  // Stable 64-bit hash (hex) of names, means and sds: two schemas with the same fingerprint
  // put features in the same space.
  const std::string& fingerprint() const { return fingerprint_; }

  // z-scores raw feature values. Requires raw.size() == dimension().
  Eigen::VectorXd Normalize(std::span<const float> raw) const;

 private:
  std::vector<FeatureSpec> features_;
  Eigen::VectorXd mean_;
  Eigen::VectorXd inverse_sd_;
  std::string fingerprint_;
};

// The PersonalLLM schema (10 reward models), compiled in from data/schemas/personalllm.csv.
absl::string_view DefaultSchemaCsv();

}  // namespace tailor::model

#endif  // TAILOR_MODEL_SCHEMA_H_

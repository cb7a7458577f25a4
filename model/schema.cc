#include "model/schema.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "model/stable_hash.h"

namespace tailor::model {
namespace {

int FindColumn(const std::vector<std::string>& header, absl::string_view name) {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

absl::StatusOr<FeatureSchema> FeatureSchema::FromCsv(absl::string_view csv) {
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(csv, '\n')) {
    line = absl::StripSuffix(line, "\r");
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    std::vector<std::string> cells;
    for (absl::string_view cell : absl::StrSplit(line, ',')) {
      cells.emplace_back(absl::StripAsciiWhitespace(cell));
    }
    rows.push_back(std::move(cells));
  }
  if (rows.empty()) return absl::InvalidArgumentError("schema: empty file");
  const std::vector<std::string>& header = rows[0];
  const int name_col = FindColumn(header, "name");
  const int mean_col = FindColumn(header, "mean");
  const int sd_col = FindColumn(header, "sd");
  const int renamed_col = FindColumn(header, "renamed_from");
  if (name_col < 0 || mean_col < 0 || sd_col < 0) {
    return absl::InvalidArgumentError("schema: header must name the columns name, mean and sd");
  }
  if (rows.size() < 2) return absl::InvalidArgumentError("schema: no features");

  std::vector<FeatureSpec> features;
  absl::flat_hash_set<std::string> seen;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string>& row = rows[r];
    const std::string where = absl::StrCat("schema line ", r + 1);
    if (row.size() != header.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": has ", row.size(), " cells, header has ", header.size()));
    }
    FeatureSpec spec;
    spec.name = row[name_col];
    if (spec.name.empty()) return absl::InvalidArgumentError(where + ": empty name");
    if (!seen.insert(spec.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name ", spec.name));
    }
    if (!absl::SimpleAtod(row[mean_col], &spec.mean) || !std::isfinite(spec.mean)) {
      return absl::InvalidArgumentError(where + ": mean must be a finite number");
    }
    if (!absl::SimpleAtod(row[sd_col], &spec.sd) || !std::isfinite(spec.sd) || spec.sd <= 0) {
      return absl::InvalidArgumentError(where + ": sd must be a finite number > 0");
    }
    if (renamed_col >= 0) spec.renamed_from = row[renamed_col];
    features.push_back(std::move(spec));
  }
  return FeatureSchema(std::move(features));
}

FeatureSchema::FeatureSchema(std::vector<FeatureSpec> features)
    : features_(std::move(features)),
      mean_(static_cast<Eigen::Index>(features_.size())),
      inverse_sd_(static_cast<Eigen::Index>(features_.size())) {
  std::string canonical;
  for (size_t i = 0; i < features_.size(); ++i) {
    mean_[static_cast<Eigen::Index>(i)] = features_[i].mean;
    inverse_sd_[static_cast<Eigen::Index>(i)] = 1.0 / features_[i].sd;
    absl::StrAppendFormat(&canonical, "%s\x1f%.17g\x1f%.17g\x1e", features_[i].name,
                          features_[i].mean, features_[i].sd);
  }
  fingerprint_ = absl::StrFormat("%016x", Fnv1a(canonical));
}

Eigen::VectorXd FeatureSchema::Normalize(std::span<const float> raw) const {
  Eigen::VectorXd z(dimension());
  for (int i = 0; i < dimension(); ++i) {
    z[i] = (static_cast<double>(raw[static_cast<size_t>(i)]) - mean_[i]) * inverse_sd_[i];
  }
  return z;
}

}  // namespace tailor::model

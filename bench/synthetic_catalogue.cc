#include "bench/synthetic_catalogue.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tailor::bench {

Catalogue MakeSyntheticCatalogue(int prompts, int responses, int features, double rho,
                                 std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  const double shared = std::sqrt(rho);
  const double own = std::sqrt(1.0 - rho);
  Catalogue catalogue;
  for (int b = 0; b < features; ++b) catalogue.feature_names.push_back("rm" + std::to_string(b));
  catalogue.raw_mean = Eigen::VectorXd::Zero(features);
  catalogue.raw_sd = Eigen::VectorXd::Ones(features);
  catalogue.scores.reserve(static_cast<size_t>(prompts));
  for (int p = 0; p < prompts; ++p) {
    Eigen::MatrixXd scores(responses, features);
    for (int r = 0; r < responses; ++r) {
      const double quality = normal(rng);
      for (int b = 0; b < features; ++b) scores(r, b) = shared * quality + own * normal(rng);
    }
    catalogue.scores.push_back(std::move(scores));
  }
  return catalogue;
}

// Scales every feature to mean 0, sd 1 over all responses (the units users' weights apply to),
// remembering the raw mean and sd.
static void ZScore(Catalogue& catalogue) {
  const auto d = catalogue.scores.front().cols();
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(d), sum2 = Eigen::VectorXd::Zero(d);
  double n = 0;
  for (const Eigen::MatrixXd& m : catalogue.scores) {
    sum += m.colwise().sum().transpose();
    sum2 += m.cwiseAbs2().colwise().sum().transpose();
    n += static_cast<double>(m.rows());
  }
  catalogue.raw_mean = sum / n;
  catalogue.raw_sd = (sum2 / n - catalogue.raw_mean.cwiseAbs2()).cwiseMax(1e-12).cwiseSqrt();
  for (Eigen::MatrixXd& m : catalogue.scores) {
    m = (m.rowwise() - catalogue.raw_mean.transpose()).array().rowwise() /
        catalogue.raw_sd.transpose().array();
  }
}

absl::StatusOr<Catalogue> LoadCatalogueCsv(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError("catalogue: cannot read " + path);
  std::string line;
  std::getline(file, line);
  std::vector<std::string> header = absl::StrSplit(line, ',');
  if (header.size() < 4 || header[0] != "prompt_id") {
    return absl::InvalidArgumentError(
        "catalogue: header must be prompt_id,response_id,label,<feature...>");
  }
  Catalogue catalogue;
  catalogue.feature_names.assign(header.begin() + 3, header.end());
  const int d = static_cast<int>(catalogue.feature_names.size());
  std::vector<std::string> prompt_order;
  std::map<std::string, std::vector<std::vector<double>>> rows;
  int line_number = 1;
  while (std::getline(file, line)) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    if (static_cast<int>(cells.size()) != d + 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("catalogue line ", line_number, ": expected ", d + 3, " cells"));
    }
    std::vector<double> values(static_cast<size_t>(d));
    for (int b = 0; b < d; ++b) {
      if (!absl::SimpleAtod(cells[static_cast<size_t>(b + 3)], &values[static_cast<size_t>(b)])) {
        return absl::InvalidArgumentError(
            absl::StrCat("catalogue line ", line_number, ": not a number"));
      }
    }
    if (!rows.contains(cells[0])) prompt_order.push_back(cells[0]);
    rows[cells[0]].push_back(std::move(values));
  }
  if (prompt_order.empty()) return absl::InvalidArgumentError("catalogue: no rows");
  const size_t responses = rows[prompt_order[0]].size();
  for (const std::string& prompt : prompt_order) {
    if (rows[prompt].size() != responses || responses < 2) {
      return absl::InvalidArgumentError(
          "catalogue: every prompt needs the same number (>= 2) "
          "of responses; " +
          prompt + " differs");
    }
    Eigen::MatrixXd m(static_cast<Eigen::Index>(responses), d);
    for (size_t r = 0; r < responses; ++r) {
      for (int b = 0; b < d; ++b)
        m(static_cast<Eigen::Index>(r), b) = rows[prompt][r][static_cast<size_t>(b)];
    }
    catalogue.scores.push_back(std::move(m));
  }
  ZScore(catalogue);
  return catalogue;
}

bool ReadCsvRecord(std::istream& in, std::vector<std::string>& fields) {
  fields.clear();
  if (in.peek() == std::char_traits<char>::eof()) return false;
  std::string field;
  bool quoted = false;
  char c;
  while (in.get(c)) {
    if (quoted) {
      if (c != '"') {
        field += c;
      } else if (in.peek() == '"') {
        field += '"';
        in.get(c);
      } else {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
    } else if (c == '\n') {
      break;
    } else if (c != '\r') {
      field += c;
    }
  }
  fields.push_back(std::move(field));
  return true;
}

absl::StatusOr<Catalogue> LoadPersonalLlmCsv(const std::string& path, int* skipped_rows) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError("personalllm: cannot read " + path);
  std::vector<std::string> header;
  if (!ReadCsvRecord(file, header)) return absl::InvalidArgumentError("personalllm: empty file");
  // response_{i}_{model} -> column; responses are numbered from 1.
  std::map<int, std::map<std::string, size_t>> columns;
  std::vector<std::string> models;
  for (size_t col = 0; col < header.size(); ++col) {
    const std::string& name = header[col];
    if (!absl::StartsWith(name, "response_")) continue;
    const size_t underscore = name.find('_', 9);
    int response = 0;
    if (underscore == std::string::npos ||
        !absl::SimpleAtoi(name.substr(9, underscore - 9), &response) || response < 1) {
      continue;  // response_{i} itself (the text), or not a score column
    }
    const std::string model = name.substr(underscore + 1);
    columns[response][model] = col;
    if (response == 1) models.push_back(model);
  }
  if (models.empty() || columns.size() < 2) {
    return absl::InvalidArgumentError(
        "personalllm: header needs response_{i}_{reward_model} score columns for at least two "
        "responses");
  }
  const int responses = columns.rbegin()->first;
  for (int r = 1; r <= responses; ++r) {
    for (const std::string& model : models) {
      if (!columns[r].contains(model)) {
        return absl::InvalidArgumentError(
            absl::StrCat("personalllm: no column response_", r, "_", model));
      }
    }
  }
  Catalogue catalogue;
  catalogue.feature_names = models;
  const int d = static_cast<int>(models.size());
  int skipped = 0;
  std::vector<std::string> row;
  while (ReadCsvRecord(file, row)) {
    if (row.size() == 1 && row[0].empty()) continue;  // blank line
    Eigen::MatrixXd m(responses, d);
    bool ok = true;
    for (int r = 1; r <= responses && ok; ++r) {
      for (int b = 0; b < d && ok; ++b) {
        const size_t col = columns[r][models[static_cast<size_t>(b)]];
        ok = col < row.size() && absl::SimpleAtod(row[col], &m(r - 1, b)) &&
             std::isfinite(m(r - 1, b));
      }
    }
    if (!ok) {
      ++skipped;
      continue;
    }
    catalogue.scores.push_back(std::move(m));
  }
  if (skipped_rows != nullptr) *skipped_rows = skipped;
  if (catalogue.scores.empty()) return absl::InvalidArgumentError("personalllm: no usable rows");
  if (responses >= 3) {
    catalogue.reference_response = 2;
    catalogue.reference_name = "response 3 (GPT-4o)";
  }
  ZScore(catalogue);
  return catalogue;
}

Eigen::VectorXd SampleDirichlet(int dimension, double alpha, std::mt19937_64& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  Eigen::VectorXd w(dimension);
  // Very small alpha can round every draw to 0; redraw rather than divide by zero.
  do {
    for (int i = 0; i < dimension; ++i) w[i] = gamma(rng);
  } while (w.sum() <= 0);
  return w / w.sum();
}

Eigen::MatrixXd MakeReferenceWeights(int users, int dimension, double alpha, double scale,
                                     double noise, std::mt19937_64& rng) {
  Eigen::MatrixXd weights(users, dimension);
  std::normal_distribution<double> normal(0, noise);
  for (int j = 0; j < users; ++j) {
    const Eigen::VectorXd w = SampleDirichlet(dimension, alpha, rng);
    for (int b = 0; b < dimension; ++b) weights(j, b) = scale * w[b] + normal(rng);
  }
  return weights;
}

Diversity MeasureDiversity(const Catalogue& catalogue, const std::vector<Eigen::VectorXd>& users) {
  Diversity d;
  if (catalogue.scores.empty() || users.empty()) return d;
  std::vector<int> votes(static_cast<size_t>(catalogue.responses()));
  for (const Eigen::MatrixXd& scores : catalogue.scores) {
    std::fill(votes.begin(), votes.end(), 0);
    for (const Eigen::VectorXd& w : users) {
      Eigen::Index best = 0;
      (scores * w).maxCoeff(&best);
      ++votes[static_cast<size_t>(best)];
    }
    const int top = *std::max_element(votes.begin(), votes.end());
    const auto winners = std::count_if(votes.begin(), votes.end(), [](int v) { return v > 0; });
    d.majority_share += 2 * top > static_cast<int>(users.size()) ? 1 : 0;
    d.five_winners_share += winners >= 5 ? 1 : 0;
  }
  d.majority_share /= static_cast<double>(catalogue.scores.size());
  d.five_winners_share /= static_cast<double>(catalogue.scores.size());
  return d;
}

}  // namespace tailor::bench

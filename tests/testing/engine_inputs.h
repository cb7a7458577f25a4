// Inputs for engine tests: a schema of `dimension` features that are already z-scored (mean 0,
// sd 1, named f0, f1, …), random raw features for it, and pairs answered by a taste.
#ifndef TAILOR_TESTS_TESTING_ENGINE_INPUTS_H_
#define TAILOR_TESTS_TESTING_ENGINE_INPUTS_H_

#include <Eigen/Core>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/schema.h"

namespace tailor::testing {

inline model::FeatureSchema IdentitySchema(int dimension) {
  std::string csv = "name,mean,sd\n";
  for (int i = 0; i < dimension; ++i) absl::StrAppend(&csv, "f", i, ",0,1\n");
  return *model::FeatureSchema::FromCsv(csv);
}

// `dimension` independent N(0, 1) draws.
inline std::vector<float> RandomFeatures(int dimension, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> f(static_cast<size_t>(dimension));
  for (float& v : f) v = normal(rng);
  return f;
}

// Two random candidates, the one `taste` scores higher first (a simulated user's answer).
struct AnsweredPair {
  std::vector<float> chosen, rejected;
};
inline AnsweredPair Answer(const Eigen::VectorXd& taste, std::mt19937_64& rng) {
  const int dimension = static_cast<int>(taste.size());
  AnsweredPair p{RandomFeatures(dimension, rng), RandomFeatures(dimension, rng)};
  double margin = 0;
  for (int f = 0; f < dimension; ++f) margin += taste[f] * (p.chosen[f] - p.rejected[f]);
  if (margin < 0) std::swap(p.chosen, p.rejected);
  return p;
}

}  // namespace tailor::testing

#endif  // TAILOR_TESTS_TESTING_ENGINE_INPUTS_H_

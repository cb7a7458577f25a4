// Inputs for engine tests: a schema of `dimension` features that are already z-scored (mean 0,
// sd 1, named f0, f1, …), and random raw features for it.
#ifndef TAILOR_TESTS_TESTING_ENGINE_INPUTS_H_
#define TAILOR_TESTS_TESTING_ENGINE_INPUTS_H_

#include <random>
#include <string>
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

}  // namespace tailor::testing

#endif  // TAILOR_TESTS_TESTING_ENGINE_INPUTS_H_

// The PersonalLLM-style synthetic catalogue and user population used by tailor-bench:
// prompts x responses x reward-model scores with a shared quality factor (correlation rho
// between reward models), and users drawn from Dirichlet(alpha) over the reward models.
#ifndef TAILOR_BENCH_SYNTHETIC_CATALOGUE_H_
#define TAILOR_BENCH_SYNTHETIC_CATALOGUE_H_

#include <Eigen/Core>
#include <istream>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tailor::bench {

// scores[p] is a responses x features matrix for prompt p, z-scored over the catalogue (the
// units users' weights apply to). `raw_mean`/`raw_sd` map back to the raw scores a serving
// stack would send: raw = mean + sd * z.
struct Catalogue {
  std::vector<Eigen::MatrixXd> scores;
  std::vector<std::string> feature_names;
  Eigen::VectorXd raw_mean;
  Eigen::VectorXd raw_sd;
  // A response every ranking is also compared with (PersonalLLM: response 3, GPT-4o's), or -1.
  int reference_response = -1;
  std::string reference_name;
  int responses() const { return scores.empty() ? 0 : static_cast<int>(scores[0].rows()); }
  int features() const { return scores.empty() ? 0 : static_cast<int>(scores[0].cols()); }
};

// score = sqrt(rho) * quality(prompt, response) + sqrt(1 - rho) * noise(prompt, response, rm)
Catalogue MakeSyntheticCatalogue(int prompts, int responses, int features, double rho,
                                 std::mt19937_64& rng);

// Loads `prompt_id,response_id,label,<feature...>` (every prompt with the same number of
// responses) and z-scores each feature over all responses.
absl::StatusOr<Catalogue> LoadCatalogueCsv(const std::string& path);

// Loads a PersonalLLM dataset exported as CSV (RFC 4180; prompts and responses may hold
// commas, quotes and newlines): columns `prompt`, `response_1` … `response_N` and one score
// column `response_{i}_{reward_model}` per response and reward model (other columns are
// ignored). Features are the reward models, in the order of response 1's columns; z-scored
// like LoadCatalogueCsv. Response 3 (GPT-4o's in PersonalLLM) becomes the reference response.
// Rows with a missing or non-numeric score are skipped and counted in `skipped_rows`.
absl::StatusOr<Catalogue> LoadPersonalLlmCsv(const std::string& path, int* skipped_rows = nullptr);

// One CSV record (RFC 4180: quoted fields, "" for a quote, newlines inside quotes); false at
// the end of the input.
bool ReadCsvRecord(std::istream& in, std::vector<std::string>& fields);

// One user's weights over the features, Dirichlet(alpha, ..., alpha).
Eigen::VectorXd SampleDirichlet(int dimension, double alpha, std::mt19937_64& rng);

// Established users as the engine holds them: learned estimates of Dirichlet(alpha) weights,
// i.e. `scale` * w plus Gaussian estimation noise of sd `noise`. One row per user.
Eigen::MatrixXd MakeReferenceWeights(int users, int dimension, double alpha, double scale,
                                     double noise, std::mt19937_64& rng);

struct Diversity {
  // Share of prompts whose most popular response is the favourite of a majority of users.
  double majority_share = 0;
  // Share of prompts with at least five distinct favourite responses across users.
  double five_winners_share = 0;
};
Diversity MeasureDiversity(const Catalogue& catalogue, const std::vector<Eigen::VectorXd>& users);

}  // namespace tailor::bench

#endif  // TAILOR_BENCH_SYNTHETIC_CATALOGUE_H_

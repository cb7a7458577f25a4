#include "bench/synthetic_catalogue.h"

#include <algorithm>
#include <cmath>

namespace tailor::bench {

Catalogue MakeSyntheticCatalogue(int prompts, int responses, int features, double rho,
                                 std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  const double shared = std::sqrt(rho);
  const double own = std::sqrt(1.0 - rho);
  Catalogue catalogue;
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

Eigen::VectorXd SampleDirichlet(int dimension, double alpha, std::mt19937_64& rng) {
  std::gamma_distribution<double> gamma(alpha, 1.0);
  Eigen::VectorXd w(dimension);
  // Very small alpha can round every draw to 0; redraw rather than divide by zero.
  do {
    for (int i = 0; i < dimension; ++i) w[i] = gamma(rng);
  } while (w.sum() <= 0);
  return w / w.sum();
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

#include "model/trust.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

namespace tailor::model {
namespace {

double LogSigmoid(double x) {
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}

// What one calibration user predicts for their held-out pairs after k pairs, per candidate
// setting: log-odds of the chosen side for every held-out pair.
struct Predictions {
  int k = 0;
  Eigen::VectorXd population;
  std::vector<Eigen::VectorXd> own;         // per prior scale
  std::vector<double> own_evidence;         // per prior scale
  std::vector<Eigen::VectorXd> neighbours;  // per temperature
  std::vector<double> neighbour_evidence;   // per temperature
};

// Weighted logistic loss of sigma(H theta) (every label "chosen"), its gradient and Hessian.
double Loss(const Eigen::MatrixXd& h, const Eigen::VectorXd& weight, const Eigen::VectorXd& theta,
            Eigen::VectorXd* gradient, Eigen::MatrixXd* hessian) {
  const Eigen::VectorXd margin = h * theta;
  double loss = 0;
  if (gradient != nullptr) *gradient = Eigen::VectorXd::Zero(theta.size());
  if (hessian != nullptr) *hessian = Eigen::MatrixXd::Zero(theta.size(), theta.size());
  for (Eigen::Index i = 0; i < h.rows(); ++i) {
    loss -= weight[i] * LogSigmoid(margin[i]);
    const double p = Sigmoid(margin[i]);
    if (gradient != nullptr) *gradient -= weight[i] * (1 - p) * h.row(i).transpose();
    if (hessian != nullptr) {
      *hessian += weight[i] * p * (1 - p) * h.row(i).transpose() * h.row(i);
    }
  }
  return loss;
}

// Non-negative coefficients theta minimising the weighted loss of sigma(H theta): every subset
// of coefficients held at 0, the rest by Newton's method; the best feasible solution wins. H has
// at most a few columns, so the 2^m subsets are cheap, and the problem is convex on each.
Eigen::VectorXd FitNonNegative(const Eigen::MatrixXd& h, const Eigen::VectorXd& weight) {
  const int m = static_cast<int>(h.cols());
  Eigen::VectorXd best = Eigen::VectorXd::Zero(m);
  double best_loss = Loss(h, weight, best, nullptr, nullptr);
  constexpr double kRidge = 1e-6;
  for (int mask = 1; mask < (1 << m); ++mask) {
    std::vector<int> free;
    for (int j = 0; j < m; ++j) {
      if ((mask >> j) & 1) free.push_back(j);
    }
    const Eigen::MatrixXd sub = h(Eigen::all, free);
    Eigen::VectorXd theta = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(free.size()));
    double loss = Loss(sub, weight, theta, nullptr, nullptr);
    for (int it = 0; it < 50; ++it) {
      Eigen::VectorXd g;
      Eigen::MatrixXd hess;
      Loss(sub, weight, theta, &g, &hess);
      g += kRidge * theta;
      hess.diagonal().array() += kRidge;
      const Eigen::VectorXd step = hess.ldlt().solve(g);
      double t = 1;
      Eigen::VectorXd next = theta - step;
      double next_loss = Loss(sub, weight, next, nullptr, nullptr);
      while (next_loss > loss && t > 1e-6) {
        t /= 2;
        next = theta - t * step;
        next_loss = Loss(sub, weight, next, nullptr, nullptr);
      }
      if (next_loss > loss) break;
      const bool converged = loss - next_loss < 1e-10;
      theta = next;
      loss = next_loss;
      if (converged) break;
    }
    if (theta.minCoeff() < 0 || !(loss < best_loss)) continue;
    best = Eigen::VectorXd::Zero(m);
    for (size_t j = 0; j < free.size(); ++j) best[free[j]] = theta[static_cast<Eigen::Index>(j)];
    best_loss = loss;
  }
  return best;
}

// Blend log-odds: the own posterior and the neighbour mixture weighted by their evidence.
Eigen::VectorXd BlendLogits(const Predictions& p, size_t scale, size_t temperature,
                            double prior_odds) {
  const double personal =
      Sigmoid(p.own_evidence[scale] - p.neighbour_evidence[temperature] + prior_odds);
  return personal * p.own[scale] + (1 - personal) * p.neighbours[temperature];
}

}  // namespace

double MeanLogLoss(const Eigen::VectorXd& logits, double a) {
  if (logits.size() == 0) return 0;
  double loss = 0;
  for (double l : logits) loss -= LogSigmoid(a * l);
  return loss / static_cast<double>(logits.size());
}

int Trust::LevelFor(uint64_t pairs) const {
  int level = -1;
  for (size_t i = 0; i < levels.size(); ++i) {
    if (pairs >= static_cast<uint64_t>(levels[i].min_pairs)) level = static_cast<int>(i);
  }
  return level;
}

Trust DefaultTrust(double neighbour_temperature, double own_log_prior_odds) {
  Trust trust;
  trust.neighbour_temperature = neighbour_temperature;
  trust.own_log_prior_odds = own_log_prior_odds;
  return trust;
}

Trust FitTrust(std::span<const CalibrationUser> users, const Population& population,
               const Population& base, const ReferenceSet& reference, bool neighbours,
               const TrustFitOptions& options) {
  Trust trust;
  trust.calibration_users = static_cast<int>(users.size());
  const bool use_neighbours = neighbours && reference.size() > 0;
  const PriorInformation base_information = InformationOf(base);
  std::vector<Population> priors;
  std::vector<PriorInformation> informations;
  for (double scale : options.prior_scales) {
    Population prior = population;
    prior.cov *= scale;
    informations.push_back(InformationOf(prior));
    priors.push_back(std::move(prior));
  }
  // A seeded sample of the reference rows bounds the cost of the neighbour mixtures.
  std::vector<int> rows(static_cast<size_t>(reference.size()));
  std::iota(rows.begin(), rows.end(), 0);
  if (static_cast<int>(rows.size()) > options.max_reference_rows) {
    std::mt19937_64 rng(options.seed);
    std::shuffle(rows.begin(), rows.end(), rng);
    rows.resize(static_cast<size_t>(options.max_reference_rows));
    std::sort(rows.begin(), rows.end());
  }
  const Eigen::MatrixXd vectors = reference.weights(rows, Eigen::all);

  // levels[i] collects every user's predictions after levels_pairs[i] pairs (level 0: none).
  std::vector<int> level_pairs = {0};
  level_pairs.insert(level_pairs.end(), options.level_pairs.begin(), options.level_pairs.end());
  std::vector<std::vector<Predictions>> at_level(level_pairs.size());
  for (const CalibrationUser& user : users) {
    if (user.held_out.empty()) continue;
    const int d = static_cast<int>(user.held_out[0].size());
    Eigen::MatrixXd held_out(static_cast<Eigen::Index>(user.held_out.size()), d);
    for (size_t i = 0; i < user.held_out.size(); ++i) {
      held_out.row(static_cast<Eigen::Index>(i)) = user.held_out[i].transpose();
    }
    const Eigen::VectorXd population_logits = held_out * population.mean;
    // Running sums of each reference row's log-likelihood of the user's first k pairs.
    Eigen::VectorXd row_log_likelihood = Eigen::VectorXd::Zero(vectors.rows());
    Posterior own(base.mean, base.cov);
    size_t learned = 0;
    for (size_t level = 0; level < level_pairs.size(); ++level) {
      const auto k = static_cast<size_t>(level_pairs[level]);
      if (k > user.feedback.size()) break;
      for (; learned < k; ++learned) {
        own.Forget(options.forget_keep, base.mean, base.cov);
        own.Observe(user.feedback[learned]);
        if (use_neighbours) {
          const Eigen::VectorXd margins = vectors * user.feedback[learned];
          for (Eigen::Index r = 0; r < margins.size(); ++r) {
            row_log_likelihood[r] += LogSigmoid(margins[r]);
          }
        }
      }
      Predictions p;
      p.k = static_cast<int>(k);
      p.population = population_logits;
      const std::span<const Eigen::VectorXd> given(user.feedback.data(), k);
      for (size_t s = 0; s < priors.size(); ++s) {
        if (k == 0) {
          p.own.push_back(population_logits);
          p.own_evidence.push_back(0);
          continue;
        }
        const Posterior under = Reprior(own, base_information, informations[s]);
        p.own.push_back(held_out * under.mean());
        p.own_evidence.push_back(LaplaceLogEvidence(under, given, priors[s], informations[s]));
      }
      // The user's own row (their posterior from all their pairs, held-out ones included)
      // must not vote for them.
      const auto own_row = std::find(rows.begin(), rows.end(), user.reference_row);
      const int counted = static_cast<int>(rows.size()) - (own_row != rows.end() ? 1 : 0);
      for (double temperature : options.temperatures) {
        if (!use_neighbours) break;
        Eigen::VectorXd log_weight = temperature * row_log_likelihood;
        if (own_row != rows.end()) {
          log_weight[own_row - rows.begin()] = -std::numeric_limits<double>::infinity();
        }
        const double top = log_weight.maxCoeff();
        Eigen::VectorXd weight = (log_weight.array() - top).exp();
        const double total = weight.sum();
        weight /= total;
        p.neighbours.push_back(held_out * (vectors.transpose() * weight));
        p.neighbour_evidence.push_back(top + std::log(total) - std::log(std::max(1, counted)));
      }
      at_level[level].push_back(std::move(p));
    }
  }
  // Nothing is fitted unless enough users give at least the first level's pairs.
  if (at_level.size() < 2 || static_cast<int>(at_level[1].size()) < options.min_users_per_level) {
    return DefaultTrust(1, 0);
  }

  // 1. Prior scale: the own posterior's held-out log loss, each (user, level) counting once.
  auto total_loss = [&](auto logits_of) {
    double loss = 0;
    for (size_t level = 1; level < at_level.size(); ++level) {
      for (const Predictions& p : at_level[level]) loss += MeanLogLoss(logits_of(p), 1);
    }
    return loss;
  };
  size_t scale = 0;
  double best = std::numeric_limits<double>::infinity();
  for (size_t s = 0; s < priors.size(); ++s) {
    const double loss = total_loss([&](const Predictions& p) { return p.own[s]; });
    if (loss < best) best = loss, scale = s;
  }
  trust.prior_scale = options.prior_scales[scale];

  // 2. Temperature and prior odds of the blend, at that prior scale.
  size_t temperature = 0;
  if (use_neighbours) {
    best = std::numeric_limits<double>::infinity();
    for (size_t t = 0; t < options.temperatures.size(); ++t) {
      for (double odds : options.own_log_prior_odds) {
        const double loss =
            total_loss([&](const Predictions& p) { return BlendLogits(p, scale, t, odds); });
        if (loss < best) {
          best = loss;
          temperature = t;
          trust.own_log_prior_odds = odds;
        }
      }
    }
    trust.neighbour_temperature = options.temperatures[temperature];
  }

  // 3. Per level, the best non-negative combination; each user's pairs weigh 1 in all.
  for (size_t level = 0; level < at_level.size(); ++level) {
    const std::vector<Predictions>& predictions = at_level[level];
    if (static_cast<int>(predictions.size()) < options.min_users_per_level) {
      break;  // too few users give this many pairs: the level below serves them too
    }
    Eigen::Index n = 0;
    for (const Predictions& p : predictions) n += p.population.size();
    Eigen::MatrixXd h(n, 3);
    Eigen::VectorXd weight(n);
    Eigen::Index row = 0;
    for (const Predictions& p : predictions) {
      const Eigen::Index m = p.population.size();
      h.block(row, 0, m, 1) = p.population;
      h.block(row, 1, m, 1) = p.own[scale];
      h.block(row, 2, m, 1) = use_neighbours
                                  ? BlendLogits(p, scale, temperature, trust.own_log_prior_odds)
                                  : p.own[scale];
      weight.segment(row, m).setConstant(1.0 / static_cast<double>(m));
      row += m;
    }
    ExperienceLevel fitted;
    fitted.min_pairs = level_pairs[level];
    fitted.calibration_users = static_cast<int>(predictions.size());
    const Eigen::VectorXd combination =
        level == 0 ? Eigen::VectorXd(FitNonNegative(h.leftCols(1), weight))
                   : FitNonNegative(use_neighbours ? h : h.leftCols(2), weight);
    fitted.fitted.population = combination[0];
    fitted.fitted.own = combination.size() > 1 ? combination[1] : 0;
    fitted.fitted.blend = combination.size() > 2 ? combination[2] : 0;
    fitted.population_only = FitNonNegative(h.col(0), weight)[0];
    fitted.own_only = level == 0 ? fitted.population_only : FitNonNegative(h.col(1), weight)[0];
    trust.levels.push_back(fitted);
  }
  return trust;
}

}  // namespace tailor::model

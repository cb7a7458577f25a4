#include "engine/knowledge.h"

#include <algorithm>
#include <span>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "model/stable_hash.h"

namespace tailor::engine {
namespace {

constexpr uint64_t kCalibrationSeed = 0x7a11;
// Per calibration user, at most this many pairs are learned from (the trust levels stop at
// 128) and predicted (the most recent): a refit's cost stays bounded as histories grow, and a
// user with a long history weighs no more in the fit than one with 64 held-out pairs.
constexpr size_t kMaxFeedbackPairs = 128;
constexpr size_t kMaxHeldOutPairs = 64;

// One user's history as a calibration user: the pairs of about half their prompts (in a
// seeded order) to learn from, the other prompts' pairs to predict — predicting pairs over
// responses the user already compared would reward memorising items, not knowing the user.
// A user whose pairs all share one prompt is split by sequence instead.
absl::StatusOr<model::CalibrationUser> ReadCalibrationUser(const std::string& user_id,
                                                           const model::FeatureSchema& schema,
                                                           storage::FeedbackStore& store) {
  std::vector<std::pair<std::string, Eigen::VectorXd>> pairs;
  absl::Status scan = store.ScanHistory(user_id, [&](const storage::records::FeedbackRecord& r) {
    if (r.chosen_features_size() != schema.dimension() ||
        r.rejected_features_size() != schema.dimension()) {
      return true;
    }
    pairs.emplace_back(
        r.prompt_id(),
        schema.Normalize(std::span(r.chosen_features().data(), r.chosen_features_size())) -
            schema.Normalize(std::span(r.rejected_features().data(), r.rejected_features_size())));
    return true;
  });
  if (!scan.ok()) return scan;
  absl::flat_hash_map<std::string, int> counts;
  for (const auto& [prompt, diff] : pairs) ++counts[prompt];
  std::vector<std::string> prompts;
  for (const auto& [prompt, count] : counts) prompts.push_back(prompt);
  std::sort(prompts.begin(), prompts.end(), [&](const std::string& a, const std::string& b) {
    return model::StableHash({user_id, a}, kCalibrationSeed) <
           model::StableHash({user_id, b}, kCalibrationSeed);
  });
  absl::flat_hash_set<std::string> feedback_prompts;
  int pooled = 0;
  for (size_t i = 0; i + 1 < prompts.size() && pooled * 2 < static_cast<int>(pairs.size()); ++i) {
    feedback_prompts.insert(prompts[i]);
    pooled += counts[prompts[i]];
  }
  model::CalibrationUser user;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const bool feedback =
        prompts.size() > 1 ? feedback_prompts.contains(pairs[i].first) : i * 2 < pairs.size();
    (feedback ? user.feedback : user.held_out).push_back(std::move(pairs[i].second));
  }
  if (user.feedback.size() > kMaxFeedbackPairs) user.feedback.resize(kMaxFeedbackPairs);
  if (user.held_out.size() > kMaxHeldOutPairs) {
    user.held_out.erase(user.held_out.begin(),
                        user.held_out.end() - static_cast<long>(kMaxHeldOutPairs));
  }
  return user;
}

}  // namespace

void ApplyTrust(Knowledge& knowledge, model::Trust trust) {
  knowledge.prior = knowledge.population;
  knowledge.prior.cov *= trust.prior_scale;
  knowledge.prior_information = model::InformationOf(knowledge.prior);
  knowledge.trust = std::move(trust);
}

std::shared_ptr<Knowledge> BuildKnowledge(const std::vector<EstablishedUser>& users,
                                          const model::FeatureSchema& schema,
                                          storage::FeedbackStore& store,
                                          const model::Population& base,
                                          const KnowledgeOptions& options,
                                          const model::Trust* reuse) {
  auto knowledge = std::make_shared<Knowledge>();
  std::vector<model::Posterior> fit;
  for (size_t i = 0;
       i < users.size() && fit.size() < static_cast<size_t>(options.max_population_fit_users);
       ++i) {
    fit.push_back(users[i].posterior);
  }
  knowledge->population = fit.empty() ? base : model::FitPopulation(fit, base);
  knowledge->information = model::InformationOf(knowledge->population);

  auto set = std::make_shared<model::ReferenceSet>();
  set->weights.resize(static_cast<Eigen::Index>(users.size()), schema.dimension());
  auto rows = std::make_shared<absl::flat_hash_map<std::string, int>>();
  for (size_t i = 0; i < users.size(); ++i) {
    set->user_ids.push_back(users[i].id);
    set->weights.row(static_cast<Eigen::Index>(i)) = users[i].posterior.mean().transpose();
    (*rows)[users[i].id] = static_cast<int>(i);
  }

  model::Trust trust = model::DefaultTrust(options.default_neighbour_temperature,
                                           options.default_own_log_prior_odds);
  if (reuse != nullptr) {
    trust = *reuse;
  } else if (static_cast<int>(users.size()) >= options.min_calibration_users) {
    // Held-out users: a seeded sample, whose own pairs the prior they are predicted under
    // must not have seen, so the population is refitted without them for the calibration.
    std::vector<size_t> order(users.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return model::StableHash({users[a].id}, kCalibrationSeed) <
             model::StableHash({users[b].id}, kCalibrationSeed);
    });
    // At most half the users are held out, so the calibration population stays well fitted.
    const size_t held = std::min(static_cast<size_t>(options.calibration_users), users.size() / 2);
    std::vector<model::CalibrationUser> calibration;
    absl::flat_hash_set<size_t> held_rows;
    for (size_t i = 0; i < held; ++i) {
      absl::StatusOr<model::CalibrationUser> user =
          ReadCalibrationUser(users[order[i]].id, schema, store);
      if (!user.ok() || user->feedback.empty() || user->held_out.empty()) continue;
      user->reference_row = static_cast<int>(order[i]);
      held_rows.insert(order[i]);
      calibration.push_back(*std::move(user));
    }
    if (static_cast<int>(calibration.size()) >= options.min_calibration_users / 2) {
      std::vector<model::Posterior> rest;
      for (size_t i = 0;
           i < users.size() && rest.size() < static_cast<size_t>(options.max_population_fit_users);
           ++i) {
        if (!held_rows.contains(i)) rest.push_back(users[i].posterior);
      }
      model::Trust fitted = model::FitTrust(calibration, model::FitPopulation(rest, base), base,
                                            *set, options.neighbours, options.trust_fit);
      if (fitted.calibration_users > 0) trust = std::move(fitted);
    }
  }
  ApplyTrust(*knowledge, std::move(trust));

  knowledge->rows = std::move(rows);
  if (set->size() > options.exact_scan_max_users) {
    knowledge->index =
        model::NeighbourIndex::Build(*set, knowledge->population, options.neighbour_index);
  }
  knowledge->reference = std::move(set);
  return knowledge;
}

}  // namespace tailor::engine

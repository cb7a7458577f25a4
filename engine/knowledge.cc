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
                                                           const SchemaHistory& schema,
                                                           storage::FeedbackStore& store) {
  std::vector<std::pair<std::string, Eigen::VectorXd>> pairs;
  absl::Status scan = store.ScanHistory(user_id, [&](const storage::records::FeedbackRecord& r) {
    std::optional<Eigen::VectorXd> pair = schema.PairOf(r);
    if (pair.has_value()) pairs.emplace_back(r.prompt_id(), *std::move(pair));
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

// Adds other shards' calibration users (cluster mode) to `calibration` in a seeded order until
// it holds `limit`, each with their own reference row (when it was lent) left out of the
// neighbours they are predicted from. Pairs of another dimension are not read.
void AddExternalCalibration(std::span<const ExternalCalibrationUser* const> external,
                            const ReferenceRows& rows, int reference_size, int limit, int dimension,
                            std::vector<model::CalibrationUser>& calibration) {
  std::vector<std::pair<uint64_t, const ExternalCalibrationUser*>> order;
  order.reserve(external.size());
  for (const ExternalCalibrationUser* user : external) {
    order.emplace_back(model::StableHash({user->id}, kCalibrationSeed), user);
  }
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // Another schema's pairs (a shard misconfigured), or damaged ones, are not read.
  const auto usable = [&](const std::vector<Eigen::VectorXd>& pairs) {
    return !pairs.empty() && std::all_of(pairs.begin(), pairs.end(), [&](const Eigen::VectorXd& p) {
      return p.size() == dimension && p.allFinite();
    });
  };
  for (const auto& [hash, external_user] : order) {
    if (static_cast<int>(calibration.size()) >= limit) break;
    model::CalibrationUser user = external_user->user;
    if (!usable(user.feedback) || !usable(user.held_out)) continue;
    auto row = rows.find(external_user->id);
    user.reference_row = row != rows.end() && row->second < reference_size ? row->second : -1;
    calibration.push_back(std::move(user));
  }
}

}  // namespace

void ApplyTrust(Knowledge& knowledge, model::Trust trust) {
  knowledge.prior = knowledge.population;
  knowledge.prior.cov *= trust.prior_scale;
  knowledge.prior_information = model::InformationOf(knowledge.prior);
  knowledge.trust = std::move(trust);
}

std::shared_ptr<Knowledge> BuildKnowledge(
    const model::Population& population, const std::vector<EstablishedUser>& fit_users,
    const ReferencePool& pool, const SchemaHistory& schema, storage::FeedbackStore& store,
    const model::Population& base, const KnowledgeOptions& options, const model::Trust* reuse,
    const ExternalCalibration& external, LocalCalibration* lent) {
  auto knowledge = std::make_shared<Knowledge>();
  knowledge->population = population;
  knowledge->information = model::InformationOf(knowledge->population);
  const model::ReferenceSet& set = *pool.reference();
  const int n = set.size();

  model::Trust trust = model::DefaultTrust(options.default_neighbour_temperature,
                                           options.default_own_log_prior_odds);
  if (reuse != nullptr) {
    trust = *reuse;
  } else if (n >= options.min_calibration_users) {
    // Held-out users: a seeded sample, whose own pairs the prior they are predicted under
    // must not have seen, so the population is refitted without them for the calibration.
    // At most half the users are held out, so the calibration population stays well fitted.
    std::vector<std::pair<uint64_t, int>> order;  // (hash, row)
    order.reserve(static_cast<size_t>(n));
    for (int row = 0; row < n; ++row) {
      const std::string& id = set.user_ids[static_cast<size_t>(row)];
      // Other shards' users (cluster mode) have no history here: they come as `external`.
      if (!id.empty() && id[0] == kExternalIdPrefix) continue;
      order.emplace_back(model::StableHash({id}, kCalibrationSeed), row);
    }
    const size_t local = order.size();
    const size_t held = std::min(static_cast<size_t>(options.calibration_users), local / 2);
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(held),
                      order.end());
    std::vector<model::CalibrationUser> calibration;
    std::vector<std::string> calibration_ids;
    absl::flat_hash_set<int> held_rows;
    for (size_t i = 0; i < held; ++i) {
      const int row = order[i].second;
      const std::string& id = set.user_ids[static_cast<size_t>(row)];
      absl::StatusOr<model::CalibrationUser> user = ReadCalibrationUser(id, schema, store);
      if (!user.ok() || user->feedback.empty() || user->held_out.empty()) continue;
      user->reference_row = row;
      held_rows.insert(row);
      calibration.push_back(*std::move(user));
      calibration_ids.push_back(id);
    }
    std::vector<model::Posterior> rest;
    for (const EstablishedUser& user : fit_users) {
      if (!held_rows.contains(user.row)) rest.push_back(user.posterior);
    }
    const model::Population local_population = model::FitPopulation(rest, base);
    const size_t local_calibration = calibration.size();
    AddExternalCalibration(external.users, *pool.rows(), set.size(), options.calibration_users,
                           schema.current().schema.dimension(), calibration);
    if (static_cast<int>(calibration.size()) >= options.min_calibration_users / 2) {
      std::vector<model::Population> fits(external.populations.begin(), external.populations.end());
      fits.push_back(local_population);
      const model::Population calibration_population =
          fits.size() == 1 ? local_population : model::PoolPopulations(fits);
      model::Trust fitted = model::FitTrust(calibration, calibration_population, base, set,
                                            options.neighbours, options.trust_fit);
      if (fitted.calibration_users > 0) trust = std::move(fitted);
    }
    if (lent != nullptr) {
      calibration.resize(local_calibration);
      lent->users = std::move(calibration);
      lent->user_ids = std::move(calibration_ids);
      lent->population = local_population;
    }
  }
  ApplyTrust(*knowledge, std::move(trust));

  knowledge->reference = pool.reference();
  knowledge->rows = pool.rows();
  knowledge->index = pool.index();
  return knowledge;
}

}  // namespace tailor::engine

// Knowledge: what a refresh learns from the established users and every ranking reads — the
// population prior, the neighbour reference set and its HNSW index, and the trust fitted on
// held-out established users (prior scale, neighbour temperature, per-level weights of the
// sources). Built off the serving path and published whole; never modified after.
#ifndef TAILOR_ENGINE_KNOWLEDGE_H_
#define TAILOR_ENGINE_KNOWLEDGE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/reference_pool.h"
#include "engine/schema_history.h"
#include "model/belief.h"
#include "model/neighbour_index.h"
#include "model/population.h"
#include "model/posterior.h"
#include "model/schema.h"
#include "model/trust.h"
#include "storage/feedback_store.h"

namespace tailor::engine {

struct Knowledge {
  model::Population population;
  model::PriorInformation information;  // of `population`
  // The prior users' own posteriors are served under: `population` with its covariance
  // multiplied by trust.prior_scale.
  model::Population prior;
  model::PriorInformation prior_information;
  model::Trust trust;
  std::shared_ptr<const model::ReferenceSet> reference;
  // Over `reference` when it is larger than exact_scan_max_users; declared after it, so
  // destroyed first.
  std::shared_ptr<const model::NeighbourIndex> index;
  // user id -> row of `reference`
  std::shared_ptr<const ReferenceRows> rows;
  // Rows of users deleted since the refresh (non-zero), or null; shared with the index.
  std::shared_ptr<const std::vector<char>> removed;
  int removed_count = 0;
  uint64_t version = 0;
  // The version at which `reference` was built: copies that only mark removals keep it, so
  // neighbour tracks over the reference set stay valid across them.
  uint64_t reference_version = 0;
};

struct KnowledgeOptions {
  bool neighbours = true;
  // Trust: established users held out to fit it (a seeded sample), and the fewest with which
  // it is fitted at all; below that the defaults serve the blend as it is.
  int calibration_users = 400;
  int min_calibration_users = 30;
  model::TrustFitOptions trust_fit;
  double default_neighbour_temperature = 1.0;
  double default_own_log_prior_odds = 0.0;
};

// Cluster mode: an established user of another shard, as a cold-start neighbour: an opaque id
// (it starts with kExternalIdPrefix, so it never names a local user) and the posterior mean.
struct ExternalReference {
  std::string id;
  Eigen::VectorXd mean;
  std::string group;  // the knowledge group whose cold users may borrow it
};
inline constexpr char kExternalIdPrefix = '\x1f';

// Cluster mode: an established user of another shard whom that shard held out to fit its
// trust, lent so that every shard fits trust from calibration users across the cluster: their
// pairs (z-scored under the current schema, split into pairs to learn from and pairs to predict
// as the lending shard split them) under the opaque id their reference row has, if it was lent.
struct ExternalCalibrationUser {
  std::string id;
  std::string group;
  model::CalibrationUser user;  // reference_row unused
};

// What a trust fit held out of a group's own users, and the population fitted without them:
// lent to the other shards (cluster mode), whose fits then predict these users under a prior
// that has not seen them, as the local fit does.
struct LocalCalibration {
  std::vector<std::string> user_ids;
  std::vector<model::CalibrationUser> users;  // parallel to user_ids
  model::Population population;
};

// Other shards' calibration users and population fits without them, for one group.
struct ExternalCalibration {
  std::span<const ExternalCalibrationUser* const> users;
  std::span<const model::Population> populations;
};

// An established user the population is fitted from, as a refresh sees them.
struct EstablishedUser {
  std::string id;
  int row = -1;                // in the reference set
  model::Posterior posterior;  // learned under the base prior
};

// Builds the knowledge from the reference set, rows and index of `pool` (after its Update and
// Index) and `population`, fitted from `fit_users`. Trust is fitted on held-out reference
// users (a seeded sample), whose histories are read from `store`, against a population fitted
// without them. When `reuse` is given its trust is kept instead of being fitted again (refits
// are needed only when the users have changed enough).
//
// Cluster mode: `external` calibration users fill the held-out set up to
// options.calibration_users (the local ones first, then others in a seeded order), each
// predicted without their own reference row, and the calibration population pools the local
// fit without the held-out users with the other shards' fits without theirs. A refit fills
// `lent` (when given) with the local held-out users and that local fit.
std::shared_ptr<Knowledge> BuildKnowledge(
    const model::Population& population, const std::vector<EstablishedUser>& fit_users,
    const ReferencePool& pool, const SchemaHistory& schema, storage::FeedbackStore& store,
    const model::Population& base, const KnowledgeOptions& options, const model::Trust* reuse,
    const ExternalCalibration& external = {}, LocalCalibration* lent = nullptr);

// The prior-scaled population and its information for `trust` (shared by the constructor's
// empty knowledge and BuildKnowledge).
void ApplyTrust(Knowledge& knowledge, model::Trust trust);

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_KNOWLEDGE_H_

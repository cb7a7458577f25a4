// PreferenceEngine: Tailor's use cases — rank candidates for a user, record feedback, cold
// start from similar users, user lifecycle — on top of model/ (math) and storage/ (RocksDB).
//
// Concurrency: writes to one user serialize on a striped mutex held across the durable
// commit; readers only copy a shared_ptr to the user's immutable entry under a short map
// lock, so a ranking never waits for RocksDB or for a writer's math.
#ifndef TAILOR_ENGINE_PREFERENCE_ENGINE_H_
#define TAILOR_ENGINE_PREFERENCE_ENGINE_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/knowledge.h"
#include "engine/live_guard.h"
#include "engine/mutex.h"
#include "engine/reference_pool.h"
#include "engine/schema_history.h"
#include "model/belief.h"
#include "model/neighbour_index.h"
#include "model/neighbour_track.h"
#include "model/population.h"
#include "model/posterior.h"
#include "model/schema.h"
#include "storage/feedback_store.h"

namespace tailor::engine {

struct EngineOptions {
  // A data directory made for another schema: make the engine's schema its next version
  // (engine/schema_history.h; every user is rebuilt from history under it) instead of refusing.
  bool evolve_schema = false;
  // Preference drift: a pair counts half as much after this many newer pairs of the same
  // user (model::Posterior::Forget before each one, online and when rebuilding); 0 = pairs
  // count for ever.
  double forget_half_life_pairs = 0;
  // User ids are "tenant/user" (token auth): keep counts per tenant (TenantCounts).
  bool count_by_tenant = false;
  // User ids are "tenant/user": each tenant's knowledge (population prior, neighbour reference
  // set and index, trust, live safety net) is fitted from that tenant's users alone and serves
  // only them, so no tenant's users' tastes reach another tenant's rankings. Tenants named in
  // `shared_knowledge_tenants` opt in to one knowledge group they all share ("*": every
  // tenant, i.e. one knowledge for all). Off: one knowledge for every user.
  bool knowledge_by_tenant = false;
  std::vector<std::string> shared_knowledge_tenants;
  // Prior variance of each z-scored weight before any population exists; also the prior each
  // user's own posterior is stored under (the population prior is applied on top).
  double base_prior_variance = 1.0;
  // A user with this many pairs joins the neighbour reference set and the population fit.
  int established_pairs = 16;
  // While a user has fewer pairs than this, their belief blends neighbours and their own
  // posterior, each weighted by how well it explains the user's pairs (Bayesian model
  // averaging of the two models' evidence); from here on only the own posterior is used.
  // The user's pairs are kept in memory until then. 0 disables neighbour cold start.
  int handover_pairs = 128;
  // Used until a refresh fits them from held-out established users (model/trust.h): prior
  // log-odds of the own posterior against the neighbours in that blend, and the neighbour
  // likelihood's temperature.
  double own_model_log_prior_odds = 0.0;
  double neighbour_temperature = 1.0;
  // Established users held out at each refresh to fit trust, and the fewest established
  // users with which it is fitted at all.
  int calibration_users = 400;
  int min_calibration_users = 30;
  // The live safety net (engine/live_guard.h): events per experience level after which a
  // prediction's loss counts half.
  double live_guard_window = 2000;
  // Neighbours kept for favourite probabilities, exploration and suggestions.
  int neighbour_top_k = 256;
  // Bounds the neighbour reference set and the population fit: at most this many established
  // users (a seeded uniform sample when there are more).
  int max_reference_users = 1000000;
  int max_population_fit_users = 4000;
  // Reference sets up to this size are weighed exactly (every user, for every cold-start
  // lookup); larger ones through an HNSW index, which weighs the `neighbour_index.near` users
  // closest to the user's posterior plus a uniform sample of the rest
  // (model/neighbour_index.h). Refreshes change the index where the set changed and build it
  // anew only past the thresholds below (engine/reference_pool.h).
  int exact_scan_max_users = 5000;
  model::NeighbourIndexOptions neighbour_index;
  double index_rebuild_changed_fraction = 1.0;
  double index_rebuild_drift = 0.5;
  // Users whose serving belief is kept between calls: the posterior under the current
  // served prior and, for cold users, the neighbour blend (both change only with the
  // user's feedback or a refresh, and are the costly part of ranking). Each takes about
  // (d² + d) doubles; a cold user's also holds up to ~4 KB of top neighbours and the
  // neighbour track that the user's next pair extends (model/neighbour_track.h: 4 bytes per
  // reference user when they are weighed exactly, 8 per weighed row through the index).
  // Bounded by count and by bytes; 0 users disables it.
  int blend_cache_users = 16384;
  size_t blend_cache_bytes = size_t{64} << 20;
  // Background refresh of the population prior and reference set; 0 = only on demand.
  absl::Duration refresh_period = absl::Seconds(30);
};

struct EngineStats {
  uint64_t users = 0;
  uint64_t established_users = 0;
  uint64_t feedback_events = 0;
  uint64_t reference_users = 0;
  // Established users the served population prior was fitted from: in cluster mode, every
  // shard's (model::PoolPopulations), else this engine's.
  uint64_t population_users = 0;
  uint64_t indexed_users = 0;   // reference users in the HNSW index (0: exact scan)
  uint64_t index_rebuilds = 0;  // HNSW graphs built from scratch
  uint64_t index_changes = 0;   // points set or removed in place by refreshes
  // Serving beliefs found in the cache for the user's entry and knowledge, and computed.
  uint64_t belief_cache_hits = 0;
  uint64_t belief_cache_misses = 0;
  double refresh_period_seconds = 0;  // 0: knowledge fitted once at startup
  uint64_t rebuilt_states = 0;
  uint64_t users_loaded = 0;           // so far, while Load runs (then all of them)
  double last_refresh_seconds = 0;     // wall time of the last population/reference refresh
  uint64_t knowledge_version = 0;      // the newest knowledge published (of any group)
  uint64_t knowledge_groups = 0;       // 1, or one per tenant (or shared group) with users
  int64_t knowledge_as_of_micros = 0;  // the last refresh read the users as of this time
};

// One knowledge group's knowledge (EngineOptions::knowledge_by_tenant).
struct KnowledgeSummary {
  uint64_t version = 0;
  uint64_t reference_users = 0;
  uint64_t population_users = 0;
  uint64_t indexed_users = 0;
};

// The knowledge group of every user without knowledge_by_tenant, and the group the tenants in
// shared_knowledge_tenants share (no tenant name is empty or contains '*').
inline constexpr char kAllUsersGroup[] = "";
inline constexpr char kSharedKnowledgeGroup[] = "*";

// Cluster mode: a shard's population fit for one knowledge group.
struct GroupPopulation {
  std::string group;
  model::Population population;
  // Fitted without the users the group's last trust fit held out (CalibrationSample), which
  // other shards fit their trust with; users = 0 when there was no such fit.
  model::Population calibration;
};

// One tenant's users (EngineOptions::count_by_tenant).
struct TenantCounts {
  int64_t users = 0;
  int64_t established_users = 0;
  int64_t feedback_events = 0;
};

// What the last refresh fitted, and the live safety net's shares at each fitted level (before
// any fit: one level from 0 pairs, the blend served as it is).
struct TrustReport {
  model::Trust trust;
  std::vector<LiveGuard::Shares> live_shares;  // one per trust.levels entry
};

struct CandidateInput {
  std::string id;
  std::span<const float> features;
};

struct RankedCandidate {
  int index = 0;  // position in the request
  double score = 0;
  double probability_best = 0;
};

struct RankResult {
  std::vector<RankedCandidate> ranked;
  model::KnowledgeSource source = model::KnowledgeSource::kPopulation;
  uint64_t user_feedback_count = 0;
};

struct FeedbackInput {
  std::string event_id;
  std::string user_id;
  std::string prompt_id;
  CandidateInput chosen;
  CandidateInput rejected;
  int64_t timestamp_micros = 0;  // 0 = now
};

// The sources a prediction can come from, for live per-source log loss.
enum PredictionSource { kPopulationSource, kOwnSource, kNeighbourSource, kServedSource };
inline constexpr int kPredictionSources = 4;

struct FeedbackResult {
  bool duplicate = false;
  uint64_t user_feedback_count = 0;
  double predicted_chosen_probability = 0.5;
  uint64_t sequence = 0;
  // P(chosen) before learning from the event by each source (PredictionSource order): the
  // population, the own posterior, the neighbour blend, and what was served. Applied events
  // only.
  std::array<double, kPredictionSources> source_probability{0.5, 0.5, 0.5, 0.5};
};

struct Comparison {
  int first = 0;
  int second = 1;
  double probability_first = 0.5;
  double information_bits = 1.0;
};

struct UserProfile {
  uint64_t feedback_count = 0;
  // How many pairs still count: feedback_count, or less with forgetting (sum of 2^(-age /
  // half-life) over the user's pairs).
  double effective_pairs = 0;
  Eigen::VectorXd weight_mean;
  Eigen::VectorXd weight_stddev;
  model::KnowledgeSource source = model::KnowledgeSource::kPopulation;
  int64_t first_feedback_micros = 0;
  int64_t last_feedback_micros = 0;
};

struct UserExport {
  UserProfile profile;
  std::vector<storage::records::FeedbackRecord> history;
};

class PreferenceEngine {
 public:
  // Binds the store to `schema` (refusing a data directory made for another schema unless
  // options.evolve_schema), loads
  // every user's state (rebuilding any that is missing or unreadable from its history), and
  // fits the population. `store` must outlive the engine.
  static absl::StatusOr<std::unique_ptr<PreferenceEngine>> Open(model::FeatureSchema schema,
                                                                storage::FeedbackStore& store,
                                                                EngineOptions options = {});
  // Open in two steps, for a server that reports its startup while the users load: Create
  // binds the schema and returns an engine with no users (Stats() and Trust() may be read
  // from then on, nothing else); Load loads them and fits the knowledge (Open's work).
  static absl::StatusOr<std::unique_ptr<PreferenceEngine>> Create(model::FeatureSchema schema,
                                                                  storage::FeedbackStore& store,
                                                                  EngineOptions options = {});
  absl::Status Load();
  ~PreferenceEngine();

  // Candidates must each have schema().dimension() finite features (INVALID_ARGUMENT if not).
  absl::StatusOr<RankResult> Rank(absl::string_view user_id,
                                  std::span<const CandidateInput> candidates, bool explore);
  absl::StatusOr<Comparison> Suggest(absl::string_view user_id,
                                     std::span<const CandidateInput> candidates);
  // Durable before it returns. Idempotent on (user_id, event_id).
  absl::StatusOr<FeedbackResult> RecordFeedback(const FeedbackInput& event);
  // Several events, applied in order and committed together in one durable write (one WAL
  // write for all of them): a result per event, each as RecordFeedback would give it. Events
  // with bad input get their INVALID_ARGUMENT and the rest go on; if the write fails, every
  // event that was to be applied gets that error and nothing of the batch is stored. An event
  // repeated within the batch is a duplicate of its first occurrence.
  //
  // Cluster mode passes the log `position` the events come from: it is stored in the same
  // write, and each applied event's record carries its sequence.
  std::vector<absl::StatusOr<FeedbackResult>> RecordFeedbackBatch(
      std::span<const FeedbackInput> events,
      std::optional<storage::LogPosition> position = std::nullopt);
  // RecordFeedback's INVALID_ARGUMENT for the event, or OK, without applying it.
  absl::Status CheckFeedback(const FeedbackInput& event) const;

  // NOT_FOUND for a user without feedback.
  absl::StatusOr<UserProfile> GetUser(absl::string_view user_id);
  absl::StatusOr<UserExport> ExportUser(absl::string_view user_id);
  // Erases everything stored about the user, and their place in the neighbour reference set.
  // With a log `position`, it is stored in the same write.
  absl::StatusOr<storage::DeletedUser> DeleteUser(
      absl::string_view user_id, std::optional<storage::LogPosition> position = std::nullopt);
  // The ids of every user with feedback (a copy: users may come and go meanwhile).
  std::vector<std::string> UserIds() const;

  // Refits the population prior and rebuilds the neighbour reference set now.
  void RefreshKnowledge();

  // Cluster mode, cold start across shards: other shards' established users, offered to the
  // neighbour reference set at each refresh alongside the local ones (the seeded sample of
  // max_reference_users is drawn from both). Replaces the previous set.
  void SetExternalReferences(std::shared_ptr<const std::vector<ExternalReference>> references);
  // Cluster mode: other shards' population fits (LocalPopulation), pooled with this shard's at
  // each refresh (model::PoolPopulations) into the prior it serves. Replaces the previous ones.
  // Each is pooled only into its own knowledge group's.
  void SetExternalPopulations(std::vector<GroupPopulation> populations);
  // The population fitted from this shard's own users at the last refresh, per knowledge group
  // that has fitted one, which other shards pool with theirs.
  std::vector<GroupPopulation> LocalPopulations() const;
  // What this shard offers the others: up to `limit` of its established users (those whose
  // ids hash lowest, a seeded uniform sample), each under the id `id_prefix` + a keyed digest
  // of the user id (no user id leaves the shard), tagged with the user's knowledge group (a
  // shard offers them only to that group's cold users).
  std::vector<ExternalReference> ReferenceSample(int limit, const std::string& id_prefix) const;
  // Cluster mode, trust across shards: the users this shard's last trust fit of each group
  // held out (their pairs split as the fit split them), at most `limit` of them, under the ids
  // ReferenceSample gives them, tagged with their group. With each group's population fitted
  // without them (LocalPopulations' `calibration`), other shards fit trust on them as well as
  // on their own, so trust is not fitted from 1/N of the users as shards multiply.
  std::vector<ExternalCalibrationUser> CalibrationSample(int limit,
                                                         const std::string& id_prefix) const;
  // Other shards' CalibrationSample()s, used at each trust fit from now on (each by its own
  // group). Replaces the previous ones.
  void SetExternalCalibration(std::shared_ptr<const std::vector<ExternalCalibrationUser>> users);

  const model::FeatureSchema& schema() const { return schema_; }
  // The data directory's schema versions; the last is schema()'s.
  const SchemaHistory& schema_history() const { return *schema_history_; }
  storage::FeedbackStore& store() { return store_; }
  EngineStats Stats() const;
  // The users of `tenant` (ids "tenant/…"); zeros unless EngineOptions::count_by_tenant.
  TenantCounts CountsOf(absl::string_view tenant) const;
  // The knowledge group that serves `user_id`, or every user of `tenant`.
  std::string KnowledgeGroupOf(absl::string_view user_id) const;
  std::string KnowledgeGroupOfTenant(absl::string_view tenant) const;
  // The groups with knowledge so far (every group a user has been served or stored in).
  std::vector<std::string> KnowledgeGroups() const;
  KnowledgeSummary KnowledgeOf(absl::string_view group) const;
  TrustReport Trust(absl::string_view group = kAllUsersGroup) const;

 private:
  // A user's in-memory state; immutable once published (replaced, never mutated).
  struct UserEntry;
  struct Blend;
  // One knowledge group: what its users are served from, and what fits it.
  struct Group {
    Group(std::string group_name, std::shared_ptr<const Knowledge> initial, int guard_levels,
          double guard_window, ReferencePoolOptions pool_options)
        : name(std::move(group_name)),
          knowledge(std::move(initial)),
          guard(guard_levels, guard_window, {0.98, 0.01, 0.01}),
          pool(std::move(pool_options)) {}
    const std::string name;
    mutable Mutex knowledge_mu;
    std::shared_ptr<const Knowledge> knowledge ABSL_GUARDED_BY(knowledge_mu);
    // Users deleted since the running refresh started reading users (it may include them).
    absl::flat_hash_set<std::string> deleted_during_refresh ABSL_GUARDED_BY(knowledge_mu);
    LiveGuard guard;
    // Carried from refresh to refresh; used only under refresh_work_mu_.
    ReferencePool pool;
    // Established users, and other shards' calibration users, when trust was last fitted.
    uint64_t trust_fitted_users = 0;
    model::Population local_population;  // under external_mu_: the last fit of own users
    // Under external_mu_: what the last trust fit held out of the group's own users.
    std::shared_ptr<const LocalCalibration> lent;
  };
  struct Stripe {
    Mutex write_mu;        // serializes writers of the stripe's users, held across commit
    mutable Mutex map_mu;  // guards `users`; held only to copy or swap a pointer
    absl::flat_hash_map<std::string, std::shared_ptr<const UserEntry>> users
        ABSL_GUARDED_BY(map_mu);
    // Serving beliefs of the stripe's recently served users (bounded; see blend_cache_users),
    // each with when it was last used: the least recently used one makes room.
    struct CachedBlend {
      std::shared_ptr<const Blend> blend;
      uint64_t last_used = 0;
    };
    absl::flat_hash_map<std::string, CachedBlend> blends ABSL_GUARDED_BY(map_mu);
    size_t blend_bytes ABSL_GUARDED_BY(map_mu) = 0;  // Blend::Bytes() of `blends`
    // count_by_tenant: the stripe's users by tenant.
    absl::flat_hash_map<std::string, TenantCounts> tenants ABSL_GUARDED_BY(map_mu);
    uint64_t blend_clock ABSL_GUARDED_BY(map_mu) = 0;  // ticks at each use
  };
  static constexpr int kStripes = 256;

  PreferenceEngine(model::FeatureSchema schema, std::shared_ptr<const SchemaHistory> schema_history,
                   storage::FeedbackStore& store, EngineOptions options);
  // Whether a stored state can serve as it is: readable, and learned with this engine's
  // forgetting and schema version (else it is rebuilt from history).
  bool StateIsCurrent(const storage::records::UserState& state) const;
  absl::Status LoadUsers();
  absl::StatusOr<std::shared_ptr<const UserEntry>> Rebuild(absl::string_view user_id);
  static size_t StripeIndex(absl::string_view user_id);
  // count_by_tenant: moves the user's tenant's counts from `before` to `after` (either null).
  void CountLocked(Stripe& stripe, absl::string_view user_id, const UserEntry* before,
                   const UserEntry* after) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(stripe.map_mu);
  Stripe& StripeFor(absl::string_view user_id);
  std::shared_ptr<const UserEntry> Find(absl::string_view user_id);
  // The knowledge group `name`, made (with the empty knowledge) on first use; groups are never
  // removed, so the reference stays valid.
  Group& GroupNamed(absl::string_view name) const;
  Group& GroupOf(absl::string_view user_id) const { return GroupNamed(KnowledgeGroupOf(user_id)); }
  // Every group so far (a copy of the pointers: groups may be made meanwhile).
  std::vector<Group*> AllGroups() const;
  static KnowledgeSummary SummaryOf(const Knowledge& knowledge);
  static std::shared_ptr<const Knowledge> CurrentKnowledge(const Group& group);
  // Knowledge before any refresh: the base prior, default trust, no neighbours.
  std::shared_ptr<const Knowledge> EmptyKnowledge() const;
  absl::Status CheckFeatures(absl::string_view field, std::span<const float> features) const;
  // The event's normalized pair (chosen minus rejected), or its INVALID_ARGUMENT.
  absl::StatusOr<Eigen::VectorXd> PairOf(const FeedbackInput& event) const;
  absl::StatusOr<Eigen::MatrixXd> Normalize(std::span<const CandidateInput> candidates) const;
  // What a belief is for: predictions need its mean only; Thompson draws (exploration) and
  // suggestions also the heaviest neighbours; suggestions for a user with no pairs yet the
  // population's spread as well.
  enum class BeliefUse { kPredict, kExplore, kSuggest };
  model::Belief BeliefFor(const UserEntry* entry, const Group& group, const Knowledge& knowledge,
                          absl::string_view user_id, BeliefUse use);
  // Neighbour options under `knowledge`: its temperature and removed rows.
  static model::NeighbourOptions NeighbourOptionsFor(const Knowledge& knowledge, int top_k);
  // The live safety net's experience level for a user with `pairs` pairs.
  int GuardLevel(uint64_t pairs) const;
  // The combinations a user with `pairs` pairs may be served (LiveGuard::Candidate order).
  std::array<model::SourceWeights, LiveGuard::kCandidates> Candidates(const model::Trust& trust,
                                                                      uint64_t pairs) const;
  // What is served: the candidates mixed by the group's live shares.
  model::SourceWeights ServedWeights(const LiveGuard& guard, const model::Trust& trust,
                                     uint64_t pairs) const;
  // The user's re-priored posterior and, while cold, neighbour blend; from the cache when
  // they were computed for this very entry and knowledge version.
  std::shared_ptr<const Blend> BlendFor(const UserEntry& entry, const Knowledge& knowledge,
                                        absl::string_view user_id);
  // A cold entry's neighbour track: `previous` (the user's last cached blend) carried
  // forward when it weighs the same reference set, else started from the entry's pairs.
  std::shared_ptr<const model::NeighbourTrack> TrackFor(const UserEntry& entry,
                                                        const Knowledge& knowledge,
                                                        absl::string_view user_id,
                                                        const Blend* previous);
  void RefreshLoop();
  // One refresh; `quick` caps the reference set at exact_scan_max_users (no index build).
  void Refresh(bool quick);
  // One group's part of a refresh, once `pool` has been offered the group's users.
  void RefreshGroup(Group& group, ReferencePool& pool, bool quick)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_work_mu_);

  const model::FeatureSchema schema_;
  const std::shared_ptr<const SchemaHistory> schema_history_;
  storage::FeedbackStore& store_;
  const EngineOptions options_;
  const model::Population base_prior_;
  const model::PriorInformation base_information_;
  const double forget_keep_;  // 2^(-1 / forget_half_life_pairs), or 1
  const KnowledgeOptions knowledge_options_;
  const absl::flat_hash_set<std::string> shared_knowledge_tenants_;
  std::array<Stripe, kStripes> stripes_;

  mutable Mutex groups_mu_;
  // Never erased: a Group& stays valid for the engine's life.
  mutable absl::flat_hash_map<std::string, std::unique_ptr<Group>> groups_
      ABSL_GUARDED_BY(groups_mu_);
  Group* all_users_group_ = nullptr;  // without knowledge_by_tenant: the only group
  // Knowledge versions, unique across groups (a cached blend names the one it was made under).
  mutable std::atomic<uint64_t> knowledge_versions_{0};

  std::atomic<uint64_t> users_{0};
  std::atomic<uint64_t> established_users_{0};
  std::atomic<uint64_t> feedback_events_{0};
  std::atomic<uint64_t> rebuilt_states_{0};
  std::atomic<uint64_t> users_loaded_{0};
  std::atomic<uint64_t> next_serial_{1};  // UserEntry::serial
  std::atomic<double> last_refresh_seconds_{0};
  std::atomic<int64_t> knowledge_as_of_micros_{0};

  // Serializes refreshes, so an older refit can never be published over a newer one.
  Mutex refresh_work_mu_;
  std::atomic<uint64_t> index_rebuilds_{0};
  std::atomic<uint64_t> blend_hits_{0};
  std::atomic<uint64_t> blend_misses_{0};
  std::atomic<uint64_t> index_changes_{0};
  mutable Mutex external_mu_;
  std::shared_ptr<const std::vector<ExternalReference>> external_ ABSL_GUARDED_BY(external_mu_);
  std::vector<GroupPopulation> external_populations_ ABSL_GUARDED_BY(external_mu_);
  std::shared_ptr<const std::vector<ExternalCalibrationUser>> external_calibration_
      ABSL_GUARDED_BY(external_mu_);
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;  // guarded by stop_mu_
  std::thread refresher_;
};

}  // namespace tailor::engine

#endif  // TAILOR_ENGINE_PREFERENCE_ENGINE_H_

#include "engine/preference_engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/compact_posterior.h"
#include "engine/user_state.h"
#include "model/stable_hash.h"

namespace tailor::engine {
namespace {

namespace records = storage::records;

model::TrustFitOptions TrustFitOptionsFor(double forget_keep) {
  model::TrustFitOptions options;
  options.forget_keep = forget_keep;
  return options;
}

// ReferenceSample: which established users are offered to other shards, and the keyed digest
// that stands for each user's id there.
constexpr uint64_t kExternalSampleSeed = 0x5a3b1e;
constexpr uint64_t kExternalDigestSeed = 0xd16e57;

// The id another shard knows a user by (cluster mode): a keyed digest, never the user id.
std::string ExternalIdOf(absl::string_view user_id, absl::string_view id_prefix) {
  return absl::StrCat(
      std::string(1, kExternalIdPrefix), id_prefix,
      absl::Hex(model::StableHash({user_id}, kExternalDigestSeed), absl::kZeroPad16));
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

ReferencePoolOptions PoolOptions(const EngineOptions& options, int capacity) {
  ReferencePoolOptions pool;
  pool.capacity = capacity;
  pool.index = options.handover_pairs > 0;
  pool.exact_scan_max_users = options.exact_scan_max_users;
  pool.neighbour_index = options.neighbour_index;
  pool.rebuild_changed_fraction = options.index_rebuild_changed_fraction;
  pool.rebuild_drift = options.index_rebuild_drift;
  return pool;
}

}  // namespace

struct PreferenceEngine::UserEntry {
  CompactPosterior posterior;  // learned under the base prior
  uint64_t count = 0;
  int64_t first_micros = 0;
  int64_t last_micros = 0;
  // The user's pair differences (z-scored) while neighbours still count for them.
  std::vector<Eigen::VectorXd> recent;
  // Unique per entry (entries are never modified, only replaced): what a cached blend is for.
  uint64_t serial = 0;
};

// What serving one user needs from one entry under one knowledge version, computed on first
// use: the posterior re-expressed under the served prior and, for a cold user, the neighbour
// mixture and the posterior's share in the blend.
// A cold user's blend also keeps the neighbour track it was mixed from, so the user's next
// entry extends it by one pair instead of weighing every pair again.
struct PreferenceEngine::Blend {
  uint64_t entry_serial = 0;
  uint64_t knowledge_version = 0;
  model::Posterior personal;
  std::optional<model::NeighbourMixture> neighbours;
  double personal_weight = 1;
  std::shared_ptr<const model::NeighbourTrack> track;
  uint64_t track_reference_version = 0;  // Knowledge::reference_version the track weighs

  size_t Bytes() const {
    const auto d = static_cast<size_t>(personal.dimension());
    size_t bytes = sizeof(Blend) + (d * d + d) * sizeof(double);
    if (neighbours.has_value()) bytes += d * sizeof(double);  // the mean (no top neighbours)
    if (track != nullptr) bytes += track->bytes();
    return bytes;
  }
};

absl::StatusOr<std::unique_ptr<PreferenceEngine>> PreferenceEngine::Open(
    model::FeatureSchema schema, storage::FeedbackStore& store, EngineOptions options) {
  absl::StatusOr<std::unique_ptr<PreferenceEngine>> engine =
      Create(std::move(schema), store, std::move(options));
  if (!engine.ok()) return engine;
  if (absl::Status loaded = (*engine)->Load(); !loaded.ok()) return loaded;
  return engine;
}

absl::StatusOr<std::unique_ptr<PreferenceEngine>> PreferenceEngine::Create(
    model::FeatureSchema schema, storage::FeedbackStore& store, EngineOptions options) {
  absl::StatusOr<std::shared_ptr<const SchemaHistory>> history =
      SchemaHistory::Bind(schema, store, options.evolve_schema);
  if (!history.ok()) return history.status();
  return std::unique_ptr<PreferenceEngine>(
      new PreferenceEngine(std::move(schema), *std::move(history), store, std::move(options)));
}

bool PreferenceEngine::StateIsCurrent(const records::UserState& state) const {
  return FromState(state, schema_.dimension()).has_value() &&
         state.forget_half_life_pairs() == options_.forget_half_life_pairs &&
         std::max<uint32_t>(state.schema_version(), 1) == schema_history_->current_version();
}

absl::Status PreferenceEngine::Load() {
  if (absl::Status loaded = LoadUsers(); !loaded.ok()) return loaded;
  if (options_.refresh_period > absl::ZeroDuration()) {
    // Serve soon: a reference set small enough to scan (no index to build) now, the full one
    // from the background thread, which starts with it.
    Refresh(/*quick=*/true);
    refresher_ = std::thread([this] { RefreshLoop(); });
  } else {
    RefreshKnowledge();
  }
  return absl::OkStatus();
}

PreferenceEngine::PreferenceEngine(model::FeatureSchema schema,
                                   std::shared_ptr<const SchemaHistory> schema_history,
                                   storage::FeedbackStore& store, EngineOptions options)
    : schema_(std::move(schema)),
      schema_history_(std::move(schema_history)),
      store_(store),
      options_(std::move(options)),
      base_prior_(model::BasePrior(schema_.dimension(), options_.base_prior_variance)),
      base_information_(model::InformationOf(base_prior_)),
      forget_keep_(options_.forget_half_life_pairs > 0
                       ? std::exp2(-1.0 / options_.forget_half_life_pairs)
                       : 1.0),
      knowledge_options_{options_.handover_pairs > 0,    options_.calibration_users,
                         options_.min_calibration_users, TrustFitOptionsFor(forget_keep_),
                         options_.neighbour_temperature, options_.own_model_log_prior_odds},
      shared_knowledge_tenants_(options_.shared_knowledge_tenants.begin(),
                                options_.shared_knowledge_tenants.end()) {
  if (!options_.knowledge_by_tenant) all_users_group_ = &GroupNamed(kAllUsersGroup);
}

std::shared_ptr<const Knowledge> PreferenceEngine::EmptyKnowledge() const {
  auto knowledge = std::make_shared<Knowledge>();
  knowledge->population = base_prior_;
  knowledge->information = base_information_;
  ApplyTrust(*knowledge, model::DefaultTrust(options_.neighbour_temperature,
                                             options_.own_model_log_prior_odds));
  knowledge->reference = std::make_shared<model::ReferenceSet>();
  knowledge->rows = std::make_shared<absl::flat_hash_map<std::string, int>>();
  return knowledge;  // version 0: every refresh's is higher
}

PreferenceEngine::Group& PreferenceEngine::GroupNamed(absl::string_view name) const {
  if (all_users_group_ != nullptr) return *all_users_group_;
  MutexLock lock(&groups_mu_);
  auto it = groups_.find(name);
  if (it == groups_.end()) {
    it = groups_
             .emplace(std::string(name),
                      std::make_unique<Group>(
                          std::string(name), EmptyKnowledge(),
                          static_cast<int>(knowledge_options_.trust_fit.level_pairs.size()) + 1,
                          options_.live_guard_window,
                          PoolOptions(options_, options_.max_reference_users)))
             .first;
  }
  return *it->second;
}

std::string PreferenceEngine::KnowledgeGroupOfTenant(absl::string_view tenant) const {
  if (!options_.knowledge_by_tenant) return kAllUsersGroup;
  if (shared_knowledge_tenants_.contains("*") || shared_knowledge_tenants_.contains(tenant)) {
    return kSharedKnowledgeGroup;
  }
  return std::string(tenant);
}

std::string PreferenceEngine::KnowledgeGroupOf(absl::string_view user_id) const {
  if (!options_.knowledge_by_tenant) return kAllUsersGroup;
  const size_t slash = user_id.find('/');
  return KnowledgeGroupOfTenant(slash == absl::string_view::npos ? absl::string_view()
                                                                 : user_id.substr(0, slash));
}

std::vector<PreferenceEngine::Group*> PreferenceEngine::AllGroups() const {
  MutexLock lock(&groups_mu_);
  std::vector<Group*> groups;
  for (const auto& [name, group] : groups_) groups.push_back(group.get());
  return groups;
}

std::vector<std::string> PreferenceEngine::KnowledgeGroups() const {
  std::vector<std::string> names;
  for (const Group* group : AllGroups()) names.push_back(group->name);
  std::sort(names.begin(), names.end());
  return names;
}

PreferenceEngine::~PreferenceEngine() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (refresher_.joinable()) refresher_.join();
}

void PreferenceEngine::RefreshLoop() {
  RefreshKnowledge();
  std::unique_lock<std::mutex> lock(stop_mu_);
  while (!stop_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.refresh_period),
                            [this] { return stopping_; })) {
    lock.unlock();
    RefreshKnowledge();
    lock.lock();
  }
}

size_t PreferenceEngine::StripeIndex(absl::string_view user_id) {
  return absl::HashOf(user_id) % kStripes;
}

PreferenceEngine::Stripe& PreferenceEngine::StripeFor(absl::string_view user_id) {
  return stripes_[StripeIndex(user_id)];
}

std::shared_ptr<const PreferenceEngine::UserEntry> PreferenceEngine::Find(
    absl::string_view user_id) {
  Stripe& stripe = StripeFor(user_id);
  MutexLock lock(&stripe.map_mu);
  auto it = stripe.users.find(user_id);
  return it == stripe.users.end() ? nullptr : it->second;
}

std::shared_ptr<const Knowledge> PreferenceEngine::CurrentKnowledge(const Group& group) {
  MutexLock lock(&group.knowledge_mu);
  return group.knowledge;
}

absl::StatusOr<std::shared_ptr<const PreferenceEngine::UserEntry>> PreferenceEngine::Rebuild(
    absl::string_view user_id) {
  model::Posterior posterior(base_prior_.mean, base_prior_.cov);
  auto entry = std::make_shared<UserEntry>(
      UserEntry{CompactPosterior(posterior), 0, 0, 0, {}, next_serial_++});
  absl::Status scan = store_.ScanHistory(user_id, [&](const records::FeedbackRecord& r) {
    // Read under the schema version it was recorded with, into the current one.
    const std::optional<Eigen::VectorXd> pair = schema_history_->PairOf(r);
    if (!pair.has_value()) return true;  // unreadable; kept in history for export
    const Eigen::VectorXd& diff = *pair;
    posterior.Forget(forget_keep_, base_prior_.mean, base_prior_.cov);
    posterior.Observe(diff);
    entry->count = r.sequence();
    if (entry->first_micros == 0) entry->first_micros = r.timestamp_micros();
    entry->last_micros = r.timestamp_micros();
    if (static_cast<int>(entry->recent.size()) < options_.handover_pairs) {
      entry->recent.push_back(diff);
    }
    return true;
  });
  if (!scan.ok()) return scan;
  entry->posterior = CompactPosterior(posterior);
  return entry;
}

absl::Status PreferenceEngine::LoadUsers() {
  std::vector<std::string> to_rebuild;
  std::vector<std::pair<std::string, std::shared_ptr<UserEntry>>> loaded;
  absl::Status scan = store_.ScanStates(
      [&](absl::string_view user_id, const absl::StatusOr<records::UserState>& state) {
        std::optional<model::Posterior> posterior;
        if (state.ok()) posterior = FromState(*state, schema_.dimension());
        // Cold users' recent pairs live only in history: rebuild them from it too.
        users_loaded_.fetch_add(1, std::memory_order_relaxed);
        // So are users learned with another forgetting half-life than this engine's.
        // And users learned under an older schema version.
        if (!posterior.has_value() ||
            state->feedback_count() < static_cast<uint64_t>(options_.handover_pairs) ||
            !StateIsCurrent(*state)) {
          to_rebuild.emplace_back(user_id);
          return;
        }
        loaded.emplace_back(std::string(user_id),
                            std::make_shared<UserEntry>(UserEntry{CompactPosterior(*posterior),
                                                                  state->feedback_count(),
                                                                  state->first_feedback_micros(),
                                                                  state->last_feedback_micros(),
                                                                  {},
                                                                  next_serial_++}));
      });
  if (!scan.ok()) return scan;
  for (const std::string& user_id : to_rebuild) {
    absl::StatusOr<std::shared_ptr<const UserEntry>> entry = Rebuild(user_id);
    if (!entry.ok()) return entry.status();
    // Persist a fresh state where the stored one was unreadable or outdated.
    std::optional<records::UserState> stored;
    if (auto read = store_.ReadState(user_id); read.ok()) stored = *read;
    if (!stored.has_value() || !StateIsCurrent(*stored)) {
      storage::UserCommit commit;
      commit.user_id = user_id;
      commit.state = ToState((*entry)->posterior.Unpack(), (*entry)->count, (*entry)->first_micros,
                             (*entry)->last_micros, options_.forget_half_life_pairs,
                             schema_history_->current_version());
      if (absl::Status w = store_.Commit(commit); !w.ok()) return w;
      rebuilt_states_.fetch_add(1);
    }
    loaded.emplace_back(user_id, std::const_pointer_cast<UserEntry>(*std::move(entry)));
  }
  uint64_t events = 0;
  uint64_t established = 0;
  for (auto& [user_id, entry] : loaded) {
    if (entry->count == 0) continue;
    events += entry->count;
    established += entry->count >= static_cast<uint64_t>(options_.established_pairs);
    Stripe& stripe = StripeFor(user_id);
    MutexLock lock(&stripe.map_mu);
    CountLocked(stripe, user_id, nullptr, entry.get());
    stripe.users[user_id] = std::move(entry);
  }
  users_ = loaded.size();
  feedback_events_ = events;
  established_users_ = established;
  return absl::OkStatus();
}

void PreferenceEngine::RefreshKnowledge() { Refresh(/*quick=*/false); }

void PreferenceEngine::SetExternalReferences(
    std::shared_ptr<const std::vector<ExternalReference>> references) {
  MutexLock lock(&external_mu_);
  external_ = std::move(references);
}

void PreferenceEngine::SetExternalPopulations(std::vector<GroupPopulation> populations) {
  // Another schema's fit (a shard misconfigured) is not pooled.
  const auto usable = [d = schema_.dimension()](const model::Population& p) {
    return p.users > 0 && p.mean.size() == d && p.cov.rows() == d && p.cov.cols() == d &&
           p.mean.allFinite() && p.cov.allFinite();
  };
  MutexLock lock(&external_mu_);
  external_populations_.clear();
  for (GroupPopulation& g : populations) {
    if (!usable(g.population)) continue;
    if (!usable(g.calibration)) g.calibration = model::Population{};
    external_populations_.push_back(std::move(g));
  }
}

void PreferenceEngine::SetExternalCalibration(
    std::shared_ptr<const std::vector<ExternalCalibrationUser>> users) {
  MutexLock lock(&external_mu_);
  external_calibration_ = std::move(users);
}

std::vector<ExternalCalibrationUser> PreferenceEngine::CalibrationSample(
    int limit, const std::string& id_prefix) const {
  std::vector<Group*> groups = AllGroups();
  std::sort(groups.begin(), groups.end(),
            [](const Group* a, const Group* b) { return a->name < b->name; });
  std::vector<ExternalCalibrationUser> out;
  MutexLock lock(&external_mu_);
  for (const Group* group : groups) {
    if (group->lent == nullptr) continue;
    const LocalCalibration& lent = *group->lent;
    for (size_t i = 0; i < lent.users.size(); ++i) {
      if (static_cast<int>(out.size()) >= limit) return out;
      model::CalibrationUser user = lent.users[i];
      user.reference_row = -1;
      out.push_back({ExternalIdOf(lent.user_ids[i], id_prefix), group->name, std::move(user)});
    }
  }
  return out;
}

std::vector<GroupPopulation> PreferenceEngine::LocalPopulations() const {
  std::vector<Group*> groups = AllGroups();
  std::vector<GroupPopulation> out;
  MutexLock lock(&external_mu_);
  for (const Group* group : groups) {
    if (group->local_population.users > 0) {
      out.push_back(
          GroupPopulation{group->name, group->local_population,
                          group->lent != nullptr ? group->lent->population : model::Population{}});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const GroupPopulation& a, const GroupPopulation& b) { return a.group < b.group; });
  return out;
}

std::vector<ExternalReference> PreferenceEngine::ReferenceSample(
    int limit, const std::string& id_prefix) const {
  // (hash, id, mean) of every established user; the `limit` lowest hashes are kept.
  std::vector<std::pair<uint64_t, ExternalReference>> sample;
  for (const Stripe& stripe : stripes_) {
    MutexLock lock(&stripe.map_mu);
    for (const auto& [user_id, entry] : stripe.users) {
      if (entry->count < static_cast<uint64_t>(options_.established_pairs)) continue;
      sample.emplace_back(model::StableHash({user_id}, kExternalSampleSeed),
                          ExternalReference{ExternalIdOf(user_id, id_prefix),
                                            entry->posterior.Mean(), KnowledgeGroupOf(user_id)});
    }
  }
  const size_t keep = std::min(sample.size(), static_cast<size_t>(std::max(limit, 0)));
  std::partial_sort(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(keep),
                    sample.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ExternalReference> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i) out.push_back(std::move(sample[i].second));
  return out;
}

void PreferenceEngine::Refresh(bool quick) {
  MutexLock serialize(&refresh_work_mu_);
  const absl::Time started = absl::Now();
  std::vector<Group*> groups = AllGroups();
  for (Group* group : groups) {
    MutexLock lock(&group->knowledge_mu);
    group->deleted_during_refresh.clear();
  }
  // A quick refresh (at startup, before the first full one) samples a set small enough to
  // weigh exactly, in pools of its own.
  absl::flat_hash_map<const Group*, std::unique_ptr<ReferencePool>> quick_pools;
  const auto pool_of = [&](Group& group) -> ReferencePool& {
    if (!quick) return group.pool;
    std::unique_ptr<ReferencePool>& pool = quick_pools[&group];
    if (pool == nullptr) {
      pool = std::make_unique<ReferencePool>(PoolOptions(
          options_, std::min(options_.max_reference_users, options_.exact_scan_max_users)));
    }
    return *pool;
  };
  // Each established user is offered to their own group's pool only.
  std::vector<std::pair<std::string, std::shared_ptr<const UserEntry>>> established;
  for (Stripe& stripe : stripes_) {
    {
      MutexLock lock(&stripe.map_mu);
      for (const auto& [user_id, entry] : stripe.users) {
        if (entry->count >= static_cast<uint64_t>(options_.established_pairs)) {
          established.emplace_back(user_id, entry);
        }
      }
    }
    for (const auto& [user_id, entry] : established) {
      pool_of(GroupOf(user_id)).Offer(user_id, entry->posterior.Mean());
    }
    established.clear();
  }
  groups = AllGroups();  // with those made by the users offered just now
  std::shared_ptr<const std::vector<ExternalReference>> external;
  {
    MutexLock lock(&external_mu_);
    external = external_;
  }
  if (external != nullptr) {
    // Other shards' users go to the group of the same name here (if it has users here).
    absl::flat_hash_map<absl::string_view, Group*> by_name;
    for (Group* group : groups) by_name.emplace(group->name, group);
    for (const ExternalReference& r : *external) {
      auto found = by_name.find(r.group);
      if (found != by_name.end()) pool_of(*found->second).Offer(r.id, r.mean);
    }
  }
  for (Group* group : groups) RefreshGroup(*group, pool_of(*group), quick);
  last_refresh_seconds_ = absl::ToDoubleSeconds(absl::Now() - started);
  knowledge_as_of_micros_ = absl::ToUnixMicros(started);
}

void PreferenceEngine::RefreshGroup(Group& group, ReferencePool& pool, bool quick) {
  ReferenceChanges changes = pool.Update();

  // The population is fitted from the reference users with the lowest ids (a seeded sample,
  // the same from refresh to refresh while they stay), under the base prior.
  const model::ReferenceSet& set = *pool.reference();
  std::vector<int> fit_rows(static_cast<size_t>(set.size()));
  std::iota(fit_rows.begin(), fit_rows.end(), 0);
  auto by_id = [&](int a, int b) {
    return set.user_ids[static_cast<size_t>(a)] < set.user_ids[static_cast<size_t>(b)];
  };
  if (fit_rows.size() > static_cast<size_t>(options_.max_population_fit_users)) {
    std::nth_element(fit_rows.begin(), fit_rows.begin() + options_.max_population_fit_users,
                     fit_rows.end(), by_id);
    fit_rows.resize(static_cast<size_t>(options_.max_population_fit_users));
  }
  std::sort(fit_rows.begin(), fit_rows.end(), by_id);
  std::vector<EstablishedUser> fit_users;
  std::vector<model::Posterior> fit;
  for (int row : fit_rows) {
    const std::string& user_id = set.user_ids[static_cast<size_t>(row)];
    const std::shared_ptr<const UserEntry> entry = Find(user_id);
    if (entry == nullptr) continue;  // deleted since it was offered, or another shard's
    fit_users.push_back(EstablishedUser{user_id, row, entry->posterior.Unpack()});
    fit.push_back(fit_users.back().posterior);
  }
  model::Population population = fit.empty() ? base_prior_ : model::FitPopulation(fit, base_prior_);
  // Other shards' calibration users of this group and their fits without them (cluster mode).
  std::shared_ptr<const std::vector<ExternalCalibrationUser>> lent_to_us;
  std::vector<const ExternalCalibrationUser*> external_calibration;
  std::vector<model::Population> external_calibration_fits;
  {
    MutexLock lock(&external_mu_);
    group.local_population = fit.empty() ? model::Population{} : population;
    std::vector<model::Population> pooled_groups;
    for (const GroupPopulation& other : external_populations_) {
      if (other.group != group.name) continue;
      pooled_groups.push_back(other.population);
      if (other.calibration.users > 0) external_calibration_fits.push_back(other.calibration);
    }
    lent_to_us = external_calibration_;
    if (lent_to_us != nullptr) {
      for (const ExternalCalibrationUser& user : *lent_to_us) {
        if (user.group == group.name) external_calibration.push_back(&user);
      }
    }
    if (!pooled_groups.empty()) {
      if (!fit.empty()) pooled_groups.push_back(population);
      const model::Population pooled = model::PoolPopulations(pooled_groups);
      if (pooled.users > 0 && pooled.mean.size() == population.mean.size()) population = pooled;
    }
  }
  pool.Index(population, changes);
  if (!quick) {
    if (changes.rebuilt) index_rebuilds_ += 1;
    index_changes_ += static_cast<uint64_t>(changes.graph_changes);
  }

  // Trust is refitted when the group's established users have changed by 2% since the last
  // fit (it reads calibration users' histories); a quick refresh keeps what is in force.
  // Other shards' calibration users count as users seen: trust is refitted when they change.
  const uint64_t seen = pool.offered() + external_calibration.size();
  const model::Trust current_trust = CurrentKnowledge(group)->trust;
  const bool fitted = current_trust.calibration_users > 0;
  const bool changed =
      static_cast<double>(seen) >= 1.02 * static_cast<double>(group.trust_fitted_users) ||
      static_cast<double>(seen) <= 0.98 * static_cast<double>(group.trust_fitted_users);
  const bool refit = !quick && (!fitted || changed);
  auto lent = std::make_shared<LocalCalibration>();
  std::shared_ptr<Knowledge> knowledge =
      BuildKnowledge(population, fit_users, pool, *schema_history_, store_, base_prior_,
                     knowledge_options_, refit ? nullptr : &current_trust,
                     {external_calibration, external_calibration_fits}, lent.get());
  const bool refitted = refit && knowledge->trust.calibration_users > 0;
  if (refitted) {
    group.trust_fitted_users = seen;
    MutexLock lock(&external_mu_);
    group.lent = std::move(lent);
  }
  const size_t fitted_users = fit.size();
  {
    MutexLock lock(&group.knowledge_mu);
    // Users deleted while this refresh was reading the users may be in it: mark them.
    std::shared_ptr<std::vector<char>> removed;
    for (const std::string& user_id : group.deleted_during_refresh) {
      auto found = knowledge->rows->find(user_id);
      if (found == knowledge->rows->end()) continue;
      if (removed == nullptr) {
        removed = std::make_shared<std::vector<char>>(
            static_cast<size_t>(knowledge->reference->size()), 0);
      }
      (*removed)[static_cast<size_t>(found->second)] = 1;
      knowledge->removed_count += 1;
    }
    knowledge->removed = std::move(removed);
    group.deleted_during_refresh.clear();
    knowledge->version = ++knowledge_versions_;
    // Neighbour tracks carry over when what they weigh has not changed: the same reference
    // set and likelihood temperature.
    const bool same_weighing =
        knowledge->reference == group.knowledge->reference &&
        knowledge->trust.neighbour_temperature == group.knowledge->trust.neighbour_temperature;
    knowledge->reference_version =
        same_weighing ? group.knowledge->reference_version : knowledge->version;
    group.knowledge = knowledge;
  }
  // The live safety net compares the new candidates from here on.
  if (refitted) group.guard.Reset();
  // The snapshot key holds one population: the all-users group's (with knowledge per tenant
  // none is written; each tenant's is refitted at startup like every population).
  if (fitted_users > 0 && group.name == kAllUsersGroup) {
    records::PopulationSnapshot snapshot;
    snapshot.set_dimension(static_cast<uint32_t>(schema_.dimension()));
    for (double m : knowledge->population.mean) snapshot.add_mean(m);
    for (Eigen::Index i = 0; i < knowledge->population.cov.size(); ++i) {
      snapshot.add_covariance(knowledge->population.cov.data()[i]);
    }
    snapshot.set_users(fitted_users);
    snapshot.set_computed_micros(NowMicros());
    store_.WritePopulation(snapshot).IgnoreError();  // a cache for inspection; refit on start
  }
}

absl::Status PreferenceEngine::CheckFeatures(absl::string_view field,
                                             std::span<const float> features) const {
  if (static_cast<int>(features.size()) != schema_.dimension()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": has ", features.size(),
                                                   " values, the schema has ", schema_.dimension(),
                                                   " features"));
  }
  for (size_t i = 0; i < features.size(); ++i) {
    if (!std::isfinite(features[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "]: must be finite (no NaN or Inf)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Eigen::MatrixXd> PreferenceEngine::Normalize(
    std::span<const CandidateInput> candidates) const {
  Eigen::MatrixXd z(static_cast<Eigen::Index>(candidates.size()), schema_.dimension());
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (absl::Status s =
            CheckFeatures(absl::StrCat("candidates[", i, "].features"), candidates[i].features);
        !s.ok()) {
      return s;
    }
    z.row(static_cast<Eigen::Index>(i)) = schema_.Normalize(candidates[i].features).transpose();
  }
  return z;
}

int PreferenceEngine::GuardLevel(uint64_t pairs) const {
  int level = 0;
  for (int at : knowledge_options_.trust_fit.level_pairs)
    level += pairs >= static_cast<uint64_t>(at);
  return level;
}

std::array<model::SourceWeights, LiveGuard::kCandidates> PreferenceEngine::Candidates(
    const model::Trust& trust, uint64_t pairs) const {
  std::array<model::SourceWeights, LiveGuard::kCandidates> candidates;
  // Before trust is fitted: the blend as it is, against the raw population and own posterior.
  candidates[LiveGuard::kFitted] = {0, 0, 1};
  candidates[LiveGuard::kPopulation] = {1, 0, 0};
  candidates[LiveGuard::kOwn] = {0, 1, 0};
  if (const int level = trust.LevelFor(pairs); level >= 0) {
    const model::ExperienceLevel& fitted = trust.levels[static_cast<size_t>(level)];
    candidates[LiveGuard::kFitted] = fitted.fitted;
    candidates[LiveGuard::kPopulation] = {fitted.population_only, 0, 0};
    candidates[LiveGuard::kOwn] = {0, fitted.own_only, 0};
  }
  return candidates;
}

model::SourceWeights PreferenceEngine::ServedWeights(const LiveGuard& guard,
                                                     const model::Trust& trust,
                                                     uint64_t pairs) const {
  const auto candidates = Candidates(trust, pairs);
  const LiveGuard::Shares shares = guard.SharesAt(GuardLevel(pairs));
  model::SourceWeights served{0, 0, 0};
  for (int c = 0; c < LiveGuard::kCandidates; ++c) {
    const double share = shares[static_cast<size_t>(c)];
    served.population += share * candidates[static_cast<size_t>(c)].population;
    served.own += share * candidates[static_cast<size_t>(c)].own;
    served.blend += share * candidates[static_cast<size_t>(c)].blend;
  }
  return served;
}

model::NeighbourOptions PreferenceEngine::NeighbourOptionsFor(const Knowledge& knowledge,
                                                              int top_k) {
  model::NeighbourOptions options{knowledge.trust.neighbour_temperature, top_k};
  options.removed = knowledge.removed.get();
  options.removed_count = knowledge.removed_count;
  return options;
}

model::Belief PreferenceEngine::BeliefFor(const UserEntry* entry, const Group& group,
                                          const Knowledge& knowledge, absl::string_view user_id,
                                          BeliefUse use) {
  const model::ReferenceSet& reference = *knowledge.reference;
  const bool have_neighbours = reference.size() > 0;
  const uint64_t pairs = entry == nullptr ? 0 : entry->count;
  if (pairs == 0) {
    model::Belief belief(model::Posterior(knowledge.prior.mean, knowledge.prior.cov));
    belief.population_mean = knowledge.population.mean;
    belief.weights = ServedWeights(group.guard, knowledge.trust, 0);
    belief.source = model::KnowledgeSource::kPopulation;
    if (use == BeliefUse::kSuggest && have_neighbours) {
      // With nothing known, the best question is the one the population disagrees on most.
      const model::NeighbourOptions options = NeighbourOptionsFor(knowledge, 256);
      belief.neighbours = model::NeighbourTrack::Start({}, reference, knowledge.index.get(), -1,
                                                       options, model::StableHash({user_id}))
                              .Mixture(reference, options);
      belief.reference = &reference;
      belief.personal_weight = 0;
    }
    return belief;
  }
  const std::shared_ptr<const Blend> blend = BlendFor(*entry, knowledge, user_id);
  model::Belief belief(blend->personal);
  belief.population_mean = knowledge.population.mean;
  belief.weights = ServedWeights(group.guard, knowledge.trust, pairs);
  if (blend->neighbours.has_value()) {
    belief.neighbours = blend->neighbours;
    belief.reference = &reference;
    belief.personal_weight = blend->personal_weight;
    if (use != BeliefUse::kPredict) {
      // The cached mixture has no top neighbours (feedback and plain rankings never read them).
      belief.neighbours = blend->track->Mixture(
          reference, NeighbourOptionsFor(knowledge, options_.neighbour_top_k));
    }
  }
  // Which source carries most of the served vector.
  const double blend_share = std::abs(belief.weights.blend);
  const double population = std::abs(belief.weights.population);
  const double own = std::abs(belief.weights.own) + blend_share * belief.personal_weight;
  const double neighbours =
      belief.neighbours.has_value() ? blend_share * (1 - belief.personal_weight) : 0;
  if (population > own && population > neighbours) {
    belief.source = model::KnowledgeSource::kPopulation;
  } else {
    belief.source =
        neighbours > own ? model::KnowledgeSource::kNeighbours : model::KnowledgeSource::kPersonal;
  }
  return belief;
}

std::shared_ptr<const PreferenceEngine::Blend> PreferenceEngine::BlendFor(
    const UserEntry& entry, const Knowledge& knowledge, absl::string_view user_id) {
  Stripe& stripe = StripeFor(user_id);
  // The cached blend: this one if it is for this entry and knowledge, else the user's last
  // one, whose neighbour track this entry may carry forward.
  std::shared_ptr<const Blend> previous;
  if (options_.blend_cache_users > 0) {
    MutexLock lock(&stripe.map_mu);
    auto it = stripe.blends.find(user_id);
    if (it != stripe.blends.end()) {
      it->second.last_used = ++stripe.blend_clock;
      const std::shared_ptr<const Blend>& cached = it->second.blend;
      if (cached->entry_serial == entry.serial && cached->knowledge_version == knowledge.version) {
        blend_hits_.fetch_add(1, std::memory_order_relaxed);
        return cached;
      }
      previous = cached;
    }
  }
  blend_misses_.fetch_add(1, std::memory_order_relaxed);
  auto blend = std::make_shared<Blend>(Blend{
      entry.serial, knowledge.version,
      model::Reprior(entry.posterior.Unpack(), base_information_, knowledge.prior_information),
      std::nullopt, 1.0, nullptr, knowledge.reference_version});
  const bool cold = entry.count < static_cast<uint64_t>(options_.handover_pairs);
  if (knowledge.reference->size() > 0 && cold && !entry.recent.empty()) {
    blend->track = TrackFor(entry, knowledge, user_id, previous.get());
    blend->neighbours =
        blend->track->Mixture(*knowledge.reference, NeighbourOptionsFor(knowledge, /*top_k=*/0));
    // Posterior probability of the own-posterior model against "like one of the neighbours".
    const double own_evidence = model::LaplaceLogEvidence(
        blend->personal, entry.recent, knowledge.prior, knowledge.prior_information);
    blend->personal_weight = model::Sigmoid(own_evidence - blend->neighbours->log_evidence +
                                            knowledge.trust.own_log_prior_odds);
  }
  if (options_.blend_cache_users > 0) {
    const size_t capacity = static_cast<size_t>(std::max(1, options_.blend_cache_users / kStripes));
    const size_t byte_budget = options_.blend_cache_bytes / kStripes;
    const size_t bytes = blend->Bytes();
    MutexLock lock(&stripe.map_mu);
    auto it = stripe.blends.find(user_id);
    if (it != stripe.blends.end()) {
      stripe.blend_bytes -= it->second.blend->Bytes();
      stripe.blends.erase(it);
    }
    // Room by count and by bytes: the least recently used go first (a stripe holds a few dozen,
    // so a scan finds them). A blend larger than the stripe's whole share is not kept.
    while (!stripe.blends.empty() &&
           (stripe.blends.size() >= capacity || stripe.blend_bytes + bytes > byte_budget)) {
      auto victim = stripe.blends.begin();
      for (auto c = stripe.blends.begin(); c != stripe.blends.end(); ++c) {
        if (c->second.last_used < victim->second.last_used) victim = c;
      }
      stripe.blend_bytes -= victim->second.blend->Bytes();
      stripe.blends.erase(victim);
    }
    if (bytes <= byte_budget) {
      stripe.blend_bytes += bytes;
      stripe.blends.emplace(std::string(user_id), Stripe::CachedBlend{blend, ++stripe.blend_clock});
    }
  }
  return blend;
}

std::shared_ptr<const model::NeighbourTrack> PreferenceEngine::TrackFor(const UserEntry& entry,
                                                                        const Knowledge& knowledge,
                                                                        absl::string_view user_id,
                                                                        const Blend* previous) {
  const int pairs = static_cast<int>(entry.recent.size());
  const model::NeighbourOptions options = NeighbourOptionsFor(knowledge, 0);
  if (previous != nullptr && previous->track != nullptr &&
      previous->track_reference_version == knowledge.reference_version) {
    const model::NeighbourTrack& track = *previous->track;
    if (track.pairs() == pairs) return previous->track;  // only removals changed since
    if (track.pairs() + 1 == pairs) {
      auto next = std::make_shared<model::NeighbourTrack>(track);
      next->Add(entry.recent, *knowledge.reference, knowledge.index.get(), options);
      return next;
    }
  }
  auto found = knowledge.rows->find(user_id);
  const int row = found == knowledge.rows->end() ? -1 : found->second;
  // The user's sample is seeded by their id, so the same pairs always give the same track,
  // carried forward or started again.
  return std::make_shared<model::NeighbourTrack>(
      model::NeighbourTrack::Start(entry.recent, *knowledge.reference, knowledge.index.get(), row,
                                   options, model::StableHash({user_id})));
}

absl::StatusOr<RankResult> PreferenceEngine::Rank(absl::string_view user_id,
                                                  std::span<const CandidateInput> candidates,
                                                  bool explore) {
  absl::StatusOr<Eigen::MatrixXd> z = Normalize(candidates);
  if (!z.ok()) return z.status();
  const std::shared_ptr<const UserEntry> entry = Find(user_id);
  const Group& group = GroupOf(user_id);
  const std::shared_ptr<const Knowledge> knowledge = CurrentKnowledge(group);
  const model::Belief belief = BeliefFor(entry.get(), group, *knowledge, user_id,
                                         explore ? BeliefUse::kExplore : BeliefUse::kPredict);
  thread_local std::mt19937_64 rng(std::random_device{}());
  RankResult result;
  for (const model::RankedItem& item : model::Rank(belief, *z, explore, rng)) {
    result.ranked.push_back({item.index, item.score, item.probability_best});
  }
  result.source = belief.source;
  result.user_feedback_count = entry == nullptr ? 0 : entry->count;
  return result;
}

absl::StatusOr<Comparison> PreferenceEngine::Suggest(absl::string_view user_id,
                                                     std::span<const CandidateInput> candidates) {
  absl::StatusOr<Eigen::MatrixXd> z = Normalize(candidates);
  if (!z.ok()) return z.status();
  const std::shared_ptr<const UserEntry> entry = Find(user_id);
  const Group& group = GroupOf(user_id);
  const std::shared_ptr<const Knowledge> knowledge = CurrentKnowledge(group);
  const model::SuggestedPair pair = model::SuggestPair(
      BeliefFor(entry.get(), group, *knowledge, user_id, BeliefUse::kSuggest), *z);
  if (pair.information_bits < 0) {
    return absl::InvalidArgumentError(
        "candidates: all have identical features; no comparison can teach anything");
  }
  return Comparison{pair.first, pair.second, pair.probability_first, pair.information_bits};
}

absl::StatusOr<FeedbackResult> PreferenceEngine::RecordFeedback(const FeedbackInput& event) {
  return std::move(RecordFeedbackBatch({&event, 1}).front());
}

absl::StatusOr<Eigen::VectorXd> PreferenceEngine::PairOf(const FeedbackInput& event) const {
  if (absl::Status s = CheckFeatures("chosen.features", event.chosen.features); !s.ok()) return s;
  if (absl::Status s = CheckFeatures("rejected.features", event.rejected.features); !s.ok()) {
    return s;
  }
  Eigen::VectorXd diff =
      schema_.Normalize(event.chosen.features) - schema_.Normalize(event.rejected.features);
  if (diff.cwiseAbs().maxCoeff() == 0) {
    return absl::InvalidArgumentError(
        "rejected.features: must differ from chosen.features (an identical pair teaches "
        "nothing)");
  }
  return diff;
}

absl::Status PreferenceEngine::CheckFeedback(const FeedbackInput& event) const {
  return PairOf(event).status();
}

std::vector<absl::StatusOr<FeedbackResult>> PreferenceEngine::RecordFeedbackBatch(
    std::span<const FeedbackInput> events, std::optional<storage::LogPosition> position) {
  std::vector<absl::StatusOr<FeedbackResult>> results(events.size(),
                                                      absl::InternalError("feedback: not applied"));
  // Each event's pair, or its INVALID_ARGUMENT.
  std::vector<Eigen::VectorXd> diffs(events.size());
  std::vector<bool> valid(events.size(), false);
  std::vector<size_t> stripes;
  for (size_t i = 0; i < events.size(); ++i) {
    absl::StatusOr<Eigen::VectorXd> pair = PairOf(events[i]);
    if (!pair.ok()) {
      results[i] = pair.status();
      continue;
    }
    diffs[i] = *std::move(pair);
    valid[i] = true;
    stripes.push_back(StripeIndex(events[i].user_id));
  }
  // Every user's stripe, locked in ascending order (as every batch does: no deadlock) and held
  // across the one commit.
  std::sort(stripes.begin(), stripes.end());
  stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
  for (size_t s : stripes) stripes_[s].write_mu.Lock();
  absl::Cleanup unlock = [&] {
    for (auto it = stripes.rbegin(); it != stripes.rend(); ++it) stripes_[*it].write_mu.Unlock();
  };

  // Each group's knowledge, read once for the batch.
  absl::flat_hash_map<Group*, std::shared_ptr<const Knowledge>> knowledge_of;
  // What the batch has done so far, per user: their latest entry and their commit.
  absl::flat_hash_map<std::string, std::shared_ptr<const UserEntry>> latest;
  absl::flat_hash_map<std::string, size_t> commit_of;
  absl::flat_hash_map<std::pair<std::string, std::string>, size_t> applied_at;
  std::vector<storage::UserCommit> commits;
  struct Applied {
    size_t event;
    bool new_user;
  };
  std::vector<Applied> applied;
  std::vector<std::pair<size_t, size_t>> repeats;  // (event, earlier event of the batch)
  const int64_t now = NowMicros();
  for (size_t i = 0; i < events.size(); ++i) {
    if (!valid[i]) continue;
    const FeedbackInput& event = events[i];
    const Eigen::VectorXd& diff = diffs[i];
    if (auto earlier = applied_at.find({event.user_id, event.event_id});
        earlier != applied_at.end()) {
      repeats.emplace_back(i, earlier->second);
      continue;
    }
    absl::StatusOr<std::optional<records::IdempotencyRecord>> seen =
        store_.FindEvent(event.user_id, event.event_id);
    if (!seen.ok()) {
      results[i] = seen.status();
      continue;
    }
    if (seen->has_value()) {
      results[i] = FeedbackResult{true, (*seen)->user_feedback_count(),
                                  (*seen)->predicted_chosen_probability(), (*seen)->sequence()};
      continue;
    }

    auto in_batch = latest.find(event.user_id);
    const std::shared_ptr<const UserEntry> current =
        in_batch != latest.end() ? in_batch->second : Find(event.user_id);
    // Progressive validation: what each source believed before learning from this event; the
    // live safety net learns from the candidates' losses.
    const uint64_t pairs = current == nullptr ? 0 : current->count;
    Group& group = GroupOf(event.user_id);
    std::shared_ptr<const Knowledge>& knowledge = knowledge_of[&group];
    if (knowledge == nullptr) knowledge = CurrentKnowledge(group);
    const model::Belief belief =
        BeliefFor(current.get(), group, *knowledge, event.user_id, BeliefUse::kPredict);
    const double population_logit = knowledge->population.mean.dot(diff);
    const double own_logit = belief.personal.mean().dot(diff);
    const double blend_logit = belief.BlendMean().dot(diff);
    const auto candidates = Candidates(knowledge->trust, pairs);
    std::array<double, LiveGuard::kCandidates> losses;
    for (int c = 0; c < LiveGuard::kCandidates; ++c) {
      const model::SourceWeights& w = candidates[static_cast<size_t>(c)];
      losses[static_cast<size_t>(c)] =
          -std::log(std::max(1e-12, model::Sigmoid(w.population * population_logit +
                                                   w.own * own_logit + w.blend * blend_logit)));
    }
    const double predicted = belief.PredictWin(diff);
    const std::array<double, kPredictionSources> source_probability = {
        model::Sigmoid(candidates[LiveGuard::kPopulation].population * population_logit),
        model::Sigmoid(candidates[LiveGuard::kOwn].own * own_logit), model::Sigmoid(blend_logit),
        predicted};

    auto next = current != nullptr
                    ? std::make_shared<UserEntry>(*current)
                    : std::make_shared<UserEntry>(UserEntry{
                          CompactPosterior(model::Posterior(base_prior_.mean, base_prior_.cov)),
                          0,
                          0,
                          0,
                          {}});
    next->serial = next_serial_++;
    model::Posterior posterior = next->posterior.Unpack();
    posterior.Forget(forget_keep_, base_prior_.mean, base_prior_.cov);
    posterior.Observe(diff);
    next->posterior = CompactPosterior(posterior);
    next->count += 1;
    const int64_t when = event.timestamp_micros != 0 ? event.timestamp_micros : now;
    if (next->first_micros == 0) next->first_micros = when;
    next->last_micros = when;
    if (next->count < static_cast<uint64_t>(options_.handover_pairs)) {
      next->recent.push_back(diff);
    } else {
      next->recent.clear();
      next->recent.shrink_to_fit();
    }

    auto [commit_index, added] = commit_of.try_emplace(event.user_id, commits.size());
    if (added) commits.emplace_back().user_id = event.user_id;
    storage::UserCommit& commit = commits[commit_index->second];
    storage::AppliedEvent& stored = commit.events.emplace_back();
    records::FeedbackRecord& record = stored.record;
    record.set_sequence(next->count);
    record.set_event_id(event.event_id);
    record.set_prompt_id(event.prompt_id);
    record.set_chosen_id(event.chosen.id);
    record.mutable_chosen_features()->Add(event.chosen.features.begin(),
                                          event.chosen.features.end());
    record.set_rejected_id(event.rejected.id);
    record.mutable_rejected_features()->Add(event.rejected.features.begin(),
                                            event.rejected.features.end());
    record.set_timestamp_micros(when);
    record.set_applied_micros(now);
    record.set_schema_version(schema_history_->current_version());
    record.set_predicted_chosen_probability(predicted);
    if (position.has_value()) record.set_log_sequence(position->sequence);
    stored.idempotency.set_sequence(next->count);
    stored.idempotency.set_user_feedback_count(next->count);
    stored.idempotency.set_predicted_chosen_probability(predicted);
    commit.state = ToState(posterior, next->count, next->first_micros, next->last_micros,
                           options_.forget_half_life_pairs, schema_history_->current_version());

    latest[event.user_id] = next;
    applied_at.emplace(std::pair{event.user_id, event.event_id}, i);
    applied.push_back({i, current == nullptr});
    // Observed now, so that the batch's later events are served as they would be one at a
    // time (a failed write leaves these observations in: the client's resend counts again,
    // which the forecaster's 2,000-event half-life makes immaterial).
    group.guard.Observe(GuardLevel(pairs), losses);
    results[i] = FeedbackResult{false, next->count, predicted, next->count, source_probability};
  }

  if (!commits.empty()) {
    if (absl::Status s = store_.Commit(commits, position); !s.ok()) {
      for (const Applied& a : applied) results[a.event] = s;
      for (const auto& [event, earlier] : repeats) results[event] = s;
      return results;
    }
  }
  for (auto& [user_id, entry] : latest) {
    Stripe& stripe = StripeFor(user_id);
    MutexLock lock(&stripe.map_mu);
    std::shared_ptr<const UserEntry>& slot = stripe.users[user_id];
    CountLocked(stripe, user_id, slot.get(), entry.get());
    slot = entry;
  }
  for (const Applied& a : applied) {
    if (a.new_user) users_.fetch_add(1);
    if (results[a.event]->user_feedback_count ==
        static_cast<uint64_t>(options_.established_pairs)) {
      established_users_.fetch_add(1);
    }
    feedback_events_.fetch_add(1);
  }
  // An event repeated within the batch is a duplicate of its first occurrence.
  for (const auto& [event, earlier] : repeats) {
    const FeedbackResult& first = *results[earlier];
    results[event] = FeedbackResult{true, first.user_feedback_count,
                                    first.predicted_chosen_probability, first.sequence};
  }
  return results;
}

absl::StatusOr<UserProfile> PreferenceEngine::GetUser(absl::string_view user_id) {
  const std::shared_ptr<const UserEntry> entry = Find(user_id);
  if (entry == nullptr) return absl::NotFoundError("user_id: no such user");
  const Group& group = GroupOf(user_id);
  const std::shared_ptr<const Knowledge> knowledge = CurrentKnowledge(group);
  const model::Belief belief =
      BeliefFor(entry.get(), group, *knowledge, user_id, BeliefUse::kPredict);
  UserProfile profile;
  profile.feedback_count = entry->count;
  profile.effective_pairs =
      forget_keep_ < 1
          ? (1 - std::pow(forget_keep_, static_cast<double>(entry->count))) / (1 - forget_keep_)
          : static_cast<double>(entry->count);
  profile.weight_mean = belief.Mean();
  profile.weight_stddev = belief.personal.Variances().cwiseSqrt();
  profile.source = belief.source;
  profile.first_feedback_micros = entry->first_micros;
  profile.last_feedback_micros = entry->last_micros;
  return profile;
}

absl::StatusOr<UserExport> PreferenceEngine::ExportUser(absl::string_view user_id) {
  absl::StatusOr<UserProfile> profile = GetUser(user_id);
  if (!profile.ok()) return profile.status();
  absl::StatusOr<storage::UserExport> stored = store_.ExportUser(user_id);
  if (!stored.ok()) return stored.status();
  return UserExport{*std::move(profile), std::move(stored->history)};
}

std::vector<std::string> PreferenceEngine::UserIds() const {
  std::vector<std::string> ids;
  for (const Stripe& stripe : stripes_) {
    MutexLock lock(&stripe.map_mu);
    for (const auto& [user_id, entry] : stripe.users) ids.push_back(user_id);
  }
  return ids;
}

absl::StatusOr<storage::DeletedUser> PreferenceEngine::DeleteUser(
    absl::string_view user_id, std::optional<storage::LogPosition> position) {
  Stripe& stripe = StripeFor(user_id);
  MutexLock write_lock(&stripe.write_mu);
  absl::StatusOr<storage::DeletedUser> deleted = store_.DeleteUser(user_id, position);
  if (!deleted.ok()) return deleted;
  std::shared_ptr<const UserEntry> removed;
  {
    MutexLock lock(&stripe.map_mu);
    auto it = stripe.users.find(user_id);
    if (it != stripe.users.end()) {
      removed = std::move(it->second);
      stripe.users.erase(it);
      CountLocked(stripe, user_id, removed.get(), nullptr);
    }
    if (auto blend = stripe.blends.find(user_id); blend != stripe.blends.end()) {
      stripe.blend_bytes -= blend->second.blend->Bytes();
      stripe.blends.erase(blend);
    }
  }
  if (removed != nullptr) {
    users_.fetch_sub(1);
    feedback_events_.fetch_sub(removed->count);
    if (removed->count >= static_cast<uint64_t>(options_.established_pairs)) {
      established_users_.fetch_sub(1);
    }
  }
  // The user must stop influencing others' cold start now, not at the next refresh: the
  // current knowledge is replaced by a copy with their row marked removed (cheap: the
  // reference set, rows and index are shared, only the removal marks are copied). The
  // population prior keeps them until the next refresh refits it.
  Group& group = GroupOf(user_id);
  {
    MutexLock lock(&group.knowledge_mu);
    group.deleted_during_refresh.insert(std::string(user_id));
    const Knowledge& current = *group.knowledge;
    auto found = current.rows->find(user_id);
    if (found != current.rows->end() &&
        (current.removed == nullptr || (*current.removed)[found->second] == 0)) {
      auto next = std::make_shared<Knowledge>(current);
      auto marks = current.removed != nullptr
                       ? std::make_shared<std::vector<char>>(*current.removed)
                       : std::make_shared<std::vector<char>>(
                             static_cast<size_t>(current.reference->size()), 0);
      (*marks)[static_cast<size_t>(found->second)] = 1;
      next->removed = std::move(marks);
      next->removed_count += 1;
      next->version = ++knowledge_versions_;  // cached blends must be recomputed
      group.knowledge = std::move(next);
    }
  }
  return deleted;
}

TrustReport PreferenceEngine::Trust(absl::string_view group_name) const {
  const Group& group = GroupNamed(group_name);
  TrustReport report;
  report.trust = CurrentKnowledge(group)->trust;
  // Before a fit one combination serves every level: the blend as it is.
  if (report.trust.levels.empty()) {
    report.trust.levels.push_back(model::ExperienceLevel{0, {0, 0, 1}, 1, 1, 0});
  }
  for (const model::ExperienceLevel& level : report.trust.levels) {
    report.live_shares.push_back(
        group.guard.SharesAt(GuardLevel(static_cast<uint64_t>(level.min_pairs))));
  }
  return report;
}

void PreferenceEngine::CountLocked(Stripe& stripe, absl::string_view user_id,
                                   const UserEntry* before, const UserEntry* after) const {
  if (!options_.count_by_tenant) return;
  const size_t slash = user_id.find('/');
  if (slash == absl::string_view::npos) return;  // no tenant
  const auto established = [&](const UserEntry* e) {
    return e != nullptr && e->count >= static_cast<uint64_t>(options_.established_pairs);
  };
  const auto events = [](const UserEntry* e) {
    return e == nullptr ? int64_t{0} : static_cast<int64_t>(e->count);
  };
  auto found = stripe.tenants.find(user_id.substr(0, slash));
  if (found == stripe.tenants.end()) {
    found = stripe.tenants.emplace(std::string(user_id.substr(0, slash)), TenantCounts{}).first;
  }
  TenantCounts& counts = found->second;
  counts.users += (after != nullptr) - (before != nullptr);
  counts.established_users += established(after) - established(before);
  counts.feedback_events += events(after) - events(before);
  if (counts.users == 0) stripe.tenants.erase(found);
}

TenantCounts PreferenceEngine::CountsOf(absl::string_view tenant) const {
  TenantCounts total;
  for (const Stripe& stripe : stripes_) {
    MutexLock lock(&stripe.map_mu);
    auto found = stripe.tenants.find(tenant);
    if (found == stripe.tenants.end()) continue;
    total.users += found->second.users;
    total.established_users += found->second.established_users;
    total.feedback_events += found->second.feedback_events;
  }
  return total;
}

KnowledgeSummary PreferenceEngine::SummaryOf(const Knowledge& knowledge) {
  KnowledgeSummary summary;
  summary.version = knowledge.version;
  summary.reference_users = static_cast<uint64_t>(knowledge.reference->size());
  summary.population_users = knowledge.population.users;
  summary.indexed_users =
      knowledge.index == nullptr ? 0 : static_cast<uint64_t>(knowledge.index->size());
  return summary;
}

KnowledgeSummary PreferenceEngine::KnowledgeOf(absl::string_view group) const {
  return SummaryOf(*CurrentKnowledge(GroupNamed(group)));
}

EngineStats PreferenceEngine::Stats() const {
  EngineStats stats;
  stats.users = users_.load();
  stats.established_users = established_users_.load();
  stats.feedback_events = feedback_events_.load();
  const std::vector<Group*> groups = AllGroups();
  for (const Group* group : groups) {  // summed over the groups
    const KnowledgeSummary summary = SummaryOf(*CurrentKnowledge(*group));
    stats.reference_users += summary.reference_users;
    stats.population_users += summary.population_users;
    stats.indexed_users += summary.indexed_users;
  }
  stats.knowledge_groups = groups.size();
  stats.belief_cache_hits = blend_hits_.load(std::memory_order_relaxed);
  stats.belief_cache_misses = blend_misses_.load(std::memory_order_relaxed);
  stats.refresh_period_seconds = absl::ToDoubleSeconds(options_.refresh_period);
  stats.index_rebuilds = index_rebuilds_.load();
  stats.index_changes = index_changes_.load();
  stats.last_refresh_seconds = last_refresh_seconds_.load();
  stats.rebuilt_states = rebuilt_states_.load();
  stats.users_loaded = users_loaded_.load(std::memory_order_relaxed);
  stats.knowledge_version = knowledge_versions_.load();
  stats.knowledge_as_of_micros = knowledge_as_of_micros_.load();
  return stats;
}

}  // namespace tailor::engine

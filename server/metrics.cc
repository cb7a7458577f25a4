#include "server/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <exception>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/version.h"
#include "server/work_queue.h"

namespace tailor::server {
namespace {

constexpr std::array<const char*, kRpcCount> kRpcNames = {
    "RankResponses", "SubmitFeedback", "StreamFeedback", "SuggestComparison", "GetUser",
    "ExportUser",    "DeleteUser",     "GetServerInfo",  "CreateCheckpoint"};

constexpr std::array<const char*, 17> kCodeNames = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

// Rankings and reads take microseconds, commits with fsync milliseconds, a stalled disk
// seconds: buckets from 5 us to 10 s, at least two per decade.
const prometheus::Histogram::BucketBoundaries kLatencyBuckets = {
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01,     0.025,   0.05,     0.1,     0.25,   0.5,     1.0,    2.5,   5.0,    10.0};

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family{name, help, type, {}};
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

// The fitted trust and the live safety net's shares of each knowledge group (label
// knowledge_group: the tenant, "*" for tenants that share, "" without tenants), one sample per
// experience level.
std::vector<prometheus::MetricFamily> TrustFamilies(
    const std::vector<std::pair<std::string, engine::TrustReport>>& groups) {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out = {
      {"tailor_trust_calibration_users",
       "Established users held out at the last refit of trust (0: defaults in force).",
       MetricType::Gauge,
       {}},
      {"tailor_trust_prior_scale",
       "Fitted multiplier of the population covariance in users' own priors.",
       MetricType::Gauge,
       {}},
      {"tailor_trust_neighbour_temperature",
       "Fitted temperature of the neighbour likelihood.",
       MetricType::Gauge,
       {}},
      {"tailor_trust_own_log_prior_odds",
       "Fitted prior log-odds of the own posterior against the neighbours in the blend.",
       MetricType::Gauge,
       {}},
      {"tailor_trust_weight",
       "Fitted weight of each source in the served log-odds, by experience level (fewest pairs "
       "of the level).",
       MetricType::Gauge,
       {}},
      {"tailor_trust_live_share",
       "The live safety net's share of each candidate combination (fitted, population alone, "
       "own posterior alone) by level.",
       MetricType::Gauge,
       {}}};
  const auto add = [](prometheus::MetricFamily& family,
                      std::vector<prometheus::ClientMetric::Label> label, double value) {
    prometheus::ClientMetric metric;
    metric.label = std::move(label);
    metric.gauge.value = value;
    family.metric.push_back(std::move(metric));
  };
  for (const auto& [group, report] : groups) {
    const model::Trust& t = report.trust;
    const prometheus::ClientMetric::Label in_group{"knowledge_group", group};
    add(out[0], {in_group}, static_cast<double>(t.calibration_users));
    add(out[1], {in_group}, t.prior_scale);
    add(out[2], {in_group}, t.neighbour_temperature);
    add(out[3], {in_group}, t.own_log_prior_odds);
    for (size_t i = 0; i < t.levels.size(); ++i) {
      const model::ExperienceLevel& level = t.levels[i];
      const std::string min_pairs = std::to_string(level.min_pairs);
      for (auto [source, value] :
           {std::pair{"population", level.fitted.population}, std::pair{"own", level.fitted.own},
            std::pair{"blend", level.fitted.blend}}) {
        add(out[4], {in_group, {"min_pairs", min_pairs}, {"source", source}}, value);
      }
      for (auto [candidate, c] : {std::pair{"fitted", engine::LiveGuard::kFitted},
                                  std::pair{"population", engine::LiveGuard::kPopulation},
                                  std::pair{"own", engine::LiveGuard::kOwn}}) {
        add(out[5], {in_group, {"min_pairs", min_pairs}, {"candidate", candidate}},
            report.live_shares[i][static_cast<size_t>(c)]);
      }
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const auto& f) { return f.metric.empty(); }),
            out.end());
  return out;
}

struct ProcessStats {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double start_time_seconds = 0;
  double open_fds = 0;
  double max_fds = 0;
};

// Linux /proc, the same numbers as the standard process_* metrics of other clients.
ProcessStats ReadProcessStats() {
  ProcessStats stats;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may contain spaces) start at ") ".
  const size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
    // utime=14, stime=15, starttime=22, rss=24 in proc(5) numbering; state is field 3.
    double utime = 0, stime = 0, start = 0, rss = 0;
    if (fields.size() > 21 && absl::SimpleAtod(fields[11], &utime) &&
        absl::SimpleAtod(fields[12], &stime) && absl::SimpleAtod(fields[19], &start) &&
        absl::SimpleAtod(fields[21], &rss)) {
      stats.cpu_seconds = (utime + stime) / ticks;
      stats.resident_bytes = rss * page;
      std::ifstream uptime_file("/proc/uptime");
      double uptime = 0;
      uptime_file >> uptime;
      const double boot = static_cast<double>(::time(nullptr)) - uptime;
      stats.start_time_seconds = boot + start / ticks;
    }
  }
  struct rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    stats.max_fds =
        limit.rlim_cur == RLIM_INFINITY ? INFINITY : static_cast<double>(limit.rlim_cur);
  }
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir) != nullptr) stats.open_fds += 1;
    ::closedir(dir);
    stats.open_fds -= 3;  // ".", ".." and the directory's own descriptor
  }
  return stats;
}

// A histogram from per-bucket counts (not cumulative; the last one above every bound).
prometheus::MetricFamily HistogramFamily(const std::string& name, const std::string& help,
                                         std::span<const double> bounds,
                                         std::span<const uint64_t> counts, double sum) {
  prometheus::MetricFamily family{name, help, prometheus::MetricType::Histogram, {}};
  prometheus::ClientMetric metric;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += counts[i];
    metric.histogram.bucket.push_back({cumulative, bounds[i]});
  }
  cumulative += counts[bounds.size()];
  metric.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = sum;
  family.metric.push_back(std::move(metric));
  return family;
}

// The store's commit latency.
prometheus::MetricFamily CommitLatencyFamily(const storage::StoreStats& s) {
  return HistogramFamily("tailor_storage_commit_seconds",
                         "Latency of one durable commit (a WriteBatch to the WAL, and its fsync "
                         "with --sync).",
                         storage::kCommitLatencyBounds, s.commit_latency_counts,
                         s.commit_latency_seconds_sum);
}

}  // namespace

// Reads the engine at scrape time. A scrape already running when the server stops still
// holds this object, so the engine pointer is detached under a lock before the engine goes.
class EngineCollector final : public prometheus::Collectable {
 public:
  EngineCollector(engine::PreferenceEngine& engine, const WorkQueue& queue)
      : engine_(&engine), queue_(&queue) {}

  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    engine_ = nullptr;
    queue_ = nullptr;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    std::lock_guard<std::mutex> lock(mu_);
    if (engine_ == nullptr) return {};
    const engine::EngineStats e = engine_->Stats();
    const storage::StoreStats s = engine_->store().Stats();
    const ProcessStats p = ReadProcessStats();
    const auto d = [](uint64_t v) { return static_cast<double>(v); };
    std::vector<std::pair<std::string, engine::TrustReport>> trust;
    for (const std::string& group : engine_->KnowledgeGroups()) {
      trust.emplace_back(group, engine_->Trust(group));
    }
    std::vector<prometheus::MetricFamily> families = TrustFamilies(trust);
    families.push_back(CommitLatencyFamily(s));
    if (e.knowledge_as_of_micros > 0) {
      families.push_back(Family(
          "tailor_knowledge_age_seconds",
          "Seconds since the refresh that computed the served knowledge read the users.",
          MetricType::Gauge,
          absl::ToDoubleSeconds(absl::Now() - absl::FromUnixMicros(e.knowledge_as_of_micros))));
    }
    for (prometheus::MetricFamily& family : std::vector<prometheus::MetricFamily>{
             Family("tailor_users", "Users with at least one feedback event.", MetricType::Gauge,
                    d(e.users)),
             Family(
                 "tailor_established_users",
                 "Users with enough feedback to be served personally and to serve as neighbours.",
                 MetricType::Gauge, d(e.established_users)),
             Family("tailor_feedback_events_stored", "Feedback events stored across all users.",
                    MetricType::Gauge, d(e.feedback_events)),
             Family("tailor_neighbour_reference_users",
                    "Established users in the current cold-start reference set.", MetricType::Gauge,
                    d(e.reference_users)),
             Family("tailor_neighbour_index_users",
                    "Reference users in the HNSW neighbour index (0 while the set is small enough "
                    "to scan exactly).",
                    MetricType::Gauge, d(e.indexed_users)),
             Family("tailor_neighbour_index_rebuilds_total",
                    "HNSW neighbour graphs built from scratch (at the first refresh past the "
                    "exact-scan size, then when the set or population has changed too much).",
                    MetricType::Counter, d(e.index_rebuilds)),
             Family("tailor_neighbour_index_changes_total",
                    "Points moved, added or removed in the HNSW neighbour graph in place by "
                    "refreshes.",
                    MetricType::Counter, d(e.index_changes)),
             Family(
                 "tailor_knowledge_refresh_seconds",
                 "Wall time of the last refresh of the population prior, reference set and index.",
                 MetricType::Gauge, e.last_refresh_seconds),
             Family("tailor_knowledge_refresh_period_seconds",
                    "Configured period of the knowledge refresh (0: fitted once at startup).",
                    MetricType::Gauge, e.refresh_period_seconds),
             Family("tailor_belief_cache_hits_total",
                    "Serving beliefs found in the belief cache (size it with "
                    "--belief_cache_users / --belief_cache_mb).",
                    MetricType::Counter, d(e.belief_cache_hits)),
             Family("tailor_belief_cache_misses_total",
                    "Serving beliefs computed: not cached, evicted, or stale after the user's "
                    "feedback or a refresh.",
                    MetricType::Counter, d(e.belief_cache_misses)),
             Family("tailor_work_queue_depth",
                    "Tasks (feedback commits, exports, deletes, checkpoints) waiting for a worker.",
                    MetricType::Gauge, queue_ == nullptr ? 0.0 : d(queue_->depth())),
             Family("tailor_disk_free_bytes",
                    "Bytes available to tailord on the data directory's file system.",
                    MetricType::Gauge, d(s.disk_free_bytes)),
             Family("tailor_disk_capacity_bytes", "Size of the data directory's file system.",
                    MetricType::Gauge, d(s.disk_capacity_bytes)),
             Family("tailor_startup_users_loaded",
                    "Users whose stored state has been read so far at startup (then all).",
                    MetricType::Gauge, d(e.users_loaded)),
             Family("tailor_states_rebuilt_total",
                    "User states rebuilt from history at startup (missing or unreadable).",
                    MetricType::Counter, d(e.rebuilt_states)),
             Family("tailor_rocksdb_live_sst_bytes", "Size of live SST files.", MetricType::Gauge,
                    d(s.live_sst_bytes)),
             Family("tailor_rocksdb_memtable_bytes", "Size of all memtables.", MetricType::Gauge,
                    d(s.memtable_bytes)),
             Family("tailor_rocksdb_pending_compaction_bytes",
                    "Estimated bytes compaction still has to rewrite.", MetricType::Gauge,
                    d(s.pending_compaction_bytes)),
             Family("tailor_rocksdb_running_compactions",
                    "Compactions running now (they take CPU and disk from serving).",
                    MetricType::Gauge, d(s.running_compactions)),
             Family("tailor_rocksdb_stall_seconds_total", "Time writes were stalled by RocksDB.",
                    MetricType::Counter, d(s.stall_micros) / 1e6),
             Family("tailor_storage_corrupt_records_total",
                    "Stored records that could not be decoded.", MetricType::Counter,
                    d(s.corrupt_records)),
             Family("process_cpu_seconds_total", "User and system CPU time spent.",
                    MetricType::Counter, p.cpu_seconds),
             Family("process_resident_memory_bytes", "Resident memory size.", MetricType::Gauge,
                    p.resident_bytes),
             Family("process_open_fds", "Open file descriptors.", MetricType::Gauge, p.open_fds),
             Family("process_max_fds", "Limit on open file descriptors (RLIMIT_NOFILE).",
                    MetricType::Gauge, p.max_fds),
             Family("process_start_time_seconds", "Start time since the Unix epoch.",
                    MetricType::Gauge, p.start_time_seconds),
         }) {
      families.push_back(std::move(family));
    }
    return families;
  }

 private:
  mutable std::mutex mu_;
  engine::PreferenceEngine* engine_;  // guarded by mu_
  const WorkQueue* queue_;            // guarded by mu_
};

int ExperienceBucket(uint64_t pairs_before) {
  if (pairs_before == 0) return 0;
  if (pairs_before <= 2) return 1;
  if (pairs_before <= 5) return 2;
  if (pairs_before <= 10) return 3;
  if (pairs_before <= 20) return 4;
  return 5;
}

const char* ExperienceLabel(int bucket) {
  static constexpr std::array<const char*, kExperienceBuckets> kLabels = {"0",    "1-2",   "3-5",
                                                                          "6-10", "11-20", "21+"};
  return kLabels[static_cast<size_t>(bucket)];
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& listen) {
  std::unique_ptr<Metrics> m(new Metrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  prometheus::Registry& r = *m->registry_;
  prometheus::BuildGauge()
      .Name("tailor_build_info")
      .Help("Always 1; the labels say which build is running.")
      .Register(r)
      .Add({{"version", kTailorVersion}, {"revision", kTailorRevision}})
      .Set(1);

  auto& requests = prometheus::BuildCounter()
                       .Name("tailor_rpc_requests_total")
                       .Help("Finished RPCs by method and gRPC status code.")
                       .Register(r);
  auto& latency = prometheus::BuildHistogram()
                      .Name("tailor_rpc_latency_seconds")
                      .Help(
                          "Server-side latency of unary RPCs (StreamFeedback: see "
                          "tailor_feedback_ack_latency_seconds).")
                      .Register(r);
  for (int i = 0; i < kRpcCount; ++i) {
    for (size_t c = 0; c < kCodeNames.size(); ++c) {
      m->requests_[static_cast<size_t>(i)][c] =
          &requests.Add({{"method", kRpcNames[static_cast<size_t>(i)]}, {"code", kCodeNames[c]}});
    }
    if (static_cast<Rpc>(i) != Rpc::kStreamFeedback) {
      m->latency_[static_cast<size_t>(i)] =
          &latency.Add({{"method", kRpcNames[static_cast<size_t>(i)]}}, kLatencyBuckets);
    }
  }
  m->ack_latency_ = &prometheus::BuildHistogram()
                         .Name("tailor_feedback_ack_latency_seconds")
                         .Help(
                             "StreamFeedback: per event, from being read off the stream to its "
                             "durable outcome (the ack follows).")
                         .Register(r)
                         .Add({}, kLatencyBuckets);
  auto& forwarded = prometheus::BuildCounter()
                        .Name("tailor_cluster_forwarded_total")
                        .Help(
                            "Calls forwarded to the shard that owns the user's partition "
                            "(cluster mode), by method.")
                        .Register(r);
  for (int i = 0; i < kRpcCount; ++i) {
    m->forwarded_[static_cast<size_t>(i)] =
        &forwarded.Add({{"method", kRpcNames[static_cast<size_t>(i)]}});
  }
  auto& refusals = prometheus::BuildCounter()
                       .Name("tailor_routing_refusals_total")
                       .Help(
                           "Calls refused for their x-user-id routing header (INVALID_ARGUMENT, "
                           "also counted in tailor_rpc_requests_total): missing where required, "
                           "not the message's user, or malformed.")
                       .Register(r);
  m->routing_refusals_ = {&refusals.Add({{"reason", "missing"}}),
                          &refusals.Add({{"reason", "mismatch"}}),
                          &refusals.Add({{"reason", "malformed"}})};
  m->quota_refusals_ = &prometheus::BuildCounter()
                            .Name("tailor_quota_refusals_total")
                            .Help(
                                "Calls and streamed feedback events refused RESOURCE_EXHAUSTED "
                                "for their tenant's request quota (--tenant_quotas_file), by "
                                "tenant.")
                            .Register(r);
  auto& outcomes = prometheus::BuildCounter()
                       .Name("tailor_feedback_events_total")
                       .Help("Feedback events received, by outcome.")
                       .Register(r);
  m->feedback_outcomes_ = {&outcomes.Add({{"outcome", "applied"}}),
                           &outcomes.Add({{"outcome", "duplicate"}}),
                           &outcomes.Add({{"outcome", "rejected"}})};
  auto& rankings = prometheus::BuildCounter()
                       .Name("tailor_rankings_total")
                       .Help("Rankings served, by the knowledge that served them.")
                       .Register(r);
  m->rankings_ = {&rankings.Add({{"source", "personal"}}),
                  &rankings.Add({{"source", "neighbours"}}),
                  &rankings.Add({{"source", "population"}})};
  auto& predictions = prometheus::BuildCounter()
                          .Name("tailor_predictions_total")
                          .Help(
                              "Progressive validation: feedback events predicted before "
                              "learning from them, by the user's prior pairs.")
                          .Register(r);
  auto& correct = prometheus::BuildCounter()
                      .Name("tailor_predictions_correct_total")
                      .Help(
                          "Progressive validation: predictions that gave the chosen "
                          "response more than even odds.")
                      .Register(r);
  auto& log_loss = prometheus::BuildCounter()
                       .Name("tailor_prediction_log_loss_total")
                       .Help("Progressive validation: summed -log P(chosen) of predictions.")
                       .Register(r);
  for (int b = 0; b < kExperienceBuckets; ++b) {
    const auto i = static_cast<size_t>(b);
    m->predictions_[i] = &predictions.Add({{"experience", ExperienceLabel(b)}});
    m->predictions_correct_[i] = &correct.Add({{"experience", ExperienceLabel(b)}});
    m->prediction_log_loss_[i] = &log_loss.Add({{"experience", ExperienceLabel(b)}});
  }
  auto& source_log_loss = prometheus::BuildCounter()
                              .Name("tailor_source_log_loss_total")
                              .Help(
                                  "Progressive validation per knowledge source: summed -log "
                                  "P(chosen) each source gave before learning from the event "
                                  "(population, own posterior, neighbour blend, served).")
                              .Register(r);
  auto& source_correct = prometheus::BuildCounter()
                             .Name("tailor_source_correct_total")
                             .Help(
                                 "Progressive validation per knowledge source: events whose "
                                 "chosen response the source gave more than even odds (exactly "
                                 "even counts half).")
                             .Register(r);
  static constexpr std::array<const char*, engine::kPredictionSources> kSources = {
      "population", "own", "neighbours", "served"};
  for (size_t s = 0; s < kSources.size(); ++s) {
    for (int b = 0; b < kExperienceBuckets; ++b) {
      const auto i = static_cast<size_t>(b);
      const prometheus::Labels labels = {{"source", kSources[s]},
                                         {"experience", ExperienceLabel(b)}};
      m->source_log_loss_[s][i] = &source_log_loss.Add(labels);
      m->source_correct_[s][i] = &source_correct.Add(labels);
    }
  }
  m->starting_ = &prometheus::BuildGauge()
                      .Name("tailor_starting")
                      .Help(
                          "1 while tailord loads its users (health NOT_SERVING, calls "
                          "UNAVAILABLE), then 0.")
                      .Register(r)
                      .Add({});
  m->open_streams_ = &prometheus::BuildGauge()
                          .Name("tailor_feedback_streams_open")
                          .Help("StreamFeedback calls in progress.")
                          .Register(r)
                          .Add({});

  // prometheus-cpp (civetweb) reports a bind failure by throwing; convert it here, once.
  try {
    m->exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics_listen: cannot serve metrics on ", listen, ": ", e.what()));
  }
  m->exposer_->RegisterCollectable(m->registry_);
  const std::vector<int> ports = m->exposer_->GetListeningPorts();
  m->port_ = ports.empty() ? 0 : ports.front();
  return m;
}

Metrics::~Metrics() { Unwatch(); }

void Metrics::RecordRpc(Rpc rpc, grpc::StatusCode code, absl::Duration latency) {
  const auto i = static_cast<size_t>(rpc);
  const auto c = static_cast<size_t>(code);
  if (c < kCodeNames.size()) requests_[i][c]->Increment();
  if (latency_[i] != nullptr) latency_[i]->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::RecordAckLatency(absl::Duration latency) {
  ack_latency_->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::RecordRoutingRefusal(RoutingRefusal reason) {
  routing_refusals_[static_cast<size_t>(reason)]->Increment();
}

void Metrics::RecordQuotaRefusal(const std::string& tenant, uint64_t requests) {
  // Tenants come from the tokens file, so the label's values are bounded by it.
  quota_refusals_->Add({{"tenant", tenant}}).Increment(static_cast<double>(requests));
}

void Metrics::RecordFeedback(const v1::FeedbackAck& ack) {
  switch (ack.outcome()) {
    case v1::FeedbackAck::OUTCOME_APPLIED: {
      feedback_outcomes_[0]->Increment();
      const auto b = static_cast<size_t>(ExperienceBucket(ack.user_feedback_count() - 1));
      const double p = ack.predicted_chosen_probability();
      predictions_[b]->Increment();
      // A coin flip (a new shard before its first refresh predicts exactly 0.5) is half right.
      if (p >= 0.5) predictions_correct_[b]->Increment(p > 0.5 ? 1.0 : 0.5);
      prediction_log_loss_[b]->Increment(-std::log(std::max(p, 1e-12)));
      break;
    }
    case v1::FeedbackAck::OUTCOME_DUPLICATE:
      feedback_outcomes_[1]->Increment();
      break;
    default:
      feedback_outcomes_[2]->Increment();
      break;
  }
}

void Metrics::RecordSources(uint64_t pairs_before,
                            const std::array<double, engine::kPredictionSources>& p_chosen) {
  const auto b = static_cast<size_t>(ExperienceBucket(pairs_before));
  for (size_t s = 0; s < p_chosen.size(); ++s) {
    const double p = p_chosen[s];
    source_log_loss_[s][b]->Increment(-std::log(std::max(p, 1e-12)));
    if (p >= 0.5) source_correct_[s][b]->Increment(p > 0.5 ? 1.0 : 0.5);
  }
}

void Metrics::RecordRanking(v1::KnowledgeSource source) {
  switch (source) {
    case v1::KNOWLEDGE_SOURCE_PERSONAL:
      rankings_[0]->Increment();
      break;
    case v1::KNOWLEDGE_SOURCE_NEIGHBOURS:
      rankings_[1]->Increment();
      break;
    default:
      rankings_[2]->Increment();
      break;
  }
}

// Reads the cluster shard at scrape time; detached like EngineCollector.
class ClusterCollector final : public prometheus::Collectable {
 public:
  explicit ClusterCollector(const cluster::ClusterShard& shard) : shard_(&shard) {}

  void Detach() {
    std::lock_guard<std::mutex> lock(mu_);
    shard_ = nullptr;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    using prometheus::MetricType;
    std::lock_guard<std::mutex> lock(mu_);
    if (shard_ == nullptr) return {};
    const cluster::ClusterStats c = shard_->Stats();
    const auto d = [](uint64_t v) { return static_cast<double>(v); };
    std::vector<prometheus::MetricFamily> families = {
        HistogramFamily("tailor_cluster_log_append_seconds",
                        "Latency of one append to the replicated feedback log (stored on its "
                        "JetStream replicas).",
                        cluster::kAppendLatencyBounds, c.append_latency_counts,
                        c.append_latency_seconds_sum),
        Family("tailor_cluster_partitions", "Partitions of the feedback log.", MetricType::Gauge,
               c.partitions),
        Family("tailor_cluster_partitions_owned",
               "Partitions this shard owns and serves (caught up).", MetricType::Gauge, c.owned),
        Family("tailor_cluster_partitions_receiving",
               "Partitions moving to this shard, being caught up from the log.", MetricType::Gauge,
               c.receiving),
        Family("tailor_cluster_partitions_unowned",
               "Partitions the map gives to no shard (their users get UNAVAILABLE).",
               MetricType::Gauge, c.unowned),
        Family("tailor_cluster_map_revision", "Revision of the partition map this shard follows.",
               MetricType::Gauge, d(c.map_revision)),
        Family("tailor_cluster_partitions_taken_total",
               "Partitions this shard took over (assigned, moved here, or at startup).",
               MetricType::Counter, d(c.partitions_taken)),
        Family("tailor_cluster_partitions_dropped_total",
               "Partitions this shard gave up, their users' local data deleted.",
               MetricType::Counter, d(c.partitions_dropped)),
        Family("tailor_cluster_log_entries_replayed_total",
               "Log entries applied by catching up (startup, takeovers, moves).",
               MetricType::Counter, d(c.replayed_entries)),
        Family("tailor_cluster_borrowed_reference_users",
               "Other shards' established users this shard borrows as cold-start neighbours.",
               MetricType::Gauge, d(c.borrowed_references)),
        Family("tailor_cluster_borrowed_calibration_users",
               "Other shards' held-out users this shard fits its trust on as well as its own.",
               MetricType::Gauge, d(c.borrowed_calibration_users)),
        Family("tailor_cluster_exchange_failures_total",
               "Exchanges of cold-start neighbours with the other shards that failed.",
               MetricType::Counter, d(c.exchange_failures)),
    };
    prometheus::MetricFamily lag{"tailor_cluster_partition_lag_sequences",
                                 "Log sequences between the partition's last entry and the last "
                                 "one this shard applied (0: caught up), per owned or receiving "
                                 "partition.",
                                 MetricType::Gauge,
                                 {}};
    for (const auto& [partition, behind] : c.lag) {
      prometheus::ClientMetric metric;
      metric.label.push_back({"partition", std::to_string(partition)});
      metric.gauge.value = d(behind);
      lag.metric.push_back(std::move(metric));
    }
    families.push_back(std::move(lag));
    return families;
  }

 private:
  mutable std::mutex mu_;
  const cluster::ClusterShard* shard_;
};

void Metrics::RecordForwarded(Rpc rpc) { forwarded_[static_cast<size_t>(rpc)]->Increment(); }

void Metrics::WatchCluster(const cluster::ClusterShard& shard) {
  cluster_collector_ = std::make_shared<ClusterCollector>(shard);
  exposer_->RegisterCollectable(cluster_collector_);
}

void Metrics::UnwatchCluster() {
  if (cluster_collector_ != nullptr) {
    exposer_->RemoveCollectable(cluster_collector_);
    cluster_collector_->Detach();
    cluster_collector_.reset();
  }
}

Metrics::Metrics() = default;

void Metrics::Watch(engine::PreferenceEngine& engine, const WorkQueue& queue) {
  engine_collector_ = std::make_shared<EngineCollector>(engine, queue);
  exposer_->RegisterCollectable(engine_collector_);
}

void Metrics::Unwatch() {
  if (engine_collector_ != nullptr) {
    exposer_->RemoveCollectable(engine_collector_);
    engine_collector_->Detach();
    engine_collector_.reset();
  }
}

}  // namespace tailor::server

#include "bench/cluster_benchmark.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/scratch_dir.h"
#include "cluster/feedback_log.h"
#include "cluster/nats_connection.h"
#include "cluster/partition_directory.h"
#include "cluster/partition_plan.h"
#include "cluster/shard.h"
#include "engine/preference_engine.h"
#include "model/schema.h"

namespace tailor::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Event {
  std::string user, id;
  std::vector<float> chosen, rejected;
};

std::vector<Event> MakeEvents(const ClusterBenchOptions& options,
                              const model::FeatureSchema& schema) {
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<double> normal(0, 1);
  std::uniform_int_distribution<int> user(0, options.users - 1);
  std::vector<Event> events(static_cast<size_t>(options.events));
  for (size_t i = 0; i < events.size(); ++i) {
    Event& e = events[i];
    e.user = absl::StrCat("bench/user-", user(rng));
    e.id = absl::StrCat("e", i);
    for (const model::FeatureSpec& f : schema.features()) {
      e.chosen.push_back(static_cast<float>(f.mean + f.sd * normal(rng)));
      e.rejected.push_back(static_cast<float>(f.mean + f.sd * normal(rng)));
    }
  }
  return events;
}

engine::FeedbackInput InputOf(const Event& e) {
  engine::FeedbackInput input;
  input.user_id = e.user;
  input.event_id = e.id;
  input.chosen = {"a", e.chosen};
  input.rejected = {"b", e.rejected};
  return input;
}

// Records every event from `threads` threads (thread t takes events t, t + threads, …, so
// each user's events keep their order only loosely, as concurrent clients would).
template <typename Record>
absl::StatusOr<double> Ingest(const std::vector<Event>& events, int threads, Record record) {
  std::atomic<bool> failed{false};
  std::string failure;
  std::mutex failure_mu;
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < events.size() && !failed;
           i += static_cast<size_t>(threads)) {
        absl::Status s = record(InputOf(events[i]));
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(failure_mu);
          failure = s.ToString();
          failed = true;
        }
      }
    });
  }
  for (std::thread& w : workers) w.join();
  if (failed) return absl::InternalError(failure);
  return Since(start);
}

// The upper bound of the bucket holding quantile `q` of the append latency histogram.
double Quantile(const cluster::ClusterStats& stats, double q) {
  uint64_t total = 0;
  for (uint64_t c : stats.append_latency_counts) total += c;
  uint64_t seen = 0;
  for (size_t i = 0; i < cluster::kAppendLatencyBounds.size(); ++i) {
    seen += stats.append_latency_counts[i];
    if (static_cast<double>(seen) >= q * static_cast<double>(total)) {
      return cluster::kAppendLatencyBounds[i];
    }
  }
  return INFINITY;
}

struct Node {
  std::unique_ptr<storage::FeedbackStore> store;
  std::unique_ptr<engine::PreferenceEngine> engine;
  std::unique_ptr<cluster::ClusterShard> shard;
  ~Node() {
    shard.reset();
    engine.reset();
  }
};

absl::StatusOr<std::unique_ptr<Node>> OpenNode(const std::string& path,
                                               const model::FeatureSchema& schema) {
  auto node = std::make_unique<Node>();
  storage::StoreOptions store_options;
  store_options.path = path;
  absl::StatusOr<std::unique_ptr<storage::FeedbackStore>> store =
      storage::FeedbackStore::Open(store_options);
  if (!store.ok()) return store.status();
  node->store = *std::move(store);
  engine::EngineOptions engine_options;
  engine_options.refresh_period = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<engine::PreferenceEngine>> engine =
      engine::PreferenceEngine::Open(schema, *node->store, engine_options);
  if (!engine.ok()) return engine.status();
  node->engine = *std::move(engine);
  return node;
}

}  // namespace

absl::StatusOr<ClusterBenchResult> RunClusterBenchmark(const ClusterBenchOptions& options) {
  absl::StatusOr<model::FeatureSchema> schema =
      model::FeatureSchema::FromCsv(model::DefaultSchemaCsv());
  if (!schema.ok()) return schema.status();
  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::vector<Event> events = MakeEvents(options, *schema);
  ClusterBenchResult result;

  // The single node first.
  {
    absl::StatusOr<std::unique_ptr<Node>> node = OpenNode((*scratch)->Sub("single"), *schema);
    if (!node.ok()) return node.status();
    absl::StatusOr<double> seconds =
        Ingest(events, options.threads, [&](const engine::FeedbackInput& input) {
          return (*node)->engine->RecordFeedback(input).status();
        });
    if (!seconds.ok()) return seconds.status();
    result.single_node_seconds = *seconds;
  }

  // The cluster shard: its own stream and bucket, every partition assigned to it.
  absl::StatusOr<std::unique_ptr<cluster::NatsConnection>> connected;
  for (int attempt = 0; attempt < 60; ++attempt) {  // NATS may still be electing its leaders
    connected = cluster::NatsConnection::Connect(options.nats, absl::Seconds(5));
    if (connected.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (!connected.ok()) return connected.status();
  std::shared_ptr<cluster::NatsConnection> nats = *std::move(connected);
  const std::string name = absl::StrCat("TAILOR_BENCH_", ::getpid());
  cluster::FeedbackLogOptions log_options;
  log_options.stream = name;
  log_options.subject_prefix = absl::StrCat("tailor.bench.", ::getpid());
  log_options.partitions = options.partitions;
  log_options.replicas = options.replicas;
  cluster::DirectoryOptions directory_options;
  directory_options.bucket = name;
  directory_options.replicas = options.replicas;
  absl::StatusOr<std::unique_ptr<cluster::FeedbackLog>> log;
  absl::StatusOr<std::unique_ptr<cluster::PartitionDirectory>> directory;
  for (int attempt = 0; attempt < 60; ++attempt) {
    log = cluster::FeedbackLog::Open(log_options, nats);
    if (log.ok()) directory = cluster::PartitionDirectory::Open(directory_options, nats);
    if (log.ok() && directory.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (!log.ok()) return log.status();
  if (!directory.ok()) return directory.status();
  struct Cleanup {
    cluster::NatsConnection& nats;
    std::string name;
    ~Cleanup() {
      (void)nats.DeleteStream(name);
      (void)nats.DeleteStream("KV_" + name);
    }
  } cleanup{*nats, name};
  absl::StatusOr<cluster::v1::PartitionMap> plan =
      cluster::Rebalance({}, options.partitions, {"bench"});
  if (!plan.ok()) return plan.status();
  if (absl::StatusOr<uint64_t> w = (*directory)->CompareAndSetMap(*plan, 0); !w.ok()) {
    return w.status();
  }
  cluster::ShardOptions shard_options;
  shard_options.name = "bench";
  shard_options.address = "127.0.0.1:1";
  const std::string path = (*scratch)->Sub("cluster");
  auto start_shard = [&]() -> absl::StatusOr<std::unique_ptr<Node>> {
    absl::StatusOr<std::unique_ptr<Node>> node = OpenNode(path, *schema);
    if (!node.ok()) return node.status();
    absl::StatusOr<std::unique_ptr<cluster::ClusterShard>> shard =
        cluster::ClusterShard::Start(*(*node)->engine, **log, **directory,
                                     /*exchange=*/nullptr, shard_options);
    if (!shard.ok()) return shard.status();
    (*node)->shard = *std::move(shard);
    return node;
  };
  {
    absl::StatusOr<std::unique_ptr<Node>> node = start_shard();
    if (!node.ok()) return node.status();
    if ((*node)->shard->Stats().owned != options.partitions) {
      return absl::InternalError("the benchmark shard does not own every partition");
    }
    absl::StatusOr<double> seconds =
        Ingest(events, options.threads, [&](const engine::FeedbackInput& input) {
          return (*node)->shard->RecordFeedback(input).status();
        });
    if (!seconds.ok()) return seconds.status();
    result.cluster_seconds = *seconds;
    const cluster::ClusterStats stats = (*node)->shard->Stats();
    result.append_p50_seconds = Quantile(stats, 0.5);
    result.append_p99_seconds = Quantile(stats, 0.99);
  }

  // The shard loses its disk and rebuilds from the log.
  std::filesystem::remove_all(path);
  const Clock::time_point rebuild = Clock::now();
  absl::StatusOr<std::unique_ptr<Node>> rebuilt = start_shard();
  if (!rebuilt.ok()) return rebuilt.status();
  result.rebuild_seconds = Since(rebuild);
  result.rebuilt_events = (*rebuilt)->engine->Stats().feedback_events;
  if (result.rebuilt_events != events.size()) {
    return absl::InternalError(
        absl::StrCat("rebuilt ", result.rebuilt_events, " events of ", events.size()));
  }
  return result;
}

std::string ClusterMarkdown(const ClusterBenchOptions& options, const ClusterBenchResult& r) {
  const double n = static_cast<double>(options.events);
  std::string out = absl::StrFormat(
      "Cluster mode: %d events from %d users, %d writer threads, %d partitions, %d replicas\n\n"
      "| | events/s | ratio |\n|---|---:|---:|\n",
      options.events, options.users, options.threads, options.partitions, options.replicas);
  absl::StrAppendFormat(&out, "| single node (engine + RocksDB) | %.0f | 1.00 |\n",
                        n / r.single_node_seconds);
  absl::StrAppendFormat(&out, "| cluster shard (log append, then apply) | %.0f | %.2f |\n\n",
                        n / r.cluster_seconds, r.single_node_seconds / r.cluster_seconds);
  absl::StrAppendFormat(&out,
                        "log append latency: p50 <= %.2f ms, p99 <= %.2f ms (histogram bucket "
                        "bounds)\n",
                        1e3 * r.append_p50_seconds, 1e3 * r.append_p99_seconds);
  absl::StrAppendFormat(&out,
                        "rebuild from an empty disk: %llu events in %.2f s = %.1f s per million "
                        "events\n",
                        static_cast<unsigned long long>(r.rebuilt_events), r.rebuild_seconds,
                        r.rebuild_seconds / static_cast<double>(r.rebuilt_events) * 1e6);
  return out;
}

}  // namespace tailor::bench

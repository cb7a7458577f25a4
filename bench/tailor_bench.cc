// tailor-bench: Tailor's benchmarks. Subcommands:
//   diversity   PersonalLLM diversity figures of the synthetic catalogue (no server needed)
//   quality     the PersonalLLM simulator replayed through live tailord servers over gRPC
//   memory      the engine's in-memory footprint per user and its startup time
//   coldstart   neighbour lookup latency and accuracy, exact scan vs the HNSW index
//   load        RankResponses vs an echo server, and ingestion vs raw RocksDB
//   dims        engine-only ranking latency at d = 10, 64, 256, 1024
//   replay      offline evaluation on logged feedback (a tailorctl feedback CSV)
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "bench/cluster_benchmark.h"
#include "bench/coldstart_benchmark.h"
#include "bench/load_benchmark.h"
#include "bench/memory_benchmark.h"
#include "bench/quality_benchmark.h"
#include "bench/refresh_benchmark.h"
#include "bench/replay_benchmark.h"
#include "bench/schema_change_benchmark.h"
#include "bench/synthetic_catalogue.h"

ABSL_FLAG(double, rho, 0.42, "correlation between reward models in the synthetic catalogue");
ABSL_FLAG(double, alpha, 0.05, "Dirichlet concentration of user weights");
ABSL_FLAG(int32_t, prompts, 1000, "synthetic prompts");
ABSL_FLAG(int32_t, users, 1000, "simulated users");
ABSL_FLAG(uint64_t, seed, 1, "random seed");
ABSL_FLAG(int32_t, dimension, 10, "memory: features per user");
ABSL_FLAG(std::string, catalogue, "synthetic",
          "quality: 'synthetic', a catalogue CSV (prompt_id,response_id,label,<features...>), "
          "or personalllm:FILE.csv (prompt, response_1..8, response_{i}_{reward_model})");
ABSL_FLAG(int32_t, historical_users, 10000, "quality: established users streamed in first");
ABSL_FLAG(int32_t, min_pairs, 25, "quality: fewest pairs per historical user");
ABSL_FLAG(int32_t, max_pairs, 50, "quality: most pairs per historical user");
ABSL_FLAG(int32_t, test_users, 100, "quality: test users per k");
ABSL_FLAG(int32_t, eval_prompts, 100, "quality: held-out prompts ranked per test user");
ABSL_FLAG(std::vector<std::string>, ks,
          std::vector<std::string>({"0", "1", "2", "4", "8", "16", "32"}),
          "quality: numbers of pairs test users give");
ABSL_FLAG(int32_t, threads, 4, "quality: client threads");
ABSL_FLAG(std::string, scenario, "",
          "quality: empty for the PersonalLLM protocol, or a schema change: add_feature (the "
          "catalogue's last reward model arrives) or remove_feature (its first is retired); see "
          "bench/schema_change_benchmark.h");
ABSL_FLAG(int32_t, history_pairs, 24,
          "quality --scenario: each test user's pairs before the change");
ABSL_FLAG(int32_t, historical_pairs_after, 8,
          "quality --scenario: pairs each historical user gives after the change");
ABSL_FLAG(double, train_fraction, 0.75,
          "quality: share of prompts used for feedback; the rest are held out for scoring");
ABSL_FLAG(std::string, tailord, "", "quality: tailord binary (default: next to tailor-bench)");
ABSL_FLAG(std::string, json_out, "", "quality, replay: write the JSON report here");
ABSL_FLAG(std::string, svg_out, "", "quality, replay: write the SVG learning curves here");
ABSL_FLAG(int32_t, repeats, 1,
          "quality: runs with seeds --seed, --seed+1, ...; above 1 adds their spread (mean ± sd)");
ABSL_FLAG(std::vector<std::string>, populations,
          std::vector<std::string>({"10000", "100000", "1000000"}),
          "coldstart: numbers of established users");
ABSL_FLAG(std::vector<std::string>, lookup_ks, std::vector<std::string>({"4", "8", "32"}),
          "coldstart: pairs the cold users have given");
ABSL_FLAG(int32_t, connections, 4, "load: gRPC connections");
ABSL_FLAG(int32_t, concurrency, 64, "load: calls in flight");
ABSL_FLAG(double, duration_s, 5, "load: measured seconds per run");
ABSL_FLAG(double, warmup_s, 1, "load: warm-up seconds per run");
ABSL_FLAG(int32_t, established_users, 100000,
          "load: users streamed in first with 16 pairs each (established, in the reference set)");
ABSL_FLAG(int32_t, veteran_users, 2000,
          "load: users streamed in first with 128 pairs each (past the neighbour hand-over)");
ABSL_FLAG(int32_t, class_users, 4000, "load: users in each measured ingestion class");
ABSL_FLAG(int32_t, class_pairs, 8, "load: events per user in a measured ingestion class");
ABSL_FLAG(bool, pinned, true,
          "load: also measure serving with the generator and the server on different CPUs");
ABSL_FLAG(std::string, echo_listen, "127.0.0.1:0", "echo-server: address to serve on");
ABSL_FLAG(int32_t, streams, 32, "load: concurrent feedback streams during ingestion");
ABSL_FLAG(bool, sync_ingest, true, "load: also measure ingestion with tailord --sync");
ABSL_FLAG(std::vector<std::string>, dims, std::vector<std::string>({"10", "64", "256", "1024"}),
          "dims: feature dimensions to rank at");
ABSL_FLAG(std::string, events, "", "replay: feedback log, tailorctl feedback CSV format");
ABSL_FLAG(std::string, schema, "", "replay: tailord --schema file for the log's features");
ABSL_FLAG(int32_t, folds, 5, "replay: folds over users (each user is a test user once)");
ABSL_FLAG(int32_t, max_folds, 0, "replay: run only the first this many folds (0 = all)");
ABSL_FLAG(
    int32_t, tenants, 0,
    "replay: above 0, tailord runs with token auth and this many tenants, each user in the "
    "tenant its id hashes to (knowledge per tenant unless --tailord_flags=--share_knowledge=*)");
ABSL_FLAG(std::vector<std::string>, tailord_flags, {},
          "replay, load: extra flags for the Tailor server (replay: not the own-only baseline), "
          "e.g. "
          "--tailord_flags=--neighbour_cold_start=false");
ABSL_FLAG(int32_t, queries, 200, "coldstart: cold users per population and k");
ABSL_FLAG(int32_t, near, tailor::model::NeighbourIndexOptions().near,
          "coldstart: users the HNSW search returns per lookup");
ABSL_FLAG(int32_t, sampled, tailor::model::NeighbourIndexOptions().sampled,
          "coldstart: uniform draws per lookup");
ABSL_FLAG(std::string, nats, "", "cluster: NATS servers (comma-separated URLs; default $NATS_URL)");
ABSL_FLAG(int32_t, cluster_events, 20000, "cluster: feedback events recorded by each side");
ABSL_FLAG(int32_t, cluster_users, 2000, "cluster: users the events are spread over");
ABSL_FLAG(int32_t, cluster_threads, 8, "cluster: concurrent writers");
ABSL_FLAG(int32_t, cluster_partitions, 64, "cluster: partitions of the benchmark's log");
ABSL_FLAG(int32_t, cluster_replicas, 3, "cluster: replicas of the benchmark's log (1: one server)");
ABSL_FLAG(int32_t, reference_users, 1000000, "refresh: established users in the reference set");
ABSL_FLAG(int32_t, rounds, 3, "refresh: refreshes after the first");
ABSL_FLAG(double, moved, 0.01, "refresh: share of users whose estimate changes per round");
ABSL_FLAG(double, added, 0.005, "refresh: share of users who arrive per round");
ABSL_FLAG(double, removed, 0.001, "refresh: share of users who go per round");

namespace {

constexpr char kUsage[] = R"(tailor-bench [flags] COMMAND
commands:
  diversity   share of prompts whose top response wins a majority of users, and share with
              >= 5 distinct winners, for the synthetic catalogue (PersonalLLM reports ~0.5/~0.6)
  quality     the PersonalLLM protocol through live tailord servers (started here):
              historical users stream feedback, test users give k pairs (random or suggested),
              held-out accuracy/top-1/reward vs population, own-posterior and oracle baselines
  memory      heap bytes per user held by the engine (established and cold users), from the
              growth between --users/2 and --users users loaded at startup)
  load        on a realistic population (--established_users with 16 pairs, --veteran_users
              past the hand-over): StreamFeedback ingestion per class of user (new, inside
              the hand-over, past it, mixed; default and --sync) vs raw RocksDB WriteBatches
              of the same bytes; RankResponses (8 candidates) vs an echo server with the same
              messages, closed and open loop, unpinned and pinned
  echo-server the echo baseline on --echo_listen, until killed (load runs it)
  dims        engine-only RankResponses latency (8 candidates) for warm and cold users at
              each of --dims features, with 2,000 established users
  coldstart   a cold user's neighbour lookup with --populations established users: exact scan
              vs the HNSW index, latency percentiles and the top-1 accuracy it costs
  cluster     ingestion through cluster mode's replicated log against a single node, and
              rebuilding a shard from the log (needs NATS: scripts/nats-cluster.sh)
  refresh     the reference set and its HNSW graph carried across refreshes with
              --reference_users users, --rounds times with --moved/--added/--removed shares
              changing: the graph changed in place vs a new graph over the same set (time,
              and search recall against the exact nearest users)
  replay      offline evaluation on logged feedback: --events=LOG.csv --schema=SCHEMA.csv;
              users split into --folds; each test user's prompts split in two, k events of one
              half sent, the other half's pairs predicted; Tailor vs the population and
              own-posterior-only baselines (same run, paired standard errors), accuracy, log
              loss, calibration)";

int Diversity() {
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  const auto catalogue = tailor::bench::MakeSyntheticCatalogue(absl::GetFlag(FLAGS_prompts), 8, 10,
                                                               absl::GetFlag(FLAGS_rho), rng);
  std::vector<Eigen::VectorXd> users;
  for (int i = 0; i < absl::GetFlag(FLAGS_users); ++i) {
    users.push_back(tailor::bench::SampleDirichlet(10, absl::GetFlag(FLAGS_alpha), rng));
  }
  const auto d = tailor::bench::MeasureDiversity(catalogue, users);
  std::printf(
      "rho=%.2f alpha=%.3f: top response wins a majority for %.2f of prompts; "
      ">=5 distinct winners for %.2f\n",
      absl::GetFlag(FLAGS_rho), absl::GetFlag(FLAGS_alpha), d.majority_share, d.five_winners_share);
  return 0;
}

int Memory() {
  const int users = absl::GetFlag(FLAGS_users);
  const int dimension = absl::GetFlag(FLAGS_dimension);
  auto result = tailor::bench::MeasureMemoryPerUser(dimension, users / 2, users, 8);
  if (!result.ok()) {
    std::fprintf(stderr, "tailor-bench: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  std::printf(
      "d=%d: %.0f bytes per established user (posterior only), %.0f bytes per cold user "
      "with %d pairs kept for cold start (both including the reference set and any HNSW "
      "index); opening %d users took %.2f s, of which %.2f s the full refresh (tailord serves "
      "before it, after a refresh capped at --exact_scan_max_users, and runs it in the "
      "background)\n",
      result->dimension, result->bytes_per_established_user, result->bytes_per_cold_user,
      result->cold_pairs, result->users_large, result->load_seconds_large,
      result->refresh_seconds_large);
  return 0;
}

// A comma-separated flag of non-negative counts; false (with a message) if one is not.
bool ParseCounts(const char* flag, const std::vector<std::string>& values, std::vector<int>& out) {
  out.clear();
  for (const std::string& v : values) {
    int value = 0;
    if (!absl::SimpleAtoi(v, &value) || value < 0) {
      std::fprintf(stderr, "tailor-bench: --%s: '%s' is not a count\n", flag, v.c_str());
      return false;
    }
    out.push_back(value);
  }
  return true;
}

int Load(const char* argv0) {
  tailor::bench::LoadBenchmarkOptions options;
  options.tailord_binary = absl::GetFlag(FLAGS_tailord);
  if (options.tailord_binary.empty()) {
    options.tailord_binary = (std::filesystem::path(argv0).parent_path() / "tailord").string();
  }
  options.load.connections = absl::GetFlag(FLAGS_connections);
  options.load.concurrency = absl::GetFlag(FLAGS_concurrency);
  options.load.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  options.load.warmup = absl::Seconds(absl::GetFlag(FLAGS_warmup_s));
  options.bench_binary = std::filesystem::read_symlink("/proc/self/exe").string();
  options.established_users = absl::GetFlag(FLAGS_established_users);
  options.veteran_users = absl::GetFlag(FLAGS_veteran_users);
  options.class_users = absl::GetFlag(FLAGS_class_users);
  options.class_pairs = absl::GetFlag(FLAGS_class_pairs);
  options.ingest_streams = absl::GetFlag(FLAGS_streams);
  options.include_sync = absl::GetFlag(FLAGS_sync_ingest);
  options.pinned = absl::GetFlag(FLAGS_pinned);
  options.tailord_flags = absl::GetFlag(FLAGS_tailord_flags);
  options.seed = absl::GetFlag(FLAGS_seed);
  if (options.load.connections < 1 || options.load.concurrency < 1 ||
      options.established_users < 1 || options.veteran_users < 1 || options.class_users < 3 ||
      options.class_pairs < 1 || options.ingest_streams < 1) {
    std::fprintf(stderr,
                 "tailor-bench: load: counts must be at least 1 (--class_users at least 3)\n");
    return 2;
  }
  auto report = tailor::bench::RunLoadBenchmark(options);
  if (!report.ok()) {
    std::fprintf(stderr, "tailor-bench: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  std::printf("%s", tailor::bench::LoadMarkdown(*report).c_str());
  return 0;
}

int Dims() {
  std::vector<int> dims;
  if (!ParseCounts("dims", absl::GetFlag(FLAGS_dims), dims)) return 2;
  std::printf(
      "| d | warm p50 µs | warm p99 µs | cold p50 µs | cold p99 µs | warm p50 ÷ d=%d |\n"
      "|---:|---:|---:|---:|---:|---:|\n",
      dims.empty() ? 0 : dims[0]);
  double base = 0;
  for (int d : dims) {
    auto r = tailor::bench::MeasureRankLatency(d, 2000, 50, 8, 4000);
    if (!r.ok()) {
      std::fprintf(stderr, "tailor-bench: %s\n", std::string(r.status().message()).c_str());
      return 1;
    }
    if (base == 0) base = r->warm_p50_us;
    std::printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f× |\n", d, r->warm_p50_us, r->warm_p99_us,
                r->cold_p50_us, r->cold_p99_us, r->warm_p50_us / base);
    std::fflush(stdout);
  }
  return 0;
}

int ColdStart() {
  tailor::bench::ColdStartOptions options;
  if (!ParseCounts("populations", absl::GetFlag(FLAGS_populations), options.populations) ||
      !ParseCounts("lookup_ks", absl::GetFlag(FLAGS_lookup_ks), options.ks)) {
    return 2;
  }
  options.queries = absl::GetFlag(FLAGS_queries);
  options.index.near = absl::GetFlag(FLAGS_near);
  options.index.sampled = absl::GetFlag(FLAGS_sampled);
  options.seed = absl::GetFlag(FLAGS_seed);
  std::printf(
      "%s",
      tailor::bench::ColdStartMarkdown(tailor::bench::RunColdStartBenchmark(options)).c_str());
  return 0;
}

int Cluster() {
  tailor::bench::ClusterBenchOptions options;
  options.nats = absl::GetFlag(FLAGS_nats);
  if (options.nats.empty() && std::getenv("NATS_URL") != nullptr)
    options.nats = std::getenv("NATS_URL");
  if (options.nats.empty()) {
    std::fprintf(stderr, "tailor-bench cluster: --nats (or NATS_URL) is required\n");
    return 64;
  }
  options.events = absl::GetFlag(FLAGS_cluster_events);
  options.users = absl::GetFlag(FLAGS_cluster_users);
  options.threads = absl::GetFlag(FLAGS_cluster_threads);
  options.partitions = absl::GetFlag(FLAGS_cluster_partitions);
  options.replicas = absl::GetFlag(FLAGS_cluster_replicas);
  options.seed = absl::GetFlag(FLAGS_seed);
  absl::StatusOr<tailor::bench::ClusterBenchResult> result =
      tailor::bench::RunClusterBenchmark(options);
  if (!result.ok()) {
    std::fprintf(stderr, "tailor-bench cluster: %s\n", result.status().ToString().c_str());
    return 1;
  }
  std::printf("%s", tailor::bench::ClusterMarkdown(options, *result).c_str());
  return 0;
}

int Refresh() {
  tailor::bench::RefreshOptions options;
  options.users = absl::GetFlag(FLAGS_reference_users);
  options.rounds = absl::GetFlag(FLAGS_rounds);
  options.moved = absl::GetFlag(FLAGS_moved);
  options.added = absl::GetFlag(FLAGS_added);
  options.removed = absl::GetFlag(FLAGS_removed);
  options.queries = absl::GetFlag(FLAGS_queries);
  options.pool.capacity = std::max(options.pool.capacity, 2 * options.users);
  options.pool.neighbour_index.near = absl::GetFlag(FLAGS_near);
  options.pool.neighbour_index.sampled = absl::GetFlag(FLAGS_sampled);
  options.seed = absl::GetFlag(FLAGS_seed);
  const tailor::bench::RefreshResult result = tailor::bench::RunRefreshBenchmark(options);
  std::printf("%s", tailor::bench::RefreshMarkdown(options, result).c_str());
  return 0;
}

// The catalogue named by --catalogue; a synthetic one is drawn from `seed`.
absl::StatusOr<tailor::bench::Catalogue> LoadCatalogue(const std::string& source, uint64_t seed,
                                                       bool print_diversity, std::string& name) {
  if (source == "synthetic") {
    std::mt19937_64 rng(seed);
    tailor::bench::Catalogue catalogue =
        tailor::bench::MakeSyntheticCatalogue(2000, 8, 10, absl::GetFlag(FLAGS_rho), rng);
    name = absl::StrFormat("synthetic (rho=%.2f)", absl::GetFlag(FLAGS_rho));
    if (print_diversity) {
      std::vector<Eigen::VectorXd> users;
      for (int i = 0; i < 1000; ++i) {
        users.push_back(tailor::bench::SampleDirichlet(10, absl::GetFlag(FLAGS_alpha), rng));
      }
      const auto d = tailor::bench::MeasureDiversity(catalogue, users);
      std::printf(
          "diversity: top response wins a majority for %.2f of prompts; >=5 distinct "
          "winners for %.2f (PersonalLLM: ~0.5 / ~0.6)\n\n",
          d.majority_share, d.five_winners_share);
    }
    return catalogue;
  }
  if (absl::StartsWith(source, "personalllm:")) {
    const std::string path = source.substr(12);
    int skipped = 0;
    auto loaded = tailor::bench::LoadPersonalLlmCsv(path, &skipped);
    if (!loaded.ok()) return loaded.status();
    name = std::filesystem::path(path).filename().string();
    if (skipped > 0 && print_diversity) {
      std::fprintf(stderr, "personalllm: skipped %d rows without scores\n", skipped);
    }
    return loaded;
  }
  name = std::filesystem::path(source).filename().string();
  return tailor::bench::LoadCatalogueCsv(source);
}

// quality --scenario=add_feature|remove_feature.
int SchemaChange(const std::string& tailord) {
  tailor::bench::SchemaChangeOptions options;
  options.tailord_binary = tailord;
  options.scenario = absl::GetFlag(FLAGS_scenario);
  options.historical_users = absl::GetFlag(FLAGS_historical_users);
  options.min_pairs = absl::GetFlag(FLAGS_min_pairs);
  options.max_pairs = absl::GetFlag(FLAGS_max_pairs);
  options.test_users = absl::GetFlag(FLAGS_test_users);
  options.history_pairs = absl::GetFlag(FLAGS_history_pairs);
  options.historical_pairs_after = absl::GetFlag(FLAGS_historical_pairs_after);
  options.eval_prompts = absl::GetFlag(FLAGS_eval_prompts);
  options.alpha = absl::GetFlag(FLAGS_alpha);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.train_fraction = absl::GetFlag(FLAGS_train_fraction);
  options.seed = absl::GetFlag(FLAGS_seed);
  if (!ParseCounts("ks", absl::GetFlag(FLAGS_ks), options.ks)) return 2;
  std::string name;
  auto catalogue = LoadCatalogue(absl::GetFlag(FLAGS_catalogue), options.seed, true, name);
  if (!catalogue.ok()) {
    std::fprintf(stderr, "tailor-bench: %s\n", std::string(catalogue.status().message()).c_str());
    return 2;
  }
  auto report = tailor::bench::RunSchemaChangeBenchmark(*catalogue, name, options);
  if (!report.ok()) {
    std::fprintf(stderr, "tailor-bench: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  std::printf("%s", tailor::bench::SchemaChangeMarkdown(*report).c_str());
  return 0;
}

int Quality(const char* argv0) {
  tailor::bench::QualityOptions options;
  options.tailord_binary = absl::GetFlag(FLAGS_tailord);
  if (options.tailord_binary.empty()) {
    options.tailord_binary = (std::filesystem::path(argv0).parent_path() / "tailord").string();
  }
  options.historical_users = absl::GetFlag(FLAGS_historical_users);
  options.min_pairs = absl::GetFlag(FLAGS_min_pairs);
  options.max_pairs = absl::GetFlag(FLAGS_max_pairs);
  options.test_users = absl::GetFlag(FLAGS_test_users);
  options.eval_prompts = absl::GetFlag(FLAGS_eval_prompts);
  options.alpha = absl::GetFlag(FLAGS_alpha);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.train_fraction = absl::GetFlag(FLAGS_train_fraction);
  if (!absl::GetFlag(FLAGS_scenario).empty()) return SchemaChange(options.tailord_binary);
  if (!ParseCounts("ks", absl::GetFlag(FLAGS_ks), options.ks)) return 2;
  const int repeats = absl::GetFlag(FLAGS_repeats);
  if (repeats < 1) {
    std::fprintf(stderr, "tailor-bench: --repeats: must be at least 1\n");
    return 2;
  }
  // The first seed's run is reported in full (and written as JSON and SVG); further seeds
  // only feed the spread table.
  std::vector<tailor::bench::QualityReport> runs;
  std::vector<uint64_t> seeds;
  for (int i = 0; i < repeats; ++i) {
    options.seed = absl::GetFlag(FLAGS_seed) + static_cast<uint64_t>(i);
    std::string name;
    auto catalogue = LoadCatalogue(absl::GetFlag(FLAGS_catalogue), options.seed, i == 0, name);
    if (!catalogue.ok()) {
      std::fprintf(stderr, "tailor-bench: %s\n", std::string(catalogue.status().message()).c_str());
      return 2;
    }
    if (repeats > 1) std::fprintf(stderr, "seed %llu:\n", (unsigned long long)options.seed);
    auto report = tailor::bench::RunQualityBenchmark(*catalogue, name, options);
    if (!report.ok()) {
      std::fprintf(stderr, "tailor-bench: %s\n", std::string(report.status().message()).c_str());
      return 1;
    }
    if (i == 0) {
      std::printf("%s", tailor::bench::ReportMarkdown(*report).c_str());
      if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
        std::ofstream(path) << tailor::bench::ReportJson(*report);
      }
      if (const std::string path = absl::GetFlag(FLAGS_svg_out); !path.empty()) {
        std::ofstream(path) << tailor::bench::ReportSvg(*report);
      }
      std::fflush(stdout);
    }
    runs.push_back(*std::move(report));
    seeds.push_back(options.seed);
  }
  if (repeats > 1) {
    std::printf("\n%s", tailor::bench::SeedSpreadMarkdown(runs, seeds).c_str());
  }
  return 0;
}

int Replay(const char* argv0) {
  tailor::bench::ReplayOptions options;
  options.tailord_binary = absl::GetFlag(FLAGS_tailord);
  if (options.tailord_binary.empty()) {
    options.tailord_binary = (std::filesystem::path(argv0).parent_path() / "tailord").string();
  }
  options.events_path = absl::GetFlag(FLAGS_events);
  options.schema_path = absl::GetFlag(FLAGS_schema);
  if (options.events_path.empty() || options.schema_path.empty()) {
    std::fprintf(stderr, "tailor-bench: replay: --events and --schema are required\n");
    return 2;
  }
  options.folds = absl::GetFlag(FLAGS_folds);
  options.max_folds = absl::GetFlag(FLAGS_max_folds);
  if (options.folds < 2 || options.max_folds < 0) {
    std::fprintf(stderr, "tailor-bench: replay: --folds must be at least 2, --max_folds >= 0\n");
    return 2;
  }
  if (!ParseCounts("ks", absl::GetFlag(FLAGS_ks), options.ks)) return 2;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.threads = absl::GetFlag(FLAGS_threads);
  options.tenants = absl::GetFlag(FLAGS_tenants);
  options.tailord_flags = absl::GetFlag(FLAGS_tailord_flags);
  auto report = tailor::bench::RunReplayBenchmark(options);
  if (!report.ok()) {
    std::fprintf(stderr, "tailor-bench: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  std::printf("%s", tailor::bench::ReplayMarkdown(*report).c_str());
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    std::ofstream(path) << tailor::bench::ReplayJson(*report);
  }
  if (const std::string path = absl::GetFlag(FLAGS_svg_out); !path.empty()) {
    std::ofstream(path) << tailor::bench::ReplaySvg(*report);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string command = args.size() > 1 ? args[1] : "";
  if (command == "diversity") return Diversity();
  if (command == "quality") return Quality(argv[0]);
  if (command == "memory") return Memory();
  if (command == "coldstart") return ColdStart();
  if (command == "refresh") return Refresh();
  if (command == "cluster") return Cluster();
  if (command == "load") return Load(argv[0]);
  if (command == "echo-server") {
    return tailor::bench::RunEchoServerProcess(absl::GetFlag(FLAGS_echo_listen));
  }
  if (command == "dims") return Dims();
  if (command == "replay") return Replay(argv[0]);
  std::fprintf(stderr, "%s\n", kUsage);
  return 64;
}

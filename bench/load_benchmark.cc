#include "bench/load_benchmark.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <Eigen/Core>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/cpu_affinity.h"
#include "bench/echo_server.h"
#include "bench/scratch_dir.h"
#include "bench/synthetic_catalogue.h"
#include "bench/tailord_process.h"
#include "client/tailor_client.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "model/stable_hash.h"
#include "proto/routing_header.h"
#include "storage/raw_write_baseline.h"
#include "tailor/bench/v1/echo.grpc.pb.h"
#include "tailor/storage/v1/records.pb.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::bench {
namespace {

constexpr int kCandidates = 8;
constexpr int kRequestPool = 512;
constexpr int kEstablishedPairs = 16;    // tailord's established_pairs
constexpr int kHandoverPairs = 128;      // tailord's handover_pairs
constexpr size_t kChunkEvents = 200000;  // events generated and streamed at a time

// Simulated users as in the PersonalLLM population: true weights over the z-scored features
// drawn from Dirichlet(0.05) and scaled by 3, each answering a pair by Bradley–Terry; the
// candidates' raw scores lie around the schema's means, as a serving stack would send them.
// A user's weights depend only on their id and the seed.
class SimulatedUsers {
 public:
  SimulatedUsers(const tailor::v1::Schema& schema, uint64_t seed)
      : schema_(schema), seed_(seed), rng_(seed) {}

  tailor::v1::Candidate Candidate(const std::string& id, Eigen::VectorXd* z = nullptr) {
    tailor::v1::Candidate c;
    c.set_id(id);
    Eigen::VectorXd drawn(schema_.features_size());
    for (int i = 0; i < schema_.features_size(); ++i) {
      const tailor::v1::Feature& f = schema_.features(i);
      drawn[i] = normal_(rng_);
      c.add_features(static_cast<float>(f.mean() + f.sd() * drawn[i]));
    }
    if (z != nullptr) *z = drawn;
    return c;
  }

  // Events `first` .. `first + count - 1` of `user_id`.
  void AppendEvents(const std::string& user_id, int first, int count,
                    std::vector<tailor::v1::FeedbackEvent>& out) {
    std::mt19937_64 taste(model::StableHash({user_id}, seed_));
    const Eigen::VectorXd w = 3.0 * SampleDirichlet(schema_.features_size(), 0.05, taste);
    for (int i = first; i < first + count; ++i) {
      tailor::v1::FeedbackEvent e;
      e.set_event_id(absl::StrCat(user_id, "/", i));
      e.set_user_id(user_id);
      e.set_prompt_id(absl::StrCat("p", i));
      Eigen::VectorXd za, zb;
      tailor::v1::Candidate a = Candidate("a", &za);
      tailor::v1::Candidate b = Candidate("b", &zb);
      const double p_a = 1.0 / (1.0 + std::exp(-w.dot(za - zb)));
      const bool a_chosen = std::uniform_real_distribution<double>()(rng_) < p_a;
      *e.mutable_chosen() = a_chosen ? std::move(a) : std::move(b);
      *e.mutable_rejected() = a_chosen ? std::move(b) : std::move(a);
      out.push_back(std::move(e));
    }
  }

 private:
  const tailor::v1::Schema& schema_;
  const uint64_t seed_;
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_;
};

// Which events of which user a run streams.
struct UserEvents {
  std::string user_id;
  int first = 0;
  int count = 0;
};

// One commit's bytes as FeedbackStore writes them: history, idempotency and state puts.
std::vector<storage::RawPut> CommitShape(const tailor::v1::FeedbackEvent& event, int dimension) {
  tailor::storage::v1::FeedbackRecord history;
  history.set_sequence(20);
  history.set_event_id(event.event_id());
  history.set_prompt_id(event.prompt_id());
  history.set_chosen_id(event.chosen().id());
  history.mutable_chosen_features()->CopyFrom(event.chosen().features());
  history.set_rejected_id(event.rejected().id());
  history.mutable_rejected_features()->CopyFrom(event.rejected().features());
  history.set_timestamp_micros(1700000000000000);
  history.set_applied_micros(1700000000000000);
  history.set_predicted_chosen_probability(0.5);
  tailor::storage::v1::IdempotencyRecord idempotency;
  idempotency.set_sequence(20);
  idempotency.set_user_feedback_count(20);
  idempotency.set_predicted_chosen_probability(0.5);
  tailor::storage::v1::UserState state;
  state.set_format_version(1);
  state.set_feedback_count(20);
  for (int i = 0; i < dimension; ++i) state.add_mean(0.1);
  for (int i = 0; i < dimension * (dimension + 1) / 2; ++i) state.add_covariance(0.1);
  state.set_first_feedback_micros(1700000000000000);
  state.set_last_feedback_micros(1700000000000000);
  const size_t user = event.user_id().size() + 2;
  return {{user + 8, history.ByteSizeLong()},
          {user + event.event_id().size(), idempotency.ByteSizeLong()},
          {user, state.ByteSizeLong()}};
}

// GET http://127.0.0.1:port/metrics, the body.
std::string FetchMetrics(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      ssize_t n;
      while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) {
        response.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  return response;
}

// Cumulative RankResponses latency buckets: upper bound (seconds) -> count.
std::map<double, double> RankBuckets(const std::string& exposition) {
  std::map<double, double> buckets;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::StartsWith(line, "tailor_rpc_latency_seconds_bucket{") ||
        line.find("method=\"RankResponses\"") == absl::string_view::npos) {
      continue;
    }
    const size_t le = line.find("le=\"");
    const size_t end = line.find('"', le + 4);
    const size_t space = line.rfind(' ');
    double bound = 0, count = 0;
    const absl::string_view bound_text = line.substr(le + 4, end - le - 4);
    if (bound_text == "+Inf") {
      bound = INFINITY;
    } else if (!absl::SimpleAtod(bound_text, &bound)) {
      continue;
    }
    if (absl::SimpleAtod(line.substr(space + 1), &count)) buckets[bound] = count;
  }
  return buckets;
}

// The smallest bucket bound below which 99% of the calls between two scrapes finished.
double HistogramP99(const std::map<double, double>& before, const std::map<double, double>& after) {
  if (after.empty()) return 0;
  const double total = after.rbegin()->second - (before.empty() ? 0 : before.rbegin()->second);
  for (const auto& [bound, count] : after) {
    auto it = before.find(bound);
    const double delta = count - (it == before.end() ? 0 : it->second);
    if (delta >= 0.99 * total) return bound;
  }
  return INFINITY;
}

std::vector<std::shared_ptr<grpc::Channel>> Channels(const std::string& target, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("tailor.bench.connection", i);  // a distinct argument: its own TCP connection
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

template <typename Stub>
LoadResult Drive(const LoadOptions& load, std::vector<std::unique_ptr<Stub>>& stubs,
                 const std::vector<tailor::v1::RankResponsesRequest>& requests) {
  struct Call {
    grpc::ClientContext context;
    tailor::v1::RankResponsesResponse response;
  };
  return RunLoad(
      load, [&](int connection, uint64_t index, std::function<void(const grpc::Status&)> done) {
        const tailor::v1::RankResponsesRequest& request = requests[index % requests.size()];
        auto* call = new Call;
        call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        call->context.AddMetadata(kRoutingHeader, EncodeRoutingHeader(request.user_id()));
        stubs[static_cast<size_t>(connection)]->async()->RankResponses(
            &call->context, &request, &call->response,
            [call, done = std::move(done)](grpc::Status status) {
              done(status);
              delete call;
            });
      });
}

// Streams every user's events over `streams` concurrent StreamFeedback calls; events/s.
absl::StatusOr<double> Ingest(
    const std::string& target,
    const std::vector<std::vector<tailor::v1::FeedbackEvent>>& per_stream) {
  client::ClientOptions options;
  options.target = target;
  client::TailorClient client(options);
  std::atomic<bool> failed{false};
  std::string error;
  std::mutex error_mu;
  size_t total = 0;
  for (const auto& events : per_stream) total += events.size();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (const auto& events : per_stream) {
    threads.emplace_back([&, &events = events] {
      auto acks = client.StreamFeedback(events, nullptr);
      bool ok = acks.ok();
      if (ok) {
        for (const tailor::v1::FeedbackAck& ack : *acks) {
          ok = ok && ack.outcome() == tailor::v1::FeedbackAck::OUTCOME_APPLIED;
        }
      }
      if (!ok) {
        failed = true;
        std::lock_guard<std::mutex> lock(error_mu);
        error = acks.ok() ? "an event was not applied" : std::string(acks.status().message());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (failed) return absl::InternalError(absl::StrCat("ingestion failed: ", error));
  return static_cast<double>(total) / seconds;
}

// Streams `users`' events, dealt over `streams` StreamFeedback calls user by user (each user's
// events in order on one stream), in chunks of about kChunkEvents; events/s overall.
absl::StatusOr<double> StreamUsers(const std::string& target, SimulatedUsers& simulated,
                                   const std::vector<UserEvents>& users, int streams) {
  double seconds = 0;
  uint64_t events = 0;
  for (size_t begin = 0; begin < users.size();) {
    std::vector<std::vector<tailor::v1::FeedbackEvent>> per_stream(static_cast<size_t>(streams));
    size_t chunk_events = 0;
    size_t end = begin;
    for (; end < users.size() && chunk_events < kChunkEvents; ++end) {
      simulated.AppendEvents(users[end].user_id, users[end].first, users[end].count,
                             per_stream[end % static_cast<size_t>(streams)]);
      chunk_events += static_cast<size_t>(users[end].count);
    }
    absl::StatusOr<double> rate = Ingest(target, per_stream);
    if (!rate.ok()) return rate.status();
    seconds += static_cast<double>(chunk_events) / *rate;
    events += chunk_events;
    begin = end;
  }
  return seconds > 0 ? static_cast<double>(events) / seconds : 0;
}

std::string EstablishedId(int u) { return absl::StrCat("load-user-", u); }
std::string VeteranId(int v) { return absl::StrCat("load-veteran-", v); }

// The measured classes' users, drawn so that no two runs share a user's events.
class ClassUsers {
 public:
  explicit ClassUsers(const LoadBenchmarkOptions& options)
      : options_(options),
        veteran_next_(static_cast<size_t>(options.veteran_users), kHandoverPairs) {}

  // `count` users with no pairs yet.
  std::vector<UserEvents> New(const std::string& tag, int count) {
    std::vector<UserEvents> users;
    for (int i = 0; i < count; ++i) {
      users.push_back({absl::StrCat("load-new-", tag, "-", i), 0, options_.class_pairs});
    }
    return users;
  }
  // `count` established users not used before (16 pairs each, inside the hand-over).
  absl::StatusOr<std::vector<UserEvents>> Handover(int count) {
    if (next_established_ + count > options_.established_users) {
      return absl::InvalidArgumentError(
          absl::StrCat("--established_users must be at least ", next_established_ + count,
                       " for the hand-over classes (or lower --class_users)"));
    }
    std::vector<UserEvents> users;
    for (int i = 0; i < count; ++i) {
      users.push_back(
          {EstablishedId(next_established_++), kEstablishedPairs, options_.class_pairs});
    }
    return users;
  }
  // `events` more events from users past the hand-over, spread evenly over all of them.
  std::vector<UserEvents> Veterans(int events) {
    std::vector<UserEvents> users;
    const int n = options_.veteran_users;
    for (int v = 0; v < n; ++v) {
      const int count = events / n + (v < events % n ? 1 : 0);
      if (count == 0) continue;
      users.push_back({VeteranId(v), veteran_next_[static_cast<size_t>(v)], count});
      veteran_next_[static_cast<size_t>(v)] += count;
    }
    return users;
  }

 private:
  const LoadBenchmarkOptions& options_;
  int next_established_ = 0;
  std::vector<int> veteran_next_;
};

// Every class at one durability on a running server, then the raw baseline.
// CPU seconds (user + system) process `pid` has used so far; 0 if it cannot be read.
double CpuSeconds(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  // Fields after the command name (which is in parentheses and may hold spaces): the 12th and
  // 13th of them are utime and stime, in clock ticks.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  const std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
  double utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) ||
      !absl::SimpleAtod(fields[12], &stime)) {
    return 0;
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

absl::Status MeasureIngestion(const std::string& target, pid_t server,
                              const std::string& durability, const std::string& raw_dir,
                              const LoadBenchmarkOptions& options,
                              const std::vector<storage::RawPut>& shape, SimulatedUsers& simulated,
                              ClassUsers& classes, LoadReport& report) {
  const int c = options.class_users;
  const int class_events = c * options.class_pairs;
  absl::StatusOr<std::vector<UserEvents>> handover = classes.Handover(c);
  if (!handover.ok()) return handover.status();
  absl::StatusOr<std::vector<UserEvents>> mixed_handover = classes.Handover(c / 3);
  if (!mixed_handover.ok()) return mixed_handover.status();
  // Mixed: a third of the events from each class, interleaved user by user.
  std::vector<UserEvents> mixed;
  const std::vector<UserEvents> mixed_new = classes.New(durability + "-mixed", c / 3);
  const std::vector<UserEvents> mixed_veterans = classes.Veterans((c / 3) * options.class_pairs);
  for (size_t i = 0; i < mixed_new.size() || i < mixed_veterans.size(); ++i) {
    if (i < mixed_new.size()) mixed.push_back(mixed_new[i]);
    if (i < mixed_handover->size()) mixed.push_back((*mixed_handover)[i]);
    if (i < mixed_veterans.size()) mixed.push_back(mixed_veterans[i]);
  }
  const std::vector<std::pair<std::string, std::vector<UserEvents>>> runs = {
      {"new (0 → " + std::to_string(options.class_pairs) + " pairs)", classes.New(durability, c)},
      {"inside the hand-over (16 → " + std::to_string(kEstablishedPairs + options.class_pairs) +
           " pairs)",
       *std::move(handover)},
      {"past the hand-over (≥ 128 pairs)", classes.Veterans(class_events)},
      {"mixed (a third each)", std::move(mixed)},
  };
  const size_t first_row = report.ingestion.size();
  for (const auto& [label, users] : runs) {
    uint64_t events = 0;
    for (const UserEvents& u : users) events += static_cast<uint64_t>(u.count);
    std::fprintf(stderr, "  %s: %llu events...\n", label.c_str(),
                 static_cast<unsigned long long>(events));
    const double cpu_before = CpuSeconds(server);
    absl::StatusOr<double> rate = StreamUsers(target, simulated, users, options.ingest_streams);
    if (!rate.ok()) return rate.status();
    const double cpu_us = 1e6 * (CpuSeconds(server) - cpu_before) / static_cast<double>(events);
    report.ingestion.push_back({durability, label, events, *rate, 0, cpu_us});
  }
  std::fprintf(stderr, "  raw RocksDB batches...\n");
  absl::StatusOr<storage::RawWriteResult> raw = storage::MeasureRawBatchWrites(
      raw_dir, shape, options.ingest_streams, class_events / options.ingest_streams,
      durability == "wal+fsync");
  if (!raw.ok()) return raw.status();
  for (size_t i = first_row; i < report.ingestion.size(); ++i) {
    report.ingestion[i].raw_batches_per_second = raw->batches_per_second;
  }
  return absl::OkStatus();
}

std::vector<std::string> WithFlags(std::vector<std::string> flags,
                                   const LoadBenchmarkOptions& options) {
  flags.insert(flags.end(), options.tailord_flags.begin(), options.tailord_flags.end());
  return flags;
}

// Stops a server with SIGTERM and waits for it.
absl::Status Stop(TailordProcess& server) {
  server.Signal(SIGTERM);
  if (server.WaitForExit(60000) != 0) {
    return absl::InternalError(absl::StrCat("tailord did not stop cleanly: ", server.log()));
  }
  return absl::OkStatus();
}

// The value of an unlabelled gauge in a Prometheus exposition (-1 if absent).
double Gauge(const std::string& exposition, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, name) || !absl::ConsumePrefix(&line, " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line, &value)) return value;
  }
  return -1;
}

// Waits until tailord's RocksDB has no compaction running or pending (twice in a row, a
// second apart), so that a measurement is not charged for compacting what was loaded before
// it; the seconds waited.
absl::StatusOr<double> WaitForCompactions(int metrics_port) {
  const auto start = std::chrono::steady_clock::now();
  int quiet = 0;
  while (quiet < 2) {
    const std::string metrics = FetchMetrics(metrics_port);
    const double pending = Gauge(metrics, "tailor_rocksdb_pending_compaction_bytes");
    const double running = Gauge(metrics, "tailor_rocksdb_running_compactions");
    if (pending < 0 || running < 0) {  // a tailord from before the gauges: measure at once
      std::fprintf(stderr, "tailord has no compaction gauges; not waiting for compactions\n");
      return 0.0;
    }
    quiet = pending == 0 && running == 0 ? quiet + 1 : 0;
    if (std::chrono::steady_clock::now() - start > std::chrono::minutes(30)) {
      return absl::DeadlineExceededError("RocksDB still compacting after 30 minutes");
    }
    if (quiet < 2) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Closed loop, then open loop at half the closed loop's rate, against the echo server and
// tailord as they are placed now.
ServingRun MeasureServing(const std::string& placement, const LoadOptions& load,
                          std::vector<std::unique_ptr<bench::v1::Echo::Stub>>& echo_stubs,
                          std::vector<std::unique_ptr<tailor::v1::Tailor::Stub>>& tailor_stubs,
                          int metrics_port,
                          const std::vector<tailor::v1::RankResponsesRequest>& requests) {
  ServingRun run;
  run.placement = placement;
  std::fprintf(stderr, "%s: echo, closed loop...\n", placement.c_str());
  run.echo = Drive(load, echo_stubs, requests);
  std::fprintf(stderr, "%s: tailord RankResponses, closed loop...\n", placement.c_str());
  run.tailor = Drive(load, tailor_stubs, requests);
  LoadOptions half = load;
  half.rate = run.tailor.throughput / 2;
  half.concurrency = std::max(half.concurrency, 256);
  std::fprintf(stderr, "%s: tailord RankResponses, open loop at %.0f/s...\n", placement.c_str(),
               half.rate);
  const auto before = RankBuckets(FetchMetrics(metrics_port));
  run.tailor_half = Drive(half, tailor_stubs, requests);
  run.server_p99_half_us = 1e6 * HistogramP99(before, RankBuckets(FetchMetrics(metrics_port)));
  return run;
}

}  // namespace

absl::StatusOr<LoadReport> RunLoadBenchmark(const LoadBenchmarkOptions& options) {
  LoadReport report;
  report.options = options;
  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::string& dir = (*scratch)->path();
  const std::string data_dir = "--data_dir=" + dir + "/data";

  // The population, streamed into a server that refreshes its knowledge as usual.
  tailor::v1::Schema schema;
  {
    TailordProcess tailord(options.tailord_binary,
                           WithFlags({data_dir, "--shutdown_grace_ms=500"}, options));
    if (!tailord.WaitUntilServing()) {
      return absl::UnavailableError(absl::StrCat("tailord did not start: ", tailord.log()));
    }
    client::ClientOptions client_options;
    client_options.target = tailord.target();
    absl::StatusOr<tailor::v1::ServerInfo> info =
        client::TailorClient(client_options).GetServerInfo();
    if (!info.ok()) return info.status();
    schema = info->schema();
    report.dimension = schema.features_size();
    SimulatedUsers simulated(schema, options.seed);
    std::vector<UserEvents> population;
    for (int u = 0; u < options.established_users; ++u) {
      population.push_back({EstablishedId(u), 0, kEstablishedPairs});
    }
    for (int v = 0; v < options.veteran_users; ++v) {
      population.push_back({VeteranId(v), 0, kHandoverPairs});
    }
    for (const UserEvents& u : population) report.population.events += u.count;
    std::fprintf(stderr,
                 "population: %d established users (16 pairs), %d past the hand-over "
                 "(128 pairs): %llu events over %d streams...\n",
                 options.established_users, options.veteran_users,
                 static_cast<unsigned long long>(report.population.events), options.ingest_streams);
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<double> rate =
        StreamUsers(tailord.target(), simulated, population, options.ingest_streams);
    if (!rate.ok()) return rate.status();
    report.population.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (absl::Status s = Stop(tailord); !s.ok()) return s;
  }

  SimulatedUsers simulated(schema, options.seed + 1);
  ClassUsers classes(options);
  std::vector<storage::RawPut> shape;
  {
    std::vector<tailor::v1::FeedbackEvent> one;
    simulated.AppendEvents(EstablishedId(0), kEstablishedPairs, 1, one);
    shape = CommitShape(one[0], report.dimension);
    for (const storage::RawPut& put : shape) report.batch_bytes += put.key_bytes + put.value_bytes;
  }

  // Measured runs: knowledge fitted once at startup from the whole population, then frozen.
  const auto restart = std::chrono::steady_clock::now();
  TailordProcess tailord(
      options.tailord_binary,
      WithFlags({data_dir, "--refresh_ms=0", "--shutdown_grace_ms=500"}, options));
  if (!tailord.WaitUntilServing(600000)) {
    return absl::UnavailableError(absl::StrCat("tailord did not restart: ", tailord.log()));
  }
  report.population.restart_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - restart).count();
  client::ClientOptions client_options;
  client_options.target = tailord.target();
  absl::StatusOr<tailor::v1::ServerInfo> info =
      client::TailorClient(client_options).GetServerInfo();
  if (!info.ok()) return info.status();
  report.population.reference_users = info->knowledge().reference_users();
  std::fprintf(stderr, "waiting for RocksDB to finish compacting the population...\n");
  absl::StatusOr<double> compacting = WaitForCompactions(tailord.metrics_port());
  if (!compacting.ok()) return compacting.status();
  report.population.compaction_wait_seconds = *compacting;

  std::fprintf(stderr, "ingestion (wal):\n");
  if (absl::Status s = MeasureIngestion(tailord.target(), tailord.pid(), "wal", dir + "/raw-wal",
                                        options, shape, simulated, classes, report);
      !s.ok()) {
    return s;
  }

  // RankResponses for users of every class, and the same requests to the echo server.
  std::vector<tailor::v1::RankResponsesRequest> requests;
  std::mt19937_64 rng(options.seed + 2);
  for (int i = 0; i < kRequestPool; ++i) {
    tailor::v1::RankResponsesRequest request;
    const int u = static_cast<int>(rng() % static_cast<uint64_t>(options.class_users));
    switch (i % 3) {
      case 0:
        request.set_user_id(absl::StrCat("load-new-wal-", u));
        break;
      case 1:
        request.set_user_id(EstablishedId(u));
        break;
      default:
        request.set_user_id(VeteranId(u % std::max(1, options.veteran_users)));
    }
    for (int c = 0; c < kCandidates; ++c) {
      *request.add_candidates() = simulated.Candidate(absl::StrCat("r", c));
    }
    requests.push_back(std::move(request));
  }
  TailordProcess echo(options.bench_binary, {"echo-server", "--echo_listen=127.0.0.1:0"},
                      /*listen_flags=*/false);
  if (!echo.WaitUntilServing()) {
    return absl::UnavailableError(absl::StrCat("echo server did not start: ", echo.log()));
  }
  std::vector<std::unique_ptr<bench::v1::Echo::Stub>> echo_stubs;
  for (auto& channel : Channels(echo.target(), options.load.connections)) {
    echo_stubs.push_back(bench::v1::Echo::NewStub(channel));
  }
  std::vector<std::unique_ptr<tailor::v1::Tailor::Stub>> tailor_stubs;
  for (auto& channel : Channels(tailord.target(), options.load.connections)) {
    tailor_stubs.push_back(tailor::v1::Tailor::NewStub(channel));
  }
  const std::vector<int> cpus = AllowedCpus();
  report.serving.push_back(
      MeasureServing(absl::StrCat("unpinned (everyone on CPUs ", DescribeCpus(cpus), ")"),
                     options.load, echo_stubs, tailor_stubs, tailord.metrics_port(), requests));
  if (options.pinned && cpus.size() >= 2) {
    const std::vector<int> generator(cpus.begin(), cpus.begin() + cpus.size() / 2);
    const std::vector<int> server(cpus.begin() + cpus.size() / 2, cpus.end());
    for (const auto& [pid, set] :
         {std::pair{pid_t{0}, generator}, {echo.pid(), server}, {tailord.pid(), server}}) {
      if (absl::Status s = PinProcess(pid, set); !s.ok()) return s;
    }
    report.serving.push_back(
        MeasureServing(absl::StrCat("pinned (generator on CPUs ", DescribeCpus(generator),
                                    ", server on ", DescribeCpus(server), ")"),
                       options.load, echo_stubs, tailor_stubs, tailord.metrics_port(), requests));
    for (pid_t pid : {pid_t{0}, echo.pid(), tailord.pid()}) {
      if (absl::Status s = PinProcess(pid, cpus); !s.ok()) return s;
    }
  }
  if (absl::Status s = Stop(tailord); !s.ok()) return s;

  if (options.include_sync) {
    TailordProcess synced(
        options.tailord_binary,
        WithFlags({data_dir, "--sync", "--refresh_ms=0", "--shutdown_grace_ms=500"}, options));
    if (!synced.WaitUntilServing(600000)) {
      return absl::UnavailableError(absl::StrCat("tailord --sync did not start: ", synced.log()));
    }
    if (absl::StatusOr<double> s = WaitForCompactions(synced.metrics_port()); !s.ok()) {
      return s.status();
    }
    std::fprintf(stderr, "ingestion (wal+fsync):\n");
    if (absl::Status s =
            MeasureIngestion(synced.target(), synced.pid(), "wal+fsync", dir + "/raw-sync", options,
                             shape, simulated, classes, report);
        !s.ok()) {
      return s;
    }
  }
  return report;
}

std::string LoadMarkdown(const LoadReport& r) {
  const LoadBenchmarkOptions& o = r.options;
  std::string out = absl::StrFormat(
      "Population: %d established users (16 pairs each) and %d past the hand-over (128 pairs), "
      "%llu events streamed in %.0f s (%.0f events/s, knowledge refreshed every 30 s); "
      "restart to SERVING with the full refresh: %.1f s; reference users: %llu; d = %d. Each "
      "server's RocksDB is left to finish compacting before anything is measured (%.0f s after "
      "the restart).\n\n",
      o.established_users, o.veteran_users, static_cast<unsigned long long>(r.population.events),
      r.population.seconds,
      static_cast<double>(r.population.events) / std::max(1e-9, r.population.seconds),
      r.population.restart_seconds, static_cast<unsigned long long>(r.population.reference_users),
      r.dimension, r.population.compaction_wait_seconds);
  absl::StrAppendFormat(
      &out,
      "StreamFeedback ingestion, %d concurrent streams, durable acks, knowledge frozen "
      "(--refresh_ms=0), against raw RocksDB WriteBatches of the same %zu bytes per event from "
      "as many writers:\n\n"
      "| durability | users | events | tailord events/s | raw batches/s | ÷ raw | ÷ past the "
      "hand-over | tailord CPU µs per event |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
      o.ingest_streams, r.batch_bytes);
  for (const IngestionRow& i : r.ingestion) {
    double past = 0;
    for (const IngestionRow& j : r.ingestion) {
      if (j.durability == i.durability && absl::StartsWith(j.users, "past")) {
        past = j.tailor_events_per_second;
      }
    }
    absl::StrAppendFormat(
        &out, "| %s | %s | %llu | %.0f | %.0f | %.2f | %.2f | %.0f |\n", i.durability, i.users,
        static_cast<unsigned long long>(i.events), i.tailor_events_per_second,
        i.raw_batches_per_second, i.tailor_events_per_second / i.raw_batches_per_second,
        past > 0 ? i.tailor_events_per_second / past : 0, i.server_cpu_us_per_event);
  }
  absl::StrAppendFormat(
      &out,
      "\nRankResponses, %d candidates, users of every class; %d connections, %d calls in "
      "flight, %.0f s measured after %.0f s warm-up; the echo server runs in its own process.\n",
      kCandidates, o.load.connections, o.load.concurrency, absl::ToDoubleSeconds(o.load.duration),
      absl::ToDoubleSeconds(o.load.warmup));
  for (const ServingRun& s : r.serving) {
    absl::StrAppendFormat(&out,
                          "\n%s:\n\n| server | calls/s | p50 µs | p90 µs | p99 µs | p99.9 µs | "
                          "errors |\n|---|---:|---:|---:|---:|---:|---:|\n",
                          s.placement);
    const auto row = [&](const char* name, const LoadResult& l) {
      absl::StrAppendFormat(&out, "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %llu |\n", name,
                            l.throughput, l.p50_us, l.p90_us, l.p99_us, l.p999_us,
                            static_cast<unsigned long long>(l.errors));
    };
    row("echo (baseline)", s.echo);
    row("tailord", s.tailor);
    row("tailord at half its saturation (open loop)", s.tailor_half);
    absl::StrAppendFormat(&out,
                          "\nThroughput ratio tailord / echo: **%.2f** (target ≥ 0.8 pinned). p99 "
                          "ratio: %.2f. Server-side p99 at half saturation (tailord's "
                          "histogram): ≤ %.0f µs (target < 1,000 µs).\n",
                          s.tailor.throughput / s.echo.throughput, s.tailor.p99_us / s.echo.p99_us,
                          s.server_p99_half_us);
  }
  return out;
}

int RunEchoServerProcess(const std::string& address) {
  absl::StatusOr<std::unique_ptr<EchoServer>> echo = EchoServer::Start(address);
  if (!echo.ok()) {
    std::fprintf(stderr, "tailor-bench: %s\n", std::string(echo.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "echo serving grpc_port=%d metrics_port=0\n", (*echo)->port());
  std::fflush(stderr);
  for (;;) ::pause();  // until killed
}

}  // namespace tailor::bench

#include "bench/load_benchmark.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/echo_server.h"
#include "bench/scratch_dir.h"
#include "bench/tailord_process.h"
#include "client/tailor_client.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "proto/routing_header.h"
#include "storage/raw_write_baseline.h"
#include "tailor/bench/v1/echo.grpc.pb.h"
#include "tailor/storage/v1/records.pb.h"
#include "tailor/v1/tailor.grpc.pb.h"

namespace tailor::bench {
namespace {

constexpr int kCandidates = 8;
constexpr int kRequestPool = 512;

std::string UserId(int u) { return absl::StrCat("load-user-", u); }

// Raw scores around the schema's means, as a serving stack would send.
class CandidateMaker {
 public:
  CandidateMaker(const tailor::v1::Schema& schema, uint64_t seed) : schema_(schema), rng_(seed) {}
  tailor::v1::Candidate Make(const std::string& id) {
    tailor::v1::Candidate c;
    c.set_id(id);
    for (const tailor::v1::Feature& f : schema_.features()) {
      c.add_features(static_cast<float>(f.mean() + f.sd() * normal_(rng_)));
    }
    return c;
  }

 private:
  const tailor::v1::Schema& schema_;
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_;
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

}  // namespace

absl::StatusOr<LoadReport> RunLoadBenchmark(const LoadBenchmarkOptions& options) {
  LoadReport report;
  report.load = options.load;
  absl::StatusOr<std::unique_ptr<ScratchDir>> scratch = ScratchDir::Create();
  if (!scratch.ok()) return scratch.status();
  const std::string& dir = (*scratch)->path();

  TailordProcess tailord(options.tailord_binary,
                         {"--data_dir=" + dir + "/wal", "--shutdown_grace_ms=500"});
  if (!tailord.WaitUntilServing()) {
    return absl::UnavailableError(absl::StrCat("tailord did not start: ", tailord.log()));
  }
  client::ClientOptions client_options;
  client_options.target = tailord.target();
  absl::StatusOr<tailor::v1::ServerInfo> info =
      client::TailorClient(client_options).GetServerInfo();
  if (!info.ok()) return info.status();

  // The feedback of every warm user, dealt over the streams user by user.
  CandidateMaker maker(info->schema(), options.seed);
  std::vector<std::vector<tailor::v1::FeedbackEvent>> per_stream(
      static_cast<size_t>(options.ingest_streams));
  uint64_t events = 0;
  for (int u = 0; u < options.users; ++u) {
    for (int i = 0; i < options.pairs; ++i) {
      tailor::v1::FeedbackEvent e;
      e.set_event_id(absl::StrCat(UserId(u), "/", i));
      e.set_user_id(UserId(u));
      e.set_prompt_id(absl::StrCat("p", i));
      *e.mutable_chosen() = maker.Make("a");
      *e.mutable_rejected() = maker.Make("b");
      per_stream[static_cast<size_t>(u % options.ingest_streams)].push_back(std::move(e));
      ++events;
    }
  }
  const std::vector<storage::RawPut> shape =
      CommitShape(per_stream[0][0], info->schema().features_size());
  for (const storage::RawPut& put : shape) report.batch_bytes += put.key_bytes + put.value_bytes;
  const int batches_per_writer = static_cast<int>(events / per_stream.size());

  std::fprintf(stderr, "ingesting %llu events over %d streams (wal)...\n",
               static_cast<unsigned long long>(events), options.ingest_streams);
  absl::StatusOr<double> wal = Ingest(tailord.target(), per_stream);
  if (!wal.ok()) return wal.status();
  absl::StatusOr<storage::RawWriteResult> raw_wal = storage::MeasureRawBatchWrites(
      dir + "/raw-wal", shape, options.ingest_streams, batches_per_writer, false);
  if (!raw_wal.ok()) return raw_wal.status();
  report.ingestion.push_back({"wal", events, *wal, raw_wal->batches_per_second});

  if (options.include_sync) {
    std::fprintf(stderr, "ingesting again with --sync...\n");
    TailordProcess synced(options.tailord_binary,
                          {"--data_dir=" + dir + "/sync", "--sync", "--shutdown_grace_ms=500"});
    if (!synced.WaitUntilServing()) return absl::UnavailableError("tailord --sync did not start");
    absl::StatusOr<double> sync = Ingest(synced.target(), per_stream);
    if (!sync.ok()) return sync.status();
    absl::StatusOr<storage::RawWriteResult> raw_sync = storage::MeasureRawBatchWrites(
        dir + "/raw-sync", shape, options.ingest_streams, batches_per_writer, true);
    if (!raw_sync.ok()) return raw_sync.status();
    report.ingestion.push_back({"wal+fsync", events, *sync, raw_sync->batches_per_second});
  }

  // RankResponses for the warm users, and the same requests to the echo server.
  std::vector<tailor::v1::RankResponsesRequest> requests;
  std::mt19937_64 rng(options.seed + 1);
  for (int i = 0; i < kRequestPool; ++i) {
    tailor::v1::RankResponsesRequest request;
    request.set_user_id(UserId(static_cast<int>(rng() % static_cast<uint64_t>(options.users))));
    for (int c = 0; c < kCandidates; ++c)
      *request.add_candidates() = maker.Make(absl::StrCat("r", c));
    requests.push_back(std::move(request));
  }
  absl::StatusOr<std::unique_ptr<EchoServer>> echo = EchoServer::Start("127.0.0.1:0");
  if (!echo.ok()) return echo.status();
  std::vector<std::unique_ptr<bench::v1::Echo::Stub>> echo_stubs;
  for (auto& channel :
       Channels(absl::StrCat("127.0.0.1:", (*echo)->port()), options.load.connections)) {
    echo_stubs.push_back(bench::v1::Echo::NewStub(channel));
  }
  std::vector<std::unique_ptr<tailor::v1::Tailor::Stub>> tailor_stubs;
  for (auto& channel : Channels(tailord.target(), options.load.connections)) {
    tailor_stubs.push_back(tailor::v1::Tailor::NewStub(channel));
  }
  std::fprintf(stderr, "echo, closed loop...\n");
  report.echo = Drive(options.load, echo_stubs, requests);
  echo->reset();
  std::fprintf(stderr, "tailord RankResponses, closed loop...\n");
  report.tailor = Drive(options.load, tailor_stubs, requests);
  LoadOptions half = options.load;
  half.rate = report.tailor.throughput / 2;
  half.concurrency = std::max(half.concurrency, 256);
  std::fprintf(stderr, "tailord RankResponses, open loop at %.0f/s...\n", half.rate);
  const auto before = RankBuckets(FetchMetrics(tailord.metrics_port()));
  report.tailor_half = Drive(half, tailor_stubs, requests);
  report.server_p99_half_us =
      1e6 * HistogramP99(before, RankBuckets(FetchMetrics(tailord.metrics_port())));
  return report;
}

std::string LoadMarkdown(const LoadReport& r) {
  std::string out = absl::StrFormat(
      "RankResponses, 8 candidates, d = 10, warm users; %d connections, %d calls in flight, "
      "%.0f s measured after %.0f s warm-up.\n\n"
      "| server | calls/s | p50 µs | p90 µs | p99 µs | p99.9 µs | errors |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n",
      r.load.connections, r.load.concurrency, absl::ToDoubleSeconds(r.load.duration),
      absl::ToDoubleSeconds(r.load.warmup));
  const auto row = [&](const char* name, const LoadResult& l) {
    absl::StrAppendFormat(&out, "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %llu |\n", name,
                          l.throughput, l.p50_us, l.p90_us, l.p99_us, l.p999_us,
                          static_cast<unsigned long long>(l.errors));
  };
  row("echo (baseline)", r.echo);
  row("tailord", r.tailor);
  row("tailord at half its saturation (open loop)", r.tailor_half);
  absl::StrAppendFormat(&out,
                        "\nThroughput ratio tailord / echo: **%.2f** (target ≥ 0.8). p99 ratio: "
                        "%.2f. Server-side p99 at half saturation (tailord's histogram): ≤ %.0f µs "
                        "(target < 1,000 µs).\n\n",
                        r.tailor.throughput / r.echo.throughput, r.tailor.p99_us / r.echo.p99_us,
                        r.server_p99_half_us);
  absl::StrAppendFormat(&out,
                        "StreamFeedback ingestion with durable acks vs raw RocksDB WriteBatches of "
                        "the same %zu bytes per event, as many writers as streams:\n\n"
                        "| durability | events | tailord events/s | raw batches/s | ratio |\n"
                        "|---|---:|---:|---:|---:|\n",
                        r.batch_bytes);
  for (const IngestionRow& i : r.ingestion) {
    absl::StrAppendFormat(&out, "| %s | %llu | %.0f | %.0f | %.2f |\n", i.durability,
                          static_cast<unsigned long long>(i.events), i.tailor_events_per_second,
                          i.raw_batches_per_second,
                          i.tailor_events_per_second / i.raw_batches_per_second);
  }
  return out;
}

}  // namespace tailor::bench

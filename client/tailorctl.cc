// tailorctl: the command-line client for tailord. Human-readable output by default, --json
// for scripts; the exit code is the gRPC status code of the failing call (0 = OK), or 64 for
// a usage error.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cluster_commands.h"
#include "client/feedback_csv.h"
#include "client/tailor_client.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

ABSL_FLAG(std::string, target, "localhost:50051", "tailord address (gRPC target)");
ABSL_FLAG(std::vector<std::string>, all_shards, {},
          "health, info, services, backup: run against each of these shard addresses (not a "
          "router, which picks one shard per user), each answer headed by the shard's name");
ABSL_FLAG(bool, json, false, "print machine-readable JSON");
ABSL_FLAG(int32_t, deadline_ms, 5000, "deadline of each call, milliseconds");
ABSL_FLAG(bool, explore, false, "rank: Thompson sampling instead of the posterior mean");
ABSL_FLAG(uint32_t, top_k, 0, "rank: return only the best N (0 = all)");
ABSL_FLAG(std::string, event, "", "feedback: one FeedbackEvent as JSON");
ABSL_FLAG(std::string, token_file, "",
          "file holding the bearer token (default: the TAILOR_TOKEN environment variable)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "TLS: PEM CA of the server's certificate (enables TLS); 'system' = system roots");
ABSL_FLAG(std::string, tls_cert_file, "", "mutual TLS: this client's PEM certificate chain");
ABSL_FLAG(std::string, tls_key_file, "", "mutual TLS: this client's PEM private key");

ABSL_FLAG(bool, route_to_owner, true,
          "cluster mode: call each user's owning shard directly, by the partition map from "
          "GetServerInfo (false: every call to --target, which forwards)");
ABSL_FLAG(std::string, format, "nginx", "cluster router-config: nginx or envoy");
ABSL_FLAG(std::string, listen, "50051", "cluster router-config: the router's PORT or HOST:PORT");
ABSL_FLAG(std::string, nats, "nats://127.0.0.1:4222",
          "cluster commands: NATS servers of the cluster (comma-separated URLs)");
ABSL_FLAG(std::string, nats_ca_file, "",
          "cluster commands: PEM CA bundle that signed the NATS servers' certificates (TLS)");
ABSL_FLAG(std::string, nats_cert_file, "",
          "cluster commands: PEM client certificate for NATS servers that verify clients");
ABSL_FLAG(std::string, nats_key_file, "", "cluster commands: PEM key for --nats_cert_file");
ABSL_FLAG(std::string, nats_tls_hostname, "",
          "cluster commands: the host name the NATS servers' certificates must name");
ABSL_FLAG(int32_t, partitions, 64, "cluster commands: partitions of the log, before any map");
ABSL_FLAG(int32_t, replicas, 3, "cluster commands: replicas of the KV bucket if it is created");
ABSL_FLAG(int32_t, wait_seconds, 120, "cluster wait: how long to wait for moves to finish");

namespace {

constexpr int kUsageError = 64;

absl::StatusOr<std::string> ReadWholeFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  if (!(in && text << in.rdbuf())) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  }
  return text.str();
}

// --token_file / TAILOR_TOKEN and the --tls_* flags into the client options. The token comes
// from a file or the environment, never the command line, where `ps` would show it.
absl::Status ApplySecurityFlags(tailor::client::ClientOptions& options) {
  if (const std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = ReadWholeFile("token_file", path);
    if (!token.ok()) return token.status();
    options.bearer_token = std::string(absl::StripAsciiWhitespace(*token));
  } else if (const char* env = std::getenv("TAILOR_TOKEN"); env != nullptr) {
    options.bearer_token = std::string(absl::StripAsciiWhitespace(env));
  }
  const std::string ca = absl::GetFlag(FLAGS_tls_ca_file);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert_file);
  const std::string key = absl::GetFlag(FLAGS_tls_key_file);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file, --tls_key_file: give both or neither");
  }
  if (ca.empty() && cert.empty()) return absl::OkStatus();
  tailor::client::ClientOptions::Tls tls;
  if (!ca.empty() && ca != "system") {
    absl::StatusOr<std::string> pem = ReadWholeFile("tls_ca_file", ca);
    if (!pem.ok()) return pem.status();
    tls.root_ca_pem = *pem;
  }
  if (!cert.empty()) {
    absl::StatusOr<std::string> cert_pem = ReadWholeFile("tls_cert_file", cert);
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = ReadWholeFile("tls_key_file", key);
    if (!key_pem.ok()) return key_pem.status();
    tls.cert_pem = *cert_pem;
    tls.key_pem = *key_pem;
  }
  options.tls = std::move(tls);
  return absl::OkStatus();
}
constexpr char kUsage[] =
    R"(tailorctl [--target=host:port | --all_shards=a:p,b:p,...] [--json] COMMAND
commands:
  health                      serving status (exit 0 only when SERVING)
  info                        schema, limits, counts, version and the shard that answered
  services                    gRPC services listed by server reflection
  rank USER CANDIDATES.json   rank candidates for USER (--explore, --top_k=N)
  suggest USER CANDIDATES.json
                              the most informative pair to ask USER about
  feedback EVENTS.jsonl       stream feedback events (one JSON FeedbackEvent per line;
                              '-' reads stdin), with a progress bar on stderr
  feedback EVENTS.csv         the same from CSV: event_id,user_id,prompt_id,chosen_id,
                              rejected_id, then d chosen and d rejected feature columns
  feedback --event='{...}'    submit one event
  user get|export|delete USER profile, full export (JSON lines), or erasure
  route USER                  where USER's calls go: in cluster mode the owning shard's
                              address (by the partition map), else --target
  cluster status|rebalance|add-shard NAME|drain-shard NAME|remove-shard NAME|wait
                              cluster mode's partition map, read and changed in NATS
                              (--nats=URL; --partitions=N before the first rebalance;
                              TLS: --nats_ca_file [--nats_cert_file --nats_key_file])
  cluster router-config       an nginx (--format=nginx) or Envoy (--format=envoy) router
                              config generated from the map: calls carrying x-tailor-partition
                              go to the owner, the rest to any shard (which forwards)
  backup DIR                  online checkpoint into DIR on the server (absolute, new); names
                              the shard. Through a router admin calls are refused: address
                              a shard (--target) or every shard (--all_shards)
CANDIDATES.json is a JSON array: [{"id": "a", "features": [1.5, ...]}, ...]
Events use the proto's JSON names: {"event_id": "...", "user_id": "...", "chosen":
{"id": "...", "features": [...]}, "rejected": {...}})";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tailorctl: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return static_cast<int>(status.code());
}

std::string JsonOf(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

// `text` as a JSON string literal (quoted and escaped).
std::string JsonString(const std::string& text) {
  google::protobuf::Value value;
  value.set_string_value(text);
  return JsonOf(value);
}

void PrintJson(const google::protobuf::Message& message) {
  std::printf("%s\n", JsonOf(message).c_str());
}

int Health(tailor::client::TailorClient& client, bool json) {
  auto status = client.CheckHealth();
  if (!status.ok()) return Fail(status.status());
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(*status);
  std::printf(json ? "{\"status\":\"%s\"}\n" : "%s\n", name.c_str());
  return *status == grpc::health::v1::HealthCheckResponse::SERVING
             ? 0
             : static_cast<int>(absl::StatusCode::kUnavailable);
}

int Info(tailor::client::TailorClient& client, bool json) {
  auto info = client.GetServerInfo();
  if (!info.ok()) return Fail(info.status());
  if (json) {
    PrintJson(*info);
    return 0;
  }
  std::printf("tailord %s  shard=%s  durability=%s\n", info->version().c_str(),
              info->shard().c_str(), info->durability().c_str());
  std::printf("users=%llu established=%llu feedback_events=%llu\n",
              static_cast<unsigned long long>(info->users()),
              static_cast<unsigned long long>(info->established_users()),
              static_cast<unsigned long long>(info->feedback_events()));
  std::printf("limits: max_candidates=%u max_id_bytes=%u max_message_bytes=%u\n",
              info->limits().max_candidates(), info->limits().max_id_bytes(),
              info->limits().max_message_bytes());
  std::printf("knowledge: group '%s', version %llu, %llu reference users, %llu population users\n",
              info->knowledge().group().c_str(),
              static_cast<unsigned long long>(info->knowledge().version()),
              static_cast<unsigned long long>(info->knowledge().reference_users()),
              static_cast<unsigned long long>(info->knowledge().population_users()));
  std::printf("schema %s, version %u (%d features):\n", info->schema().fingerprint().c_str(),
              std::max<uint32_t>(1, info->schema().version()), info->schema().features_size());
  for (const auto& feature : info->schema().features()) {
    std::printf("  %-24s mean=%-10.4g sd=%.4g\n", feature.name().c_str(), feature.mean(),
                feature.sd());
  }
  return 0;
}

absl::Status ParseJson(const std::string& json, google::protobuf::Message& message) {
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bad JSON: ", status.message().as_string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::stringstream text;
  if (path == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream file(path);
    if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", path));
    text << file.rdbuf();
  }
  return text.str();
}

// Candidates file (a JSON array) wrapped into the request's own JSON form.
template <typename Request>
absl::StatusOr<Request> CandidatesRequest(const std::string& user, const std::string& path) {
  absl::StatusOr<std::string> candidates = ReadFile(path);
  if (!candidates.ok()) return candidates.status();
  Request request;
  if (absl::Status s = ParseJson(absl::StrCat("{\"candidates\":", *candidates, "}"), request);
      !s.ok()) {
    return s;
  }
  request.set_user_id(user);
  return request;
}

const char* SourceName(tailor::v1::KnowledgeSource source) {
  switch (source) {
    case tailor::v1::KNOWLEDGE_SOURCE_PERSONAL:
      return "personal";
    case tailor::v1::KNOWLEDGE_SOURCE_NEIGHBOURS:
      return "neighbours";
    case tailor::v1::KNOWLEDGE_SOURCE_POPULATION:
      return "population";
    default:
      return "unspecified";
  }
}

int Rank(tailor::client::TailorClient& client, bool json, const std::string& user,
         const std::string& path) {
  auto request = CandidatesRequest<tailor::v1::RankResponsesRequest>(user, path);
  if (!request.ok()) return Fail(request.status());
  request->mutable_options()->set_explore(absl::GetFlag(FLAGS_explore));
  request->mutable_options()->set_top_k(absl::GetFlag(FLAGS_top_k));
  auto response = client.Rank(*request);
  if (!response.ok()) return Fail(response.status());
  if (json) {
    PrintJson(*response);
    return 0;
  }
  std::printf("user %s: %llu feedback events, served from %s\n", user.c_str(),
              static_cast<unsigned long long>(response->user_feedback_count()),
              SourceName(response->knowledge_source()));
  std::printf("%4s  %-24s %10s %8s\n", "rank", "id", "score", "P(best)");
  for (int i = 0; i < response->ranked_size(); ++i) {
    const auto& r = response->ranked(i);
    std::printf("%4d  %-24s %10.4f %8.3f\n", i + 1, r.id().c_str(), r.score(),
                r.probability_best());
  }
  return 0;
}

int Suggest(tailor::client::TailorClient& client, bool json, const std::string& user,
            const std::string& path) {
  auto request = CandidatesRequest<tailor::v1::SuggestComparisonRequest>(user, path);
  if (!request.ok()) return Fail(request.status());
  auto response = client.Suggest(*request);
  if (!response.ok()) return Fail(response.status());
  if (json) {
    PrintJson(*response);
    return 0;
  }
  std::printf("ask %s: %s vs %s  (P(first preferred)=%.3f, %.3f bits)\n", user.c_str(),
              response->first_id().c_str(), response->second_id().c_str(),
              response->probability_first_preferred(), response->expected_information_bits());
  return 0;
}

absl::Status ParseJsonLines(const std::string& text, const std::string& path,
                            std::vector<tailor::v1::FeedbackEvent>& events) {
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (absl::Status s = ParseJson(std::string(line), events.emplace_back()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_number, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

int Feedback(tailor::client::TailorClient& client, bool json, const std::string& path) {
  std::vector<tailor::v1::FeedbackEvent> events;
  if (const std::string one = absl::GetFlag(FLAGS_event); !one.empty()) {
    tailor::v1::FeedbackEvent event;
    if (absl::Status s = ParseJson(one, event); !s.ok()) return Fail(s);
    auto ack = client.SubmitFeedback(event);
    if (!ack.ok()) return Fail(ack.status());
    if (json) {
      PrintJson(*ack);
    } else {
      std::printf("%s: %s, user now has %llu events, predicted P(chosen)=%.3f\n",
                  ack->event_id().c_str(),
                  tailor::v1::FeedbackAck::Outcome_Name(ack->outcome()).c_str(),
                  static_cast<unsigned long long>(ack->user_feedback_count()),
                  ack->predicted_chosen_probability());
    }
    return 0;
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return Fail(text.status());
  absl::Status parsed = absl::EndsWith(path, ".csv")
                            ? tailor::client::ParseFeedbackCsv(*text, path, events)
                            : ParseJsonLines(*text, path, events);
  if (!parsed.ok()) return Fail(parsed);
  size_t done = 0;
  std::map<std::string, int> outcomes;
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  auto acks = client.StreamFeedback(events, [&](const tailor::v1::FeedbackAck& ack) {
    ++done;
    ++outcomes[tailor::v1::FeedbackAck::Outcome_Name(ack.outcome())];
    if (ack.outcome() == tailor::v1::FeedbackAck::OUTCOME_REJECTED) {
      std::fprintf(stderr, "%s%s: rejected: %s\n", tty ? "\r\033[K" : "", ack.event_id().c_str(),
                   ack.error().c_str());
    }
    if (tty && (done % 64 == 0 || done == events.size())) {
      const int width = 40;
      const int filled = static_cast<int>(width * done / std::max<size_t>(1, events.size()));
      std::fprintf(stderr, "\r[%s%s] %zu/%zu", std::string(filled, '#').c_str(),
                   std::string(width - filled, ' ').c_str(), done, events.size());
    }
  });
  if (tty) std::fprintf(stderr, "\n");
  if (!acks.ok()) return Fail(acks.status());
  if (json) {
    for (const auto& ack : *acks) std::printf("%s\n", JsonOf(ack).c_str());
  } else {
    std::printf("%zu events:", acks->size());
    for (const auto& [name, count] : outcomes) std::printf(" %s=%d", name.c_str(), count);
    std::printf("\n");
  }
  return outcomes.count("OUTCOME_REJECTED") > 0
             ? static_cast<int>(absl::StatusCode::kInvalidArgument)
             : 0;
}

int User(tailor::client::TailorClient& client, bool json, const std::string& verb,
         const std::string& user) {
  if (verb == "get") {
    auto profile = client.GetUser(user);
    if (!profile.ok()) return Fail(profile.status());
    if (json) {
      PrintJson(*profile);
      return 0;
    }
    std::printf("user %s: %llu feedback events, served from %s\n", user.c_str(),
                static_cast<unsigned long long>(profile->feedback_count()),
                SourceName(profile->knowledge_source()));
    for (int i = 0; i < profile->weight_mean_size(); ++i) {
      std::printf("  w[%d] = %+.4f +- %.4f\n", i, profile->weight_mean(i),
                  profile->weight_stddev(i));
    }
    return 0;
  }
  if (verb == "export") {
    auto items = client.ExportUser(user);
    if (!items.ok()) return Fail(items.status());
    for (const auto& item : *items) std::printf("%s\n", JsonOf(item).c_str());
    return 0;
  }
  if (verb == "delete") {
    auto deleted = client.DeleteUser(user);
    if (!deleted.ok()) return Fail(deleted.status());
    if (json) {
      PrintJson(*deleted);
    } else {
      std::printf("user %s: %s, %llu feedback events erased\n", user.c_str(),
                  deleted->existed() ? "deleted" : "did not exist",
                  static_cast<unsigned long long>(deleted->feedback_events_deleted()));
    }
    return 0;
  }
  std::fprintf(stderr, "tailorctl: user takes get, export or delete\n");
  return kUsageError;
}

int Backup(tailor::client::TailorClient& client, bool json, const std::string& directory) {
  auto response = client.CreateCheckpoint(directory);
  if (!response.ok()) return Fail(response.status());
  if (json) {
    PrintJson(*response);
  } else {
    std::printf(
        "checkpoint of shard %s written to %s on that shard (sequence %llu); restore with "
        "tailord --data_dir=%s there\n",
        response->shard().c_str(), response->directory().c_str(),
        static_cast<unsigned long long>(response->sequence_number()),
        response->directory().c_str());
  }
  return 0;
}

int Services(tailor::client::TailorClient& client, bool json) {
  auto names = client.ListServices();
  if (!names.ok()) return Fail(names.status());
  if (json) {
    std::printf("[\"%s\"]\n", absl::StrJoin(*names, "\",\"").c_str());
  } else {
    for (const std::string& name : *names) std::printf("%s\n", name.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return kUsageError;
  }
  tailor::client::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.deadline = absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms));
  options.route_to_owner = absl::GetFlag(FLAGS_route_to_owner);
  if (absl::Status security = ApplySecurityFlags(options); !security.ok()) {
    std::fprintf(stderr, "tailorctl: %s\n", std::string(security.message()).c_str());
    return kUsageError;
  }
  const bool json = absl::GetFlag(FLAGS_json);
  const std::string command = args[1];
  if (command == "cluster") {
    tailor::client::ClusterFlags flags;
    flags.nats = absl::GetFlag(FLAGS_nats);
    flags.nats_tls = {absl::GetFlag(FLAGS_nats_ca_file), absl::GetFlag(FLAGS_nats_cert_file),
                      absl::GetFlag(FLAGS_nats_key_file), absl::GetFlag(FLAGS_nats_tls_hostname)};
    flags.partitions = absl::GetFlag(FLAGS_partitions);
    flags.replicas = absl::GetFlag(FLAGS_replicas);
    flags.wait_seconds = absl::GetFlag(FLAGS_wait_seconds);
    flags.json = json;
    flags.format = absl::GetFlag(FLAGS_format);
    flags.listen = absl::GetFlag(FLAGS_listen);
    return tailor::client::ClusterCommand({args.begin() + 2, args.end()}, flags);
  }
  auto arg = [&](size_t i) { return args.size() > i ? std::string(args[i]) : std::string(); };
  // Server-wide commands: one server, or each shard of --all_shards in turn (a router would
  // send each to a shard of its own choosing).
  auto server_wide = [&](tailor::client::TailorClient& client) -> std::optional<int> {
    if (command == "health") return Health(client, json);
    if (command == "info") return Info(client, json);
    if (command == "services") return Services(client, json);
    if (command == "backup" && args.size() == 3) return Backup(client, json, arg(2));
    return std::nullopt;
  };
  const std::vector<std::string> shards = absl::GetFlag(FLAGS_all_shards);
  if (!shards.empty()) {
    int worst = 0;
    for (const std::string& shard : shards) {
      options.target = shard;
      tailor::client::TailorClient client(options);
      if (!json) std::printf("== %s\n", shard.c_str());
      std::fflush(stdout);
      const std::optional<int> code = server_wide(client);
      if (!code.has_value()) {
        std::fprintf(stderr, "tailorctl: --all_shards takes health, info, services or backup\n");
        return kUsageError;
      }
      if (*code != 0 && worst == 0) worst = *code;
    }
    return worst;
  }
  tailor::client::TailorClient client(options);
  if (std::optional<int> code = server_wide(client)) return *code;
  if (command == "rank" && args.size() == 4) return Rank(client, json, arg(2), arg(3));
  if (command == "suggest" && args.size() == 4) return Suggest(client, json, arg(2), arg(3));
  if (command == "feedback" && (args.size() == 3 || !absl::GetFlag(FLAGS_event).empty())) {
    return Feedback(client, json, arg(2));
  }
  if (command == "user" && args.size() == 4) return User(client, json, arg(2), arg(3));
  if (command == "route" && args.size() == 3) {
    const std::string address = client.AddressFor(arg(2));
    if (json) {
      std::printf("{\"user_id\": %s, \"address\": %s}\n", JsonString(arg(2)).c_str(),
                  JsonString(address).c_str());
    } else {
      std::printf("%s\n", address.c_str());
    }
    return 0;
  }
  std::fprintf(stderr, "tailorctl: unknown command or wrong arguments: '%s'\n%s\n", command.c_str(),
               kUsage);
  return kUsageError;
}

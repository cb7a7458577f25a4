// tailorctl: the command-line client for tailord. Human-readable output by default, --json
// for scripts; the exit code is the gRPC status code of the failing call (0 = OK), or 64 for
// a usage error.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/tailor_client.h"
#include "google/protobuf/util/json_util.h"

ABSL_FLAG(std::string, target, "localhost:50051", "tailord address (gRPC target)");
ABSL_FLAG(bool, json, false, "print machine-readable JSON");
ABSL_FLAG(int32_t, deadline_ms, 5000, "deadline of each call, milliseconds");

namespace {

constexpr int kUsageError = 64;
constexpr char kUsage[] = R"(tailorctl [--target=host:port] [--json] COMMAND
commands:
  health      serving status of the server (exit 0 only when SERVING)
  info        schema, limits, counts and version
  services    gRPC services listed by server reflection)";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tailorctl: %s: %s\n", absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return static_cast<int>(status.code());
}

void PrintJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  std::printf("%s\n", json.c_str());
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
  std::printf("tailord %s  durability=%s\n", info->version().c_str(), info->durability().c_str());
  std::printf("users=%llu established=%llu feedback_events=%llu\n",
              static_cast<unsigned long long>(info->users()),
              static_cast<unsigned long long>(info->established_users()),
              static_cast<unsigned long long>(info->feedback_events()));
  std::printf("limits: max_candidates=%u max_id_bytes=%u max_message_bytes=%u\n",
              info->limits().max_candidates(), info->limits().max_id_bytes(),
              info->limits().max_message_bytes());
  std::printf("schema %s (%d features):\n", info->schema().fingerprint().c_str(),
              info->schema().features_size());
  for (const auto& feature : info->schema().features()) {
    std::printf("  %-24s mean=%-10.4g sd=%.4g\n", feature.name().c_str(), feature.mean(),
                feature.sd());
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
  tailor::client::TailorClient client(options);
  const bool json = absl::GetFlag(FLAGS_json);
  const std::string command = args[1];
  if (command == "health") return Health(client, json);
  if (command == "info") return Info(client, json);
  if (command == "services") return Services(client, json);
  std::fprintf(stderr, "tailorctl: unknown command '%s'\n%s\n", command.c_str(), kUsage);
  return kUsageError;
}

// The real tailord binary, started as a child process on port 0 with a temp data dir:
// flag validation, data directories, health, reflection and graceful shutdown.
#include "bench/tailord_process.h"

#include <signal.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "client/tailor_client.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor {
namespace {

using bench::TailordProcess;
using ::testing::Contains;
using ::testing::HasSubstr;
using testing::TempDir;

using ServingStatus = grpc::health::v1::HealthCheckResponse;

client::TailorClient ClientFor(const TailordProcess& process) {
  client::ClientOptions options;
  options.target = process.target();
  return client::TailorClient(options);
}

struct BadFlagCase {
  const char* name;
  const char* flag;
  const char* message;
};

void PrintTo(const BadFlagCase& c, std::ostream* os) { *os << c.name; }

class BadFlagTest : public ::testing::TestWithParam<BadFlagCase> {};

TEST_P(BadFlagTest, ExitsNonZeroWithAOneLineReason) {
  TempDir dir;
  TailordProcess tailord(TAILORD_BINARY, {"--data_dir=" + dir.Sub("db"), GetParam().flag});
  EXPECT_FALSE(tailord.WaitUntilServing());
  std::optional<int> code = tailord.WaitForExit();
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_THAT(tailord.log(), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Flags, BadFlagTest,
    ::testing::Values(BadFlagCase{"UnknownFlag", "--no_such_flag=1", "no_such_flag"},
                      BadFlagCase{"NotANumber", "--max_candidates=many", "max_candidates"},
                      BadFlagCase{"OutOfRange", "--max_candidates=1",
                                  "--max_candidates: must be in 2..4096"},
                      BadFlagCase{"BadListen", "--listen=nowhere", "--listen: must be host:port"},
                      BadFlagCase{"MissingSchemaFile", "--schema=/nonexistent/schema.csv",
                                  "--schema: cannot read /nonexistent/schema.csv"}),
    [](const ::testing::TestParamInfo<BadFlagCase>& param) { return param.param.name; });

TEST(TailordProcessTest, UnusableDataDirExitsWithReason) {
  TempDir dir;
  TailordProcess tailord(TAILORD_BINARY, {"--data_dir=" + dir.Sub("missing/parent/db")});
  EXPECT_FALSE(tailord.WaitUntilServing());
  EXPECT_EQ(tailord.WaitForExit(), 1);
  EXPECT_THAT(tailord.log(), HasSubstr("opening data directory"));
}

TEST(TailordProcessTest, DataDirInUseByAnotherTailordIsRefused) {
  TempDir dir;
  TailordProcess first(TAILORD_BINARY, {"--data_dir=" + dir.Sub("db")});
  ASSERT_TRUE(first.WaitUntilServing()) << first.log();
  TailordProcess second(TAILORD_BINARY, {"--data_dir=" + dir.Sub("db")});
  EXPECT_FALSE(second.WaitUntilServing());
  EXPECT_EQ(second.WaitForExit(), 1);
  EXPECT_THAT(second.log(), HasSubstr("another tailord"));
}

TEST(TailordProcessTest, ServesHealthReflectionAndInfoOnEmptyThenExistingDataDir) {
  TempDir dir;
  for (int run = 0; run < 2; ++run) {
    SCOPED_TRACE(run == 0 ? "empty data dir" : "existing data dir");
    // gRPC's graceful shutdown waits up to the grace period for connected clients.
    TailordProcess tailord(TAILORD_BINARY,
                           {"--data_dir=" + dir.Sub("db"), "--shutdown_grace_ms=300"});
    ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
    client::TailorClient client = ClientFor(tailord);

    auto health = client.CheckHealth();
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(*health, ServingStatus::SERVING);

    auto services = client.ListServices();
    ASSERT_TRUE(services.ok()) << services.status();
    EXPECT_THAT(*services, Contains("tailor.v1.Tailor"));
    EXPECT_THAT(*services, Contains("tailor.v1.TailorAdmin"));
    EXPECT_THAT(*services, Contains("grpc.health.v1.Health"));

    auto info = client.GetServerInfo();
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->schema().features_size(), 10);
    EXPECT_EQ(info->schema().features(0).name(), "beaver_7b");
    EXPECT_EQ(info->limits().max_candidates(), 64u);
    EXPECT_EQ(info->durability(), "wal");

    tailord.Signal(SIGTERM);
    EXPECT_EQ(tailord.WaitForExit(), 0) << tailord.log();
    std::cerr << tailord.log();
  }
}

TEST(TailordProcessTest, RefusesADataDirMadeForAnotherSchema) {
  TempDir dir;
  {
    TailordProcess tailord(TAILORD_BINARY, {"--data_dir=" + dir.Sub("db")});
    ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
    tailord.Signal(SIGTERM);
    ASSERT_EQ(tailord.WaitForExit(), 0);
  }
  std::ofstream(dir.Sub("other.csv")) << "name,mean,sd\nhelpful,0,1\nconcise,0,1\n";
  TailordProcess tailord(TAILORD_BINARY,
                         {"--data_dir=" + dir.Sub("db"), "--schema=" + dir.Sub("other.csv")});
  EXPECT_FALSE(tailord.WaitUntilServing());
  EXPECT_EQ(tailord.WaitForExit(), 1);
  EXPECT_THAT(tailord.log(), HasSubstr("holds data for schema"));
  EXPECT_THAT(tailord.log(), HasSubstr("beaver_7b"));
  EXPECT_THAT(tailord.log(), HasSubstr("--evolve_schema"));
}

TEST(TailordProcessTest, EvolveSchemaMakesTheNewSchemaTheDirectorysNextVersion) {
  TempDir dir;
  std::ofstream(dir.Sub("v1.csv")) << "name,mean,sd\nhelpful,0,1\nconcise,0,1\n";
  std::ofstream(dir.Sub("v2.csv"))
      << "name,mean,sd,renamed_from\nhelpfulness,0,1,helpful\nconcise,0,2,\nsafe,0,1,\n";
  v1::FeedbackEvent event;
  {
    TailordProcess tailord(TAILORD_BINARY,
                           {"--data_dir=" + dir.Sub("db"), "--schema=" + dir.Sub("v1.csv")});
    ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
    auto client = ClientFor(tailord);
    event.set_event_id("e1");
    event.set_user_id("ann");
    event.mutable_chosen()->set_id("a");
    event.mutable_chosen()->add_features(1);
    event.mutable_chosen()->add_features(0);
    event.mutable_rejected()->set_id("b");
    event.mutable_rejected()->add_features(0);
    event.mutable_rejected()->add_features(1);
    auto ack = client.SubmitFeedback(event);
    ASSERT_TRUE(ack.ok()) << ack.status();
    EXPECT_EQ(client.GetServerInfo()->schema().version(), 1u);
    tailord.Signal(SIGTERM);
    ASSERT_EQ(tailord.WaitForExit(), 0);
  }
  TailordProcess tailord(TAILORD_BINARY, {"--data_dir=" + dir.Sub("db"),
                                          "--schema=" + dir.Sub("v2.csv"), "--evolve_schema"});
  ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
  EXPECT_THAT(tailord.log(),
              HasSubstr("schema version 2: added safe; renamed helpful to helpfulness; "
                        "renormalised concise"));
  auto client = ClientFor(tailord);
  auto info = client.GetServerInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->schema().version(), 2u);
  EXPECT_EQ(info->schema().features_size(), 3);
  // ann's event is kept as recorded, under version 1.
  auto exported = client.ExportUser("ann");
  ASSERT_TRUE(exported.ok()) << exported.status();
  ASSERT_EQ(exported->size(), 2u);
  EXPECT_EQ((*exported)[1].feedback().schema_version(), 1u);
  EXPECT_EQ((*exported)[1].feedback().event().chosen().features_size(), 2);
  EXPECT_EQ((*exported)[0].profile().weight_mean_size(), 3);
  // Candidates now carry the new schema's features: the old width is refused, nothing stored.
  event.set_event_id("e2");
  auto old_width = client.SubmitFeedback(event);
  EXPECT_EQ(old_width.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(old_width.status().message(), HasSubstr("chosen.features: has 2 values"));
  v1::RankResponsesRequest rank;
  rank.set_user_id("ann");
  rank.add_candidates()->CopyFrom(event.chosen());
  rank.add_candidates()->CopyFrom(event.rejected());
  EXPECT_EQ(client.Rank(rank).status().code(), absl::StatusCode::kInvalidArgument);
  exported = client.ExportUser("ann");
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ(exported->size(), 2u);
  tailord.Signal(SIGTERM);
  EXPECT_EQ(tailord.WaitForExit(), 0);
}

TEST(TailordProcessTest, CustomSchemaIsServed) {
  TempDir dir;
  std::ofstream(dir.Sub("s.csv")) << "name,mean,sd\nhelpful,0,1\nconcise,2,3\n";
  TailordProcess tailord(TAILORD_BINARY, {"--data_dir=" + dir.Sub("db"),
                                          "--schema=" + dir.Sub("s.csv"), "--sync=true"});
  ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
  auto info = ClientFor(tailord).GetServerInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->schema().features_size(), 2);
  EXPECT_EQ(info->schema().features(1).name(), "concise");
  EXPECT_EQ(info->schema().features(1).sd(), 3);
  EXPECT_EQ(info->durability(), "wal+fsync");
}

TEST(TailordProcessTest, SigtermWithAConnectedClientExitsCleanly) {
  TempDir dir;
  TailordProcess tailord(TAILORD_BINARY,
                         {"--data_dir=" + dir.Sub("db"), "--shutdown_grace_ms=2000"});
  ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
  client::TailorClient client = ClientFor(tailord);

  // A long-lived call in flight: a health Watch stream.
  auto stub = grpc::health::v1::Health::NewStub(client.channel());
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  auto watch = stub->Watch(&context, request);
  grpc::health::v1::HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), ServingStatus::SERVING);

  tailord.Signal(SIGTERM);
  // The server announces NOT_SERVING before it stops, so load balancers drain it.
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), ServingStatus::NOT_SERVING);
  EXPECT_EQ(tailord.WaitForExit(), 0) << tailord.log();
  EXPECT_THAT(tailord.log(), HasSubstr("stopped cleanly"));
  while (watch->Read(&update)) {
  }
  (void)watch->Finish();
}

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs tailorctl with `args` (a shell-quoted string), capturing stdout and stderr.
CommandResult Tailorctl(const TailordProcess& tailord, const std::string& args) {
  const std::string command =
      std::string(TAILORCTL_BINARY) + " --target=" + tailord.target() + " " + args + " 2>&1";
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST(TailorctlTest, CommandsWorkAndExitCodesFollowTheGrpcStatus) {
  TempDir dir;
  TailordProcess tailord(TAILORD_BINARY,
                         {"--data_dir=" + dir.Sub("db"), "--shutdown_grace_ms=300"});
  ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
  std::ofstream(dir.Sub("c.json")) << R"([{"id":"a","features":[9,4,1,1,0,0,0,0,0,0]},)"
                                   << R"({"id":"b","features":[1,5,3,2,1,1,1,1,1,1]}])";
  {
    std::ofstream events(dir.Sub("e.jsonl"));
    for (int i = 0; i < 5; ++i) {
      events << R"({"event_id":"e)" << i << R"(","user_id":"bob","chosen":{"id":"a",)"
             << R"("features":[9,4,1,1,0,0,0,0,0,0]},"rejected":{"id":"b","features":)"
             << R"([1,5,3,2,1,1,1,1,1,)" << i << "]}}\n";
    }
  }

  const CommandResult info = Tailorctl(tailord, "info");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_THAT(info.output, HasSubstr(", version 1 (10 features):"));
  EXPECT_THAT(info.output, HasSubstr("knowledge: group '', version"));

  CommandResult rank = Tailorctl(tailord, "rank bob " + dir.Sub("c.json"));
  EXPECT_EQ(rank.exit_code, 0) << rank.output;
  EXPECT_THAT(rank.output, HasSubstr("served from population"));

  CommandResult feedback = Tailorctl(tailord, "feedback " + dir.Sub("e.jsonl"));
  EXPECT_EQ(feedback.exit_code, 0) << feedback.output;
  EXPECT_THAT(feedback.output, HasSubstr("5 events: OUTCOME_APPLIED=5"));
  CommandResult again = Tailorctl(tailord, "feedback " + dir.Sub("e.jsonl"));
  EXPECT_THAT(again.output, HasSubstr("OUTCOME_DUPLICATE=5"));

  {
    std::ofstream csv(dir.Sub("e.csv"));
    csv << "event_id,user_id,prompt_id,chosen_id,rejected_id";
    for (int i = 0; i < 20; ++i) csv << (i < 10 ? ",c" : ",r") << i % 10;
    csv << "\n";
    for (int n = 0; n < 3; ++n) {
      csv << "csv" << n << ",carol,p" << n << ",a,b";
      for (int i = 0; i < 20; ++i) csv << "," << (i < 10 ? 5 + n : i % 10);
      csv << "\n";
    }
  }
  CommandResult csv = Tailorctl(tailord, "feedback " + dir.Sub("e.csv"));
  EXPECT_EQ(csv.exit_code, 0) << csv.output;
  EXPECT_THAT(csv.output, HasSubstr("3 events: OUTCOME_APPLIED=3"));
  std::ofstream(dir.Sub("bad.csv")) << "event_id,user_id\nx,y\n";
  CommandResult bad_csv = Tailorctl(tailord, "feedback " + dir.Sub("bad.csv"));
  EXPECT_EQ(bad_csv.exit_code, 3) << bad_csv.output;
  EXPECT_THAT(bad_csv.output, HasSubstr("header must be event_id,user_id"));

  CommandResult get = Tailorctl(tailord, "--json user get bob");
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_THAT(get.output, HasSubstr(R"("feedback_count":"5")"));

  CommandResult bad = Tailorctl(tailord, "rank '' " + dir.Sub("c.json"));
  EXPECT_EQ(bad.exit_code, 3) << bad.output;  // INVALID_ARGUMENT
  EXPECT_THAT(bad.output, HasSubstr("user_id: must not be empty"));

  CommandResult backup = Tailorctl(tailord, "backup " + dir.Sub("backup"));
  EXPECT_EQ(backup.exit_code, 0) << backup.output;
  CommandResult deleted = Tailorctl(tailord, "user delete bob");
  EXPECT_THAT(deleted.output, HasSubstr("5 feedback events erased"));
  EXPECT_EQ(Tailorctl(tailord, "user get bob").exit_code, 5);  // NOT_FOUND
  EXPECT_EQ(Tailorctl(tailord, "frobnicate").exit_code, 64);   // usage

  // The checkpoint taken before the deletion still holds bob.
  TailordProcess restored(TAILORD_BINARY, {"--data_dir=" + dir.Sub("backup")});
  ASSERT_TRUE(restored.WaitUntilServing()) << restored.log();
  EXPECT_EQ(Tailorctl(restored, "user get bob").exit_code, 0);
}

TEST(TailorctlTest, TokensComeFromTheEnvironmentOrAFileAndHealthNeedsNone) {
  TempDir dir;
  std::ofstream(dir.Sub("tokens")) << "acme acme-token-0000000001\n";
  std::ofstream(dir.Sub("token")) << "acme-token-0000000001\n";
  TailordProcess tailord(TAILORD_BINARY,
                         {"--data_dir=" + dir.Sub("db"), "--auth_tokens_file=" + dir.Sub("tokens"),
                          "--shutdown_grace_ms=300"});
  ASSERT_TRUE(tailord.WaitUntilServing()) << tailord.log();
  EXPECT_EQ(Tailorctl(tailord, "health").exit_code, 0);  // probes need no token
  const CommandResult refused = Tailorctl(tailord, "info");
  EXPECT_EQ(refused.exit_code, 16) << refused.output;  // UNAUTHENTICATED
  EXPECT_THAT(refused.output, HasSubstr("authorization: missing"));
  EXPECT_EQ(Tailorctl(tailord, "--token_file=" + dir.Sub("token") + " info").exit_code, 0);
  const std::string env = "TAILOR_TOKEN=acme-token-0000000001 ";
  const std::string command =
      env + TAILORCTL_BINARY + " --target=" + tailord.target() + " info >/dev/null 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0);
  // SIGHUP reloads the file: the token withdrawn, the same command is refused.
  std::ofstream(dir.Sub("tokens")) << "acme acme-token-0000000002\n";
  tailord.Signal(SIGHUP);
  bool refused_after_reload = false;
  for (int i = 0; i < 50 && !refused_after_reload; ++i) {
    refused_after_reload =
        Tailorctl(tailord, "--token_file=" + dir.Sub("token") + " info").exit_code == 16;
    if (!refused_after_reload) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(refused_after_reload) << tailord.log();
}

TEST(TailorctlTest, UnreachableServerIsUnavailable) {
  const std::string command = std::string(TAILORCTL_BINARY) +
                              " --target=127.0.0.1:1 --deadline_ms=300 health > /dev/null 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 14);  // UNAVAILABLE
}

}  // namespace
}  // namespace tailor

// The real tailord binary, started as a child process on port 0 with a temp data dir:
// flag validation, data directories, health, reflection and graceful shutdown.
#include "tests/testing/tailord_process.h"

#include <signal.h>

#include <fstream>
#include <thread>

#include "client/tailor_client.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace tailor {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using testing::TailordProcess;
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

}  // namespace
}  // namespace tailor

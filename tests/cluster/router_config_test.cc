// Router configs generated from a partition map (client/router_config.h): each owned
// partition's header value goes to its owner, everything else to any shard, and Debian's
// nginx accepts the generated file (`nginx -t`). The partition hash itself is pinned here, so
// that the Python client's copy (client/python/tailor_client) is held to the same values.
#include "client/router_config.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/partition_routing.h"
#include "tests/testing/temp_dir.h"

namespace tailor::client {
namespace {

RouterConfigInput ThreeShards() {
  RouterConfigInput input;
  input.map_revision = 7;
  const char* owners[] = {"a", "b", "c", "a", "", "b"};
  for (const char* owner : owners) input.map.add_assignments()->set_owner(owner);
  input.shards["a"].set_address("127.0.0.1:7001");
  input.shards["b"].set_address("127.0.0.1:7002");
  input.shards["c"].set_address("[::1]:7003");
  input.listen = "127.0.0.1:7000";
  return input;
}

TEST(PartitionHashTest, PinnedValues) {
  // The same numbers are asserted by client/python/tests/test_client.py.
  EXPECT_EQ(PartitionOf("alice", 64), 1);
  EXPECT_EQ(PartitionOf("acme/alice", 64), 37);
  EXPECT_EQ(PartitionOf("user-12345", 64), 57);
  EXPECT_EQ(PartitionOf("\xc3\xa9t\xc3\xa9", 1000), 677);
  EXPECT_EQ(StorageIdOf("acme", "alice"), "acme/alice");
  EXPECT_EQ(StorageIdOf("", "alice"), "alice");
}

TEST(RouterConfigTest, NginxSendsEachOwnedPartitionToItsOwner) {
  absl::StatusOr<std::string> config = RouterConfig(ThreeShards(), "nginx");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(absl::StrContains(*config, "partition map revision 7"));
  EXPECT_TRUE(absl::StrContains(*config, "default tailor_any_shard;"));
  EXPECT_TRUE(absl::StrContains(*config, "\"0\" tailor_shard_0;"));
  EXPECT_TRUE(absl::StrContains(*config, "\"3\" tailor_shard_0;"));
  EXPECT_TRUE(absl::StrContains(*config, "\"1\" tailor_shard_1;"));
  EXPECT_TRUE(absl::StrContains(*config, "\"5\" tailor_shard_1;"));
  EXPECT_TRUE(absl::StrContains(*config, "\"2\" tailor_shard_2;"));
  EXPECT_FALSE(absl::StrContains(*config, "\"4\""));  // unowned: any shard
  EXPECT_TRUE(absl::StrContains(*config, "server [::1]:7003;"));
  EXPECT_TRUE(absl::StrContains(*config, "listen 127.0.0.1:7000 http2;"));
  EXPECT_TRUE(absl::StrContains(*config, "grpc_pass grpc://$tailor_owner;"));
}

TEST(RouterConfigTest, NginxAcceptsTheGeneratedConfig) {
  const char* nginx = "/usr/sbin/nginx";
  if (!std::ifstream(nginx)) GTEST_SKIP() << "nginx is not installed";
  testing::TempDir dir;
  absl::StatusOr<std::string> config = RouterConfig(ThreeShards(), "nginx");
  ASSERT_TRUE(config.ok()) << config.status();
  std::ofstream(dir.path() + "/tailor-cluster.conf") << *config;
  std::ofstream(dir.path() + "/nginx.conf")
      << "pid " << (dir.path() + "/nginx.pid") << ";\n"
      << "events { worker_connections 64; }\n"
      << "http { access_log off; include tailor-cluster.conf; }\n";
  const std::string command =
      absl::StrCat(nginx, " -q -t -e ", (dir.path() + "/error.log"), " -p ", dir.path(), " -c ",
                   (dir.path() + "/nginx.conf"), " 2>", (dir.path() + "/out"));
  EXPECT_EQ(std::system(command.c_str()), 0) << std::ifstream(dir.path() + "/out").rdbuf();
}

TEST(RouterConfigTest, EnvoyMatchesEachShardsPartitionsByHeader) {
  absl::StatusOr<std::string> config = RouterConfig(ThreeShards(), "envoy");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(absl::StrContains(*config, "regex: \"^(0|3)$\""));
  EXPECT_TRUE(absl::StrContains(*config, "regex: \"^(1|5)$\""));
  EXPECT_TRUE(absl::StrContains(*config, "regex: \"^(2)$\""));
  EXPECT_TRUE(absl::StrContains(*config, "route: {cluster: tailor_any_shard, timeout: 0s}"));
  EXPECT_TRUE(absl::StrContains(*config, "address: \"::1\", port_value: 7003"));
  EXPECT_TRUE(
      absl::StrContains(*config, "socket_address: {address: \"127.0.0.1\", port_value: 7000}"));
}

TEST(RouterConfigTest, RefusesWhatItCannotRoute) {
  RouterConfigInput input = ThreeShards();
  EXPECT_EQ(RouterConfig(input, "haproxy").status().code(), absl::StatusCode::kInvalidArgument);
  input.shards["a"].set_address("no-port");
  EXPECT_EQ(RouterConfig(input, "nginx").status().code(), absl::StatusCode::kInvalidArgument);
  input = ThreeShards();
  input.listen = "not-a-port";
  EXPECT_EQ(RouterConfig(input, "envoy").status().code(), absl::StatusCode::kInvalidArgument);
  input = ThreeShards();
  input.map_revision = 0;
  EXPECT_EQ(RouterConfig(input, "nginx").status().code(), absl::StatusCode::kFailedPrecondition);
  input = ThreeShards();
  input.shards.clear();
  EXPECT_EQ(RouterConfig(input, "nginx").status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tailor::client

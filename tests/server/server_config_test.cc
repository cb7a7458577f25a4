#include "server/server_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tailor::server {
namespace {

using ::testing::HasSubstr;

TEST(ServerConfigTest, DefaultsAreValid) { EXPECT_TRUE(ServerConfig().Validate().ok()); }

TEST(ServerConfigTest, ClusterModeServesTlsWithTheShardsCa) {
  ServerConfig config;
  config.cluster_nats = "nats://127.0.0.1:4222";
  config.tls_cert_file = "cert.pem";
  config.tls_key_file = "key.pem";
  config.cluster_tls_ca_file = "ca.pem";
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
  config.tls_client_ca_file = "ca.pem";  // and mutual TLS
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
  config.cluster_nats_ca_file = "nats-ca.pem";  // and TLS to NATS, with a client certificate
  config.cluster_nats_cert_file = "nats-cert.pem";
  config.cluster_nats_key_file = "nats-key.pem";
  config.cluster_nats_tls_hostname = "nats.internal";
  EXPECT_TRUE(config.Validate().ok()) << config.Validate();
}

TEST(ServerConfigTest, TenantsMayOptInToShareKnowledge) {
  ServerConfig config;
  config.auth_tokens_file = "tokens";
  config.share_knowledge = {"acme", "globex"};
  EXPECT_TRUE(config.Validate().ok());
  config.share_knowledge = {"*"};
  EXPECT_TRUE(config.Validate().ok());
}

struct BadConfigCase {
  const char* name;
  void (*mutate)(ServerConfig&);
  const char* message;
};

void PrintTo(const BadConfigCase& c, std::ostream* os) { *os << c.name; }

class BadConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(BadConfigTest, NamesTheFlagAndTheRule) {
  ServerConfig config;
  GetParam().mutate(config);
  absl::Status status = config.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Rules, BadConfigTest,
    ::testing::Values(
        BadConfigCase{"ListenWithoutPort", [](ServerConfig& c) { c.listen = "localhost"; },
                      "--listen: must be host:port"},
        BadConfigCase{"ListenPortTooLarge", [](ServerConfig& c) { c.listen = "0.0.0.0:70000"; },
                      "--listen: port must be a number in 0..65535"},
        BadConfigCase{"MetricsPortNotNumber",
                      [](ServerConfig& c) { c.metrics_listen = "0.0.0.0:http"; },
                      "--metrics_listen: port must be a number"},
        BadConfigCase{"EmptyDataDir", [](ServerConfig& c) { c.data_dir = ""; },
                      "--data_dir: must not be empty"},
        BadConfigCase{"TinyCache", [](ServerConfig& c) { c.block_cache_mb = 1; },
                      "--block_cache_mb: must be in 8.."},
        BadConfigCase{"OneCandidate", [](ServerConfig& c) { c.max_candidates = 1; },
                      "--max_candidates: must be in 2..4096"},
        BadConfigCase{"TinyMetadata", [](ServerConfig& c) { c.max_metadata_bytes = 100; },
                      "--max_metadata_bytes: must be in 1024..1048576"},
        BadConfigCase{"TinyMessages", [](ServerConfig& c) { c.max_message_bytes = 100; },
                      "--max_message_bytes: must be in"},
        BadConfigCase{"NoStreams", [](ServerConfig& c) { c.max_concurrent_streams = 0; },
                      "--max_concurrent_streams: must be in"},
        BadConfigCase{"NoStreamWindow", [](ServerConfig& c) { c.stream_window_events = 0; },
                      "--stream_window_events: must be in"},
        BadConfigCase{"NegativeGrace", [](ServerConfig& c) { c.shutdown_grace_ms = -1; },
                      "--shutdown_grace_ms: must be in"},
        BadConfigCase{"NegativeReferenceUsers", [](ServerConfig& c) { c.max_reference_users = -1; },
                      "--max_reference_users: must be in"},
        BadConfigCase{"NegativeExactScan", [](ServerConfig& c) { c.exact_scan_max_users = -5; },
                      "--exact_scan_max_users: must be in"},
        BadConfigCase{"NegativeBeliefCache", [](ServerConfig& c) { c.belief_cache_users = -1; },
                      "--belief_cache_users: must be in"},
        BadConfigCase{"EvolveSchemaInClusterMode",
                      [](ServerConfig& c) {
                        c.evolve_schema = true;
                        c.cluster_nats = "nats://127.0.0.1:4222";
                      },
                      "--evolve_schema: not in cluster mode"},
        BadConfigCase{"NegativeExchangeUsers",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.cluster_exchange_users = -1;
                      },
                      "--cluster_exchange_users: must be 0 or more"},
        BadConfigCase{"NegativeExchangeCalibrationUsers",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.cluster_exchange_calibration_users = -1;
                      },
                      "--cluster_exchange_calibration_users: must be 0 or more"},
        BadConfigCase{"ClusterTlsWithoutTheShardsCa",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.tls_cert_file = "cert.pem";
                        c.tls_key_file = "key.pem";
                      },
                      "--cluster_tls_ca_file: cluster mode with --tls_cert_file needs the CA"},
        BadConfigCase{"ShardsCaWithoutTls",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.cluster_tls_ca_file = "ca.pem";
                      },
                      "--cluster_tls_ca_file: needs --tls_cert_file and --tls_key_file"},
        BadConfigCase{"ShardsCaOnASingleNode",
                      [](ServerConfig& c) { c.cluster_tls_ca_file = "ca.pem"; },
                      "--cluster_tls_ca_file: only in cluster mode"},
        BadConfigCase{"NatsCertificateWithoutKey",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.cluster_nats_ca_file = "ca.pem";
                        c.cluster_nats_cert_file = "cert.pem";
                      },
                      "--cluster_nats_cert_file, --cluster_nats_key_file: give both or neither"},
        BadConfigCase{"NatsCertificateWithoutCa",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.cluster_nats_cert_file = "cert.pem";
                        c.cluster_nats_key_file = "key.pem";
                      },
                      "--cluster_nats_ca_file: TLS to NATS (a client certificate or host name) "
                      "needs the CA"},
        BadConfigCase{"NatsHostnameWithoutCa",
                      [](ServerConfig& c) {
                        c.cluster_nats = "nats://127.0.0.1:4222";
                        c.cluster_nats_tls_hostname = "nats.internal";
                      },
                      "--cluster_nats_ca_file: TLS to NATS"},
        BadConfigCase{"NatsCaOnASingleNode",
                      [](ServerConfig& c) { c.cluster_nats_ca_file = "ca.pem"; },
                      "--cluster_nats_ca_file: only in cluster mode"},
        BadConfigCase{"ShareKnowledgeWithoutTenants",
                      [](ServerConfig& c) { c.share_knowledge = {"acme"}; },
                      "--share_knowledge: needs --auth_tokens_file"},
        BadConfigCase{"ShareKnowledgeOfNoTenant",
                      [](ServerConfig& c) {
                        c.auth_tokens_file = "tokens";
                        c.share_knowledge = {"acme", "no/such"};
                      },
                      "--share_knowledge: 'no/such' is not a tenant name"}),
    [](const ::testing::TestParamInfo<BadConfigCase>& param) { return param.param.name; });

}  // namespace
}  // namespace tailor::server

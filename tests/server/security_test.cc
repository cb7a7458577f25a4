// Security and routing at the gRPC boundary, against a real TailorServer on port 0: bearer
// tokens bound to tenants (isolation, admin, rotation by reload), the x-user-id routing check,
// and TLS / mutual TLS with certificates made by openssl at test time. (Health without a
// token is tested through tailorctl in tailord_process_test.)
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "server/tailor_server.h"
#include "tailor/v1/tailor.grpc.pb.h"
#include "tests/testing/temp_dir.h"

namespace tailor::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

constexpr char kAcme1[] = "acme-token-0000000001";
constexpr char kAcme2[] = "acme-token-0000000002";
constexpr char kGlobex[] = "globex-token-00000001";
constexpr char kOps[] = "ops-admin-token-00001";

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

v1::FeedbackEvent Event(const std::string& event_id, const std::string& user) {
  v1::FeedbackEvent e;
  e.set_event_id(event_id);
  e.set_user_id(user);
  for (auto* c : {e.mutable_chosen(), e.mutable_rejected()}) {
    c->set_id(c == e.mutable_chosen() ? "a" : "b");
    for (int i = 0; i < 10; ++i) c->add_features(c == e.mutable_chosen() ? 1.0f * i : -1.0f * i);
  }
  return e;
}

class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.listen = "127.0.0.1:0";
    config_.metrics_listen = "127.0.0.1:0";
    config_.data_dir = dir_.Sub("db");
    config_.shutdown_grace_ms = 100;
  }

  void Start(
      std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials(),
      const std::string& tls_name = "") {
    auto server = TailorServer::Start(config_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = Connect(std::move(credentials), tls_name);
  }

  // Connects to 127.0.0.1; with `tls_name`, the server certificate must be for that name.
  // (No DNS lookup: Debian's c-ares leaks a few bytes per resolver, which LeakSanitizer
  // reports.)
  std::unique_ptr<v1::Tailor::Stub> Connect(std::shared_ptr<grpc::ChannelCredentials> credentials,
                                            const std::string& tls_name = "") {
    grpc::ChannelArguments args;
    if (!tls_name.empty()) args.SetSslTargetNameOverride(tls_name);
    return v1::Tailor::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(server_->grpc_port()), std::move(credentials), args));
  }

  // A context carrying a bearer token (if any) and the routing header (if any).
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token,
                                                      const std::string& routed_user = "") {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    if (!routed_user.empty()) context->AddMetadata("x-user-id", routed_user);
    return context;
  }

  grpc::Status Submit(const std::string& token, const v1::FeedbackEvent& event,
                      const std::string& routed_user = "") {
    v1::SubmitFeedbackRequest request;
    *request.mutable_event() = event;
    v1::FeedbackAck ack;
    return stub_->SubmitFeedback(Context(token, routed_user).get(), request, &ack);
  }

  grpc::Status GetUser(const std::string& token, const std::string& user,
                       v1::UserProfile* profile) {
    v1::GetUserRequest request;
    request.set_user_id(user);
    return stub_->GetUser(Context(token).get(), request, profile);
  }

  TempDir dir_;
  ServerConfig config_;
  std::unique_ptr<TailorServer> server_;
  std::unique_ptr<v1::Tailor::Stub> stub_;
};

class AuthTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    tokens_ = dir_.Sub("tokens");
    WriteFile(tokens_, std::string("# tenant token [admin]\nacme ") + kAcme1 + "\nacme " + kAcme2 +
                           "  # second token, for rotation\nglobex " + kGlobex + "\nops " + kOps +
                           " admin\n");
    config_.auth_tokens_file = tokens_;
    Start();
  }
  std::string tokens_;
};

TEST_F(AuthTest, MissingWrongOrMalformedTokensAreUnauthenticated) {
  v1::ServerInfo info;
  for (const char* header : {"", "Bearer not-a-known-token-123", "Basic YWxhZGRpbjpvcGVu"}) {
    grpc::ClientContext context;
    if (*header != '\0') context.AddMetadata("authorization", header);
    const grpc::Status status = stub_->GetServerInfo(&context, {}, &info);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
    EXPECT_THAT(status.error_message(), HasSubstr("authorization:"));
  }
  EXPECT_EQ(Submit("", Event("e1", "bob")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  v1::UserProfile profile;
  EXPECT_EQ(GetUser("", "bob", &profile).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Streams are refused before any event is read.
  auto context = Context("");
  auto stream = stub_->StreamFeedback(context.get());
  stream->Write(Event("e1", "bob"));
  stream->WritesDone();
  v1::FeedbackAck ack;
  EXPECT_FALSE(stream->Read(&ack));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Nothing was stored by any of them.
  grpc::ClientContext ok_context;
  ok_context.AddMetadata("authorization", std::string("Bearer ") + kOps);
  ASSERT_TRUE(stub_->GetServerInfo(&ok_context, {}, &info).ok());
  EXPECT_EQ(info.feedback_events(), 0u);
}

TEST_F(AuthTest, TenantsAreIsolated) {
  ASSERT_TRUE(Submit(kAcme1, Event("e1", "bob")).ok());
  v1::UserProfile profile;
  // The same tenant, through either of its tokens.
  ASSERT_TRUE(GetUser(kAcme2, "bob", &profile).ok());
  EXPECT_EQ(profile.user_id(), "bob");  // the caller's name, not the storage id
  EXPECT_EQ(profile.feedback_count(), 1u);
  // Another tenant: no such user, and it cannot export or delete acme's.
  EXPECT_EQ(GetUser(kGlobex, "bob", &profile).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    v1::ExportUserRequest request;
    request.set_user_id("bob");
    auto context = Context(kGlobex);
    auto reader = stub_->ExportUser(context.get(), request);
    v1::ExportUserResponse item;
    while (reader->Read(&item)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
  }
  v1::DeleteUserRequest del;
  del.set_user_id("bob");
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(stub_->DeleteUser(Context(kGlobex).get(), del, &deleted).ok());
  EXPECT_FALSE(deleted.existed());
  // globex's own "bob" is a different user.
  ASSERT_TRUE(Submit(kGlobex, Event("e1", "bob")).ok());
  ASSERT_TRUE(Submit(kGlobex, Event("e2", "bob")).ok());
  ASSERT_TRUE(GetUser(kGlobex, "bob", &profile).ok());
  EXPECT_EQ(profile.feedback_count(), 2u);
  ASSERT_TRUE(GetUser(kAcme1, "bob", &profile).ok());
  EXPECT_EQ(profile.feedback_count(), 1u);
  // acme's export names its user as acme does.
  v1::ExportUserRequest request;
  request.set_user_id("bob");
  auto context = Context(kAcme1);
  auto reader = stub_->ExportUser(context.get(), request);
  v1::ExportUserResponse item;
  int events = 0;
  while (reader->Read(&item)) {
    if (item.has_feedback()) {
      ++events;
      EXPECT_EQ(item.feedback().event().user_id(), "bob");
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(events, 1);
  // Server-wide counts are for admin tokens; a tenant gets its own, and does not learn the
  // others' sizes.
  v1::ServerInfo info;
  ASSERT_TRUE(stub_->GetServerInfo(Context(kGlobex).get(), {}, &info).ok());
  EXPECT_EQ(info.users(), 1u);
  EXPECT_EQ(info.feedback_events(), 2u);
  EXPECT_EQ(info.schema().features_size(), 10);
  ASSERT_TRUE(stub_->GetServerInfo(Context(kOps).get(), {}, &info).ok());
  EXPECT_EQ(info.users(), 2u);
  EXPECT_EQ(info.feedback_events(), 3u);
}

TEST_F(AuthTest, EachTenantsCountsAreItsOwnThroughWritesDeletionsAndRestarts) {
  // acme: bob with 17 events (established at 16), alice with 1; globex: carol with 2.
  for (int i = 0; i < 17; ++i) ASSERT_TRUE(Submit(kAcme1, Event(absl::StrCat("b", i), "bob")).ok());
  ASSERT_TRUE(Submit(kAcme2, Event("a0", "alice")).ok());
  ASSERT_TRUE(Submit(kGlobex, Event("c0", "carol")).ok());
  ASSERT_TRUE(Submit(kGlobex, Event("c1", "carol")).ok());
  ASSERT_TRUE(Submit(kGlobex, Event("c1", "carol")).ok());  // a duplicate counts once
  auto counts = [&](const char* token) {
    v1::ServerInfo info;
    EXPECT_TRUE(stub_->GetServerInfo(Context(token).get(), {}, &info).ok());
    return std::vector<uint64_t>{info.users(), info.established_users(), info.feedback_events()};
  };
  using Counts = std::vector<uint64_t>;
  EXPECT_EQ(counts(kAcme1), (Counts{2, 1, 18}));
  EXPECT_EQ(counts(kGlobex), (Counts{1, 0, 2}));
  EXPECT_EQ(counts(kOps), (Counts{3, 1, 20}));  // admin: server-wide
  // Loaded again from disk, the same.
  server_->Shutdown();
  server_.reset();
  Start();
  EXPECT_EQ(counts(kAcme1), (Counts{2, 1, 18}));
  EXPECT_EQ(counts(kGlobex), (Counts{1, 0, 2}));
  // A deletion takes its user out of its tenant's counts only.
  v1::DeleteUserRequest request;
  request.set_user_id("bob");
  v1::DeleteUserResponse response;
  ASSERT_TRUE(stub_->DeleteUser(Context(kAcme1).get(), request, &response).ok());
  EXPECT_EQ(counts(kAcme1), (Counts{1, 0, 1}));
  EXPECT_EQ(counts(kGlobex), (Counts{1, 0, 2}));
}

TEST_F(AuthTest, AdminCallsNeedAnAdminToken) {
  auto admin = v1::TailorAdmin::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server_->grpc_port()), grpc::InsecureChannelCredentials()));
  v1::CreateCheckpointRequest request;
  request.set_directory(dir_.Sub("checkpoint"));
  v1::CreateCheckpointResponse response;
  EXPECT_EQ(admin->CreateCheckpoint(Context(kAcme1).get(), request, &response).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(admin->CreateCheckpoint(Context("").get(), request, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(admin->CreateCheckpoint(Context(kOps).get(), request, &response).ok());
}

TEST_F(AuthTest, ReloadRotatesTokensAndKeepsThemOnABadFile) {
  ASSERT_TRUE(Submit(kAcme1, Event("e1", "bob")).ok());
  // Rotation: acme's first token is withdrawn; the second keeps working.
  WriteFile(tokens_, std::string("acme ") + kAcme2 + "\nops " + kOps + " admin\n");
  ASSERT_TRUE(server_->ReloadTokens().ok());
  v1::UserProfile profile;
  EXPECT_EQ(GetUser(kAcme1, "bob", &profile).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(GetUser(kAcme2, "bob", &profile).ok());
  // A broken file is refused and the tokens in force stay.
  WriteFile(tokens_, "acme short\n");
  const absl::Status reloaded = server_->ReloadTokens();
  EXPECT_FALSE(reloaded.ok());
  EXPECT_THAT(std::string(reloaded.message()), HasSubstr(":1: token must be"));
  EXPECT_TRUE(GetUser(kAcme2, "bob", &profile).ok());
}

TEST(AuthFileTest, BadTokensFilesStopTheServerWithTheReason) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "no tokens"},
      {"acme\n", "expected 'TENANT TOKEN'"},
      {"ac/me 0123456789abcdef\n", "tenant must be"},
      {"acme 0123456789abcdef root\n", "expected 'TENANT TOKEN'"},
      {"a 0123456789abcdef\nb 0123456789abcdef\n", ":2: the same token appears twice"},
  };
  for (const auto& [text, reason] : cases) {
    WriteFile(dir.Sub("tokens"), text);
    ServerConfig config;
    config.listen = "127.0.0.1:0";
    config.metrics_listen = "127.0.0.1:0";
    config.data_dir = dir.Sub("db");
    config.auth_tokens_file = dir.Sub("tokens");
    auto server = TailorServer::Start(config);
    ASSERT_FALSE(server.ok()) << text;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("--auth_tokens_file: "));
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(reason)) << text;
  }
}

TEST(QuotaConfigTest, QuotasNeedTokensAndABadQuotasFileStopsTheServerWithTheReason) {
  TempDir dir;
  ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  config.data_dir = dir.Sub("db");
  WriteFile(dir.Sub("quotas"), "acme 10\n");
  config.tenant_quotas_file = dir.Sub("quotas");
  auto without_tokens = TailorServer::Start(config);
  ASSERT_FALSE(without_tokens.ok());
  EXPECT_THAT(std::string(without_tokens.status().message()),
              HasSubstr("--tenant_quotas_file: needs --auth_tokens_file"));
  WriteFile(dir.Sub("tokens"), std::string("acme ") + kAcme1 + "\n");
  config.auth_tokens_file = dir.Sub("tokens");
  WriteFile(dir.Sub("quotas"), "acme 10\nacme 20\n");
  auto bad = TailorServer::Start(config);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("--tenant_quotas_file: " + dir.Sub("quotas") + ":2: tenant 'acme'"));
}

class RoutingTest : public ServerFixture {};

TEST_F(RoutingTest, AHeaderThatDisagreesWithTheMessageIsRefusedAndStoresNothing) {
  Start();
  const grpc::Status status = Submit("", Event("e1", "bob"), /*routed_user=*/"alice");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("x-user-id: metadata 'alice' does not match"));
  v1::UserProfile profile;
  EXPECT_EQ(GetUser("", "bob", &profile).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::RankResponsesRequest rank;
  rank.set_user_id("bob");
  *rank.add_candidates() = Event("x", "bob").chosen();
  v1::RankResponsesResponse ranked;
  EXPECT_EQ(stub_->RankResponses(Context("", "alice").get(), rank, &ranked).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(stub_->RankResponses(Context("", "bob").get(), rank, &ranked).ok());
  // On a stream routed by one user, another user's event is rejected; the stream goes on.
  auto context = Context("", "alice");
  auto stream = stub_->StreamFeedback(context.get());
  ASSERT_TRUE(stream->Write(Event("s1", "bob")));
  v1::FeedbackAck ack;
  ASSERT_TRUE(stream->Read(&ack));
  EXPECT_EQ(ack.outcome(), v1::FeedbackAck::OUTCOME_REJECTED);
  EXPECT_THAT(ack.error(), HasSubstr("x-user-id:"));
  ASSERT_TRUE(stream->Write(Event("s2", "alice")));
  ASSERT_TRUE(stream->Read(&ack));
  EXPECT_EQ(ack.outcome(), v1::FeedbackAck::OUTCOME_APPLIED);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(GetUser("", "bob", &profile).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RoutingTest, RequiredHeaderMustBePresent) {
  config_.require_user_header = true;
  Start();
  const grpc::Status status = Submit("", Event("e1", "bob"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("x-user-id: metadata required"));
  EXPECT_TRUE(Submit("", Event("e1", "bob"), "bob").ok());
}

// Certificates for one test: a CA, a server certificate for localhost/127.0.0.1 signed by it,
// a client certificate signed by it, and an unrelated CA.
class TlsTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    const std::string d = dir_.path();
    const std::string script =
        "set -e; cd '" + d +
        "'; key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
        "for ca in ca other; do openssl req -x509 $key -keyout $ca.key -out $ca.pem -days 1 "
        "-subj /CN=$ca; done;"
        "openssl req $key -keyout server.key -out server.csr -subj /CN=localhost;"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1' > san;"
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-extfile san -out server.pem;"
        "openssl req $key -keyout client.key -out client.csr -subj /CN=client;"
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
        "-out client.pem";
    ASSERT_EQ(std::system(("(" + script + ") >/dev/null 2>&1").c_str()), 0) << "openssl failed";
    config_.tls_cert_file = d + "/server.pem";
    config_.tls_key_file = d + "/server.key";
  }

  std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& ca, bool with_client_cert) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadFile(dir_.path() + "/" + ca + ".pem");
    if (with_client_cert) {
      options.pem_cert_chain = ReadFile(dir_.path() + "/client.pem");
      options.pem_private_key = ReadFile(dir_.path() + "/client.key");
    }
    return grpc::SslCredentials(options);
  }

  grpc::Status Info(v1::Tailor::Stub& stub) {
    v1::ServerInfo info;
    return stub.GetServerInfo(Context("").get(), {}, &info);
  }
};

TEST_F(TlsTest, TheRightCaConnectsAndTheWrongCaOrPlaintextDoNot) {
  Start(Tls("ca", false), "localhost");
  EXPECT_TRUE(Info(*stub_).ok());
  EXPECT_EQ(Info(*Connect(Tls("other", false), "localhost")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(Info(*Connect(grpc::InsecureChannelCredentials())).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificateFromTheCa) {
  config_.tls_client_ca_file = dir_.path() + "/ca.pem";
  Start(Tls("ca", true), "localhost");
  EXPECT_TRUE(Info(*stub_).ok());
  EXPECT_EQ(Info(*Connect(Tls("ca", false), "localhost")).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

TEST(TlsConfigTest, UnreadableOrNonPemFilesNameTheFlag) {
  TempDir dir;
  WriteFile(dir.Sub("junk"), "not a certificate");
  ServerConfig config;
  config.listen = "127.0.0.1:0";
  config.metrics_listen = "127.0.0.1:0";
  config.data_dir = dir.Sub("db");
  config.tls_cert_file = dir.Sub("missing.pem");
  config.tls_key_file = dir.Sub("junk");
  auto server = TailorServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("--tls_cert_file: cannot read"));
  config.tls_cert_file = dir.Sub("junk");
  server = TailorServer::Start(config);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()), HasSubstr("is not PEM"));
  config.tls_key_file.clear();
  EXPECT_THAT(std::string(config.Validate().message()), HasSubstr("give both"));
}

}  // namespace
}  // namespace tailor::server

// Every tailor.v1 RPC against a real TailorServer on port 0 with a temp RocksDB directory.
// (In-process: this binary links the server, so it uses raw stubs, not client/.)
#include <chrono>
#include <limits>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "server/tailor_server.h"
#include "tailor/v1/tailor.grpc.pb.h"
#include "tests/testing/temp_dir.h"

namespace tailor::server {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

constexpr int kD = 10;  // the built-in PersonalLLM schema

class TailorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.listen = "127.0.0.1:0";
    config_.metrics_listen = "127.0.0.1:0";
    config_.data_dir = dir_.Sub("db");
    config_.refresh_ms = 50;
    config_.shutdown_grace_ms = 200;
    Start();
  }

  void Start() {
    auto server = TailorServer::Start(config_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Tailor::NewStub(channel_);
    admin_ = v1::TailorAdmin::NewStub(channel_);
  }

  void Restart() {
    server_.reset();
    Start();
  }

  static v1::Candidate MakeCandidate(const std::string& id, std::vector<float> features) {
    v1::Candidate c;
    c.set_id(id);
    for (float f : features) c.add_features(f);
    return c;
  }

  // Candidate whose raw scores make feature `k` high and the rest at their schema mean.
  v1::Candidate Expert(const std::string& id, int k, float level = 2.0f) {
    std::vector<float> f(kD);
    for (int i = 0; i < kD; ++i) {
      f[i] = static_cast<float>(info_sd(i) * (i == k ? level : 0.0) + info_mean(i));
    }
    return MakeCandidate(id, f);
  }

  double info_mean(int i) { return Info().schema().features(i).mean(); }
  double info_sd(int i) { return Info().schema().features(i).sd(); }

  v1::ServerInfo Info() {
    if (info_.schema().features_size() == 0 || refresh_info_) {
      grpc::ClientContext context;
      EXPECT_TRUE(stub_->GetServerInfo(&context, {}, &info_).ok());
      refresh_info_ = false;
    }
    return info_;
  }

  // Waits (up to 60 s) for a knowledge refresh that holds at least `users` reference users: a
  // fixed sleep past refresh_ms is too short on a loaded machine under sanitizers.
  void AwaitReferenceUsers(uint64_t users) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (true) {
      refresh_info_ = true;
      const uint64_t now = Info().knowledge().reference_users();
      if (now >= users) return;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "no refresh with " << users << " reference users; " << now << " so far";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  uint64_t StoredEvents() {
    refresh_info_ = true;
    return Info().feedback_events();
  }

  grpc::Status Feedback(const v1::FeedbackEvent& event, v1::FeedbackAck* ack) {
    grpc::ClientContext context;
    v1::SubmitFeedbackRequest request;
    *request.mutable_event() = event;
    return stub_->SubmitFeedback(&context, request, ack);
  }

  v1::FeedbackEvent Event(const std::string& event_id, const std::string& user,
                          const v1::Candidate& chosen, const v1::Candidate& rejected) {
    v1::FeedbackEvent e;
    e.set_event_id(event_id);
    e.set_user_id(user);
    e.set_prompt_id("p");
    *e.mutable_chosen() = chosen;
    *e.mutable_rejected() = rejected;
    return e;
  }

  grpc::Status Rank(const std::string& user, const std::vector<v1::Candidate>& candidates,
                    v1::RankResponsesResponse* response, uint32_t top_k = 0) {
    grpc::ClientContext context;
    v1::RankResponsesRequest request;
    request.set_user_id(user);
    for (const auto& c : candidates) *request.add_candidates() = c;
    request.mutable_options()->set_top_k(top_k);
    return stub_->RankResponses(&context, request, response);
  }

  TempDir dir_;
  ServerConfig config_;
  std::unique_ptr<TailorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Tailor::Stub> stub_;
  std::unique_ptr<v1::TailorAdmin::Stub> admin_;
  v1::ServerInfo info_;
  bool refresh_info_ = false;
};

TEST_F(TailorServiceTest, RanksAnUnknownUserFromThePopulation) {
  v1::RankResponsesResponse response;
  ASSERT_TRUE(Rank("new-user", {Expert("a", 0, 0.5f), Expert("b", 1, 2.0f), Expert("c", 2, 1.0f)},
                   &response)
                  .ok());
  ASSERT_EQ(response.ranked_size(), 3);
  EXPECT_EQ(response.knowledge_source(), v1::KNOWLEDGE_SOURCE_POPULATION);
  EXPECT_EQ(response.user_feedback_count(), 0u);
  double total = 0;
  for (int i = 0; i < 3; ++i) {
    total += response.ranked(i).probability_best();
    if (i > 0) {
      EXPECT_GE(response.ranked(i - 1).score(), response.ranked(i).score());
    }
  }
  EXPECT_NEAR(total, 1.0, 1e-6);

  v1::RankResponsesResponse top;
  ASSERT_TRUE(Rank("new-user", {Expert("a", 0), Expert("b", 1)}, &top, 1).ok());
  EXPECT_EQ(top.ranked_size(), 1);
}

TEST_F(TailorServiceTest, FeedbackIsAppliedOnceAndLearnedFrom) {
  v1::FeedbackAck ack;
  ASSERT_TRUE(Feedback(Event("e1", "u", Expert("x", 3), Expert("y", 5)), &ack).ok());
  EXPECT_EQ(ack.outcome(), v1::FeedbackAck::OUTCOME_APPLIED);
  EXPECT_EQ(ack.user_feedback_count(), 1u);
  EXPECT_EQ(ack.sequence(), 1u);
  EXPECT_GT(ack.predicted_chosen_probability(), 0.0);
  EXPECT_LT(ack.predicted_chosen_probability(), 1.0);
  const double first_prediction = ack.predicted_chosen_probability();

  v1::FeedbackAck again;
  ASSERT_TRUE(Feedback(Event("e1", "u", Expert("x", 3), Expert("y", 5)), &again).ok());
  EXPECT_EQ(again.outcome(), v1::FeedbackAck::OUTCOME_DUPLICATE);
  EXPECT_EQ(again.user_feedback_count(), 1u);
  EXPECT_DOUBLE_EQ(again.predicted_chosen_probability(), first_prediction);
  EXPECT_EQ(StoredEvents(), 1u);

  // The user consistently prefers feature 3 over everything: it should rise to the top.
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(Feedback(Event("e" + std::to_string(i + 2), "u", Expert("x", 3),
                               Expert("y" + std::to_string(i), i % 2 == 0 ? 5 : 7)),
                         &ack)
                    .ok());
  }
  v1::RankResponsesResponse response;
  ASSERT_TRUE(
      Rank("u", {Expert("five", 5), Expert("three", 3), Expert("seven", 7)}, &response).ok());
  EXPECT_EQ(response.ranked(0).id(), "three");
  EXPECT_EQ(response.user_feedback_count(), 13u);
  EXPECT_NE(response.knowledge_source(), v1::KNOWLEDGE_SOURCE_POPULATION);

  grpc::ClientContext context;
  v1::GetUserRequest get;
  get.set_user_id("u");
  v1::UserProfile profile;
  ASSERT_TRUE(stub_->GetUser(&context, get, &profile).ok());
  EXPECT_EQ(profile.feedback_count(), 13u);
  ASSERT_EQ(profile.weight_mean_size(), kD);
  EXPECT_GT(profile.weight_mean(3), profile.weight_mean(5));
}

TEST_F(TailorServiceTest, StateSurvivesRestart) {
  v1::FeedbackAck ack;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        Feedback(Event("e" + std::to_string(i), "u", Expert("x", 1), Expert("y", 2)), &ack).ok());
  }
  Restart();
  EXPECT_EQ(StoredEvents(), 5u);
  ASSERT_TRUE(Feedback(Event("e4", "u", Expert("x", 1), Expert("y", 2)), &ack).ok());
  EXPECT_EQ(ack.outcome(), v1::FeedbackAck::OUTCOME_DUPLICATE);
  ASSERT_TRUE(Feedback(Event("e5", "u", Expert("x", 1), Expert("y", 2)), &ack).ok());
  EXPECT_EQ(ack.user_feedback_count(), 6u);
}

struct BadFeedbackCase {
  const char* name;
  void (*mutate)(v1::FeedbackEvent&);
  const char* message;
};
void PrintTo(const BadFeedbackCase& c, std::ostream* os) { *os << c.name; }

class FeedbackValidationTest : public TailorServiceTest,
                               public ::testing::WithParamInterface<BadFeedbackCase> {};

TEST_P(FeedbackValidationTest, IsRejectedNamingFieldAndRuleAndStoresNothing) {
  v1::FeedbackEvent event = Event("ev", "u", Expert("a", 0), Expert("b", 1));
  GetParam().mutate(event);
  v1::FeedbackAck ack;
  grpc::Status status = Feedback(event, &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr(GetParam().message));
  EXPECT_EQ(StoredEvents(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Rules, FeedbackValidationTest,
    ::testing::Values(
        BadFeedbackCase{"EmptyEventId", [](v1::FeedbackEvent& e) { e.set_event_id(""); },
                        "event_id: must not be empty"},
        BadFeedbackCase{"LongEventId",
                        [](v1::FeedbackEvent& e) { e.set_event_id(std::string(129, 'e')); },
                        "event_id: must be at most 128 bytes"},
        BadFeedbackCase{"EmptyUserId", [](v1::FeedbackEvent& e) { e.set_user_id(""); },
                        "user_id: must not be empty"},
        BadFeedbackCase{"LongUserId",
                        [](v1::FeedbackEvent& e) { e.set_user_id(std::string(200, 'u')); },
                        "user_id: must be at most 128 bytes"},
        BadFeedbackCase{"LongPromptId",
                        [](v1::FeedbackEvent& e) { e.set_prompt_id(std::string(129, 'p')); },
                        "prompt_id: must be at most 128 bytes"},
        BadFeedbackCase{"NoChosen", [](v1::FeedbackEvent& e) { e.clear_chosen(); },
                        "chosen: is required"},
        BadFeedbackCase{"NoRejected", [](v1::FeedbackEvent& e) { e.clear_rejected(); },
                        "rejected: is required"},
        BadFeedbackCase{"ChosenIsRejected",
                        [](v1::FeedbackEvent& e) { e.mutable_rejected()->set_id(e.chosen().id()); },
                        "rejected.id: must differ from chosen.id"},
        BadFeedbackCase{"IdenticalFeatures",
                        [](v1::FeedbackEvent& e) {
                          *e.mutable_rejected()->mutable_features() = e.chosen().features();
                        },
                        "rejected.features: must differ from chosen.features"},
        BadFeedbackCase{
            "ShortFeatures",
            [](v1::FeedbackEvent& e) { e.mutable_chosen()->mutable_features()->RemoveLast(); },
            "chosen.features: has 9 values, the schema has 10 features"},
        BadFeedbackCase{
            "NaN",
            [](v1::FeedbackEvent& e) { e.mutable_rejected()->set_features(2, std::nanf("")); },
            "rejected.features[2]: must be finite"},
        BadFeedbackCase{"Inf",
                        [](v1::FeedbackEvent& e) { e.mutable_chosen()->set_features(0, INFINITY); },
                        "chosen.features[0]: must be finite"},
        BadFeedbackCase{"NegativeTimestamp",
                        [](v1::FeedbackEvent& e) { e.set_timestamp_micros(-1); },
                        "timestamp_micros: must be >= 0"},
        BadFeedbackCase{"Year9999Timestamp",
                        [](v1::FeedbackEvent& e) { e.set_timestamp_micros(253402300799000000); },
                        "timestamp_micros: must not be more than 24 hours ahead of the server's "
                        "clock"},
        BadFeedbackCase{"MaxTimestamp",
                        [](v1::FeedbackEvent& e) {
                          e.set_timestamp_micros(std::numeric_limits<int64_t>::max());
                        },
                        "timestamp_micros: must not be more than 24 hours ahead of the server's "
                        "clock"}),
    [](const ::testing::TestParamInfo<BadFeedbackCase>& param) { return param.param.name; });

TEST_F(TailorServiceTest, RankValidationTable) {
  struct Case {
    std::vector<v1::Candidate> candidates;
    std::string user;
    const char* message;
  };
  std::vector<v1::Candidate> too_many;
  for (int i = 0; i < 65; ++i) too_many.push_back(Expert("c" + std::to_string(i), i % kD));
  const std::vector<Case> cases = {
      {{}, "u", "candidates: at least 1 required, got 0"},
      {too_many, "u", "candidates: at most 64 allowed, got 65"},
      {{Expert("a", 0), Expert("a", 1)}, "u", "candidates[1].id: duplicate id 'a'"},
      {{Expert("", 0)}, "u", "candidates[0].id: must not be empty"},
      {{Expert("a", 0)}, "", "user_id: must not be empty"},
      {{Expert("a", 0), MakeCandidate("b", {1, 2})},
       "u",
       "candidates[1].features: has 2 values, the schema has 10 features"},
      {{MakeCandidate("a", std::vector<float>(kD, std::nanf("")))},
       "u",
       "candidates[0].features[0]: must be finite"},
  };
  for (const Case& c : cases) {
    v1::RankResponsesResponse response;
    grpc::Status status = Rank(c.user, c.candidates, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.message;
    EXPECT_THAT(status.error_message(), HasSubstr(c.message));
  }
  grpc::ClientContext context;
  v1::SuggestComparisonRequest one;
  one.set_user_id("u");
  *one.add_candidates() = Expert("a", 0);
  v1::SuggestComparisonResponse pair;
  grpc::Status status = stub_->SuggestComparison(&context, one, &pair);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("candidates: at least 2 required, got 1"));
}

TEST_F(TailorServiceTest, OversizedMessageIsRejected) {
  config_.max_message_bytes = 4096;
  Restart();
  std::vector<v1::Candidate> big;
  for (int i = 0; i < 60; ++i)
    big.push_back(Expert(std::string(100, 'a' + (i % 26)) + std::to_string(i), 0));
  v1::RankResponsesResponse response;
  grpc::Status status = Rank("u", big, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(TailorServiceTest, StreamsBeyondTheLimitAreRefused) {
  config_.max_concurrent_streams = 1;
  Restart();
  grpc::ClientContext first_context;
  auto first = stub_->StreamFeedback(&first_context);
  ASSERT_TRUE(first->Write(Event("a1", "u", Expert("a", 0), Expert("b", 1))));
  v1::FeedbackAck ack;
  ASSERT_TRUE(first->Read(&ack));  // the first stream is open and working

  grpc::ClientContext second_context;
  auto second = stub_->StreamFeedback(&second_context);
  second->Write(Event("a2", "u", Expert("a", 0), Expert("b", 1)));
  EXPECT_FALSE(second->Read(&ack));
  grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("at most 1 concurrent streams"));

  first->WritesDone();
  EXPECT_FALSE(first->Read(&ack));
  EXPECT_TRUE(first->Finish().ok());
  EXPECT_EQ(StoredEvents(), 1u);  // the refused stream's event was not stored
}

TEST_F(TailorServiceTest, CallsPastTheirDeadlineAreAbandonedCleanly) {
  // Deadlines too short for the work: each call either completes or ends DEADLINE_EXCEEDED.
  // An abandoned call stores nothing, later calls are served normally, and (in the ASan
  // build) no reactor is touched after its client has gone.
  int completed = 0;
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::microseconds(100 + i));
    v1::SubmitFeedbackRequest request;
    *request.mutable_event() =
        Event("d" + std::to_string(i), "u", Expert("a", i % kD), Expert("b", (i + 1) % kD));
    v1::FeedbackAck ack;
    grpc::Status status = stub_->SubmitFeedback(&context, request, &ack);
    ASSERT_TRUE(status.ok() || status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
        << status.error_message();
    completed += status.ok();
  }
  // Work the server finished just as the client gave up may still be stored: at least every
  // acknowledged event, and never more than were sent. Abandoned commits may still be
  // finishing: read the count once it has stopped changing.
  uint64_t stored = StoredEvents();
  for (int settled = 0; settled < 5;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const uint64_t now = StoredEvents();
    settled = now == stored ? settled + 1 : 0;
    stored = now;
  }
  RecordProperty("completed", completed);
  RecordProperty("stored", static_cast<int>(stored));
  EXPECT_GE(stored, static_cast<uint64_t>(completed));
  EXPECT_LE(stored, 200u);
  v1::RankResponsesResponse response;
  EXPECT_TRUE(Rank("u", {Expert("a", 0), Expert("b", 1)}, &response).ok());
  EXPECT_EQ(response.user_feedback_count(), stored);
}

TEST_F(TailorServiceTest, UnknownUserReadsAreNotFound) {
  grpc::ClientContext context;
  v1::GetUserRequest get;
  get.set_user_id("ghost");
  v1::UserProfile profile;
  EXPECT_EQ(stub_->GetUser(&context, get, &profile).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext export_context;
  v1::ExportUserRequest request;
  request.set_user_id("ghost");
  auto reader = stub_->ExportUser(&export_context, request);
  v1::ExportUserResponse item;
  EXPECT_FALSE(reader->Read(&item));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(TailorServiceTest, StreamAcksInOrderAndAResendAfterReconnectIsSafe) {
  std::vector<v1::FeedbackEvent> events;
  for (int i = 0; i < 40; ++i) {
    events.push_back(Event("s" + std::to_string(i), "user-" + std::to_string(i % 3),
                           Expert("a", i % kD), Expert("b", (i + 1) % kD)));
  }
  events[7].set_user_id("");  // invalid: rejected in its ack, the stream goes on

  auto send_all = [&](int count) {
    grpc::ClientContext context;
    auto stream = stub_->StreamFeedback(&context);
    std::vector<v1::FeedbackAck> acks;
    for (int i = 0; i < count; ++i) EXPECT_TRUE(stream->Write(events[i]));
    stream->WritesDone();
    v1::FeedbackAck ack;
    while (stream->Read(&ack)) acks.push_back(ack);
    EXPECT_TRUE(stream->Finish().ok());
    return acks;
  };
  std::vector<v1::FeedbackAck> first = send_all(25);  // "broken" after 25 events
  ASSERT_EQ(first.size(), 25u);
  for (int i = 0; i < 25; ++i) {
    EXPECT_EQ(first[i].event_id(), events[i].event_id());
    EXPECT_EQ(first[i].outcome(),
              i == 7 ? v1::FeedbackAck::OUTCOME_REJECTED : v1::FeedbackAck::OUTCOME_APPLIED);
  }
  EXPECT_THAT(first[7].error(), HasSubstr("user_id: must not be empty"));

  std::vector<v1::FeedbackAck> second = send_all(40);  // reconnect and resend everything
  ASSERT_EQ(second.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    const auto expected = i == 7   ? v1::FeedbackAck::OUTCOME_REJECTED
                          : i < 25 ? v1::FeedbackAck::OUTCOME_DUPLICATE
                                   : v1::FeedbackAck::OUTCOME_APPLIED;
    EXPECT_EQ(second[i].outcome(), expected) << i;
    if (i < 25 && i != 7) {
      EXPECT_EQ(second[i].sequence(), first[i].sequence());
    }
  }
  EXPECT_EQ(StoredEvents(), 39u);
}

// Events read ahead of their acks are applied in batches; whatever the window, every stream
// gets its acks in its own order, and each user's events are applied in the order sent.
TEST_F(TailorServiceTest, StreamsReadAheadInWindowsAndKeepEveryOrder) {
  for (const int window : {1, 3, 64}) {
    SCOPED_TRACE(window);
    config_.stream_window_events = window;
    Restart();
    const uint64_t stored_before = StoredEvents();
    constexpr int kStreams = 4;
    constexpr int kEvents = 90;
    std::vector<std::vector<v1::FeedbackAck>> acks(kStreams);
    std::vector<std::thread> clients;
    for (int s = 0; s < kStreams; ++s) {
      clients.emplace_back([&, s] {
        grpc::ClientContext context;
        auto stream = stub_->StreamFeedback(&context);
        std::thread writer([&] {
          for (int i = 0; i < kEvents; ++i) {
            // Three users per stream, interleaved; users are not shared between streams.
            const std::string user = absl::StrCat("w", window, "-s", s, "-u", i % 3);
            stream->Write(Event(absl::StrCat(user, "-e", i), user, Expert("a", i % kD),
                                Expert("b", (i + 1) % kD)));
          }
          stream->WritesDone();
        });
        v1::FeedbackAck ack;
        while (stream->Read(&ack)) acks[s].push_back(ack);
        writer.join();
        EXPECT_TRUE(stream->Finish().ok());
      });
    }
    for (std::thread& t : clients) t.join();
    for (int s = 0; s < kStreams; ++s) {
      ASSERT_EQ(acks[s].size(), static_cast<size_t>(kEvents));
      for (int i = 0; i < kEvents; ++i) {
        const std::string user = absl::StrCat("w", window, "-s", s, "-u", i % 3);
        EXPECT_EQ(acks[s][i].event_id(), absl::StrCat(user, "-e", i));
        EXPECT_EQ(acks[s][i].outcome(), v1::FeedbackAck::OUTCOME_APPLIED);
        EXPECT_EQ(acks[s][i].sequence(), static_cast<uint64_t>(i / 3 + 1));
      }
    }
    EXPECT_EQ(StoredEvents(), stored_before + kStreams * kEvents);
  }
}

// Regression: acks once went out with a buffer hint whenever more were queued, and gRPC held
// such a write until the next one, which only starts after it: short streams then stalled
// about one time in four. Each stream here must finish well within its deadline.
TEST_F(TailorServiceTest, ShortStreamsAlwaysFinish) {
  for (int s = 0; s < 40; ++s) {
    SCOPED_TRACE(s);
    grpc::ClientContext context;
    // Generous for five events even under sanitizers (they take a few ms); a held ack stalled
    // a stream until gRPC's next one-second poll.
    const auto deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(700);
    context.set_deadline(deadline);
    auto stream = stub_->StreamFeedback(&context);
    const std::string user = absl::StrCat("short-", s);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(stream->Write(Event(absl::StrCat(user, "-e", i), user, Expert("a", i % kD),
                                      Expert("b", (i + 1) % kD))));
    }
    ASSERT_TRUE(stream->WritesDone());
    int acked = 0;
    v1::FeedbackAck ack;
    while (stream->Read(&ack)) ++acked;
    const grpc::Status status = stream->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(acked, 5);
    // A stalled stream can still end OK when the deadline's cancellation flushes the held ack.
    ASSERT_LT(std::chrono::system_clock::now(), deadline) << "the stream stalled";
  }
}

TEST_F(TailorServiceTest, ExportIsCompleteAndDeleteErasesTheUser) {
  std::vector<v1::FeedbackEvent> sent;
  v1::FeedbackAck ack;
  for (int i = 0; i < 6; ++i) {
    sent.push_back(Event("x" + std::to_string(i), "erase-me", Expert("a", i), Expert("b", i + 1)));
    sent.back().set_timestamp_micros(1000 + i);
    ASSERT_TRUE(Feedback(sent.back(), &ack).ok());
  }
  ASSERT_TRUE(Feedback(Event("k", "keep-me", Expert("a", 0), Expert("b", 1)), &ack).ok());

  grpc::ClientContext context;
  v1::ExportUserRequest request;
  request.set_user_id("erase-me");
  auto reader = stub_->ExportUser(&context, request);
  std::vector<v1::ExportUserResponse> items;
  v1::ExportUserResponse item;
  while (reader->Read(&item)) items.push_back(item);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(items.size(), 7u);
  ASSERT_TRUE(items[0].has_profile());
  EXPECT_EQ(items[0].profile().feedback_count(), 6u);
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(items[i + 1].has_feedback());
    EXPECT_EQ(items[i + 1].feedback().sequence(), static_cast<uint64_t>(i + 1));
    EXPECT_EQ(items[i + 1].feedback().event().SerializeAsString(), sent[i].SerializeAsString());
  }

  grpc::ClientContext delete_context;
  v1::DeleteUserRequest del;
  del.set_user_id("erase-me");
  v1::DeleteUserResponse deleted;
  ASSERT_TRUE(stub_->DeleteUser(&delete_context, del, &deleted).ok());
  EXPECT_TRUE(deleted.existed());
  EXPECT_EQ(deleted.feedback_events_deleted(), 6u);
  grpc::ClientContext get_context;
  v1::GetUserRequest get;
  get.set_user_id("erase-me");
  v1::UserProfile profile;
  EXPECT_EQ(stub_->GetUser(&get_context, get, &profile).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(StoredEvents(), 1u);
  // The same event id may be used again after erasure: nothing of the user remains.
  ASSERT_TRUE(Feedback(sent[0], &ack).ok());
  EXPECT_EQ(ack.outcome(), v1::FeedbackAck::OUTCOME_APPLIED);
}

TEST_F(TailorServiceTest, ColdStartBorrowsFromNeighboursAndForgetsDeletedOnes) {
  // Two established tastes: half the users love feature 2, half love feature 6.
  v1::FeedbackAck ack;
  for (int u = 0; u < 20; ++u) {
    const int loved = u % 2 == 0 ? 2 : 6;
    for (int i = 0; i < 20; ++i) {
      const int other = (loved + 1 + i % 7) % kD == (u % 2 == 0 ? 6 : 2) ? (loved + 2) % kD
                                                                         : (loved + 1 + i % 7) % kD;
      ASSERT_TRUE(
          Feedback(Event("h" + std::to_string(u) + "-" + std::to_string(i),
                         "hist-" + std::to_string(u), Expert("a", loved), Expert("b", other)),
                   &ack)
              .ok());
    }
  }
  ASSERT_NO_FATAL_FAILURE(AwaitReferenceUsers(20));
  ASSERT_TRUE(Feedback(Event("n1", "newbie", Expert("a", 6), Expert("b", 2)), &ack).ok());
  v1::RankResponsesResponse response;
  ASSERT_TRUE(Rank("newbie", {Expert("two", 2), Expert("six", 6)}, &response).ok());
  // One pair: the neighbour mixture and the own posterior share the blend (which one carries
  // more is the evidence's call), and both favour six.
  EXPECT_NE(response.knowledge_source(), v1::KNOWLEDGE_SOURCE_POPULATION);
  EXPECT_EQ(response.ranked(0).id(), "six");
  auto newbie = [&] {
    grpc::ClientContext context;
    v1::GetUserRequest get;
    get.set_user_id("newbie");
    v1::UserProfile profile;
    EXPECT_TRUE(stub_->GetUser(&context, get, &profile).ok());
    return profile;
  };
  const v1::UserProfile before = newbie();

  // Erase every user who loves 6: the newbie's neighbours can no longer be of that taste.
  for (int u = 1; u < 20; u += 2) {
    grpc::ClientContext context;
    v1::DeleteUserRequest del;
    del.set_user_id("hist-" + std::to_string(u));
    v1::DeleteUserResponse deleted;
    ASSERT_TRUE(stub_->DeleteUser(&context, del, &deleted).ok());
  }
  // Only the neighbours' share can have moved: the newbie's own pair still favours six.
  const v1::UserProfile after = newbie();
  EXPECT_GT(after.weight_mean(2) - after.weight_mean(6),
            before.weight_mean(2) - before.weight_mean(6) + 0.1)
      << "deleted users still shape the newbie's cold start";
}

TEST_F(TailorServiceTest, SuggestReturnsTwoDistinctCandidatesAndTheirInformation) {
  grpc::ClientContext context;
  v1::SuggestComparisonRequest request;
  request.set_user_id("anyone");
  *request.add_candidates() = Expert("a", 0);
  *request.add_candidates() = Expert("b", 1);
  *request.add_candidates() = Expert("c", 2, 0.0f);
  v1::SuggestComparisonResponse pair;
  ASSERT_TRUE(stub_->SuggestComparison(&context, request, &pair).ok());
  EXPECT_NE(pair.first_id(), pair.second_id());
  EXPECT_GT(pair.expected_information_bits(), 0.0);
  EXPECT_LE(pair.expected_information_bits(), 1.0);
}

TEST_F(TailorServiceTest, SubmitFeedbackWithoutAnEventNamesTheEvent) {
  grpc::ClientContext context;
  v1::FeedbackAck ack;
  const grpc::Status status = stub_->SubmitFeedback(&context, v1::SubmitFeedbackRequest(), &ack);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "event: is required");
  EXPECT_EQ(StoredEvents(), 0u);
}

TEST_F(TailorServiceTest, CheckpointCanBeServedFrom) {
  v1::FeedbackAck ack;
  ASSERT_TRUE(Feedback(Event("c1", "u", Expert("a", 0), Expert("b", 1)), &ack).ok());
  grpc::ClientContext context;
  v1::CreateCheckpointRequest request;
  request.set_directory(dir_.Sub("backup"));
  v1::CreateCheckpointResponse response;
  ASSERT_TRUE(admin_->CreateCheckpoint(&context, request, &response).ok());
  grpc::ClientContext relative_context;
  request.set_directory("relative/dir");
  EXPECT_EQ(admin_->CreateCheckpoint(&relative_context, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Into an existing directory, or one whose parent is missing: the caller's field and rule,
  // never RocksDB's text or its temporary directory.
  for (const std::string& directory : {dir_.Sub("backup"), dir_.Sub("no/such/parent")}) {
    grpc::ClientContext bad_context;
    request.set_directory(directory);
    const grpc::Status status = admin_->CreateCheckpoint(&bad_context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << directory;
    EXPECT_TRUE(absl::StartsWith(status.error_message(), "directory: ")) << status.error_message();
    EXPECT_EQ(status.error_message().find(".tmp"), std::string::npos) << status.error_message();
  }

  config_.data_dir = dir_.Sub("backup");
  Restart();
  EXPECT_EQ(StoredEvents(), 1u);
}

}  // namespace
}  // namespace tailor::server

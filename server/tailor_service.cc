#include "server/tailor_service.h"

#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/request_validation.h"
#include "server/version.h"

namespace tailor::server {
namespace {

engine::CandidateInput ToCandidate(const v1::Candidate& c) {
  return {c.id(), std::span(c.features().data(), static_cast<size_t>(c.features_size()))};
}

std::vector<engine::CandidateInput> ToCandidates(
    const google::protobuf::RepeatedPtrField<v1::Candidate>& list) {
  std::vector<engine::CandidateInput> out;
  out.reserve(static_cast<size_t>(list.size()));
  for (const v1::Candidate& c : list) out.push_back(ToCandidate(c));
  return out;
}

v1::KnowledgeSource ToProto(model::KnowledgeSource source) {
  switch (source) {
    case model::KnowledgeSource::kPersonal:
      return v1::KNOWLEDGE_SOURCE_PERSONAL;
    case model::KnowledgeSource::kNeighbours:
      return v1::KNOWLEDGE_SOURCE_NEIGHBOURS;
    case model::KnowledgeSource::kPopulation:
      return v1::KNOWLEDGE_SOURCE_POPULATION;
  }
  return v1::KNOWLEDGE_SOURCE_UNSPECIFIED;
}

void FillProfile(absl::string_view user_id, const engine::UserProfile& profile,
                 v1::UserProfile& out) {
  out.set_user_id(std::string(user_id));
  out.set_feedback_count(profile.feedback_count);
  for (double m : profile.weight_mean) out.add_weight_mean(m);
  for (double s : profile.weight_stddev) out.add_weight_stddev(s);
  out.set_knowledge_source(ToProto(profile.source));
  out.set_first_feedback_micros(profile.first_feedback_micros);
  out.set_last_feedback_micros(profile.last_feedback_micros);
}

// Where a unary call finishes: the status goes to the client and into the metrics.
struct CallRecord {
  Metrics& metrics;
  Rpc rpc;
  absl::Time start = absl::Now();
  void Finish(grpc::ServerUnaryReactor* reactor, const grpc::Status& status) const {
    metrics.RecordRpc(rpc, status.error_code(), absl::Now() - start);
    reactor->Finish(status);
  }
};

grpc::ServerUnaryReactor* Done(const CallRecord& call, grpc::CallbackServerContext* context,
                               const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  call.Finish(reactor, ToGrpc(status));
  return reactor;
}

// Runs `work` on the queue and finishes the call with its status; a call whose client has
// gone (cancelled, deadline exceeded) is abandoned before any work is done.
template <typename Work>
grpc::ServerUnaryReactor* Deferred(WorkQueue& queue, const CallRecord& call,
                                   grpc::CallbackServerContext* context, Work work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  queue.Post([call, context, reactor, work = std::move(work)]() mutable {
    if (context->IsCancelled()) {
      call.Finish(reactor, grpc::Status(grpc::StatusCode::CANCELLED, "abandoned: call cancelled"));
      return;
    }
    call.Finish(reactor, ToGrpc(work()));
  });
  return reactor;
}

// One StreamFeedback call: reads an event, applies it on the work queue, writes its ack, and
// only then reads the next. At most one event per stream is in flight, so a fast producer is
// held back by HTTP/2 flow control instead of growing server memory.
class FeedbackStream final : public grpc::ServerBidiReactor<v1::FeedbackEvent, v1::FeedbackAck> {
 public:
  explicit FeedbackStream(TailorService& service) : service_(service) {
    service_.metrics().StreamOpened();
    StartRead(&event_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client closed its side; every read event has been acked
      End(grpc::Status::OK);
      return;
    }
    service_.queue().Post([this] {
      ack_.Clear();
      absl::Status status = service_.ApplyFeedback(event_, ack_);
      if (!status.ok()) {  // a storage fault, not bad input: end the stream
        End(ToGrpc(status));
        return;
      }
      service_.metrics().RecordFeedback(ack_);
      StartWrite(&ack_);
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken while acking"));
      return;
    }
    StartRead(&event_);
  }

  void OnDone() override {
    service_.metrics().StreamClosed();
    service_.open_streams().fetch_sub(1);
    delete this;
  }

 private:
  void End(const grpc::Status& status) {
    service_.metrics().RecordRpc(Rpc::kStreamFeedback, status.error_code(), absl::Now() - start_);
    Finish(status);
  }

  const absl::Time start_ = absl::Now();
  TailorService& service_;
  v1::FeedbackEvent event_;
  v1::FeedbackAck ack_;
};

class RefusedStream final : public grpc::ServerBidiReactor<v1::FeedbackEvent, v1::FeedbackAck> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class ExportWriter final : public grpc::ServerWriteReactor<v1::ExportUserResponse> {
 public:
  ExportWriter(TailorService& service, grpc::CallbackServerContext* context, std::string user_id)
      : metrics_(service.metrics()), context_(context), user_id_(std::move(user_id)) {
    if (absl::Status s = ValidateId("user_id", user_id_); !s.ok()) {
      End(ToGrpc(s));
      return;
    }
    service.queue().Post([this, &service] {
      if (context_->IsCancelled()) {
        End(grpc::Status(grpc::StatusCode::CANCELLED, "abandoned: call cancelled"));
        return;
      }
      absl::StatusOr<engine::UserExport> exported = service.engine().ExportUser(user_id_);
      if (!exported.ok()) {
        End(ToGrpc(exported.status()));
        return;
      }
      export_ = *std::move(exported);
      FillProfile(user_id_, export_.profile, *message_.mutable_profile());
      StartWrite(&message_);
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (next_ == export_.history.size()) {
      End(grpc::Status::OK);
      return;
    }
    const storage::records::FeedbackRecord& r = export_.history[next_++];
    message_.Clear();
    v1::StoredFeedback* out = message_.mutable_feedback();
    out->set_sequence(r.sequence());
    out->set_applied_micros(r.applied_micros());
    out->set_predicted_chosen_probability(r.predicted_chosen_probability());
    v1::FeedbackEvent* event = out->mutable_event();
    event->set_event_id(r.event_id());
    event->set_user_id(user_id_);
    event->set_prompt_id(r.prompt_id());
    event->mutable_chosen()->set_id(r.chosen_id());
    event->mutable_chosen()->mutable_features()->CopyFrom(r.chosen_features());
    event->mutable_rejected()->set_id(r.rejected_id());
    event->mutable_rejected()->mutable_features()->CopyFrom(r.rejected_features());
    event->set_timestamp_micros(r.timestamp_micros());
    StartWrite(&message_);
  }

  void OnDone() override { delete this; }

 private:
  void End(const grpc::Status& status) {
    metrics_.RecordRpc(Rpc::kExportUser, status.error_code(), absl::Now() - start_);
    Finish(status);
  }

  Metrics& metrics_;
  const absl::Time start_ = absl::Now();
  grpc::CallbackServerContext* context_;
  std::string user_id_;
  engine::UserExport export_;
  size_t next_ = 0;
  v1::ExportUserResponse message_;
};

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

TailorService::TailorService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                             const ServerConfig& config)
    : engine_(engine), queue_(queue), metrics_(metrics), config_(config) {}

grpc::ServerUnaryReactor* TailorService::RankResponses(grpc::CallbackServerContext* context,
                                                       const v1::RankResponsesRequest* request,
                                                       v1::RankResponsesResponse* response) {
  const CallRecord call{metrics_, Rpc::kRankResponses};
  // CPU only, no storage: computed inline.
  for (absl::Status s : {ValidateId("user_id", request->user_id()),
                         ValidateCandidates(request->candidates(), 1, config_.max_candidates)}) {
    if (!s.ok()) return Done(call, context, s);
  }
  absl::StatusOr<engine::RankResult> result = engine_.Rank(
      request->user_id(), ToCandidates(request->candidates()), request->options().explore());
  if (!result.ok()) return Done(call, context, result.status());
  const size_t keep = request->options().top_k() == 0
                          ? result->ranked.size()
                          : std::min<size_t>(request->options().top_k(), result->ranked.size());
  for (size_t i = 0; i < keep; ++i) {
    const engine::RankedCandidate& r = result->ranked[i];
    v1::RankedCandidate* out = response->add_ranked();
    out->set_id(request->candidates(r.index).id());
    out->set_score(r.score);
    out->set_probability_best(r.probability_best);
  }
  response->set_knowledge_source(ToProto(result->source));
  response->set_user_feedback_count(result->user_feedback_count);
  metrics_.RecordRanking(response->knowledge_source());
  return Done(call, context, absl::OkStatus());
}

absl::Status TailorService::ApplyFeedback(const v1::FeedbackEvent& event, v1::FeedbackAck& ack) {
  ack.set_event_id(event.event_id());
  absl::StatusOr<engine::FeedbackResult> result = [&]() -> absl::StatusOr<engine::FeedbackResult> {
    if (absl::Status valid = ValidateFeedbackEvent(event); !valid.ok()) return valid;
    engine::FeedbackInput input;
    input.event_id = event.event_id();
    input.user_id = event.user_id();
    input.prompt_id = event.prompt_id();
    input.chosen = ToCandidate(event.chosen());
    input.rejected = ToCandidate(event.rejected());
    input.timestamp_micros = event.timestamp_micros();
    return engine_.RecordFeedback(input);
  }();
  if (!result.ok()) {
    if (result.status().code() != absl::StatusCode::kInvalidArgument) return result.status();
    ack.set_outcome(v1::FeedbackAck::OUTCOME_REJECTED);
    ack.set_error(std::string(result.status().message()));
    return absl::OkStatus();
  }
  ack.set_outcome(result->duplicate ? v1::FeedbackAck::OUTCOME_DUPLICATE
                                    : v1::FeedbackAck::OUTCOME_APPLIED);
  ack.set_user_feedback_count(result->user_feedback_count);
  ack.set_predicted_chosen_probability(result->predicted_chosen_probability);
  ack.set_sequence(result->sequence);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* TailorService::SubmitFeedback(grpc::CallbackServerContext* context,
                                                        const v1::SubmitFeedbackRequest* request,
                                                        v1::FeedbackAck* response) {
  const CallRecord call{metrics_, Rpc::kSubmitFeedback};
  return Deferred(queue_, call, context, [this, request, response]() -> absl::Status {
    if (absl::Status s = ApplyFeedback(request->event(), *response); !s.ok()) return s;
    metrics_.RecordFeedback(*response);
    if (response->outcome() == v1::FeedbackAck::OUTCOME_REJECTED) {
      return absl::InvalidArgumentError(response->error());
    }
    return absl::OkStatus();
  });
}

grpc::ServerBidiReactor<v1::FeedbackEvent, v1::FeedbackAck>* TailorService::StreamFeedback(
    grpc::CallbackServerContext*) {
  if (open_streams_.fetch_add(1) >= config_.max_concurrent_streams) {
    open_streams_.fetch_sub(1);
    metrics_.RecordRpc(Rpc::kStreamFeedback, grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::ZeroDuration());
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     absl::StrCat("StreamFeedback: at most ", config_.max_concurrent_streams,
                                  " concurrent streams; retry later")));
  }
  return new FeedbackStream(*this);
}

grpc::ServerUnaryReactor* TailorService::SuggestComparison(
    grpc::CallbackServerContext* context, const v1::SuggestComparisonRequest* request,
    v1::SuggestComparisonResponse* response) {
  const CallRecord call{metrics_, Rpc::kSuggestComparison};
  for (absl::Status s : {ValidateId("user_id", request->user_id()),
                         ValidateCandidates(request->candidates(), 2, config_.max_candidates)}) {
    if (!s.ok()) return Done(call, context, s);
  }
  absl::StatusOr<engine::Comparison> pair =
      engine_.Suggest(request->user_id(), ToCandidates(request->candidates()));
  if (!pair.ok()) return Done(call, context, pair.status());
  response->set_first_id(request->candidates(pair->first).id());
  response->set_second_id(request->candidates(pair->second).id());
  response->set_probability_first_preferred(pair->probability_first);
  response->set_expected_information_bits(pair->information_bits);
  return Done(call, context, absl::OkStatus());
}

grpc::ServerUnaryReactor* TailorService::GetUser(grpc::CallbackServerContext* context,
                                                 const v1::GetUserRequest* request,
                                                 v1::UserProfile* response) {
  const CallRecord call{metrics_, Rpc::kGetUser};
  if (absl::Status s = ValidateId("user_id", request->user_id()); !s.ok()) {
    return Done(call, context, s);
  }
  absl::StatusOr<engine::UserProfile> profile = engine_.GetUser(request->user_id());
  if (!profile.ok()) return Done(call, context, profile.status());
  FillProfile(request->user_id(), *profile, *response);
  return Done(call, context, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::ExportUserResponse>* TailorService::ExportUser(
    grpc::CallbackServerContext* context, const v1::ExportUserRequest* request) {
  return new ExportWriter(*this, context, request->user_id());
}

grpc::ServerUnaryReactor* TailorService::DeleteUser(grpc::CallbackServerContext* context,
                                                    const v1::DeleteUserRequest* request,
                                                    v1::DeleteUserResponse* response) {
  const CallRecord call{metrics_, Rpc::kDeleteUser};
  if (absl::Status s = ValidateId("user_id", request->user_id()); !s.ok()) {
    return Done(call, context, s);
  }
  return Deferred(queue_, call, context, [this, request, response]() -> absl::Status {
    absl::StatusOr<storage::DeletedUser> deleted = engine_.DeleteUser(request->user_id());
    if (!deleted.ok()) return deleted.status();
    response->set_existed(deleted->existed);
    response->set_feedback_events_deleted(deleted->history_records);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TailorService::GetServerInfo(grpc::CallbackServerContext* context,
                                                       const v1::GetServerInfoRequest*,
                                                       v1::ServerInfo* response) {
  const CallRecord call{metrics_, Rpc::kGetServerInfo};
  response->set_version(kTailorVersion);
  v1::Schema* schema = response->mutable_schema();
  for (const model::FeatureSpec& spec : engine_.schema().features()) {
    v1::Feature* feature = schema->add_features();
    feature->set_name(spec.name);
    feature->set_mean(spec.mean);
    feature->set_sd(spec.sd);
  }
  schema->set_fingerprint(engine_.schema().fingerprint());
  v1::Limits* limits = response->mutable_limits();
  limits->set_max_candidates(static_cast<uint32_t>(config_.max_candidates));
  limits->set_max_id_bytes(kMaxIdBytes);
  limits->set_max_message_bytes(static_cast<uint32_t>(config_.max_message_bytes));
  limits->set_max_concurrent_streams(static_cast<uint32_t>(config_.max_concurrent_streams));
  const engine::EngineStats stats = engine_.Stats();
  response->set_users(stats.users);
  response->set_established_users(stats.established_users);
  response->set_feedback_events(stats.feedback_events);
  response->set_durability(engine_.store().sync_wal() ? "wal+fsync" : "wal");
  return Done(call, context, absl::OkStatus());
}

TailorAdminService::TailorAdminService(engine::PreferenceEngine& engine, WorkQueue& queue,
                                       Metrics& metrics)
    : engine_(engine), queue_(queue), metrics_(metrics) {}

grpc::ServerUnaryReactor* TailorAdminService::CreateCheckpoint(
    grpc::CallbackServerContext* context, const v1::CreateCheckpointRequest* request,
    v1::CreateCheckpointResponse* response) {
  const CallRecord call{metrics_, Rpc::kCreateCheckpoint};
  const std::filesystem::path directory(request->directory());
  if (!directory.is_absolute()) {
    return Done(call, context, absl::InvalidArgumentError("directory: must be an absolute path"));
  }
  return Deferred(queue_, call, context, [this, request, response]() -> absl::Status {
    absl::StatusOr<uint64_t> sequence = engine_.store().CreateCheckpoint(request->directory());
    if (!sequence.ok()) return sequence.status();
    response->set_directory(request->directory());
    response->set_sequence_number(*sequence);
    return absl::OkStatus();
  });
}

}  // namespace tailor::server

#include "server/tailor_service.h"

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"
#include "proto/partition_routing.h"
#include "proto/routing_header.h"
#include "server/message_parsing.h"
#include "server/request_validation.h"
#include "server/version.h"

namespace tailor::server {

// Where a unary call finishes: the status goes to the client and into the metrics, and on
// success the typed response is serialized into the raw method's reply.
struct CallRecord {
  Metrics& metrics;
  Rpc rpc;
  absl::Time start = absl::Now();
  const google::protobuf::Message* response = nullptr;
  grpc::ByteBuffer* reply = nullptr;
  // Owns the call's typed request and response while any copy of this record is alive.
  std::shared_ptr<const void> messages;

  void Finish(grpc::ServerUnaryReactor* reactor, grpc::Status status) const;
};

namespace {

// Serializes `message` into a raw reply.
bool ToBuffer(const google::protobuf::Message& message, grpc::ByteBuffer* out) {
  bool own_buffer = false;
  return grpc::GenericSerialize<grpc::ProtoBufferWriter, google::protobuf::Message>(message, out,
                                                                                    &own_buffer)
      .ok();
}

// Parses a raw request; `what` names the message in errors.
absl::Status Parse(const grpc::ByteBuffer& raw, google::protobuf::Message& into,
                   absl::string_view what = "request") {
  grpc::ByteBuffer copy(raw);  // deserializing consumes the buffer; slices are shared
  if (grpc::GenericDeserialize<grpc::ProtoBufferReader, google::protobuf::Message>(&copy, &into)
          .ok()) {
    return absl::OkStatus();
  }
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (raw.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  into.Clear();
  return ParseFailure(bytes, *into.GetDescriptor(), what);
}

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
  out.set_effective_pairs(profile.effective_pairs);
  for (double m : profile.weight_mean) out.add_weight_mean(m);
  for (double s : profile.weight_stddev) out.add_weight_stddev(s);
  out.set_knowledge_source(ToProto(profile.source));
  out.set_first_feedback_micros(profile.first_feedback_micros);
  out.set_last_feedback_micros(profile.last_feedback_micros);
}

std::optional<absl::string_view> Metadata(const grpc::CallbackServerContext* context,
                                          absl::string_view key) {
  const auto& metadata = context->client_metadata();
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  if (it == metadata.end()) return std::nullopt;
  return absl::string_view(it->second.data(), it->second.size());
}

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

// A raw unary method: parses the request and hands it to the typed `handler`. A request that
// cannot be parsed is refused INVALID_ARGUMENT, unless the caller is not admitted at all.
template <typename Request, typename Response, typename Service>
grpc::ServerUnaryReactor* Unary(
    Service& service, Metrics& metrics, const Authenticator* auth, TenantQuotas* quotas,
    const ServerConfig& config, Rpc rpc, grpc::CallbackServerContext* context,
    const grpc::ByteBuffer* request, grpc::ByteBuffer* reply,
    grpc::ServerUnaryReactor* (Service::*handler)(const CallRecord&, grpc::CallbackServerContext*,
                                                  const Request*, Response*)) {
  auto messages = std::make_shared<std::pair<Request, Response>>();
  const CallRecord call{metrics, rpc, absl::Now(), &messages->second, reply, messages};
  if (absl::Status parsed = Parse(*request, messages->first); !parsed.ok()) {
    absl::Status admitted =
        Admit(context, auth, quotas, config, &metrics, service.ready()).status();
    return Done(call, context, admitted.ok() ? parsed : admitted);
  }
  return (service.*handler)(call, context, &messages->first, &messages->second);
}

// Cluster mode: a call for a user whose partition another shard owns is made there (on the
// work queue: it waits for the owner). Returns the call's reactor when it went elsewhere (or
// could not be routed), null to serve it here.
template <typename Request, typename Response>
grpc::ServerUnaryReactor* MaybeForward(
    TailorService& service, const CallRecord& call, grpc::CallbackServerContext* context,
    const CallScope& scope, const std::string& storage_id,
    grpc::Status (v1::Tailor::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request* request, Response* response) {
  absl::StatusOr<std::optional<std::string>> owner = service.OwnerAddress(scope, storage_id);
  if (!owner.ok()) return Done(call, context, owner.status());
  if (!owner->has_value()) return nullptr;
  service.metrics().RecordForwarded(call.rpc);
  return Deferred(service.queue(), call, context,
                  [&service, forward = scope.forward, address = **owner, method, request,
                   response]() -> absl::Status {
                    return service.forwarder()->Unary(forward, address, method, *request, response);
                  });
}

// One StreamFeedback call. Up to `window` events are read ahead of their acks: reading goes
// on while earlier events are applied, and whatever arrived meanwhile is applied in the next
// work-queue task, in order, and committed as one durable write (group commit: one WAL write
// for the batch), so one stream costs one task and one write per batch rather than per event.
// A batch whose write fails is acked not at all, and the stream ends with the error.
// Acks go out in event order, one write at a time, each without a buffer hint: gRPC may hold a
// hinted write until the next one, which here only starts once that write is done. The window
// bounds the server memory a stream can hold; a faster producer is held back by HTTP/2 flow
// control.
//
// gRPC operations are started outside `mu_`: a reaction may run on another thread at once.
//
// Events arrive as bytes: one that cannot be parsed is answered, in its place, by a REJECTED ack
// naming the field and the rule, and the stream goes on (a silent end would leave the events
// after it neither acked nor stored behind an OK).
class FeedbackStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  FeedbackStream(TailorService& service, CallScope scope, int window)
      : service_(service), scope_(std::move(scope)), window_(window) {
    service_.metrics().StreamOpened();
    reading_ = true;
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    bool read_more = false;
    bool apply = false;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (!ok) {  // the client closed its side (or the call ended)
        reads_closed_ = true;
      } else if (failure_.has_value()) {
        // The stream has failed (a quota, a storage fault) and may already be finished: an
        // event read now is dropped unacked like the rest after the failure. Queueing it would
        // post work that could outlive the stream (gRPC deletes it once this reaction returns).
        reads_closed_ = true;
      } else {
        pending_.emplace_back().Swap(&incoming_);
        received_at_.push_back(absl::Now());
        ++in_flight_;
        apply = !applying_;
        applying_ = true;
        read_more = reading_ = CanReadLocked();
      }
    }
    if (apply) service_.queue().Post([this] { ApplyPending(); });
    if (read_more) StartRead(&incoming_);
    MaybeFinish();
  }

  void OnWriteDone(bool ok) override {
    const grpc::ByteBuffer* next = nullptr;
    bool read_more = false;
    {
      absl::MutexLock lock(&mu_);
      acks_.pop_front();
      --in_flight_;
      if (!ok) {
        Fail(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken while acking"));
      } else if (!acks_.empty()) {
        next = &acks_.front();
      }
      writing_ = next != nullptr;
      read_more = !reading_ && CanReadLocked();
      reading_ = reading_ || read_more;
    }
    if (next != nullptr) StartWrite(next);
    if (read_more) StartRead(&incoming_);
    MaybeFinish();
  }

  void OnDone() override {
    service_.metrics().StreamClosed();
    service_.open_streams().fetch_sub(1);
    delete this;
  }

 private:
  // On the work queue: applies the events read so far, then any that arrived meanwhile.
  //
  // This runs outside gRPC's reactions, so once `applying_` is cleared the stream may finish
  // and be deleted by a reaction on another thread at any moment: whether this task finishes
  // it is decided in the same critical section, and nothing of `this` is touched after that
  // unless it did.
  void ApplyPending() {
    std::optional<grpc::Status> finish;
    for (;;) {
      std::deque<grpc::ByteBuffer> batch;
      std::deque<absl::Time> received_at;
      {
        absl::MutexLock lock(&mu_);
        if (pending_.empty() || failure_.has_value()) {
          applying_ = false;
          finish = FinishLocked();
          break;
        }
        batch.swap(pending_);
        received_at.swap(received_at_);
      }
      // The events that parse are applied together (one durable write for the batch); each
      // one that does not is answered in its place.
      std::vector<v1::FeedbackEvent> events(batch.size());
      std::vector<std::optional<v1::FeedbackAck>> unparsable(batch.size());
      std::vector<const v1::FeedbackEvent*> parsed;
      for (size_t i = 0; i < batch.size(); ++i) {
        ++received_;
        if (absl::Status s = Parse(batch[i], events[i], "event"); !s.ok()) {
          v1::FeedbackAck& ack = unparsable[i].emplace();
          ack.set_outcome(v1::FeedbackAck::OUTCOME_REJECTED);
          ack.set_error(absl::StrCat(s.message(), " (event ", received_, " of this stream)"));
        } else {
          parsed.push_back(&events[i]);
        }
      }
      // Every event counts against the tenant's quota: the events within it are applied and
      // acked, and the stream ends RESOURCE_EXHAUSTED at the first one beyond it.
      size_t end = batch.size();
      std::optional<grpc::Status> over_quota;
      if (scope_.quotas != nullptr && !parsed.empty()) {
        const uint64_t allowed = scope_.quotas->TakeUpTo(scope_.tenant, parsed.size());
        if (allowed < parsed.size()) {
          service_.metrics().RecordQuotaRefusal(scope_.tenant, parsed.size() - allowed);
          over_quota = ToGrpc(scope_.quotas->Exhausted(scope_.tenant));
          for (size_t i = 0, seen = 0; i < batch.size(); ++i) {
            if (unparsable[i].has_value()) continue;
            if (seen++ == allowed) {
              end = i;
              break;
            }
          }
          parsed.resize(allowed);
        }
      }
      std::deque<grpc::ByteBuffer> applied;
      std::optional<grpc::Status> failure;
      std::vector<v1::FeedbackAck> acks;
      std::vector<char> forwarded;  // cluster mode: applied and counted by another shard
      if (absl::Status status = service_.ApplyFeedbackBatch(scope_, parsed, acks, &forwarded);
          !status.ok()) {
        failure = ToGrpc(status);  // a storage fault, not bad input: the stream ends here
      } else {
        // Each event's wait from being read off the stream to its durable outcome.
        const absl::Time durable = absl::Now();
        for (absl::Time received : received_at) {
          service_.metrics().RecordAckLatency(durable - received);
        }
      }
      for (size_t i = 0, next = 0; i < end && !failure.has_value(); ++i) {
        const bool elsewhere =
            !unparsable[i].has_value() && next < forwarded.size() && forwarded[next] != 0;
        const v1::FeedbackAck& ack = unparsable[i].has_value() ? *unparsable[i] : acks[next++];
        if (!elsewhere) service_.metrics().RecordFeedback(ack);
        if (!ToBuffer(ack, &applied.emplace_back())) {
          applied.pop_back();
          failure = grpc::Status(grpc::StatusCode::INTERNAL, "ack: could not be serialized");
        }
      }
      if (!failure.has_value()) failure = std::move(over_quota);
      const grpc::ByteBuffer* first = nullptr;
      {
        absl::MutexLock lock(&mu_);
        // Events never applied count as no longer in flight.
        in_flight_ -= static_cast<int>(batch.size() - applied.size());
        for (grpc::ByteBuffer& ack : applied) acks_.emplace_back().Swap(&ack);
        if (failure.has_value()) Fail(*std::move(failure));
        if (!writing_ && !acks_.empty()) {
          writing_ = true;
          first = &acks_.front();
        }
      }
      if (first != nullptr) StartWrite(first);
    }
    if (finish.has_value()) End(*finish);
  }

  bool CanReadLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !reads_closed_ && !failure_.has_value() && in_flight_ < window_;
  }

  void Fail(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!failure_.has_value()) failure_ = std::move(status);
  }

  // Finishes once nothing is left to apply or write: after the client closed its side, or
  // after a failure (whose unapplied events are dropped unacked; the client sees the status).
  // From reactions only (gRPC does not delete the reactor while one runs).
  void MaybeFinish() {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      finish = FinishLocked();
    }
    if (finish.has_value()) End(*finish);
  }

  // The status to finish with now, if the stream is done; the caller must then End() it.
  std::optional<grpc::Status> FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || applying_ || writing_) return std::nullopt;
    grpc::Status status;
    if (failure_.has_value()) {
      status = *failure_;
    } else if (!reads_closed_ || !pending_.empty() || !acks_.empty()) {
      return std::nullopt;
    }
    finished_ = true;
    return status;
  }

  // The last use of `this`: after Finish, OnDone may delete the stream.
  void End(const grpc::Status& status) {
    // A read still outstanding after a failure completes once the call is finished (with or
    // without an event, which OnReadDone then drops).
    service_.metrics().RecordRpc(Rpc::kStreamFeedback, status.error_code(), absl::Now() - start_);
    Finish(status);
  }

  const absl::Time start_ = absl::Now();
  TailorService& service_;
  const CallScope scope_;
  const int window_;
  grpc::ByteBuffer incoming_;  // the target of the outstanding read, if any
  int64_t received_ = 0;       // events taken from the stream (on the work queue only)

  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> pending_ ABSL_GUARDED_BY(mu_);  // read, not yet applied
  std::deque<absl::Time> received_at_ ABSL_GUARDED_BY(mu_);    // when each of them was read
  std::deque<grpc::ByteBuffer> acks_ ABSL_GUARDED_BY(mu_);     // front: being written if writing_
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;                     // read and neither acked nor dropped
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool applying_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> failure_ ABSL_GUARDED_BY(mu_);
};

class RefusedStream final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit RefusedStream(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class ExportWriter final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // `parsed`: whether the request could be parsed (and `user_id` read from it).
  ExportWriter(TailorService& service, grpc::CallbackServerContext* context, std::string user_id,
               const absl::Status& parsed)
      : metrics_(service.metrics()), context_(context), user_id_(std::move(user_id)) {
    absl::StatusOr<CallScope> scope = service.Admit(context);
    for (absl::Status s : {scope.status(), parsed, ValidateId("user_id", user_id_),
                           scope.ok() ? scope->CheckRouting(user_id_) : absl::OkStatus()}) {
      if (!s.ok()) {
        End(ToGrpc(s));
        return;
      }
    }
    service.queue().Post([this, &service, scope = *scope, storage_id = scope->StorageId(user_id_)] {
      if (context_->IsCancelled()) {
        End(grpc::Status(grpc::StatusCode::CANCELLED, "abandoned: call cancelled"));
        return;
      }
      absl::StatusOr<std::optional<std::string>> owner = service.OwnerAddress(scope, storage_id);
      if (!owner.ok()) {
        End(ToGrpc(owner.status()));
        return;
      }
      if (owner->has_value()) {  // cluster mode: the owner's answer, message by message
        service.metrics().RecordForwarded(Rpc::kExportUser);
        v1::ExportUserRequest request;
        request.set_user_id(user_id_);
        if (absl::Status s =
                service.forwarder()->Export(scope.forward, **owner, request, forwarded_);
            !s.ok() || forwarded_.empty()) {
          End(ToGrpc(s));
          return;
        }
        remote_ = true;
        message_ = forwarded_[next_++];
        Write();
        return;
      }
      absl::StatusOr<engine::UserExport> exported = service.engine().ExportUser(storage_id);
      if (!exported.ok()) {
        End(ToGrpc(exported.status()));
        return;
      }
      export_ = *std::move(exported);
      FillProfile(user_id_, export_.profile, *message_.mutable_profile());
      Write();
    });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (remote_) {
      if (next_ == forwarded_.size()) {
        End(grpc::Status::OK);
      } else {
        message_ = forwarded_[next_++];
        Write();
      }
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
    out->set_schema_version(std::max<uint32_t>(1, r.schema_version()));
    v1::FeedbackEvent* event = out->mutable_event();
    event->set_event_id(r.event_id());
    event->set_user_id(user_id_);
    event->set_prompt_id(r.prompt_id());
    event->mutable_chosen()->set_id(r.chosen_id());
    event->mutable_chosen()->mutable_features()->CopyFrom(r.chosen_features());
    event->mutable_rejected()->set_id(r.rejected_id());
    event->mutable_rejected()->mutable_features()->CopyFrom(r.rejected_features());
    event->set_timestamp_micros(r.timestamp_micros());
    Write();
  }

  void OnDone() override { delete this; }

 private:
  void Write() {
    out_.Clear();
    if (!ToBuffer(message_, &out_)) {
      End(grpc::Status(grpc::StatusCode::INTERNAL, "export: could not be serialized"));
      return;
    }
    StartWrite(&out_);
  }

  void End(const grpc::Status& status) {
    metrics_.RecordRpc(Rpc::kExportUser, status.error_code(), absl::Now() - start_);
    Finish(status);
  }

  Metrics& metrics_;
  const absl::Time start_ = absl::Now();
  grpc::CallbackServerContext* context_;
  std::string user_id_;  // as the caller names the user (not the storage id)
  engine::UserExport export_;
  // Cluster mode: the owner's messages, when the user's partition is another shard's.
  bool remote_ = false;
  std::vector<v1::ExportUserResponse> forwarded_;
  size_t next_ = 0;
  v1::ExportUserResponse message_;
  grpc::ByteBuffer out_;  // message_, serialized for the write in progress
};

}  // namespace

void CallRecord::Finish(grpc::ServerUnaryReactor* reactor, grpc::Status status) const {
  if (status.ok() && reply != nullptr && !ToBuffer(*response, reply)) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "response: could not be serialized");
  }
  metrics.RecordRpc(rpc, status.error_code(), absl::Now() - start);
  reactor->Finish(status);
}

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

std::string CallScope::StorageId(absl::string_view user_id) const {
  return StorageIdOf(tenant, user_id);
}

absl::Status CallScope::CheckRouting(absl::string_view user_id) const {
  if (routed_user.has_value() && *routed_user != user_id) {
    if (metrics != nullptr) metrics->RecordRoutingRefusal(RoutingRefusal::kMismatch);
    return absl::InvalidArgumentError(
        absl::StrCat("x-user-id: metadata '", *routed_user, "' does not match user_id '", user_id,
                     "'; a router hashing the header would split this user across shards"));
  }
  if (!routed_user.has_value() && require_routed_user) {
    if (metrics != nullptr) metrics->RecordRoutingRefusal(RoutingRefusal::kMissing);
    return absl::InvalidArgumentError(
        "x-user-id: metadata required (--require_user_header) so the router keeps each user "
        "on one shard");
  }
  return absl::OkStatus();
}

absl::StatusOr<CallScope> Admit(const grpc::CallbackServerContext* context,
                                const Authenticator* auth, TenantQuotas* quotas,
                                const ServerConfig& config, Metrics* metrics, bool ready) {
  if (!ready) {
    return absl::UnavailableError(
        "starting: tailord is loading its users (see tailor_startup_users_loaded); retry "
        "shortly");
  }
  CallScope scope;
  scope.metrics = metrics;
  if (auth != nullptr) {
    absl::StatusOr<Grant> grant =
        auth->Authenticate(Metadata(context, "authorization").value_or(""));
    if (!grant.ok()) return grant.status();
    scope.tenant = grant->tenant;
    scope.admin = grant->admin;
  }
  if (quotas != nullptr) {
    scope.quotas = quotas;
    if (absl::Status within = quotas->Take(scope.tenant); !within.ok()) {
      if (metrics != nullptr) metrics->RecordQuotaRefusal(scope.tenant, 1);
      return within;
    }
  }
  if (std::optional<absl::string_view> routed = Metadata(context, kRoutingHeader)) {
    scope.routed_user = DecodeRoutingHeader(*routed);
    if (!scope.routed_user.has_value()) {
      if (metrics != nullptr) metrics->RecordRoutingRefusal(RoutingRefusal::kMalformed);
      return absl::InvalidArgumentError(
          "x-user-id: invalid percent-encoding (a '%' must be followed by two hex digits)");
    }
  }
  scope.require_routed_user = config.require_user_header;
  scope.forward = Forwarder::From(*context);
  scope.forwarded = Forwarder::IsForwarded(*context);
  return scope;
}

TailorService::TailorService(engine::PreferenceEngine& engine, WorkQueue& queue, Metrics& metrics,
                             const ServerConfig& config, const Authenticator* auth,
                             TenantQuotas* quotas, const std::atomic<bool>& ready)
    : engine_(engine),
      queue_(queue),
      metrics_(metrics),
      config_(config),
      auth_(auth),
      quotas_(quotas),
      ready_(ready) {}

grpc::ServerUnaryReactor* TailorService::RankResponses(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kRankResponses, context, request,
               reply, &TailorService::Rank);
}

grpc::ServerUnaryReactor* TailorService::SubmitFeedback(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kSubmitFeedback, context, request,
               reply, &TailorService::Submit);
}

grpc::ServerUnaryReactor* TailorService::SuggestComparison(grpc::CallbackServerContext* context,
                                                           const grpc::ByteBuffer* request,
                                                           grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kSuggestComparison, context, request,
               reply, &TailorService::Suggest);
}

grpc::ServerUnaryReactor* TailorService::GetUser(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* request,
                                                 grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kGetUser, context, request, reply,
               &TailorService::User);
}

grpc::ServerUnaryReactor* TailorService::DeleteUser(grpc::CallbackServerContext* context,
                                                    const grpc::ByteBuffer* request,
                                                    grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kDeleteUser, context, request, reply,
               &TailorService::Delete);
}

grpc::ServerUnaryReactor* TailorService::GetServerInfo(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kGetServerInfo, context, request,
               reply, &TailorService::Info);
}

grpc::ServerUnaryReactor* TailorService::Rank(const CallRecord& call,
                                              grpc::CallbackServerContext* context,
                                              const v1::RankResponsesRequest* request,
                                              v1::RankResponsesResponse* response) {
  // CPU only, no storage: computed inline.
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) return Done(call, context, scope.status());
  for (absl::Status s : {ValidateId("user_id", request->user_id()),
                         ValidateCandidates(request->candidates(), 1, config_.max_candidates),
                         scope->CheckRouting(request->user_id())}) {
    if (!s.ok()) return Done(call, context, s);
  }
  if (grpc::ServerUnaryReactor* elsewhere =
          MaybeForward(*this, call, context, *scope, scope->StorageId(request->user_id()),
                       &v1::Tailor::Stub::RankResponses, request, response)) {
    return elsewhere;
  }
  absl::StatusOr<engine::RankResult> result =
      engine_.Rank(scope->StorageId(request->user_id()), ToCandidates(request->candidates()),
                   request->options().explore());
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

namespace {

// The engine's input for an event, or INVALID_ARGUMENT naming what is wrong with it. The input
// points into `event`, which must outlive it.
absl::StatusOr<engine::FeedbackInput> FeedbackInputFor(const CallScope& scope,
                                                       const v1::FeedbackEvent& event) {
  if (absl::Status valid = ValidateFeedbackEvent(event); !valid.ok()) return valid;
  if (absl::Status routed = scope.CheckRouting(event.user_id()); !routed.ok()) return routed;
  engine::FeedbackInput input;
  input.event_id = event.event_id();
  input.user_id = scope.StorageId(event.user_id());
  input.prompt_id = event.prompt_id();
  input.chosen = ToCandidate(event.chosen());
  input.rejected = ToCandidate(event.rejected());
  input.timestamp_micros = event.timestamp_micros();
  return input;
}

}  // namespace

absl::Status TailorService::AckFeedback(const absl::StatusOr<engine::FeedbackResult>& result,
                                        v1::FeedbackAck& ack) {
  if (!result.ok()) {
    if (result.status().code() != absl::StatusCode::kInvalidArgument) return result.status();
    ack.set_outcome(v1::FeedbackAck::OUTCOME_REJECTED);
    ack.set_error(std::string(result.status().message()));
    return absl::OkStatus();
  }
  if (!result->duplicate) {
    metrics_.RecordSources(result->user_feedback_count - 1, result->source_probability);
  }
  ack.set_outcome(result->duplicate ? v1::FeedbackAck::OUTCOME_DUPLICATE
                                    : v1::FeedbackAck::OUTCOME_APPLIED);
  ack.set_user_feedback_count(result->user_feedback_count);
  ack.set_predicted_chosen_probability(result->predicted_chosen_probability);
  ack.set_sequence(result->sequence);
  return absl::OkStatus();
}

absl::Status TailorService::ApplyFeedback(const CallScope& scope, const v1::FeedbackEvent& event,
                                          v1::FeedbackAck& ack, bool* forwarded) {
  ack.set_event_id(event.event_id());
  if (forwarded != nullptr) *forwarded = false;
  absl::StatusOr<engine::FeedbackInput> input = FeedbackInputFor(scope, event);
  if (!input.ok() || cluster_ == nullptr) {
    return AckFeedback(input.ok() ? engine_.RecordFeedback(*input)
                                  : absl::StatusOr<engine::FeedbackResult>(input.status()),
                       ack);
  }
  // Cluster mode: through the log here, or at the owner. A partition that moves while the
  // event waits is routed once more.
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::optional<std::string>> owner = OwnerAddress(scope, input->user_id);
    if (!owner.ok()) return owner.status();
    if (owner->has_value()) {
      metrics_.RecordForwarded(Rpc::kSubmitFeedback);
      if (forwarded != nullptr) *forwarded = true;
      v1::SubmitFeedbackRequest request;
      *request.mutable_event() = event;
      absl::Status at_owner = forwarder_->Unary(scope.forward, **owner,
                                                &v1::Tailor::Stub::SubmitFeedback, request, &ack);
      if (at_owner.code() == absl::StatusCode::kInvalidArgument) {
        ack.set_event_id(event.event_id());
        ack.set_outcome(v1::FeedbackAck::OUTCOME_REJECTED);
        ack.set_error(std::string(at_owner.message()));
        return absl::OkStatus();
      }
      return at_owner;
    }
    absl::StatusOr<engine::FeedbackResult> result = cluster_->RecordFeedback(*input);
    if (result.status().code() == absl::StatusCode::kAborted) {
      if (attempt == 0) continue;
      return absl::UnavailableError(result.status().message());
    }
    return AckFeedback(result, ack);
  }
}

void TailorService::SetCluster(cluster::ClusterShard* cluster,
                               std::shared_ptr<grpc::ChannelCredentials> shards) {
  cluster_ = cluster;
  forwarder_ = cluster == nullptr
                   ? nullptr
                   : std::make_unique<Forwarder>(config_.shard_name, std::move(shards));
}

absl::StatusOr<std::optional<std::string>> TailorService::OwnerAddress(
    const CallScope& scope, const std::string& storage_id) const {
  if (cluster_ == nullptr) return std::nullopt;
  absl::StatusOr<cluster::ClusterShard::Owner> owner = cluster_->OwnerOf(storage_id);
  if (!owner.ok()) return owner.status();
  if (owner->local) return std::nullopt;
  if (scope.forwarded) {
    return absl::UnavailableError(absl::StrCat("cluster: a call forwarded here belongs to shard '",
                                               owner->shard, "' (partition ", owner->partition,
                                               " moved just now); retry"));
  }
  return owner->address;
}

absl::Status TailorService::ApplyFeedbackBatch(const CallScope& scope,
                                               std::span<const v1::FeedbackEvent* const> events,
                                               std::vector<v1::FeedbackAck>& acks,
                                               std::vector<char>* forwarded) {
  if (cluster_ != nullptr) {
    // Cluster mode: each event through the log of its partition (or at its owner).
    acks.assign(events.size(), v1::FeedbackAck());
    if (forwarded != nullptr) forwarded->assign(events.size(), 0);
    for (size_t i = 0; i < events.size(); ++i) {
      bool elsewhere = false;
      if (absl::Status s = ApplyFeedback(scope, *events[i], acks[i], &elsewhere); !s.ok()) {
        return s;
      }
      if (forwarded != nullptr) (*forwarded)[i] = elsewhere;
    }
    return absl::OkStatus();
  }
  std::vector<absl::StatusOr<engine::FeedbackResult>> results(events.size(),
                                                              absl::InternalError("not applied"));
  std::vector<engine::FeedbackInput> inputs;
  std::vector<size_t> input_of;  // inputs[k] is events[input_of[k]]
  for (size_t i = 0; i < events.size(); ++i) {
    absl::StatusOr<engine::FeedbackInput> input = FeedbackInputFor(scope, *events[i]);
    if (!input.ok()) {
      results[i] = input.status();
      continue;
    }
    inputs.push_back(*std::move(input));
    input_of.push_back(i);
  }
  std::vector<absl::StatusOr<engine::FeedbackResult>> applied = engine_.RecordFeedbackBatch(inputs);
  for (size_t k = 0; k < applied.size(); ++k) results[input_of[k]] = std::move(applied[k]);
  acks.assign(events.size(), v1::FeedbackAck());
  for (size_t i = 0; i < events.size(); ++i) {
    acks[i].set_event_id(events[i]->event_id());
    if (absl::Status s = AckFeedback(results[i], acks[i]); !s.ok()) return s;
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* TailorService::Submit(const CallRecord& call,
                                                grpc::CallbackServerContext* context,
                                                const v1::SubmitFeedbackRequest* request,
                                                v1::FeedbackAck* response) {
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) return Done(call, context, scope.status());
  if (!request->has_event()) {
    return Done(call, context, absl::InvalidArgumentError("event: is required"));
  }
  return Deferred(
      queue_, call, context,
      [this, request, response, scope = *std::move(scope)]() -> absl::Status {
        bool forwarded = false;
        if (absl::Status s = ApplyFeedback(scope, request->event(), *response, &forwarded);
            !s.ok()) {
          return s;
        }
        if (!forwarded) metrics_.RecordFeedback(*response);  // else the owner did
        if (response->outcome() == v1::FeedbackAck::OUTCOME_REJECTED) {
          return absl::InvalidArgumentError(response->error());
        }
        return absl::OkStatus();
      });
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* TailorService::StreamFeedback(
    grpc::CallbackServerContext* context) {
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) {
    metrics_.RecordRpc(Rpc::kStreamFeedback, static_cast<grpc::StatusCode>(scope.status().code()),
                       absl::ZeroDuration());
    return new RefusedStream(ToGrpc(scope.status()));
  }
  if (open_streams_.fetch_add(1) >= config_.max_concurrent_streams) {
    open_streams_.fetch_sub(1);
    metrics_.RecordRpc(Rpc::kStreamFeedback, grpc::StatusCode::RESOURCE_EXHAUSTED,
                       absl::ZeroDuration());
    return new RefusedStream(
        grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     absl::StrCat("StreamFeedback: at most ", config_.max_concurrent_streams,
                                  " concurrent streams; retry later")));
  }
  return new FeedbackStream(*this, *std::move(scope), config_.stream_window_events);
}

grpc::ServerUnaryReactor* TailorService::Suggest(const CallRecord& call,
                                                 grpc::CallbackServerContext* context,
                                                 const v1::SuggestComparisonRequest* request,
                                                 v1::SuggestComparisonResponse* response) {
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) return Done(call, context, scope.status());
  for (absl::Status s : {ValidateId("user_id", request->user_id()),
                         ValidateCandidates(request->candidates(), 2, config_.max_candidates),
                         scope->CheckRouting(request->user_id())}) {
    if (!s.ok()) return Done(call, context, s);
  }
  if (grpc::ServerUnaryReactor* elsewhere =
          MaybeForward(*this, call, context, *scope, scope->StorageId(request->user_id()),
                       &v1::Tailor::Stub::SuggestComparison, request, response)) {
    return elsewhere;
  }
  absl::StatusOr<engine::Comparison> pair =
      engine_.Suggest(scope->StorageId(request->user_id()), ToCandidates(request->candidates()));
  if (!pair.ok()) return Done(call, context, pair.status());
  response->set_first_id(request->candidates(pair->first).id());
  response->set_second_id(request->candidates(pair->second).id());
  response->set_probability_first_preferred(pair->probability_first);
  response->set_expected_information_bits(pair->information_bits);
  return Done(call, context, absl::OkStatus());
}

grpc::ServerUnaryReactor* TailorService::User(const CallRecord& call,
                                              grpc::CallbackServerContext* context,
                                              const v1::GetUserRequest* request,
                                              v1::UserProfile* response) {
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) return Done(call, context, scope.status());
  for (absl::Status s :
       {ValidateId("user_id", request->user_id()), scope->CheckRouting(request->user_id())}) {
    if (!s.ok()) return Done(call, context, s);
  }
  if (grpc::ServerUnaryReactor* elsewhere =
          MaybeForward(*this, call, context, *scope, scope->StorageId(request->user_id()),
                       &v1::Tailor::Stub::GetUser, request, response)) {
    return elsewhere;
  }
  absl::StatusOr<engine::UserProfile> profile =
      engine_.GetUser(scope->StorageId(request->user_id()));
  if (!profile.ok()) return Done(call, context, profile.status());
  FillProfile(request->user_id(), *profile, *response);
  return Done(call, context, absl::OkStatus());
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TailorService::ExportUser(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  v1::ExportUserRequest parsed;
  const absl::Status status = Parse(*request, parsed);
  return new ExportWriter(*this, context, parsed.user_id(), status);
}

grpc::ServerUnaryReactor* TailorService::Delete(const CallRecord& call,
                                                grpc::CallbackServerContext* context,
                                                const v1::DeleteUserRequest* request,
                                                v1::DeleteUserResponse* response) {
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) return Done(call, context, scope.status());
  for (absl::Status s :
       {ValidateId("user_id", request->user_id()), scope->CheckRouting(request->user_id())}) {
    if (!s.ok()) return Done(call, context, s);
  }
  if (grpc::ServerUnaryReactor* elsewhere =
          MaybeForward(*this, call, context, *scope, scope->StorageId(request->user_id()),
                       &v1::Tailor::Stub::DeleteUser, request, response)) {
    return elsewhere;
  }
  return Deferred(
      queue_, call, context,
      [this, response, storage_id = scope->StorageId(request->user_id())]() -> absl::Status {
        absl::StatusOr<storage::DeletedUser> deleted =
            cluster_ == nullptr ? engine_.DeleteUser(storage_id) : cluster_->DeleteUser(storage_id);
        if (deleted.status().code() == absl::StatusCode::kAborted) {
          return absl::UnavailableError(
              absl::StrCat(deleted.status().message(), " (it moved meanwhile)"));
        }
        if (!deleted.ok()) return deleted.status();
        response->set_existed(deleted->existed);
        response->set_feedback_events_deleted(deleted->history_records);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* TailorService::Info(const CallRecord& call,
                                              grpc::CallbackServerContext* context,
                                              const v1::GetServerInfoRequest*,
                                              v1::ServerInfo* response) {
  absl::StatusOr<CallScope> scope = Admit(context);
  if (!scope.ok()) return Done(call, context, scope.status());
  response->set_version(kTailorVersion);
  v1::Schema* schema = response->mutable_schema();
  for (const model::FeatureSpec& spec : engine_.schema().features()) {
    v1::Feature* feature = schema->add_features();
    feature->set_name(spec.name);
    feature->set_mean(spec.mean);
    feature->set_sd(spec.sd);
  }
  schema->set_fingerprint(engine_.schema().fingerprint());
  schema->set_version(engine_.schema_history().current_version());
  v1::Limits* limits = response->mutable_limits();
  limits->set_max_candidates(static_cast<uint32_t>(config_.max_candidates));
  limits->set_max_id_bytes(kMaxIdBytes);
  limits->set_max_message_bytes(static_cast<uint32_t>(config_.max_message_bytes));
  limits->set_max_metadata_bytes(static_cast<uint32_t>(config_.max_metadata_bytes));
  limits->set_max_concurrent_streams(static_cast<uint32_t>(config_.max_concurrent_streams));
  const engine::EngineStats stats = engine_.Stats();
  if (scope->admin) {  // server-wide counts: no tenant sees the size of another's data
    response->set_users(stats.users);
    response->set_established_users(stats.established_users);
    response->set_feedback_events(stats.feedback_events);
  } else {  // the caller's tenant's own
    const engine::TenantCounts counts = engine_.CountsOf(scope->tenant);
    response->set_users(static_cast<uint64_t>(std::max<int64_t>(0, counts.users)));
    response->set_established_users(
        static_cast<uint64_t>(std::max<int64_t>(0, counts.established_users)));
    response->set_feedback_events(
        static_cast<uint64_t>(std::max<int64_t>(0, counts.feedback_events)));
  }
  response->set_durability(engine_.store().sync_wal() ? "wal+fsync" : "wal");
  response->set_shard(config_.shard_name);
  if (cluster_ != nullptr) {
    const cluster::ClusterShard::RoutingTable table = cluster_->Routing();
    v1::ClusterRouting* routing = response->mutable_cluster();
    routing->set_partitions(static_cast<uint32_t>(cluster_->partition_count()));
    routing->set_map_revision(table.map_revision);
    routing->set_partition_hash(kPartitionHashName);
    routing->set_tenant(scope->tenant);
    for (const auto& [name, address] : table.shards) {
      v1::ClusterShardAddress* shard = routing->add_shards();
      shard->set_name(name);
      shard->set_address(address);
    }
    for (int owner : table.owners) routing->add_owners(owner);
  }
  // The knowledge that serves the caller's tenant.
  const std::string group = engine_.KnowledgeGroupOfTenant(scope->tenant);
  const engine::KnowledgeSummary summary = engine_.KnowledgeOf(group);
  v1::Knowledge* knowledge = response->mutable_knowledge();
  knowledge->set_group(group);
  knowledge->set_version(summary.version);
  knowledge->set_as_of_micros(stats.knowledge_as_of_micros);
  knowledge->set_reference_users(summary.reference_users);
  knowledge->set_population_users(summary.population_users);
  const engine::TrustReport trust = engine_.Trust(group);
  knowledge->set_calibration_users(static_cast<uint64_t>(trust.trust.calibration_users));
  knowledge->set_prior_scale(trust.trust.prior_scale);
  knowledge->set_neighbour_temperature(trust.trust.neighbour_temperature);
  knowledge->set_own_model_log_prior_odds(trust.trust.own_log_prior_odds);
  for (size_t i = 0; i < trust.trust.levels.size(); ++i) {
    const model::ExperienceLevel& level = trust.trust.levels[i];
    v1::ExperienceWeights* weights = knowledge->add_experience();
    weights->set_min_pairs(static_cast<uint32_t>(level.min_pairs));
    weights->set_population(level.fitted.population);
    weights->set_own(level.fitted.own);
    weights->set_blend(level.fitted.blend);
    weights->set_live_fitted_share(trust.live_shares[i][engine::LiveGuard::kFitted]);
    weights->set_live_population_share(trust.live_shares[i][engine::LiveGuard::kPopulation]);
    weights->set_live_own_share(trust.live_shares[i][engine::LiveGuard::kOwn]);
  }
  return Done(call, context, absl::OkStatus());
}

TailorAdminService::TailorAdminService(engine::PreferenceEngine& engine, WorkQueue& queue,
                                       Metrics& metrics, const ServerConfig& config,
                                       const Authenticator* auth, TenantQuotas* quotas,
                                       const std::atomic<bool>& ready)
    : engine_(engine),
      queue_(queue),
      metrics_(metrics),
      config_(config),
      auth_(auth),
      quotas_(quotas),
      ready_(ready) {}

grpc::ServerUnaryReactor* TailorAdminService::CreateCheckpoint(grpc::CallbackServerContext* context,
                                                               const grpc::ByteBuffer* request,
                                                               grpc::ByteBuffer* reply) {
  return Unary(*this, metrics_, auth_, quotas_, config_, Rpc::kCreateCheckpoint, context, request,
               reply, &TailorAdminService::Checkpoint);
}

grpc::ServerUnaryReactor* TailorAdminService::Checkpoint(const CallRecord& call,
                                                         grpc::CallbackServerContext* context,
                                                         const v1::CreateCheckpointRequest* request,
                                                         v1::CreateCheckpointResponse* response) {
  absl::StatusOr<CallScope> scope =
      Admit(context, auth_, quotas_, config_, &metrics_, ready_.load());
  if (!scope.ok()) return Done(call, context, scope.status());
  if (!scope->admin) {
    return Done(call, context,
                absl::PermissionDeniedError("authorization: TailorAdmin needs an admin token"));
  }
  return Deferred(queue_, call, context, [this, request, response]() -> absl::Status {
    absl::StatusOr<uint64_t> sequence = engine_.store().CreateCheckpoint(request->directory());
    if (!sequence.ok()) return sequence.status();
    response->set_directory(request->directory());
    response->set_sequence_number(*sequence);
    response->set_shard(config_.shard_name);
    return absl::OkStatus();
  });
}

}  // namespace tailor::server

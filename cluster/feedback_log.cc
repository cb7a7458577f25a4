#include "cluster/feedback_log.h"

#include <nats/nats.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cluster/nats_connection.h"
#include "proto/partition_routing.h"

namespace tailor::cluster {
namespace {

constexpr char kExpectedLastSubjectSequence[] = "Nats-Expected-Last-Subject-Sequence";

}  // namespace

FeedbackLog::FeedbackLog(FeedbackLogOptions options, std::shared_ptr<NatsConnection> nats)
    : options_(std::move(options)), nats_(std::move(nats)) {}

FeedbackLog::~FeedbackLog() = default;

int FeedbackLog::PartitionOf(absl::string_view storage_id, int partitions) {
  return tailor::PartitionOf(storage_id, partitions);
}

std::string FeedbackLog::SubjectOf(int partition) const {
  return absl::StrCat(options_.subject_prefix, ".", partition);
}

absl::StatusOr<std::unique_ptr<FeedbackLog>> FeedbackLog::Open(const FeedbackLogOptions& options) {
  absl::StatusOr<std::unique_ptr<NatsConnection>> connection =
      NatsConnection::Connect(options.url, options.timeout);
  if (!connection.ok()) return connection.status();
  return Open(options, *std::move(connection));
}

absl::StatusOr<std::unique_ptr<FeedbackLog>> FeedbackLog::Open(
    const FeedbackLogOptions& options, std::shared_ptr<NatsConnection> nats) {
  if (options.partitions < 1) return absl::InvalidArgumentError("partitions: must be at least 1");
  if (options.replicas < 1) return absl::InvalidArgumentError("replicas: must be at least 1");
  natsStatus s = NATS_OK;

  const std::string wildcard = absl::StrCat(options.subject_prefix, ".*");
  // The partition count is part of the log's identity: another count would hash users to
  // other partitions. It is kept in the stream's description.
  const std::string description =
      absl::StrCat("Tailor feedback log, partitions=", options.partitions);
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfo* info = nullptr;
  s = js_GetStreamInfo(&info, nats->js(), options.stream.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    const bool same = info->Config->SubjectsLen == 1 && wildcard == info->Config->Subjects[0] &&
                      info->Config->Description != nullptr &&
                      description == info->Config->Description;
    const std::string found = info->Config->Description == nullptr ? "" : info->Config->Description;
    jsStreamInfo_Destroy(info);
    if (!same) {
      return absl::FailedPreconditionError(
          absl::StrCat("nats: stream ", options.stream, " exists as '", found,
                       "' on other subjects or partitions than ", wildcard, " and ",
                       options.partitions, " partitions"));
    }
  } else if (s == NATS_NOT_FOUND) {
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    config.Name = options.stream.c_str();
    config.Description = description.c_str();
    const char* subjects[] = {wildcard.c_str()};
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = options.replicas;
    config.Duplicates = absl::ToInt64Nanoseconds(options.duplicate_window);
    s = js_AddStream(nullptr, nats->js(), &config, nullptr, &code);
    if (s != NATS_OK) return FromNats(s, code, "create stream " + options.stream);
  } else {
    return FromNats(s, code, "stream info of " + options.stream);
  }
  return std::unique_ptr<FeedbackLog>(new FeedbackLog(options, std::move(nats)));
}

absl::StatusOr<FeedbackLog::Appended> FeedbackLog::Append(int partition,
                                                          absl::string_view message_id,
                                                          absl::string_view payload,
                                                          std::optional<uint64_t> expected_last) {
  if (partition < 0 || partition >= options_.partitions) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", partition, " is out of range"));
  }
  const std::string id(message_id);
  jsPubOptions publish;
  jsPubOptions_Init(&publish);
  publish.MsgId = id.c_str();
  publish.ExpectStream = options_.stream.c_str();
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, SubjectOf(partition).c_str(), nullptr, payload.data(),
                                static_cast<int>(payload.size()));
  if (s != NATS_OK) return FromNats(s, static_cast<jsErrCode>(0), "append");
  // Set by hand: libnats' ExpectLastSubjectSeq option cannot say "0, the partition is empty".
  if (expected_last.has_value()) {
    s = natsMsgHeader_Set(msg, kExpectedLastSubjectSequence,
                          std::to_string(*expected_last).c_str());
  }
  jsPubAck* ack = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (s == NATS_OK) s = js_PublishMsg(&ack, nats_->js(), msg, &publish, &code);
  natsMsg_Destroy(msg);
  if (code == JSStreamWrongLastSequenceErr) {
    return absl::AbortedError(absl::StrCat("nats: append to partition ", partition,
                                           ": its last sequence is no longer ",
                                           expected_last.value_or(0)));
  }
  if (s != NATS_OK) return FromNats(s, code, "append");
  Appended appended{ack->Sequence, ack->Duplicate};
  jsPubAck_Destroy(ack);
  return appended;
}

absl::StatusOr<uint64_t> FeedbackLog::LastSequence(int partition) {
  if (partition < 0 || partition >= options_.partitions) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", partition, " is out of range"));
  }
  const std::string subject = SubjectOf(partition);
  natsMsg* last = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetLastMsg(&last, nats_->js(), options_.stream.c_str(), subject.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND || code == kNoMessageFound) return 0;  // empty
  if (s != NATS_OK) return FromNats(s, code, "last event of " + subject);
  const uint64_t sequence = natsMsg_GetSequence(last);
  natsMsg_Destroy(last);
  return sequence;
}

absl::Status FeedbackLog::Erase(uint64_t sequence) {
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_EraseMsg(nats_->js(), options_.stream.c_str(), sequence, nullptr, &code);
  if (s == NATS_NOT_FOUND || code == kNoMessageFound || code == JSSequenceNotFoundErr) {
    return absl::NotFoundError(absl::StrCat("nats: no event ", sequence, " in the log"));
  }
  return FromNats(s, code, absl::StrCat("erase event ", sequence));
}

absl::Status FeedbackLog::Replay(
    int partition, uint64_t after,
    absl::FunctionRef<bool(uint64_t sequence, absl::string_view payload)> visit) {
  if (partition < 0 || partition >= options_.partitions) {
    return absl::InvalidArgumentError(absl::StrCat("partition: ", partition, " is out of range"));
  }
  const std::string subject = SubjectOf(partition);
  // Where the partition ends now: replay stops there.
  absl::StatusOr<uint64_t> last = LastSequence(partition);
  if (!last.ok()) return last.status();
  const uint64_t end = *last;
  if (end <= after) return absl::OkStatus();
  return nats_->Read(options_.stream, subject, after, end, visit);
}

}  // namespace tailor::cluster

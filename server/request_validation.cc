#include "server/request_validation.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "server/server_config.h"

namespace tailor::server {

absl::Status ValidateId(absl::string_view field, absl::string_view value, bool may_be_empty) {
  if (value.empty() && !may_be_empty) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  }
  if (value.size() > static_cast<size_t>(kMaxIdBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", kMaxIdBytes, " bytes, got ", value.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateCandidates(const google::protobuf::RepeatedPtrField<v1::Candidate>& list,
                                int min_count, int max_count) {
  if (list.size() < min_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("candidates: at least ", min_count, " required, got ", list.size()));
  }
  if (list.size() > max_count) {
    return absl::InvalidArgumentError(
        absl::StrCat("candidates: at most ", max_count, " allowed, got ", list.size()));
  }
  absl::flat_hash_set<absl::string_view> ids;
  for (int i = 0; i < list.size(); ++i) {
    const std::string field = absl::StrCat("candidates[", i, "].id");
    if (absl::Status s = ValidateId(field, list[i].id()); !s.ok()) return s;
    if (!ids.insert(list[i].id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": duplicate id '", list[i].id(), "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateFeedbackEvent(const v1::FeedbackEvent& event, absl::Time now) {
  for (absl::Status s :
       {ValidateId("event_id", event.event_id()), ValidateId("user_id", event.user_id()),
        ValidateId("prompt_id", event.prompt_id(), /*may_be_empty=*/true)}) {
    if (!s.ok()) return s;
  }
  if (!event.has_chosen()) return absl::InvalidArgumentError("chosen: is required");
  if (!event.has_rejected()) return absl::InvalidArgumentError("rejected: is required");
  if (absl::Status s = ValidateId("chosen.id", event.chosen().id()); !s.ok()) return s;
  if (absl::Status s = ValidateId("rejected.id", event.rejected().id()); !s.ok()) return s;
  if (event.chosen().id() == event.rejected().id()) {
    return absl::InvalidArgumentError("rejected.id: must differ from chosen.id");
  }
  if (event.timestamp_micros() < 0) {
    return absl::InvalidArgumentError("timestamp_micros: must be >= 0");
  }
  if (absl::FromUnixMicros(event.timestamp_micros()) > now + kMaxFutureTimestamp) {
    return absl::InvalidArgumentError(
        "timestamp_micros: must not be more than 24 hours ahead of the server's clock");
  }
  return absl::OkStatus();
}

}  // namespace tailor::server

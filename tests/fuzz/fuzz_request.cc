// Request bytes for every RPC, as the services receive them (raw methods): parsing must give
// a message or INVALID_ARGUMENT with a message, and a parsed message goes through the same
// validation the services run. The first byte picks the message type.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "google/protobuf/stubs/logging.h"
#include "proto/routing_header.h"
#include "server/message_parsing.h"
#include "server/request_validation.h"
#include "tailor/v1/tailor.pb.h"

namespace {

using tailor::server::ParseMessage;

void Check(const absl::Status& status) {
  // Every refusal says what to fix, in the contract's form.
  if (!status.ok() && (status.code() != absl::StatusCode::kInvalidArgument ||
                       status.message().find(": ") == absl::string_view::npos)) {
    std::abort();
  }
}

template <typename Message, typename Validate>
void Run(absl::string_view bytes, Validate validate) {
  Message message;
  const absl::Status parsed = ParseMessage(bytes, message);
  Check(parsed);
  if (parsed.ok()) Check(validate(message));
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it meets; the fuzzer meets many.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  namespace v1 = tailor::v1;
  using tailor::server::ValidateCandidates;
  using tailor::server::ValidateFeedbackEvent;
  using tailor::server::ValidateId;
  const absl::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0:
      Run<v1::RankResponsesRequest>(bytes, [](const v1::RankResponsesRequest& r) {
        absl::Status s = ValidateId("user_id", r.user_id());
        return s.ok() ? ValidateCandidates(r.candidates(), 1, 64) : s;
      });
      break;
    case 1:
      Run<v1::SubmitFeedbackRequest>(bytes, [](const v1::SubmitFeedbackRequest& r) {
        return ValidateFeedbackEvent(r.event());
      });
      break;
    case 2:
      Run<v1::FeedbackEvent>(bytes,
                             [](const v1::FeedbackEvent& e) { return ValidateFeedbackEvent(e); });
      break;
    case 3:
      Run<v1::SuggestComparisonRequest>(bytes, [](const v1::SuggestComparisonRequest& r) {
        absl::Status s = ValidateId("user_id", r.user_id());
        return s.ok() ? ValidateCandidates(r.candidates(), 2, 64) : s;
      });
      break;
    case 4:
      Run<v1::GetUserRequest>(
          bytes, [](const v1::GetUserRequest& r) { return ValidateId("user_id", r.user_id()); });
      break;
    case 5:
      Run<v1::DeleteUserRequest>(
          bytes, [](const v1::DeleteUserRequest& r) { return ValidateId("user_id", r.user_id()); });
      break;
    case 6:
      Run<v1::CreateCheckpointRequest>(
          bytes, [](const v1::CreateCheckpointRequest&) { return absl::OkStatus(); });
      break;
    case 7: {
      // The routing header: any bytes encode to printable ASCII and decode back.
      const std::string encoded = tailor::EncodeRoutingHeader(bytes);
      for (char c : encoded) {
        if (c < '!' || c > '~') std::abort();
      }
      if (tailor::DecodeRoutingHeader(encoded) != std::string(bytes)) std::abort();
      (void)tailor::DecodeRoutingHeader(bytes);
      break;
    }
  }
  return 0;
}

// Requests arrive as bytes (the services use gRPC's raw callback methods) and are parsed here,
// so a message that cannot be parsed gets INVALID_ARGUMENT naming the field and the rule, not
// gRPC's default for an unparsable request (UNIMPLEMENTED with no message, which tells a
// client the method does not exist), and a stream can answer one bad message and go on.
#ifndef TAILOR_SERVER_MESSAGE_PARSING_H_
#define TAILOR_SERVER_MESSAGE_PARSING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace tailor::server {

// Whether `text` is well-formed UTF-8: no overlong forms, no surrogates, nothing above
// U+10FFFF (what proto3 requires of a string field).
bool IsValidUtf8(absl::string_view text);

// Parses `bytes` into `message` (cleared first). Bytes that are not protobuf wire format give
// INVALID_ARGUMENT "request: not a valid <message type> (protobuf wire format)"; a string field
// holding invalid UTF-8 gives "<field path>: must be valid UTF-8", e.g.
// "event.chosen.id: must be valid UTF-8" or "candidates[2].id: must be valid UTF-8".
// `what` names the whole message in errors ("request", or "event" on a stream).
absl::Status ParseMessage(absl::string_view bytes, google::protobuf::Message& message,
                          absl::string_view what = "request");

// Why `bytes` do not parse as a `type` message (the INVALID_ARGUMENT ParseMessage returns),
// for a caller whose own parse already failed.
absl::Status ParseFailure(absl::string_view bytes, const google::protobuf::Descriptor& type,
                          absl::string_view what = "request");

}  // namespace tailor::server

#endif  // TAILOR_SERVER_MESSAGE_PARSING_H_

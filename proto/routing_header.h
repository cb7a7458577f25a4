// The `x-user-id` routing header's encoding, part of the tailor.v1 contract (see the proto's
// conventions). gRPC metadata values are printable ASCII, while user ids are any UTF-8, so
// the header carries the id percent-encoded: every byte outside '!'..'~', and '%' itself,
// becomes %XX (upper-case hex). Ids of printable ASCII without '%' — nearly all — are sent
// unchanged, so routers hash the same string as before and old clients keep working.
#ifndef TAILOR_PROTO_ROUTING_HEADER_H_
#define TAILOR_PROTO_ROUTING_HEADER_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace tailor {

inline constexpr char kRoutingHeader[] = "x-user-id";

std::string EncodeRoutingHeader(absl::string_view user_id);
// nullopt if `value` has a '%' not followed by two hex digits.
std::optional<std::string> DecodeRoutingHeader(absl::string_view value);

}  // namespace tailor

#endif  // TAILOR_PROTO_ROUTING_HEADER_H_

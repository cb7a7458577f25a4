// Request validation for the tailor.v1 API: each check returns INVALID_ARGUMENT with
// "<field>: <rule>" so callers know exactly what to fix. Feature values (count, NaN/Inf) are
// checked by the engine against the schema, with the same message form.
#ifndef TAILOR_SERVER_REQUEST_VALIDATION_H_
#define TAILOR_SERVER_REQUEST_VALIDATION_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_field.h"
#include "tailor/v1/tailor.pb.h"

namespace tailor::server {

// 1..kMaxIdBytes bytes (or 0..kMaxIdBytes when `may_be_empty`).
absl::Status ValidateId(absl::string_view field, absl::string_view value,
                        bool may_be_empty = false);

// min_count..max_count candidates, each with a valid id, no id twice.
absl::Status ValidateCandidates(const google::protobuf::RepeatedPtrField<v1::Candidate>& list,
                                int min_count, int max_count);

// How far ahead of the server's clock a feedback timestamp may be (clock skew).
inline constexpr absl::Duration kMaxFutureTimestamp = absl::Hours(24);

// `now`: the server's clock, for the timestamp's upper bound.
absl::Status ValidateFeedbackEvent(const v1::FeedbackEvent& event, absl::Time now = absl::Now());

}  // namespace tailor::server

#endif  // TAILOR_SERVER_REQUEST_VALIDATION_H_

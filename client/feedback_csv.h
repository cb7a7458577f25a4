// FeedbackCsv: the feedback CSV format of `tailorctl feedback` and `tailor-bench replay` —
// a header event_id,user_id,prompt_id,chosen_id,rejected_id, then d columns of the chosen
// response's features and d of the rejected one's (in schema order), one event per line.
#ifndef TAILOR_CLIENT_FEEDBACK_CSV_H_
#define TAILOR_CLIENT_FEEDBACK_CSV_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tailor/v1/tailor.pb.h"

namespace tailor::client {

// Appends the events of `text` (the contents of the file `path`, named in errors) to
// `events`; INVALID_ARGUMENT naming the line and column on the first malformed line.
absl::Status ParseFeedbackCsv(const std::string& text, const std::string& path,
                              std::vector<v1::FeedbackEvent>& events);

}  // namespace tailor::client

#endif  // TAILOR_CLIENT_FEEDBACK_CSV_H_

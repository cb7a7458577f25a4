#include "client/feedback_csv.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tailor::client {

absl::Status ParseFeedbackCsv(const std::string& text, const std::string& path,
                              std::vector<v1::FeedbackEvent>& events) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.empty()) return absl::InvalidArgumentError(path + ": empty");
  const std::vector<std::string> header = absl::StrSplit(absl::StripSuffix(lines[0], "\r"), ',');
  const std::vector<std::string> fixed = {"event_id", "user_id", "prompt_id", "chosen_id",
                                          "rejected_id"};
  if (header.size() < fixed.size() + 2 || (header.size() - fixed.size()) % 2 != 0 ||
      !std::equal(fixed.begin(), fixed.end(), header.begin())) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ":1: header must be event_id,user_id,prompt_id,chosen_id,rejected_id followed by "
        "d chosen and d rejected feature columns"));
  }
  const size_t d = (header.size() - fixed.size()) / 2;
  for (size_t n = 1; n < lines.size(); ++n) {
    const std::vector<std::string> cells = absl::StrSplit(absl::StripSuffix(lines[n], "\r"), ',');
    if (cells.size() != header.size()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n + 1, ": expected ", header.size(),
                                                     " cells, got ", cells.size()));
    }
    v1::FeedbackEvent& event = events.emplace_back();
    event.set_event_id(cells[0]);
    event.set_user_id(cells[1]);
    event.set_prompt_id(cells[2]);
    event.mutable_chosen()->set_id(cells[3]);
    event.mutable_rejected()->set_id(cells[4]);
    for (size_t i = 0; i < 2 * d; ++i) {
      float value = 0;
      if (!absl::SimpleAtof(cells[fixed.size() + i], &value)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ":", n + 1, ": column ", header[fixed.size() + i], " is not a number"));
      }
      (i < d ? event.mutable_chosen() : event.mutable_rejected())->add_features(value);
    }
  }
  return absl::OkStatus();
}

}  // namespace tailor::client

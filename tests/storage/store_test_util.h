// Builders for storage records used by the storage tests and the crash writer.
#ifndef TAILOR_TESTS_STORAGE_STORE_TEST_UTIL_H_
#define TAILOR_TESTS_STORAGE_STORE_TEST_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "storage/feedback_store.h"

namespace tailor::storage {

// Event `sequence` of `user_id`, with state mean[0] == sequence so a test can tell which
// commit a state came from.
inline UserCommit MakeCommit(const std::string& user_id, uint64_t sequence) {
  UserCommit commit;
  commit.user_id = user_id;
  AppliedEvent& event = commit.events.emplace_back();
  event.record.set_sequence(sequence);
  event.record.set_event_id(absl::StrCat("ev-", user_id, "-", sequence));
  event.record.set_prompt_id(absl::StrCat("prompt-", sequence % 7));
  event.record.set_chosen_id("a");
  event.record.set_rejected_id("b");
  for (int i = 0; i < 10; ++i) {
    event.record.add_chosen_features(static_cast<float>(sequence + i));
    event.record.add_rejected_features(static_cast<float>(i));
  }
  event.record.set_timestamp_micros(1'700'000'000'000'000 + static_cast<int64_t>(sequence));
  event.record.set_predicted_chosen_probability(0.5);
  event.idempotency.set_sequence(sequence);
  event.idempotency.set_user_feedback_count(sequence);
  event.idempotency.set_predicted_chosen_probability(0.5);
  commit.state.set_format_version(1);
  commit.state.set_feedback_count(sequence);
  commit.state.add_mean(static_cast<double>(sequence));
  return commit;
}

}  // namespace tailor::storage

#endif  // TAILOR_TESTS_STORAGE_STORE_TEST_UTIL_H_

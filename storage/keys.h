// Key encoding for Tailor's column families. A user's keys all start with the same
// length-prefixed user id, so each user's history and idempotency keys form one contiguous
// range, and history keys sort by sequence (big-endian).
#ifndef TAILOR_STORAGE_KEYS_H_
#define TAILOR_STORAGE_KEYS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace tailor::storage {

// User ids longer than this cannot be encoded (the API limit is far lower).
inline constexpr size_t kMaxEncodedUserIdBytes = 0xFFFF;

// `value`'s low `bytes` bytes, most significant first (so keys sort as numbers), and back.
std::string BigEndian(uint64_t value, int bytes);
uint64_t FromBigEndian(absl::string_view bytes);

// [u16 big-endian length][user id bytes]. Also the state key.
std::string UserPrefix(absl::string_view user_id);
// UserPrefix + [u64 big-endian sequence].
std::string HistoryKey(absl::string_view user_id, uint64_t sequence);
// UserPrefix + event id.
std::string IdempotencyKey(absl::string_view user_id, absl::string_view event_id);
// The smallest key greater than every key starting with `prefix` (for iterator bounds).
std::string PrefixSuccessor(absl::string_view prefix);

struct DecodedUserKey {
  absl::string_view user_id;
  absl::string_view rest;  // what follows the user prefix
};
// Splits a key into its user id and remainder; nullopt if the key is malformed.
std::optional<DecodedUserKey> DecodeUserKey(absl::string_view key);

}  // namespace tailor::storage

#endif  // TAILOR_STORAGE_KEYS_H_

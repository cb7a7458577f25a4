#include "storage/keys.h"

#include "absl/strings/string_view.h"

namespace tailor::storage {

std::string BigEndian(uint64_t value, int bytes) {
  std::string out(static_cast<size_t>(bytes), '\0');
  for (int i = bytes - 1; i >= 0; --i, value >>= 8) {
    out[static_cast<size_t>(i)] = static_cast<char>(value & 0xFF);
  }
  return out;
}

uint64_t FromBigEndian(absl::string_view bytes) {
  uint64_t value = 0;
  for (char c : bytes) value = (value << 8) | static_cast<unsigned char>(c);
  return value;
}

std::string UserPrefix(absl::string_view user_id) {
  std::string key;
  key.reserve(2 + user_id.size() + 8);
  key.push_back(static_cast<char>((user_id.size() >> 8) & 0xFF));
  key.push_back(static_cast<char>(user_id.size() & 0xFF));
  key.append(user_id.data(), user_id.size());
  return key;
}

std::string HistoryKey(absl::string_view user_id, uint64_t sequence) {
  return UserPrefix(user_id) + BigEndian(sequence, 8);
}

std::string IdempotencyKey(absl::string_view user_id, absl::string_view event_id) {
  std::string key = UserPrefix(user_id);
  key.append(event_id.data(), event_id.size());
  return key;
}

std::string PrefixSuccessor(absl::string_view prefix) {
  std::string next(prefix);
  while (!next.empty()) {
    unsigned char last = static_cast<unsigned char>(next.back());
    if (last != 0xFF) {
      next.back() = static_cast<char>(last + 1);
      return next;
    }
    next.pop_back();
  }
  return next;  // every byte was 0xFF: no successor, empty means "unbounded"
}

std::optional<DecodedUserKey> DecodeUserKey(absl::string_view key) {
  if (key.size() < 2) return std::nullopt;
  const size_t length = (static_cast<size_t>(static_cast<unsigned char>(key[0])) << 8) |
                        static_cast<unsigned char>(key[1]);
  if (key.size() < 2 + length) return std::nullopt;
  return DecodedUserKey{key.substr(2, length), key.substr(2 + length)};
}

}  // namespace tailor::storage

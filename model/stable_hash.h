// StableHash: FNV-1a (64 bit), the same in every process, build and platform — unlike
// absl::Hash, which is salted per process. For seeded choices that must reproduce from run to
// run (calibration splits, replay splits, neighbour draws) and for fingerprints.
#ifndef TAILOR_MODEL_STABLE_HASH_H_
#define TAILOR_MODEL_STABLE_HASH_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/strings/string_view.h"

namespace tailor::model {

inline constexpr uint64_t kFnvOffset = 1469598103934665603ULL;

// FNV-1a of `text`, continuing from `hash`.
inline uint64_t Fnv1a(absl::string_view text, uint64_t hash = kFnvOffset) {
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return hash;
}

// Hashes `seed` and then each piece, length-prefixed so ("ab", "c") and ("a", "bc") differ.
inline uint64_t StableHash(std::initializer_list<absl::string_view> pieces, uint64_t seed = 0) {
  auto bytes = [](uint64_t value) {
    char out[8];
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xFF);
    return std::string(out, 8);
  };
  uint64_t hash = Fnv1a(bytes(seed));
  for (absl::string_view piece : pieces) hash = Fnv1a(piece, Fnv1a(bytes(piece.size()), hash));
  return hash;
}

}  // namespace tailor::model

#endif  // TAILOR_MODEL_STABLE_HASH_H_

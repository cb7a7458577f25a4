#include "server/message_parsing.h"

#include <cstdint>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"

namespace tailor::server {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Protobuf nests messages at most 100 deep; so does this walk.
constexpr int kMaxDepth = 100;

// The first string field in `bytes` (a `type` message) that holds invalid UTF-8, as a path
// ("event.chosen.id", "candidates[2].id"); nullopt if there is none. `valid` is false when the
// bytes are not wire format at all.
std::optional<std::string> FindInvalidUtf8(const Descriptor& type, absl::string_view bytes,
                                           const std::string& prefix, int depth, bool& valid) {
  UnknownFieldSet fields;
  if (depth > kMaxDepth || !fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    valid = false;
    return std::nullopt;
  }
  absl::flat_hash_map<int, int> seen;  // occurrences of each repeated field so far
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& field = fields.field(i);
    const FieldDescriptor* descriptor = type.FindFieldByNumber(field.number());
    if (descriptor == nullptr || field.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    std::string path = absl::StrCat(prefix, descriptor->name());
    if (descriptor->is_repeated()) absl::StrAppend(&path, "[", seen[field.number()]++, "]");
    if (descriptor->type() == FieldDescriptor::TYPE_STRING) {
      if (!IsValidUtf8(field.length_delimited())) return path;
    } else if (descriptor->type() == FieldDescriptor::TYPE_MESSAGE) {
      std::optional<std::string> found =
          FindInvalidUtf8(*descriptor->message_type(), field.length_delimited(),
                          absl::StrCat(path, "."), depth + 1, valid);
      if (found.has_value() || !valid) return found;
    }
  }
  return std::nullopt;
}

}  // namespace

bool IsValidUtf8(absl::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int length;
    uint32_t code;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      code = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;  // a continuation byte first, an overlong 2-byte lead, or beyond U+10FFFF
    }
    if (i + static_cast<size_t>(length) > n) return false;
    for (int k = 1; k < length; ++k) {
      const unsigned char next = s[i + static_cast<size_t>(k)];
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if ((length == 3 && code < 0x800) || (length == 4 && code < 0x10000)) return false;
    if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return false;
    i += static_cast<size_t>(length);
  }
  return true;
}

absl::Status ParseMessage(absl::string_view bytes, google::protobuf::Message& message,
                          absl::string_view what) {
  if (message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::OkStatus();
  }
  message.Clear();
  return ParseFailure(bytes, *message.GetDescriptor(), what);
}

absl::Status ParseFailure(absl::string_view bytes, const Descriptor& type, absl::string_view what) {
  // Protobuf says only that parsing failed; find out why, to name the field.
  bool valid = true;
  if (std::optional<std::string> field = FindInvalidUtf8(
          type, bytes, what == "request" ? "" : absl::StrCat(what, "."), 0, valid)) {
    return absl::InvalidArgumentError(absl::StrCat(*field, ": must be valid UTF-8"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": not a valid ", type.full_name(), " (protobuf wire format)"));
}

}  // namespace tailor::server

#include "proto/routing_header.h"

namespace tailor {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string EncodeRoutingHeader(absl::string_view user_id) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(user_id.size());
  for (char c : user_id) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= '!' && byte <= '~' && byte != '%') {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    }
  }
  return out;
}

std::optional<std::string> DecodeRoutingHeader(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%') {
      out += value[i];
      continue;
    }
    const int high = i + 1 < value.size() ? HexValue(value[i + 1]) : -1;
    const int low = i + 2 < value.size() ? HexValue(value[i + 2]) : -1;
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high << 4 | low);
    i += 2;
  }
  return out;
}

}  // namespace tailor

// The x-user-id header's percent-encoding (proto/routing_header.h).
#include "proto/routing_header.h"

#include <string>

#include "gtest/gtest.h"

namespace tailor {
namespace {

TEST(RoutingHeaderTest, PrintableIdsWithoutPercentAreUnchanged) {
  for (const std::string& id : {std::string("alice"), std::string("user-42/abc_DEF.~!")}) {
    EXPECT_EQ(EncodeRoutingHeader(id), id);
  }
}

TEST(RoutingHeaderTest, EverythingElseIsPercentEncodedAndRoundTrips) {
  EXPECT_EQ(EncodeRoutingHeader("caf\xc3\xa9 100%"), "caf%C3%A9%20100%25");
  EXPECT_EQ(EncodeRoutingHeader(std::string("a\0b\x7f", 4)), "a%00b%7F");
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
  const std::string encoded = EncodeRoutingHeader(every_byte);
  for (char c : encoded) EXPECT_TRUE(c >= '!' && c <= '~') << static_cast<int>(c);
  EXPECT_EQ(DecodeRoutingHeader(encoded), every_byte);
  EXPECT_EQ(DecodeRoutingHeader("caf%c3%a9"), "caf\xc3\xa9");  // lower-case hex is accepted
}

TEST(RoutingHeaderTest, BrokenEscapesAreRefused) {
  for (const char* value : {"%", "a%4", "%zz", "%4g", "abc%"}) {
    EXPECT_FALSE(DecodeRoutingHeader(value).has_value()) << value;
  }
}

}  // namespace
}  // namespace tailor

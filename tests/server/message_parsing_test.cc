// Parsing raw requests: well-formed UTF-8 exactly, and errors that name the field and the rule.
#include "server/message_parsing.h"

#include <string>

#include "gtest/gtest.h"
#include "tailor/v1/tailor.pb.h"

namespace tailor::server {
namespace {

TEST(Utf8Test, AcceptsWellFormedText) {
  for (const std::string& text :
       {std::string(), std::string("plain ascii"), std::string("caf\xc3\xa9"),
        std::string("\xe2\x82\xac"), std::string("\xf0\x9f\x98\x80"),
        std::string("\xf4\x8f\xbf\xbf"), std::string("a\0b", 3)}) {
    EXPECT_TRUE(IsValidUtf8(text)) << text;
  }
}

TEST(Utf8Test, RejectsMalformedText) {
  for (const std::string& text :
       {std::string("\xff\xfe"), std::string("\x80"), std::string("\xc0\xaf"),  // overlong '/'
        std::string("\xe0\x80\xaf"), std::string("\xf0\x80\x80\xaf"),           // overlong
        std::string("\xed\xa0\x80"),                                            // surrogate
        std::string("\xf4\x90\x80\x80"),                                        // > U+10FFFF
        std::string("\xc3"), std::string("\xe2\x82"),                           // truncated
        std::string("\xe2\x28\xa1")}) {                                         // bad continuation
    EXPECT_FALSE(IsValidUtf8(text));
  }
}

TEST(ParseMessageTest, ParsesAWellFormedMessage) {
  v1::GetUserRequest request;
  request.set_user_id("alice");
  v1::GetUserRequest parsed;
  ASSERT_TRUE(ParseMessage(request.SerializeAsString(), parsed).ok());
  EXPECT_EQ(parsed.user_id(), "alice");
}

TEST(ParseMessageTest, NamesTheFieldWithInvalidUtf8) {
  v1::GetUserRequest parsed;
  absl::Status status = ParseMessage(std::string("\x0a\x02\xff\xfe", 4), parsed);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "user_id: must be valid UTF-8");

  // A nested, repeated field: the second candidate's id, inside a stream's event.
  v1::FeedbackEvent event;
  event.set_event_id("e");
  event.mutable_chosen()->set_id("a");
  std::string bytes = event.SerializeAsString();
  const std::string bad_id = std::string("\x0a\x01\xff", 3);  // Candidate.id = ff
  v1::FeedbackEvent rejected_only;
  const int rejected = v1::FeedbackEvent::kRejectedFieldNumber;
  bytes += static_cast<char>(rejected << 3 | 2);
  bytes += static_cast<char>(bad_id.size());
  bytes += bad_id;
  status = ParseMessage(bytes, rejected_only, "event");
  EXPECT_EQ(status.message(), "event.rejected.id: must be valid UTF-8");
  EXPECT_EQ(rejected_only.event_id(), "") << "a failed parse leaves the message empty";
}

TEST(ParseMessageTest, BytesThatAreNotProtobuf) {
  v1::RankResponsesRequest parsed;
  for (const std::string& bytes : {std::string("\xff\xff\xff\xff"),
                                   std::string("\x0a\x05"
                                               "ab"),
                                   std::string("\x00", 1)}) {
    absl::Status status = ParseMessage(bytes, parsed);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(status.message(),
              "request: not a valid tailor.v1.RankResponsesRequest (protobuf wire format)");
  }
}

TEST(ParseMessageTest, DeepNestingIsRefusedNotRecursedForever) {
  // 200 levels of a length-delimited field 1 (Candidate has no message field 1, but the walk
  // must stop by itself on whatever it is given).
  std::string bytes = "x";
  for (int i = 0; i < 200; ++i) {
    std::string outer;
    outer += static_cast<char>(0x12);  // RankResponsesRequest.candidates (field 2)
    size_t n = bytes.size();
    while (n >= 0x80) {
      outer += static_cast<char>(0x80 | (n & 0x7f));
      n >>= 7;
    }
    outer += static_cast<char>(n);
    bytes = outer + bytes;
  }
  v1::RankResponsesRequest parsed;
  EXPECT_EQ(ParseMessage(bytes, parsed).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tailor::server

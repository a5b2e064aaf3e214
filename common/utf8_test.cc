#include "common/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace evalctl {
namespace {

TEST(Utf8Test, FirstInvalidByte) {
  EXPECT_EQ(FirstInvalidUtf8(""), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("plain ascii\n"), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"),
            std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8(std::string("nul \0 is valid", 15)), std::string::npos);
  EXPECT_EQ(FirstInvalidUtf8("ab\xFF"), 2u);               // no sequence starts with 0xFF
  EXPECT_EQ(FirstInvalidUtf8("a\x80"), 1u);                // a lone continuation byte
  EXPECT_EQ(FirstInvalidUtf8("ab\xE2\x82"), 2u);           // truncated
  EXPECT_EQ(FirstInvalidUtf8("\xC3\xA9\xC0\xAF"), 2u);     // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("x\xED\xA0\x80"), 1u);        // surrogate U+D800
  EXPECT_EQ(FirstInvalidUtf8("\xF4\x90\x80\x80"), 0u);     // past U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("\xE2\x28\xA1"), 0u);         // bad continuation
}

TEST(Utf8Test, InvalidBytesBecomeReplacementCharacters) {
  EXPECT_EQ(ValidUtf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(ValidUtf8("ar\xEFthmetic"), "ar\uFFFDthmetic");
  EXPECT_EQ(ValidUtf8("acc\xE2\x82"), "acc\uFFFD\uFFFD");
  EXPECT_EQ(ValidUtf8("\xC0\xAF-\xED\xA0\x80"), "\uFFFD\uFFFD-\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(FirstInvalidUtf8(ValidUtf8("\xFF\xFE\x80 \xF8\x88\x80\x80\x80")), std::string::npos);
}

}  // namespace
}  // namespace evalctl

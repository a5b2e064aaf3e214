#include "controller/config/duration.h"

#include <cstdint>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kHour = 3600;
constexpr int64_t kDay = 24 * kHour;

TEST(ParseSlurmDurationTest, AcceptsEverySlurmForm) {
  struct Case {
    const char* text;
    int64_t seconds;
  };
  for (const Case& c : {
           Case{"0", 0},
           Case{"30", 30 * 60},                                // MM
           Case{"90", 90 * 60},                                // minutes may exceed 59 when leading
           Case{"05:30", 5 * 60 + 30},                         // MM:SS
           Case{"90:05", 90 * 60 + 5},                         // leading minutes unbounded
           Case{"01:00:00", kHour},                            // HH:MM:SS
           Case{"4:0:0", 4 * kHour},                           // single digits
           Case{"120:00:00", 120 * kHour},                     // NEL's max_walltime default
           Case{"1-0", kDay},                                  // D-HH
           Case{"2-12", 2 * kDay + 12 * kHour},                // D-HH
           Case{"1-02:03", kDay + 2 * kHour + 3 * 60},         // D-HH:MM
           Case{"1-02:03:04", kDay + 2 * kHour + 3 * 60 + 4},  // D-HH:MM:SS
           Case{"0-00:00:01", 1},
           Case{"365-23:59:59", 365 * kDay + 23 * kHour + 59 * 60 + 59},
       }) {
    auto parsed = ParseSlurmDuration(c.text);
    ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status();
    EXPECT_EQ(*parsed, c.seconds) << c.text;
  }
}

TEST(ParseSlurmDurationTest, LeadingZerosAreDecimalNeverOctal) {
  // NEL #916: bash read "08"/"09" as octal and the resume budget stopped counting.
  EXPECT_EQ(*ParseSlurmDuration("08:09:09"), 8 * kHour + 9 * 60 + 9);
  EXPECT_EQ(*ParseSlurmDuration("0010"), 10 * 60);
  EXPECT_EQ(*ParseSlurmDuration("08-09"), 8 * kDay + 9 * kHour);
  EXPECT_EQ(*ParseSlurmDuration("00000000000000000000000000000007:00"), 7 * 60);
}

TEST(ParseSlurmDurationTest, ReadsSacctElapsed) {
  EXPECT_EQ(*ParseSlurmDuration("00:00:05"), 5);
  EXPECT_EQ(*ParseSlurmDuration("00:59:59"), 59 * 60 + 59);
  EXPECT_EQ(*ParseSlurmDuration("3-04:05:06"), 3 * kDay + 4 * kHour + 5 * 60 + 6);
}

TEST(ParseSlurmDurationTest, RejectsGarbage) {
  for (const char* bad : {
           "",            // empty
           " 01:00:00",   // spaces are not trimmed
           "01:00:00 ",   //
           "01: 00:00",   //
           "+5",          // signs
           "-5",          //
           "5-",          // nothing after the day count
           "-",           //
           "1.5",         // no fractions
           "2h",          // no units
           "1h30m",       //
           "0x10",        // no hex
           "1:2:3:4",     // too many fields
           "1-2:3:4:5",   //
           "1-2-3",       // two day separators
           ":30",         // empty fields
           "30:",         //
           "::",          //
           "1-:30",       //
           "a-01:00:00",  // bad day count
           "\xd9\xa1",    // a non-ASCII digit
           "12\n",        // control characters
       }) {
    auto parsed = ParseSlurmDuration(bad);
    EXPECT_FALSE(parsed.ok()) << "\"" << bad << "\" parsed as " << *parsed;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseSlurmDurationTest, RejectsFieldsOutOfRange) {
  for (const char* bad : {"01:61:00", "01:00:60", "00:60", "1-24", "1-24:00:00", "1-00:60",
                          "1-00:00:60", "2-99:00:00"}) {
    auto parsed = ParseSlurmDuration(bad);
    EXPECT_FALSE(parsed.ok()) << bad << " parsed as " << *parsed;
  }
  auto minutes = ParseSlurmDuration("01:61:00");
  EXPECT_THAT(minutes.status().message(), HasSubstr("minutes must be 0-59 (got 61)"));
  auto hours = ParseSlurmDuration("1-24:00:00");
  EXPECT_THAT(hours.status().message(), HasSubstr("hours after a day count must be 0-23"));
}

TEST(ParseSlurmDurationTest, RejectsOverflow) {
  for (const char* bad : {
           "99999999999999999999",       // the field itself overflows int64
           "9223372036854775807",        // fits as minutes, not as seconds
           "9223372036854775807:00:00",  // hours
           "106751991167301-00:00:00",   // days: 106751991167301 * 86400 > int64 max
           "106751991167300-23:59:59",   // the sum crosses int64 max
       }) {
    auto parsed = ParseSlurmDuration(bad);
    EXPECT_FALSE(parsed.ok()) << bad << " parsed as " << *parsed;
  }
  // The largest representable value still parses (it is what FormatSlurmDuration writes for it).
  const int64_t max = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(*ParseSlurmDuration(FormatSlurmDuration(max)), max);
}

TEST(ParseSlurmDurationTest, ErrorNamesTheTextAndTheFormats) {
  auto parsed = ParseSlurmDuration("2 hours");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("\"2 hours\""));
  EXPECT_THAT(parsed.status().message(),
              HasSubstr("MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS"));
  // Long or odd text is escaped and shortened, so the message stays one readable line.
  std::string huge(10000, '9');
  huge += "\n";
  auto long_error = ParseSlurmDuration(huge);
  ASSERT_FALSE(long_error.ok());
  EXPECT_LT(long_error.status().message().size(), 400u);
  EXPECT_THAT(std::string(long_error.status().message()), ::testing::Not(HasSubstr("\n")));
}

TEST(ParseSlurmDurationTest, UnlimitedIsRecognisedButHasNoSeconds) {
  for (const char* text : {"UNLIMITED", "unlimited", "Infinite", "INFINITE", "-1"}) {
    EXPECT_TRUE(IsUnlimitedSlurmDuration(text)) << text;
    auto parsed = ParseSlurmDuration(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_THAT(parsed.status().message(), HasSubstr("no time limit")) << text;
  }
  for (const char* text : {"", "0", "01:00:00", "UNLIMITEDX", "-2", "none", "null"}) {
    EXPECT_FALSE(IsUnlimitedSlurmDuration(text)) << text;
  }
}

TEST(FormatSlurmDurationTest, UsesHoursBelowADayAndDaysFromThere) {
  EXPECT_EQ(FormatSlurmDuration(0), "00:00:00");
  EXPECT_EQ(FormatSlurmDuration(59), "00:00:59");
  EXPECT_EQ(FormatSlurmDuration(3600), "01:00:00");
  EXPECT_EQ(FormatSlurmDuration(4 * kHour + 5 * 60 + 6), "04:05:06");
  EXPECT_EQ(FormatSlurmDuration(kDay - 1), "23:59:59");
  EXPECT_EQ(FormatSlurmDuration(kDay), "1-00:00:00");
  EXPECT_EQ(FormatSlurmDuration(120 * kHour), "5-00:00:00");
  EXPECT_EQ(FormatSlurmDuration(kDay + 2 * kHour + 3 * 60 + 4), "1-02:03:04");
  EXPECT_EQ(FormatSlurmDuration(400 * kDay), "400-00:00:00");
  EXPECT_EQ(FormatSlurmDuration(-5), "00:00:00");
}

TEST(FormatSlurmDurationTest, RoundTripsThroughParse) {
  for (int64_t seconds :
       {int64_t{0}, int64_t{1}, int64_t{59}, int64_t{60}, int64_t{3599}, int64_t{3600}, kDay - 1,
        kDay, kDay + 1, 120 * kHour, int64_t{1} << 40, std::numeric_limits<int64_t>::max() - 1}) {
    std::string text = FormatSlurmDuration(seconds);
    auto parsed = ParseSlurmDuration(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, seconds) << text;
  }
}

}  // namespace
}  // namespace evalctl::config

#include "common/testing/wait_for.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace evalctl::testing {
namespace {

TEST(WaitForTest, ReturnsOnceDone) {
  int checks = 0;
  EXPECT_TRUE(WaitFor([&] { return ++checks == 3; }, absl::Seconds(10), absl::Milliseconds(1)));
  EXPECT_EQ(checks, 3);
}

TEST(WaitForTest, GivesUpAfterTheTimeoutHavingCheckedAtTheDeadline) {
  const absl::Time start = absl::Now();
  absl::Time last_check;
  EXPECT_FALSE(WaitFor(
      [&] {
        last_check = absl::Now();
        return false;
      },
      absl::Milliseconds(30), absl::Milliseconds(20)));
  EXPECT_GE(last_check - start, absl::Milliseconds(30));
}

TEST(StaysTrueForTest, FalseAsSoonAsTheConditionFails) {
  int checks = 0;
  const absl::Time start = absl::Now();
  EXPECT_FALSE(
      StaysTrueFor([&] { return ++checks < 3; }, absl::Seconds(10), absl::Milliseconds(1)));
  EXPECT_EQ(checks, 3);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(StaysTrueForTest, TrueWhenItHeldThroughout) {
  int checks = 0;
  const absl::Time start = absl::Now();
  EXPECT_TRUE(StaysTrueFor(
      [&] {
        ++checks;
        return true;
      },
      absl::Milliseconds(30), absl::Milliseconds(5)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
  EXPECT_GE(checks, 3);
}

}  // namespace
}  // namespace evalctl::testing

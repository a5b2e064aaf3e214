#include "common/ids.h"

#include "gtest/gtest.h"

namespace evalctl {
namespace {

TEST(IdsTest, NewInvocationIdIsSixteenLowercaseHex) {
  std::string a = NewInvocationId(), b = NewInvocationId();
  EXPECT_TRUE(IsValidInvocationId(a)) << a;
  EXPECT_NE(a, b);
  EXPECT_EQ(TaskId(a, 2), a + ".2");
  EXPECT_EQ(AttemptId(TaskId(a, 2), 3), a + ".2.3");
}

TEST(IdsTest, ParsesPrefixesAndTaskIds) {
  auto p = ParseIdPrefix("3F2a");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->invocation, "3f2a");
  EXPECT_FALSE(p->task_index.has_value());

  auto t = ParseIdPrefix("3f2a9c01d4e5b677.12");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->invocation, "3f2a9c01d4e5b677");
  EXPECT_EQ(t->task_index, 12);
}

TEST(IdsTest, RejectsMalformedIds) {
  for (const char* bad : {"", "xyz", "3f2a.1", "3f2a9c01d4e5b677.", "3f2a9c01d4e5b677.-1",
                          "3f2a9c01d4e5b6770", "3f2a9c01d4e5b677.x"}) {
    EXPECT_FALSE(ParseIdPrefix(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace evalctl

#include "common/clock.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace evalctl {
namespace {

// A thread that waits on the clock for `flag` (under `mu`) until `deadline`; `result` is -1 while
// it waits, then whether the flag held.
struct Waiter {
  Waiter(Clock* clock, absl::Time deadline)
      : thread([this, clock, deadline] {
          absl::MutexLock lock(&mu);
          result = clock->AwaitWithDeadline(mu, absl::Condition(&flag), deadline) ? 1 : 0;
        }) {}
  ~Waiter() { Join(); }
  void Join() {
    if (thread.joinable()) thread.join();
  }
  void Set() {
    absl::MutexLock lock(&mu);
    flag = true;
  }

  absl::Mutex mu;
  bool flag ABSL_GUARDED_BY(mu) = false;
  std::atomic<int> result{-1};
  std::thread thread;
};

TEST(FakeClockTest, AWaiterStaysUntilTheTimeReachesItsDeadline) {
  FakeClock clock;
  Waiter waiter(&clock, clock.Now() + absl::Seconds(10));
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.Advance(absl::Seconds(9));
  // It has seen the new time, and waits on.
  ASSERT_TRUE(clock.AwaitWaiters(1));
  EXPECT_EQ(waiter.result, -1);
  clock.Advance(absl::Seconds(1));
  waiter.Join();
  EXPECT_EQ(waiter.result, 0);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(FakeClockTest, AConditionThatComesTrueEndsTheWaitWithoutTheTimeMoving) {
  FakeClock clock;
  const absl::Time start = clock.Now();
  Waiter waiter(&clock, start + absl::Hours(1));
  ASSERT_TRUE(clock.AwaitWaiters(1));
  waiter.Set();
  waiter.Join();
  EXPECT_EQ(waiter.result, 1);
  EXPECT_EQ(clock.Now(), start);
}

TEST(FakeClockTest, APastDeadlineOrAConditionThatHoldsReturnsAtOnce) {
  FakeClock clock;
  absl::Mutex mu;
  bool yes = true, no = false;
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(clock.AwaitWithDeadline(mu, absl::Condition(&yes), absl::InfiniteFuture()));
  EXPECT_FALSE(clock.AwaitWithDeadline(mu, absl::Condition(&no), clock.Now()));
  EXPECT_FALSE(clock.AwaitWithDeadline(mu, absl::Condition(&no), absl::InfinitePast()));
}

TEST(FakeClockTest, SetMovesTheTimeToo) {
  FakeClock clock;
  std::atomic<bool> slept{false};
  std::thread sleeper([&] {
    clock.SleepFor(absl::Minutes(5));
    slept = true;
  });
  ASSERT_TRUE(clock.AwaitWaiters(1));
  clock.Set(clock.Now() + absl::Minutes(4));
  ASSERT_TRUE(clock.AwaitWaiters(1));
  EXPECT_FALSE(slept);
  clock.Set(clock.Now() + absl::Minutes(2));
  sleeper.join();
  EXPECT_TRUE(slept);
}

TEST(FakeClockTest, AwaitWaitersGivesUpWhenNoneComes) {
  FakeClock clock;
  EXPECT_FALSE(clock.AwaitWaiters(1, absl::Milliseconds(20)));
}

TEST(RealClockTest, WaitsInRealTime) {
  RealClock clock;
  absl::Mutex mu;
  bool no = false;
  const absl::Time start = absl::Now();
  {
    absl::MutexLock lock(&mu);
    EXPECT_FALSE(clock.AwaitWithDeadline(mu, absl::Condition(&no), start + absl::Milliseconds(20)));
  }
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(20));
  clock.SleepFor(absl::Milliseconds(10));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
}

}  // namespace
}  // namespace evalctl

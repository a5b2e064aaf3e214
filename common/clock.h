// Time for code that must be testable without sleeping: the core never calls absl::Now(), and
// waits for a deadline on its clock rather than on absl's.
//
//   RealClock clock;             // production
//   FakeClock clock(start);      // tests: clock.Advance(absl::Seconds(30));
//
// Code that waits for a condition or a deadline, whichever comes first:
//
//   absl::MutexLock lock(&mu_);
//   clock_->AwaitWithDeadline(mu_, absl::Condition(&wake_), clock_->Now() + absl::Seconds(5));
//
// On a FakeClock such a wait ends when the condition holds (the caller's mutex re-evaluates it,
// as absl does) or when Advance or Set moves the fake time to the deadline. A waiter notices a
// move of the time within about a millisecond of real time (it re-checks the fake time in short
// real-time slices), so Advance needs to know nothing of the waiters' mutexes. Tests advance the
// time only once the code under test waits for it, instead of sleeping:
//
//   ASSERT_TRUE(clock.AwaitWaiters(2));  // both threads of the code under test wait on the clock
//   clock.Advance(absl::Seconds(1));     // the one whose deadline passed acts on it...
//   ASSERT_TRUE(clock.AwaitWaiters(2));  // ...and waits again: the effect is there to check
//
// Both are thread-safe.
#pragma once

#include <cstdint>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace evalctl {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;

  // With `mu` held, as absl::Mutex::AwaitWithDeadline: releases `mu` until `cond` holds or Now()
  // reaches `deadline`, then holds it again. Returns whether `cond` holds.
  virtual bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;

  // Returns once Now() has reached `deadline` (at once if it has already).
  void SleepUntil(absl::Time deadline);
  void SleepFor(absl::Duration d) { SleepUntil(Now() + d); }
};

class RealClock : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return mu.AwaitWithDeadline(cond, deadline);
  }
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'800'000'000)) : now_(start) {}
  absl::Time Now() override;
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Move the fake time; the waiters whose deadline it reaches return within about a millisecond.
  void Advance(absl::Duration d);
  void Set(absl::Time t);

  // The threads that wait on this clock (AwaitWithDeadline, SleepUntil) and have seen its time
  // since the last Advance or Set: they stay put until the time moves on or their condition holds.
  // A thread whose deadline the time just reached is not counted; it is again once it waits anew.
  int waiters();
  // Waits, in real time, until waiters() >= n; false after `timeout`.
  bool AwaitWaiters(int n, absl::Duration timeout = absl::Seconds(30));

 private:
  // How long a waiter blocks in real time before it looks at the fake time again.
  static constexpr absl::Duration kSlice = absl::Milliseconds(1);

  int WaitersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  // Incremented by every Advance and Set.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  // Each waiter, by id: the epoch in which it last saw that its deadline is still ahead.
  std::map<uint64_t, uint64_t> waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t next_waiter_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace evalctl

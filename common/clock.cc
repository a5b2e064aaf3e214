#include "common/clock.h"

namespace evalctl {

void Clock::SleepUntil(absl::Time deadline) {
  absl::Mutex mu;
  const bool never = false;
  absl::MutexLock lock(&mu);
  AwaitWithDeadline(mu, absl::Condition(&never), deadline);
}

absl::Time FakeClock::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

bool FakeClock::AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& cond,
                                  absl::Time deadline) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_waiter_++;
  }
  bool holds = cond.Eval();
  while (!holds) {
    {
      absl::MutexLock lock(&mu_);
      if (now_ >= deadline) break;
      waiters_[id] = epoch_;
    }
    // The caller's mutex wakes us when the condition changes; the slice, when the time may have.
    holds = mu.AwaitWithTimeout(cond, kSlice);
  }
  absl::MutexLock lock(&mu_);
  waiters_.erase(id);
  return holds;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
  ++epoch_;
}

void FakeClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
  ++epoch_;
}

int FakeClock::WaitersLocked() {
  int n = 0;
  for (const auto& [id, seen] : waiters_) n += seen == epoch_ ? 1 : 0;
  return n;
}

int FakeClock::waiters() {
  absl::MutexLock lock(&mu_);
  return WaitersLocked();
}

bool FakeClock::AwaitWaiters(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const auto enough = [this, n] {
    mu_.AssertHeld();  // conditions run under the mutex
    return WaitersLocked() >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

}  // namespace evalctl

#include "common/testing/wait_for.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace evalctl::testing {

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout, absl::Duration poll) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (done()) return true;
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    absl::SleepFor(std::min(poll, deadline - now));
  }
}

bool StaysTrueFor(const std::function<bool()>& cond, absl::Duration d, absl::Duration poll) {
  return !WaitFor([&] { return !cond(); }, d, poll);
}

}  // namespace evalctl::testing

// Waiting in tests for something that happens on another thread or in another process, by polling
// in real time. Code whose waits are on a Clock is better driven with FakeClock (common/clock.h).
//
//   ASSERT_TRUE(WaitFor([&] { return server.connected(); }, absl::Seconds(10)));
//   EXPECT_TRUE(StaysTrueFor([&] { return calls.empty(); }, absl::Milliseconds(200)));
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace evalctl::testing {

// Checks `done` at once and then every `poll` until it returns true (true) or `timeout` has passed
// (false; `done` is checked a last time at the deadline).
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout,
             absl::Duration poll = absl::Milliseconds(10));

// Checks `cond` at once, every `poll` and at the end of `d`: true if it held at every check, false
// as soon as it does not.
bool StaysTrueFor(const std::function<bool()>& cond, absl::Duration d,
                  absl::Duration poll = absl::Milliseconds(10));

}  // namespace evalctl::testing

#include "runner/stop_signal.h"

#include "absl/time/clock.h"

namespace evalctl::runner {

void StopSignal::Request(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (count_++ == 0) reason_ = reason;
  cv_.SignalAll();
}

bool StopSignal::RequestBySignal(const std::string& reason, absl::Time now, absl::Duration window) {
  absl::MutexLock lock(&mu_);
  if (count_ > 0 && now - first_ < window) return false;
  if (count_++ == 0) {
    reason_ = reason;
    first_ = now;
  }
  cv_.SignalAll();
  return true;
}

bool StopSignal::requested() const {
  absl::MutexLock lock(&mu_);
  return count_ > 0;
}

int StopSignal::request_count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

std::string StopSignal::reason() const {
  absl::MutexLock lock(&mu_);
  return reason_;
}

bool StopSignal::WaitFor(absl::Duration timeout) const {
  return WaitUntil(timeout, [] { return false; });
}

bool StopSignal::WaitUntil(absl::Duration timeout, const std::function<bool()>& done) const {
  absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  while (count_ == 0 && !done()) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;
  }
  return count_ > 0;
}

void StopSignal::Poke() const {
  absl::MutexLock lock(&mu_);
  cv_.SignalAll();
}

}  // namespace evalctl::runner

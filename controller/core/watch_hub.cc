#include "controller/core/watch_hub.h"

#include <vector>

namespace evalctl::controller {

int64_t WatchHub::Add(std::function<void()> notify) {
  absl::MutexLock lock(&mu_);
  const int64_t id = next_++;
  listeners_[id] = std::move(notify);
  return id;
}

void WatchHub::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(id);
}

void WatchHub::Notify() {
  std::vector<std::function<void()>> copy;
  {
    absl::MutexLock lock(&mu_);
    copy.reserve(listeners_.size());
    for (const auto& [id, fn] : listeners_) copy.push_back(fn);
  }
  for (const auto& fn : copy) fn();
}

}  // namespace evalctl::controller

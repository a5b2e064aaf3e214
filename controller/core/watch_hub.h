// WatchHub: who waits for new events. Watchers register a callback; whoever commits events calls
// Notify, and every callback runs (on the notifying thread, without the hub's lock held) so that
// the watcher reads what is new from the store.
//
// Thread-safe; `mu_` is a leaf.
#pragma once

#include <cstdint>
#include <functional>
#include <map>

#include "absl/synchronization/mutex.h"

namespace evalctl::controller {

class WatchHub {
 public:
  // Returns the listener's id for Remove.
  int64_t Add(std::function<void()> notify);
  void Remove(int64_t id);
  void Notify();

 private:
  absl::Mutex mu_;
  std::map<int64_t, std::function<void()>> listeners_ ABSL_GUARDED_BY(mu_);
  int64_t next_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace evalctl::controller

// A one-way stop request shared by the signal handler thread, the run loop and its workers.
#pragma once

#include <functional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace evalctl::runner {

class StopSignal {
 public:
  // Requests a stop (the first reason is kept). Each call counts: a second request means "hurry".
  void Request(const std::string& reason) ABSL_LOCKS_EXCLUDED(mu_);
  // A request from a signal received at `now`. A repeat within `window` of the first request is
  // the same request, not "hurry": at a time limit, preemption or cancel, Slurm sends SIGTERM to
  // a step's processes from slurmstepd and again through srun, milliseconds apart. Returns
  // whether it counted.
  bool RequestBySignal(const std::string& reason, absl::Time now, absl::Duration window)
      ABSL_LOCKS_EXCLUDED(mu_);
  bool requested() const ABSL_LOCKS_EXCLUDED(mu_);
  int request_count() const ABSL_LOCKS_EXCLUDED(mu_);
  std::string reason() const ABSL_LOCKS_EXCLUDED(mu_);

  // Sleeps for `timeout` unless a stop is requested first; returns whether one is.
  bool WaitFor(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);
  // Like WaitFor, but also returns early when `done()` becomes true; `done` is re-checked after
  // each Poke() (and each Request()).
  bool WaitUntil(absl::Duration timeout, const std::function<bool()>& done) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // Wakes WaitUntil callers so they re-check their condition.
  void Poke() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  mutable absl::CondVar cv_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace evalctl::runner

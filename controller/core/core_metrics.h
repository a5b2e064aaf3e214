// CoreMetrics: what ControllerCore reports for monitoring. Every method does nothing by default;
// the controller binary injects ControllerMetrics (controller/service/metrics.h), which records
// them in Prometheus families. The core itself links no metrics library.
//
// Implementations must be thread-safe, cheap and non-blocking: the core may call them with its
// own locks held, from any thread, and they must never call back into the core.
#pragma once

#include <map>
#include <string>

#include "absl/time/time.h"
#include "evalctl/v1/types.pb.h"

namespace evalctl::controller {

class CoreMetrics {
 public:
  virtual ~CoreMetrics() = default;

  // A new invocation with `tasks` tasks was committed (not a duplicate request).
  virtual void InvocationSubmitted(int tasks) { (void)tasks; }
  // A task reached a terminal state (once per ending; a resumed task may end again).
  virtual void TaskFinished(v1::TaskState state) { (void)state; }
  // An agent reported a resumed attempt (a RESUMED event), with the attempt's reason.
  virtual void TaskResumed(v1::ResumeReason reason) { (void)reason; }
  // Connected agents per cluster, for every cluster an agent has registered for since start.
  virtual void ConnectedAgents(const std::map<std::string, int>& by_cluster) { (void)by_cluster; }
  // A batch of `events` agent events was committed in one store transaction taking `latency`.
  virtual void EventsApplied(int events, absl::Duration latency) {
    (void)events;
    (void)latency;
  }
};

}  // namespace evalctl::controller

// CoreMetrics: what ControllerCore and SqliteStore report for monitoring. Every method does
// nothing by default; the controller binary injects ControllerMetrics
// (controller/service/metrics.h), which records them in Prometheus families. The core itself
// links no metrics library.
//
// Implementations must be thread-safe, cheap and non-blocking: the core and the store may call
// them with their own locks held, from any thread, and they must never call back into either.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controller/core/task_outcome.h"
#include "evalctl/v1/types.pb.h"

namespace evalctl::controller {

// The write operations of the store, as StoreCommitted names them.
inline constexpr const char* kStoreOperations[] = {"create_invocation", "update_task",
                                                   "apply_agent_events", "upsert_agent"};

class CoreMetrics {
 public:
  virtual ~CoreMetrics() = default;

  // A new invocation with `tasks` tasks was committed (not a duplicate request).
  virtual void InvocationSubmitted(int tasks) { (void)tasks; }
  // A task reached a terminal state, for `reason` (once per ending; a resumed task may end again).
  virtual void TaskFinished(v1::TaskState state, EndReason reason) {
    (void)state;
    (void)reason;
  }
  // An agent reported a resumed attempt (a RESUMED event), with the attempt's reason.
  virtual void TaskResumed(v1::ResumeReason reason) { (void)reason; }
  // An attempt on `cluster` started `queue_wait` after sbatch took it (reported once per attempt).
  virtual void AttemptStarted(const std::string& cluster, absl::Duration queue_wait) {
    (void)cluster;
    (void)queue_wait;
  }
  // An attempt on `cluster` ended after running for `run_time` (reported once per attempt).
  virtual void AttemptEnded(const std::string& cluster, absl::Duration run_time) {
    (void)cluster;
    (void)run_time;
  }
  // Connected agents per cluster, for every cluster an agent has registered for since start.
  virtual void ConnectedAgents(const std::map<std::string, int>& by_cluster) { (void)by_cluster; }
  // A batch of `events` agent events was committed in one store transaction taking `latency`.
  virtual void EventsApplied(int events, absl::Duration latency) {
    (void)events;
    (void)latency;
  }
  // The store committed a write transaction of `operation` (a fixed name per Store method:
  // "create_invocation", "update_task", "apply_agent_events", "upsert_agent"), BEGIN to COMMIT.
  virtual void StoreCommitted(absl::string_view operation, absl::Duration latency) {
    (void)operation;
    (void)latency;
  }
  // Tasks in the store by state, every state (ControllerCore::RefreshMetrics).
  virtual void TasksByState(const std::map<v1::TaskState, int64_t>& counts) { (void)counts; }
  // The sequence of the newest event in the store's event log (ControllerCore::RefreshMetrics).
  virtual void EventLogHead(uint64_t sequence) { (void)sequence; }
};

}  // namespace evalctl::controller

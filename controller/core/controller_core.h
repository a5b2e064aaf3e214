// ControllerCore: the controller without gRPC. It composes and validates configurations, renders
// one job per task, records invocations in the Store, routes tasks to the agent that serves their
// cluster, applies agent events idempotently, and answers clients from the Store (no Slurm call).
//
// The gRPC layer (controller/service) is thin: it turns requests into calls here and implements
// AgentLink (the agent's stream) and the watcher notifications.
//
// Secrets: values from the user's environment reach the agent inside SubmitTask and are held in
// memory only until the agent confirms it journaled the task. The Store never sees them.
//
// Submissions flow to an agent through a window: at most `submit_window` SubmitTasks are on its
// stream without an answer. The others wait as task ids (with their secrets) and are read back
// from the Store when the window has room, so a 10,000-task invocation never holds 10,000
// rendered jobs in memory, and the lock is never held for more than a window's worth of
// messages. Cancels keep their order behind the SubmitTask of the same task.
//
// Locks: `mu_` guards the agents, the held tasks, the windows and the pending commands;
// `apply_mu_` serialises event application (taken before `mu_`, never after); `listeners_mu_`
// is a leaf. The window's store reads happen outside `mu_`; sends to an agent's link happen under
// it (AgentLink::Send serialises and queues, never blocks), at most a window's worth at a time.
//
// Thread-safe. Calls may do disk I/O (SQLite): the gRPC layer runs them on a worker pool.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/core/core_metrics.h"
#include "controller/core/store.h"
#include "evalctl/v1/agent_service.pb.h"
#include "evalctl/v1/eval_service.pb.h"

namespace evalctl::controller {

// Who is calling. Admins see and change everything; users only their own invocations.
struct Caller {
  std::string user;
  bool admin = false;
  // When the caller's token expires (InfiniteFuture: never, or no token): what it creates may not
  // outlive it.
  absl::Time token_expires = absl::InfiniteFuture();
};

// The controller's end of one agent's stream. Send queues and never blocks.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual void Send(v1::ControllerMessage message) = 0;
};

struct ControllerOptions {
  // How long tasks wait for a known but disconnected agent before they fail.
  absl::Duration agent_wait = absl::Minutes(10);
  // An agent not heard from for this long is shown as disconnected.
  int heartbeat_interval_seconds = 15;
  // Agent events applied per store transaction.
  int max_events_per_batch = 1000;
  // SubmitTasks on an agent's stream without an answer, at most.
  int submit_window = 256;
};

class ControllerCore {
 public:
  // `metrics` (optional, not owned) hears what the core does; see core_metrics.h.
  ControllerCore(ControllerOptions options, Store* store, Clock* clock,
                 CoreMetrics* metrics = nullptr);

  // --- clients
  absl::StatusOr<v1::PlanInvocationResponse> Plan(const Caller& caller,
                                                  const v1::ConfigSource& config);
  absl::StatusOr<v1::SubmitInvocationResponse> Submit(const Caller& caller,
                                                      const v1::SubmitInvocationRequest& request);
  absl::StatusOr<v1::Invocation> GetInvocation(const Caller& caller, const std::string& id);
  // In the request's view and page (see GetInvocationRequest); the above is the FULL view.
  absl::StatusOr<v1::Invocation> GetInvocation(const Caller& caller,
                                               const v1::GetInvocationRequest& request);
  absl::StatusOr<v1::Task> GetTask(const Caller& caller, const std::string& id);
  absl::StatusOr<v1::ListInvocationsResponse> List(const Caller& caller,
                                                   const v1::ListInvocationsRequest& request);
  absl::StatusOr<v1::CancelInvocationResponse> Cancel(const Caller& caller, const std::string& id);
  absl::StatusOr<v1::ResumeInvocationResponse> Resume(const Caller& caller, const std::string& id);
  absl::StatusOr<v1::GetResultsResponse> Results(const Caller& caller, const std::string& id);
  v1::ListClustersResponse Clusters();

  // Watching: resolves `id` (empty = every invocation the caller may see) for a watcher.
  struct WatchScope {
    std::string invocation_id;  // empty: all
    std::string owner;          // empty: any (admins)
  };
  absl::StatusOr<WatchScope> ResolveWatch(const Caller& caller, const std::string& id);
  // Committed events after `after` in scope (at most `limit`).
  absl::StatusOr<std::vector<v1::WatchInvocationResponse>> EventsAfter(const WatchScope& scope,
                                                                      uint64_t after, int limit);
  // Calls `notify` (from any thread, without locks held) whenever new events are committed, until
  // RemoveListener. Returns a listener id.
  int64_t AddListener(std::function<void()> notify);
  void RemoveListener(int64_t id);
  bool InvocationFinished(const std::string& invocation_id);
  // The sequence of the newest committed event: a watcher that has read up to it is caught up.
  uint64_t LastEventSequence();

  // --- monitoring
  // Reports what the gauges show from the store (tasks by state, the event log's head) to the
  // metrics; cheap (a few rows), called before each scrape of /metrics.
  void RefreshMetrics();

  // Logs: asks the task's agent for a chunk; `done` runs when the agent answers or fails.
  using LogCallback = std::function<void(absl::StatusOr<v1::LogChunk>)>;
  void ReadLog(const Caller& caller, const v1::StreamLogsRequest& request, int64_t offset,
               int32_t wait_ms, LogCallback done);
  // Resolves a task id prefix for StreamLogs (and checks access).
  absl::StatusOr<v1::Task> ResolveTaskForLogs(const Caller& caller, const std::string& id);

  // --- agents
  absl::StatusOr<v1::Registered> AgentConnected(const v1::Register& reg, AgentLink* link);
  // Applies events; returns the sequence to acknowledge.
  absl::StatusOr<uint64_t> AgentEvents(const std::string& agent_id, const v1::Events& events);
  void AgentHeartbeat(const std::string& agent_id, const v1::Heartbeat& heartbeat);
  void AgentCommandResult(const std::string& agent_id, const v1::CommandResult& result);
  void AgentDisconnected(const std::string& agent_id, AgentLink* link);

  // Periodic housekeeping: fails tasks whose agent did not come back within agent_wait, and
  // fills the submission windows.
  void Tick();

 private:
  struct AgentState {
    v1::Cluster cluster;
    AgentLink* link = nullptr;
    uint64_t last_applied = 0;
    absl::Time disconnected_at = absl::InfiniteFuture();
    // Tasks whose SubmitTask waits for room in the window, oldest first (an id whose
    // Undelivered is no longer `queued` is skipped).
    std::deque<std::string> submit_queue;
    // SubmitTasks taken from the queue and being read back from the store, and those written to
    // the current stream and not yet answered: together at most submit_window.
    int submits_taken = 0;
    int submits_on_stream = 0;
  };
  // A task not yet confirmed by its agent: the secret values of its SubmitTask, in the order of
  // its env (the store has the rest; none for a task read back after a controller restart), and
  // how long it may wait for a disconnected agent.
  struct Undelivered {
    std::vector<std::string> secrets;
    absl::Time deadline;
    // A SubmitTask was written to one of the agent's streams: the agent may hold the task, and
    // only it can cancel it.
    bool ever_sent = false;
    // Written to the current stream (a reconnect sends it again).
    bool on_stream = false;
    // In submit_queue, waiting for the window.
    bool queued = false;
    // A cancel that must follow the SubmitTask still to be (re)sent.
    bool cancel_after = false;
  };
  enum class CommandKind { kSubmit, kCancel, kResume, kReadLog };
  struct PendingCommand {
    std::string agent_id;
    std::string task_id;
    CommandKind kind;
    LogCallback log_done;
  };

  absl::StatusOr<std::string> ResolveInvocation(const Caller& caller, const std::string& prefix);
  absl::StatusOr<std::vector<StoredTask>> ResolveTasks(const Caller& caller, const std::string& id,
                                                       std::string* invocation_id);
  absl::Status CheckAccess(const Caller& caller, const std::string& invocation_id);
  // Picks the agent for (hostname, username); UNAVAILABLE with the list of clusters otherwise.
  absl::StatusOr<std::string> Route(const std::string& hostname, const std::string& username)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records the command as pending and writes it to the agent's stream if it is connected;
  // returns whether it was written.
  bool SendCommand(const std::string& agent_id, v1::Command command, PendingCommand pending)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the task's SubmitTask for the agent's window (once).
  void QueueSubmitLocked(const std::string& agent_id, const std::string& task_id,
                         Undelivered& held) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends queued SubmitTasks while the agent's window has room, reading them from the store.
  void PumpSubmits(const std::string& agent_id) ABSL_LOCKS_EXCLUDED(mu_);
  void NotifyListeners();
  absl::Status FailTask(StoredTask task, const std::string& reason, EndReason why);
  // Reports connected agents per cluster to metrics_.
  void ReportConnectedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ControllerOptions options_;
  Store* store_;
  Clock* clock_;
  CoreMetrics* metrics_;

  absl::Mutex mu_;
  std::map<std::string, AgentState> agents_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, Undelivered>> undelivered_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, PendingCommand> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_command_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Serialises event application per agent (one stream, one applier).
  absl::Mutex apply_mu_;

  absl::Mutex listeners_mu_;
  std::map<int64_t, std::function<void()>> listeners_ ABSL_GUARDED_BY(listeners_mu_);
  int64_t next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 1;
};

// Applies an agent's snapshot event to the stored task (state, phase, progress, attempt, ...).
void ApplyEventToTask(const v1::TaskEvent& event, v1::Task& task);

}  // namespace evalctl::controller

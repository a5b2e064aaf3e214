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
// It is the invocation service; the agent side lives in its parts (see docs/architecture.md):
//   AgentRegistry  agents, routing, held submissions and their window, commands and answers
//   EventIngest    agents' event batches into the store
//   WatchHub       who waits for new events
//
// Locks: ControllerCore itself has none. EventIngest's lock is taken before AgentRegistry's;
// AgentRegistry's and WatchHub's are leaves. No lock is held while the store is written or a
// message is serialised for an agent.
//
// Thread-safe. Calls may do disk I/O (SQLite): the gRPC layer runs them on a worker pool.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/core/agent_registry.h"
#include "controller/core/core_metrics.h"
#include "controller/core/event_ingest.h"
#include "controller/core/store.h"
#include "controller/core/watch_hub.h"
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
  // The token's public id (empty without tokens): open streams end when it is revoked.
  std::string token_id;
};

// Which Unix users a user's jobs may run as. A user runs as the Unix user of the same name; an
// admin may grant more (a shared service account, for example). Admins run as any Unix user an
// agent serves: they can create any user's token anyway. Without a policy (tests, or the
// single-user insecure mode where every caller is an admin) only the same-name rule applies.
class RunAsPolicy {
 public:
  virtual ~RunAsPolicy() = default;
  // Whether an admin granted `user` the Unix account `unix_user`. Reads no disk.
  virtual bool Granted(const std::string& user, const std::string& unix_user) = 0;
};

// PERMISSION_DENIED naming the user and the Unix account, unless the caller may run as it.
absl::Status CheckRunAs(const Caller& caller, const std::string& unix_user, RunAsPolicy* policy);

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

  // Grants of other Unix users than the caller's own name (not owned; may be null). Set before
  // serving.
  void set_run_as_policy(RunAsPolicy* policy) { run_as_ = policy; }

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
  absl::StatusOr<std::string> ResolveInvocation(const Caller& caller, const std::string& prefix);
  absl::StatusOr<std::vector<StoredTask>> ResolveTasks(const Caller& caller, const std::string& id,
                                                       std::string* invocation_id);
  absl::Status CheckAccess(const Caller& caller, const std::string& invocation_id);
  absl::Status FailTask(StoredTask task, const std::string& reason, EndReason why);

  const ControllerOptions options_;
  Store* const store_;
  Clock* const clock_;
  CoreMetrics* const metrics_;
  RunAsPolicy* run_as_ = nullptr;
  WatchHub watchers_;
  AgentRegistry agents_;
  EventIngest ingest_;
};

}  // namespace evalctl::controller

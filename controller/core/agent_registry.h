// AgentRegistry: the agents the controller knows, which one serves a (cluster, Unix user), and
// every command on its way to one of them.
//
// Submissions are held here until the agent confirms them: a task's secret values live only in
// this memory (the store never sees them). They reach the agent through a window: at most
// `submit_window` SubmitTasks are on its stream without an answer; the others wait as task ids
// and are read back from the store when the window has room, so a 10,000-task invocation never
// holds 10,000 rendered jobs in memory. A cancel keeps its place behind the SubmitTask of its task.
//
// Sends happen outside the registry's lock. Each agent has an outbox of commands, filled under
// `mu_` in the order the commands are made; one thread at a time (whichever finds the outbox idle)
// drains it to the agent's AgentLink without the lock, so heartbeats, event batches and other
// agents never wait for a serialisation. AgentDisconnected waits for a drain to that link to end,
// so a link is never used after its stream is gone.
//
// Locks: `mu_` is a leaf (store reads and sends happen without it). Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "controller/core/core_metrics.h"
#include "controller/core/store.h"
#include "evalctl/v1/agent_service.pb.h"

namespace evalctl::controller {

// The controller's end of one agent's stream. Send queues and never blocks.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual void Send(v1::ControllerMessage message) = 0;
};

class AgentRegistry {
 public:
  using LogCallback = std::function<void(absl::StatusOr<v1::LogChunk>)>;
  // Fails a held task that can no longer be delivered (its secret values were lost to a
  // controller restart). Called without the registry's lock.
  using FailTaskFn = std::function<void(StoredTask task, const std::string& reason)>;

  struct Options {
    // How long a held task waits for its disconnected agent.
    absl::Duration agent_wait = absl::Minutes(10);
    // SubmitTasks on an agent's stream without an answer, at most.
    int submit_window = 256;
  };

  AgentRegistry(Options options, Store* store, Clock* clock, CoreMetrics* metrics,
                FailTaskFn fail_task);

  // --- routing
  struct Route {
    std::string agent_id;
    v1::Cluster cluster;
  };
  // The agent for (hostname, username): a connected one first, else a known disconnected one;
  // UNAVAILABLE naming the connected clusters otherwise.
  absl::StatusOr<Route> RouteTo(const std::string& hostname, const std::string& username);
  // Every agent seen since the controller started, with whether it is connected.
  std::map<std::string, v1::Cluster> Clusters();
  std::string ClusterName(const std::string& agent_id);

  // --- commands
  // Holds the tasks (id and secret values, as stored) for the agent's window and starts sending.
  void HoldSubmissions(const std::string& agent_id,
                       std::vector<std::pair<std::string, std::vector<std::string>>> tasks);
  // A held task never written to a stream is dropped (returns true): nothing runs anywhere.
  bool DropUnsent(const std::string& agent_id, const std::string& task_id);
  // Asks the agent to cancel the task: now, or behind its SubmitTask when that is still to be sent.
  void Cancel(const std::string& agent_id, const std::string& task_id);
  // UNAVAILABLE when the agent is not connected.
  absl::Status Resume(const std::string& agent_id, const std::string& task_id);
  // `done` runs with the agent's answer, or UNAVAILABLE when it is not (or no longer) connected.
  void ReadLog(const std::string& agent_id, v1::ReadLog request, LogCallback done);

  // --- the agent's stream
  // One agent serves a (cluster, Unix user) at a time: FAILED_PRECONDITION, naming the one that
  // does, when another agent for the same pair is connected. (The same agent id reconnecting
  // replaces its older stream.)
  absl::Status CheckSole(const v1::Cluster& cluster);
  // Registers the stream (after the same check); what the agent has not confirmed (`unaccepted`,
  // oldest first) goes through the window again, and pending cancels (`cancelling`) are sent
  // again.
  absl::Status Connected(v1::Cluster cluster, AgentLink* link, uint64_t last_applied,
                 const std::vector<StoredTask>& unaccepted,
                 const std::vector<StoredTask>& cancelling);
  void Disconnected(const std::string& agent_id, AgentLink* link);
  void Heartbeat(const std::string& agent_id, const v1::Heartbeat& heartbeat);

  // An answered command: what it was about.
  struct Answer {
    enum class Kind { kSubmit, kCancel, kResume, kReadLog } kind;
    std::string task_id;
    LogCallback log_done;
  };
  // Matches a CommandResult with its command (nullopt: unknown, or another agent's).
  std::optional<Answer> Answered(const std::string& agent_id, const v1::CommandResult& result);

  // Event ingest: the sequence applied so far and the cluster's name (nullopt: not registered);
  // marks the agent as seen.
  struct Applying {
    uint64_t last_applied = 0;
    std::string cluster;
  };
  std::optional<Applying> BeginApply(const std::string& agent_id);
  // The batch up to `highest` is committed; the agent has the tasks in it.
  void Applied(const std::string& agent_id, uint64_t highest,
               const std::optional<v1::ClusterHealth>& health,
               const std::vector<std::string>& task_ids);

  // Held tasks whose agent stayed away past agent_wait are released and returned as
  // (agent, task); connected agents' windows are refilled.
  std::vector<std::pair<std::string, std::string>> Tick();

 private:
  // A task not yet confirmed by its agent: the secret values of its SubmitTask, in the order of
  // its env (the store has the rest; none for a task read back after a controller restart), and
  // how long it may wait for a disconnected agent.
  struct Held {
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
  struct Pending {
    std::string agent_id;
    Answer answer;
  };
  struct Agent {
    v1::Cluster cluster;
    AgentLink* link = nullptr;
    uint64_t last_applied = 0;
    std::map<std::string, Held> held;
    // Tasks whose SubmitTask waits for room in the window, oldest first (an id whose Held is no
    // longer `queued` is skipped).
    std::deque<std::string> submit_queue;
    // SubmitTasks taken from the queue and being read back from the store, and those written to
    // the current stream and not yet answered: together at most submit_window.
    int submits_taken = 0;
    int submits_on_stream = 0;
    // Commands made and not yet handed to the link, oldest first; `sending_to` is the link a
    // drain is writing to without the lock (null: none).
    std::deque<v1::ControllerMessage> outbox;
    AgentLink* sending_to = nullptr;
  };

  // Records the command as pending and puts it in the agent's outbox if it is connected (the
  // caller flushes); returns whether it was.
  bool CommandLocked(const std::string& agent_id, v1::Command command, Answer answer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueSubmitLocked(Agent& agent, const std::string& task_id, Held& held)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands the agent's outbox to its link, without the lock, unless another thread is doing so.
  void Flush(const std::string& agent_id) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends queued SubmitTasks while the agent's window has room, reading them from the store.
  void PumpSubmits(const std::string& agent_id) ABSL_LOCKS_EXCLUDED(mu_);
  void ReportConnectedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckSoleLocked(const v1::Cluster& cluster) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  Store* const store_;
  Clock* const clock_;
  CoreMetrics* const metrics_;
  const FailTaskFn fail_task_;

  absl::Mutex mu_;
  // Never erased: references stay valid while a drain runs without the lock.
  std::map<std::string, Agent> agents_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_command_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace evalctl::controller

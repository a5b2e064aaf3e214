// The controller's durable record: invocations, tasks (with every attempt), the event log that
// watchers replay, and the agents that have registered. SqliteStore is the embedded
// implementation; the interface leaves room for a PostgreSQL backend behind a replicated
// controller.
//
// No secret value is ever stored: tasks keep their SubmitTask with secret env values cleared.
// Every method is one transaction; a state change is committed before it is acknowledged or
// published. Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "evalctl/v1/agent_service.pb.h"
#include "evalctl/v1/eval_service.pb.h"

namespace evalctl::controller {

struct StoredTask {
  v1::Task task;
  // What the agent gets (secret values cleared).
  v1::SubmitTask submit;
  // The agent that owns the task.
  std::string agent_id;
  // The agent confirmed it journaled the task.
  bool accepted = false;
};

struct NewInvocation {
  v1::Invocation invocation;  // without tasks
  std::string owner;
  std::string request_id;
  std::vector<StoredTask> tasks;
  // Optional, after `tasks`: yields further tasks one at a time inside the transaction (nullopt:
  // no more), so that a large invocation is never in memory as a whole; an error rolls the whole
  // invocation back.
  std::function<absl::StatusOr<std::optional<StoredTask>>()> next_task;
};

struct AppliedEvent {
  StoredTask task;
  v1::TaskEvent event;
};

struct EventRecord {
  uint64_t sequence = 0;
  std::string invocation_id;
  std::string owner;
  v1::TaskEvent event;
};

// What GetInvocation reads: the view, and a page of the tasks by index.
struct InvocationQuery {
  // UNSPECIFIED reads as FULL.
  v1::InvocationView view = v1::INVOCATION_VIEW_FULL;
  // Tasks with index >= first_index, at most `limit` of them (0: all); `next_page_token` is
  // set to the index of the next task when more follow.
  int first_index = 0;
  int limit = 0;
};

struct AgentRecord {
  v1::Cluster cluster;
  uint64_t last_applied_sequence = 0;
};

struct ListFilter {
  // Empty: every owner.
  std::string owner;
  absl::Time since = absl::InfinitePast();
  int limit = 50;
  // Invocations created before this one (paging); empty: from the newest.
  std::string before_id;
};

class Store {
 public:
  virtual ~Store() = default;

  // Creates the invocation and its tasks; ALREADY_EXISTS with the existing id in the message
  // when (owner, request_id) was used before (see FindRequest).
  virtual absl::Status CreateInvocation(const NewInvocation& inv) = 0;
  virtual absl::StatusOr<std::optional<std::string>> FindRequest(const std::string& owner,
                                                                 const std::string& request_id) = 0;

  // Invocation ids starting with `prefix` (at most `limit`).
  virtual absl::StatusOr<std::vector<std::string>> MatchInvocations(const std::string& prefix,
                                                                    int limit) = 0;
  // The invocation in `query.view`; counts and `finished` cover every task, whatever the page.
  // Tasks in every view carry attempt_count and slurm_job_id. The BASIC view is read from a
  // compact copy of each task's status kept beside it, so it parses no attempts or results.
  virtual absl::StatusOr<v1::Invocation> GetInvocation(const std::string& id,
                                                       const InvocationQuery& query) = 0;
  virtual absl::StatusOr<std::string> InvocationOwner(const std::string& id) = 0;
  virtual absl::StatusOr<StoredTask> GetTask(const std::string& task_id) = 0;
  // The same without the SubmitTask (`submit` left empty; it is the bulk of a task's row): for
  // the paths that only read or change a task's status, like applying agent events.
  virtual absl::StatusOr<StoredTask> GetTaskStatus(const std::string& task_id) = 0;
  virtual absl::StatusOr<std::vector<StoredTask>> TasksOf(const std::string& invocation_id) = 0;
  virtual absl::StatusOr<std::vector<v1::Invocation>> ListInvocations(const ListFilter& filter) = 0;
  // Tasks of an agent that are not terminal and have cancel_requested set (to resend the cancel
  // after a reconnect).
  virtual absl::StatusOr<std::vector<StoredTask>> CancellingTasks(const std::string& agent_id) = 0;
  // Tasks of an agent that it has not confirmed yet (to resend after a reconnect).
  virtual absl::StatusOr<std::vector<StoredTask>> UnacceptedTasks(const std::string& agent_id) = 0;
  // How many tasks are in each state (states without tasks may be absent or 0). Kept by the
  // store as tasks change, so that it reads a handful of rows whatever the number of tasks.
  virtual absl::StatusOr<std::map<v1::TaskState, int64_t>> CountTasksByState() = 0;

  // Updates a task's status and acceptance and appends `event` to the event log, returning
  // its sequence (0 when `event` is null). A task's SubmitTask, agent and index are written once
  // by CreateInvocation and never change: `task.submit` is not read (GetTaskStatus is enough).
  // NOT_FOUND when the task does not exist.
  virtual absl::StatusOr<uint64_t> UpdateTask(const StoredTask& task,
                                              const v1::TaskEvent* event) = 0;

  // Applies a batch of agent events in one transaction: updates each task's status and acceptance
  // (as UpdateTask), appends each event to the log and records `last_agent_sequence` as applied
  // for the agent. The caller drops events at
  // or below the agent's last applied sequence first (idempotent apply). Returns the log sequence
  // of each event.
  virtual absl::StatusOr<std::vector<uint64_t>> ApplyAgentEvents(
      const std::string& agent_id, const std::vector<AppliedEvent>& events,
      uint64_t last_agent_sequence) = 0;

  // Events with sequence > after (of one invocation when `invocation_id` is set), oldest first.
  virtual absl::StatusOr<std::vector<EventRecord>> EventsAfter(uint64_t after,
                                                               const std::string& invocation_id,
                                                               int limit) = 0;
  virtual uint64_t last_event_sequence() = 0;

  virtual absl::Status UpsertAgent(const v1::Cluster& cluster) = 0;
  virtual absl::StatusOr<std::optional<AgentRecord>> GetAgent(const std::string& agent_id) = 0;
  virtual absl::StatusOr<std::vector<AgentRecord>> ListAgents() = 0;
};

}  // namespace evalctl::controller

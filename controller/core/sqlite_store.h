// Store on SQLite (WAL, synchronous=FULL) in the controller's state directory. Schema versions
// are kept in `meta.schema_version`; Open migrates older databases forward and refuses newer ones.
// Thread-safe: one connection behind a mutex (SQLite serialises writers anyway).
//
// Tasks per state are counted in a table of their own, kept by triggers on `tasks` in the same
// transactions (CountTasksByState reads at most one row per state). Every write transaction is
// timed and reported to the optional CoreMetrics (StoreCommitted).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/sqlite.h"
#include "controller/core/core_metrics.h"
#include "controller/core/store.h"

namespace evalctl::controller {

class SqliteStore : public Store {
 public:
  // `path` of the database file; created with mode 0600. `metrics` (optional, not owned) hears
  // the latency of every write transaction.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path,
                                                           CoreMetrics* metrics = nullptr);

  absl::Status CreateInvocation(const NewInvocation& inv) override;
  absl::StatusOr<std::optional<std::string>> FindRequest(const std::string& owner,
                                                         const std::string& request_id) override;
  absl::StatusOr<std::vector<std::string>> MatchInvocations(const std::string& prefix,
                                                            int limit) override;
  absl::StatusOr<v1::Invocation> GetInvocation(const std::string& id,
                                               const InvocationQuery& query) override;
  absl::StatusOr<std::string> InvocationOwner(const std::string& id) override;
  absl::StatusOr<StoredTask> GetTask(const std::string& task_id) override;
  absl::StatusOr<StoredTask> GetTaskStatus(const std::string& task_id) override;
  absl::StatusOr<std::vector<StoredTask>> TasksOf(const std::string& invocation_id) override;
  absl::StatusOr<std::vector<v1::Invocation>> ListInvocations(const ListFilter& filter) override;
  absl::StatusOr<std::vector<StoredTask>> UnacceptedTasks(const std::string& agent_id) override;
  absl::StatusOr<std::vector<StoredTask>> CancellingTasks(const std::string& agent_id) override;
  absl::StatusOr<std::map<v1::TaskState, int64_t>> CountTasksByState() override;
  absl::StatusOr<uint64_t> UpdateTask(const StoredTask& task, const v1::TaskEvent* event) override;
  absl::StatusOr<std::vector<uint64_t>> ApplyAgentEvents(const std::string& agent_id,
                                                         const std::vector<AppliedEvent>& events,
                                                         uint64_t last_agent_sequence) override;
  absl::StatusOr<std::vector<EventRecord>> EventsAfter(uint64_t after,
                                                       const std::string& invocation_id,
                                                       int limit) override;
  uint64_t last_event_sequence() override;
  absl::Status UpsertAgent(const v1::Cluster& cluster) override;
  absl::StatusOr<std::optional<AgentRecord>> GetAgent(const std::string& agent_id) override;
  absl::StatusOr<std::vector<AgentRecord>> ListAgents() override;

 private:
  SqliteStore(std::unique_ptr<SqliteDb> db, CoreMetrics* metrics)
      : metrics_(metrics), db_(std::move(db)) {}
  // Runs `body` in one write transaction (SqliteDb::Transaction) and reports its latency as
  // `operation` to metrics_.
  template <typename F>
  absl::Status Write(absl::string_view operation, F&& body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Fills the `brief` column of every task (the schema 3 migration).
  absl::Status FillBriefs() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A prepared statement for `sql`, prepared on first use and kept (hot paths run thousands of
  // statements per transaction). Callers reset it when done (ResetOnExit), so that no statement
  // keeps a read snapshot open.
  absl::StatusOr<SqliteStatement*> Statement(const std::string& sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts a task row (CreateInvocation).
  absl::Status PutTask(const StoredTask& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Updates a task's state, acceptance and status; the SubmitTask is not rewritten.
  absl::Status PutTaskStatus(const StoredTask& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> AppendEvent(const std::string& invocation_id,
                                       const v1::TaskEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `sql` (columns: status, submit or NULL, agent_id, accepted) with `arg` bound to ?1.
  absl::StatusOr<std::vector<StoredTask>> QueryTasks(const std::string& sql,
                                                     const std::string& arg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status FillCounts(v1::Invocation& inv) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CoreMetrics* metrics_;
  absl::Mutex mu_;
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
  // Declared after db_, so destroyed (finalized) before the connection closes.
  std::map<std::string, std::unique_ptr<SqliteStatement>> statements_ ABSL_GUARDED_BY(mu_);
  uint64_t last_event_sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace evalctl::controller

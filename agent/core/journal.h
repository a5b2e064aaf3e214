// The agent's durable state, in its state directory (mode 0700):
//   journal.db  (0600): tasks as the controller sent them (secret values removed), their status
//               with every attempt and Slurm job id, and the outbox of events not yet
//               acknowledged by the controller, with per-agent sequence numbers;
//   secrets.db  (0600): the secret environment values of the journal's tasks (kept after a task
//               ends, so that a manual resume can submit it again) and the agent's credential
//               for the controller, and nothing else.
//
// Every state change and the events it produces are committed in one SQLite transaction, so a
// crash never loses an event or reports one that did not happen. One Journal at a time uses a
// state directory: Open takes an exclusive lock on its `lock` file (holding the pid), and a
// second Open (a second agent on a shared $HOME, a second install) is refused with the holder's
// pid, so two agents never share a journal and its outbox.
//
//   ASSIGN_OR_RETURN(auto journal, Journal::Open("/var/lib/evalctl-agent", &clock));
//   RETURN_IF_ERROR(journal->Commit({task}, {event}));
//
// Thread-safe (an internal mutex serialises access).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/sqlite.h"
#include "evalctl/v1/agent_service.pb.h"

namespace evalctl::agent {

// What the agent keeps per task.
struct JournaledTask {
  // As received, with the value of every secret env var cleared, and the script cleared once it
  // is written to the run directory (where sbatch reads it).
  v1::SubmitTask submit;
  // Current status, attempts included.
  v1::Task status;
};

class Journal {
 public:
  // `clock` (not owned) stamps the outbox's events with their commit time.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& state_dir, Clock* clock);

  // Stable identity of this agent (created on first open).
  const std::string& agent_id() const { return agent_id_; }

  // Every task in the journal.
  absl::StatusOr<std::vector<JournaledTask>> LoadTasks();

  // Upserts `tasks` and appends `events` to the outbox, in one transaction. Returns the events
  // with their sequence numbers.
  absl::StatusOr<std::vector<v1::AgentEvent>> Commit(const std::vector<JournaledTask>& tasks,
                                                     const std::vector<v1::AgentEvent>& events);

  // Secret env values of a task (name → value).
  absl::Status PutSecrets(const std::string& task_id,
                          const std::map<std::string, std::string>& secrets);
  absl::StatusOr<std::map<std::string, std::string>> GetSecrets(const std::string& task_id);
  absl::Status DeleteSecrets(const std::string& task_id);

  // The credential the controller issued at enrollment; "" when there is none.
  absl::Status PutCredential(const std::string& credential);
  absl::StatusOr<std::string> GetCredential();

  // Outbox: events with sequence > after, oldest first.
  absl::StatusOr<std::vector<v1::AgentEvent>> Pending(uint64_t after, int limit);
  // Drops events up to and including `sequence` (the controller committed them).
  absl::Status Ack(uint64_t sequence);
  uint64_t last_sequence() const;
  uint64_t acked_sequence() const;
  int64_t outbox_depth() const;
  // Commit time of the oldest unacknowledged event; InfiniteFuture when there is none.
  absl::Time oldest_unacked() const;

 private:
  Journal(std::unique_ptr<FileLock> lock, std::unique_ptr<SqliteDb> db,
          std::unique_ptr<SqliteDb> secrets, Clock* clock)
      : lock_(std::move(lock)), db_(std::move(db)), secrets_(std::move(secrets)), clock_(clock) {}
  absl::Status Init();
  absl::Status SetMeta(const std::string& key, const std::string& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::unique_ptr<FileLock> lock_;  // released last, after the databases are closed
  mutable absl::Mutex mu_;
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<SqliteDb> secrets_ ABSL_GUARDED_BY(mu_);
  Clock* const clock_;
  std::string agent_id_;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acked_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t outbox_depth_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace evalctl::agent

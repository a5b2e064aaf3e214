#include "controller/core/sqlite_store.h"

#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/task_vocabulary.h"
#include "google/protobuf/util/time_util.h"

namespace evalctl::controller {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kSchemaVersion = 4;

// Schema migrations, in order; migration i brings the schema from version i to i + 1.
constexpr const char* kMigrations[] = {
    // 0 → 1
    "CREATE TABLE invocations ("
    "  id TEXT PRIMARY KEY, owner TEXT NOT NULL, request_id TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (owner, request_id));"
    "CREATE INDEX invocations_created ON invocations (created_ms);"
    "CREATE TABLE tasks ("
    "  id TEXT PRIMARY KEY, invocation_id TEXT NOT NULL REFERENCES invocations (id),"
    "  idx INTEGER NOT NULL, state INTEGER NOT NULL, agent_id TEXT NOT NULL,"
    "  accepted INTEGER NOT NULL, status BLOB NOT NULL, submit BLOB NOT NULL);"
    "CREATE INDEX tasks_invocation ON tasks (invocation_id, idx);"
    "CREATE INDEX tasks_unaccepted ON tasks (agent_id) WHERE accepted = 0;"
    "CREATE TABLE events ("
    "  sequence INTEGER PRIMARY KEY, invocation_id TEXT NOT NULL, event BLOB NOT NULL);"
    "CREATE INDEX events_invocation ON events (invocation_id, sequence);"
    "CREATE TABLE agents ("
    "  agent_id TEXT PRIMARY KEY, cluster BLOB NOT NULL, last_applied INTEGER NOT NULL DEFAULT 0);",
    // 1 → 2: the SubmitTask (the rendered job, ~10 KiB) moves out of the task row. SQLite rewrites
    // a whole row, overflow pages included, on every UPDATE, and reads through them to reach the
    // status: with the job in the row, each applied event copied ~13 KiB and a status read of a
    // 10,000-task invocation ~130 MB. The job is written once and read only to resend a task.
    "CREATE TABLE task_submits (task_id TEXT PRIMARY KEY, submit BLOB NOT NULL);"
    "INSERT INTO task_submits (task_id, submit) SELECT id, submit FROM tasks;"
    "ALTER TABLE tasks DROP COLUMN submit;",
    // 2 → 3: `brief`, the task as GetInvocation's BASIC view shows it (BriefOf), next to the full
    // status. A status table of 10,000 tasks then parses ~80 bytes per task instead of the
    // attempts, timestamps and results (~550 bytes and ~35 objects). Filled by FillBriefs.
    "ALTER TABLE tasks ADD COLUMN brief BLOB;",
    // 3 → 4: tasks per state, kept by triggers in the transaction that changes a task, so that
    // the controller's tasks-by-state gauge reads a few rows instead of counting every task ever
    // submitted. Only changes of `state` touch it (events that move progress or phase do not).
    // No conflict clause in the triggers: inside a trigger, SQLite applies the firing statement's
    // (PutTask's INSERT OR REPLACE) instead of the trigger's own.
    "CREATE TABLE task_state_counts (state INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO task_state_counts (state, n) SELECT state, COUNT(*) FROM tasks GROUP BY state;"
    "CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN"
    "  INSERT INTO task_state_counts (state, n) SELECT new.state, 0"
    "    WHERE NOT EXISTS (SELECT 1 FROM task_state_counts WHERE state = new.state);"
    "  UPDATE task_state_counts SET n = n + 1 WHERE state = new.state;"
    "END;"
    "CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN"
    "  UPDATE task_state_counts SET n = n - 1 WHERE state = old.state;"
    "END;"
    "CREATE TRIGGER tasks_count_update AFTER UPDATE OF state ON tasks"
    "  WHEN old.state IS NOT new.state BEGIN"
    "  UPDATE task_state_counts SET n = n - 1 WHERE state = old.state;"
    "  INSERT INTO task_state_counts (state, n) SELECT new.state, 0"
    "    WHERE NOT EXISTS (SELECT 1 FROM task_state_counts WHERE state = new.state);"
    "  UPDATE task_state_counts SET n = n + 1 WHERE state = new.state;"
    "END;",
};

// Resets a cached statement when the scope ends, however it ends: clears its bindings and
// releases the read snapshot a statement that was not stepped to completion would keep.
class ResetOnExit {
 public:
  explicit ResetOnExit(SqliteStatement* st) : st_(st) {}
  ~ResetOnExit() { st_->Reset(); }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  SqliteStatement* st_;
};

// Parses a message from a column's bytes (empty or NULL: the empty message).
bool Parse(absl::string_view bytes, google::protobuf::MessageLite& message) {
  if (bytes.empty()) {
    message.Clear();
    return true;
  }
  return message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

// attempt_count and slurm_job_id of `to`, from the attempts of `from`.
void SetAttemptSummary(const v1::Task& from, v1::Task& to) {
  to.set_attempt_count(from.attempts_size());
  to.clear_slurm_job_id();
  for (int i = from.attempts_size() - 1; i >= 0; --i) {
    if (!from.attempts(i).slurm_job_id().empty()) {
      to.set_slurm_job_id(from.attempts(i).slurm_job_id());
      break;
    }
  }
}

// The task in the BASIC view (see InvocationView in eval_service.proto), serialized.
std::string BriefOf(const v1::Task& t) {
  v1::Task b;
  b.set_id(t.id());
  b.set_invocation_id(t.invocation_id());
  b.set_index(t.index());
  b.set_name(t.name());
  b.set_state(t.state());
  b.set_phase(t.phase());
  b.set_reason(t.reason());
  if (t.has_progress()) *b.mutable_progress() = t.progress();
  b.set_elapsed_seconds(t.elapsed_seconds());
  b.set_cancel_requested(t.cancel_requested());
  SetAttemptSummary(t, b);
  return b.SerializeAsString();
}

// Adds `n` tasks in `state` to the counts (states without a counter count as pending).
void AddCount(v1::TaskCounts& c, v1::TaskState state, int n) {
  switch (state) {
    case v1::TASK_STATE_QUEUED: c.set_queued(c.queued() + n); break;
    case v1::TASK_STATE_RUNNING: c.set_running(c.running() + n); break;
    case v1::TASK_STATE_RESUMING: c.set_resuming(c.resuming() + n); break;
    case v1::TASK_STATE_SUCCEEDED: c.set_succeeded(c.succeeded() + n); break;
    case v1::TASK_STATE_FAILED: c.set_failed(c.failed() + n); break;
    case v1::TASK_STATE_CANCELLED: c.set_cancelled(c.cancelled() + n); break;
    case v1::TASK_STATE_BUDGET_EXHAUSTED: c.set_budget_exhausted(c.budget_exhausted() + n); break;
    default: c.set_pending(c.pending() + n); break;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                               CoreMetrics* metrics) {
  ASSIGN_OR_RETURN(auto db, SqliteDb::Open(path, {.create_mode = 0600}));
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(db), metrics));
  absl::MutexLock lock(&store->mu_);
  // An INSERT OR REPLACE that replaces a task row deletes it first; with recursive triggers the
  // delete trigger sees that, and the counts of task_state_counts stay exact.
  RETURN_IF_ERROR(store->db_->Exec("PRAGMA recursive_triggers = ON"));
  RETURN_IF_ERROR(store->Migrate());
  // SQLite's default page cache is 2 MiB, less than the rows of one 10,000-task invocation
  // (~7 MiB): every status read and every batch of events went back to the file through pread.
  // 32 MiB (at most, allocated as used) holds the active invocations' rows; it made BASIC reads
  // and event ingest about 1.5x faster.
  RETURN_IF_ERROR(store->db_->Exec("PRAGMA cache_size=-32768"));
  ASSIGN_OR_RETURN(auto st, store->db_->Prepare("SELECT COALESCE(MAX(sequence), 0) FROM events"));
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (row) store->last_event_sequence_ = static_cast<uint64_t>(st.Int(0));
  return store;
}

absl::Status SqliteStore::Migrate() {
  RETURN_IF_ERROR(db_->Exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"));
  int version = 0;
  {
    ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT value FROM meta WHERE key = 'schema_version'"));
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && !absl::SimpleAtoi(st.Text(0), &version)) {
      return absl::DataLossError(absl::StrCat(db_->path(), ": unreadable schema version"));
    }
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        db_->path(), " has schema version ", version, "; this controller understands up to ",
        kSchemaVersion, ". Run the newer evalctl-controller that wrote it."));
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    RETURN_IF_ERROR(db_->Transaction([&]() -> absl::Status {
      mu_.AssertHeld();
      RETURN_IF_ERROR(db_->Exec(kMigrations[v]));
      if (v + 1 == 3) RETURN_IF_ERROR(FillBriefs());
      ASSIGN_OR_RETURN(auto st, db_->Prepare(
          "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)"));
      return st.Bind(1, std::to_string(v + 1)).Run();
    }));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::FillBriefs() {
  ASSIGN_OR_RETURN(auto read, db_->Prepare("SELECT id, status FROM tasks"));
  ASSIGN_OR_RETURN(auto write, db_->Prepare("UPDATE tasks SET brief = ? WHERE id = ?"));
  while (true) {
    ASSIGN_OR_RETURN(bool row, read.Step());
    if (!row) break;
    v1::Task t;
    if (!Parse(read.Bytes(1), t)) {
      return absl::DataLossError(absl::StrCat("task ", read.Text(0), " cannot be decoded"));
    }
    RETURN_IF_ERROR(write.BindBlob(1, BriefOf(t)).Bind(2, read.Text(0)).Run());
  }
  return absl::OkStatus();
}

template <typename F>
absl::Status SqliteStore::Write(absl::string_view operation, F&& body) {
  const absl::Time start = absl::Now();
  absl::Status s = db_->Transaction(std::forward<F>(body));
  if (s.ok() && metrics_ != nullptr) metrics_->StoreCommitted(operation, absl::Now() - start);
  return s;
}

absl::StatusOr<SqliteStatement*> SqliteStore::Statement(const std::string& sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    ASSIGN_OR_RETURN(SqliteStatement st, db_->Prepare(sql));
    it = statements_.emplace(sql, std::make_unique<SqliteStatement>(std::move(st))).first;
  }
  return it->second.get();
}

absl::Status SqliteStore::PutTask(const StoredTask& t) {
  {
    ASSIGN_OR_RETURN(SqliteStatement * st, Statement(
        "INSERT OR REPLACE INTO tasks (id, invocation_id, idx, state, agent_id, accepted, status, "
        "brief) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
    ResetOnExit reset(st);
    RETURN_IF_ERROR(st->Bind(1, t.task.id())
                        .Bind(2, t.task.invocation_id())
                        .Bind(3, t.task.index())
                        .Bind(4, static_cast<int>(t.task.state()))
                        .Bind(5, t.agent_id)
                        .Bind(6, t.accepted ? 1 : 0)
                        .BindBlob(7, t.task.SerializeAsString())
                        .BindBlob(8, BriefOf(t.task))
                        .Run());
  }
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement(
      "INSERT OR REPLACE INTO task_submits (task_id, submit) VALUES (?, ?)"));
  ResetOnExit reset(st);
  return st->Bind(1, t.task.id()).BindBlob(2, t.submit.SerializeAsString()).Run();
}

absl::Status SqliteStore::PutTaskStatus(const StoredTask& t) {
  // The SubmitTask (in task_submits) is written once, by CreateInvocation, and never rewritten.
  ASSIGN_OR_RETURN(SqliteStatement * st,
                   Statement("UPDATE tasks SET state = ?, accepted = ?, status = ?, brief = ? "
                             "WHERE id = ?"));
  ResetOnExit reset(st);
  RETURN_IF_ERROR(st->Bind(1, static_cast<int>(t.task.state()))
                      .Bind(2, t.accepted ? 1 : 0)
                      .BindBlob(3, t.task.SerializeAsString())
                      .BindBlob(4, BriefOf(t.task))
                      .Bind(5, t.task.id())
                      .Run());
  if (db_->Changes() == 0) return absl::NotFoundError(absl::StrCat("no task ", t.task.id()));
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SqliteStore::AppendEvent(const std::string& invocation_id,
                                                  const v1::TaskEvent& event) {
  ASSIGN_OR_RETURN(SqliteStatement * st,
                   Statement("INSERT INTO events (sequence, invocation_id, event) VALUES (?, ?, ?)"));
  ResetOnExit reset(st);
  uint64_t seq = last_event_sequence_ + 1;
  RETURN_IF_ERROR(
      st->Bind(1, seq).Bind(2, invocation_id).BindBlob(3, event.SerializeAsString()).Run());
  last_event_sequence_ = seq;
  return seq;
}

absl::Status SqliteStore::CreateInvocation(const NewInvocation& inv) {
  absl::MutexLock lock(&mu_);
  const uint64_t seq_before = last_event_sequence_;
  absl::Status s = Write("create_invocation", [&]() -> absl::Status {
    mu_.AssertHeld();
    ASSIGN_OR_RETURN(SqliteStatement * st, Statement(
        "INSERT INTO invocations (id, owner, request_id, created_ms, data) VALUES (?, ?, ?, ?, ?)"));
    ResetOnExit reset(st);
    v1::Invocation copy = inv.invocation;
    copy.clear_tasks();
    RETURN_IF_ERROR(st->Bind(1, copy.id())
                        .Bind(2, inv.owner)
                        .Bind(3, inv.request_id)
                        .Bind(4, TimeUtil::TimestampToMilliseconds(copy.created_time()))
                        .BindBlob(5, copy.SerializeAsString())
                        .Run());
    const auto put = [&](const StoredTask& t) -> absl::Status {
      mu_.AssertHeld();
      RETURN_IF_ERROR(PutTask(t));
      v1::TaskEvent created;
      created.set_kind(v1::TaskEvent::KIND_STATE_CHANGED);
      created.set_task_id(t.task.id());
      *created.mutable_time() = copy.created_time();
      created.set_state(t.task.state());
      created.set_reason(t.task.reason());
      return AppendEvent(copy.id(), created).status();
    };
    for (const StoredTask& t : inv.tasks) RETURN_IF_ERROR(put(t));
    while (inv.next_task) {
      ASSIGN_OR_RETURN(std::optional<StoredTask> t, inv.next_task());
      if (!t) break;
      RETURN_IF_ERROR(put(*t));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) last_event_sequence_ = seq_before;
  return s;
}

absl::StatusOr<std::optional<std::string>> SqliteStore::FindRequest(const std::string& owner,
                                                                     const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(SqliteStatement * st,
                   Statement("SELECT id FROM invocations WHERE owner = ? AND request_id = ?"));
  ResetOnExit reset(st);
  st->Bind(1, owner).Bind(2, request_id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(st->Text(0));
}

absl::StatusOr<std::vector<std::string>> SqliteStore::MatchInvocations(const std::string& prefix,
                                                                      int limit) {
  absl::MutexLock lock(&mu_);
  // A range scan on the primary key: prefix <= id < prefix + '\xff'.
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement(
      "SELECT id FROM invocations WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"));
  ResetOnExit reset(st);
  st->Bind(1, prefix).Bind(2, prefix + "\x7f").Bind(3, limit);
  std::vector<std::string> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out.push_back(st->Text(0));
  }
  return out;
}

absl::Status SqliteStore::FillCounts(v1::Invocation& inv) {
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement(
      "SELECT state, COUNT(*) FROM tasks WHERE invocation_id = ? GROUP BY state"));
  ResetOnExit reset(st);
  st->Bind(1, inv.id());
  v1::TaskCounts* c = inv.mutable_counts();
  c->Clear();
  bool finished = true;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    auto state = static_cast<v1::TaskState>(st->Int(0));
    if (!IsTerminal(state)) finished = false;
    AddCount(*c, state, static_cast<int>(st->Int(1)));
  }
  inv.set_finished(finished);
  return absl::OkStatus();
}

absl::StatusOr<v1::Invocation> SqliteStore::GetInvocation(const std::string& id,
                                                          const InvocationQuery& query) {
  const v1::InvocationView view =
      query.view == v1::INVOCATION_VIEW_UNSPECIFIED ? v1::INVOCATION_VIEW_FULL : query.view;
  absl::MutexLock lock(&mu_);
  v1::Invocation inv;
  {
    ASSIGN_OR_RETURN(SqliteStatement * st, Statement("SELECT data FROM invocations WHERE id = ?"));
    ResetOnExit reset(st);
    st->Bind(1, id);
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return absl::NotFoundError(absl::StrCat("no invocation ", id));
    if (!Parse(st->Bytes(0), inv)) {
      return absl::DataLossError(absl::StrCat("invocation ", id, " cannot be decoded"));
    }
  }
  if (view != v1::INVOCATION_VIEW_FULL) inv.clear_resolved_config();
  // The counts come from the rows read for the tasks when those are all of them; a page, or
  // no tasks, counts with a GROUP BY of its own.
  const bool whole = query.first_index <= 0 && query.limit <= 0;
  if (view == v1::INVOCATION_VIEW_SUMMARY || !whole) RETURN_IF_ERROR(FillCounts(inv));
  if (view == v1::INVOCATION_VIEW_SUMMARY) return inv;

  // Only one column of each row: `brief` for BASIC, the status for FULL. The rendered job is in
  // task_submits and not read. One row more than the page tells whether another page follows.
  ASSIGN_OR_RETURN(SqliteStatement * st,
                   Statement(view == v1::INVOCATION_VIEW_BASIC
                                 ? "SELECT brief, idx FROM tasks WHERE invocation_id = ?1 AND "
                                   "idx >= ?2 ORDER BY idx LIMIT ?3"
                                 : "SELECT status, idx FROM tasks WHERE invocation_id = ?1 AND "
                                   "idx >= ?2 ORDER BY idx LIMIT ?3"));
  ResetOnExit reset(st);
  st->Bind(1, id).Bind(2, query.first_index).Bind(3, query.limit > 0 ? int64_t{query.limit} + 1
                                                                      : int64_t{-1});
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    if (query.limit > 0 && inv.tasks_size() == query.limit) {
      inv.set_next_page_token(std::to_string(st->Int(1)));
      break;
    }
    v1::Task* t = inv.add_tasks();
    if (!Parse(st->Bytes(0), *t)) {
      return absl::DataLossError(absl::StrCat("a task of invocation ", id, " cannot be decoded"));
    }
    if (view == v1::INVOCATION_VIEW_FULL) SetAttemptSummary(*t, *t);
  }
  if (whole) {
    v1::TaskCounts* c = inv.mutable_counts();
    c->Clear();
    bool finished = true;
    for (const v1::Task& t : inv.tasks()) {
      finished = finished && IsTerminal(t.state());
      AddCount(*c, t.state(), 1);
    }
    inv.set_finished(finished);
  }
  return inv;
}

absl::StatusOr<std::string> SqliteStore::InvocationOwner(const std::string& id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement("SELECT owner FROM invocations WHERE id = ?"));
  ResetOnExit reset(st);
  st->Bind(1, id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no invocation ", id));
  return st->Text(0);
}

absl::StatusOr<std::vector<StoredTask>> SqliteStore::QueryTasks(const std::string& sql,
                                                                const std::string& arg) {
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement(sql));
  ResetOnExit reset(st);
  st->Bind(1, arg);
  std::vector<StoredTask> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    StoredTask t;
    if (!Parse(st->Bytes(0), t.task) || !Parse(st->Bytes(1), t.submit)) {
      return absl::DataLossError("a task row cannot be decoded");
    }
    SetAttemptSummary(t.task, t.task);
    t.agent_id = st->Text(2);
    t.accepted = st->Int(3) != 0;
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<StoredTask> SqliteStore::GetTask(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto tasks, QueryTasks(
      "SELECT t.status, s.submit, t.agent_id, t.accepted FROM tasks t "
      "LEFT JOIN task_submits s ON s.task_id = t.id WHERE t.id = ?", task_id));
  if (tasks.empty()) return absl::NotFoundError(absl::StrCat("no task ", task_id));
  return std::move(tasks[0]);
}

absl::StatusOr<StoredTask> SqliteStore::GetTaskStatus(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto tasks, QueryTasks(
      "SELECT status, NULL, agent_id, accepted FROM tasks WHERE id = ?", task_id));
  if (tasks.empty()) return absl::NotFoundError(absl::StrCat("no task ", task_id));
  return std::move(tasks[0]);
}

absl::StatusOr<std::vector<StoredTask>> SqliteStore::TasksOf(const std::string& invocation_id) {
  absl::MutexLock lock(&mu_);
  return QueryTasks(
      "SELECT t.status, s.submit, t.agent_id, t.accepted FROM tasks t "
      "LEFT JOIN task_submits s ON s.task_id = t.id WHERE t.invocation_id = ? ORDER BY t.idx",
      invocation_id);
}

absl::StatusOr<std::vector<v1::Invocation>> SqliteStore::ListInvocations(const ListFilter& filter) {
  absl::MutexLock lock(&mu_);
  std::string sql = "SELECT data FROM invocations WHERE created_ms >= ?1";
  if (!filter.owner.empty()) sql += " AND owner = ?2";
  if (!filter.before_id.empty()) {
    sql += " AND (created_ms, id) < (SELECT created_ms, id FROM invocations WHERE id = ?3)";
  }
  sql += " ORDER BY created_ms DESC, id DESC LIMIT ?4";
  std::vector<v1::Invocation> out;
  {
    ASSIGN_OR_RETURN(SqliteStatement * st, Statement(sql));
    ResetOnExit reset(st);
    st->Bind(1,
             filter.since == absl::InfinitePast() ? int64_t{0} : absl::ToUnixMillis(filter.since));
    if (!filter.owner.empty()) st->Bind(2, filter.owner);
    if (!filter.before_id.empty()) st->Bind(3, filter.before_id);
    st->Bind(4, filter.limit);
    while (true) {
      ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      v1::Invocation inv;
      if (!inv.ParseFromString(st->Text(0))) {
        return absl::DataLossError("an invocation row cannot be decoded");
      }
      out.push_back(std::move(inv));
    }
  }
  for (v1::Invocation& inv : out) RETURN_IF_ERROR(FillCounts(inv));
  return out;
}

absl::StatusOr<std::vector<StoredTask>> SqliteStore::UnacceptedTasks(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  return QueryTasks(
      "SELECT t.status, s.submit, t.agent_id, t.accepted FROM tasks t "
      "LEFT JOIN task_submits s ON s.task_id = t.id WHERE t.agent_id = ? AND t.accepted = 0 "
      "ORDER BY t.invocation_id, t.idx",
      agent_id);
}

absl::StatusOr<std::vector<StoredTask>> SqliteStore::CancellingTasks(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto tasks, QueryTasks(
      "SELECT t.status, s.submit, t.agent_id, t.accepted FROM tasks t "
      "LEFT JOIN task_submits s ON s.task_id = t.id WHERE t.agent_id = ? AND t.state IN "
      "(1, 2, 3, 4)",
      agent_id));
  std::vector<StoredTask> out;
  for (StoredTask& t : tasks) {
    if (t.task.cancel_requested()) out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<std::map<v1::TaskState, int64_t>> SqliteStore::CountTasksByState() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement("SELECT state, n FROM task_state_counts"));
  ResetOnExit reset(st);
  std::map<v1::TaskState, int64_t> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    out[static_cast<v1::TaskState>(st->Int(0))] = st->Int(1);
  }
  return out;
}

absl::StatusOr<uint64_t> SqliteStore::UpdateTask(const StoredTask& task,
                                                 const v1::TaskEvent* event) {
  absl::MutexLock lock(&mu_);
  const uint64_t seq_before = last_event_sequence_;
  uint64_t seq = 0;
  absl::Status s = Write("update_task", [&]() -> absl::Status {
    mu_.AssertHeld();
    RETURN_IF_ERROR(PutTaskStatus(task));
    if (event != nullptr) {
      ASSIGN_OR_RETURN(seq, AppendEvent(task.task.invocation_id(), *event));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) {
    last_event_sequence_ = seq_before;
    return s;
  }
  return seq;
}

absl::StatusOr<std::vector<uint64_t>> SqliteStore::ApplyAgentEvents(
    const std::string& agent_id, const std::vector<AppliedEvent>& events,
    uint64_t last_agent_sequence) {
  absl::MutexLock lock(&mu_);
  const uint64_t seq_before = last_event_sequence_;
  std::vector<uint64_t> seqs;
  absl::Status s = Write("apply_agent_events", [&]() -> absl::Status {
    mu_.AssertHeld();
    // A task with several events in the batch is written once, with its last state (the events
    // arrive in order and each carries the task as it was after it).
    std::map<std::string, const StoredTask*> last;
    for (const AppliedEvent& e : events) {
      last[e.task.task.id()] = &e.task;
      ASSIGN_OR_RETURN(uint64_t seq, AppendEvent(e.task.task.invocation_id(), e.event));
      seqs.push_back(seq);
    }
    for (const auto& [id, task] : last) RETURN_IF_ERROR(PutTaskStatus(*task));
    ASSIGN_OR_RETURN(SqliteStatement * st, Statement(
        "UPDATE agents SET last_applied = MAX(last_applied, ?) WHERE agent_id = ?"));
    ResetOnExit reset(st);
    return st->Bind(1, last_agent_sequence).Bind(2, agent_id).Run();
  });
  if (!s.ok()) {
    last_event_sequence_ = seq_before;
    return s;
  }
  return seqs;
}

absl::StatusOr<std::vector<EventRecord>> SqliteStore::EventsAfter(uint64_t after,
                                                                  const std::string& invocation_id,
                                                                  int limit) {
  absl::MutexLock lock(&mu_);
  std::string sql = invocation_id.empty()
                        ? "SELECT e.sequence, e.invocation_id, e.event, i.owner FROM events e "
                          "JOIN invocations i ON i.id = e.invocation_id WHERE e.sequence > ?1 "
                          "ORDER BY e.sequence LIMIT ?2"
                        : "SELECT e.sequence, e.invocation_id, e.event, i.owner FROM events e "
                          "JOIN invocations i ON i.id = e.invocation_id WHERE e.sequence > ?1 AND "
                          "e.invocation_id = ?3 ORDER BY e.sequence LIMIT ?2";
  ASSIGN_OR_RETURN(SqliteStatement * st, Statement(sql));
  ResetOnExit reset(st);
  st->Bind(1, after).Bind(2, limit);
  if (!invocation_id.empty()) st->Bind(3, invocation_id);
  std::vector<EventRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) break;
    EventRecord r;
    r.sequence = static_cast<uint64_t>(st->Int(0));
    r.invocation_id = st->Text(1);
    if (!Parse(st->Bytes(2), r.event)) {
      return absl::DataLossError("an event cannot be decoded");
    }
    r.owner = st->Text(3);
    out.push_back(std::move(r));
  }
  return out;
}

uint64_t SqliteStore::last_event_sequence() {
  absl::MutexLock lock(&mu_);
  return last_event_sequence_;
}

absl::Status SqliteStore::UpsertAgent(const v1::Cluster& cluster) {
  absl::MutexLock lock(&mu_);
  return Write("upsert_agent", [&]() -> absl::Status {
    mu_.AssertHeld();
    ASSIGN_OR_RETURN(SqliteStatement * st,
                     Statement("INSERT INTO agents (agent_id, cluster) VALUES (?, ?) "
                               "ON CONFLICT (agent_id) DO UPDATE SET cluster = excluded.cluster"));
    ResetOnExit reset(st);
    return st->Bind(1, cluster.agent_id()).BindBlob(2, cluster.SerializeAsString()).Run();
  });
}

absl::StatusOr<std::optional<AgentRecord>> SqliteStore::GetAgent(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(SqliteStatement * st,
                   Statement("SELECT cluster, last_applied FROM agents WHERE agent_id = ?"));
  ResetOnExit reset(st);
  st->Bind(1, agent_id);
  ASSIGN_OR_RETURN(bool row, st->Step());
  if (!row) return std::optional<AgentRecord>();
  AgentRecord r;
  r.cluster.ParseFromString(st->Text(0));
  r.last_applied_sequence = static_cast<uint64_t>(st->Int(1));
  return std::optional<AgentRecord>(std::move(r));
}

absl::StatusOr<std::vector<AgentRecord>> SqliteStore::ListAgents() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT cluster, last_applied FROM agents"));
  std::vector<AgentRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    AgentRecord r;
    r.cluster.ParseFromString(st.Text(0));
    r.last_applied_sequence = static_cast<uint64_t>(st.Int(1));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace evalctl::controller

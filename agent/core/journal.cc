#include "agent/core/journal.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace evalctl::agent {
namespace {

constexpr int kSchemaVersion = 1;

absl::Status EnsurePrivateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create state directory ", dir, ": ", ec.message()));
  }
  if (::chmod(dir.c_str(), 0700) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot make ", dir, " private (mode 0700): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& state_dir, Clock* clock) {
  RETURN_IF_ERROR(EnsurePrivateDir(state_dir));
  auto lock = FileLock::Acquire(state_dir + "/lock", "the agent state directory " + state_dir);
  if (absl::IsFailedPrecondition(lock.status())) {
    return absl::FailedPreconditionError(absl::StrCat(
        lock.status().message(),
        ". A journal has one writer: stop the other evalctl-agent, or give this one another "
        "--state-dir"));
  }
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(auto db, SqliteDb::Open(state_dir + "/journal.db", {.create_mode = 0600}));
  ASSIGN_OR_RETURN(auto secrets, SqliteDb::Open(state_dir + "/secrets.db", {.create_mode = 0600}));
  std::unique_ptr<Journal> j(
      new Journal(*std::move(lock), std::move(db), std::move(secrets), clock));
  RETURN_IF_ERROR(j->Init());
  return j;
}

absl::Status Journal::Init() {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(db_->Exec(
      "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, submit BLOB NOT NULL,"
      "  status BLOB NOT NULL);"
      "CREATE TABLE IF NOT EXISTS outbox (sequence INTEGER PRIMARY KEY, event BLOB NOT NULL,"
      "  committed_unix_ms INTEGER NOT NULL);"));
  RETURN_IF_ERROR(secrets_->Exec(
      "CREATE TABLE IF NOT EXISTS secrets (task_id TEXT NOT NULL, name TEXT NOT NULL,"
      "  value TEXT NOT NULL, PRIMARY KEY (task_id, name));"
      "CREATE TABLE IF NOT EXISTS credential (id INTEGER PRIMARY KEY CHECK (id = 1),"
      "  value TEXT NOT NULL);"));
  std::map<std::string, std::string> meta;
  {
    ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT key, value FROM meta"));
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      meta[st.Text(0)] = st.Text(1);
    }
  }
  if (auto it = meta.find("schema_version"); it != meta.end()) {
    int version = 0;
    if (!absl::SimpleAtoi(it->second, &version) || version > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          db_->path(), " has journal schema version ", it->second, "; this agent understands up "
                       "to ", kSchemaVersion, " (was it written by a newer evalctl-agent?)"));
    }
  } else {
    RETURN_IF_ERROR(SetMeta("schema_version", std::to_string(kSchemaVersion)));
  }
  if (auto it = meta.find("agent_id"); it != meta.end()) {
    agent_id_ = it->second;
  } else {
    absl::BitGen gen;
    agent_id_ = absl::StrFormat("agent-%016x", absl::Uniform<uint64_t>(gen));
    RETURN_IF_ERROR(SetMeta("agent_id", agent_id_));
  }
  // Sequences are never reused: a journal whose counters cannot be read is not guessed at.
  for (auto [key, value] : {std::pair{"acked_sequence", &acked_sequence_},
                            std::pair{"last_sequence", &last_sequence_}}) {
    if (auto it = meta.find(key); it != meta.end() && !absl::SimpleAtoi(it->second, value)) {
      return absl::DataLossError(absl::StrCat(db_->path(), ": journal meta ", key,
                                              " is not a number: \"", it->second, "\""));
    }
  }
  ASSIGN_OR_RETURN(auto count, db_->Prepare("SELECT COUNT(*), COALESCE(MAX(sequence), 0) FROM outbox"));
  ASSIGN_OR_RETURN(bool row, count.Step());
  if (row) {
    outbox_depth_ = count.Int(0);
    last_sequence_ = std::max<uint64_t>(last_sequence_, static_cast<uint64_t>(count.Int(1)));
  }
  return absl::OkStatus();
}

absl::Status Journal::SetMeta(const std::string& key, const std::string& value) {
  ASSIGN_OR_RETURN(auto st, db_->Prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"));
  return st.Bind(1, key).Bind(2, value).Run();
}

absl::StatusOr<std::vector<JournaledTask>> Journal::LoadTasks() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, db_->Prepare("SELECT task_id, submit, status FROM tasks"));
  std::vector<JournaledTask> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    JournaledTask t;
    if (!t.submit.ParseFromString(st.Text(1)) || !t.status.ParseFromString(st.Text(2))) {
      return absl::DataLossError(
          absl::StrCat(db_->path(), ": task ", st.Text(0), " cannot be decoded"));
    }
    out.push_back(std::move(t));
  }
  return out;
}

absl::StatusOr<std::vector<v1::AgentEvent>> Journal::Commit(
    const std::vector<JournaledTask>& tasks, const std::vector<v1::AgentEvent>& events) {
  absl::MutexLock lock(&mu_);
  std::vector<v1::AgentEvent> sequenced = events;
  uint64_t next = last_sequence_;
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  absl::Status s = db_->Transaction([&]() -> absl::Status {
    mu_.AssertHeld();
    ASSIGN_OR_RETURN(auto put, db_->Prepare(
        "INSERT OR REPLACE INTO tasks (task_id, submit, status) VALUES (?, ?, ?)"));
    for (const JournaledTask& t : tasks) {
      RETURN_IF_ERROR(put.Bind(1, t.status.id())
                          .BindBlob(2, t.submit.SerializeAsString())
                          .BindBlob(3, t.status.SerializeAsString())
                          .Run());
    }
    ASSIGN_OR_RETURN(auto add, db_->Prepare(
        "INSERT INTO outbox (sequence, event, committed_unix_ms) VALUES (?, ?, ?)"));
    for (v1::AgentEvent& e : sequenced) {
      e.set_sequence(++next);
      RETURN_IF_ERROR(add.Bind(1, e.sequence()).BindBlob(2, e.SerializeAsString()).Bind(3, now_ms).Run());
    }
    if (!sequenced.empty()) {
      RETURN_IF_ERROR(SetMeta("last_sequence", std::to_string(next)));
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  last_sequence_ = next;
  outbox_depth_ += static_cast<int64_t>(sequenced.size());
  return sequenced;
}

absl::Status Journal::PutSecrets(const std::string& task_id,
                                 const std::map<std::string, std::string>& values) {
  absl::MutexLock lock(&mu_);
  return secrets_->Transaction([&]() -> absl::Status {
    mu_.AssertHeld();
    ASSIGN_OR_RETURN(auto put, secrets_->Prepare(
        "INSERT OR REPLACE INTO secrets (task_id, name, value) VALUES (?, ?, ?)"));
    for (const auto& [name, value] : values) {
      RETURN_IF_ERROR(put.Bind(1, task_id).Bind(2, name).Bind(3, value).Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::map<std::string, std::string>> Journal::GetSecrets(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, secrets_->Prepare("SELECT name, value FROM secrets WHERE task_id = ?"));
  st.Bind(1, task_id);
  std::map<std::string, std::string> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out[st.Text(0)] = st.Text(1);
  }
  return out;
}

absl::Status Journal::DeleteSecrets(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, secrets_->Prepare("DELETE FROM secrets WHERE task_id = ?"));
  return st.Bind(1, task_id).Run();
}

absl::Status Journal::PutCredential(const std::string& credential) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, secrets_->Prepare(
      "INSERT OR REPLACE INTO credential (id, value) VALUES (1, ?)"));
  return st.Bind(1, credential).Run();
}

absl::StatusOr<std::string> Journal::GetCredential() {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, secrets_->Prepare("SELECT value FROM credential WHERE id = 1"));
  ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Text(0) : std::string();
}

absl::StatusOr<std::vector<v1::AgentEvent>> Journal::Pending(uint64_t after, int limit) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto st, db_->Prepare(
      "SELECT event FROM outbox WHERE sequence > ? ORDER BY sequence LIMIT ?"));
  st.Bind(1, after).Bind(2, limit);
  std::vector<v1::AgentEvent> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    v1::AgentEvent e;
    if (!e.ParseFromString(st.Text(0))) {
      return absl::DataLossError(absl::StrCat(db_->path(), ": an outbox event cannot be decoded"));
    }
    out.push_back(std::move(e));
  }
  return out;
}

absl::Status Journal::Ack(uint64_t sequence) {
  absl::MutexLock lock(&mu_);
  if (sequence <= acked_sequence_) return absl::OkStatus();
  if (sequence > last_sequence_) {
    return absl::InvalidArgumentError(absl::StrCat("acknowledgement of sequence ", sequence,
                                                   " beyond the last event ", last_sequence_));
  }
  absl::Status s = db_->Transaction([&]() -> absl::Status {
    mu_.AssertHeld();
    ASSIGN_OR_RETURN(auto del, db_->Prepare("DELETE FROM outbox WHERE sequence <= ?"));
    RETURN_IF_ERROR(del.Bind(1, sequence).Run());
    return SetMeta("acked_sequence", std::to_string(sequence));
  });
  if (!s.ok()) return s;
  acked_sequence_ = sequence;
  ASSIGN_OR_RETURN(auto count, db_->Prepare("SELECT COUNT(*) FROM outbox"));
  ASSIGN_OR_RETURN(bool row, count.Step());
  outbox_depth_ = row ? count.Int(0) : 0;
  return absl::OkStatus();
}

uint64_t Journal::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_sequence_;
}

uint64_t Journal::acked_sequence() const {
  absl::MutexLock lock(&mu_);
  return acked_sequence_;
}

int64_t Journal::outbox_depth() const {
  absl::MutexLock lock(&mu_);
  return outbox_depth_;
}

absl::Time Journal::oldest_unacked() const {
  absl::MutexLock lock(&mu_);
  auto st = db_->Prepare("SELECT MIN(committed_unix_ms) FROM outbox");
  if (!st.ok()) return absl::InfiniteFuture();
  auto row = st->Step();
  if (!row.ok() || !*row || st->IsNull(0)) return absl::InfiniteFuture();
  return absl::FromUnixMillis(st->Int(0));
}

}  // namespace evalctl::agent

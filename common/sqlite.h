// A thin absl::Status wrapper over the SQLite C API, for the controller's store and the agent's
// journal.
//
//   ASSIGN_OR_RETURN(auto db, SqliteDb::Open(path, {.create_mode = 0600}));
//   RETURN_IF_ERROR(db->Exec("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)"));
//   ASSIGN_OR_RETURN(auto st, db->Prepare("INSERT INTO t VALUES (?, ?)"));
//   st.Bind(1, "key").Bind(2, bytes);
//   RETURN_IF_ERROR(st.Run());
//
// Opened in WAL mode with synchronous=FULL (a committed transaction survives power loss) unless
// options say otherwise. A SqliteDb is used by one thread at a time (callers hold their own lock);
// Statements belong to their SqliteDb.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl {

class SqliteStatement {
 public:
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  ~SqliteStatement();

  // 1-based parameter index. Text and blobs are copied.
  SqliteStatement& Bind(int index, absl::string_view text);
  SqliteStatement& Bind(int index, const char* text) { return Bind(index, absl::string_view(text)); }
  SqliteStatement& Bind(int index, const std::string& text) {
    return Bind(index, absl::string_view(text));
  }
  SqliteStatement& Bind(int index, int64_t value);
  SqliteStatement& Bind(int index, int value) { return Bind(index, static_cast<int64_t>(value)); }
  SqliteStatement& Bind(int index, uint64_t value) {
    return Bind(index, static_cast<int64_t>(value));
  }
  SqliteStatement& Bind(int index, double value);
  SqliteStatement& BindBlob(int index, absl::string_view bytes);
  SqliteStatement& BindNull(int index);

  // Steps once: true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion (for statements without results), then resets for reuse.
  absl::Status Run();
  // Resets bindings and position so the statement can be reused.
  void Reset();

  // 0-based column index of the current row.
  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;
  // The bytes of a text or blob column without a copy; valid until the next Step or Reset.
  absl::string_view Bytes(int column) const;
  bool IsNull(int column) const;

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  absl::Status Error(absl::string_view what) const;

  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  absl::Status bind_status_;
};

struct SqliteOptions {
  // Mode of a newly created database file (and its -wal/-shm files).
  int create_mode = 0600;
  // FULL: durable at commit; NORMAL: durable at checkpoint (faster, still consistent).
  bool synchronous_full = true;
};

class SqliteDb {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDb>> Open(const std::string& path,
                                                        const SqliteOptions& options = {});
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  absl::Status Exec(absl::string_view sql);
  absl::StatusOr<SqliteStatement> Prepare(absl::string_view sql);
  int64_t LastInsertRowId() const;
  int Changes() const;
  const std::string& path() const { return path_; }

  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back when it returns an error.
  template <typename F>
  absl::Status Transaction(F&& body) {
    absl::Status s = Exec("BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    s = body();
    if (!s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    return Exec("COMMIT");
  }

 private:
  SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

}  // namespace evalctl

// Whole-file reads and private (mode 0600) writes, with errors that name the file.
//
//   ASSIGN_OR_RETURN(std::string token, ReadSecretFile("/run/evalctl/token", "token file"));
//   RETURN_IF_ERROR(WritePrivateFile("/var/lib/evalctl/admin.token", token + "\n"));
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace evalctl {

// The bytes of `path`. NOT_FOUND when it cannot be read, INVALID_ARGUMENT when it is empty; both
// name it as "the <what> <path>".
absl::StatusOr<std::string> ReadFile(const std::string& path, absl::string_view what);

// A secret kept in a file (a token): its content without surrounding whitespace. Also refuses a
// file that other users may read, since the secret is then no longer one.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path, absl::string_view what);

// Writes `data` to `path` with mode 0600, never readable by others, not even for a moment:
// through `path`.tmp (created exclusively), fsync, rename.
absl::Status WritePrivateFile(const std::string& path, absl::string_view data);

// An exclusive advisory lock (flock) on a file, held until this object is destroyed or the process
// ends, whichever comes first. The file holds the holder's pid, so that a refusal can name it.
//
//   ASSIGN_OR_RETURN(auto lock, FileLock::Acquire(dir + "/lock", "the state directory " + dir));
class FileLock {
 public:
  // FAILED_PRECONDITION naming `what` and the holder's pid when another holds the lock (with
  // `wait`, blocks until it is free instead).
  static absl::StatusOr<std::unique_ptr<FileLock>> Acquire(const std::string& path,
                                                           absl::string_view what,
                                                           bool wait = false);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace evalctl

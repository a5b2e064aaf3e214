// A shell account on another machine, as the installer needs it: run a command, upload a file.
// LibsshRemoteHost (libssh_remote_host.h) implements it over one SSH session.
//
//   ASSIGN_OR_RETURN(ExecResult r, host.Exec("uname -s", absl::Seconds(30)));
//   RETURN_IF_ERROR(r.Check("uname"));
//   RETURN_IF_ERROR(host.UploadFile("/usr/bin/tool", "/home/me/.evalctl/bin/tool", 0755));
//
// Commands run through the remote user's login shell, like `ssh host 'command'`: quote what you
// put into them (ShellQuote). Uploads are atomic: the data goes to a temporary file next to the
// target, which is then renamed over it, so a reader never sees half a file.
//
// Thread-compatible: one call at a time per RemoteHost.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace evalctl::ssh {

struct ExecResult {
  int exit_code = -1;
  std::string stdout_data;
  std::string stderr_data;

  bool ok() const { return exit_code == 0; }
  // OK when the command exited 0; otherwise UNKNOWN naming `what`, the exit code and the last part
  // of stderr.
  absl::Status Check(absl::string_view what) const;
};

class RemoteHost {
 public:
  virtual ~RemoteHost() = default;

  // "user@host:port", for messages.
  virtual std::string Describe() const = 0;
  // Runs `command` with stdin closed. DEADLINE_EXCEEDED after `timeout`; UNAVAILABLE when the
  // connection is lost. A command that fails is a result with its exit code, not an error.
  virtual absl::StatusOr<ExecResult> Exec(const std::string& command, absl::Duration timeout) = 0;
  // Writes `data` to the absolute path `remote_path` with permission bits `mode`.
  virtual absl::Status UploadData(absl::string_view data, const std::string& remote_path,
                                  int mode) = 0;
  // Copies the local file `local_path` to the absolute path `remote_path` with `mode`.
  virtual absl::Status UploadFile(const std::string& local_path, const std::string& remote_path,
                                  int mode) = 0;
};

// `value` as one word of a POSIX shell command line: 'it'\''s'.
std::string ShellQuote(absl::string_view value);

}  // namespace evalctl::ssh

// Runs a child process without a shell: an argv vector, an optional environment, a timeout, and
// captured stdout/stderr.
//
//   ASSIGN_OR_RETURN(SubprocessResult r,
//                    RunSubprocess({.argv = {"sbatch", "--parsable", path},
//                                   .timeout = absl::Seconds(30)}));
//   RETURN_IF_ERROR(r.Check("sbatch"));
//
// The child gets its own process group; on timeout the whole group gets SIGTERM, then SIGKILL
// after `kill_grace`. Values in `env` reach the child's environment only, never its command line,
// so they may be secrets. Thread-safe: each call is independent.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace evalctl {

struct SubprocessOptions {
  // argv[0] is looked up in PATH when it has no '/'.
  std::vector<std::string> argv;
  // Set in (or replace in) the inherited environment.
  std::vector<std::pair<std::string, std::string>> env;
  // Start from an empty environment instead of this process's.
  bool clear_env = false;
  // Written to the child's stdin, which is then closed. Empty: stdin is /dev/null.
  std::string stdin_data;
  // Working directory of the child; empty keeps ours.
  std::string working_dir;
  absl::Duration timeout = absl::Seconds(30);
  absl::Duration kill_grace = absl::Seconds(2);
  // Output beyond this is discarded (and `truncated` set), so a runaway child cannot exhaust memory.
  size_t max_output_bytes = 64 << 20;
  // The child gets SIGKILL when this process dies, however it dies (PR_SET_PDEATHSIG), so that it
  // cannot outlive a killed caller and act on its own, e.g. an sbatch that submits a job after
  // the agent that journaled it was killed. (Strictly: when the thread that called RunSubprocess
  // ends, which cannot happen while it waits for the child here.) The child is then started with
  // fork and exec instead of posix_spawn.
  bool die_with_parent = false;
};

struct SubprocessResult {
  // Exit status when the child exited; -1 when a signal ended it.
  int exit_code = -1;
  // The signal that ended the child, or 0.
  int term_signal = 0;
  bool timed_out = false;
  bool truncated = false;
  std::string stdout_data;
  std::string stderr_data;
  absl::Duration elapsed;

  bool ok() const { return exit_code == 0 && !timed_out; }
  // OK when the child exited 0; otherwise an error naming `what`, how it ended and the last part
  // of its stderr. A timeout is DEADLINE_EXCEEDED, anything else UNKNOWN.
  absl::Status Check(absl::string_view what) const;
};

// Fails only when the child could not be started (NOT_FOUND for a missing program); how the
// child ended is in the result.
absl::StatusOr<SubprocessResult> RunSubprocess(const SubprocessOptions& options);

}  // namespace evalctl

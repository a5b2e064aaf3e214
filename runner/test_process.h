// A child process for component tests that must signal it while it runs (common/subprocess.h
// runs a child to completion). Output goes to files, so a chatty child never blocks on a pipe.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace evalctl::runner::testing {

class TestProcess {
 public:
  // Starts argv[0] (a path) with `env` added to this process's environment; stdout and stderr go
  // to `output_prefix`.stdout / .stderr.
  TestProcess(std::vector<std::string> argv, std::vector<std::pair<std::string, std::string>> env,
              const std::string& output_prefix);
  ~TestProcess();  // SIGKILLs the child if it is still running
  TestProcess(const TestProcess&) = delete;
  TestProcess& operator=(const TestProcess&) = delete;

  bool started() const { return pid_ > 0; }
  void Signal(int sig);
  // The exit code (or 128 + signal), or nullopt on timeout.
  std::optional<int> Wait(absl::Duration timeout);
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string stdout_path_;
  std::string stderr_path_;
};

}  // namespace evalctl::runner::testing

#include "tests/e2e/private_cluster.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"

namespace evalctl::e2e {
namespace {

absl::Status RunClusterScript(const std::vector<std::pair<std::string, std::string>>& env,
                              const std::string& command) {
  auto r = RunSubprocess(
      {.argv = {EVALCTL_CLUSTER_SH, command}, .env = env, .timeout = absl::Seconds(120)});
  if (!r.ok()) return r.status();
  if (!r->ok()) {
    return absl::InternalError(absl::StrCat("cluster.sh ", command, " failed (exit ", r->exit_code,
                                            "): ", r->stdout_data, r->stderr_data));
  }
  return absl::OkStatus();
}

// Daemons (Slurm's, munged, mariadbd) whose command line or environment names `state_dir`
// (slurmd and friends find it through SLURM_CONF, munged and mariadbd through their flags):
// "pid: argv" each. The guard of the instance is not one.
std::vector<std::string> ProcessesOf(const std::string& state_dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos ||
        pid == std::to_string(::getpid())) {
      continue;
    }
    auto slurp = [&](const char* name) {
      std::ifstream in(entry.path() / name, std::ios::binary);
      return std::string((std::istreambuf_iterator<char>(in)), {});
    };
    const std::string cmdline = slurp("cmdline");
    if (cmdline.empty()) continue;  // a kernel thread or a zombie
    std::string comm = slurp("comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    if (comm != "slurmctld" && comm != "slurmd" && comm != "slurmdbd" && comm != "slurmstepd" &&
        comm != "slurmscriptd" && comm != "munged" && comm != "mariadbd" && comm != "mysqld") {
      continue;
    }
    if (absl::StrContains(cmdline, state_dir) || absl::StrContains(slurp("environ"), state_dir)) {
      found.push_back(absl::StrCat(pid, ": ", absl::StrReplaceAll(cmdline, {{std::string(1, '\0'), " "}})));
    }
  }
  return found;
}

}  // namespace

PrivateCluster::PrivateCluster(int slot, int min_job_age) {
  const int base = 26000 + 20 * slot;
  state_dir_ = absl::StrCat("/var/tmp/evalctl-e2e-cluster-", slot);
  env_ = {{"EVALCTL_CLUSTER_DIR", state_dir_},
          {"EVALCTL_SLURMCTLD_PORT", absl::StrCat(base)},
          {"EVALCTL_SLURMDBD_PORT", absl::StrCat(base + 1)},
          {"EVALCTL_MYSQL_PORT", absl::StrCat(base + 2)},
          {"EVALCTL_SLURMD_PORT_BASE", absl::StrCat(base + 10)},
          {"EVALCTL_MIN_JOB_AGE", absl::StrCat(min_job_age)},
          {"EVALCTL_CLUSTER_KEEP_STATE", "0"}};
}

PrivateCluster::~PrivateCluster() {
  if (started_) {
    absl::Status s = Stop();
    if (!s.ok()) ADD_FAILURE_AT(__FILE__, __LINE__) << s;
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

absl::Status PrivateCluster::TakeSlot() {
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", state_dir_, ": ", ec.message()));
  const std::string path = state_dir_ + "/.owner.lock";
  lock_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  const absl::Time deadline = absl::Now() + absl::Minutes(3);
  while (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      return absl::InternalError(absl::StrCat("flock ", path, ": ", std::strerror(errno)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("another test holds the private cluster slot ", path, " for 3 minutes"));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  return absl::OkStatus();
}

// A detached shell (not a descendant of this process once its parent has exited, so that a kill
// of this process tree spares it) that waits for this process to end and then stops the cluster
// under the slot lock: if another test took the slot meanwhile, the stop waits for that test.
absl::Status PrivateCluster::StartGuard() {
  auto r = RunSubprocess(
      {.argv = {"/bin/bash", "-c",
                "( while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; "
                "exec flock \"$2\" \"$0\" stop ) </dev/null >/dev/null 2>&1 &",
                EVALCTL_CLUSTER_SH, absl::StrCat(::getpid()), state_dir_ + "/.owner.lock"},
       .env = env_,
       .timeout = absl::Seconds(10)});
  if (!r.ok()) return r.status();
  return r->Check("the cluster guard");
}

absl::Status PrivateCluster::Start() {
  if (started_) return absl::FailedPreconditionError("the private cluster runs already");
  if (lock_fd_ < 0) {
    if (absl::Status s = TakeSlot(); !s.ok()) return s;
  }
  if (absl::Status s = StartGuard(); !s.ok()) return s;
  started_ = true;
  // A fresh start also replaces whatever a killed earlier run left behind.
  if (absl::Status s = RunClusterScript(env_, "stop"); !s.ok()) return s;
  if (absl::Status s = RunClusterScript(env_, "start"); !s.ok()) return s;
  const char* old = std::getenv("SLURM_CONF");
  had_slurm_conf_ = old != nullptr;
  if (old != nullptr) old_slurm_conf_ = old;
  ::setenv("SLURM_CONF", slurm_conf().c_str(), 1);
  return absl::OkStatus();
}

absl::Status PrivateCluster::Stop() {
  if (!started_) return absl::OkStatus();
  started_ = false;
  if (had_slurm_conf_) {
    ::setenv("SLURM_CONF", old_slurm_conf_.c_str(), 1);
  } else {
    ::unsetenv("SLURM_CONF");
  }
  absl::Status stopped = RunClusterScript(env_, "stop");
  // `status` exits 3 when no daemon of this instance runs.
  auto r = RunSubprocess({.argv = {EVALCTL_CLUSTER_SH, "status"}, .env = env_});
  if (!r.ok()) return r.status();
  if (r->exit_code != 3) {
    return absl::InternalError(
        absl::StrCat("daemons of ", state_dir_, " left after stop: ", r->stdout_data));
  }
  // Not only what the script knows of: no process at all may still use this instance.
  if (std::vector<std::string> left = ProcessesOf(state_dir_); !left.empty()) {
    return absl::InternalError(absl::StrCat("processes of ", state_dir_, " left after stop: ",
                                            absl::StrJoin(left, "; ")));
  }
  return stopped;
}

absl::Status PrivateCluster::Run(const std::string& command) {
  return RunClusterScript(env_, command);
}

}  // namespace evalctl::e2e

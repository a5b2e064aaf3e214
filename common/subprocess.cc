#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

extern char** environ;

namespace evalctl {
namespace {

// Closes a file descriptor when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int* out() { return &fd_; }

 private:
  int fd_ = -1;
};

absl::Status MakePipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  *read_end.out() = fds[0];
  *write_end.out() = fds[1];
  return absl::OkStatus();
}

std::vector<std::string> BuildEnvironment(const SubprocessOptions& options) {
  std::map<std::string, std::string> vars;
  if (!options.clear_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      absl::string_view entry(*e);
      size_t eq = entry.find('=');
      if (eq == absl::string_view::npos) continue;
      vars.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
    }
  }
  for (const auto& [name, value] : options.env) vars[name] = value;
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [name, value] : vars) out.push_back(absl::StrCat(name, "=", value));
  return out;
}

void Append(std::string& buffer, const char* data, size_t n, size_t limit, bool& truncated) {
  if (buffer.size() >= limit) {
    truncated = true;
    return;
  }
  size_t room = limit - buffer.size();
  if (n > room) {
    truncated = true;
    n = room;
  }
  buffer.append(data, n);
}

// Signals the child gets with their default action, whatever this process does with them.
constexpr int kDefaultSignals[] = {SIGPIPE, SIGINT,    SIGTERM,  SIGHUP,
                                   SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2};

// `name` looked up in PATH as posix_spawnp does (PATH of this process, "/bin:/usr/bin" when
// unset); "" when no executable file has that name. A name with a '/' is used as it is.
std::string FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/bin:/usr/bin", ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Starts the child like posix_spawnp below (own process group, stdin/stdout/stderr, working
// directory, default signals, nothing blocked), and also with PR_SET_PDEATHSIG(SIGKILL), which
// posix_spawn cannot set. Returns 0 and the pid, or an errno as posix_spawnp does. The child
// makes only async-signal-safe system calls between clone and exec; exec's errno comes back
// through a close-on-exec pipe. Raw clone (not fork) runs no atfork handlers of the libraries in
// this process.
int SpawnDyingWithParent(const SubprocessOptions& options, char* const* argv, char* const* envp,
                         int stdin_fd, int stdout_fd, int stderr_fd, pid_t* pid_out) {
  const std::string program = FindProgram(options.argv[0]);
  if (program.empty()) return ENOENT;
  const char* working_dir = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) != 0) return errno;
  const pid_t parent = ::getpid();
  // No signal handler of this process may run in the child before exec.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const long pid = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) {
    int error = 0;
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) error = errno;
    // The parent may have died before prctl: then nothing would kill this child.
    if (error == 0 && ::getppid() != parent) ::_exit(127);
    if (error == 0 && ::setpgid(0, 0) != 0) error = errno;
    int in = stdin_fd;
    if (error == 0 && in < 0 && (in = ::open("/dev/null", O_RDONLY)) < 0) error = errno;
    if (error == 0 && (::dup2(in, STDIN_FILENO) < 0 || ::dup2(stdout_fd, STDOUT_FILENO) < 0 ||
                       ::dup2(stderr_fd, STDERR_FILENO) < 0)) {
      error = errno;
    }
    if (error == 0 && working_dir != nullptr && ::chdir(working_dir) != 0) error = errno;
    if (error == 0) {
      struct sigaction dfl = {};
      dfl.sa_handler = SIG_DFL;
      for (int sig : kDefaultSignals) ::sigaction(sig, &dfl, nullptr);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execve(program.c_str(), argv, envp);
      error = errno;
    }
    (void)!::write(status_pipe[1], &error, sizeof(error));
    ::_exit(127);
  }
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::close(status_pipe[1]);
  if (pid < 0) {
    ::close(status_pipe[0]);
    return clone_errno;
  }
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(status_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(status_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {  // exec did not happen
    ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
    return child_errno != 0 ? child_errno : ECHILD;
  }
  *pid_out = static_cast<pid_t>(pid);
  return 0;
}

std::string Tail(absl::string_view text, size_t max) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text.size() > max) text = text.substr(text.size() - max);
  return std::string(text);
}

}  // namespace

absl::Status SubprocessResult::Check(absl::string_view what) const {
  if (ok()) return absl::OkStatus();
  std::string err = Tail(stderr_data, 2000);
  if (err.empty()) err = Tail(stdout_data, 2000);
  std::string how;
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        what, " did not finish within ", absl::FormatDuration(elapsed), err.empty() ? "" : ": ",
        err));
  }
  if (term_signal != 0) {
    how = absl::StrCat("was killed by signal ", term_signal);
  } else {
    how = absl::StrCat("exited with status ", exit_code);
  }
  return absl::UnknownError(absl::StrCat(what, " ", how, err.empty() ? "" : ": ", err));
}

absl::StatusOr<SubprocessResult> RunSubprocess(const SubprocessOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("RunSubprocess: empty argv");

  Fd in_r, in_w, out_r, out_w, err_r, err_w;
  if (auto s = MakePipe(out_r, out_w); !s.ok()) return s;
  if (auto s = MakePipe(err_r, err_w); !s.ok()) return s;
  const bool feed_stdin = !options.stdin_data.empty();
  if (feed_stdin) {
    if (auto s = MakePipe(in_r, in_w); !s.ok()) return s;
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (feed_stdin) {
    posix_spawn_file_actions_adddup2(&actions, in_r.get(), STDIN_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), STDERR_FILENO);
  if (!options.working_dir.empty()) {
    posix_spawn_file_actions_addchdir_np(&actions, options.working_dir.c_str());
  }

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t no_signals, default_signals;
  sigemptyset(&no_signals);
  sigemptyset(&default_signals);
  for (int sig : kDefaultSignals) sigaddset(&default_signals, sig);
  posix_spawnattr_setsigmask(&attr, &no_signals);
  posix_spawnattr_setsigdefault(&attr, &default_signals);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_USEVFORK);

  std::vector<char*> argv;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = BuildEnvironment(options);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  const absl::Time start = absl::Now();
  pid_t pid = -1;
  int rc = options.die_with_parent
               ? SpawnDyingWithParent(options, argv.data(), envp.data(),
                                      feed_stdin ? in_r.get() : -1, out_w.get(), err_w.get(), &pid)
               : ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::string msg = absl::StrCat("cannot start ", options.argv[0], ": ", std::strerror(rc));
    if (rc == ENOENT) return absl::NotFoundError(msg);
    return absl::InternalError(msg);
  }
  in_r.Reset();
  out_w.Reset();
  err_w.Reset();
  // Readable when the child exits, so the loop below never sleeps past that moment.
  Fd exit_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

  SubprocessResult result;
  const absl::Time deadline = start + options.timeout;
  absl::Time kill_deadline = absl::InfiniteFuture();
  size_t stdin_written = 0;
  bool exited = false;
  int wait_status = 0;
  char buf[65536];

  auto drain = [&](Fd& fd, std::string& sink) {
    while (fd.get() >= 0) {
      ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n > 0) {
        Append(sink, buf, static_cast<size_t>(n), options.max_output_bytes, result.truncated);
        continue;
      }
      if (n < 0 && (errno == EINTR)) continue;
      if (n < 0 && errno == EAGAIN) return;
      fd.Reset();  // EOF or error
    }
  };

  while (true) {
    if (!exited) {
      pid_t w = ::waitpid(pid, &wait_status, WNOHANG);
      if (w == pid) exited = true;
    }
    if (exited) {
      // The child is gone; take what is left in the pipes without waiting for grandchildren
      // that may still hold them open.
      for (Fd* fd : {&out_r, &err_r}) {
        if (fd->get() >= 0) ::fcntl(fd->get(), F_SETFL, O_NONBLOCK);
      }
      drain(out_r, result.stdout_data);
      drain(err_r, result.stderr_data);
      break;
    }

    const absl::Time now = absl::Now();
    if (!result.timed_out && now >= deadline) {
      result.timed_out = true;
      ::kill(-pid, SIGTERM);
      kill_deadline = now + options.kill_grace;
    } else if (result.timed_out && now >= kill_deadline) {
      ::kill(-pid, SIGKILL);
      kill_deadline = absl::InfiniteFuture();
    }

    std::vector<pollfd> fds;
    if (out_r.get() >= 0) fds.push_back({out_r.get(), POLLIN, 0});
    if (err_r.get() >= 0) fds.push_back({err_r.get(), POLLIN, 0});
    if (feed_stdin && in_w.get() >= 0) fds.push_back({in_w.get(), POLLOUT, 0});
    if (exit_fd.get() >= 0) fds.push_back({exit_fd.get(), POLLIN, 0});
    // Without a pidfd, wake up every 20 ms to notice the child's exit.
    absl::Time wake = std::min(result.timed_out ? kill_deadline : deadline,
                               exit_fd.get() >= 0 ? absl::InfiniteFuture() : now + absl::Milliseconds(20));
    int wait_ms = static_cast<int>(
        std::clamp<int64_t>(absl::ToInt64Milliseconds(wake - now) + 1, 1, 60000));
    ::poll(fds.data(), fds.size(), wait_ms);
    for (const pollfd& p : fds) {
      if (p.revents == 0 || p.fd == exit_fd.get()) continue;
      if (p.fd == in_w.get()) {
        if (p.revents & (POLLERR | POLLHUP)) {
          in_w.Reset();
          continue;
        }
        ssize_t n = ::write(in_w.get(), options.stdin_data.data() + stdin_written,
                            options.stdin_data.size() - stdin_written);
        if (n > 0) stdin_written += static_cast<size_t>(n);
        if (n < 0 && errno != EINTR && errno != EAGAIN) in_w.Reset();
        if (stdin_written == options.stdin_data.size()) in_w.Reset();
        continue;
      }
      Fd& fd = (p.fd == out_r.get()) ? out_r : err_r;
      std::string& sink = (p.fd == out_r.get()) ? result.stdout_data : result.stderr_data;
      ssize_t n = ::read(fd.get(), buf, sizeof(buf));
      if (n > 0) {
        Append(sink, buf, static_cast<size_t>(n), options.max_output_bytes, result.truncated);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        fd.Reset();
      }
    }
  }

  result.elapsed = absl::Now() - start;
  if (WIFEXITED(wait_status)) {
    result.exit_code = WEXITSTATUS(wait_status);
  } else if (WIFSIGNALED(wait_status)) {
    result.term_signal = WTERMSIG(wait_status);
  }
  return result;
}

}  // namespace evalctl

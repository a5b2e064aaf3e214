#include "clients/ssh/testing/test_sshd.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "common/subprocess.h"

namespace evalctl::ssh::testing {
namespace {

constexpr char kSshd[] = "/usr/sbin/sshd";

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<int> FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("bind: ", std::strerror(errno)));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool Accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// pid -> parent pid of every process.
std::map<pid_t, pid_t> ParentsOfAll() {
  std::map<pid_t, pid_t> parents;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return parents;
  while (dirent* e = ::readdir(d)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) continue;
    std::vector<std::string> fields =
        absl::StrSplit(stat.substr(close_paren + 2), ' ', absl::SkipEmpty());
    int ppid = 0;
    if (fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid)) parents[pid] = ppid;
  }
  ::closedir(d);
  return parents;
}

// Every process below `root`.
std::vector<pid_t> Descendants(pid_t root) {
  std::map<pid_t, pid_t> parents = ParentsOfAll();
  std::vector<pid_t> out;
  std::vector<pid_t> frontier = {root};
  while (!frontier.empty()) {
    pid_t p = frontier.back();
    frontier.pop_back();
    for (const auto& [pid, ppid] : parents) {
      if (ppid == p) {
        out.push_back(pid);
        frontier.push_back(pid);
      }
    }
  }
  return out;
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

int ReadPidFile(const std::string& path) {
  int pid = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(path)), &pid) ? pid : 0;
}

bool ProcessRunning(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  return !ReadFile(absl::StrCat("/proc/", pid, "/cmdline")).empty();
}

void KillInstalledAgent(const std::string& remote_dir) {
  for (const char* f : {"/agent.pid", "/agent.child.pid"}) {
    const int pid = ReadPidFile(remote_dir + f);
    if (ProcessRunning(pid)) ::kill(pid, SIGKILL);
  }
}

bool Eventually(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

absl::Status GenerateKey(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove(path, ec);
  std::filesystem::remove(path + ".pub", ec);
  ASSIGN_OR_RETURN(SubprocessResult r,
                   RunSubprocess({.argv = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                                           "evalctl-test", "-f", path},
                                  .timeout = absl::Seconds(30)}));
  return r.Check("ssh-keygen");
}

absl::StatusOr<std::unique_ptr<TestSshd>> TestSshd::Start(TestSshdOptions options) {
  if (::access(kSshd, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kSshd, " is missing: install openssh-server (deploy/install-deps.sh)"));
  }
  std::unique_ptr<TestSshd> sshd(new TestSshd());
  ASSIGN_OR_RETURN(sshd->account_,
                   ::evalctl::testing::EnsureTestAccount(options.account, options.startup));
  char tmpl[] = "/tmp/evalctl-sshd-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  sshd->dir_ = tmpl;
  // The account reads its authorized_keys here (sshd opens it as the account), nothing else.
  ::chmod(tmpl, 0711);
  RETURN_IF_ERROR(GenerateKey(sshd->dir_ + "/host_key"));
  RETURN_IF_ERROR(GenerateKey(sshd->client_key()));
  std::filesystem::copy_file(sshd->client_key() + ".pub", sshd->dir_ + "/authorized_keys");
  ::chmod((sshd->dir_ + "/authorized_keys").c_str(), 0644);
  std::error_code mkdir_error;
  std::filesystem::create_directory(sshd->user_dir(), mkdir_error);
  if (mkdir_error) {
    return absl::InternalError(
        absl::StrCat("cannot create ", sshd->user_dir(), ": ", mkdir_error.message()));
  }
  RETURN_IF_ERROR(::evalctl::testing::GiveTo(sshd->account_, sshd->user_dir()));
  // sshd refuses to start without its privilege separation directory.
  std::error_code ec;
  std::filesystem::create_directories("/run/sshd", ec);
  absl::Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    ASSIGN_OR_RETURN(sshd->port_, FreePort());
    last = sshd->Launch();
    if (last.ok()) break;
  }
  RETURN_IF_ERROR(last);
  RETURN_IF_ERROR(sshd->WriteKnownHosts(sshd->dir_ + "/known_hosts"));
  return sshd;
}

absl::Status TestSshd::Launch() {
  const std::string config = absl::StrCat(
      "Port ", port_, "\nListenAddress 127.0.0.1\nHostKey ", dir_, "/host_key\nPidFile ", dir_,
      "/sshd.pid\nAuthorizedKeysFile ", dir_,
      "/authorized_keys\n"
      "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
      "UsePAM no\nPermitRootLogin no\nAllowUsers ",
      account_.name,
      "\n"
      "StrictModes no\nAllowTcpForwarding yes\n"
      "Subsystem sftp internal-sftp\nLogLevel VERBOSE\nMaxStartups 50\n");
  RETURN_IF_ERROR(WriteFile(dir_ + "/sshd_config", config));
  const std::string log = dir_ + "/sshd.log";
  std::vector<std::string> args = {kSshd, "-D", "-e", "-f", dir_ + "/sshd_config"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (fd < 0 || null_fd < 0) ::_exit(127);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    ::execv(kSshd, argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (Accepts(port_)) return absl::OkStatus();
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(
          absl::StrCat("sshd exited at start; its log:\n", ReadFile(log)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("sshd did not listen on ", port_, " within 10 s; its log:\n", ReadFile(log)));
}

void TestSshd::DropConnections() {
  if (pid_ <= 0) return;
  for (pid_t p : Descendants(pid_)) ::kill(p, SIGKILL);
  // Reap the connection processes, which are sshd's children: sshd itself reaps them, so wait
  // until they are gone.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!Descendants(pid_).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void TestSshd::Kill() {
  if (pid_ <= 0) return;
  DropConnections();
  ::kill(pid_, SIGTERM);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

absl::Status TestSshd::Restart() {
  Kill();
  absl::Status s;
  // The port may linger for a moment after the old listener closed.
  for (int attempt = 0; attempt < 20; ++attempt) {
    s = Launch();
    if (s.ok()) return s;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return s;
}

absl::Status TestSshd::NewHostKey() { return GenerateKey(dir_ + "/host_key"); }

TestSshd::~TestSshd() {
  Kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

absl::StatusOr<std::string> TestSshd::KnownHostsLine() const {
  std::string pub(absl::StripAsciiWhitespace(ReadFile(dir_ + "/host_key.pub")));
  std::vector<std::string> parts = absl::StrSplit(pub, ' ');
  if (parts.size() < 2) return absl::InternalError("unreadable host_key.pub");
  return absl::StrCat("[127.0.0.1]:", port_, " ", parts[0], " ", parts[1]);
}

absl::Status TestSshd::WriteKnownHosts(const std::string& path) const {
  ASSIGN_OR_RETURN(std::string line, KnownHostsLine());
  return WriteFile(path, line + "\n");
}

SshOptions TestSshd::Options() const {
  SshOptions o;
  o.host = "127.0.0.1";
  o.port = port_;
  o.user = account_.name;
  o.identity_file = client_key();
  o.known_hosts_file = dir_ + "/known_hosts";
  o.connect_timeout = absl::Seconds(10);
  return o;
}

}  // namespace evalctl::ssh::testing

// A real OpenSSH server (Debian's /usr/sbin/sshd) for tests: its own directory under /tmp, its own
// host key, a client key pair whose public half is its only authorized key, its own config and a
// free port on 127.0.0.1. It runs in the foreground (`sshd -D -e`, log in dir()/sshd.log) as a
// child of the test, and dies with it. Nothing outside its directory is touched except /run/sshd,
// which sshd needs to exist.
//
// Logins are as a test account (common/testing/test_account.h), never as the user running the
// test: that user's shell startup files belong to the machine (on a developer's machine or in CI
// they may load pyenv, conda or a module system, and take a minute), the account's are what
// the test says. Remote files go under user_dir(), which the account owns.
//
//   ASSERT_OK_AND_ASSIGN(auto sshd, TestSshd::Start());
//   ASSERT_OK_AND_ASSIGN(auto host, LibsshRemoteHost::Connect(sshd->Options()));
//
// Options() trusts the server through a known_hosts file of its own (dir()/known_hosts).
// Not thread-safe.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/ssh/libssh_remote_host.h"
#include "common/testing/test_account.h"

namespace evalctl::ssh::testing {

struct TestSshdOptions {
  // The account that logs in, and what its shell startup files hold.
  std::string account = "evalctl-ssh";
  std::string startup;
};

class TestSshd {
 public:
  static absl::StatusOr<std::unique_ptr<TestSshd>> Start(TestSshdOptions options = {});
  // Stops the server and every process it started, and removes its directory.
  ~TestSshd();
  TestSshd(const TestSshd&) = delete;
  TestSshd& operator=(const TestSshd&) = delete;

  int port() const { return port_; }
  // The server's own files (keys, config, log); root's, readable by the account where sshd needs.
  const std::string& dir() const { return dir_; }
  // The account that logs in, and a directory it owns (dir()/user) for the test's remote files.
  const ::evalctl::testing::TestAccount& account() const { return account_; }
  std::string user_dir() const { return dir_ + "/user"; }
  // The authorized private key.
  std::string client_key() const { return dir_ + "/client_key"; }
  // "[127.0.0.1]:<port> ssh-ed25519 AAAA..." for a known_hosts file.
  absl::StatusOr<std::string> KnownHostsLine() const;
  // Writes a known_hosts file that trusts this server.
  absl::Status WriteKnownHosts(const std::string& path) const;
  // 127.0.0.1, port(), account().name, client_key(), dir()/known_hosts (trusting this server),
  // strict checking.
  SshOptions Options() const;

  // Kills the processes that serve open connections (their clients see the connection drop);
  // the server keeps accepting new ones.
  void DropConnections();
  // Stops the server (and its connections) and starts it again on the same port.
  absl::Status Restart();
  // Replaces the host key; takes effect at the next Restart().
  absl::Status NewHostKey();

 private:
  TestSshd() = default;
  absl::Status Launch();
  void Kill();

  std::string dir_;
  ::evalctl::testing::TestAccount account_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// Generates an unencrypted ed25519 key pair at `path` and `path`.pub.
absl::Status GenerateKey(const std::string& path);

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

// The pid in a pid file (0 when none) and whether that process runs (a zombie does not).
int ReadPidFile(const std::string& path);
bool ProcessRunning(int pid);
// SIGKILLs the supervisor and agent of an installation in `remote_dir` on this machine (the
// cleanup of tests whose "headnode" is 127.0.0.1).
void KillInstalledAgent(const std::string& remote_dir);

// Polls `done` every 20 ms until it holds (true) or `timeout` passes (false).
bool Eventually(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10));

}  // namespace evalctl::ssh::testing

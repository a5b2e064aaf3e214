// RemoteHost over one libssh session: connect with host-key checking, authenticate with a key
// file or ssh-agent, run commands, upload over SFTP, and serve a reverse port forward.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<LibsshRemoteHost> host,
//                    LibsshRemoteHost::Connect({.host = "headnode", .user = "me"}));
//   ASSIGN_OR_RETURN(ExecResult r, host->Exec("squeue --version", absl::Seconds(30)));
//
//   // Reverse forward: connections to 127.0.0.1:7000 on the remote host reach 10.0.0.5:50051.
//   ASSIGN_OR_RETURN(int port, host->ListenForward("127.0.0.1", 7000));
//   absl::Status lost = host->ServeForwards("10.0.0.5", 50051, stop);  // until *stop or a drop
//
// Errors say what failed and what to do:
//   UNAVAILABLE        the host could not be reached ("cannot connect to me@h:22: Connection refused"),
//                      or the connection was lost;
//   FAILED_PRECONDITION the host key is unknown or changed (the key's SHA256 fingerprint, the
//                      known_hosts file, how to fix it); nothing is sent to such a host;
//   PERMISSION_DENIED  authentication failed (the methods tried, those the server accepts);
//   INVALID_ARGUMENT   an unusable private key file.
// ~/.ssh/config is not read: host, port, user and key are what SshOptions says.
// Each command runs behind a marker the login shell prints first, so that the time its startup
// files take (tens of seconds on some sites) does not count against the command's timeout; a
// shell that does not start the command within login_timeout fails with that cause and the time,
// and a start slower than 5 s is logged once with the time it took. Key material and
// passphrases are never logged or put into messages; fingerprints are.
//
// Thread-compatible: libssh sessions are not thread-safe, so one thread at a time uses a host
// (ServeForwards keeps the thread that calls it).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/ssh/remote_host.h"

namespace evalctl::ssh {

enum class HostKeyPolicy {
  // Only hosts whose key is in the known_hosts file.
  kStrict,
  // Also hosts not in the file yet: their key is added to it. A changed key is still refused.
  kAcceptNew,
};

struct SshOptions {
  std::string host;
  int port = 22;
  // Empty: the local user's name.
  std::string user;
  // Private key file (OpenSSH or PEM format, no passphrase). Empty: ssh-agent ($SSH_AUTH_SOCK),
  // then the default keys in ~/.ssh.
  std::string identity_file;
  // Empty: ~/.ssh/known_hosts (and the system's /etc/ssh/ssh_known_hosts). When set, only this
  // file.
  std::string known_hosts_file;
  HostKeyPolicy host_key_policy = HostKeyPolicy::kStrict;
  absl::Duration connect_timeout = absl::Seconds(15);
  // How long the remote login shell may take to start a command (its startup files: module
  // systems, conda, pyenv). A command's own timeout counts from when it starts, not before.
  absl::Duration login_timeout = absl::Minutes(2);
};

// "user@host:port" of the options (the local user when none is set).
std::string DescribeTarget(const SshOptions& options);

class LibsshRemoteHost : public RemoteHost {
 public:
  // Connects, checks the host key, authenticates.
  static absl::StatusOr<std::unique_ptr<LibsshRemoteHost>> Connect(const SshOptions& options);
  ~LibsshRemoteHost() override;
  LibsshRemoteHost(const LibsshRemoteHost&) = delete;
  LibsshRemoteHost& operator=(const LibsshRemoteHost&) = delete;

  std::string Describe() const override;
  absl::StatusOr<ExecResult> Exec(const std::string& command, absl::Duration timeout) override;
  absl::Status UploadData(absl::string_view data, const std::string& remote_path,
                          int mode) override;
  absl::Status UploadFile(const std::string& local_path, const std::string& remote_path,
                          int mode) override;

  // Asks the server to listen on address:port (port 0: the server picks) and to forward the
  // connections it accepts over this session. Returns the port it listens on. UNAVAILABLE when
  // the server refuses (the port is taken, or forwarding is disabled in its sshd_config).
  absl::StatusOr<int> ListenForward(const std::string& address, int port);
  // Connects each forwarded connection to target_host:target_port over TCP and copies bytes both
  // ways, until `stop` becomes true (OK) or the SSH connection is lost (UNAVAILABLE). A target
  // that refuses a connection closes only that forwarded connection.
  absl::Status ServeForwards(const std::string& target_host, int target_port,
                             const std::atomic<bool>& stop);

  // False once the connection is known to be lost.
  bool connected() const;

 private:
  struct Session;
  LibsshRemoteHost(SshOptions options, std::unique_ptr<Session> session);

  absl::Status Upload(const std::string& remote_path, int mode,
                      const std::function<absl::Status(void* file)>& write);
  absl::Status Lost(absl::string_view what) const;

  SshOptions options_;
  std::unique_ptr<Session> session_;
  bool slow_shell_logged_ = false;
};

}  // namespace evalctl::ssh

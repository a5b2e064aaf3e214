// A reverse port forward that stays up: one SSH connection to a headnode on which the server
// listens on remote_address:remote_port and forwards every connection to target_host:target_port
// on this side. When the connection drops, it reconnects with jittered exponential backoff and
// asks for the same remote port again (the agent behind it is configured with that port).
//
//   ReverseTunnel tunnel({.ssh = ssh_options, .remote_port = 47051,
//                         .target_host = "10.0.0.5", .target_port = 50051});
//   std::atomic<bool> stop{false};
//   absl::Status s = tunnel.Run(std::move(connected_host), stop);   // until stop is set
//
// Run() returns OK when `stop` is set, or an error that retrying cannot fix (the host key is
// unknown or changed, authentication is refused, the key file is unusable). Everything else
// (host unreachable, port still held by the previous connection, connection lost) is retried.
//
// Thread-safety: Run() blocks its thread; `stop` and the counters may be used from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "clients/ssh/libssh_remote_host.h"

namespace evalctl::ssh {

struct ReverseTunnelOptions {
  SshOptions ssh;
  std::string remote_address = "127.0.0.1";
  int remote_port = 0;
  std::string target_host;
  int target_port = 0;
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(30);
  // Receives one line per change ("tunnel up: ...", "tunnel down: ..., reconnecting in 2s").
  std::function<void(const std::string&)> on_event;
};

class ReverseTunnel {
 public:
  explicit ReverseTunnel(ReverseTunnelOptions options);

  // Serves `connected` first when it is not null (its forward must already listen on
  // remote_port), then connects by itself.
  absl::Status Run(std::unique_ptr<LibsshRemoteHost> connected, const std::atomic<bool>& stop);

  // Times the forward has been established (the first `connected` counts).
  int established() const { return established_.load(); }
  // The forward is listening now.
  bool up() const { return up_.load(); }

 private:
  void Event(const std::string& line) const;
  // Sleeps up to `d`, returning early when `stop` is set.
  static void SleepUnlessStopped(absl::Duration d, const std::atomic<bool>& stop);

  ReverseTunnelOptions options_;
  std::atomic<int> established_{0};
  std::atomic<bool> up_{false};
};

// Retrying cannot fix this error: wrong host key, refused credentials, unusable key file.
bool IsPermanentSshError(const absl::Status& status);

}  // namespace evalctl::ssh

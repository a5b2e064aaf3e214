// `evalctl cluster install|uninstall|tunnel`: an evalctl-agent on a cluster headnode, put there
// over one SSH session (clients/install, clients/ssh).
//
//   std::atomic<bool> stop{false};               // set from a signal handler to end a tunnel
//   RETURN_IF_ERROR(ClusterInstallCommand(&client, options, io, stop));
//
// Progress goes to io.err, one line per step; the result (where the agent runs) to io.out.
// Thread-compatible.
#pragma once

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cli/commands.h"
#include "clients/cpp/client.h"
#include "clients/install/agent_install.h"
#include "clients/ssh/libssh_remote_host.h"

namespace evalctl::cli {

// `evalctl cluster install HOST`: installs or upgrades the agent, starts it, and waits until it
// registers with the controller. With `tunnel`, the agent dials 127.0.0.1:<port> on the headnode,
// a reverse forward over the same SSH session carries its stream to `controller_target`, and the
// command keeps the tunnel open (reconnecting) until `stop`.
struct ClusterInstallOptions {
  ssh::SshOptions ssh;
  // agent.controller empty: `controller_target` (or the tunnel's port in tunnel mode).
  install::AgentInstallOptions agent;
  // The controller as this machine reaches it (host:port).
  std::string controller_target;
  bool tunnel = false;
  // Tunnel mode: the port on the headnode's loopback. 0: the port of the previous installation,
  // else one sshd picks.
  int remote_port = 0;
  absl::Duration wait = absl::Minutes(1);
};
absl::Status ClusterInstallCommand(client::Client& client, ClusterInstallOptions options,
                                   const Io& io, const std::atomic<bool>& stop);

// `evalctl cluster uninstall HOST`: stops the agent and removes its directory.
struct ClusterUninstallOptions {
  ssh::SshOptions ssh;
  std::string remote_dir = "~/.evalctl";
  bool keep_state = false;
};
absl::Status ClusterUninstallCommand(const ClusterUninstallOptions& options, const Io& io);

// `evalctl cluster tunnel HOST`: the reverse tunnel of an agent installed with --tunnel, until
// `stop`.
struct ClusterTunnelOptions {
  ssh::SshOptions ssh;
  std::string remote_dir = "~/.evalctl";
  // 0: the port recorded by the installation.
  int remote_port = 0;
  std::string controller_target;
};
absl::Status ClusterTunnelCommand(const ClusterTunnelOptions& options, const Io& io,
                                  const std::atomic<bool>& stop);

// host and port of a controller target ("10.0.0.5:50051", "dns:///ctl:50051", "[::1]:50051").
absl::StatusOr<std::pair<std::string, int>> SplitTarget(const std::string& target);

// evalctl-agent next to the running evalctl, or where the build tree puts it. NOT_FOUND names
// --agent-binary.
absl::StatusOr<std::string> DefaultAgentBinary();

}  // namespace evalctl::cli

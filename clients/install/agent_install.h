// Installs, upgrades and removes an evalctl-agent on a cluster headnode over one RemoteHost
// (one SSH session), and waits for it to register with the controller.
//
//   ASSIGN_OR_RETURN(auto host, ssh::LibsshRemoteHost::Connect(ssh_options));
//   ASSIGN_OR_RETURN(InstalledAgent agent,
//                    InstallAgent(*host, {.agent_binary = "/opt/evalctl/bin/evalctl-agent",
//                                         .cluster = "eos", .controller = "ctl.example:50051"}));
//   RETURN_IF_ERROR(WaitForAgent(client, agent.cluster, absl::Minutes(1)));
//
// On the headnode, everything lives in one directory (default ~/.evalctl):
//   agentctl              start|stop|status|run; `run` is the supervisor loop that restarts the
//                         agent when it exits (with backoff)
//   bin/evalctl-agent     the binary (replaced atomically on upgrade)
//   agent.args            the agent's arguments, one per line
//   agent.env             NAME='value' lines for the agent's environment (0600)
//   token, ca.pem, ...    enrollment token (0600) and TLS files, when the controller has TLS
//   tunnel.port           the remote port of the reverse tunnel, in tunnel mode
//   state/                the agent's journal and credentials (--state-dir)
//   agent.log             the supervisor's and the agent's output
//   unit                  the systemd user unit's name, when systemd supervises the agent
// The agent runs under `systemd --user` when the user manager works (a unit
// evalctl-agent-<cluster>.service that runs `agentctl run`), otherwise as a detached process
// (setsid nohup) with agent.pid. Installing again upgrades in place: new files, then stop,
// then start. Secrets (the token, agent.env) reach files of mode 0600 only, never a command line.
//
// Thread-compatible.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/client.h"
#include "clients/ssh/remote_host.h"

namespace evalctl::install {

enum class Supervisor {
  // systemd --user when `systemctl --user is-system-running` says running or degraded.
  kAuto,
  kSystemd,
  kProcess,
};

struct AgentInstallOptions {
  // On the headnode; a leading "~/" is the remote user's home.
  std::string remote_dir = "~/.evalctl";
  // The evalctl-agent binary on this machine.
  std::string agent_binary;
  // The agent's --cluster. Empty: the headnode's short host name.
  std::string cluster;
  // host:port the agent dials (in tunnel mode, 127.0.0.1:<tunnel port>).
  std::string controller;
  std::vector<std::string> aliases;
  // A controller with TLS: its CA's PEM file here (uploaded as ca.pem), optionally a client
  // certificate and key for the agent. All empty: the agent runs with --insecure.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // One-time enrollment token, uploaded as `token` (0600) and passed as --token-file.
  std::string enrollment_token;
  // With TLS and no `enrollment_token`: called once the cluster's name and the remote Unix user
  // are known, returns a fresh enrollment token for an agent of that user on that cluster, with
  // `aliases` (e.g. from the controller's CreateEnrollmentToken).
  std::function<absl::StatusOr<std::string>(const std::string& cluster,
                                            const std::string& unix_user,
                                            const std::vector<std::string>& aliases)>
      enroll;
  // The agent's environment (e.g. SLURM_CONF), written to agent.env (0600).
  std::vector<std::pair<std::string, std::string>> env;
  // More agent arguments, appended as they are.
  std::vector<std::string> extra_args;
  // The remote port of the reverse tunnel the agent dials through; 0: none.
  int tunnel_port = 0;
  Supervisor supervisor = Supervisor::kAuto;
  // Called with the cluster's name after a previous agent was stopped and before the new one
  // starts (e.g. to wait until the controller has seen it go).
  std::function<void(const std::string& cluster)> after_stop;
};

struct InstalledAgent {
  // Absolute path on the headnode.
  std::string remote_dir;
  std::string cluster;
  // "systemd unit evalctl-agent-eos.service" or "process (pid 1234)".
  std::string supervisor;
  // An earlier installation was replaced.
  bool upgraded = false;
};

// The agent's command line (after the binary) for `options` installed in `remote_dir`.
std::vector<std::string> AgentArgs(const AgentInstallOptions& options,
                                   const std::string& remote_dir);

absl::StatusOr<InstalledAgent> InstallAgent(ssh::RemoteHost& host,
                                            const AgentInstallOptions& options);

// Stops the agent and removes what InstallAgent wrote (the state directory too, unless
// `keep_state`). NOT_FOUND when `remote_dir` holds no installation.
absl::Status UninstallAgent(ssh::RemoteHost& host, const std::string& remote_dir, bool keep_state);

// The port recorded in tunnel.port by an installation in tunnel mode. NOT_FOUND when there is
// none.
absl::StatusOr<int> ReadTunnelPort(ssh::RemoteHost& host, const std::string& remote_dir);

// The last `lines` lines of agent.log, for error messages ("" when unreadable).
std::string AgentLogTail(ssh::RemoteHost& host, const std::string& remote_dir, int lines = 20);

// Polls ListClusters until `cluster` is connected (OK) or not (`connected` false), or `timeout`
// passes (DEADLINE_EXCEEDED with the last answer).
absl::Status WaitForAgent(client::Client& client, const std::string& cluster,
                          absl::Duration timeout, bool connected = true);

// The shell expression of a remote path: "~/x" -> "$HOME"/'x'.
std::string RemotePathExpr(const std::string& path);

}  // namespace evalctl::install

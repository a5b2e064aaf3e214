#include "clients/cli/cluster_commands.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "clients/ssh/reverse_tunnel.h"
#include "common/status_macros.h"

namespace evalctl::cli {
namespace {

// Serves a reverse tunnel on its own thread while this one waits for the agent.
class TunnelThread {
 public:
  TunnelThread(ssh::ReverseTunnelOptions options, std::unique_ptr<ssh::LibsshRemoteHost> host)
      : tunnel_(std::move(options)) {
    thread_ = std::thread([this, h = std::move(host)]() mutable {
      result_ = tunnel_.Run(std::move(h), stop_);
      done_ = true;
    });
  }
  ~TunnelThread() { (void)Stop(); }
  TunnelThread(const TunnelThread&) = delete;
  TunnelThread& operator=(const TunnelThread&) = delete;

  // Serves until `outer_stop` is set or the tunnel fails for good.
  absl::Status RunUntil(const std::atomic<bool>& outer_stop) {
    while (!done_ && !outer_stop) absl::SleepFor(absl::Milliseconds(100));
    return Stop();
  }
  absl::Status Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  ssh::ReverseTunnel tunnel_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  absl::Status result_;
  std::thread thread_;
};

ssh::ReverseTunnelOptions TunnelOptions(const ssh::SshOptions& ssh, int remote_port,
                                        const std::pair<std::string, int>& target, const Io& io) {
  return {.ssh = ssh,
          .remote_port = remote_port,
          .target_host = target.first,
          .target_port = target.second,
          .on_event = [&io](const std::string& line) { io.err << "evalctl: " << line << "\n"; }};
}

}  // namespace

absl::StatusOr<std::pair<std::string, int>> SplitTarget(const std::string& target) {
  absl::string_view t = target;
  absl::ConsumePrefix(&t, "dns:///");
  absl::ConsumePrefix(&t, "ipv4:");
  absl::ConsumePrefix(&t, "ipv6:");
  const size_t colon = t.rfind(':');
  int port = 0;
  if (absl::StartsWith(t, "unix:") || colon == absl::string_view::npos ||
      !absl::SimpleAtoi(t.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the controller address \"", target, "\" is not host:port, which a tunnel needs"));
  }
  absl::string_view host = t.substr(0, colon);
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  return std::make_pair(std::string(host), port);
}

absl::StatusOr<std::string> DefaultAgentBinary() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path dir = self.parent_path();
    // Installed side by side, or the build tree (clients/cli/evalctl, agent/runtime/evalctl-agent).
    for (const std::filesystem::path& p :
         {dir / "evalctl-agent", dir / "../../agent/runtime/evalctl-agent"}) {
      if (::access(p.c_str(), X_OK) == 0) return std::filesystem::weakly_canonical(p, ec).string();
    }
  }
  return absl::NotFoundError(
      "cannot find evalctl-agent next to evalctl or in the build tree: pass --agent-binary");
}

absl::Status ClusterInstallCommand(client::Client& client, ClusterInstallOptions options,
                                   const Io& io, const std::atomic<bool>& stop) {
  std::pair<std::string, int> target;
  if (options.tunnel) {
    ASSIGN_OR_RETURN(target, SplitTarget(options.controller_target));
  }
  const std::string where = ssh::DescribeTarget(options.ssh);
  io.err << "evalctl: connecting to " << where << "\n";
  ASSIGN_OR_RETURN(std::unique_ptr<ssh::LibsshRemoteHost> host,
                   ssh::LibsshRemoteHost::Connect(options.ssh));

  install::AgentInstallOptions& agent = options.agent;
  if (options.tunnel) {
    int port = options.remote_port;
    if (port == 0) {
      // Keep the port of an earlier installation: a running agent dials it.
      absl::StatusOr<int> previous = install::ReadTunnelPort(*host, agent.remote_dir);
      if (previous.ok()) port = *previous;
    }
    ASSIGN_OR_RETURN(port, host->ListenForward("127.0.0.1", port));
    agent.controller = absl::StrCat("127.0.0.1:", port);
    agent.tunnel_port = port;
    io.err << "evalctl: " << where << " forwards 127.0.0.1:" << port << " to "
           << options.controller_target << "\n";
  } else if (agent.controller.empty()) {
    agent.controller = options.controller_target;
  }
  agent.after_stop = [&](const std::string& cluster) {
    // The controller has to notice the old agent's stream end, or the new one's registration
    // cannot be told apart from it.
    io.err << "evalctl: stopped the previous agent\n";
    (void)install::WaitForAgent(client, cluster, absl::Seconds(15), /*connected=*/false);
  };
  io.err << "evalctl: installing " << agent.agent_binary << " on " << where << "\n";
  ASSIGN_OR_RETURN(install::InstalledAgent installed, install::InstallAgent(*host, agent));
  io.err << "evalctl: " << (installed.upgraded ? "upgraded" : "installed") << " the agent of cluster "
         << installed.cluster << " in " << installed.remote_dir << " (" << installed.supervisor
         << "); waiting for it to register with the controller\n";

  std::unique_ptr<TunnelThread> tunnel;
  absl::Status registered;
  if (options.tunnel) {
    tunnel = std::make_unique<TunnelThread>(
        TunnelOptions(options.ssh, agent.tunnel_port, target, io), std::move(host));
    registered = install::WaitForAgent(client, installed.cluster, options.wait);
  } else {
    registered = install::WaitForAgent(client, installed.cluster, options.wait);
    if (!registered.ok()) {
      const std::string log = install::AgentLogTail(*host, installed.remote_dir);
      return Annotate(registered, absl::StrCat("agent installed in ", installed.remote_dir, " on ",
                                               where, "; the end of its agent.log:\n", log));
    }
  }
  if (!registered.ok()) {
    (void)tunnel->Stop();
    return Annotate(registered, absl::StrCat("agent installed in ", installed.remote_dir, " on ",
                                             where, " (see agent.log there)"));
  }
  io.out << "cluster " << installed.cluster << ": agent running on " << where << " in "
         << installed.remote_dir << " (" << installed.supervisor << "), registered with the controller\n";
  if (!options.tunnel) return absl::OkStatus();
  io.err << "evalctl: keeping the tunnel open until interrupted; `evalctl cluster tunnel "
         << options.ssh.host << "` reopens it later\n";
  io.out.flush();
  return tunnel->RunUntil(stop);
}

absl::Status ClusterUninstallCommand(const ClusterUninstallOptions& options, const Io& io) {
  ASSIGN_OR_RETURN(std::unique_ptr<ssh::LibsshRemoteHost> host,
                   ssh::LibsshRemoteHost::Connect(options.ssh));
  RETURN_IF_ERROR(install::UninstallAgent(*host, options.remote_dir, options.keep_state));
  io.out << "removed the agent in " << options.remote_dir << " on " << host->Describe()
         << (options.keep_state ? " (its state directory is kept)" : "") << "\n";
  return absl::OkStatus();
}

absl::Status ClusterTunnelCommand(const ClusterTunnelOptions& options, const Io& io,
                                  const std::atomic<bool>& stop) {
  ASSIGN_OR_RETURN(auto target, SplitTarget(options.controller_target));
  ASSIGN_OR_RETURN(std::unique_ptr<ssh::LibsshRemoteHost> host,
                   ssh::LibsshRemoteHost::Connect(options.ssh));
  int port = options.remote_port;
  if (port == 0) {
    ASSIGN_OR_RETURN(port, install::ReadTunnelPort(*host, options.remote_dir));
  }
  absl::StatusOr<int> listening = host->ListenForward("127.0.0.1", port);
  // The port may still be held by a connection that just died; the tunnel retries then.
  if (!listening.ok()) {
    io.err << "evalctl: " << listening.status().message() << "\n";
    host.reset();
  }
  ssh::ReverseTunnel tunnel(TunnelOptions(options.ssh, port, target, io));
  return tunnel.Run(std::move(host), stop);
}

}  // namespace evalctl::cli

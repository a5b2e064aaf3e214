#include "clients/install/agent_install.h"

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "clients/install/agentctl_script.h"
#include "common/status_macros.h"

namespace evalctl::install {
namespace {

using ssh::ExecResult;
using ssh::ShellQuote;

constexpr absl::Duration kCommandTimeout = absl::Minutes(2);

// Runs a script through `sh -c` (the login shell may be csh) and checks its exit code.
absl::StatusOr<ExecResult> Run(ssh::RemoteHost& host, absl::string_view what,
                               const std::string& script) {
  ASSIGN_OR_RETURN(ExecResult r, host.Exec(absl::StrCat("sh -c ", ShellQuote(script)),
                                           kCommandTimeout));
  RETURN_IF_ERROR(Annotate(r.Check(what), host.Describe()));
  return r;
}

// "key=value" lines of a probe's output.
std::map<std::string, std::string> ParseKeyValues(absl::string_view text) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    out[kv.first] = std::string(absl::StripAsciiWhitespace(kv.second));
  }
  return out;
}

// A systemd unit name part: letters, digits, '-', '_', '.'.
std::string UnitSafe(absl::string_view name) {
  std::string out;
  for (char c : name) {
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                          c == '.'
                      ? c
                      : '_');
  }
  return out;
}

bool ValidEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

absl::Status CheckOptions(const AgentInstallOptions& o) {
  if (o.agent_binary.empty()) return absl::InvalidArgumentError("no agent binary given");
  if (o.controller.empty()) {
    return absl::InvalidArgumentError("no controller address for the agent");
  }
  if (o.remote_dir.empty()) return absl::InvalidArgumentError("empty remote directory");
  if (o.tls_ca_file.empty() && (!o.tls_cert_file.empty() || !o.tls_key_file.empty())) {
    return absl::InvalidArgumentError("a TLS client certificate needs the controller's CA too");
  }
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("a TLS client certificate needs its key, and vice versa");
  }
  for (const auto& [name, value] : o.env) {
    if (!ValidEnvName(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", name, "\" is not a valid environment variable name"));
    }
  }
  std::vector<std::string> words = {o.cluster, o.controller};
  words.insert(words.end(), o.aliases.begin(), o.aliases.end());
  words.insert(words.end(), o.extra_args.begin(), o.extra_args.end());
  for (const std::string& w : words) {
    if (absl::StrContains(w, '\n')) {
      return absl::InvalidArgumentError("agent arguments cannot contain line breaks");
    }
  }
  return absl::OkStatus();
}

std::string SystemdUnit(const std::string& remote_dir, const std::string& unit) {
  return absl::StrCat("[Unit]\nDescription=evalctl-agent in ", remote_dir,
                      " (", unit, ")\n\n[Service]\nExecStart=/bin/sh ", remote_dir,
                      "/agentctl run\nRestart=always\nRestartSec=5\n\n[Install]\n"
                      "WantedBy=default.target\n");
}

}  // namespace

std::string RemotePathExpr(const std::string& path) {
  if (path == "~") return "\"$HOME\"";
  if (absl::StartsWith(path, "~/")) return absl::StrCat("\"$HOME\"/", ShellQuote(path.substr(2)));
  return ShellQuote(path);
}

std::vector<std::string> AgentArgs(const AgentInstallOptions& o, const std::string& remote_dir) {
  std::vector<std::string> args = {"--controller", o.controller, "--state-dir",
                                   remote_dir + "/state", "--cluster", o.cluster};
  for (const std::string& a : o.aliases) {
    args.push_back("--alias");
    args.push_back(a);
  }
  if (o.tls_ca_file.empty()) {
    args.push_back("--insecure");
  } else {
    args.insert(args.end(), {"--tls-ca", remote_dir + "/ca.pem"});
    if (!o.tls_cert_file.empty()) {
      args.insert(args.end(), {"--tls-cert", remote_dir + "/client.pem", "--tls-key",
                               remote_dir + "/client.key"});
    }
  }
  if (!o.enrollment_token.empty()) args.insert(args.end(), {"--token-file", remote_dir + "/token"});
  args.insert(args.end(), o.extra_args.begin(), o.extra_args.end());
  return args;
}

absl::StatusOr<InstalledAgent> InstallAgent(ssh::RemoteHost& host,
                                            const AgentInstallOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  AgentInstallOptions o = options;
  // One probe: create the directory, find its absolute path, the host name, the home directory,
  // a previous installation and whether a systemd user manager runs.
  ASSIGN_OR_RETURN(
      ExecResult probe,
      Run(host, "preparing the remote directory",
          absl::StrCat("set -e; d=", RemotePathExpr(o.remote_dir),
                       "; mkdir -p \"$d/bin\" \"$d/state\"; chmod 700 \"$d\" \"$d/state\"; "
                       "cd \"$d\"; echo \"dir=$(pwd -P)\"; echo \"home=$HOME\"; "
                       "echo \"user=$(id -un)\"; "
                       "echo \"host=$(hostname -s 2>/dev/null || hostname)\"; "
                       "if [ -f agentctl ]; then echo previous=yes; fi; "
                       "echo \"systemd=$(systemctl --user is-system-running 2>/dev/null || true)\"")));
  std::map<std::string, std::string> facts = ParseKeyValues(probe.stdout_data);
  const std::string dir = facts["dir"];
  if (dir.empty() || dir[0] != '/') {
    return absl::InternalError(absl::StrCat("unexpected answer from ", host.Describe(),
                                            " while preparing ", o.remote_dir, ": ",
                                            probe.stdout_data));
  }
  if (o.cluster.empty()) o.cluster = facts["host"];
  if (o.cluster.empty()) {
    return absl::InvalidArgumentError("cannot tell the cluster's name: pass --cluster");
  }
  if (o.enrollment_token.empty() && !o.tls_ca_file.empty() && o.enroll) {
    if (facts["user"].empty()) {
      return absl::InternalError(absl::StrCat("cannot tell the Unix user on ", host.Describe(),
                                              " (`id -un` printed nothing)"));
    }
    // What the agent will claim: the aliases given, and its host's short name.
    std::vector<std::string> aliases = o.aliases;
    if (!facts["host"].empty() &&
        std::find(aliases.begin(), aliases.end(), facts["host"]) == aliases.end()) {
      aliases.push_back(facts["host"]);
    }
    absl::StatusOr<std::string> token = o.enroll(o.cluster, facts["user"], aliases);
    if (!token.ok()) {
      return Annotate(token.status(), absl::StrCat("enrolling the agent of cluster ", o.cluster));
    }
    o.enrollment_token = *std::move(token);
  }
  const std::string systemd_state = facts["systemd"];
  bool use_systemd = o.supervisor == Supervisor::kSystemd;
  if (o.supervisor == Supervisor::kAuto) {
    use_systemd = systemd_state == "running" || systemd_state == "degraded";
  }
  if (use_systemd && facts["home"].empty()) {
    return absl::InternalError("the remote user has no home directory for a systemd user unit");
  }
  InstalledAgent result{.remote_dir = dir, .cluster = o.cluster,
                        .upgraded = facts.count("previous") > 0};

  // New files first, while a previous agent still runs: the binary and agentctl are replaced
  // atomically, so a restart of the old agent in between finds a complete install.
  auto where = [&](absl::string_view what) {
    return absl::StrCat("uploading ", what, " to ", host.Describe(), ":", dir);
  };
  RETURN_IF_ERROR(Annotate(host.UploadFile(o.agent_binary, dir + "/bin/evalctl-agent", 0755),
                           where("the agent binary")));
  RETURN_IF_ERROR(Annotate(host.UploadData(kAgentctlScript, dir + "/agentctl", 0755),
                           where("agentctl")));
  std::vector<std::string> args = AgentArgs(o, dir);
  RETURN_IF_ERROR(Annotate(
      host.UploadData(absl::StrCat(absl::StrJoin(args, "\n"), "\n"), dir + "/agent.args", 0600),
      where("agent.args")));
  std::string env;
  for (const auto& [name, value] : o.env) absl::StrAppend(&env, "export ", name, "=", ShellQuote(value), "\n");
  RETURN_IF_ERROR(Annotate(host.UploadData(env, dir + "/agent.env", 0600), where("agent.env")));
  std::vector<std::string> stale;
  if (!o.enrollment_token.empty()) {
    RETURN_IF_ERROR(Annotate(host.UploadData(o.enrollment_token + "\n", dir + "/token", 0600),
                             where("the enrollment token")));
  } else {
    stale.push_back("token");
  }
  if (!o.tls_ca_file.empty()) {
    RETURN_IF_ERROR(
        Annotate(host.UploadFile(o.tls_ca_file, dir + "/ca.pem", 0644), where("the CA")));
  } else {
    stale.push_back("ca.pem");
  }
  if (!o.tls_cert_file.empty()) {
    RETURN_IF_ERROR(Annotate(host.UploadFile(o.tls_cert_file, dir + "/client.pem", 0644),
                             where("the client certificate")));
    RETURN_IF_ERROR(Annotate(host.UploadFile(o.tls_key_file, dir + "/client.key", 0600),
                             where("the client key")));
  } else {
    stale.insert(stale.end(), {"client.pem", "client.key"});
  }
  if (o.tunnel_port > 0) {
    RETURN_IF_ERROR(Annotate(
        host.UploadData(absl::StrCat(o.tunnel_port, "\n"), dir + "/tunnel.port", 0600),
        where("tunnel.port")));
  } else {
    stale.push_back("tunnel.port");
  }

  const std::string qdir = ShellQuote(dir);
  if (result.upgraded) {
    RETURN_IF_ERROR(Run(host, "stopping the previous agent",
                        absl::StrCat("cd ", qdir, " && ./agentctl stop"))
                        .status());
  }
  if (o.after_stop) o.after_stop(o.cluster);

  std::string remove = absl::StrCat("cd ", qdir, " && rm -f");
  for (const std::string& f : stale) absl::StrAppend(&remove, " ", f);
  const std::string unit = absl::StrCat("evalctl-agent-", UnitSafe(o.cluster), ".service");
  const std::string unit_dir = facts["home"] + "/.config/systemd/user";
  if (use_systemd) {
    RETURN_IF_ERROR(Run(host, "creating the systemd user unit directory",
                        absl::StrCat("mkdir -p ", ShellQuote(unit_dir)))
                        .status());
    RETURN_IF_ERROR(Annotate(
        host.UploadData(SystemdUnit(dir, unit), unit_dir + "/" + unit, 0644), where("the unit")));
    RETURN_IF_ERROR(
        Annotate(host.UploadData(unit + "\n", dir + "/unit", 0600), where("the unit's name")));
    result.supervisor = absl::StrCat("systemd unit ", unit);
  } else {
    absl::StrAppend(&remove, " unit");
  }
  RETURN_IF_ERROR(Run(host, "removing stale files", remove).status());
  RETURN_IF_ERROR(Run(host, "starting the agent", absl::StrCat("cd ", qdir, " && ./agentctl start"))
                      .status());
  if (!use_systemd) {
    ASSIGN_OR_RETURN(ExecResult pid, Run(host, "reading the supervisor's pid",
                                         absl::StrCat("cat ", qdir, "/agent.pid")));
    result.supervisor =
        absl::StrCat("process (pid ", absl::StripAsciiWhitespace(pid.stdout_data), ")");
  }
  return result;
}

absl::Status UninstallAgent(ssh::RemoteHost& host, const std::string& remote_dir,
                            bool keep_state) {
  const std::string d = RemotePathExpr(remote_dir);
  // Only a directory with agentctl in it is ours to remove.
  const std::string script = absl::StrCat(
      "d=", d, "; if [ ! -f \"$d/agentctl\" ]; then echo missing; exit 0; fi; set -e; "
      "cd \"$d\"; sh ./agentctl stop; unit=$(cat unit 2>/dev/null || true); "
      "if [ -n \"$unit\" ]; then systemctl --user disable \"$unit\" >/dev/null 2>&1 || true; "
      "rm -f \"$HOME/.config/systemd/user/$unit\"; systemctl --user daemon-reload || true; fi; ",
      keep_state ? "find . -mindepth 1 -maxdepth 1 ! -name state -exec rm -rf {} +"
                 : "cd / && rm -rf \"$d\"");
  ASSIGN_OR_RETURN(ExecResult r, Run(host, "removing the agent", script));
  if (absl::StripAsciiWhitespace(r.stdout_data) == "missing") {
    return absl::NotFoundError(absl::StrCat("no agent is installed in ", remote_dir, " on ",
                                            host.Describe(), " (no agentctl there)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ReadTunnelPort(ssh::RemoteHost& host, const std::string& remote_dir) {
  ASSIGN_OR_RETURN(ExecResult r,
                   host.Exec(absl::StrCat("sh -c ", ShellQuote(absl::StrCat(
                                                        "cat ", RemotePathExpr(remote_dir),
                                                        "/tunnel.port"))),
                             kCommandTimeout));
  int port = 0;
  if (!r.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(r.stdout_data), &port) ||
      port <= 0) {
    return absl::NotFoundError(absl::StrCat(
        "no tunnel port recorded in ", remote_dir, "/tunnel.port on ", host.Describe(),
        ": install the agent with --tunnel first, or pass --remote-port"));
  }
  return port;
}

std::string AgentLogTail(ssh::RemoteHost& host, const std::string& remote_dir, int lines) {
  absl::StatusOr<ExecResult> r = host.Exec(
      absl::StrCat("sh -c ", ShellQuote(absl::StrCat("tail -n ", lines, " ",
                                                     RemotePathExpr(remote_dir), "/agent.log"))),
      absl::Seconds(30));
  return r.ok() && r->ok() ? r->stdout_data : "";
}

absl::Status WaitForAgent(client::Client& client, const std::string& cluster,
                          absl::Duration timeout, bool connected) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer yet";
  while (true) {
    absl::StatusOr<v1::ListClustersResponse> clusters =
        client.ListClusters({}, {.timeout = absl::Seconds(5)});
    if (clusters.ok()) {
      bool is_connected = false;
      std::vector<std::string> seen;
      for (const v1::Cluster& c : clusters->clusters()) {
        seen.push_back(absl::StrCat(c.name(), c.connected() ? " (connected)" : " (disconnected)"));
        if (c.name() == cluster && c.connected()) is_connected = true;
      }
      if (is_connected == connected) return absl::OkStatus();
      last = seen.empty() ? "no clusters" : absl::StrJoin(seen, ", ");
    } else {
      last = std::string(clusters.status().message());
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "the agent of cluster \"", cluster, "\" did not ", connected ? "register with" : "leave",
      " the controller within ", absl::FormatDuration(timeout), " (controller lists: ", last,
      ")"));
}

}  // namespace evalctl::install

#include "clients/cli/app.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <fstream>
#include <memory>
#include <sstream>

#include "CLI/CLI.hpp"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "clients/cli/cluster_commands.h"
#include "clients/cli/dry_run.h"
#include "clients/cli/settings.h"
#include "clients/cli/grant_commands.h"
#include "clients/cli/token_commands.h"
#include "clients/cpp/client.h"
#include "clients/cpp/config_source.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "grpc/support/log.h"

namespace evalctl::cli {
namespace {

constexpr char kUnreachableHint[] = "start it or pass --controller / set EVALCTL_CONTROLLER";

struct GlobalFlags {
  std::string controller;
  std::string token;
  std::string token_file;
  std::string ca_cert;
  std::string client_cert;
  std::string client_key;
  std::string timeout = "10s";
};

// A failure and the exit code it maps to.
struct Failure {
  absl::Status status;
  int code;
};

int Report(const Failure& f, const Io& io) {
  io.err << "evalctl: " << f.status.message() << "\n";
  return f.code;
}

int CodeFor(const absl::Status& s) {
  return s.code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitError;
}

// "evalctl run" for the deepest subcommand the parser selected.
std::string CommandPath(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* current = &app;
  while (true) {
    std::vector<CLI::App*> selected = current->get_subcommands();
    if (selected.empty()) break;
    current = selected.front();
    absl::StrAppend(&path, " ", current->get_name());
  }
  return path;
}

absl::StatusOr<std::unique_ptr<client::Client>> Connect(const GlobalFlags& flags) {
  client::ClientOptions options;
  ASSIGN_OR_RETURN(
      options.target,
      ResolveController(flags.controller, std::getenv("EVALCTL_CONTROLLER"), UserConfigPath()));
  ASSIGN_OR_RETURN(options.timeout, ParseTimeout(flags.timeout));
  options.token = flags.token;
  if (options.token.empty() && !flags.token_file.empty()) {
    ASSIGN_OR_RETURN(options.token, ReadSecretFile(flags.token_file, "token file"));
  } else if (options.token.empty()) {
    if (const char* t = std::getenv("EVALCTL_TOKEN")) options.token = t;
  }
  options.tls = {flags.ca_cert, flags.client_cert, flags.client_key};
  options.unreachable_hint = kUnreachableHint;
  absl::StatusOr<std::unique_ptr<client::Client>> client = client::Client::Connect(options);
  if (!client.ok()) {
    // Unusable settings (a TLS file that is missing, half a key pair) are usage errors.
    return absl::InvalidArgumentError(client.status().message());
  }
  return client;
}

// Flags of the commands that reach a headnode over SSH.
struct SshFlags {
  std::string host;
  std::string user;
  int port = 22;
  std::string identity;
  std::string known_hosts;
  bool accept_new_host_key = false;
  std::string remote_dir = "~/.evalctl";

  ssh::SshOptions Options() const {
    return {.host = host,
            .port = port,
            .user = user,
            .identity_file = identity,
            .known_hosts_file = known_hosts,
            .host_key_policy = accept_new_host_key ? ssh::HostKeyPolicy::kAcceptNew
                                                   : ssh::HostKeyPolicy::kStrict};
  }
};

void AddSshFlags(CLI::App* app, SshFlags& f) {
  app->add_option("host", f.host, "The cluster's headnode (SSH host name or address)")->required();
  app->add_option("--user,-u", f.user, "SSH user (default: yours)");
  app->add_option("--port,-p", f.port, "SSH port")->capture_default_str()->check(CLI::Range(1, 65535));
  app->add_option("--identity,-i", f.identity,
                  "Private key file (default: ssh-agent, then the keys in ~/.ssh)");
  app->add_option("--known-hosts", f.known_hosts,
                  "known_hosts file that must hold the host's key (default: ~/.ssh/known_hosts)");
  app->add_flag("--accept-new-host-key", f.accept_new_host_key,
                "Trust a host that is not in known_hosts yet and record its key (a changed key "
                "is still refused)");
  app->add_option("--remote-dir", f.remote_dir, "The agent's directory on the headnode")
      ->capture_default_str();
}

// Set by SIGINT/SIGTERM while a tunnel runs.
std::atomic<bool> g_stop{false};

// Routes SIGINT and SIGTERM to g_stop while it lives.
class StopOnSignal {
 public:
  StopOnSignal() {
    g_stop = false;
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_stop = true; };
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopOnSignal() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

CLI::App* Command(CLI::App& parent, const std::string& name, const std::string& description,
                  const std::string& example) {
  CLI::App* sub = parent.add_subcommand(name, description);
  sub->footer(absl::StrCat("Example:\n  ", example));
  return sub;
}

// A fresh enrollment token for the agent of `unix_user` on `cluster`, for `cluster install` on a
// controller with TLS.
absl::StatusOr<std::string> EnrollmentToken(client::Client& client, const std::string& cluster,
                                            const std::string& unix_user,
                                            const std::vector<std::string>& aliases) {
  v1::CreateEnrollmentTokenRequest request;
  request.set_cluster(cluster);
  request.set_unix_user(unix_user);
  for (const std::string& a : aliases) request.add_aliases(a);
  absl::StatusOr<v1::CreateEnrollmentTokenResponse> response =
      client.CreateEnrollmentToken(request);
  if (!response.ok()) {
    return Annotate(response.status(),
                    "creating its enrollment token (an admin's token can, or pass "
                    "--enrollment-token-file from `evalctl cluster enroll`)");
  }
  return response->token();
}

}  // namespace

int RunApp(const std::vector<std::string>& args, const Io& io) {
  try {
    CLI::App app{"evalctl: run LLM evaluation suites on Slurm clusters through evalctl-controller",
                 "evalctl"};
    app.require_subcommand(1);
    app.fallthrough();
    app.set_version_flag("--version", "evalctl 0.1.0");
    app.footer(
        "IDs: an invocation id is 16 hex characters, a task id is <invocation>.<index>; any "
        "unique\n"
        "prefix works (3f2a, 3f2a9c01d4e5b677.1).\n"
        "Exit codes: 0 ok, 1 error, 2 bad usage or configuration, 3 a waited-for task did not "
        "succeed.\n\n"
        "Example:\n  evalctl run --config my.yaml -o execution.walltime=02:00:00 --wait");

    GlobalFlags flags;
    app.add_option("--controller", flags.controller,
                   "evalctl-controller address (default: $EVALCTL_CONTROLLER, then `controller:` "
                   "in ~/.config/evalctl/config.yaml, then 127.0.0.1:50051)");
    app.add_option("--token", flags.token,
                   "Bearer token (prefer --token-file or $EVALCTL_TOKEN: arguments are visible "
                   "to other users)");
    app.add_option("--token-file", flags.token_file,
                   "File holding the bearer token, mode 0600 (default: $EVALCTL_TOKEN_FILE, "
                   "then the token in $EVALCTL_TOKEN)")
        ->envname("EVALCTL_TOKEN_FILE");
    app.add_option("--ca-cert", flags.ca_cert,
                   "PEM file of the CA that signs the controller's certificate; enables TLS "
                   "(default: $EVALCTL_CA_CERT)")
        ->envname("EVALCTL_CA_CERT");
    app.add_option("--client-cert", flags.client_cert, "PEM client certificate, for mutual TLS");
    app.add_option("--client-key", flags.client_key, "PEM key of --client-cert");
    app.add_option("--timeout", flags.timeout, "Deadline of each call, e.g. 10s, 1m")
        ->capture_default_str();

    // --- run
    CLI::App* run = Command(app, "run", "Compose, validate and submit an evaluation",
                            "evalctl run --config my.yaml -o execution.walltime=02:00:00 --wait");
    client::ConfigFileOptions config_file;
    DryRunOptions dry;
    bool dry_run = false;
    bool wait = false;
    std::string request_id;
    run->add_option("--config,-c", config_file.path, "The run's YAML configuration")->required();
    run->add_option("-o,--override", config_file.overrides,
                    "Override a key: key=value, +key=value (add), ++key=value (add or replace), "
                    "~key (delete); evaluation.tasks.<name>.<key>=value targets tasks by name");
    run->add_option("-t,--task", config_file.task_filter, "Run only this task (repeatable)");
    CLI::Option* dry_flag =
        run->add_flag("--dry-run", dry_run,
                      "Print the resolved configuration and every job script; submit nothing");
    run->add_option("--render-dir", dry.render_dir,
                    "With --dry-run: write config.yaml and <task>/run.sub into this directory");
    run->add_option("--config-dir", config_file.group_dirs,
                    "Extra directory of config groups (like the config file's own directory)");
    run->add_flag("--wait", wait,
                  "Show a live table until every task ends, then the results; exit 3 when a task "
                  "did not succeed")
        ->excludes(dry_flag);
    run->add_option("--request-id", request_id,
                    "Idempotency key (default: a fresh UUID); a retry with the same id does not "
                    "submit twice")
        ->excludes(dry_flag);

    // --- status
    CLI::App* status = Command(app, "status", "Show the tasks of invocations or single tasks",
                               "evalctl status 3f2a 5b1c9d00aa12e3f4.2 --json");
    StatusOptions status_options;
    status->add_option("ids", status_options.ids,
                       "Invocation or task ids (prefixes); none: your newest invocations");
    status->add_flag("--json", status_options.json, "Print JSON");

    // --- ls runs / ls tasks
    CLI::App* ls =
        Command(app, "ls", "List invocations or the task catalog", "evalctl ls runs --since 1d");
    ls->require_subcommand(1);
    CLI::App* ls_runs = Command(*ls, "runs", "List your invocations, newest first",
                                "evalctl ls runs --limit 10 --since 6h");
    LsRunsOptions runs_options;
    std::string since;
    ls_runs->add_option("--limit,-n", runs_options.limit, "At most this many")
        ->capture_default_str()
        ->check(CLI::PositiveNumber);
    ls_runs->add_option("--since", since,
                        "Only invocations created since: an age (30m, 6h, 1d, 2w) or an ISO date "
                        "or time (2026-11-26, 2026-11-26T13:04:05Z)");
    ls_runs->add_flag("--json", runs_options.json, "Print JSON");
    CLI::App* ls_tasks =
        Command(*ls, "tasks", "List the benchmark tasks evalctl knows", "evalctl ls tasks");
    LsTasksOptions tasks_options;
    ls_tasks->add_flag("--json", tasks_options.json, "Print JSON");

    // --- watch
    CLI::App* watch = Command(app, "watch", "Print task events as they happen, one line each",
                              "evalctl watch 3f2a");
    WatchOptions watch_options;
    watch->add_option("id", watch_options.id,
                      "Invocation or task id (prefix); none: all your invocations");
    watch->add_option("--after", watch_options.after_sequence,
                      "Start after this event sequence number (0: current state first)");
    watch->add_flag("--json", watch_options.json, "Print one JSON object per line");

    // --- logs
    CLI::App* logs = Command(app, "logs", "Print a task's log (raw bytes)",
                             "evalctl logs 3f2a9c01d4e5b677.0 -f --which eval");
    LogsOptions logs_options;
    std::string which = "slurm";
    logs->add_option("id", logs_options.id, "Task id (<invocation>.<index>, prefix accepted)")
        ->required();
    logs->add_flag("-f,--follow", logs_options.follow,
                   "Keep printing as the log grows, until the task ends");
    logs->add_option("--which", which,
                     "slurm: the batch script's output; server: the model server's; eval: the "
                     "evaluation harness's")
        ->capture_default_str()
        ->check(CLI::IsMember({"slurm", "server", "eval"}));
    logs->add_option("--attempt", logs_options.attempt, "Attempt number (default: the newest)")
        ->check(CLI::PositiveNumber);

    // --- kill / resume / info / results
    CLI::App* kill = Command(app, "kill", "Cancel an invocation or a task; no attempt follows",
                             "evalctl kill 3f2a");
    std::string kill_id;
    kill->add_option("id", kill_id, "Invocation or task id (prefix)")->required();

    CLI::App* resume = Command(
        app, "resume", "Start a new attempt for failed, cancelled or budget-exhausted tasks",
        "evalctl resume 3f2a");
    std::string resume_id;
    resume->add_option("id", resume_id, "Invocation or task id (prefix)")->required();

    CLI::App* info = Command(app, "info",
                             "Show run directories, attempts, Slurm job ids, log paths and the "
                             "configuration",
                             "evalctl info 3f2a9c01d4e5b677.0");
    InfoOptions info_options;
    info->add_option("id", info_options.id, "Invocation or task id (prefix)")->required();
    info->add_flag("--json", info_options.json, "Print JSON");

    CLI::App* results = Command(app, "results", "Show the scores of an invocation or a task",
                                "evalctl results 3f2a --csv > scores.csv");
    ResultsOptions results_options;
    bool results_json = false;
    bool results_csv = false;
    results->add_option("id", results_options.id, "Invocation or task id (prefix)")->required();
    CLI::Option* json_flag = results->add_flag("--json", results_json, "Print JSON");
    results->add_flag("--csv", results_csv, "Print CSV")->excludes(json_flag);

    // --- cluster ls
    CLI::App* cluster =
        Command(app, "cluster", "Clusters served by an agent", "evalctl cluster ls");
    cluster->require_subcommand(1);
    CLI::App* cluster_ls = Command(*cluster, "ls", "List clusters with an agent, and their health",
                                   "evalctl cluster ls --json");
    ClusterLsOptions cluster_options;
    cluster_ls->add_flag("--json", cluster_options.json, "Print JSON");

    // --- cluster install / uninstall / tunnel
    CLI::App* cluster_install = Command(
        *cluster, "install",
        "Install or upgrade evalctl-agent on a headnode over SSH, start it, and wait until it "
        "registers",
        "evalctl cluster install eos-login1 --user me --cluster eos");
    SshFlags install_ssh;
    ClusterInstallOptions install_options;
    std::vector<std::string> agent_env;
    std::string supervisor = "auto";
    std::string install_wait = "60s";
    std::string token_file;
    AddSshFlags(cluster_install, install_ssh);
    cluster_install->add_option("--agent-binary", install_options.agent.agent_binary,
                                "evalctl-agent to install (default: the one next to evalctl, or "
                                "in the build tree)");
    cluster_install->add_option("--cluster", install_options.agent.cluster,
                                "The cluster's name (default: the headnode's short host name)");
    cluster_install->add_option("--alias", install_options.agent.aliases,
                                "Another execution.hostname for this cluster (repeatable)")
        ->allow_extra_args(false);
    cluster_install->add_option("--agent-controller", install_options.agent.controller,
                                "host:port the agent dials (default: --controller)");
    cluster_install->add_option("--agent-env", agent_env,
                                "NAME=VALUE in the agent's environment, e.g. SLURM_CONF=... "
                                "(repeatable; kept in a 0600 file)")
        ->allow_extra_args(false);
    cluster_install->add_option("--agent-arg", install_options.agent.extra_args,
                                "Extra agent argument, as --agent-arg=--max-interval=10 "
                                "(repeatable)")
        ->allow_extra_args(false);
    cluster_install->add_option("--supervisor", supervisor,
                                "What keeps the agent running: systemd (--user), process "
                                "(setsid, pid file, restart loop), or auto")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "systemd", "process"}));
    cluster_install->add_flag("--tunnel", install_options.tunnel,
                              "The headnode cannot reach the controller: carry the agent's "
                              "stream over a reverse SSH tunnel, kept open by this command");
    cluster_install->add_option("--remote-port", install_options.remote_port,
                                "With --tunnel: the port on the headnode's loopback (default: the "
                                "previous one, else one sshd picks)");
    cluster_install->add_option("--wait", install_wait,
                                "How long to wait for the agent to register")
        ->capture_default_str();
    cluster_install->add_option("--enrollment-token-file", token_file,
                                "With TLS: file holding a one-time enrollment token for the "
                                "agent (default: an admin's token creates one)");

    CLI::App* cluster_uninstall =
        Command(*cluster, "uninstall", "Stop evalctl-agent on a headnode and remove it",
                "evalctl cluster uninstall eos-login1 --user me");
    SshFlags uninstall_ssh;
    ClusterUninstallOptions uninstall_options;
    AddSshFlags(cluster_uninstall, uninstall_ssh);
    cluster_uninstall->add_flag("--keep-state", uninstall_options.keep_state,
                                "Keep the agent's state directory (journal, credential)");

    CLI::App* cluster_tunnel = Command(
        *cluster, "tunnel",
        "Keep open the reverse SSH tunnel of an agent installed with --tunnel (until "
        "interrupted; reconnects by itself)",
        "evalctl cluster tunnel eos-login1 --user me");
    SshFlags tunnel_ssh;
    ClusterTunnelOptions tunnel_options;
    AddSshFlags(cluster_tunnel, tunnel_ssh);
    cluster_tunnel->add_option("--remote-port", tunnel_options.remote_port,
                               "The port on the headnode's loopback (default: the one the "
                               "installation recorded)");

    // --- cluster enroll
    CLI::App* cluster_enroll = Command(
        *cluster, "enroll",
        "Create a one-time token with which a new agent of CLUSTER gets its own credential "
        "(admins)",
        "evalctl cluster enroll eos --unix-user alice --output eos.token");
    ClusterEnrollOptions enroll_options;
    std::string enroll_ttl;
    cluster_enroll->add_option("cluster", enroll_options.cluster, "The cluster's name")
        ->required();
    cluster_enroll
        ->add_option("--unix-user", enroll_options.unix_user,
                     "The Unix user the agent runs as: it runs that user's jobs, and may claim no "
                     "other")
        ->required();
    cluster_enroll->add_option("--alias", enroll_options.aliases,
                               "Another host name of the cluster (repeatable)");
    cluster_enroll->add_option("--ttl", enroll_ttl, "How long it may be used (default: 1h)");
    cluster_enroll->add_option("--output,-O", enroll_options.output,
                               "Write it to this new 0600 file instead of standard output");

    // --- token create / ls / revoke
    CLI::App* token =
        Command(app, "token", "Bearer tokens of users (and, for admins, of agents)",
                "evalctl token create --user alice --ttl 90d");
    token->require_subcommand(1);
    CLI::App* token_create =
        Command(*token, "create",
                "Create a bearer token, shown once: for yourself, or (admins) for any user",
                "evalctl token create --user alice --ttl 90d --output alice.token");
    TokenCreateOptions create_options;
    std::string create_ttl = "never";
    token_create->add_option("--user", create_options.user, "Whose token (default: yours)");
    token_create->add_flag("--admin", create_options.admin,
                           "The token may see and change everything (admins only)");
    token_create->add_option("--description,-d", create_options.description,
                             "What the token is for");
    token_create->add_option("--ttl", create_ttl, "Lifetime: 12h, 90d, 2w, or never")
        ->capture_default_str();
    token_create->add_option("--output,-O", create_options.output,
                             "Write it to this new 0600 file instead of standard output");
    CLI::App* token_ls = Command(*token, "ls", "List tokens (never their secrets)",
                                 "evalctl token ls --all");
    TokenLsOptions token_ls_options;
    CLI::Option* token_user_flag =
        token_ls->add_option("--user", token_ls_options.user, "Another user's tokens (admins)");
    token_ls->add_flag("--all", token_ls_options.all,
                       "Everybody's tokens, agents' included (admins)")
        ->excludes(token_user_flag);
    token_ls->add_flag("--json", token_ls_options.json, "Print JSON");
    CLI::App* token_revoke = Command(*token, "revoke", "Revoke tokens; they stop working at once",
                                     "evalctl token revoke 4be0c1d2e3f40516");
    std::vector<std::string> revoke_ids;
    token_revoke->add_option("ids", revoke_ids, "Token ids (as `evalctl token ls` shows them)")
        ->required();
    GrantCommands grants;
    grants.Register(app);

    try {
      std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);
      app.parse(reversed);
    } catch (const CLI::ParseError& e) {
      if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
        return app.exit(e, io.out, io.err);
      }
      return Report({absl::InvalidArgumentError(
                         absl::StrCat(e.what(), " (see `", CommandPath(app), " --help`)")),
                     kExitUsage},
                    io);
    }

    // Commands that need no controller.
    if (ls_tasks->parsed()) {
      absl::Status s = LsTasksCommand(config::Catalog::Builtin(), tasks_options, io);
      return s.ok() ? kExitOk : Report({s, CodeFor(s)}, io);
    }
    if (run->parsed() && dry_run) {
      absl::StatusOr<config::LoadRequest> request = client::LoadConfigRequest(config_file);
      if (!request.ok()) return Report({request.status(), kExitUsage}, io);
      dry.request = *std::move(request);
      absl::Status s = DryRun(dry, io.out);
      return s.ok() ? kExitOk : Report({s, CodeFor(s)}, io);
    }

    if (cluster_enroll->parsed() && !enroll_ttl.empty()) {
      absl::StatusOr<absl::Duration> ttl = ParseTtl(enroll_ttl);
      if (!ttl.ok()) return Report({ttl.status(), kExitUsage}, io);
      enroll_options.ttl = *ttl;
    }
    if (token_create->parsed()) {
      absl::StatusOr<absl::Duration> ttl = ParseTtl(create_ttl);
      if (!ttl.ok()) return Report({ttl.status(), kExitUsage}, io);
      create_options.ttl = *ttl;
    }
    std::optional<absl::Time> since_time;
    if (ls_runs->parsed() && !since.empty()) {
      absl::StatusOr<absl::Time> t = ParseSince(since, absl::Now(), io.tz);
      if (!t.ok()) return Report({t.status(), kExitUsage}, io);
      since_time = *t;
    }
    std::optional<v1::ConfigSource> source;
    if (run->parsed()) {
      absl::StatusOr<v1::ConfigSource> s = client::BuildConfigSource(config_file);
      if (!s.ok()) return Report({s.status(), kExitUsage}, io);
      source = *std::move(s);
    }

    if (cluster_uninstall->parsed()) {
      uninstall_options.ssh = uninstall_ssh.Options();
      uninstall_options.remote_dir = uninstall_ssh.remote_dir;
      absl::Status s = ClusterUninstallCommand(uninstall_options, io);
      return s.ok() ? kExitOk : Report({s, CodeFor(s)}, io);
    }

    absl::StatusOr<std::unique_ptr<client::Client>> connected = Connect(flags);
    if (!connected.ok()) return Report({connected.status(), kExitUsage}, io);
    client::Client& c = **connected;

    absl::Status s;
    if (grants.parsed()) {
      s = grants.Run(c, io);
    } else if (run->parsed()) {
      absl::StatusOr<RunOutcome> outcome =
          RunCommand(c, *source, {.request_id = request_id, .wait = wait}, io);
      if (!outcome.ok()) return Report({outcome.status(), CodeFor(outcome.status())}, io);
      return outcome->all_succeeded ? kExitOk : kExitTasksFailed;
    } else if (status->parsed()) {
      s = StatusCommand(c, status_options, io);
    } else if (ls_runs->parsed()) {
      runs_options.since = since_time;
      s = LsRunsCommand(c, runs_options, io);
    } else if (watch->parsed()) {
      s = WatchCommand(c, watch_options, io);
    } else if (logs->parsed()) {
      logs_options.kind = which == "server" ? v1::LOG_KIND_SERVER
                          : which == "eval" ? v1::LOG_KIND_EVAL
                                            : v1::LOG_KIND_SLURM;
      s = LogsCommand(c, logs_options, io);
    } else if (kill->parsed()) {
      s = KillCommand(c, kill_id, io);
    } else if (resume->parsed()) {
      s = ResumeCommand(c, resume_id, io);
    } else if (info->parsed()) {
      s = InfoCommand(c, info_options, io);
    } else if (results->parsed()) {
      results_options.format = results_json  ? ResultsFormat::kJson
                               : results_csv ? ResultsFormat::kCsv
                                             : ResultsFormat::kTable;
      s = ResultsCommand(c, results_options, io);
    } else if (cluster_ls->parsed()) {
      s = ClusterLsCommand(c, cluster_options, io);
    } else if (cluster_enroll->parsed()) {
      s = ClusterEnrollCommand(c, enroll_options, io);
    } else if (token_create->parsed()) {
      s = TokenCreateCommand(c, create_options, io);
    } else if (token_ls->parsed()) {
      s = TokenLsCommand(c, token_ls_options, io);
    } else if (token_revoke->parsed()) {
      s = TokenRevokeCommand(c, revoke_ids, io);
    } else if (cluster_install->parsed()) {
      install_options.ssh = install_ssh.Options();
      install_options.agent.remote_dir = install_ssh.remote_dir;
      install_options.controller_target = c.options().target;
      install_options.agent.supervisor = supervisor == "systemd"   ? install::Supervisor::kSystemd
                                         : supervisor == "process" ? install::Supervisor::kProcess
                                                                   : install::Supervisor::kAuto;
      for (const std::string& kv : agent_env) {
        std::pair<std::string, std::string> nv = absl::StrSplit(kv, absl::MaxSplits('=', 1));
        if (!absl::StrContains(kv, '=')) {
          return Report({absl::InvalidArgumentError(
                             absl::StrCat("--agent-env wants NAME=VALUE, not \"", kv, "\"")),
                         kExitUsage},
                        io);
        }
        install_options.agent.env.push_back(std::move(nv));
      }
      absl::StatusOr<absl::Duration> wait_for = ParseTimeout(install_wait);
      if (!wait_for.ok()) return Report({wait_for.status(), kExitUsage}, io);
      install_options.wait = *wait_for;
      if (install_options.agent.agent_binary.empty()) {
        absl::StatusOr<std::string> binary = DefaultAgentBinary();
        if (!binary.ok()) return Report({binary.status(), kExitUsage}, io);
        install_options.agent.agent_binary = *binary;
      }
      if (!flags.ca_cert.empty()) {
        // A controller with TLS admits agents by enrollment token.
        install_options.agent.tls_ca_file = flags.ca_cert;
        install_options.agent.enroll = [&c](const std::string& name, const std::string& user,
                                            const std::vector<std::string>& aliases) {
          return EnrollmentToken(c, name, user, aliases);
        };
      }
      if (!token_file.empty()) {
        absl::StatusOr<std::string> token = ReadSecretFile(token_file, "enrollment token file");
        if (!token.ok()) return Report({token.status(), kExitUsage}, io);
        install_options.agent.enrollment_token = *std::move(token);
      }
      StopOnSignal on_signal;
      s = ClusterInstallCommand(c, install_options, io, g_stop);
    } else if (cluster_tunnel->parsed()) {
      tunnel_options.ssh = tunnel_ssh.Options();
      tunnel_options.remote_dir = tunnel_ssh.remote_dir;
      tunnel_options.controller_target = c.options().target;
      StopOnSignal on_signal;
      s = ClusterTunnelCommand(tunnel_options, io, g_stop);
    }
    return s.ok() ? kExitOk : Report({s, CodeFor(s)}, io);
  } catch (const std::exception& e) {
    // Nothing should throw this far; if something does, still one line and no stack trace.
    return Report({absl::InternalError(absl::StrCat("internal error: ", e.what())), kExitError},
                  io);
  }
}

int Main(int argc, char** argv) {
  // gRPC's own log lines ("Handshake failed ...") would break the one-line error rule; the
  // returned status carries the cause. GRPC_VERBOSITY=debug brings them back for debugging.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  std::vector<std::string> args(argv, argv + argc);
  Io io{std::cout, std::cerr};
  io.tty = ::isatty(STDOUT_FILENO) == 1;
  if (io.tty) {
    winsize ws{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) io.width = ws.ws_col;
  }
  return RunApp(args, io);
}

}  // namespace evalctl::cli

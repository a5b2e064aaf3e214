#include "clients/cli/app.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <iostream>
#include <memory>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "clients/cli/dry_run.h"
#include "clients/cli/settings.h"
#include "clients/cpp/client.h"
#include "clients/cpp/config_source.h"
#include "common/status_macros.h"
#include "grpc/support/log.h"

namespace evalctl::cli {
namespace {

constexpr char kUnreachableHint[] = "start it or pass --controller / set EVALCTL_CONTROLLER";

struct GlobalFlags {
  std::string controller;
  std::string token;
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
  if (options.token.empty()) {
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

CLI::App* Command(CLI::App& parent, const std::string& name, const std::string& description,
                  const std::string& example) {
  CLI::App* sub = parent.add_subcommand(name, description);
  sub->footer(absl::StrCat("Example:\n  ", example));
  return sub;
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
                   "Bearer token (default: $EVALCTL_TOKEN, which is safer: arguments are visible "
                   "to other users)");
    app.add_option("--ca-cert", flags.ca_cert,
                   "PEM file of the CA that signs the controller's "
                   "certificate (enables TLS)");
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

    absl::StatusOr<std::unique_ptr<client::Client>> connected = Connect(flags);
    if (!connected.ok()) return Report({connected.status(), kExitUsage}, io);
    client::Client& c = **connected;

    absl::Status s;
    if (run->parsed()) {
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

#include "controller/config/render.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "controller/config/job_shell.h"

namespace evalctl::config {
namespace {

// ---------------------------------------------------------------------------------------------
// Validation. Every message starts with the key path of the offending value, as users write it.

absl::Status Invalid(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
}

std::string TaskKey(const TaskSpec& task, absl::string_view field) {
  return absl::StrCat("evaluation.tasks.", task.index, ".", field);
}

bool IsShellIdentifier(absl::string_view s) {
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

bool HasControlChar(absl::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// Any string that reaches the script: bash strings cannot hold NUL.
absl::Status CheckText(absl::string_view key, absl::string_view value) {
  if (absl::StrContains(value, '\0')) return Invalid(key, "must not contain a NUL character");
  return absl::OkStatus();
}

// One-line values (names, images, URLs).
absl::Status CheckLine(absl::string_view key, absl::string_view value) {
  if (HasControlChar(value)) {
    return Invalid(key, "must not contain newlines, tabs or other control characters");
  }
  return absl::OkStatus();
}

// Absolute, no `..` component (the agent creates directories there), one line.
absl::Status CheckAbsolutePath(absl::string_view key, absl::string_view path) {
  if (path.empty()) return Invalid(key, "must not be empty");
  RETURN_IF_ERROR(CheckLine(key, path));
  if (path[0] != '/') {
    return Invalid(key, absl::StrCat("must be an absolute path, not `", path, "`"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return Invalid(key, absl::StrCat("must not contain `..`: `", path, "`"));
  }
  return absl::OkStatus();
}

// A path inside pyxis's --container-mounts list, where `,` separates mounts and `:` fields.
absl::Status CheckMountPath(absl::string_view key, absl::string_view path) {
  RETURN_IF_ERROR(CheckAbsolutePath(key, path));
  if (absl::StrContains(path, ',') || absl::StrContains(path, ':')) {
    return Invalid(key, absl::StrCat("a mounted path cannot contain `,` or `:`: `", path, "`"));
  }
  return absl::OkStatus();
}

// The container side of a mount: `/path` or `/path:flags` (pyxis flags such as `ro`).
absl::Status CheckMountTarget(absl::string_view key, absl::string_view target) {
  const size_t colon = target.find(':');
  RETURN_IF_ERROR(CheckMountPath(key, target.substr(0, colon)));
  if (colon == absl::string_view::npos) return absl::OkStatus();
  absl::string_view flags = target.substr(colon + 1);
  if (flags.empty()) return Invalid(key, "empty mount flags after `:`");
  for (char c : flags) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '_' &&
        c != '=') {
      return Invalid(key, absl::StrCat("invalid mount flags in `", absl::CHexEscape(target), "`"));
    }
  }
  return absl::OkStatus();
}

// An URL path (endpoint or health path): starts with `/`, no whitespace or control characters.
absl::Status CheckUrlPath(absl::string_view key, absl::string_view path) {
  if (path.empty() || path[0] != '/') {
    return Invalid(key, absl::StrCat("must start with `/`: `", path, "`"));
  }
  RETURN_IF_ERROR(CheckLine(key, path));
  if (absl::StrContains(path, ' ')) return Invalid(key, "must not contain spaces");
  return absl::OkStatus();
}

absl::Status CheckPort(absl::string_view key, int port) {
  if (port < 1 || port > 65535) return Invalid(key, absl::StrCat("not a TCP port: ", port));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// #SBATCH lines. sbatch, not bash, reads them: it splits the rest of the line at unquoted
// whitespace, takes `"` and `'` as quotes and `\` as an escape (also inside quotes), stops at an
// unquoted `#`, and reads any line holding `hetjob`/`packjob` as a heterogeneous-job separator.
// A value that needs it is written in double quotes with `\` and `"` escaped.

bool IsSbatchPlain(absl::string_view value) {
  if (value.empty()) return false;
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        !absl::StrContains("_./:=@+,%-", c)) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::string> SbatchValue(absl::string_view key, absl::string_view value) {
  RETURN_IF_ERROR(CheckText(key, value));
  if (HasControlChar(value)) {
    return Invalid(key,
                   "must not contain newlines, tabs or other control characters (it goes on an "
                   "#SBATCH line)");
  }
  const std::string lower = absl::AsciiStrToLower(value);
  if (absl::StrContains(lower, "hetjob") || absl::StrContains(lower, "packjob")) {
    return Invalid(key,
                   "must not contain `hetjob` or `packjob`: sbatch reads an #SBATCH line holding "
                   "either as a heterogeneous-job separator");
  }
  if (IsSbatchPlain(value)) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

// `%` starts a replacement symbol in srun/sbatch --output file names; `%%` is a literal `%`.
std::string EscapePercent(absl::string_view path) {
  return absl::StrReplaceAll(path, {{"%", "%%"}});
}

std::string FormatSlurmTime(int64_t seconds) {
  const int64_t days = seconds / 86400;
  const int64_t hours = seconds % 86400 / 3600;
  const int64_t minutes = seconds % 3600 / 60;
  const int64_t secs = seconds % 60;
  if (days > 0) return absl::StrFormat("%d-%02d:%02d:%02d", days, hours, minutes, secs);
  return absl::StrFormat("%02d:%02d:%02d", hours, minutes, secs);
}

// sbatch_extra_flags may not take over what evalctl owns. getopt_long also accepts unambiguous
// abbreviations (`--out` for `--output`), so prefixes of these names are refused too.
constexpr const char* kOwnedSbatchOptions[] = {
    "output",   "error",  "open-mode", "requeue",     "no-requeue", "signal",
    "chdir",    "export", "job-name",  "dependency",  "array",      "wrap",
    "parsable", "hold",   "test-only", "export-file", "input",      "wait"};
// Options with their own execution key.
const std::map<absl::string_view, absl::string_view>& ConfiguredSbatchOptions() {
  static const auto* options = new std::map<absl::string_view, absl::string_view>{
      {"time", "execution.walltime"},
      {"account", "execution.account"},
      {"partition", "execution.partition"},
      {"nodes", "execution.num_nodes"},
      {"ntasks-per-node", "execution.ntasks_per_node"},
      {"gres", "execution.gres"},
      {"gpus-per-node", "execution.gpus_per_node"},
      {"comment", "execution.sbatch_comment"},
  };
  return *options;
}

absl::Status CheckExtraFlagName(absl::string_view key, absl::string_view name) {
  if (name.empty() || !absl::ascii_isalnum(static_cast<unsigned char>(name[0]))) {
    return Invalid(key, "not an sbatch option name");
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      return Invalid(key, "not an sbatch option name");
    }
  }
  if (auto it = ConfiguredSbatchOptions().find(name); it != ConfiguredSbatchOptions().end()) {
    return Invalid(key, absl::StrCat("set ", it->second, " instead"));
  }
  for (absl::string_view owned : kOwnedSbatchOptions) {
    if (absl::StartsWith(owned, name)) {
      return Invalid(key, absl::StrCat("--", owned, " is set by evalctl and cannot be overridden"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The environment of one step: `export` lines for its subshell and the names, for pyxis's
// --container-env.

class StepEnv {
 public:
  // `value_expr` is script text: a quoted literal or a "${VAR}" expansion.
  void Add(absl::string_view name, std::string value_expr) {
    lines_.push_back(absl::StrCat("export ", name, "=", value_expr));
    for (const std::string& n : names_) {
      if (n == name) return;
    }
    names_.emplace_back(name);
  }
  void AddLiteral(absl::string_view name, absl::string_view value) { Add(name, ShellQuote(value)); }
  const std::vector<std::string>& lines() const { return lines_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> lines_;
  std::vector<std::string> names_;
};

// User environment variables of a step. Literals are written into the script; secrets go to the
// sbatch environment as EVALCTL_SECRET_<group>_<NAME> and are exported under NAME in the step;
// runtime variables are read from the batch shell's environment on the node.
absl::Status AddUserEnv(const std::vector<EnvVar>& vars, absl::string_view group,
                        absl::string_view key_prefix, StepEnv* step, std::vector<JobEnv>* job_env,
                        std::vector<std::string>* secret_vars) {
  std::map<std::string, size_t> last;  // merged lists: the last definition of a name wins
  for (size_t i = 0; i < vars.size(); ++i) last[vars[i].name] = i;
  for (size_t i = 0; i < vars.size(); ++i) {
    const EnvVar& var = vars[i];
    if (last[var.name] != i) continue;
    const std::string key = absl::StrCat(key_prefix, ".", var.name);
    RETURN_IF_ERROR(CheckLine(key_prefix, var.name));
    if (!IsShellIdentifier(var.name)) {
      return Invalid(key, "not a valid environment variable name (letters, digits, `_`)");
    }
    if (absl::StartsWith(var.name, "EVALCTL_")) {
      return Invalid(key, "names starting with EVALCTL_ are reserved for evalctl");
    }
    switch (var.source) {
      case EnvVar::Source::kLiteral:
        RETURN_IF_ERROR(CheckText(key, var.value));
        step->AddLiteral(var.name, var.value);
        break;
      case EnvVar::Source::kHost: {
        // Never put the value in a message.
        if (absl::StrContains(var.value, '\0')) {
          return Invalid(key, "the secret value contains a NUL character");
        }
        std::string secret_var = absl::StrCat("EVALCTL_SECRET_", group, "_", var.name);
        job_env->push_back({secret_var, var.value, /*secret=*/true});
        step->Add(var.name, absl::StrCat("\"${", secret_var, "}\""));
        secret_vars->push_back(std::move(secret_var));
        break;
      }
      case EnvVar::Source::kRuntime:
        if (!IsShellIdentifier(var.value)) {
          return Invalid(key, absl::StrCat("runtime: needs a variable name, not `",
                                           absl::CHexEscape(var.value), "`"));
        }
        if (absl::StartsWith(var.value, "EVALCTL_SECRET_")) {
          return Invalid(key, "runtime: cannot read evalctl's secret transport variables");
        }
        step->Add(var.name, absl::StrCat("\"${", var.value, "?evalctl: runtime variable ",
                                         var.value, " (for ", var.name, ") is not set}\""));
        break;
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// The plan of one job, validated, before any text is written.

struct TaskPlan {
  const TaskSpec* task = nullptr;
  std::string run_dir;
  // Script text that expands to the endpoint URL.
  std::string endpoint_url_expr;
  std::string model_id;
  StepEnv env;
  std::string mounts;  // pyxis
};

struct JobPlan {
  const InvocationSpec* spec = nullptr;
  std::string invocation_id;
  std::string run_dir;
  bool shared = false;
  bool deploy = false;
  // deployment.port; 0: chosen when the job starts.
  int server_port = 0;
  bool pyxis = false;
  int nodes_per_instance = 1;
  int tasks_per_instance = 1;
  int64_t readiness_timeout = 0;
  std::string health_path;
  StepEnv deploy_env;
  std::string deploy_mounts;  // pyxis
  std::vector<JobEnv> env;
  std::vector<std::string> secret_vars;
  std::vector<TaskPlan> tasks;
};

absl::Status CheckMounts(const MountList& mounts, absl::string_view key) {
  for (const auto& [host, container] : mounts) {
    RETURN_IF_ERROR(CheckMountPath(key, host));
    RETURN_IF_ERROR(CheckMountTarget(key, container));
  }
  return absl::OkStatus();
}

void AppendMounts(const MountList& mounts, std::vector<std::string>* out) {
  for (const auto& [host, container] : mounts) out->push_back(absl::StrCat(host, ":", container));
}

absl::Status PlanExecution(const InvocationSpec& spec, absl::string_view invocation_id,
                           absl::string_view run_dir, JobPlan* plan) {
  const Execution& ex = spec.execution;
  if (!IsValidInvocationId(invocation_id)) {
    return Invalid("invocation_id",
                   absl::StrCat("not an invocation id: `", absl::CHexEscape(invocation_id), "`"));
  }
  RETURN_IF_ERROR(CheckAbsolutePath("execution.output_dir", ex.output_dir));
  RETURN_IF_ERROR(CheckAbsolutePath("execution.output_dir", run_dir));
  if (absl::StrContains(run_dir, '\\')) {
    // srun/sbatch turn off %-substitution in --output names that hold a backslash.
    return Invalid("execution.output_dir", "must not contain a backslash");
  }
  if (ex.account.empty()) return Invalid("execution.account", "required");
  if (ex.container_runtime != "pyxis" && ex.container_runtime != "none") {
    return Invalid("execution.container_runtime",
                   absl::StrCat("must be `pyxis` or `none`, not `", ex.container_runtime, "`"));
  }
  if (ex.walltime_seconds <= 0) return Invalid("execution.walltime", "must be positive");
  if (ex.num_nodes < 1) return Invalid("execution.num_nodes", "must be at least 1");
  if (ex.num_instances < 1) return Invalid("execution.num_instances", "must be at least 1");
  if (ex.ntasks_per_node < 1) return Invalid("execution.ntasks_per_node", "must be at least 1");
  if (ex.gpus_per_node && *ex.gpus_per_node < 0) {
    return Invalid("execution.gpus_per_node", "must not be negative");
  }
  if (ex.pre_timeout_signal_seconds < 0 || ex.pre_timeout_signal_seconds > 65535) {
    return Invalid("execution.pre_timeout_signal_seconds", "must be between 0 and 65535");
  }
  if (ex.endpoint_readiness_timeout_seconds && *ex.endpoint_readiness_timeout_seconds <= 0) {
    return Invalid("execution.endpoint_readiness_timeout", "must be positive");
  }
  RETURN_IF_ERROR(CheckMounts(ex.deployment_mounts, "execution.mounts.deployment"));
  RETURN_IF_ERROR(CheckMounts(ex.evaluation_mounts, "execution.mounts.evaluation"));
  plan->spec = &spec;
  plan->invocation_id = std::string(invocation_id);
  plan->pyxis = ex.container_runtime == "pyxis";
  return absl::OkStatus();
}

absl::Status PlanDeployment(JobPlan* plan) {
  const InvocationSpec& spec = *plan->spec;
  const Execution& ex = spec.execution;
  const Deployment& dep = spec.deployment;
  static constexpr absl::string_view kTypes[] = {"vllm",   "sglang",  "nim",
                                                 "trtllm", "generic", "none"};
  bool known = false;
  for (absl::string_view t : kTypes) known = known || dep.type == t;
  if (!known) {
    return Invalid("deployment.type", absl::StrCat("unknown deployment type `", dep.type, "`"));
  }
  plan->deploy = dep.type != "none";
  plan->server_port = dep.port;
  if (!plan->deploy) {
    RETURN_IF_ERROR(CheckLine("target.api_endpoint.url", spec.target.url));
    if (spec.target.url.empty()) return Invalid("target.api_endpoint.url", "required");
    RETURN_IF_ERROR(CheckText("target.api_endpoint.model_id", spec.target.model_id));
    return absl::OkStatus();
  }
  if (ex.num_nodes % ex.num_instances != 0) {
    return Invalid("execution.num_instances",
                   absl::StrCat("must divide execution.num_nodes (", ex.num_nodes, ")"));
  }
  if (ex.deployment_n_tasks < 1 || ex.deployment_n_tasks % ex.num_instances != 0) {
    return Invalid("execution.deployment.n_tasks",
                   absl::StrCat("must be a positive multiple of execution.num_instances (",
                                ex.num_instances, ")"));
  }
  if (ex.num_instances > 1 && !plan->pyxis) {
    // The load balancer over the instances (haproxy) runs as a container.
    return Invalid("execution.num_instances",
                   "more than one instance needs the haproxy load balancer, which needs "
                   "execution.container_runtime: pyxis");
  }
  plan->nodes_per_instance = ex.num_nodes / ex.num_instances;
  plan->tasks_per_instance = ex.deployment_n_tasks / ex.num_instances;
  if (dep.command.empty()) return Invalid("deployment.command", "required");
  RETURN_IF_ERROR(CheckText("deployment.command", dep.command));
  RETURN_IF_ERROR(CheckText("deployment.pre_cmd", dep.pre_cmd));
  // Port 0: chosen when the job starts (EVALCTL_SERVER_PORT), for nodes that several jobs share.
  if (dep.port != 0) {
    RETURN_IF_ERROR(CheckPort("deployment.port", dep.port));
  } else if (ex.num_instances > 1) {
    return Invalid("deployment.port", "0 (chosen at job start) works with one instance only");
  }
  RETURN_IF_ERROR(CheckLine("execution.mpi", ex.mpi));
  if (plan->pyxis) {
    if (dep.image.empty()) {
      return Invalid("deployment.image", "required with container runtime pyxis");
    }
    RETURN_IF_ERROR(CheckLine("deployment.image", dep.image));
  }
  if (dep.checkpoint_path) {
    RETURN_IF_ERROR(CheckMountPath("deployment.checkpoint_path", *dep.checkpoint_path));
  }
  if (dep.cache_path) RETURN_IF_ERROR(CheckMountPath("deployment.cache_path", *dep.cache_path));
  for (const auto& [name, path] : dep.endpoints) {
    RETURN_IF_ERROR(CheckUrlPath(absl::StrCat("deployment.endpoints.", name), path));
  }
  auto health = dep.endpoints.find("health");
  plan->health_path = health != dep.endpoints.end() ? health->second : "/health";
  plan->readiness_timeout = ex.endpoint_readiness_timeout_seconds.value_or(ex.walltime_seconds);
  if (ex.num_instances > 1) {
    RETURN_IF_ERROR(CheckPort("execution.proxy.config.haproxy_port", ex.proxy.haproxy_port));
    if (ex.proxy.type != "haproxy") {
      return Invalid("execution.proxy.type", "only `haproxy` is supported");
    }
    RETURN_IF_ERROR(CheckLine("execution.proxy.image", ex.proxy.image));
    if (ex.proxy.image.empty()) return Invalid("execution.proxy.image", "required");
    const std::string& path = ex.proxy.health_check_path;
    RETURN_IF_ERROR(CheckUrlPath("execution.proxy.config.health_check_path", path));
    for (char c : path) {  // it goes into haproxy.cfg unquoted
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
          !absl::StrContains("/._~-?=&+%", c)) {
        return Invalid("execution.proxy.config.health_check_path",
                       absl::StrCat("unsupported character `", std::string(1, c), "`"));
      }
    }
    if (ex.proxy.health_check_status < 100 || ex.proxy.health_check_status > 599) {
      return Invalid("execution.proxy.config.health_check_status", "not an HTTP status");
    }
  }

  // Environment of the deployment step. The instance variables are set per instance at run time.
  StepEnv& env = plan->deploy_env;
  RETURN_IF_ERROR(
      AddUserEnv(dep.env_vars, "DEP", "deployment.env_vars", &env, &plan->env, &plan->secret_vars));
  env.Add("EVALCTL_INSTANCE", "\"${evalctl_g}\"");
  env.Add("EVALCTL_MASTER_NODE", "\"${EVALCTL_INSTANCE_HEAD}\"");
  env.Add("NODES_PER_INSTANCE", absl::StrCat(plan->nodes_per_instance));
  env.Add("EVALCTL_SERVER_PORT", "\"${EVALCTL_SERVER_PORT}\"");
  env.Add("MASTER_IP", "\"${EVALCTL_INSTANCE_IP}\"");
  env.Add("ALL_NODE_IPS", "\"${EVALCTL_INSTANCE_IPS}\"");
  std::vector<std::string> mounts;
  if (plan->pyxis) {
    mounts.push_back(absl::StrCat(plan->run_dir, "/artifacts:/results"));
    env.AddLiteral("EVALCTL_RESULTS_DIR", "/results");
    if (dep.checkpoint_path) {
      mounts.push_back(absl::StrCat(*dep.checkpoint_path, ":/checkpoint:ro"));
      env.AddLiteral("EVALCTL_CHECKPOINT_DIR", "/checkpoint");
    }
    if (dep.cache_path) {
      mounts.push_back(absl::StrCat(*dep.cache_path, ":/cache"));
      env.AddLiteral("EVALCTL_CACHE_DIR", "/cache");
    }
    AppendMounts(ex.deployment_mounts, &mounts);
  } else {
    env.AddLiteral("EVALCTL_RESULTS_DIR", absl::StrCat(plan->run_dir, "/artifacts"));
    if (dep.checkpoint_path) env.AddLiteral("EVALCTL_CHECKPOINT_DIR", *dep.checkpoint_path);
    if (dep.cache_path) env.AddLiteral("EVALCTL_CACHE_DIR", *dep.cache_path);
  }
  plan->deploy_mounts = absl::StrJoin(mounts, ",");
  return absl::OkStatus();
}

constexpr absl::string_view DefaultEndpointPath(absl::string_view type) {
  if (type == "chat") return "/v1/chat/completions";
  if (type == "completions") return "/v1/completions";
  return "";
}

absl::Status PlanTask(const TaskSpec& task, absl::string_view secret_group,
                      absl::string_view run_dir, JobPlan* plan) {
  const InvocationSpec& spec = *plan->spec;
  const Execution& ex = spec.execution;
  TaskPlan tp;
  tp.task = &task;
  tp.run_dir = std::string(run_dir);

  RETURN_IF_ERROR(CheckText(TaskKey(task, "name"), task.name));
  if (task.command.empty()) return Invalid(TaskKey(task, "command"), "required");
  RETURN_IF_ERROR(CheckText(TaskKey(task, "command"), task.command));
  RETURN_IF_ERROR(CheckText(TaskKey(task, "pre_cmd"), task.pre_cmd));
  RETURN_IF_ERROR(CheckText(TaskKey(task, "post_cmd"), task.post_cmd));
  RETURN_IF_ERROR(
      CheckText(TaskKey(task, "nemo_evaluator_config"), task.nemo_evaluator_config_yaml));
  RETURN_IF_ERROR(CheckLine(TaskKey(task, "endpoint_type"), task.endpoint_type));
  if (plan->pyxis) {
    if (task.container.empty()) {
      return Invalid(TaskKey(task, "container"), "required with container runtime pyxis");
    }
    RETURN_IF_ERROR(CheckLine(TaskKey(task, "container"), task.container));
  }
  if (task.dataset_dir) {
    RETURN_IF_ERROR(CheckMountPath(TaskKey(task, "dataset_dir"), *task.dataset_dir));
    if (plan->pyxis) {
      RETURN_IF_ERROR(CheckMountPath(TaskKey(task, "dataset_mount_path"), task.dataset_mount_path));
    }
  }

  // The endpoint.
  if (plan->deploy) {
    const Deployment& dep = spec.deployment;
    auto it = dep.endpoints.find(task.endpoint_type);
    std::string path = it != dep.endpoints.end()
                           ? it->second
                           : std::string(DefaultEndpointPath(task.endpoint_type));
    if (path.empty()) {
      std::vector<std::string> known;
      for (const auto& [name, p] : dep.endpoints) known.push_back(name);
      return Invalid(TaskKey(task, "endpoint_type"),
                     absl::StrCat("deployment.endpoints has no `", task.endpoint_type,
                                  "` (it has: ", absl::StrJoin(known, ", "), ")"));
    }
    tp.endpoint_url_expr =
        ex.num_instances > 1
            ? ShellQuote(absl::StrCat("http://127.0.0.1:", ex.proxy.haproxy_port, path))
            : absl::StrCat("\"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"", ShellQuote(path));
    tp.model_id = dep.served_model_name;
    RETURN_IF_ERROR(CheckText("deployment.served_model_name", tp.model_id));
  } else {
    tp.endpoint_url_expr = ShellQuote(spec.target.url);
    tp.model_id = spec.target.model_id;
  }

  // Environment of the evaluation step: the user's first, so that evalctl's own win.
  StepEnv& env = tp.env;
  RETURN_IF_ERROR(AddUserEnv(task.env_vars, secret_group, TaskKey(task, "env_vars"), &env,
                             &plan->env, &plan->secret_vars));
  env.AddLiteral("EVALCTL_TASK_ID", TaskId(plan->invocation_id, task.index));
  env.AddLiteral("EVALCTL_TASK_INDEX", absl::StrCat(task.index));
  env.AddLiteral("EVALCTL_TASK_NAME", task.name);
  env.AddLiteral("EVALCTL_RUN_DIR", tp.run_dir);
  env.Add("EVALCTL_ENDPOINT_URL", tp.endpoint_url_expr);
  env.AddLiteral("EVALCTL_ENDPOINT_TYPE", task.endpoint_type);
  env.AddLiteral("EVALCTL_MODEL_ID", tp.model_id);
  if (!spec.target.api_key_name.empty()) {
    if (!IsShellIdentifier(spec.target.api_key_name)) {
      return Invalid("target.api_endpoint.api_key_name", "not a valid environment variable name");
    }
    env.AddLiteral("EVALCTL_API_KEY_NAME", spec.target.api_key_name);
  }
  std::vector<std::string> mounts;
  if (plan->pyxis) {
    env.AddLiteral("EVALCTL_RESULTS_DIR", "/results");
    mounts.push_back(absl::StrCat(tp.run_dir, "/artifacts:/results"));
    AppendMounts(ex.evaluation_mounts, &mounts);
    if (task.dataset_dir) {
      mounts.push_back(absl::StrCat(*task.dataset_dir, ":", task.dataset_mount_path));
      env.AddLiteral("NEMO_EVALUATOR_DATASET_DIR", task.dataset_mount_path);
    }
  } else {
    env.AddLiteral("EVALCTL_RESULTS_DIR", absl::StrCat(tp.run_dir, "/artifacts"));
    if (task.dataset_dir) env.AddLiteral("NEMO_EVALUATOR_DATASET_DIR", *task.dataset_dir);
  }
  if (ex.evaluation_gpu_visible && *ex.evaluation_gpu_visible != "false") {
    RETURN_IF_ERROR(CheckText("execution.evaluation_gpu_visible", *ex.evaluation_gpu_visible));
    env.AddLiteral("NVIDIA_VISIBLE_DEVICES", *ex.evaluation_gpu_visible == "true"
                                                 ? std::string("all")
                                                 : *ex.evaluation_gpu_visible);
  }
  // The task's nemo_evaluator_config reaches the harness as a file (written by the job, see
  // AppendEvalFunction) that EVALCTL_RUN_CONFIG names, as the catalog's commands expect
  // (`--run_config "${EVALCTL_RUN_CONFIG}"`).
  if (!task.nemo_evaluator_config_yaml.empty()) {
    env.AddLiteral("EVALCTL_RUN_CONFIG",
                   absl::StrCat(plan->pyxis ? "/results" : absl::StrCat(tp.run_dir, "/artifacts"),
                                "/", layout::kRunConfigName));
  }
  tp.mounts = absl::StrJoin(mounts, ",");
  plan->tasks.push_back(std::move(tp));
  return absl::OkStatus();
}

absl::StatusOr<std::string> TaskRunDir(absl::string_view invocation_run_dir, const TaskSpec& task) {
  const std::string key = TaskKey(task, "name");
  const std::string& d = task.dir_name;
  if (d.empty() || d == "." || d == ".." || absl::StrContains(d, '/')) {
    return Invalid(key, absl::StrCat("cannot name a run directory: `", absl::CHexEscape(d),
                                     "` (one path component, no `/`)"));
  }
  RETURN_IF_ERROR(CheckLine(key, d));
  return absl::StrCat(absl::StripSuffix(invocation_run_dir, "/"), "/", d);
}

// pyxis mounts run directories (`<run_dir>/artifacts:/results`) in --container-mounts, where `,`
// and `:` are separators.
absl::Status CheckMountableRunDirs(const InvocationSpec& spec,
                                   const std::vector<const TaskSpec*>& tasks,
                                   absl::string_view invocation_run_dir) {
  if (spec.execution.container_runtime != "pyxis") return absl::OkStatus();
  auto bad = [](absl::string_view s) {
    return absl::StrContains(s, ',') || absl::StrContains(s, ':');
  };
  if (bad(invocation_run_dir)) {
    return Invalid("execution.output_dir",
                   "cannot contain `,` or `:` with container runtime pyxis (it is mounted)");
  }
  for (const TaskSpec* task : tasks) {
    if (bad(task->dir_name)) {
      return Invalid(TaskKey(*task, "name"),
                     "cannot contain `,` or `:` with container runtime pyxis (its run directory "
                     "is mounted)");
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Script text. The fixed shell code is in job/*.sh (job_shell.h).

// Printable for a `#` comment: no line breaks or other control characters.
std::string CommentSafe(absl::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

// Writes `first` and then each further argument on its own continuation line.
void AppendCommand(std::string* out, absl::string_view indent, absl::string_view first,
                   const std::vector<std::string>& args) {
  absl::StrAppend(out, indent, first);
  for (const std::string& arg : args) absl::StrAppend(out, " \\\n", indent, "  ", arg);
  absl::StrAppend(out, "\n");
}

void AppendStepEnv(std::string* out, absl::string_view indent, const StepEnv& env,
                   const std::vector<std::string>& secret_vars) {
  for (const std::string& line : env.lines()) absl::StrAppend(out, indent, line, "\n");
  // No step sees the other steps' secrets, nor its own under their transport names.
  if (!secret_vars.empty()) {
    absl::StrAppend(out, indent, "unset ", absl::StrJoin(secret_vars, " "), "\n");
  }
}

// Pyxis options of a step.
void AddContainerArgs(const JobPlan& plan, absl::string_view image, absl::string_view mounts,
                      const std::vector<std::string>& env_names, std::vector<std::string>* args) {
  args->push_back(absl::StrCat("--container-image=", ShellQuote(image)));
  if (!mounts.empty()) args->push_back(absl::StrCat("--container-mounts=", ShellQuote(mounts)));
  if (!plan.spec->execution.mount_home) args->push_back("--no-container-mount-home");
  if (!env_names.empty()) {
    args->push_back(absl::StrCat("--container-env=", absl::StrJoin(env_names, ",")));
  }
}

// After the #SBATCH lines and the job's description.
constexpr char kHeaderNotes[] = R"(#
# Rendered by evalctl; its agent submits it with sbatch (adding --job-name and, for a resumed
# attempt, --dependency). This script holds no secret value: secrets arrive in the job's
# environment as EVALCTL_SECRET_<GROUP>_<NAME> and are exported under their own names only inside
# the step that uses them. Never turn on xtrace (set -x) here.
#
# Exit codes: 0-119 are the evaluation's own; @EXIT_SETUP@ setup failed; @EXIT_SERVER_DIED@ a server (or the proxy) died
# before it was ready; @EXIT_TIMEOUT@ the endpoint was not ready in time; @EXIT_INTERRUPTED@ interrupted; @EXIT_OUT_OF_RANGE@ the
# evaluation exited with 120 or more (its raw code is in @EXIT_CODE_FILE@).
# See controller/config/render.h.
#
# Single-quoted strings below are data, expanded by the shells they are given to (SC2016);
# functions that only traps call look unreachable to shellcheck (SC2317); each step's exports
# are meant to stay in its subshell (SC2030, SC2031).
# shellcheck disable=SC2016,SC2317,SC2030,SC2031

# No `set -e`: every failure is handled where it happens, so that the script always tears down and
# reports the evaluation's exit code.
set -uo pipefail

)";

void AppendHeader(const std::vector<std::string>& sbatch_lines, absl::string_view description,
                  std::string* out) {
  absl::StrAppend(out, "#!/bin/bash\n");
  for (const std::string& line : sbatch_lines) absl::StrAppend(out, "#SBATCH ", line, "\n");
  absl::StrAppend(out, "#\n", description, ResolveJobTokens(kHeaderNotes));
}

absl::StatusOr<std::vector<std::string>> SbatchLines(const JobPlan& plan) {
  const Execution& ex = plan.spec->execution;
  std::vector<std::string> lines;
  lines.push_back(absl::StrCat("--time=", FormatSlurmTime(ex.walltime_seconds)));
  ASSIGN_OR_RETURN(std::string account, SbatchValue("execution.account", ex.account));
  lines.push_back(absl::StrCat("--account=", account));
  if (!ex.partition.empty()) {
    ASSIGN_OR_RETURN(std::string partition, SbatchValue("execution.partition", ex.partition));
    lines.push_back(absl::StrCat("--partition=", partition));
  }
  lines.push_back(absl::StrCat("--nodes=", ex.num_nodes));
  lines.push_back(absl::StrCat("--ntasks-per-node=", ex.ntasks_per_node));
  if (ex.gpus_per_node) lines.push_back(absl::StrCat("--gpus-per-node=", *ex.gpus_per_node));
  if (ex.gres && !ex.gres->empty()) {
    ASSIGN_OR_RETURN(std::string gres, SbatchValue("execution.gres", *ex.gres));
    lines.push_back(absl::StrCat("--gres=", gres));
  }
  if (ex.sbatch_comment) {
    ASSIGN_OR_RETURN(std::string comment,
                     SbatchValue("execution.sbatch_comment", *ex.sbatch_comment));
    lines.push_back(absl::StrCat("--comment=", comment));
  }
  for (const auto& [name, value] : ex.sbatch_extra_flags) {
    const std::string key = absl::StrCat("execution.sbatch_extra_flags.", name);
    RETURN_IF_ERROR(CheckLine("execution.sbatch_extra_flags", name));
    RETURN_IF_ERROR(CheckExtraFlagName(key, name));
    ASSIGN_OR_RETURN(std::string flag, SbatchValue(key, name));
    if (!value) {
      lines.push_back(absl::StrCat("--", flag));
    } else {
      ASSIGN_OR_RETURN(std::string v, SbatchValue(key, *value));
      lines.push_back(absl::StrCat("--", flag, "=", v));
    }
  }
  ASSIGN_OR_RETURN(std::string output,
                   SbatchValue("execution.output_dir",
                               absl::StrCat(EscapePercent(plan.run_dir), "/logs/slurm-%j.log")));
  lines.push_back(absl::StrCat("--output=", output));
  lines.push_back("--open-mode=append");
  lines.push_back("--no-requeue");
  if (ex.pre_timeout_signal_seconds > 0) {
    lines.push_back(absl::StrCat("--signal=B:USR1@", ex.pre_timeout_signal_seconds));
  }
  ASSIGN_OR_RETURN(std::string chdir, SbatchValue("execution.output_dir", plan.run_dir));
  lines.push_back(absl::StrCat("--chdir=", chdir));
  return lines;
}

void AppendPreamble(const JobPlan& plan, std::string* out) {
  const Execution& ex = plan.spec->execution;
  absl::StrAppend(out, "RUN_DIR=", ShellQuote(plan.run_dir), "\n");
  absl::StrAppend(out, "export EVALCTL_INVOCATION_ID=", ShellQuote(plan.invocation_id), "\n");
  absl::StrAppend(out, "export NEL_INVOCATION_ID=\"${EVALCTL_INVOCATION_ID}\"\n");
  absl::StrAppend(out, "export EVALCTL_RUN_DIR=\"${RUN_DIR}\"\n");
  absl::StrAppend(out,
                  "if [[ -n \"${SLURM_JOB_ID:-}\" ]]; then\n"
                  "  EVALCTL_IN_SLURM=1\n"
                  "else\n"
                  "  EVALCTL_IN_SLURM=0\n"
                  "fi\n"
                  "EVALCTL_JOB_ID=${SLURM_JOB_ID:-local}\n"
                  "EVALCTL_SRUN=srun\n");
  if (plan.deploy) {
    // The model server's port; with deployment.port 0, derived from the job id so that jobs
    // sharing a node do not collide.
    absl::StrAppend(out, "export EVALCTL_SERVER_PORT=",
                    plan.server_port != 0
                        ? std::to_string(plan.server_port)
                        : std::string("$((20000 + ${SLURM_JOB_ID:-$$} % 40000))"),
                    "\n");
  }
  // Run directories of the tasks of a shared job, and whether their evaluation has ended.
  std::vector<std::string> dirs;
  std::vector<std::string> zeros;
  if (plan.shared) {
    for (const TaskPlan& tp : plan.tasks) {
      dirs.push_back(ShellQuote(tp.run_dir));
      zeros.push_back("0");
    }
  }
  absl::StrAppend(out, "EVALCTL_TASK_DIRS=(", absl::StrJoin(dirs, " "), ")\n");
  absl::StrAppend(out, "EVALCTL_TASK_DONE=(", absl::StrJoin(zeros, " "), ")\n");
  absl::StrAppend(
      out,
      "EVALCTL_NODES=()\n"
      "EVALCTL_SERVER_PIDS=()\n",
      plan.deploy ? "EVALCTL_SERVER_NAMES=()\nEVALCTL_SERVER_LOGS=()\n" : "",
      plan.secret_vars.empty()
          ? ""
          : absl::StrCat("EVALCTL_SECRET_VARS=(", absl::StrJoin(plan.secret_vars, " "), ")\n"),
      "EVALCTL_EVAL_PID=''\n"
      "EVALCTL_STEP_RC=0\n"
      "EVALCTL_TASK_CODE=0\n"
      "EVALCTL_MARKER_BEFORE=absent\n"
      "EVALCTL_TERMINATED=0\n"
      "EVALCTL_WARNED=0\n"
      "EVALCTL_TORN_DOWN=0\n"
      "EVALCTL_JOB_EXIT=0\n");
  absl::StrAppend(out, JobShellBlock(plan.deploy));

  // Setup.
  absl::StrAppend(out,
                  "# ---- Setup\n\n"
                  "trap evalctl_on_exit EXIT\n"
                  "trap evalctl_on_usr1 USR1\n"
                  "trap evalctl_on_term TERM INT HUP\n\n");
  absl::StrAppend(out, "for evalctl_dir in \"${RUN_DIR}\" \"${EVALCTL_TASK_DIRS[@]}\"; do\n",
                  "  if ! mkdir -p \"${evalctl_dir}/logs\" \"${evalctl_dir}/artifacts\" "
                  "\"${evalctl_dir}/.evalctl\"; then\n",
                  "    evalctl_log \"cannot create the run directory ${evalctl_dir}\"\n",
                  "    exit ", kExitSetupFailed, "\n", "  fi\n", "done\n");
  if (plan.shared) {
    absl::StrAppend(
        out,
        "# A task that succeeded in an earlier attempt of this job is not run again.\n"
        "for evalctl_i in \"${!EVALCTL_TASK_DIRS[@]}\"; do\n"
        "  evalctl_code=''\n"
        "  read -r evalctl_code 2>/dev/null <\"${EVALCTL_TASK_DIRS[evalctl_i]}/",
        kExitCodeFile,
        "\"\n"
        "  if [[ \"${evalctl_code}\" == 0 ]]; then\n"
        "    EVALCTL_TASK_DONE[evalctl_i]=1\n"
        "    evalctl_log \"${EVALCTL_TASK_DIRS[evalctl_i]}: succeeded in an earlier attempt; not "
        "run again\"\n"
        "  else\n"
        "    rm -f \"${EVALCTL_TASK_DIRS[evalctl_i]}/",
        kExitCodeFile,
        "\"\n"
        "  fi\n"
        "done\n"
        "if [[ \" ${EVALCTL_TASK_DONE[*]} \" != *' 0 '* ]]; then\n"
        "  evalctl_log \"every task succeeded in an earlier attempt\"\n"
        "  exit 0\n"
        "fi\n");
  } else {
    absl::StrAppend(out, "rm -f \"${RUN_DIR}/", kExitCodeFile, "\"\n");
  }
  absl::StrAppend(out, "evalctl_job_phase starting\n");
  absl::StrAppend(out, "evalctl_log \"invocation ${EVALCTL_INVOCATION_ID}, job ${EVALCTL_JOB_ID}",
                  ", run directory ${RUN_DIR}\"\n\n");
  if (!plan.secret_vars.empty()) {
    absl::StrAppend(out,
                    "for evalctl_var in \"${EVALCTL_SECRET_VARS[@]}\"; do\n"
                    "  if [[ ! -v ${evalctl_var} ]]; then\n"
                    "    evalctl_log \"the job environment lacks ${evalctl_var}: submitted without "
                    "its secrets?\"\n"
                    "    exit ",
                    kExitSetupFailed,
                    "\n"
                    "  fi\n"
                    "done\n\n");
  }
  absl::StrAppend(out,
                  "if (( EVALCTL_IN_SLURM )); then\n"
                  "  if ! EVALCTL_SRUN=$(command -v srun); then\n"
                  "    evalctl_log \"srun not found\"\n"
                  "    exit ",
                  kExitSetupFailed,
                  "\n"
                  "  fi\n"
                  "  mapfile -t EVALCTL_NODES < <(scontrol show hostnames "
                  "\"${SLURM_JOB_NODELIST:-}\")\n"
                  "  if (( ${#EVALCTL_NODES[@]} < ",
                  ex.num_nodes,
                  " )); then\n"
                  "    evalctl_log \"the allocation has ${#EVALCTL_NODES[@]} node(s) "
                  "(${SLURM_JOB_NODELIST:-}); this job needs ",
                  ex.num_nodes,
                  "\"\n"
                  "    exit ",
                  kExitSetupFailed,
                  "\n"
                  "  fi\n"
                  "else\n"
                  "  evalctl_log \"not in a Slurm allocation: the steps run on this host\"\n"
                  "  for ((evalctl_i = 0; evalctl_i < ",
                  ex.num_nodes,
                  "; evalctl_i++)); do\n"
                  "    EVALCTL_NODES+=(localhost)\n"
                  "  done\n"
                  "fi\n\n");
}

void AppendDeployment(const JobPlan& plan, std::string* out) {
  const Execution& ex = plan.spec->execution;
  const Deployment& dep = plan.spec->deployment;
  absl::StrAppend(out, "# ---- Deployment: ", CommentSafe(dep.type), ", ", ex.num_instances,
                  " instance(s) of ", plan.nodes_per_instance, " node(s) and ",
                  plan.tasks_per_instance, " task(s) each\n\n");
  absl::StrAppend(out, "evalctl_job_phase deploying\n");
  absl::StrAppend(out,
                  "if ! command -v curl >/dev/null; then\n"
                  "  evalctl_log \"curl is not installed on ${HOSTNAME}: cannot check the "
                  "endpoint\"\n"
                  "  exit ",
                  kExitSetupFailed,
                  "\n"
                  "fi\n"
                  "EVALCTL_INSTANCE_HEADS=()\n");
  const std::string log_prefix = absl::StrCat(plan.run_dir, "/logs/server-");
  absl::StrAppend(out, "for ((evalctl_g = 0; evalctl_g < ", ex.num_instances,
                  "; evalctl_g++)); do\n", "  evalctl_select_instance \"${evalctl_g}\" ",
                  plan.nodes_per_instance, "\n",
                  "  EVALCTL_INSTANCE_HEADS+=(\"${EVALCTL_INSTANCE_HEAD}\")\n", "  (\n");
  AppendStepEnv(out, "    ", plan.deploy_env, plan.secret_vars);
  std::vector<std::string> args = {"--overlap", "--kill-on-bad-exit=1",
                                   absl::StrCat("--nodes=", plan.nodes_per_instance),
                                   absl::StrCat("--ntasks=", plan.tasks_per_instance)};
  if (!ex.mpi.empty()) args.push_back(absl::StrCat("--mpi=", ShellQuote(ex.mpi)));
  args.push_back("--nodelist=\"${EVALCTL_NODELIST}\"");
  args.push_back(absl::StrCat("--output=", ShellQuote(EscapePercent(log_prefix)),
                              "\"${evalctl_g}\"'-%j-%t.log'"));
  if (plan.pyxis) {
    AddContainerArgs(plan, dep.image, plan.deploy_mounts, plan.deploy_env.names(), &args);
  }
  args.push_back("bash -c \"${EVALCTL_SERVER_DRIVER}\" evalctl-server");
  args.push_back(ShellQuote(dep.pre_cmd));
  args.push_back(ShellQuote(dep.command));
  AppendCommand(out, "    ", "evalctl_srun", args);
  absl::StrAppend(out, "  ) &\n", "  EVALCTL_SERVER_PIDS+=(\"$!\")\n",
                  "  EVALCTL_SERVER_NAMES+=(\"deployment instance ${evalctl_g}\")\n",
                  "  EVALCTL_SERVER_LOGS+=(", ShellQuote(log_prefix),
                  "\"${evalctl_g}-${EVALCTL_JOB_ID}\"'-*.log')\n",
                  "  evalctl_log \"deployment instance ${evalctl_g} started on "
                  "${EVALCTL_NODELIST}\"\n",
                  "done\n\n");

  // Readiness.
  absl::StrAppend(out, "evalctl_job_phase waiting_for_endpoint\n",
                  "EVALCTL_READY_TIMEOUT=", plan.readiness_timeout, "\n",
                  "EVALCTL_READY_DEADLINE=$((SECONDS + EVALCTL_READY_TIMEOUT))\n");
  if (ex.num_instances == 1) {
    absl::StrAppend(out, "evalctl_wait_ready ",
                    "\"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"", ShellQuote(plan.health_path),
                    " || exit\n\n");
    return;
  }
  absl::StrAppend(
      out, "evalctl_urls=()\n", "for evalctl_head in \"${EVALCTL_INSTANCE_HEADS[@]}\"; do\n",
      "  evalctl_urls+=(\"http://${evalctl_head}:${EVALCTL_SERVER_PORT}\"", ShellQuote(plan.health_path),
      ")\n", "done\n", "evalctl_wait_ready \"${evalctl_urls[@]}\" || exit\n\n");

  // Load balancer.
  const Execution::Proxy& proxy = ex.proxy;
  const std::string cfg = absl::StrCat(plan.run_dir, "/.evalctl/haproxy.cfg");
  const std::vector<std::string> cfg_lines = {
      "global",
      "  maxconn 10000",
      "defaults",
      "  mode http",
      "  timeout connect 10s",
      "  timeout client 100000s",
      "  timeout server 100000s",
      "frontend evalctl",
      absl::StrCat("  bind *:", proxy.haproxy_port),
      "  default_backend evalctl_instances",
      "backend evalctl_instances",
      "  balance leastconn",
      absl::StrCat("  option httpchk GET ", proxy.health_check_path),
      absl::StrCat("  http-check expect status ", proxy.health_check_status)};
  std::vector<std::string> quoted;
  for (const std::string& l : cfg_lines) quoted.push_back(ShellQuote(l));
  absl::StrAppend(out, "# ---- Load balancer over the instances: haproxy on the first node, port ",
                  proxy.haproxy_port, "\n\n", "{\n", "  printf '%s\\n' ",
                  absl::StrJoin(quoted, " "), "\n",
                  "  for evalctl_g in \"${!EVALCTL_INSTANCE_HEADS[@]}\"; do\n",
                  "    printf '  server instance%d %s:%d check\\n' \"${evalctl_g}\" "
                  "\"${EVALCTL_INSTANCE_HEADS[evalctl_g]}\" ",
                  dep.port, "\n", "  done\n", "} >", ShellQuote(cfg), " || exit ", kExitSetupFailed,
                  "\n", "(\n");
  if (!plan.secret_vars.empty()) {
    absl::StrAppend(out, "  unset ", absl::StrJoin(plan.secret_vars, " "), "\n");
  }
  std::vector<std::string> pargs = {
      "--overlap", "--nodes=1", "--ntasks=1", "--nodelist=\"${EVALCTL_NODES[0]}\"",
      absl::StrCat("--output=",
                   ShellQuote(absl::StrCat(EscapePercent(plan.run_dir), "/logs/proxy-%j.log")))};
  AddContainerArgs(plan, proxy.image, absl::StrCat(cfg, ":/usr/local/etc/haproxy/haproxy.cfg:ro"),
                   {}, &pargs);
  pargs.push_back("haproxy -f /usr/local/etc/haproxy/haproxy.cfg");
  AppendCommand(out, "  ", "evalctl_srun", pargs);
  absl::StrAppend(
      out, ") &\n", "EVALCTL_SERVER_PIDS+=(\"$!\")\n",
      "EVALCTL_SERVER_NAMES+=(\"the load balancer (haproxy)\")\n", "EVALCTL_SERVER_LOGS+=(",
      ShellQuote(absl::StrCat(plan.run_dir, "/logs/proxy-")), "\"${EVALCTL_JOB_ID}.log\")\n",
      "evalctl_wait_ready ",
      ShellQuote(absl::StrCat("http://127.0.0.1:", proxy.haproxy_port, proxy.health_check_path)),
      " || exit\n\n");
}

void AppendEvalFunction(const JobPlan& plan, size_t i, std::string* out) {
  const TaskPlan& tp = plan.tasks[i];
  const TaskSpec& task = *tp.task;
  absl::StrAppend(out, "# ---- Evaluation ", i, ": task ", task.index, " (", CommentSafe(task.name),
                  ")\n\n");
  absl::StrAppend(out, "evalctl_eval_", i, "() {\n", "  local dir=", ShellQuote(tp.run_dir), "\n",
                  "  evalctl_phase evaluating \"${dir}\"\n",
                  "  EVALCTL_MARKER_BEFORE=$(evalctl_marker \"${dir}\")\n", "  evalctl_log \"task ",
                  task.index, ": evaluation starting; its log is ",
                  "${dir}/logs/client-${EVALCTL_JOB_ID}.log\"\n");
  if (!task.nemo_evaluator_config_yaml.empty()) {
    // Rewritten by every attempt; EVALCTL_RUN_CONFIG names it in the step.
    const std::string file = absl::StrCat("${dir}/artifacts/", layout::kRunConfigName);
    absl::StrAppend(out, "  evalctl_write_file \"", file, "\" ",
                    ShellQuote(task.nemo_evaluator_config_yaml), " || {\n",
                    "    evalctl_log \"cannot write ", file, "\"\n", "    exit ", kExitSetupFailed,
                    "\n", "  }\n");
  }
  absl::StrAppend(out, "  (\n");
  AppendStepEnv(out, "    ", tp.env, plan.secret_vars);
  std::vector<std::string> args = {
      "--overlap", "--nodes=1", "--ntasks=1", "--nodelist=\"${EVALCTL_NODES[0]}\"",
      absl::StrCat("--output=",
                   ShellQuote(absl::StrCat(EscapePercent(tp.run_dir), "/logs/client-%j.log")))};
  if (plan.pyxis) AddContainerArgs(plan, task.container, tp.mounts, tp.env.names(), &args);
  args.push_back("bash -c \"${EVALCTL_EVAL_DRIVER}\" evalctl-eval");
  args.push_back(ShellQuote(task.pre_cmd));
  args.push_back(ShellQuote(task.command));
  args.push_back(ShellQuote(task.post_cmd));
  AppendCommand(out, "    ", "evalctl_srun", args);
  absl::StrAppend(out, "  ) &\n", "  EVALCTL_EVAL_PID=$!\n",
                  "  if (( EVALCTL_TERMINATED )); then  # TERM came before $! was known\n",
                  "    evalctl_forward_term\n", "  fi\n",
                  "  evalctl_wait_step \"${EVALCTL_EVAL_PID}\"\n", "  EVALCTL_EVAL_PID=''\n",
                  "  evalctl_write_file \"${dir}/", kExitCodeFile, "\" \"${EVALCTL_STEP_RC}\"\n",
                  "  evalctl_task_code \"${dir}\" \"${EVALCTL_STEP_RC}\"\n",
                  "  evalctl_log \"task ", task.index,
                  ": evaluation exited with code ${EVALCTL_STEP_RC}\"\n", "}\n\n");
}

absl::StatusOr<RenderedTaskJob> Render(JobPlan& plan, absl::string_view description,
                                       absl::string_view job_name_prefix) {
  ASSIGN_OR_RETURN(std::vector<std::string> sbatch, SbatchLines(plan));
  std::string out;
  AppendHeader(sbatch, description, &out);
  AppendPreamble(plan, &out);
  if (plan.deploy) AppendDeployment(plan, &out);
  for (size_t i = 0; i < plan.tasks.size(); ++i) AppendEvalFunction(plan, i, &out);
  absl::StrAppend(&out, "# ---- Run the evaluation(s); the EXIT trap tears down\n\n");
  if (!plan.shared) {
    absl::StrAppend(&out, "evalctl_eval_0\n", "EVALCTL_JOB_EXIT=${EVALCTL_TASK_CODE}\n");
  } else {
    for (size_t i = 0; i < plan.tasks.size(); ++i) {
      absl::StrAppend(&out, "if (( ! EVALCTL_TASK_DONE[", i, "] && ! EVALCTL_TERMINATED )); then\n",
                      "  evalctl_eval_", i, "\n", "  EVALCTL_TASK_DONE[", i, "]=1\n",
                      "  evalctl_phase finished \"${EVALCTL_TASK_DIRS[", i, "]}\"\n",
                      "  if (( EVALCTL_JOB_EXIT == 0 )); then\n",
                      "    EVALCTL_JOB_EXIT=${EVALCTL_TASK_CODE}\n", "  fi\n", "fi\n");
    }
    absl::StrAppend(&out, "if (( EVALCTL_TERMINATED && EVALCTL_JOB_EXIT == 0 )); then\n",
                    "  EVALCTL_JOB_EXIT=", kExitInterrupted, "\n", "fi\n");
  }
  absl::StrAppend(&out, "exit \"${EVALCTL_JOB_EXIT}\"\n");

  RenderedTaskJob job;
  job.script = std::move(out);
  job.env = std::move(plan.env);
  job.run_dir = plan.run_dir;
  job.job_name_prefix = std::string(job_name_prefix);
  job.partition = plan.spec->execution.partition;
  return job;
}

// Parts of the Slurm job name; any byte outside layout::SafeJobName's alphabet becomes '_' there.
absl::Status CheckJobNamePart(absl::string_view key, absl::string_view value) {
  return CheckLine(key, value);
}

std::string Description(const JobPlan& plan) {
  const Execution& ex = plan.spec->execution;
  return absl::StrCat("# evalctl job of invocation ", plan.invocation_id, ": deployment ",
                      CommentSafe(plan.spec->deployment.type), ", container runtime ",
                      ex.container_runtime, "\n");
}

}  // namespace

std::string ShellQuote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

std::string InvocationRunDir(const Execution& execution, absl::string_view timestamp,
                             absl::string_view invocation_id) {
  return absl::StrCat(absl::StripSuffix(execution.output_dir, "/"), "/", timestamp, "-",
                      invocation_id);
}

absl::StatusOr<RenderedTaskJob> RenderTaskJob(const InvocationSpec& spec, const TaskSpec& task,
                                              absl::string_view invocation_id,
                                              absl::string_view invocation_run_dir) {
  JobPlan plan;
  ASSIGN_OR_RETURN(plan.run_dir, TaskRunDir(invocation_run_dir, task));
  RETURN_IF_ERROR(CheckMountableRunDirs(spec, {&task}, invocation_run_dir));
  RETURN_IF_ERROR(PlanExecution(spec, invocation_id, plan.run_dir, &plan));
  RETURN_IF_ERROR(CheckJobNamePart("execution.account", spec.execution.account));
  RETURN_IF_ERROR(CheckJobNamePart("execution.subproject", spec.execution.subproject));
  RETURN_IF_ERROR(CheckJobNamePart(TaskKey(task, "name"), task.dir_name));
  RETURN_IF_ERROR(PlanDeployment(&plan));
  RETURN_IF_ERROR(PlanTask(task, "EVAL", plan.run_dir, &plan));
  std::string description =
      absl::StrCat(Description(plan), "# Task ", task.index, ": ", CommentSafe(task.name), "\n");
  return Render(plan, description,
                layout::SafeJobName(absl::StrCat(spec.execution.account, "-",
                                                 spec.execution.subproject, ".", task.dir_name)));
}

absl::StatusOr<RenderedTaskJob> RenderSharedJob(const InvocationSpec& spec,
                                                absl::string_view invocation_id,
                                                absl::string_view invocation_run_dir) {
  if (spec.tasks.empty()) return Invalid("evaluation.tasks", "no task to run");
  JobPlan plan;
  plan.shared = true;
  plan.run_dir = std::string(absl::StripSuffix(invocation_run_dir, "/"));
  std::vector<const TaskSpec*> tasks;
  for (const TaskSpec& task : spec.tasks) tasks.push_back(&task);
  RETURN_IF_ERROR(CheckMountableRunDirs(spec, tasks, plan.run_dir));
  RETURN_IF_ERROR(PlanExecution(spec, invocation_id, plan.run_dir, &plan));
  RETURN_IF_ERROR(CheckJobNamePart("execution.account", spec.execution.account));
  RETURN_IF_ERROR(CheckJobNamePart("execution.subproject", spec.execution.subproject));
  RETURN_IF_ERROR(PlanDeployment(&plan));
  std::string description = absl::StrCat(Description(plan), "# Shared deployment; tasks:");
  std::map<int, std::string> indices;
  std::map<std::string, int> dirs;
  for (const TaskSpec& task : spec.tasks) {
    if (!indices.emplace(task.index, task.name).second) {
      return Invalid("evaluation.tasks", absl::StrCat("two tasks have the index ", task.index));
    }
    if (auto [it, added] = dirs.emplace(task.dir_name, task.index); !added) {
      return Invalid(TaskKey(task, "name"), absl::StrCat("the run directory `", task.dir_name,
                                                         "` is also task ", it->second, "'s"));
    }
    ASSIGN_OR_RETURN(std::string run_dir, TaskRunDir(plan.run_dir, task));
    // Each task has its own group: tasks may give one name different secret values.
    RETURN_IF_ERROR(PlanTask(task, absl::StrCat("EVAL", task.index), run_dir, &plan));
    absl::StrAppend(&description, " ", task.index, " (", CommentSafe(task.name), ")");
  }
  absl::StrAppend(&description, "\n");
  return Render(plan, description,
                layout::SafeJobName(absl::StrCat(spec.execution.account, "-",
                                                 spec.execution.subproject, ".shared")));
}

}  // namespace evalctl::config

#include "controller/config/loader.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "controller/config/builtin_data.h"
#include "controller/config/duration.h"
#include "controller/config/schema.h"
#include "controller/config/suggest.h"

namespace evalctl::config {
namespace {

bool IsIdentifier(absl::string_view s) {
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

bool IsSafeTaskName(absl::string_view s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 128) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// One word that bash reads as written: no quoting, expansion, globbing, operator or whitespace.
bool IsShellWord(absl::string_view s) {
  if (s.empty() || s[0] == '~' || s[0] == '=') return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        !absl::StrContains("._-/:@+=,%", c)) {
      return false;
    }
  }
  return true;
}

// Collects every problem, so the user sees all of them at once.
class Problems {
 public:
  // The same problem (e.g. in an env_vars map every task inherits) is reported once.
  void Add(const Node* node, const std::string& path, const std::string& message) {
    std::string text = node ? Located(*node, path, message) : JoinPath(path, message);
    if (std::find(errors_.begin(), errors_.end(), text) == errors_.end()) {
      errors_.push_back(std::move(text));
    }
  }
  std::vector<std::string>& list() { return errors_; }
  bool empty() const { return errors_.empty(); }
  absl::Status ToStatus() const {
    if (errors_.empty()) return absl::OkStatus();
    std::string text = errors_.size() == 1
                           ? errors_[0]
                           : absl::StrCat(errors_.size(), " problems in the configuration:\n  ",
                                          absl::StrJoin(errors_, "\n  "));
    return absl::InvalidArgumentError(text);
  }

 private:
  std::vector<std::string> errors_;
};

// Typed reads of the resolved, schema-checked tree. A missing or null key gives the fallback.
class Reader {
 public:
  Reader(const Node& root, Problems& problems) : root_(root), problems_(problems) {}

  const Node* Get(const std::string& path) const {
    const Node* n = Lookup(root_, path);
    return (n == nullptr || n->IsNull()) ? nullptr : n;
  }
  std::string String(const std::string& path, std::string fallback = "") const {
    const Node* n = Get(path);
    return n && n->IsScalar() ? n->text() : fallback;
  }
  std::optional<std::string> OptString(const std::string& path) const {
    const Node* n = Get(path);
    if (n == nullptr || !n->IsScalar()) return std::nullopt;
    return n->text();
  }
  int64_t Int(const std::string& path, int64_t fallback) const {
    const Node* n = Get(path);
    if (n == nullptr) return fallback;
    auto v = n->AsInt();
    return v.ok() ? *v : fallback;
  }
  std::optional<int64_t> OptInt(const std::string& path) const {
    const Node* n = Get(path);
    if (n == nullptr) return std::nullopt;
    auto v = n->AsInt();
    if (!v.ok()) return std::nullopt;
    return *v;
  }
  bool Bool(const std::string& path, bool fallback) const {
    const Node* n = Get(path);
    if (n == nullptr) return fallback;
    auto v = n->AsBool();
    return v.ok() ? *v : fallback;
  }

  // A positive integer in [lo, hi].
  int Bounded(const std::string& path, int64_t fallback, int64_t lo, int64_t hi) {
    int64_t v = Int(path, fallback);
    if (v < lo || v > hi) {
      problems_.Add(Get(path), path,
                    absl::StrCat("must be between ", lo, " and ", hi, ", not ", v));
      return static_cast<int>(fallback);
    }
    return static_cast<int>(v);
  }

  // An absolute path without `..` components.
  std::string AbsolutePath(const std::string& path, const std::string& value, const Node* node) {
    if (!absl::StartsWith(value, "/")) {
      problems_.Add(node, path,
                    absl::StrCat("must be an absolute path on the cluster's shared filesystem, "
                                 "not \"",
                                 value, "\""));
    } else if (value.find('\0') != std::string::npos || value.find('\n') != std::string::npos) {
      problems_.Add(node, path, "must not contain control characters");
    } else {
      for (absl::string_view part : absl::StrSplit(value, '/')) {
        if (part == "..") {
          problems_.Add(node, path, absl::StrCat("must not contain '..' (\"", value, "\")"));
          break;
        }
      }
    }
    return value;
  }

  Problems& problems() { return problems_; }

 private:
  const Node& root_;
  Problems& problems_;
};

// host:container pairs of a mounts map.
MountList Mounts(Reader& r, const std::string& path) {
  MountList out;
  const Node* map = r.Get(path);
  if (map == nullptr || !map->IsMap()) return out;
  for (const auto& [host, container] : map->entries()) {
    // A host path with a newline or tab is shown escaped, so that the message stays one line.
    const bool control = std::any_of(host.begin(), host.end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
    std::string key_path = JoinPath(path, control ? absl::CHexEscape(host) : host);
    r.AbsolutePath(key_path, host, &container);
    if (!container.IsScalar() || container.text().empty()) {
      r.problems().Add(&container, key_path, "needs a container path (host_path: /container/path)");
      continue;
    }
    std::string target = container.text();
    // A trailing :ro/:rw mode is allowed, as pyxis accepts it.
    absl::string_view dest = target;
    if (absl::EndsWith(dest, ":ro") || absl::EndsWith(dest, ":rw")) dest.remove_suffix(3);
    r.AbsolutePath(key_path, std::string(dest), &container);
    if (absl::StrContains(host, ",") || absl::StrContains(target, ",")) {
      r.problems().Add(&container, key_path, "mount paths must not contain ','");
    }
    out.emplace_back(host, target);
  }
  return out;
}

// One env_vars value → EnvVar. Forms: `host:VAR` and ${oc.env:VAR} (secret), `lit:value`,
// `runtime:VAR`, or a plain value (literal).
std::optional<EnvVar> ParseEnvVar(const std::string& name, const Node& value,
                                  const std::string& path, const Environment& env,
                                  Problems& problems) {
  if (!IsIdentifier(name)) {
    problems.Add(&value, path,
                 "environment variable names may contain only letters, digits and '_', and "
                 "may not start with a digit");
    return std::nullopt;
  }
  EnvVar out;
  out.name = name;
  if (value.IsNull()) {
    out.source = EnvVar::Source::kLiteral;
    return out;
  }
  if (value.secret()) {
    out.source = EnvVar::Source::kHost;
    out.value = value.text();
    out.host_var = absl::StrJoin(value.env_sources(), ",");
    return out;
  }
  absl::string_view text = value.text();
  if (absl::ConsumePrefix(&text, "host:")) {
    std::string var(absl::StripAsciiWhitespace(text));
    auto it = env.find(var);
    if (!IsIdentifier(var)) {
      problems.Add(&value, path, absl::StrCat("host:", var, " does not name an environment "
                                              "variable"));
      return std::nullopt;
    }
    if (it == env.end()) {
      problems.Add(&value, path,
                   absl::StrCat("environment variable ", var,
                                " is not set; export it before running evalctl (host:", var,
                                " reads it from your environment at submit time)"));
      return std::nullopt;
    }
    out.source = EnvVar::Source::kHost;
    out.value = it->second;
    out.host_var = var;
    return out;
  }
  if (absl::ConsumePrefix(&text, "runtime:")) {
    std::string var(absl::StripAsciiWhitespace(text));
    if (!IsIdentifier(var)) {
      problems.Add(&value, path, absl::StrCat("runtime:", var, " does not name an environment "
                                              "variable of the compute node"));
      return std::nullopt;
    }
    out.source = EnvVar::Source::kRuntime;
    out.value = var;
    return out;
  }
  absl::ConsumePrefix(&text, "lit:");
  out.source = EnvVar::Source::kLiteral;
  out.value = std::string(text);
  return out;
}

// Merges env_vars maps in order; a later map wins for the same name.
std::vector<EnvVar> MergeEnv(Reader& r, const std::vector<std::string>& paths,
                             const Environment& env) {
  std::vector<EnvVar> out;
  for (const std::string& path : paths) {
    const Node* map = r.Get(path);
    if (map == nullptr || !map->IsMap()) continue;
    for (const auto& [name, value] : map->entries()) {
      std::optional<EnvVar> var = ParseEnvVar(name, value, JoinPath(path, name), env, r.problems());
      if (!var) continue;
      bool replaced = false;
      for (EnvVar& existing : out) {
        if (existing.name == var->name) {
          existing = *var;
          replaced = true;
        }
      }
      if (!replaced) out.push_back(*std::move(var));
    }
  }
  return out;
}

// Secret values may only go to env_vars (they reach the job through its environment) or to
// identity keys; anywhere else they would be written into the job script.
void CheckSecretPlacement(const Node& node, const std::string& path, Problems& problems) {
  if (absl::StrContains(path, "env_vars") || IsIdentityKey(path)) return;
  if (node.IsScalar() && node.secret()) {
    problems.Add(&node, path,
                 absl::StrCat("uses ${oc.env:", absl::StrJoin(node.env_sources(), "}, ${oc.env:"),
                              "}; values from your environment are secrets and are never written "
                              "into a job script. Pass it as an environment variable instead "
                              "(e.g. evaluation.env_vars.NAME: host:",
                              node.env_sources().empty() ? "VAR" : node.env_sources()[0],
                              ") and use $NAME in the command"));
    return;
  }
  for (const auto& [key, child] : node.entries()) {
    CheckSecretPlacement(child, JoinPath(path, key), problems);
  }
  for (size_t i = 0; i < node.items().size(); ++i) {
    CheckSecretPlacement(node.items()[i], JoinPath(path, std::to_string(i)), problems);
  }
}

void ReadExecution(Reader& r, Execution& e) {
  Problems& p = r.problems();
  e.type = r.String("execution.type", "slurm");
  if (e.type != "slurm") {
    p.Add(r.Get("execution.type"), "execution.type",
          absl::StrCat("evalctl runs on Slurm only (execution.type: slurm), not \"", e.type, "\""));
  }
  e.hostname = r.String("execution.hostname");
  e.username = r.String("execution.username");
  e.account = r.String("execution.account");
  for (const char* key : {"execution.hostname", "execution.username", "execution.account"}) {
    if (r.String(key).empty()) p.Add(r.Get(key), key, "must not be empty");
  }
  e.output_dir = r.AbsolutePath("execution.output_dir", r.String("execution.output_dir"),
                                r.Get("execution.output_dir"));
  e.partition = r.String("execution.partition", "batch");
  e.cpu_partition = r.OptString("execution.cpu_partition");
  e.num_nodes = r.Bounded("execution.num_nodes", 1, 1, 4096);
  e.num_instances = r.Bounded("execution.num_instances", 1, 1, 4096);
  if (e.num_nodes % e.num_instances != 0) {
    p.Add(r.Get("execution.num_instances"), "execution.num_instances",
          absl::StrCat("must divide execution.num_nodes (", e.num_nodes, " nodes cannot be split "
                       "into ", e.num_instances, " equal instances)"));
  }
  e.ntasks_per_node = r.Bounded("execution.ntasks_per_node", 1, 1, 1024);
  e.gres = r.OptString("execution.gres");
  if (e.gres && e.gres->empty()) e.gres.reset();
  if (auto g = r.OptInt("execution.gpus_per_node")) {
    e.gpus_per_node = r.Bounded("execution.gpus_per_node", 0, 0, 1024);
  }

  auto duration = [&](const std::string& path) -> std::optional<int64_t> {
    const Node* n = r.Get(path);
    if (n == nullptr) return std::nullopt;
    auto seconds = ParseSlurmDuration(n->text());
    if (!seconds.ok()) {
      p.Add(n, path, std::string(seconds.status().message()));
      return std::nullopt;
    }
    // Slurm keeps a time limit in minutes in 32 bits, the top two values meaning "unset" and "no
    // limit"; a longer one would reach sbatch wrapped around or be refused there.
    constexpr int64_t kMaxSlurmSeconds = (int64_t{0xFFFFFFFD}) * 60;
    if (*seconds > kMaxSlurmSeconds) {
      p.Add(n, path,
            absl::StrCat("(", FormatSlurmDuration(*seconds), ") is longer than Slurm's largest "
                         "time limit (", FormatSlurmDuration(kMaxSlurmSeconds), ")"));
      return std::nullopt;
    }
    return *seconds;
  };
  if (auto w = duration("execution.walltime")) {
    e.walltime_seconds = *w;
    if (*w <= 0) p.Add(r.Get("execution.walltime"), "execution.walltime", "must be positive");
  }
  e.max_walltime_seconds = duration("execution.max_walltime");
  if (e.max_walltime_seconds && *e.max_walltime_seconds < e.walltime_seconds) {
    p.Add(r.Get("execution.max_walltime"), "execution.max_walltime",
          absl::StrCat("(", FormatSlurmDuration(*e.max_walltime_seconds),
                       ") is less than execution.walltime (", FormatSlurmDuration(e.walltime_seconds),
                       "): the first attempt alone may need more; raise it or set it to null for "
                       "no limit"));
  }
  e.max_attempts = r.OptInt("execution.max_attempts");
  if (e.max_attempts) e.max_attempts = r.Bounded("execution.max_attempts", 20, 1, 1000);
  e.endpoint_readiness_timeout_seconds = r.OptInt("execution.endpoint_readiness_timeout");
  if (e.endpoint_readiness_timeout_seconds && *e.endpoint_readiness_timeout_seconds <= 0) {
    p.Add(r.Get("execution.endpoint_readiness_timeout"), "execution.endpoint_readiness_timeout",
          "must be a positive number of seconds, or null for the walltime");
  }
  e.subproject = r.String("execution.subproject", "nemo-evaluator-launcher");
  e.sbatch_comment = r.OptString("execution.sbatch_comment");
  if (const Node* flags = r.Get("execution.sbatch_extra_flags"); flags && flags->IsMap()) {
    for (const auto& [flag, value] : flags->entries()) {
      std::string path = JoinPath("execution.sbatch_extra_flags", flag);
      bool valid = !flag.empty() && flag[0] != '-';
      for (char c : flag) valid &= absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
      if (!valid) {
        p.Add(&value, path, "sbatch flag names are words like exclusive or mem-per-cpu "
                            "(written without leading dashes)");
        continue;
      }
      if (value.IsNull()) continue;
      auto b = value.AsBool();
      if (b.ok()) {
        if (*b) e.sbatch_extra_flags.emplace_back(flag, std::nullopt);
        continue;
      }
      e.sbatch_extra_flags.emplace_back(flag, value.text());
    }
  }
  e.deployment_n_tasks = r.Bounded("execution.deployment.n_tasks", e.num_nodes, 1, 1 << 20);
  if (e.deployment_n_tasks % e.num_instances != 0) {
    p.Add(r.Get("execution.deployment.n_tasks"), "execution.deployment.n_tasks",
          "must be divisible by execution.num_instances");
  }
  e.deployment_mounts = Mounts(r, "execution.mounts.deployment");
  e.evaluation_mounts = Mounts(r, "execution.mounts.evaluation");
  e.mount_home = r.Bool("execution.mounts.mount_home", true);
  e.container_runtime = r.String("execution.container_runtime", "pyxis");
  if (e.container_runtime != "pyxis" && e.container_runtime != "none") {
    p.Add(r.Get("execution.container_runtime"), "execution.container_runtime",
          absl::StrCat("must be pyxis (srun --container-image) or none (commands run directly on "
                       "the node), not \"",
                       e.container_runtime, "\""));
  }
  e.pre_timeout_signal_seconds =
      r.Bounded("execution.pre_timeout_signal_seconds", 120, 0, 65535);
  if (e.pre_timeout_signal_seconds > 0 && e.pre_timeout_signal_seconds >= e.walltime_seconds) {
    // A warning due before the job starts would stop every attempt at once.
    e.pre_timeout_signal_seconds = static_cast<int>(e.walltime_seconds / 2);
  }
  e.mpi = r.String("execution.mpi");
  if (const Node* g = r.Get("execution.evaluation_gpu_visible")) {
    auto b = g->AsBool();
    if (!b.ok()) {
      e.evaluation_gpu_visible = g->text();
    } else if (*b) {
      e.evaluation_gpu_visible = "all";
    }
  }
  e.shared_deployment = r.Bool("execution.shared_deployment", false);
  e.proxy.type = r.String("execution.proxy.type", "haproxy");
  e.proxy.image = r.String("execution.proxy.image", "haproxy:latest");
  e.proxy.haproxy_port = r.Bounded("execution.proxy.config.haproxy_port", 5009, 1, 65535);
  e.proxy.health_check_path = r.String("execution.proxy.config.health_check_path", "/health");
  e.proxy.health_check_status = r.Bounded("execution.proxy.config.health_check_status", 200,
                                          100, 599);
  if (r.Bool("execution.eval_ray_cluster", false)) {
    p.Add(r.Get("execution.eval_ray_cluster"), "execution.eval_ray_cluster",
          "the experimental Ray evaluation cluster is not supported by evalctl; set it to false");
  }
}

void ReadDeployment(Reader& r, const Execution& e, const Environment& env, Deployment& d) {
  Problems& p = r.problems();
  const Node* dep = r.Get("deployment");
  d.type = dep ? r.String("deployment.type", "none") : "none";
  static const std::set<std::string> kTypes = {"vllm", "sglang", "nim", "trtllm", "generic",
                                                "none"};
  if (kTypes.count(d.type) == 0) {
    p.Add(r.Get("deployment.type"), "deployment.type",
          absl::StrCat("unknown deployment type \"", d.type,
                       "\"; use one of vllm, sglang, nim, trtllm, generic, none"));
    return;
  }
  if (r.Get("deployment.multiple_instances") != nullptr) {
    p.Add(r.Get("deployment.multiple_instances"), "deployment.multiple_instances",
          "was removed; set execution.num_instances instead");
  }
  d.env_vars = MergeEnv(r, {"env_vars", "execution.env_vars.deployment", "deployment.env_vars"},
                        env);
  if (d.type == "none") return;
  d.image = r.String("deployment.image");
  d.checkpoint_path = r.OptString("deployment.checkpoint_path");
  d.hf_model_handle = r.OptString("deployment.hf_model_handle");
  d.cache_path = r.OptString("deployment.cache_path");
  if (d.checkpoint_path) {
    r.AbsolutePath("deployment.checkpoint_path", *d.checkpoint_path,
                   r.Get("deployment.checkpoint_path"));
  }
  if (d.cache_path) {
    r.AbsolutePath("deployment.cache_path", *d.cache_path, r.Get("deployment.cache_path"));
  }
  if (d.type == "vllm" || d.type == "sglang") {
    if (d.checkpoint_path.has_value() == d.hf_model_handle.has_value()) {
      p.Add(dep, "deployment",
            d.checkpoint_path ? "sets both checkpoint_path and hf_model_handle; set exactly one "
                                "(and the other to null)"
                              : "needs a model: set deployment.hf_model_handle (a Hugging Face "
                                "model id) or deployment.checkpoint_path (a directory on the "
                                "cluster), and the other to null");
    }
  }
  if (d.type == "trtllm" && !d.checkpoint_path) {
    p.Add(dep, "deployment.checkpoint_path",
          "trtllm serves a local checkpoint only: set deployment.checkpoint_path");
  }
  if (e.container_runtime == "pyxis" && d.image.empty()) {
    p.Add(r.Get("deployment.image"), "deployment.image",
          "is required with container_runtime pyxis: the model server's container image");
  }
  d.served_model_name = r.String("deployment.served_model_name");
  if (d.served_model_name.empty()) {
    d.served_model_name = d.hf_model_handle.value_or(d.checkpoint_path ? "/checkpoint" : "model");
  }
  // The deployment commands write these two unquoted (`vllm serve ${select_not_null:
  // deployment.hf_model_handle,/checkpoint} ... --served-model-name
  // ${deployment.served_model_name}`), as NEL's do: a value that bash would split, expand or
  // execute there is refused rather than run.
  for (const char* key : {"deployment.hf_model_handle", "deployment.served_model_name"}) {
    const Node* n = r.Get(key);
    if (n == nullptr || !n->IsScalar() || IsShellWord(n->text())) continue;
    p.Add(n, key,
          absl::StrCat("\"", absl::CHexEscape(n->text()),
                       "\" is not a model id that can go into deployment.command: use one word of "
                       "letters, digits and . _ - / : @ + = , % (e.g. meta-llama/Llama-3.1-8B-"
                       "Instruct); it is written there unquoted, so spaces, quotes, $, `, ; and "
                       "the like would be read by the shell"));
  }
  // 0: the job picks a port when it starts (EVALCTL_SERVER_PORT), for nodes several jobs share.
  d.port = r.Bounded("deployment.port", 8000, 0, 65535);
  d.tensor_parallel_size = r.Bounded("deployment.tensor_parallel_size", 1, 1, 1024);
  d.pipeline_parallel_size = r.Bounded("deployment.pipeline_parallel_size", 1, 1, 1024);
  d.data_parallel_size = r.Bounded("deployment.data_parallel_size", 1, 1, 1024);
  d.extra_args = r.String("deployment.extra_args");
  d.command = r.String("deployment.command");
  if (d.command.empty()) {
    p.Add(r.Get("deployment"), "deployment.command",
          "is required: the command that starts the model server");
  }
  d.pre_cmd = r.String("deployment.pre_cmd");
  if (const Node* eps = r.Get("deployment.endpoints"); eps && eps->IsMap()) {
    for (const auto& [name, path] : eps->entries()) {
      if (path.IsNull()) continue;
      if (!absl::StartsWith(path.text(), "/")) {
        p.Add(&path, JoinPath("deployment.endpoints", name),
              absl::StrCat("must be a URL path starting with '/', not \"", path.text(), "\""));
      }
      d.endpoints[name] = path.text();
    }
  }
  if (d.endpoints.count("health") == 0) d.endpoints["health"] = "/health";
}

void ReadTasks(Reader& r, const LoadRequest& request, const Catalog& catalog,
               const Execution& e, const Deployment& d, InvocationSpec& spec) {
  Problems& p = r.problems();
  const Node* tasks = r.Get("evaluation.tasks");
  if (tasks == nullptr || !tasks->IsList() || tasks->items().empty()) {
    p.Add(r.Get("evaluation"), "evaluation.tasks",
          "needs at least one task, e.g.\nevaluation:\n  tasks:\n    - name: hellaswag");
    return;
  }
  std::map<std::string, int> name_counts;
  for (const Node& t : tasks->items()) {
    if (const Node* n = t.Find("name"); n && n->IsScalar()) ++name_counts[n->text()];
  }
  const std::string global_nec_path = "evaluation.nemo_evaluator_config";
  for (size_t i = 0; i < tasks->items().size(); ++i) {
    const std::string base = JoinPath("evaluation.tasks", std::to_string(i));
    const Node& t = tasks->items()[i];
    TaskSpec task;
    task.index = static_cast<int>(i);
    task.name = r.String(base + ".name");
    if (task.name.empty()) {
      p.Add(&t, base + ".name", "every task needs a name");
      continue;
    }
    if (!IsSafeTaskName(task.name)) {
      p.Add(r.Get(base + ".name"), base + ".name",
            absl::StrCat("\"", task.name, "\" is not a valid task name (letters, digits, '.', "
                         "'_' and '-' only; it names the task's directory)"));
      continue;
    }
    task.dir_name = name_counts[task.name] > 1 ? absl::StrCat(task.name, ".", i) : task.name;
    const CatalogEntry* entry = catalog.Find(task.name);
    task.container = r.String(base + ".container", entry ? entry->container : "");
    task.command = r.String(base + ".command", entry ? entry->command : "");
    task.endpoint_type =
        r.String(base + ".endpoint_type", entry ? entry->endpoint_type : std::string("chat"));
    if (entry == nullptr && (task.command.empty() ||
                             (e.container_runtime == "pyxis" && task.container.empty()))) {
      std::string message = absl::StrCat("task \"", task.name, "\" is not in the task catalog");
      if (auto near = NearestName(task.name, catalog.Names())) {
        absl::StrAppend(&message, "; did you mean ", *near, "?");
      } else {
        absl::StrAppend(&message, ".");
      }
      absl::StrAppend(&message, " A task outside the catalog needs its own command",
                      e.container_runtime == "pyxis" ? " and container" : "",
                      " (`evalctl ls tasks` lists the catalog).");
      p.Add(r.Get(base + ".name"), base + ".name", message);
      continue;
    }
    if (entry != nullptr && task.command.empty()) {
      p.Add(r.Get(base + ".name"), base,
            absl::StrCat("task \"", task.name, "\" has no command for container runtime ",
                         e.container_runtime, "; give it one with command:"));
      continue;
    }
    if (entry != nullptr && !entry->runtimes.empty() && r.Get(base + ".command") == nullptr &&
        std::find(entry->runtimes.begin(), entry->runtimes.end(), e.container_runtime) ==
            entry->runtimes.end()) {
      p.Add(r.Get(base + ".name"), base + ".name",
            absl::StrCat("catalog task \"", task.name, "\" runs under container runtime ",
                         absl::StrJoin(entry->runtimes, " or "), ", not ", e.container_runtime,
                         "; change execution.container_runtime or give the task its own "
                         "command"));
      continue;
    }
    if (e.container_runtime == "none") task.container.clear();
    std::vector<std::string> pre, post;
    for (const std::string& key : {std::string("evaluation"), base}) {
      std::string v = r.String(key + ".pre_cmd");
      if (!v.empty()) pre.push_back(v);
      v = r.String(key + ".post_cmd");
      if (!v.empty()) post.push_back(v);
    }
    task.pre_cmd = absl::StrJoin(pre, "\n");
    task.post_cmd = absl::StrJoin(post, "\n");
    if (auto dir = r.OptString(base + ".dataset_dir")) {
      task.dataset_dir = r.AbsolutePath(base + ".dataset_dir", *dir, r.Get(base + ".dataset_dir"));
    }
    task.dataset_mount_path = r.String(base + ".dataset_mount_path", "/datasets");
    r.AbsolutePath(base + ".dataset_mount_path", task.dataset_mount_path,
                   r.Get(base + ".dataset_mount_path"));
    task.env_vars = MergeEnv(
        r, {"env_vars", "execution.env_vars.evaluation", "evaluation.env_vars", base + ".env_vars"},
        request.environment);
    Node nec = Node::Map();
    if (const Node* g = r.Get(global_nec_path)) MergeInto(nec, *g);
    if (const Node* own = r.Get(base + ".nemo_evaluator_config")) MergeInto(nec, *own);
    if (nec.size() > 0) task.nemo_evaluator_config_yaml = ToYaml(nec, "<secret>");
    spec.tasks.push_back(std::move(task));
  }
  (void)d;
}

void ReadTarget(Reader& r, const Deployment& d, Target& t) {
  Problems& p = r.problems();
  t.url = r.String("target.api_endpoint.url");
  t.model_id = r.String("target.api_endpoint.model_id");
  t.api_key_name = r.String("target.api_endpoint.api_key_name");
  if (d.type == "none") {
    for (const char* key : {"target.api_endpoint.url", "target.api_endpoint.model_id"}) {
      if (r.String(key).empty()) {
        p.Add(r.Get("target"), key,
              "is required with deployment none: the evaluation runs against an endpoint you "
              "host elsewhere (url of the OpenAI-compatible API and the model id it serves)");
      }
    }
    if (!t.url.empty() && !absl::StartsWith(t.url, "http://") &&
        !absl::StartsWith(t.url, "https://")) {
      p.Add(r.Get("target.api_endpoint.url"), "target.api_endpoint.url",
            absl::StrCat("must be an http:// or https:// URL, not \"", t.url, "\""));
    }
  } else {
    for (const char* key : {"target.api_endpoint.url", "target.api_endpoint.model_id"}) {
      if (!r.String(key).empty()) {
        p.Add(r.Get(key), key,
              absl::StrCat("must not be set with a deployment (", d.type,
                           "): the evaluation uses the deployed server. Remove it, or use "
                           "deployment: none to evaluate an external endpoint"));
      }
    }
  }
}

void FilterTasks(const std::vector<std::string>& filter, InvocationSpec& spec, Problems& p) {
  if (filter.empty()) return;
  std::vector<TaskSpec> kept;
  std::set<std::string> matched;
  for (TaskSpec& t : spec.tasks) {
    bool keep = false;
    for (const std::string& f : filter) {
      if (f == t.name || f == t.dir_name || f == absl::StrCat(t.name, ".", t.index)) {
        keep = true;
        matched.insert(f);
      }
    }
    if (keep) kept.push_back(std::move(t));
  }
  std::vector<std::string> names;
  for (const TaskSpec& t : spec.tasks) names.push_back(t.dir_name);
  for (const std::string& f : filter) {
    if (matched.count(f) == 0) {
      p.Add(nullptr, "",
            absl::StrCat("-t ", f, ": no task with that name (tasks: ", absl::StrJoin(names, ", "),
                         ")"));
    }
  }
  spec.tasks = std::move(kept);
}

}  // namespace

bool IsIdentityKey(absl::string_view path) {
  static const std::set<std::string, std::less<>> kKeys = {
      "execution.username",  "execution.hostname",      "execution.account",
      "execution.output_dir", "execution.partition",    "execution.cpu_partition",
      "execution.subproject", "user_config_path"};
  return kKeys.count(path) > 0;
}

absl::StatusOr<InvocationSpec> LoadInvocation(const LoadRequest& request,
                                              const Catalog& catalog) {
  ComposeInput input{request.yaml, request.file_name, request.overrides, request.user_groups};
  ASSIGN_OR_RETURN(Node tree, Compose(input, BuiltinGroupFiles()));

  Problems problems;
  ValidateSchema(tree, /*resolved=*/false, problems.list());
  RETURN_IF_ERROR(problems.ToStatus());
  RETURN_IF_ERROR(ResolveAll(tree, request.environment));
  // Container images mean nothing without containers: a required image left unset is fine.
  if (const Node* rt = Lookup(tree, "execution.container_runtime");
      rt != nullptr && rt->IsScalar() && rt->text() == "none") {
    if (Node* image = const_cast<Node*>(Lookup(tree, "deployment.image"));
        image != nullptr && image->IsMissing()) {
      *image = Node::Null(image->mark());
    }
  }
  ValidateSchema(tree, /*resolved=*/true, problems.list());
  RETURN_IF_ERROR(problems.ToStatus());
  CheckSecretPlacement(tree, "", problems);
  RETURN_IF_ERROR(problems.ToStatus());

  InvocationSpec spec;
  Reader reader(tree, problems);
  ReadExecution(reader, spec.execution);
  ReadDeployment(reader, spec.execution, request.environment, spec.deployment);
  ReadTarget(reader, spec.deployment, spec.target);
  ReadTasks(reader, request, catalog, spec.execution, spec.deployment, spec);
  FilterTasks(request.task_filter, spec, problems);
  if (problems.empty() && spec.tasks.empty()) {
    problems.Add(nullptr, "", "no task left to run");
  }
  RETURN_IF_ERROR(problems.ToStatus());
  if (spec.execution.container_runtime == "none" && spec.execution.num_instances > 1) {
    spec.warnings.push_back(
        "execution.num_instances > 1 with container_runtime none: no load balancer is started; "
        "the evaluation uses the first instance");
  }
  for (const char* key : {"execution.username", "execution.hostname", "execution.account",
                          "execution.output_dir", "execution.partition", "execution.cpu_partition",
                          "execution.subproject"}) {
    if (Node* n = const_cast<Node*>(Lookup(tree, key))) n->set_secret(false);
  }
  spec.resolved_yaml = ToYaml(tree, "<secret>");
  return spec;
}

std::vector<std::string> ReferencedEnvironment(const LoadRequest& request) {
  std::set<std::string> names;
  // `oc.env:` or `host:`, optional whitespace, then a variable name ([A-Za-z_][A-Za-z0-9_]*).
  // Scanned by hand: std::regex recurses once per character it matches, so a long name (30 KB)
  // overflowed the stack.
  auto scan = [&](absl::string_view text) {
    for (absl::string_view prefix : {"oc.env:", "host:"}) {
      for (size_t pos = text.find(prefix); pos != absl::string_view::npos;
           pos = text.find(prefix, pos + 1)) {
        size_t i = pos + prefix.size();
        while (i < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[i]))) ++i;
        const size_t start = i;
        while (i < text.size() && (absl::ascii_isalnum(static_cast<unsigned char>(text[i])) ||
                                   text[i] == '_')) {
          ++i;
        }
        if (i > start && !absl::ascii_isdigit(static_cast<unsigned char>(text[start]))) {
          names.insert(std::string(text.substr(start, i - start)));
        }
      }
    }
  };
  scan(request.yaml);
  for (const std::string& o : request.overrides) scan(o);
  for (const auto& [path, content] : request.user_groups) scan(content);
  for (const auto& [path, content] : BuiltinGroupFiles()) scan(content);
  return {names.begin(), names.end()};
}

}  // namespace evalctl::config

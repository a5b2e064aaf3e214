#include "controller/config/schema.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "controller/config/suggest.h"

namespace evalctl::config {
namespace {

enum class Type {
  kMap,        // fixed keys, listed in the table
  kFreeMap,    // any keys, any values (passed through: nemo_evaluator_config, auto_export, ...)
  kScalarMap,  // any keys, scalar or null values (env_vars, mounts, sbatch_extra_flags, ...)
  kList,       // items described by "<path>[]"
  kString,     // any scalar, read as text
  kInt,
  kBool,
  kNumber,
  kScalar,     // string, number or bool
};

struct Entry {
  Type type;
  bool nullable = false;
};

// Key paths; list items are "[]".
const std::map<std::string, Entry>& Table() {
  static const auto* table = new std::map<std::string, Entry>{
      {"", {Type::kMap}},
      {"defaults", {Type::kFreeMap}},
      {"user_config_path", {Type::kString, true}},
      {"env_vars", {Type::kScalarMap, true}},
      {"auxiliary_deployments", {Type::kFreeMap, true}},
      {"export", {Type::kFreeMap, true}},
      // target
      {"target", {Type::kMap, true}},
      {"target.api_endpoint", {Type::kMap, true}},
      {"target.api_endpoint.url", {Type::kString, true}},
      {"target.api_endpoint.model_id", {Type::kString, true}},
      {"target.api_endpoint.api_key_name", {Type::kString, true}},
      {"target.api_endpoint.type", {Type::kString, true}},
      // execution
      {"execution", {Type::kMap}},
      {"execution.type", {Type::kString}},
      {"execution.hostname", {Type::kString}},
      {"execution.username", {Type::kString}},
      {"execution.account", {Type::kString}},
      {"execution.output_dir", {Type::kString}},
      {"execution.partition", {Type::kString}},
      {"execution.cpu_partition", {Type::kString, true}},
      {"execution.num_nodes", {Type::kInt}},
      {"execution.num_instances", {Type::kInt}},
      {"execution.ntasks_per_node", {Type::kInt}},
      {"execution.gres", {Type::kString, true}},
      {"execution.gpus_per_node", {Type::kInt, true}},
      {"execution.walltime", {Type::kString}},
      {"execution.max_walltime", {Type::kString, true}},
      {"execution.endpoint_readiness_timeout", {Type::kInt, true}},
      {"execution.subproject", {Type::kString}},
      {"execution.sbatch_comment", {Type::kString, true}},
      {"execution.sbatch_extra_flags", {Type::kScalarMap, true}},
      {"execution.deployment", {Type::kMap, true}},
      {"execution.deployment.n_tasks", {Type::kInt, true}},
      {"execution.mounts", {Type::kMap, true}},
      {"execution.mounts.deployment", {Type::kScalarMap, true}},
      {"execution.mounts.evaluation", {Type::kScalarMap, true}},
      {"execution.mounts.auxiliary", {Type::kFreeMap, true}},
      {"execution.mounts.mount_home", {Type::kBool}},
      {"execution.proxy", {Type::kMap, true}},
      {"execution.proxy.type", {Type::kString}},
      {"execution.proxy.image", {Type::kString}},
      {"execution.proxy.config", {Type::kMap, true}},
      {"execution.proxy.config.haproxy_port", {Type::kInt}},
      {"execution.proxy.config.health_check_path", {Type::kString}},
      {"execution.proxy.config.health_check_status", {Type::kInt}},
      {"execution.env_vars", {Type::kMap, true}},
      {"execution.env_vars.deployment", {Type::kScalarMap, true}},
      {"execution.env_vars.evaluation", {Type::kScalarMap, true}},
      {"execution.env_vars.export", {Type::kScalarMap, true}},
      {"execution.evaluation_gpu_visible", {Type::kScalar, true}},
      {"execution.auto_export", {Type::kFreeMap, true}},
      {"execution.eval_ray_cluster", {Type::kBool, true}},
      {"execution.eval_ray_port", {Type::kInt, true}},
      {"execution.eval_ray_dashboard_port", {Type::kInt, true}},
      {"execution.eval_ray_ready_timeout", {Type::kInt, true}},
      {"execution.eval_per_node_pre_cmd", {Type::kString, true}},
      {"execution.eval_ray_pre_start_cmd", {Type::kString, true}},
      {"execution.eval_ray_head_workload_cmd", {Type::kString, true}},
      // evalctl's own
      {"execution.container_runtime", {Type::kString}},
      {"execution.max_attempts", {Type::kInt, true}},
      {"execution.pre_timeout_signal_seconds", {Type::kInt}},
      {"execution.mpi", {Type::kString, true}},
      {"execution.shared_deployment", {Type::kBool}},
      // deployment
      {"deployment", {Type::kMap, true}},
      {"deployment.type", {Type::kString}},
      {"deployment.image", {Type::kString, true}},
      {"deployment.checkpoint_path", {Type::kString, true}},
      {"deployment.hf_model_handle", {Type::kString, true}},
      {"deployment.cache_path", {Type::kString, true}},
      {"deployment.served_model_name", {Type::kString, true}},
      {"deployment.port", {Type::kInt}},
      {"deployment.tensor_parallel_size", {Type::kInt}},
      {"deployment.pipeline_parallel_size", {Type::kInt}},
      {"deployment.data_parallel_size", {Type::kInt}},
      {"deployment.gpu_memory_utilization", {Type::kNumber, true}},
      {"deployment.extra_args", {Type::kString, true}},
      {"deployment.base_command", {Type::kString, true}},
      {"deployment.command", {Type::kString, true}},
      {"deployment.pre_cmd", {Type::kString, true}},
      {"deployment.env_vars", {Type::kScalarMap, true}},
      {"deployment.endpoints", {Type::kScalarMap, true}},
      {"deployment.multiple_instances", {Type::kScalar, true}},
      // evaluation
      {"evaluation", {Type::kMap}},
      {"evaluation.tasks", {Type::kList}},
      {"evaluation.tasks[]", {Type::kMap}},
      {"evaluation.tasks[].name", {Type::kString}},
      {"evaluation.tasks[].container", {Type::kString, true}},
      {"evaluation.tasks[].command", {Type::kString, true}},
      {"evaluation.tasks[].endpoint_type", {Type::kString, true}},
      {"evaluation.tasks[].env_vars", {Type::kScalarMap, true}},
      {"evaluation.tasks[].nemo_evaluator_config", {Type::kFreeMap, true}},
      {"evaluation.tasks[].dataset_dir", {Type::kString, true}},
      {"evaluation.tasks[].dataset_mount_path", {Type::kString, true}},
      {"evaluation.tasks[].pre_cmd", {Type::kString, true}},
      {"evaluation.tasks[].post_cmd", {Type::kString, true}},
      {"evaluation.nemo_evaluator_config", {Type::kFreeMap, true}},
      {"evaluation.env_vars", {Type::kScalarMap, true}},
      {"evaluation.pre_cmd", {Type::kString, true}},
      {"evaluation.post_cmd", {Type::kString, true}},
  };
  return *table;
}

std::string Describe(Type t) {
  switch (t) {
    case Type::kMap:
    case Type::kFreeMap:
    case Type::kScalarMap: return "a map";
    case Type::kList: return "a list";
    case Type::kString: return "a string";
    case Type::kInt: return "an integer";
    case Type::kBool: return "true or false";
    case Type::kNumber: return "a number";
    case Type::kScalar: return "a single value";
  }
  return "a value";
}

std::string Show(const Node& n) {
  if (n.IsMap()) return "a map";
  if (n.IsList()) return "a list";
  if (n.IsNull()) return "null";
  if (n.secret()) return "a value from the environment";
  std::string text = n.text();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return absl::StrCat("\"", text, "\"");
}

class Validator {
 public:
  Validator(std::vector<std::string>& errors, bool resolved)
      : errors_(errors), resolved_(resolved) {}

  void Check(const Node& node, const std::string& path, const std::string& pattern) {
    auto it = Table().find(pattern);
    if (it == Table().end()) return;
    const Entry& entry = it->second;
    // Before interpolation only the structure is checked: values may still be ${...} or ???.
    if (!resolved_ && node.IsScalar() && (node.HasInterpolation() || node.IsMissing())) return;
    if (node.IsMissing()) {
      errors_.push_back(Located(node, path, "required value is not set (it is \?\?\? in the "
                                            "defaults); set it in your config or with -o " +
                                                path + "=..."));
      return;
    }
    if (node.IsNull()) {
      if (!entry.nullable) {
        errors_.push_back(Located(node, path, absl::StrCat("must be ", Describe(entry.type),
                                                           ", not null")));
      }
      return;
    }
    switch (entry.type) {
      case Type::kMap:
        if (!node.IsMap()) return Wrong(node, path, entry.type);
        for (const auto& [key, child] : node.entries()) {
          std::string child_pattern = pattern.empty() ? key : absl::StrCat(pattern, ".", key);
          std::string child_path = JoinPath(path, key);
          if (Table().count(child_pattern) == 0) {
            Unknown(child, child_path, key, pattern);
            continue;
          }
          Check(child, child_path, child_pattern);
        }
        return;
      case Type::kFreeMap:
        if (!node.IsMap() && !(pattern == "defaults" && node.IsList())) {
          return Wrong(node, path, entry.type);
        }
        return;
      case Type::kScalarMap:
        if (!node.IsMap()) return Wrong(node, path, entry.type);
        for (const auto& [key, child] : node.entries()) {
          if (child.IsMap() || child.IsList()) {
            errors_.push_back(Located(child, JoinPath(path, key),
                                      absl::StrCat("must be a single value, not ", Show(child))));
          } else if (resolved_ && child.IsMissing()) {
            errors_.push_back(Located(child, JoinPath(path, key), "required value is not set"));
          }
        }
        return;
      case Type::kList:
        if (!node.IsList()) return Wrong(node, path, entry.type);
        for (size_t i = 0; i < node.items().size(); ++i) {
          Check(node.items()[i], JoinPath(path, std::to_string(i)), pattern + "[]");
        }
        return;
      case Type::kString:
      case Type::kScalar:
        if (!node.IsScalar()) return Wrong(node, path, entry.type);
        return;
      case Type::kInt:
        if (!node.IsScalar() || !node.AsInt().ok()) return Wrong(node, path, entry.type);
        return;
      case Type::kNumber:
        if (!node.IsScalar() || !node.AsDouble().ok()) return Wrong(node, path, entry.type);
        return;
      case Type::kBool:
        if (!node.IsScalar() || !node.AsBool().ok()) return Wrong(node, path, entry.type);
        return;
    }
  }

 private:
  void Wrong(const Node& node, const std::string& path, Type type) {
    errors_.push_back(
        Located(node, path, absl::StrCat("must be ", Describe(type), ", not ", Show(node))));
  }

  void Unknown(const Node& node, const std::string& path, const std::string& key,
               const std::string& parent_pattern) {
    std::vector<std::string> siblings;
    std::string prefix = parent_pattern.empty() ? "" : parent_pattern + ".";
    for (const auto& [p, e] : Table()) {
      if (!absl::StartsWith(p, prefix) || p.size() <= prefix.size()) continue;
      std::string rest = p.substr(prefix.size());
      if (rest.find('.') != std::string::npos || rest.find('[') != std::string::npos) continue;
      siblings.push_back(rest);
    }
    std::string message = absl::StrCat("unknown key ", key);
    if (auto near = NearestName(key, siblings)) {
      absl::StrAppend(&message, "; did you mean ", *near, "?");
    } else if (!siblings.empty() && siblings.size() <= 12) {
      absl::StrAppend(&message, "; known keys here: ");
      for (size_t i = 0; i < siblings.size(); ++i) {
        absl::StrAppend(&message, i ? ", " : "", siblings[i]);
      }
    }
    errors_.push_back(Located(node, path, message));
  }

  std::vector<std::string>& errors_;
  bool resolved_;
};

}  // namespace

std::string Located(const Node& node, const std::string& path, const std::string& message) {
  std::string where = node.mark().ToString();
  std::string out;
  if (!where.empty()) absl::StrAppend(&out, where, ": ");
  if (!path.empty()) absl::StrAppend(&out, path, ": ");
  absl::StrAppend(&out, message);
  return out;
}

void ValidateSchema(const Node& root, bool resolved, std::vector<std::string>& errors) {
  Validator(errors, resolved).Check(root, "", "");
}

}  // namespace evalctl::config

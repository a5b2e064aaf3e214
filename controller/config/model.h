// The validated configuration of one invocation, in plain C++ types: what composition and
// validation (config_loader.h) produce and what job rendering (render.h) consumes.
//
// Key names follow the YAML keys (reference: NeMo Evaluator Launcher's execution/slurm/default.yaml
// and deployment/*.yaml). Value types; thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace evalctl::config {

// An environment variable for the job. Where its value comes from decides whether it is a secret.
struct EnvVar {
  enum class Source {
    // A literal written in the config (`lit:x` or a plain value): not secret.
    kLiteral,
    // From the user's environment at submit time (`host:X` or `${oc.env:X}`): secret. `value`
    // holds it; it reaches the job only through sbatch's environment.
    kHost,
    // Bound on the compute node (`runtime:X`): the job sets NAME="${X}" from its own environment.
    kRuntime,
  };
  std::string name;
  Source source = Source::kLiteral;
  // The literal, the secret value (kHost), or the compute-node variable name (kRuntime).
  std::string value;
  // kHost: the user's variable the value came from (for redacted display).
  std::string host_var;

  bool secret() const { return source == Source::kHost; }
};

// host path → container path (pyxis --container-mounts); kept in config order.
using MountList = std::vector<std::pair<std::string, std::string>>;

struct Execution {
  std::string type = "slurm";
  std::string hostname;
  std::string username;
  std::string account;
  std::string output_dir;
  std::string partition = "batch";
  std::optional<std::string> cpu_partition;
  int num_nodes = 1;
  int num_instances = 1;
  int ntasks_per_node = 1;
  std::optional<std::string> gres = "gpu:8";
  std::optional<int> gpus_per_node;
  // Seconds.
  int64_t walltime_seconds = 3600;
  // Seconds; nullopt = unlimited.
  std::optional<int64_t> max_walltime_seconds = 120 * 3600;
  // Resume budget in attempts (beyond NEL); nullopt = unlimited.
  std::optional<int> max_attempts = 20;
  std::optional<int64_t> endpoint_readiness_timeout_seconds;
  std::string subproject = "nemo-evaluator-launcher";
  std::optional<std::string> sbatch_comment;
  // In config order; value nullopt = bare flag (`true`).
  std::vector<std::pair<std::string, std::optional<std::string>>> sbatch_extra_flags;
  // `deployment.n_tasks`: srun tasks of the deployment (all instances).
  int deployment_n_tasks = 1;
  MountList deployment_mounts;
  MountList evaluation_mounts;
  bool mount_home = true;
  // "pyxis" (srun --container-image) or "none" (commands run directly on the node).
  std::string container_runtime = "pyxis";
  // Seconds of warning before the time limit (`--signal=B:USR1@N`).
  int pre_timeout_signal_seconds = 120;
  // srun --mpi value; empty = not passed.
  std::string mpi;
  // `true` / a string → NVIDIA_VISIBLE_DEVICES in the eval step.
  std::optional<std::string> evaluation_gpu_visible;
  // Beyond NEL: one deployment serves every task of the invocation in a single job.
  bool shared_deployment = false;
  struct Proxy {
    std::string type = "haproxy";
    std::string image = "haproxy:latest";
    int haproxy_port = 5009;
    std::string health_check_path = "/health";
    int health_check_status = 200;
  } proxy;
};

struct Deployment {
  // vllm, sglang, nim, trtllm, generic, none.
  std::string type = "none";
  std::string image;
  std::optional<std::string> checkpoint_path;
  std::optional<std::string> hf_model_handle;
  std::optional<std::string> cache_path;
  std::string served_model_name;
  int port = 8000;
  int tensor_parallel_size = 1;
  int pipeline_parallel_size = 1;
  int data_parallel_size = 1;
  std::string extra_args;
  // The server command, fully resolved (interpolations done).
  std::string command;
  std::string pre_cmd;
  // endpoint name (chat, completions, health, ...) → path.
  std::map<std::string, std::string> endpoints;
  // Merged: top-level env_vars → execution.env_vars.deployment → deployment.env_vars.
  std::vector<EnvVar> env_vars;
};

struct Target {
  // Used when deployment.type == none.
  std::string url;
  std::string model_id;
  std::string api_key_name;
  std::string endpoint_type = "chat";
};

// One task to run: one Slurm job (unless shared_deployment).
struct TaskSpec {
  int index = 0;
  std::string name;
  // `name`, or `name.N` when the name occurs more than once.
  std::string dir_name;
  // Harness container image (pyxis) — empty with runtime `none`.
  std::string container;
  // The harness command line (runtime `none` or a catalog/explicit command); runs with the
  // endpoint in EVALCTL_ENDPOINT_URL / EVALCTL_MODEL_ID and results going to /results or the
  // artifacts directory.
  std::string command;
  std::string endpoint_type = "chat";
  std::string pre_cmd;
  std::string post_cmd;
  std::optional<std::string> dataset_dir;
  std::string dataset_mount_path = "/datasets";
  // Merged: top-level env_vars → execution.env_vars.evaluation → evaluation.env_vars →
  // task.env_vars (last wins).
  std::vector<EnvVar> env_vars;
  // The task's nemo_evaluator_config (global merged with the task's), as YAML.
  std::string nemo_evaluator_config_yaml;
};

struct InvocationSpec {
  Execution execution;
  Deployment deployment;
  Target target;
  std::vector<TaskSpec> tasks;
  // Resolved config as YAML, secret values redacted.
  std::string resolved_yaml;
  // `evaluation.pre_cmd` / `post_cmd`, already folded into each task's.
  std::vector<std::string> warnings;
};

}  // namespace evalctl::config

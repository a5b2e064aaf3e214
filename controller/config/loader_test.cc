#include "controller/config/loader.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A valid config: external endpoint, container runtime none, one task with its own command.
constexpr char kBase[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: head
  username: alice
  account: acct
  output_dir: /scratch/results
  container_runtime: none
target:
  api_endpoint:
    url: http://h:8000/v1/chat/completions
    model_id: m
evaluation:
  tasks:
    - name: custom
      command: echo hi
)";

absl::StatusOr<InvocationSpec> Load(const std::string& yaml, std::vector<std::string> overrides = {},
                                    Environment env = {}) {
  LoadRequest req;
  req.yaml = yaml;
  req.file_name = "run.yaml";
  req.overrides = std::move(overrides);
  req.environment = std::move(env);
  return LoadInvocation(req);
}

std::string SeedExample() {
  // The complete example of seed/slurm-executor.md, verbatim.
  return R"(# examples/slurm_llama_3_1_8b_instruct.yaml
defaults:
  - execution: slurm/default
  - deployment: vllm
  - _self_

execution:
  hostname: your-cluster-headnode
  account: your_account
  output_dir: /shared/scratch/your_username/eval_results
  partition: gpu
  walltime: "04:00:00"
  gpus_per_node: 8
  env_vars:
    deployment:
      HF_TOKEN: ${oc.env:HF_TOKEN}   # Needed to access meta-llama/Llama-3.1-8B-Instruct gated model

deployment:
  hf_model_handle: meta-llama/Llama-3.1-8B-Instruct
  checkpoint_path: null
  served_model_name: meta-llama/Llama-3.1-8B-Instruct
  tensor_parallel_size: 1
  data_parallel_size: 8
    
evaluation:
  tasks:
    - name: hellaswag
    - name: arc_challenge  
    - name: winogrande
)";
}

TEST(LoadInvocationTest, BaseConfigLoads) {
  auto spec = Load(kBase);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->execution.hostname, "head");
  EXPECT_EQ(spec->execution.walltime_seconds, 3600);
  EXPECT_EQ(spec->execution.max_walltime_seconds, 120 * 3600);
  EXPECT_EQ(spec->deployment.type, "none");
  ASSERT_EQ(spec->tasks.size(), 1u);
  EXPECT_EQ(spec->tasks[0].dir_name, "custom");
  EXPECT_EQ(spec->tasks[0].command, "echo hi");
}

TEST(LoadInvocationTest, SeedCompleteExampleWorksAndKeepsTheTokenSecret) {
  auto spec = Load(SeedExample(), {}, {{"HF_TOKEN", "hf_SEED_SECRET_1234"}, {"USER", "bob"}});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->execution.username, "bob");
  EXPECT_EQ(spec->execution.partition, "gpu");
  EXPECT_EQ(spec->execution.walltime_seconds, 4 * 3600);
  EXPECT_EQ(spec->execution.gpus_per_node, 8);
  EXPECT_EQ(spec->deployment.type, "vllm");
  EXPECT_THAT(spec->deployment.command, HasSubstr("meta-llama/Llama-3.1-8B-Instruct"));
  ASSERT_EQ(spec->tasks.size(), 3u);
  EXPECT_EQ(spec->tasks[1].name, "arc_challenge");
  EXPECT_FALSE(spec->tasks[0].container.empty());
  bool found = false;
  for (const EnvVar& v : spec->deployment.env_vars) {
    if (v.name == "HF_TOKEN") {
      found = true;
      EXPECT_TRUE(v.secret());
      EXPECT_EQ(v.value, "hf_SEED_SECRET_1234");
      EXPECT_EQ(v.host_var, "HF_TOKEN");
    }
  }
  EXPECT_TRUE(found);
  EXPECT_THAT(spec->resolved_yaml, Not(HasSubstr("hf_SEED_SECRET_1234")));
  EXPECT_THAT(spec->resolved_yaml, HasSubstr("<secret> from $HF_TOKEN"));
}

TEST(LoadInvocationTest, DuplicateTaskNamesGetIndexSuffixes) {
  auto spec = Load(kBase, {"evaluation.tasks=[{name: a, command: x}, {name: b, command: y}, "
                           "{name: a, command: z}]"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tasks.size(), 3u);
  EXPECT_EQ(spec->tasks[0].dir_name, "a.0");
  EXPECT_EQ(spec->tasks[1].dir_name, "b");
  EXPECT_EQ(spec->tasks[2].dir_name, "a.2");
}

TEST(LoadInvocationTest, TaskFilter) {
  LoadRequest req;
  req.yaml = kBase;
  req.overrides = {"evaluation.tasks=[{name: a, command: x}, {name: b, command: y}]"};
  req.task_filter = {"b"};
  auto spec = LoadInvocation(req);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tasks.size(), 1u);
  EXPECT_EQ(spec->tasks[0].name, "b");
  EXPECT_EQ(spec->tasks[0].index, 1);
}

// `-t name.N` picks one of several tasks with the same name by its directory name (its index in
// evaluation.tasks); `-t name` keeps all of them.
TEST(LoadInvocationTest, TaskFilterByDuplicateTaskDirectoryName) {
  LoadRequest req;
  req.yaml = kBase;
  req.overrides = {"evaluation.tasks=[{name: a, command: x}, {name: b, command: y}, "
                   "{name: a, command: z}]"};
  req.task_filter = {"a.2"};
  auto spec = LoadInvocation(req);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tasks.size(), 1u);
  EXPECT_EQ(spec->tasks[0].dir_name, "a.2");
  EXPECT_EQ(spec->tasks[0].index, 2);
  EXPECT_EQ(spec->tasks[0].command, "z");

  req.task_filter = {"a"};
  spec = LoadInvocation(req);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tasks.size(), 2u);
  EXPECT_EQ(spec->tasks[0].dir_name, "a.0");
  EXPECT_EQ(spec->tasks[1].dir_name, "a.2");

  req.task_filter = {"a.0", "b"};
  spec = LoadInvocation(req);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tasks.size(), 2u);
  EXPECT_EQ(spec->tasks[0].dir_name, "a.0");
  EXPECT_EQ(spec->tasks[1].dir_name, "b");

  // An index that is not one of the name's: listed with the directory names there are.
  req.task_filter = {"a.1"};
  spec = LoadInvocation(req);
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(),
              HasSubstr("-t a.1: no task with that name (tasks: a.0, b, a.2)"));
}

TEST(LoadInvocationTest, EnvPrecedenceAndPrefixes) {
  std::string yaml = std::string(kBase) + R"(env_vars:
  A: top
  B: top
  C: top
  D: top
evaluation_extra: null
)";
  yaml = absl::StrReplaceAll(yaml, {{"evaluation_extra: null\n", ""}});
  auto spec = Load(yaml,
                   {"++execution.env_vars.evaluation.B=exec", "++execution.env_vars.evaluation.C=exec",
                    "++evaluation.env_vars.C=eval", "++evaluation.env_vars.D=eval",
                    "++evaluation.tasks.custom.env_vars.D=task",
                    "++evaluation.tasks.custom.env_vars.S=host:MY_SECRET",
                    "++evaluation.tasks.custom.env_vars.L=lit:host:not-a-ref",
                    "++evaluation.tasks.custom.env_vars.R=runtime:SLURM_JOB_ID"},
                   {{"MY_SECRET", "s3cr3t"}});
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::map<std::string, EnvVar> env;
  for (const EnvVar& v : spec->tasks[0].env_vars) env[v.name] = v;
  EXPECT_EQ(env["A"].value, "top");
  EXPECT_EQ(env["B"].value, "exec");
  EXPECT_EQ(env["C"].value, "eval");
  EXPECT_EQ(env["D"].value, "task");
  EXPECT_EQ(env["S"].source, EnvVar::Source::kHost);
  EXPECT_EQ(env["S"].value, "s3cr3t");
  EXPECT_EQ(env["L"].source, EnvVar::Source::kLiteral);
  EXPECT_EQ(env["L"].value, "host:not-a-ref");
  EXPECT_EQ(env["R"].source, EnvVar::Source::kRuntime);
  EXPECT_EQ(env["R"].value, "SLURM_JOB_ID");
  EXPECT_THAT(spec->resolved_yaml, Not(HasSubstr("s3cr3t")));
}

TEST(LoadInvocationTest, IdentityKeysMayComeFromTheEnvironment) {
  auto spec = Load(kBase, {"execution.output_dir=/scratch/${oc.env:USER}/results",
                           "execution.username=${oc.env:USER}"},
                   {{"USER", "carol"}});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->execution.output_dir, "/scratch/carol/results");
  EXPECT_THAT(spec->resolved_yaml, HasSubstr("/scratch/carol/results"));
}

TEST(LoadInvocationTest, ReferencedEnvironmentFindsEveryForm) {
  LoadRequest req;
  req.yaml = "a: ${oc.env:ONE}\nb: host:TWO\nc: '${oc.env: THREE,x}'\n";
  req.overrides = {"+d=host:FOUR"};
  std::vector<std::string> names = ReferencedEnvironment(req);
  for (const char* n : {"ONE", "TWO", "THREE", "FOUR", "USER"}) {
    EXPECT_THAT(names, ::testing::Contains(n));
  }
}

// Found by tests/fuzz: std::regex overflowed the stack on a 30 KB variable name (the CLI crashed).
TEST(LoadInvocationTest, ReferencedEnvironmentReadsLongInput) {
  LoadRequest req;
  const std::string long_name = "V" + std::string(1 << 20, 'x');
  req.yaml = absl::StrCat("a: host:", long_name, "\nb: ${oc.env:", std::string(1 << 20, ' '),
                          "SPACED}\nc: host:9digit\nd: host:\n");
  std::vector<std::string> names = ReferencedEnvironment(req);
  EXPECT_THAT(names, ::testing::Contains(long_name));
  EXPECT_THAT(names, ::testing::Contains("SPACED"));
  EXPECT_THAT(names, Not(::testing::Contains("9digit")));
}

// Bad input: each case names the key path and says what is wrong.
struct BadCase {
  std::string name;
  std::string yaml;  // empty: kBase
  std::vector<std::string> overrides;
  std::vector<std::string> expected;
};

class BadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadInputTest, ErrorSaysWhatAndWhere) {
  const BadCase& c = GetParam();
  auto spec = Load(c.yaml.empty() ? kBase : c.yaml, c.overrides, {{"USER", "u"}});
  ASSERT_FALSE(spec.ok()) << c.name;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& e : c.expected) {
    EXPECT_THAT(spec.status().message(), HasSubstr(e)) << c.name;
  }
}

std::string Base(absl::string_view from, absl::string_view to) {
  return absl::StrReplaceAll(kBase, {{from, to}});
}

INSTANTIATE_TEST_SUITE_P(
    Config, BadInputTest,
    ::testing::Values(
        BadCase{"relative_output_dir", "", {"execution.output_dir=results"},
                {"-o execution.output_dir=results", "execution.output_dir: must be an absolute path"}},
        BadCase{"output_dir_dotdot", "", {"execution.output_dir=/a/../etc"},
                {"execution.output_dir: must not contain '..'"}},
        BadCase{"walltime_garbage", "", {"execution.walltime=4h"}, {"execution.walltime:", "4h"}},
        BadCase{"walltime_out_of_range", "", {"execution.walltime=01:61:00"},
                {"execution.walltime:"}},
        BadCase{"max_walltime_below_walltime", "",
                {"execution.walltime=02:00:00", "execution.max_walltime=00:30:00"},
                {"execution.max_walltime:", "less than execution.walltime"}},
        BadCase{"num_instances_does_not_divide", "",
                {"execution.num_nodes=3", "execution.num_instances=2"},
                {"execution.num_instances: must divide execution.num_nodes"}},
        BadCase{"typo_in_execution_key", Base("  account: acct\n", "  account: acct\n  walltme: 1\n"),
                {}, {"run.yaml:9:12: execution.walltme: unknown key walltme; did you mean walltime?"}},
        BadCase{"typo_in_top_level_key", Base("evaluation:", "evalution: {}\nevaluation:"), {},
                {"evalution: unknown key evalution; did you mean evaluation?"}},
        BadCase{"typo_in_task_key", Base("      command: echo hi\n", "      command: echo hi\n      contianer: x\n"),
                {}, {"evaluation.tasks.0.contianer: unknown key contianer; did you mean container?"}},
        BadCase{"int_expected", "", {"execution.num_nodes=two"},
                {"execution.num_nodes: must be an integer, not \"two\""}},
        BadCase{"bool_expected", "", {"execution.mounts.mount_home=maybe"},
                {"execution.mounts.mount_home: must be true or false"}},
        BadCase{"map_expected", "", {"execution.mounts=7"}, {"execution.mounts: must be a map"}},
        BadCase{"hostname_required", Base("  hostname: head\n", ""), {},
                {"execution.hostname: required value is not set"}},
        BadCase{"account_required", Base("  account: acct\n", ""), {},
                {"execution.account: required value is not set"}},
        BadCase{"vllm_needs_a_model", "", {"deployment=vllm", "++deployment.served_model_name=m", "~target.api_endpoint.url",
                                           "~target.api_endpoint.model_id",
                                           "deployment.checkpoint_path=null"},
                {"deployment: needs a model"}},
        BadCase{"vllm_both_models", "", {"deployment=vllm", "++deployment.served_model_name=m", "~target.api_endpoint.url",
                                         "~target.api_endpoint.model_id",
                                         "deployment.checkpoint_path=/ckpt",
                                         "deployment.hf_model_handle=org/m"},
                {"sets both checkpoint_path and hf_model_handle"}},
        BadCase{"vllm_checkpoint_missing", "", {"deployment=vllm", "++deployment.served_model_name=m", "~target.api_endpoint.url",
                                                "~target.api_endpoint.model_id"},
                {"deployment.checkpoint_path: required value is not set"}},
        BadCase{"trtllm_needs_checkpoint", "", {"deployment=trtllm", "++deployment.served_model_name=m", "~target.api_endpoint.url",
                                                "~target.api_endpoint.model_id",
                                                "deployment.checkpoint_path=null"},
                {"deployment.checkpoint_path: trtllm serves a local checkpoint only"}},
        BadCase{"none_needs_url", "", {"target.api_endpoint.url=null"},
                {"target.api_endpoint.url: is required with deployment none"}},
        BadCase{"url_must_be_http", "", {"target.api_endpoint.url=ftp://x"},
                {"target.api_endpoint.url: must be an http:// or https:// URL"}},
        BadCase{"deployment_forbids_target_url", "", {"deployment=vllm", "deployment.checkpoint_path=/c", "++deployment.served_model_name=m"},
                {"target.api_endpoint.url: must not be set with a deployment (vllm)"}},
        BadCase{"task_not_in_catalog", Base("    - name: custom\n      command: echo hi\n",
                                            "    - name: hellaswg\n"),
                {"execution.container_runtime=pyxis"},
                {"evaluation.tasks.0.name: task \"hellaswg\" is not in the task catalog; did "
                 "you mean hellaswag? A task outside the catalog needs its own command and "
                 "container (`evalctl ls tasks` lists the catalog)."}},
        BadCase{"task_not_in_catalog_no_suggestion",
                Base("    - name: custom\n      command: echo hi\n", "    - name: zzqqxxww\n"),
                {},
                {"evaluation.tasks.0.name: task \"zzqqxxww\" is not in the task catalog. A task "
                 "outside the catalog needs its own command (`evalctl ls tasks` lists the "
                 "catalog)."}},
        BadCase{"task_without_name", Base("    - name: custom\n", "    - container: x\n"), {},
                {"evaluation.tasks.0.name: every task needs a name"}},
        BadCase{"hostile_task_name", "", {"evaluation.tasks.0.name=../../etc"},
                {"evaluation.tasks.0.name: \"../../etc\" is not a valid task name"}},
        BadCase{"no_tasks", "", {"evaluation.tasks=[]"}, {"evaluation.tasks: needs at least one task"}},
        BadCase{"bad_env_name", "", {"++evaluation.env_vars.BAD-NAME=x"},
                {"evaluation.env_vars.BAD-NAME: environment variable names may contain only"}},
        BadCase{"host_var_unset", "", {"++evaluation.env_vars.TOKEN=host:EVALCTL_NOT_SET"},
                {"evaluation.env_vars.TOKEN: environment variable EVALCTL_NOT_SET is not set"}},
        BadCase{"oc_env_unset", "", {"++evaluation.env_vars.TOKEN=${oc.env:EVALCTL_NOT_SET}"},
                {"evaluation.env_vars.TOKEN: ${oc.env:EVALCTL_NOT_SET}", "is not set"}},
        BadCase{"secret_in_command", "", {"evaluation.tasks.0.command=curl -H ${oc.env:USER}"},
                {"evaluation.tasks.0.command: uses ${oc.env:USER}", "never written into a job script"}},
        BadCase{"bad_runtime_var", "", {"++evaluation.env_vars.X=runtime:not-a-var"},
                {"evaluation.env_vars.X: runtime:not-a-var does not name"}},
        BadCase{"bad_container_runtime", "", {"execution.container_runtime=docker"},
                {"execution.container_runtime: must be pyxis"}},
        BadCase{"unknown_deployment_group", "", {"deployment=vlm"},
                {"no config group option deployment/vlm", "available:"}},
        BadCase{"relative_mount", "", {"execution.mounts.evaluation={data: /data}"},
                {"execution.mounts.evaluation.data: must be an absolute path"}},
        BadCase{"port_out_of_range", "", {"deployment=generic", "~target.api_endpoint.url",
                                          "~target.api_endpoint.model_id",
                                          "deployment.command=serve", "deployment.port=70000",
                                          "deployment.served_model_name=m"},
                {"deployment.port: must be between 0 and 65535, not 70000"}},
        BadCase{"multiple_instances_removed", "", {"deployment=generic", "~target.api_endpoint.url",
                                                   "~target.api_endpoint.model_id",
                                                   "deployment.command=serve",
                                                   "deployment.served_model_name=m",
                                                   "++deployment.multiple_instances=true"},
                {"deployment.multiple_instances: was removed; set execution.num_instances"}},
        BadCase{"not_slurm", "", {"execution.type=local"},
                {"execution.type: evalctl runs on Slurm only"}},
        BadCase{"sbatch_flag_with_dashes", "", {"++execution.sbatch_extra_flags.--mem=1G"},
                {"execution.sbatch_extra_flags.--mem: sbatch flag names"}},
        BadCase{"duplicate_yaml_key", Base("  account: acct\n", "  account: acct\n  account: b\n"),
                {}, {"run.yaml:9:3: duplicate key execution.account"}},
        BadCase{"interpolation_to_missing_key", "", {"execution.partition=${execution.nope}"},
                {"execution.partition: interpolation ${execution.nope} refers to execution.nope"}},
        BadCase{"relative_dataset_dir", "", {"++evaluation.tasks.0.dataset_dir=data"},
                {"evaluation.tasks.0.dataset_dir: must be an absolute path"}},
        BadCase{"readiness_timeout_negative", "", {"execution.endpoint_readiness_timeout=-5"},
                {"execution.endpoint_readiness_timeout: must be a positive number"}},
        BadCase{"ray_unsupported", "", {"++execution.eval_ray_cluster=true"},
                {"execution.eval_ray_cluster: the experimental Ray evaluation cluster"}},
        BadCase{"walltime_beyond_slurm", "", {"execution.walltime=277777778:00:00"},
                {"execution.walltime: (11574074-02:00:00) is longer than Slurm's largest time "
                 "limit"}},
        BadCase{"max_walltime_beyond_slurm", "", {"execution.max_walltime=99999999-00:00:00"},
                {"execution.max_walltime:", "longer than Slurm's largest time limit"}},
        BadCase{"walltime_beyond_int64", "", {"execution.walltime=9999999999999999999:00:00"},
                {"execution.walltime:", "a field is too large"}},
        BadCase{"num_nodes_negative", "", {"execution.num_nodes=-1"},
                {"execution.num_nodes: must be between 1 and 4096, not -1"}},
        BadCase{"num_nodes_beyond_int64", "", {"execution.num_nodes=99999999999999999999999"},
                {"execution.num_nodes: must be an integer"}},
        BadCase{"num_nodes_float_overflow", "", {"execution.num_nodes=1e309"},
                {"execution.num_nodes: must be an integer"}},
        BadCase{"max_attempts_huge", "", {"execution.max_attempts=9223372036854775807"},
                {"execution.max_attempts: must be between 1 and 1000"}},
        BadCase{"readiness_timeout_float_overflow", "",
                {"execution.endpoint_readiness_timeout=1e309"},
                {"execution.endpoint_readiness_timeout: must be an integer"}},
        BadCase{"port_beyond_int64", "", {"deployment=generic", "~target.api_endpoint.url",
                                          "~target.api_endpoint.model_id",
                                          "deployment.command=serve",
                                          "deployment.port=-99999999999999999999",
                                          "deployment.served_model_name=m"},
                {"deployment.port: must be an integer"}},
        BadCase{"gpus_negative", "", {"execution.gpus_per_node=-8"},
                {"execution.gpus_per_node: must be between 0 and 1024, not -8"}},
        BadCase{"hostile_task_name_shell", "", {"evaluation.tasks.0.name='x;$(touch /tmp/p)'"},
                {"evaluation.tasks.0.name:", "is not a valid task name"}},
        BadCase{"hostile_task_name_slash", "", {"evaluation.tasks.0.name=a/../../b"},
                {"evaluation.tasks.0.name:", "is not a valid task name"}},
        BadCase{"output_dir_dotdot_at_end", "", {"execution.output_dir=/scratch/.."},
                {"execution.output_dir: must not contain '..'"}},
        BadCase{"mount_dotdot", "", {"execution.mounts.evaluation={/data/../../etc: /data}"},
                {"execution.mounts.evaluation"}},
        BadCase{"override_syntax", "", {"execution.walltime"}, {"override 'execution.walltime': missing '='"}},
        BadCase{"set_unknown_key", "", {"execution.acount=x"},
                {"no such key execution.acount; to add it, write +execution.acount=x"}},
        BadCase{"not_a_map", "just a string\n", {}, {"run.yaml: the configuration must be a YAML map"}},
        BadCase{"invalid_yaml", "execution: [\n", {}, {"run.yaml:", "invalid YAML"}}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(LoadInvocationTest, UnknownTaskFilterListsTasks) {
  LoadRequest req;
  req.yaml = kBase;
  req.task_filter = {"nope"};
  auto spec = LoadInvocation(req);
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("-t nope: no task with that name (tasks: custom)"));
}

TEST(LoadInvocationTest, ReportsEveryProblemAtOnce) {
  auto spec = Load(kBase, {"execution.output_dir=rel", "execution.ntasks_per_node=0"});
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(spec.status().message(), HasSubstr("2 problems in the configuration"));
  EXPECT_THAT(spec.status().message(), HasSubstr("execution.output_dir"));
  EXPECT_THAT(spec.status().message(), HasSubstr("execution.ntasks_per_node: must be between 1"));
}

}  // namespace
}  // namespace evalctl::config

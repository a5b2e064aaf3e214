#include "controller/config/render.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/subprocess.h"
#include "controller/config/job_shell.h"
#include "controller/config/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::config {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kInvocation[] = "3f2a9c01d4e5b677";
constexpr char kRunDir[] = "/lustre/evals/20261126_130405-3f2a9c01d4e5b677";
constexpr char kSecret[] = "hf_SECRET_do_not_leak";
constexpr char kDepSecret[] = "ngc_DEP_SECRET_do_not_leak";
// Everything a shell might act on.
constexpr char kHostile[] =
    "it's \"q\" $(touch /tmp/evalctl_pwned) `touch /tmp/evalctl_pwned2` ; rm -rf / ; $HOME ${X} "
    "\\n \\ 'x' \n second line\twith tab  &  | > /tmp/evalctl_pwned3 # not a comment";
// The same on one line, for values that must be one line (images, URLs, #SBATCH values).
constexpr char kHostileLine[] =
    "it's \"q\" $(touch /tmp/evalctl_pwned) `touch /tmp/evalctl_pwned2` ; rm -rf / ; $HOME ${X} "
    "\\n \\ 'x' &  | > /tmp/evalctl_pwned3 # not a comment";
// An absolute path with what a path may hold: no newline, no `,` or `:` (pyxis's mount
// separators), no backslash (it turns off %-substitution in Slurm's --output).
constexpr char kHostilePath[] =
    "/lustre/it's \"q\" $(touch evalctl_pwned) `touch evalctl_pwned2` ; $HOME ${X} & | > x # y";

// ---------------------------------------------------------------------------------------------
// Helpers

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& path, absl::string_view text) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A fresh directory for one test.
fs::path TempDir(absl::string_view name) {
  fs::path dir =
      fs::path(::testing::TempDir()) / absl::StrCat("evalctl_render_", name, "_", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

EnvVar Literal(std::string name, std::string value) {
  return {.name = std::move(name), .source = EnvVar::Source::kLiteral, .value = std::move(value)};
}
EnvVar Host(std::string name, std::string value) {
  return {.name = std::move(name),
          .source = EnvVar::Source::kHost,
          .value = std::move(value),
          .host_var = "HOST_" + name};
}
EnvVar Runtime(std::string name, std::string var) {
  return {.name = std::move(name), .source = EnvVar::Source::kRuntime, .value = std::move(var)};
}

TaskSpec MakeTask(int index, std::string name, absl::string_view runtime) {
  TaskSpec task;
  task.index = index;
  task.name = name;
  task.dir_name = name;
  if (runtime == "pyxis") task.container = "nvcr.io/nvidia/eval-factory/simple-evals:25.09";
  task.command =
      "nemo-evaluator run_eval --eval_type " + name +
      " --model_url \"$EVALCTL_ENDPOINT_URL\" --model_id \"$EVALCTL_MODEL_ID\" --output_dir "
      "\"$EVALCTL_RESULTS_DIR\"";
  task.env_vars = {Literal("HF_DATASETS_OFFLINE", "1"), Host("HF_TOKEN", kSecret),
                   Runtime("JOB_USER", "USER")};
  return task;
}

// A typical config for each deployment type, as the loader would produce it.
InvocationSpec MakeSpec(absl::string_view type, absl::string_view runtime) {
  InvocationSpec spec;
  Execution& ex = spec.execution;
  ex.hostname = "login.eos";
  ex.username = "alice";
  ex.account = "llm_eval";
  ex.output_dir = "/lustre/evals";
  ex.container_runtime = std::string(runtime);
  ex.sbatch_extra_flags = {{"exclusive", std::nullopt}, {"mem", "0"}};
  ex.sbatch_comment = R"({"owner": "alice", "note": "nightly #3"})";
  ex.walltime_seconds = 2 * 3600 + 30 * 60;
  ex.mpi = type == "trtllm" ? "pmix" : "";
  if (runtime == "pyxis") {
    ex.deployment_mounts = {{"/lustre/hf_home", "/root/.cache/huggingface"}};
    ex.evaluation_mounts = {{"/lustre/hf_home", "/root/.cache/huggingface:ro"}};
    ex.mount_home = false;
  }
  Deployment& dep = spec.deployment;
  dep.type = std::string(type);
  dep.served_model_name = "llama-3.1-8b-instruct";
  dep.endpoints = {
      {"chat", "/v1/chat/completions"}, {"completions", "/v1/completions"}, {"health", "/health"}};
  const std::string model = runtime == "pyxis" ? "/checkpoint" : "/lustre/ckpt/llama";
  if (type == "vllm") {
    dep.image = "vllm/vllm-openai:v0.10.1";
    dep.checkpoint_path = "/lustre/ckpt/llama";
    dep.command = "vllm serve " + model +
                  " --tensor-parallel-size=8 --pipeline-parallel-size=1 --data-parallel-size=1 "
                  "--port 8000 --trust-remote-code --served-model-name llama-3.1-8b-instruct "
                  "--gpu-memory-utilization 0.95";
    dep.env_vars = {Host("HF_TOKEN", kDepSecret), Literal("VLLM_LOGGING_LEVEL", "INFO")};
  } else if (type == "sglang") {
    dep.image = "lmsysorg/sglang:v0.5.2";
    dep.hf_model_handle = "meta-llama/Llama-3.1-8B-Instruct";
    dep.command =
        "python3 -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct "
        "--host 0.0.0.0 --port 8000 --served-model-name llama-3.1-8b-instruct --tp-size 8";
    dep.env_vars = {Host("HF_TOKEN", kDepSecret)};
  } else if (type == "nim") {
    dep.image = "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.8";
    dep.command = "/opt/nvidia/nvidia_entrypoint.sh /opt/nim/start_server.sh";
    dep.endpoints["health"] = "/v1/health/ready";
    dep.cache_path = "/lustre/nim_cache";
    dep.env_vars = {Host("NGC_API_KEY", kDepSecret),
                    Literal("NIM_SERVED_MODEL_NAME", "llama-3.1-8b-instruct")};
  } else if (type == "trtllm") {
    dep.image = "nvcr.io/nvidia/tensorrt-llm/release:1.0.0";
    dep.checkpoint_path = "/lustre/ckpt/llama-trt";
    dep.command = "mpirun --allow-run-as-root --oversubscribe trtllm-serve serve " + model +
                  " --tp_size 8 --pp_size 1 --backend pytorch --port 8000";
    ex.deployment_n_tasks = 1;
  } else if (type == "generic") {
    dep.image = "ghcr.io/example/my-server:1.2";
    dep.checkpoint_path = "/lustre/ckpt/custom";
    dep.command = "my-server --model " + model + " --port 8000 --name 'llama 3.1'";
    dep.pre_cmd = "export SERVER_THREADS=8\npip install --quiet my-extra==1.0";
    dep.endpoints["health"] = "/v1/models";
  } else {
    spec.target.url = "https://integrate.api.nvidia.com/v1/chat/completions";
    spec.target.model_id = "meta/llama-3.1-8b-instruct";
    spec.target.api_key_name = "NGC_API_KEY";
  }
  TaskSpec task = MakeTask(0, "gpqa_diamond", runtime);
  if (type == "none") task.env_vars.push_back(Host("NGC_API_KEY", "nvapi-SECRET-key"));
  if (type == "generic") {
    task.pre_cmd = "pip install --quiet my-harness==0.3";
    task.post_cmd = "cp -r \"$EVALCTL_RESULTS_DIR\"/report* /lustre/reports/ || true";
    task.dataset_dir = "/lustre/datasets/gpqa";
    task.endpoint_type = "completions";
  }
  task.nemo_evaluator_config_yaml = "config:\n  params:\n    limit_samples: 10\n";
  spec.tasks.push_back(task);
  ex.evaluation_gpu_visible = type == "nim" ? std::optional<std::string>("true") : std::nullopt;
  return spec;
}

absl::StatusOr<RenderedTaskJob> RenderFirst(const InvocationSpec& spec) {
  return RenderTaskJob(spec, spec.tasks.at(0), kInvocation, kRunDir);
}

// The value of the job environment variable `name`, or "".
std::string EnvValue(const RenderedTaskJob& job, absl::string_view name) {
  for (const JobEnv& e : job.env) {
    if (e.name == name) return e.value;
  }
  return "";
}

void ExpectShellcheckClean(const std::string& script, absl::string_view what) {
  const fs::path dir = TempDir("shellcheck");
  const fs::path path = dir / "job.sh";
  WriteFile(path, script);
  auto r = RunSubprocess(
      {.argv = {"shellcheck", "-s", "bash", path.string()}, .timeout = absl::Seconds(60)});
  fs::remove_all(dir);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << what << ": shellcheck found problems:\n"
                             << r->stdout_data << r->stderr_data;
}

void ExpectBashParses(const std::string& script, absl::string_view what) {
  auto r = RunSubprocess({.argv = {"bash", "-n"}, .stdin_data = script});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << what << ": bash -n:\n" << r->stderr_data;
}

// The words that follow `prefix` at the start of the script's (indented) lines where a
// single-quoted word follows it (`--container-image='...' \`, `export NAME='...'`), decoded by
// bash itself.
std::vector<std::string> QuotedWordsAfter(const std::string& script, absl::string_view prefix) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(script, '\n')) {
    absl::string_view rest = absl::StripLeadingAsciiWhitespace(line);
    if (!absl::ConsumePrefix(&rest, prefix)) continue;
    if (!absl::StartsWith(rest, "'")) continue;
    absl::ConsumeSuffix(&rest, " \\");
    auto r = RunSubprocess({.argv = {"bash", "-c", absl::StrCat("printf '%s\\0' ", rest)}});
    EXPECT_TRUE(r.ok() && r->exit_code == 0) << rest;
    if (!r.ok()) continue;
    std::vector<std::string> words = absl::StrSplit(r->stdout_data, '\0');
    EXPECT_EQ(words.size(), 2u) << "more than one word after " << prefix << ": " << rest;
    out.push_back(words[0]);
  }
  return out;
}

// The comma-separated entries of every pyxis --container-mounts list in the script.
std::vector<std::string> MountEntries(const std::string& script) {
  std::vector<std::string> out;
  for (const std::string& list : QuotedWordsAfter(script, "--container-mounts=")) {
    for (absl::string_view entry : absl::StrSplit(list, ',')) out.emplace_back(entry);
  }
  return out;
}

// The value of `#SBATCH --<option>=...` as sbatch reads it (render.cc, "#SBATCH lines"): `"` and
// `'` quote, `\` escapes (also inside quotes), an unquoted `#` or blank ends the value. Empty when
// the option is absent; "<garbage>" when more follows the value.
std::string SbatchOption(const std::string& script, absl::string_view option) {
  const std::string prefix = absl::StrCat("#SBATCH --", option, "=");
  for (absl::string_view line : absl::StrSplit(script, '\n')) {
    if (!absl::ConsumePrefix(&line, prefix)) continue;
    std::string value;
    char quote = 0;
    size_t i = 0;
    for (; i < line.size(); ++i) {
      const char c = line[i];
      if (c == '\\' && i + 1 < line.size()) {
        value += line[++i];
      } else if (quote != 0) {
        if (c == quote) {
          quote = 0;
        } else {
          value += c;
        }
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '#' || c == ' ' || c == '\t') {
        break;
      } else {
        value += c;
      }
    }
    if (quote != 0 || !absl::StripAsciiWhitespace(line.substr(i)).empty()) return "<garbage>";
    return value;
  }
  return "";
}

struct Case {
  std::string name;
  InvocationSpec spec;
  bool shared = false;
};

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const char* type : {"vllm", "sglang", "nim", "trtllm", "generic", "none"}) {
    for (const char* runtime : {"pyxis", "none"}) {
      cases.push_back({absl::StrCat(type, "_", runtime), MakeSpec(type, runtime)});
    }
  }
  {
    InvocationSpec spec = MakeSpec("vllm", "pyxis");
    spec.execution.num_nodes = 4;
    spec.execution.num_instances = 2;
    spec.execution.deployment_n_tasks = 4;
    spec.execution.gres = std::nullopt;
    spec.execution.gpus_per_node = 8;
    spec.execution.mpi = "pmix";
    spec.execution.endpoint_readiness_timeout_seconds = 1800;
    cases.push_back({"vllm_pyxis_two_instances", std::move(spec)});
  }
  {
    InvocationSpec spec = MakeSpec("vllm", "pyxis");
    spec.execution.shared_deployment = true;
    TaskSpec second = MakeTask(1, "ifeval", "pyxis");
    second.env_vars = {Host("HF_TOKEN", "hf_OTHER_secret_value")};
    spec.tasks.push_back(second);
    TaskSpec third = MakeTask(2, "ifeval.2", "pyxis");
    third.name = "ifeval";
    spec.tasks.push_back(third);
    cases.push_back({"vllm_pyxis_shared", std::move(spec), /*shared=*/true});
  }
  return cases;
}

absl::StatusOr<RenderedTaskJob> RenderCase(const Case& c) {
  if (c.shared) return RenderSharedJob(c.spec, kInvocation, kRunDir);
  return RenderFirst(c.spec);
}

// ---------------------------------------------------------------------------------------------
// ShellQuote and small functions

TEST(ShellQuoteTest, SingleQuotes) {
  EXPECT_EQ(ShellQuote("abc"), "'abc'");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("$(x) `y` \"z\""), "'$(x) `y` \"z\"'");
}

TEST(ShellQuoteTest, BashReadsBackEveryByte) {
  std::string all;
  for (int c = 1; c < 256; ++c) all += static_cast<char>(c);
  for (const std::string& s : {all, std::string(kHostile), std::string("'''"), std::string("")}) {
    auto r = RunSubprocess({.argv = {"bash", "-c", "printf '%s' " + ShellQuote(s)}});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stdout_data, s);
  }
}

TEST(InvocationRunDirTest, JoinsOutputDirTimestampAndId) {
  Execution ex;
  ex.output_dir = "/lustre/evals/";
  EXPECT_EQ(InvocationRunDir(ex, "20261126_130405", kInvocation), kRunDir);
}

// ---------------------------------------------------------------------------------------------
// Golden files, shellcheck, bash -n

// The script with the job's fixed shell code (checked here to be exactly JobShellBlock) replaced
// by one line, so that the golden files hold what depends on the configuration.
std::string WithoutFixedCode(const std::string& script) {
  for (bool deploy : {true, false}) {
    const std::string block = JobShellBlock(deploy);
    if (size_t at = script.find(block); at != std::string::npos) {
      return absl::StrCat(script.substr(0, at),
                          "# <the job's fixed shell code: controller/config/job/*.sh",
                          deploy ? ", with deploy_lib.sh" : "", ">\n\n",
                          script.substr(at + block.size()));
    }
  }
  ADD_FAILURE() << "the script does not hold the job's fixed shell code";
  return script;
}

TEST(RenderTest, MatchesGoldenFiles) {
  const fs::path dir = fs::path(EVALCTL_SOURCE_DIR) / "controller/config/testdata/render";
  const char* update = std::getenv("EVALCTL_UPDATE_GOLDEN");
  const bool updating = update != nullptr && std::string(update) == "1";
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    auto job = RenderCase(c);
    ASSERT_TRUE(job.ok()) << job.status();
    const fs::path golden = dir / (c.name + ".sh");
    const std::string script = WithoutFixedCode(job->script);
    if (updating) {
      WriteFile(golden, script);
      continue;
    }
    ASSERT_TRUE(fs::exists(golden)) << golden << " is missing; run with EVALCTL_UPDATE_GOLDEN=1";
    EXPECT_EQ(script, ReadFile(golden))
        << "rendering changed; if that is intended, run with EVALCTL_UPDATE_GOLDEN=1 and review "
           "the diff of "
        << golden;
  }
}

TEST(RenderTest, EveryScriptPassesShellcheckAndBashN) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    auto job = RenderCase(c);
    ASSERT_TRUE(job.ok()) << job.status();
    ExpectBashParses(job->script, c.name);
    ExpectShellcheckClean(job->script, c.name);
  }
}

// Every string of the spec that reaches the script, hostile: the script still parses, passes
// shellcheck, and holds each value as a literal that bash (or sbatch) reads back byte for byte.
// Values that cannot be rendered (a newline in a one-line value, a mount separator in a path)
// are refused, naming the key: RenderTest.InvalidInputNamesTheKey. extra_args and
// hf_model_handle reach the script only through deployment.command (the loader interpolates
// them there): ConfigToScriptTest.HostileValuesAreRefusedByKeyOrRenderedLiterally.
TEST(RenderTest, HostileScriptsPassShellcheckAndBashN) {
  for (const char* runtime : {"pyxis", "none"}) {
    SCOPED_TRACE(runtime);
    const bool pyxis = std::string(runtime) == "pyxis";
    InvocationSpec spec = MakeSpec("generic", runtime);
    spec.deployment.command = kHostile;
    spec.deployment.pre_cmd = kHostile;
    spec.deployment.served_model_name = kHostile;
    spec.tasks[0].command = kHostile;
    spec.tasks[0].pre_cmd = kHostile;
    spec.tasks[0].post_cmd = kHostile;
    spec.tasks[0].name = kHostile;
    spec.tasks[0].env_vars.push_back(Literal("HOSTILE", kHostile));
    spec.execution.deployment_mounts = {{"/lustre/it's $(x) `y`", "/mnt/a b"}};
    spec.deployment.image = kHostileLine;
    spec.deployment.extra_args = kHostile;
    spec.deployment.hf_model_handle = kHostile;
    const std::string checkpoint = absl::StrCat(kHostilePath, "/ckpt");
    const std::string cache = absl::StrCat(kHostilePath, "/cache");
    const std::string eval_mount = absl::StrCat(kHostilePath, "/data");
    const std::string eval_target = "/mnt/it's $(x) `y` ; # z";
    const std::string dataset = absl::StrCat(kHostilePath, "/datasets");
    spec.deployment.checkpoint_path = checkpoint;
    spec.deployment.cache_path = cache;
    spec.execution.evaluation_mounts = {{eval_mount, eval_target}};
    spec.execution.sbatch_extra_flags = {{"exclusive", std::nullopt}, {"constraint", kHostileLine}};
    spec.execution.sbatch_comment = kHostileLine;
    spec.execution.partition = kHostileLine;
    spec.tasks[0].container = kHostileLine;
    spec.tasks[0].dataset_dir = dataset;
    spec.execution.output_dir = kHostilePath;
    auto job = RenderTaskJob(spec, spec.tasks[0], kInvocation,
                             InvocationRunDir(spec.execution, "20261126_130405", kInvocation));
    ASSERT_TRUE(job.ok()) << job.status();
    const std::string& s = job->script;
    ExpectBashParses(s, runtime);
    ExpectShellcheckClean(s, runtime);

    EXPECT_THAT(QuotedWordsAfter(s, "RUN_DIR="), ::testing::ElementsAre(job->run_dir));
    EXPECT_EQ(SbatchOption(s, "chdir"), job->run_dir);
    EXPECT_EQ(SbatchOption(s, "output"), absl::StrCat(job->run_dir, "/logs/slurm-%j.log"));
    EXPECT_EQ(SbatchOption(s, "constraint"), kHostileLine);
    EXPECT_EQ(SbatchOption(s, "comment"), kHostileLine);
    EXPECT_EQ(SbatchOption(s, "partition"), kHostileLine);
    EXPECT_THAT(s, HasSubstr(absl::StrCat("export HOSTILE=", ShellQuote(kHostile), "\n")));
    EXPECT_THAT(s, HasSubstr(ShellQuote(kHostile)));
    if (pyxis) {
      EXPECT_THAT(QuotedWordsAfter(s, "--container-image="),
                  ::testing::ElementsAre(kHostileLine, kHostileLine));
      const std::vector<std::string> mounts = MountEntries(s);
      EXPECT_THAT(mounts, ::testing::Contains(absl::StrCat(checkpoint, ":/checkpoint:ro")));
      EXPECT_THAT(mounts, ::testing::Contains(absl::StrCat(cache, ":/cache")));
      EXPECT_THAT(mounts, ::testing::Contains(absl::StrCat(eval_mount, ":", eval_target)));
      EXPECT_THAT(mounts, ::testing::Contains(absl::StrCat(dataset, ":/datasets")));
      EXPECT_THAT(mounts, ::testing::Contains(absl::StrCat(job->run_dir, "/artifacts:/results")));
    } else {
      EXPECT_THAT(QuotedWordsAfter(s, "export EVALCTL_CHECKPOINT_DIR="),
                  ::testing::ElementsAre(checkpoint));
      EXPECT_THAT(QuotedWordsAfter(s, "export EVALCTL_CACHE_DIR="), ::testing::ElementsAre(cache));
      EXPECT_THAT(QuotedWordsAfter(s, "export NEMO_EVALUATOR_DATASET_DIR="),
                  ::testing::ElementsAre(dataset));
    }
  }
  // An external endpoint (deployment none): its URL and model id.
  for (const char* runtime : {"pyxis", "none"}) {
    SCOPED_TRACE(runtime);
    InvocationSpec spec = MakeSpec("none", runtime);
    spec.target.url = absl::StrCat("https://api.example.com/v1/chat/completions?q=", kHostileLine);
    spec.target.model_id = kHostile;
    auto job = RenderFirst(spec);
    ASSERT_TRUE(job.ok()) << job.status();
    ExpectBashParses(job->script, runtime);
    ExpectShellcheckClean(job->script, runtime);
    EXPECT_THAT(QuotedWordsAfter(job->script, "export EVALCTL_ENDPOINT_URL="),
                ::testing::ElementsAre(spec.target.url));
    EXPECT_THAT(job->script,
                HasSubstr(absl::StrCat("export EVALCTL_MODEL_ID=", ShellQuote(kHostile), "\n")));
  }
}

// ---------------------------------------------------------------------------------------------
// Content

// The user's identity keys go into the Slurm job name through a safe alphabet.
TEST(RenderTest, JobNamePrefixIsMadeSafe) {
  InvocationSpec spec = MakeSpec("vllm", "pyxis");
  spec.execution.account = "team a";
  spec.execution.subproject = "x,y|z";
  auto job = RenderFirst(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->job_name_prefix, "team_a-x_y_z.gpqa_diamond");
}

TEST(RenderTest, SbatchHeader) {
  auto job = RenderFirst(MakeSpec("vllm", "pyxis"));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string run_dir = absl::StrCat(kRunDir, "/gpqa_diamond");
  EXPECT_EQ(job->run_dir, run_dir);
  EXPECT_EQ(job->job_name_prefix, "llm_eval-nemo-evaluator-launcher.gpqa_diamond");
  EXPECT_EQ(job->partition, "batch");
  const std::string& s = job->script;
  EXPECT_TRUE(absl::StartsWith(s, "#!/bin/bash\n#SBATCH --time=02:30:00\n")) << s;
  for (const std::string& line :
       {std::string("#SBATCH --account=llm_eval\n"), std::string("#SBATCH --partition=batch\n"),
        std::string("#SBATCH --nodes=1\n"), std::string("#SBATCH --ntasks-per-node=1\n"),
        std::string("#SBATCH --gres=gpu:8\n"),
        std::string(R"(#SBATCH --comment="{\"owner\": \"alice\", \"note\": \"nightly #3\"}")"
                    "\n"),
        std::string("#SBATCH --exclusive\n"), std::string("#SBATCH --mem=0\n"),
        absl::StrCat("#SBATCH --output=", run_dir, "/logs/slurm-%j.log\n"),
        std::string("#SBATCH --open-mode=append\n"), std::string("#SBATCH --no-requeue\n"),
        std::string("#SBATCH --signal=B:USR1@120\n"),
        absl::StrCat("#SBATCH --chdir=", run_dir, "\n")}) {
    EXPECT_THAT(s, HasSubstr(line));
  }
  EXPECT_THAT(s, Not(HasSubstr("--gpus-per-node")));
  EXPECT_THAT(s, Not(HasSubstr("--mpi")));
  EXPECT_THAT(s, HasSubstr("\nset -uo pipefail\n"));
}

// No xtrace (it would print the secrets' values as they are exported) and no errexit (the script
// must reach its teardown and report the evaluation's exit code), anywhere.
TEST(RenderTest, NoXtraceNoErrexit) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    auto job = RenderCase(c);
    ASSERT_TRUE(job.ok()) << job.status();
    for (absl::string_view raw : absl::StrSplit(job->script, '\n')) {
      const std::string line(absl::StripLeadingAsciiWhitespace(raw));
      if (absl::StartsWith(line, "#") || absl::StartsWith(line, "'")) continue;
      EXPECT_THAT(line, Not(::testing::ContainsRegex("set +-[a-zA-Z]*[xe]"))) << line;
      EXPECT_THAT(line, Not(HasSubstr("xtrace")));
      EXPECT_THAT(line, Not(HasSubstr("errexit")));
    }
  }
}

TEST(RenderTest, WalltimeOfADayOrMoreHasDays) {
  InvocationSpec spec = MakeSpec("none", "none");
  spec.execution.walltime_seconds = 86400 + 2 * 3600 + 3 * 60 + 4;
  auto job = RenderFirst(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->script, HasSubstr("#SBATCH --time=1-02:03:04\n"));
}

TEST(RenderTest, SbatchValuesAreQuotedForSbatch) {
  InvocationSpec spec = MakeSpec("none", "none");
  spec.execution.output_dir = "/lustre/my evals/50%";
  spec.execution.sbatch_comment = R"(a "b" \c 'd')";
  spec.execution.sbatch_extra_flags = {{"constraint", "gpu&ib"}};
  auto job = RenderTaskJob(spec, spec.tasks[0], kInvocation,
                           "/lustre/my evals/50%/20261126_130405-3f2a9c01d4e5b677");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->script, HasSubstr(R"(#SBATCH --comment="a \"b\" \\c 'd'")"));
  EXPECT_THAT(job->script, HasSubstr(R"(#SBATCH --constraint="gpu&ib")"));
  EXPECT_THAT(job->script,
              HasSubstr("#SBATCH --output=\"/lustre/my evals/50%%/"
                        "20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/slurm-%j.log\""));
  EXPECT_THAT(job->script, HasSubstr("#SBATCH --chdir=\"/lustre/my evals/50%/"));
}

TEST(RenderTest, SecretsNeverInTheScript) {
  for (const Case& c : AllCases()) {
    SCOPED_TRACE(c.name);
    auto job = RenderCase(c);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_THAT(job->script, Not(HasSubstr(kSecret)));
    EXPECT_THAT(job->script, Not(HasSubstr(kDepSecret)));
    EXPECT_THAT(job->script, Not(HasSubstr("hf_OTHER_secret_value")));
    EXPECT_THAT(job->script, Not(HasSubstr("nvapi-SECRET-key")));
    for (const JobEnv& e : job->env) {
      EXPECT_TRUE(e.secret) << e.name;
      EXPECT_TRUE(absl::StartsWith(e.name, "EVALCTL_SECRET_")) << e.name;
      EXPECT_THAT(job->script, Not(HasSubstr(e.value)));
    }
  }
}

TEST(RenderTest, SecretsTravelInTheEnvironmentAndAreExportedInTheirStepOnly) {
  auto job = RenderFirst(MakeSpec("vllm", "pyxis"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(EnvValue(*job, "EVALCTL_SECRET_EVAL_HF_TOKEN"), kSecret);
  EXPECT_EQ(EnvValue(*job, "EVALCTL_SECRET_DEP_HF_TOKEN"), kDepSecret);
  EXPECT_EQ(job->env.size(), 2u);
  const std::string& s = job->script;
  EXPECT_THAT(s, HasSubstr("export HF_TOKEN=\"${EVALCTL_SECRET_EVAL_HF_TOKEN}\"\n"));
  EXPECT_THAT(s, HasSubstr("export HF_TOKEN=\"${EVALCTL_SECRET_DEP_HF_TOKEN}\"\n"));
  EXPECT_THAT(s, HasSubstr("unset EVALCTL_SECRET_DEP_HF_TOKEN EVALCTL_SECRET_EVAL_HF_TOKEN\n"));
  // Literals are quoted, runtime values come from the node.
  EXPECT_THAT(s, HasSubstr("export HF_DATASETS_OFFLINE='1'\n"));
  EXPECT_THAT(s, HasSubstr("export VLLM_LOGGING_LEVEL='INFO'\n"));
  EXPECT_THAT(s, HasSubstr("export JOB_USER=\"${USER?"));
  // pyxis gets names only.
  EXPECT_THAT(s, HasSubstr("--container-env=HF_DATASETS_OFFLINE,HF_TOKEN,JOB_USER,"));
  EXPECT_THAT(s, HasSubstr("--container-env=HF_TOKEN,VLLM_LOGGING_LEVEL,"));
}

TEST(RenderTest, SharedJobSecretsAreGroupedPerTask) {
  std::vector<Case> cases = AllCases();
  const Case& c = cases.back();
  ASSERT_EQ(c.name, "vllm_pyxis_shared");
  auto job = RenderCase(c);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(EnvValue(*job, "EVALCTL_SECRET_EVAL0_HF_TOKEN"), kSecret);
  EXPECT_EQ(EnvValue(*job, "EVALCTL_SECRET_EVAL1_HF_TOKEN"), "hf_OTHER_secret_value");
  EXPECT_EQ(EnvValue(*job, "EVALCTL_SECRET_EVAL2_HF_TOKEN"), kSecret);
  EXPECT_EQ(job->run_dir, kRunDir);
  EXPECT_EQ(job->job_name_prefix, "llm_eval-nemo-evaluator-launcher.shared");
  EXPECT_THAT(job->script,
              HasSubstr(absl::StrCat("#SBATCH --output=", kRunDir, "/logs/slurm-%j.log\n")));
  for (const char* dir : {"gpqa_diamond", "ifeval", "ifeval.2"}) {
    EXPECT_THAT(job->script,
                HasSubstr(absl::StrCat("--output='", kRunDir, "/", dir, "/logs/client-%j.log'")));
  }
}

TEST(RenderTest, DeploymentStep) {
  auto job = RenderFirst(MakeSpec("vllm", "pyxis"));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string& s = job->script;
  EXPECT_THAT(s, HasSubstr("--overlap \\\n      --kill-on-bad-exit=1 \\\n      --nodes=1 \\\n"
                           "      --ntasks=1 \\\n"));
  EXPECT_THAT(s, HasSubstr("--container-image='vllm/vllm-openai:v0.10.1'"));
  EXPECT_THAT(s, HasSubstr(absl::StrCat(
                     "--container-mounts='", kRunDir,
                     "/gpqa_diamond/artifacts:/results,/lustre/ckpt/llama:/checkpoint:ro,"
                     "/lustre/hf_home:/root/.cache/huggingface'")));
  EXPECT_THAT(s, HasSubstr("--no-container-mount-home"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_SERVER_PORT=8000\n"));
  EXPECT_THAT(s, HasSubstr("evalctl_wait_ready \"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"'/health' || exit\n"));
  EXPECT_THAT(s, HasSubstr("EVALCTL_READY_TIMEOUT=9000\n"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_ENDPOINT_URL=\"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"'/v1/chat/"
                           "completions'\n"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_MODEL_ID='llama-3.1-8b-instruct'\n"));
}

TEST(RenderTest, MpiOnlyWhenConfigured) {
  auto job = RenderFirst(MakeSpec("trtllm", "pyxis"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->script, HasSubstr("--mpi='pmix'"));
}

TEST(RenderTest, NimHealthPathAndGpuVisibility) {
  auto job = RenderFirst(MakeSpec("nim", "pyxis"));
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->script, HasSubstr("\"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"'/v1/health/ready'"));
  EXPECT_THAT(job->script, HasSubstr("export NVIDIA_VISIBLE_DEVICES='all'\n"));
  EXPECT_THAT(job->script, HasSubstr("/lustre/nim_cache:/cache"));
}

TEST(RenderTest, DeploymentNoneUsesTheTarget) {
  auto job = RenderFirst(MakeSpec("none", "pyxis"));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string& s = job->script;
  EXPECT_THAT(s, Not(HasSubstr("evalctl_wait_ready '")));
  EXPECT_THAT(s, Not(HasSubstr("EVALCTL_SERVER_DRIVER}\" evalctl-server")));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_ENDPOINT_URL='https://integrate.api.nvidia.com/v1/"
                           "chat/completions'\n"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_MODEL_ID='meta/llama-3.1-8b-instruct'\n"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_API_KEY_NAME='NGC_API_KEY'\n"));
}

TEST(RenderTest, RuntimeNoneHasNoContainerFlagsAndUsesHostPaths) {
  auto job = RenderFirst(MakeSpec("generic", "none"));
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string& s = job->script;
  EXPECT_THAT(s, Not(HasSubstr("--container-image='")));
  EXPECT_THAT(s, Not(HasSubstr("--container-mounts=")));
  EXPECT_THAT(s, Not(HasSubstr("--container-env=")));
  EXPECT_THAT(s, Not(HasSubstr("--no-container-mount-home")));
  EXPECT_THAT(s, HasSubstr(absl::StrCat("export EVALCTL_RESULTS_DIR='", kRunDir,
                                        "/gpqa_diamond/artifacts'\n")));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_CHECKPOINT_DIR='/lustre/ckpt/custom'\n"));
  EXPECT_THAT(s, HasSubstr("export NEMO_EVALUATOR_DATASET_DIR='/lustre/datasets/gpqa'\n"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_ENDPOINT_URL=\"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"'/v1/completions'"));
  EXPECT_THAT(s, HasSubstr("\"http://127.0.0.1:${EVALCTL_SERVER_PORT}\"'/v1/models'"));
}

// The task's nemo_evaluator_config reaches the harness as a file the job writes into the task's
// artifacts/ (the container's /results) and EVALCTL_RUN_CONFIG names, as the catalog's commands
// expect (`--run_config "${EVALCTL_RUN_CONFIG}"`).
TEST(RenderTest, NemoEvaluatorConfigIsTheFileEvalctlRunConfigNames) {
  const std::string write =
      "  evalctl_write_file \"${dir}/artifacts/nemo_evaluator_config.yaml\" 'config:\n"
      "  params:\n"
      "    limit_samples: 10\n"
      "' || {\n";
  {
    auto job = RenderFirst(MakeSpec("vllm", "pyxis"));
    ASSERT_TRUE(job.ok()) << job.status();
    const std::string& s = job->script;
    EXPECT_THAT(s, HasSubstr(write));
    EXPECT_THAT(s, HasSubstr("    export EVALCTL_RUN_CONFIG='/results/nemo_evaluator_config.yaml'\n"));
    EXPECT_THAT(s, HasSubstr(",EVALCTL_RUN_CONFIG \\\n"));  // in --container-env
    EXPECT_THAT(s, HasSubstr("/gpqa_diamond/artifacts:/results"));
    EXPECT_THAT(s, Not(HasSubstr("EVALCTL_NEMO_EVALUATOR_CONFIG")));
    // Written before the step starts.
    EXPECT_LT(s.find(write), s.find("export EVALCTL_RUN_CONFIG="));
  }
  {
    auto job = RenderFirst(MakeSpec("vllm", "none"));
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_THAT(job->script, HasSubstr(write));
    EXPECT_THAT(job->script,
                HasSubstr(absl::StrCat("    export EVALCTL_RUN_CONFIG='", kRunDir,
                                       "/gpqa_diamond/artifacts/nemo_evaluator_config.yaml'\n")));
  }
  {
    InvocationSpec spec = MakeSpec("vllm", "pyxis");
    spec.tasks[0].nemo_evaluator_config_yaml.clear();
    auto job = RenderFirst(spec);
    ASSERT_TRUE(job.ok()) << job.status();
    EXPECT_THAT(job->script, Not(HasSubstr("EVALCTL_RUN_CONFIG")));
    EXPECT_THAT(job->script, Not(HasSubstr("nemo_evaluator_config.yaml")));
  }
}

TEST(RenderTest, TwoInstancesUseHaproxy) {
  std::vector<Case> cases = AllCases();
  const Case* c = nullptr;
  for (const Case& x : cases) {
    if (x.name == "vllm_pyxis_two_instances") c = &x;
  }
  ASSERT_NE(c, nullptr);
  auto job = RenderCase(*c);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string& s = job->script;
  EXPECT_THAT(s, HasSubstr("for ((evalctl_g = 0; evalctl_g < 2; evalctl_g++)); do\n"));
  EXPECT_THAT(s, HasSubstr("evalctl_select_instance \"${evalctl_g}\" 2\n"));
  EXPECT_THAT(s, HasSubstr("--nodes=2 \\\n      --ntasks=2 \\\n"));
  EXPECT_THAT(s, HasSubstr("--container-image='haproxy:latest'"));
  EXPECT_THAT(s, HasSubstr("evalctl_wait_ready 'http://127.0.0.1:5009/health' || exit\n"));
  EXPECT_THAT(s, HasSubstr("export EVALCTL_ENDPOINT_URL='http://127.0.0.1:5009/v1/chat/"));
  EXPECT_THAT(s, HasSubstr("#SBATCH --gpus-per-node=8\n"));
  EXPECT_THAT(s, Not(HasSubstr("--gres")));
  EXPECT_THAT(s, HasSubstr("EVALCTL_READY_TIMEOUT=1800\n"));
}

TEST(RenderTest, HostileValuesAreQuoted) {
  InvocationSpec spec = MakeSpec("generic", "pyxis");
  spec.deployment.served_model_name = kHostile;
  spec.tasks[0].env_vars.push_back(Literal("HOSTILE", kHostile));
  auto job = RenderFirst(spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_THAT(job->script, HasSubstr(absl::StrCat("export HOSTILE=", ShellQuote(kHostile), "\n")));
  EXPECT_THAT(job->script,
              HasSubstr(absl::StrCat("export EVALCTL_MODEL_ID=", ShellQuote(kHostile), "\n")));
}

// ---------------------------------------------------------------------------------------------
// Invalid input

struct BadCase {
  std::string what;
  std::function<void(InvocationSpec&)> mutate;
  std::string key;
};

TEST(RenderTest, InvalidInputNamesTheKey) {
  const std::vector<BadCase> cases = {
      {"relative output_dir", [](InvocationSpec& s) { s.execution.output_dir = "evals"; },
       "execution.output_dir"},
      {"output_dir with ..", [](InvocationSpec& s) { s.execution.output_dir = "/lustre/../etc"; },
       "execution.output_dir"},
      {"relative deployment mount",
       [](InvocationSpec& s) {
         s.execution.deployment_mounts = {{"data", "/data"}};
       },
       "execution.mounts.deployment"},
      {"deployment mount with ..",
       [](InvocationSpec& s) {
         s.execution.deployment_mounts = {{"/a/../../etc", "/data"}};
       },
       "execution.mounts.deployment"},
      {"relative container path",
       [](InvocationSpec& s) {
         s.execution.deployment_mounts = {{"/a", "data"}};
       },
       "execution.mounts.deployment"},
      {"comma in a mount",
       [](InvocationSpec& s) {
         s.execution.evaluation_mounts = {{"/a,b", "/data"}};
       },
       "execution.mounts.evaluation"},
      {"evaluation mount with ..",
       [](InvocationSpec& s) {
         s.execution.evaluation_mounts = {{"/x", "/data/../.."}};
       },
       "execution.mounts.evaluation"},
      {"relative checkpoint", [](InvocationSpec& s) { s.deployment.checkpoint_path = "ckpt"; },
       "deployment.checkpoint_path"},
      {"cache with ..", [](InvocationSpec& s) { s.deployment.cache_path = "/a/.."; },
       "deployment.cache_path"},
      {"relative dataset_dir", [](InvocationSpec& s) { s.tasks[0].dataset_dir = "data"; },
       "evaluation.tasks.0.dataset_dir"},
      {"newline in account", [](InvocationSpec& s) { s.execution.account = "a\nb"; },
       "execution.account"},
      {"newline in partition",
       [](InvocationSpec& s) { s.execution.partition = "batch\n#SBATCH --uid=0"; },
       "execution.partition"},
      {"newline in comment",
       [](InvocationSpec& s) { s.execution.sbatch_comment = "x\n#SBATCH --requeue"; },
       "execution.sbatch_comment"},
      {"hetjob in comment", [](InvocationSpec& s) { s.execution.sbatch_comment = "a HetJob"; },
       "execution.sbatch_comment"},
      {"newline in an extra flag value",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"mem", "1\n"}};
       },
       "execution.sbatch_extra_flags.mem"},
      {"bad extra flag name",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"mem 1", std::nullopt}};
       },
       "execution.sbatch_extra_flags.mem 1"},
      {"extra flag that overrides evalctl",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"requeue", std::nullopt}};
       },
       "execution.sbatch_extra_flags.requeue"},
      {"abbreviated extra flag",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"out", "/tmp/x"}};
       },
       "execution.sbatch_extra_flags.out"},
      {"extra flag with its own key",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"time", "10"}};
       },
       "execution.sbatch_extra_flags.time"},
      {"bad env name",
       [](InvocationSpec& s) { s.tasks[0].env_vars.push_back(Literal("A-B", "1")); },
       "evaluation.tasks.0.env_vars.A-B"},
      {"env name with a command",
       [](InvocationSpec& s) { s.deployment.env_vars.push_back(Literal("X=$(id)", "1")); },
       "deployment.env_vars.X=$(id)"},
      {"reserved env name",
       [](InvocationSpec& s) { s.tasks[0].env_vars.push_back(Literal("EVALCTL_MODEL_ID", "x")); },
       "evaluation.tasks.0.env_vars.EVALCTL_MODEL_ID"},
      {"runtime var not a name",
       [](InvocationSpec& s) { s.tasks[0].env_vars.push_back(Runtime("A", "$(id)")); },
       "evaluation.tasks.0.env_vars.A"},
      {"NUL in a command", [](InvocationSpec& s) { s.tasks[0].command = std::string("a\0b", 3); },
       "evaluation.tasks.0.command"},
      {"task dir with a slash", [](InvocationSpec& s) { s.tasks[0].dir_name = "a/b"; },
       "evaluation.tasks.0.name"},
      {"colon in the task dir with pyxis", [](InvocationSpec& s) { s.tasks[0].dir_name = "a:b"; },
       "evaluation.tasks.0.name"},
      {"comma in output_dir with pyxis",
       [](InvocationSpec& s) { s.execution.output_dir = "/lustre/a,b"; }, "execution.output_dir"},
      {"task dir ..", [](InvocationSpec& s) { s.tasks[0].dir_name = ".."; },
       "evaluation.tasks.0.name"},
      {"task dir with a newline", [](InvocationSpec& s) { s.tasks[0].dir_name = "a\nb"; },
       "evaluation.tasks.0.name"},
      {"unknown endpoint type", [](InvocationSpec& s) { s.tasks[0].endpoint_type = "ranking"; },
       "evaluation.tasks.0.endpoint_type"},
      {"missing container", [](InvocationSpec& s) { s.tasks[0].container = ""; },
       "evaluation.tasks.0.container"},
      {"missing image", [](InvocationSpec& s) { s.deployment.image = ""; }, "deployment.image"},
      {"missing command", [](InvocationSpec& s) { s.deployment.command = ""; },
       "deployment.command"},
      {"bad health path",
       [](InvocationSpec& s) { s.deployment.endpoints["health"] = "health check"; },
       "deployment.endpoints.health"},
      {"instances not dividing nodes",
       [](InvocationSpec& s) {
         s.execution.num_nodes = 3;
         s.execution.num_instances = 2;
       },
       "execution.num_instances"},
      {"bad runtime", [](InvocationSpec& s) { s.execution.container_runtime = "docker"; },
       "execution.container_runtime"},
      {"bad deployment type", [](InvocationSpec& s) { s.deployment.type = "tgi"; },
       "deployment.type"},
      {"bad port", [](InvocationSpec& s) { s.deployment.port = 70000; }, "deployment.port"},
      {"line break in the account", [](InvocationSpec& s) { s.execution.account = "a\nb"; },
       "execution.account"},
      {"no walltime", [](InvocationSpec& s) { s.execution.walltime_seconds = 0; },
       "execution.walltime"},
      // Hostile values where a value must be one line or a mountable path.
      {"hostile image", [](InvocationSpec& s) { s.deployment.image = kHostile; },
       "deployment.image"},
      {"hostile task container", [](InvocationSpec& s) { s.tasks[0].container = kHostile; },
       "evaluation.tasks.0.container"},
      {"hostile checkpoint_path",
       [](InvocationSpec& s) { s.deployment.checkpoint_path = absl::StrCat("/lustre/", kHostile); },
       "deployment.checkpoint_path"},
      {"colon in checkpoint_path",
       [](InvocationSpec& s) { s.deployment.checkpoint_path = "/lustre/a:/etc"; },
       "deployment.checkpoint_path"},
      {"hostile cache_path",
       [](InvocationSpec& s) { s.deployment.cache_path = absl::StrCat("/lustre/", kHostile); },
       "deployment.cache_path"},
      {"comma in cache_path", [](InvocationSpec& s) { s.deployment.cache_path = "/a,/etc:/x"; },
       "deployment.cache_path"},
      {"hostile evaluation mount",
       [](InvocationSpec& s) {
         s.execution.evaluation_mounts = {{absl::StrCat("/lustre/", kHostile), "/data"}};
       },
       "execution.mounts.evaluation"},
      {"hostile evaluation mount target",
       [](InvocationSpec& s) {
         s.execution.evaluation_mounts = {{"/data", absl::StrCat("/mnt/", kHostile)}};
       },
       "execution.mounts.evaluation"},
      {"hostile evaluation mount flags",
       [](InvocationSpec& s) {
         s.execution.evaluation_mounts = {{"/data", "/mnt:ro,/etc:/x"}};
       },
       "execution.mounts.evaluation"},
      {"hostile extra flag value",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"constraint", kHostile}};
       },
       "execution.sbatch_extra_flags.constraint"},
      {"hetjob in an extra flag value",
       [](InvocationSpec& s) {
         s.execution.sbatch_extra_flags = {{"constraint", "a packjob b"}};
       },
       "execution.sbatch_extra_flags.constraint"},
      {"hostile output_dir",
       [](InvocationSpec& s) { s.execution.output_dir = absl::StrCat("/lustre/", kHostile); },
       "execution.output_dir"},
      {"backslash in output_dir",
       [](InvocationSpec& s) { s.execution.output_dir = absl::StrCat("/lustre/", kHostileLine); },
       "execution.output_dir"},
      {"hostile url",
       [](InvocationSpec& s) {
         s.deployment.type = "none";
         s.target.url = absl::StrCat("https://api.example.com/v1?q=", kHostile);
       },
       "target.api_endpoint.url"},
      {"hostile health path",
       [](InvocationSpec& s) { s.deployment.endpoints["health"] = absl::StrCat("/", kHostileLine); },
       "deployment.endpoints.health"},
      {"hostile mpi", [](InvocationSpec& s) { s.execution.mpi = kHostile; }, "execution.mpi"},
      {"hostile account", [](InvocationSpec& s) { s.execution.account = kHostile; },
       "execution.account"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.what);
    InvocationSpec spec = MakeSpec("vllm", "pyxis");
    c.mutate(spec);
    auto job = RenderTaskJob(spec, spec.tasks[0], kInvocation,
                             InvocationRunDir(spec.execution, "20261126_130405", kInvocation));
    ASSERT_FALSE(job.ok());
    EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(job.status().message(), c.key + ":")) << job.status();
  }
}

TEST(RenderTest, RuntimeNoneRefusesSeveralInstances) {
  InvocationSpec spec = MakeSpec("vllm", "none");
  spec.execution.num_nodes = 2;
  spec.execution.num_instances = 2;
  spec.execution.deployment_n_tasks = 2;
  auto job = RenderFirst(spec);
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr("execution.num_instances:"));
  EXPECT_THAT(job.status().message(), HasSubstr("pyxis"));
}

TEST(RenderTest, BadInvocationIdIsRefused) {
  InvocationSpec spec = MakeSpec("none", "none");
  auto job = RenderTaskJob(spec, spec.tasks[0], "abc'; id", kRunDir);
  ASSERT_FALSE(job.ok());
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RenderTest, SharedJobNeedsDistinctTasks) {
  InvocationSpec spec = MakeSpec("vllm", "pyxis");
  spec.tasks.push_back(MakeTask(1, "gpqa_diamond", "pyxis"));
  auto job = RenderSharedJob(spec, kInvocation, kRunDir);
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr("evaluation.tasks.1.name:"));
  spec.tasks[1] = MakeTask(0, "other", "pyxis");
  job = RenderSharedJob(spec, kInvocation, kRunDir);
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr("evaluation.tasks:"));
}

TEST(RenderTest, SharedJobNeedsTasks) {
  InvocationSpec spec = MakeSpec("vllm", "pyxis");
  spec.tasks.clear();
  auto job = RenderSharedJob(spec, kInvocation, kRunDir);
  ASSERT_FALSE(job.ok());
  EXPECT_THAT(job.status().message(), HasSubstr("evaluation.tasks:"));
}

// ---------------------------------------------------------------------------------------------
// Running the scripts with bash, outside Slurm: the script then runs its steps on this host.

struct LocalRun {
  LocalRun() = default;
  LocalRun(LocalRun&& other) noexcept
      : root(std::exchange(other.root, {})),
        run_dir(std::move(other.run_dir)),
        env(std::move(other.env)),
        result(std::move(other.result)) {}
  LocalRun& operator=(LocalRun&&) = delete;
  ~LocalRun() {
    std::error_code ignored;
    if (!root.empty()) fs::remove_all(root, ignored);
  }

  fs::path root;  // holds output_dir; removed with this object
  std::string run_dir;
  std::vector<std::pair<std::string, std::string>> env;
  SubprocessResult result;
  std::string File(absl::string_view rel) const {
    return ReadFile(fs::path(run_dir) / std::string(rel));
  }
};

// Renders `spec` with output_dir under a fresh directory and runs the script with bash.
LocalRun RunLocally(absl::string_view name, InvocationSpec spec, bool shared = false,
                    absl::string_view output_subdir = "out") {
  LocalRun run;
  run.root = TempDir(name);
  spec.execution.output_dir = (run.root / std::string(output_subdir)).string();
  const std::string inv_dir = InvocationRunDir(spec.execution, "20261126_130405", kInvocation);
  auto job = shared ? RenderSharedJob(spec, kInvocation, inv_dir)
                    : RenderTaskJob(spec, spec.tasks.at(0), kInvocation, inv_dir);
  EXPECT_TRUE(job.ok()) << job.status();
  if (!job.ok()) return run;
  run.run_dir = job->run_dir;
  fs::create_directories(fs::path(run.run_dir) / "logs");  // as the agent does
  const fs::path script = fs::path(run.run_dir) / "job.sh";
  WriteFile(script, job->script);
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin"},
      {"HOME", run.root.string()},
      {"USER", "evalctl-test"}};
  for (const JobEnv& e : job->env) env.emplace_back(e.name, e.value);
  run.env = env;
  auto r = RunSubprocess({.argv = {"bash", script.string()},
                          .env = env,
                          .clear_env = true,
                          .working_dir = run.run_dir,
                          .timeout = absl::Seconds(60)});
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) run.result = *r;
  return run;
}

// A runtime-none spec with an external endpoint and the given task command.
InvocationSpec LocalSpec(absl::string_view command) {
  InvocationSpec spec = MakeSpec("none", "none");
  spec.tasks[0].command = std::string(command);
  return spec;
}

std::string Diagnostics(const LocalRun& run) {
  return absl::StrCat("exit ", run.result.exit_code, "\nstderr:\n", run.result.stderr_data,
                      "\nstdout:\n", run.result.stdout_data);
}

TEST(RunScriptTest, HostileValuesReachTheCommandByteForByteAndExecuteNothing) {
  for (const char* f : {"/tmp/evalctl_pwned", "/tmp/evalctl_pwned2", "/tmp/evalctl_pwned3"}) {
    fs::remove(f);
  }
  InvocationSpec spec = LocalSpec(
      "printf '%s' \"$HOSTILE\" >\"$EVALCTL_RESULTS_DIR/hostile.out\"\n"
      "printf '%s' \"$EVALCTL_MODEL_ID\" >\"$EVALCTL_RESULTS_DIR/model.out\"\n"
      "printf '%s' \"$EVALCTL_TASK_NAME\" >\"$EVALCTL_RESULTS_DIR/name.out\"\n"
      "printf '%s' \"$HF_TOKEN\" >\"$EVALCTL_RESULTS_DIR/secret.out\"\n"
      "printf '%s' \"$JOB_USER\" >\"$EVALCTL_RESULTS_DIR/user.out\"\n"
      "printf '%s' \"$PRE\" >\"$EVALCTL_RESULTS_DIR/pre.out\"\n"
      "printf '%s' \"$#\" >\"$EVALCTL_RESULTS_DIR/argc.out\"\n"
      "exit 7");
  spec.tasks[0].env_vars.push_back(Literal("HOSTILE", kHostile));
  spec.tasks[0].name = kHostile;
  spec.tasks[0].dir_name = "task 'one' $(touch evalctl_pwned4) `touch evalctl_pwned5` ; \" #";
  spec.tasks[0].pre_cmd = absl::StrCat("PRE=", ShellQuote(kHostile));
  spec.tasks[0].post_cmd = "printf '%s' \"post saw $?\" >\"$EVALCTL_RESULTS_DIR/post.out\"";
  spec.target.model_id = kHostile;
  // The output directory, hence every path in the script, is hostile too.
  LocalRun run =
      RunLocally("hostile", spec, /*shared=*/false,
                 "out dir 'q' \"dq\" $(touch evalctl_pwned6) `touch evalctl_pwned7` ; #");
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 7) << Diagnostics(run);
  EXPECT_EQ(run.File("artifacts/hostile.out"), kHostile);
  EXPECT_EQ(run.File("artifacts/model.out"), kHostile);
  EXPECT_EQ(run.File("artifacts/name.out"), kHostile);
  EXPECT_EQ(run.File("artifacts/pre.out"), kHostile);
  EXPECT_EQ(run.File("artifacts/secret.out"), kSecret);
  EXPECT_EQ(run.File("artifacts/user.out"), "evalctl-test");
  EXPECT_EQ(run.File("artifacts/argc.out"), "0");
  EXPECT_EQ(run.File("artifacts/post.out"), "post saw 7");
  EXPECT_EQ(run.File(kExitCodeFile), "7\n");
  EXPECT_EQ(run.File(kPhaseFile), "finished\n");
  for (const char* f : {"/tmp/evalctl_pwned", "/tmp/evalctl_pwned2", "/tmp/evalctl_pwned3"}) {
    EXPECT_FALSE(fs::exists(f)) << f;
  }
  for (const fs::path& dir : {fs::path(run.run_dir), fs::path(run.run_dir).parent_path(),
                              fs::path(run.run_dir).parent_path().parent_path(), run.root}) {
    for (const char* f : {"evalctl_pwned4", "evalctl_pwned5", "evalctl_pwned6", "evalctl_pwned7"}) {
      EXPECT_FALSE(fs::exists(dir / f)) << dir / f;
    }
  }
  // The secret is not in anything the job printed.
  EXPECT_THAT(run.result.stderr_data, Not(HasSubstr(kSecret)));
  EXPECT_THAT(run.result.stdout_data, Not(HasSubstr(kSecret)));
  EXPECT_THAT(run.File("logs/client-local.log"), Not(HasSubstr(kSecret)));
}

TEST(RunScriptTest, PhasesExitCodeAndLogs) {
  LocalRun run = RunLocally("phases", LocalSpec("echo hello from the harness"));
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 0) << Diagnostics(run);
  EXPECT_EQ(run.File(kPhaseFile), "finished\n");
  EXPECT_EQ(run.File(kExitCodeFile), "0\n");
  EXPECT_EQ(run.File("logs/client-local.log"), "hello from the harness\n");
  EXPECT_THAT(run.result.stderr_data, HasSubstr("evalctl: job exits with code 0"));
  EXPECT_FALSE(fs::exists(fs::path(run.run_dir) / ".evalctl/phase.tmp"));
}

// The file EVALCTL_RUN_CONFIG names holds the task's nemo_evaluator_config byte for byte, also
// when its values hold quotes and shell syntax, and a catalog-style command passes it on.
TEST(RunScriptTest, NemoEvaluatorConfigReachesTheCommandAsAFile) {
  const std::string yaml =
      "config:\n  params:\n    limit_samples: 3\n    temperature: 0.25\n"
      "    extra: 'it''s $(touch /tmp/evalctl_pwned_nec) `touch /tmp/evalctl_pwned_nec` \"q\"'\n";
  InvocationSpec spec = LocalSpec(
      "cp \"$EVALCTL_RUN_CONFIG\" \"$EVALCTL_RESULTS_DIR/seen.yaml\"\n"
      "printf '%s\\n' ${EVALCTL_RUN_CONFIG:+--run_config \"${EVALCTL_RUN_CONFIG}\"}");
  spec.tasks[0].nemo_evaluator_config_yaml = yaml;
  std::filesystem::remove("/tmp/evalctl_pwned_nec");
  LocalRun run = RunLocally("nec", spec);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 0) << Diagnostics(run);
  EXPECT_EQ(run.File("artifacts/seen.yaml"), yaml + "\n");
  EXPECT_EQ(run.File("logs/client-local.log"),
            absl::StrCat("--run_config\n", run.run_dir, "/artifacts/nemo_evaluator_config.yaml\n"));
  EXPECT_FALSE(fs::exists("/tmp/evalctl_pwned_nec"));
}

TEST(RunScriptTest, ExitCodesOf128AndAboveAreMappedBelow128) {
  LocalRun run = RunLocally("exit200", LocalSpec("exit 200"));
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, kExitEvalCodeOutOfRange) << Diagnostics(run);
  EXPECT_EQ(run.File(kExitCodeFile), "200\n");
}

TEST(RunScriptTest, PreCmdFailureStopsTheEvaluation) {
  InvocationSpec spec = LocalSpec("echo should-not-run");
  spec.tasks[0].pre_cmd = "false";
  LocalRun run = RunLocally("precmd", spec);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 1) << Diagnostics(run);
  const std::string log = run.File("logs/client-local.log");
  EXPECT_THAT(log, HasSubstr("evalctl: pre_cmd failed with exit code 1"));
  EXPECT_THAT(log, Not(HasSubstr("should-not-run")));
}

TEST(RunScriptTest, MissingSecretFailsSetup) {
  InvocationSpec spec = LocalSpec("true");
  LocalRun dir;  // only for its clean-up
  dir.root = TempDir("nosecret");
  spec.execution.output_dir = (dir.root / "out").string();
  const std::string inv_dir = InvocationRunDir(spec.execution, "20261126_130405", kInvocation);
  auto job = RenderTaskJob(spec, spec.tasks[0], kInvocation, inv_dir);
  ASSERT_TRUE(job.ok()) << job.status();
  fs::create_directories(fs::path(job->run_dir) / "logs");
  auto r = RunSubprocess({.argv = {"bash", "-c", job->script},
                          .env = {{"PATH", std::getenv("PATH")}},
                          .clear_env = true});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, kExitSetupFailed) << r->stderr_data;
  EXPECT_THAT(r->stderr_data, HasSubstr("lacks EVALCTL_SECRET_EVAL_HF_TOKEN"));
  EXPECT_EQ(ReadFile(fs::path(job->run_dir) / kPhaseFile), "finished\n");
}

TEST(RunScriptTest, Usr1IsForwardedToTheEvaluation) {
  // The harness asks the batch shell for USR1 (as Slurm would send it), handles it and goes on.
  LocalRun run =
      RunLocally("usr1", LocalSpec("trap 'echo got-usr1 >>\"$EVALCTL_RESULTS_DIR/usr1.out\"' USR1\n"
                                   "sleep 0.5\n"
                                   "kill -USR1 \"$PPID\"\n"
                                   "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.2; done\n"
                                   "echo done >>\"$EVALCTL_RESULTS_DIR/usr1.out\""));
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 0) << Diagnostics(run);
  EXPECT_EQ(run.File("artifacts/usr1.out"), "got-usr1\ndone\n");
  EXPECT_THAT(run.result.stderr_data, HasSubstr("forwarding it to the evaluation step"));
}

TEST(RunScriptTest, TermInterruptsAndTearsDown) {
  // The harness asks the batch shell for TERM (as Slurm would send it) while its child runs. It
  // asks only once the child is `sleep`: a signal that reaches a forked bash before it has reset
  // its inherited traps and exec'd is lost (the harness's race, not the script's).
  LocalRun run = RunLocally(
      "term", LocalSpec("sleep 20 &\n"
                        "until [[ \"$(cat /proc/$!/comm 2>/dev/null)\" == sleep ]]; do :; done\n"
                        "kill -TERM \"$PPID\"\nwait $!"));
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, kExitInterrupted) << Diagnostics(run);
  EXPECT_EQ(run.File(kPhaseFile), "finished\n");
  EXPECT_EQ(run.File(kExitCodeFile), "143\n");
  EXPECT_LT(absl::ToDoubleSeconds(run.result.elapsed), 15);
}

TEST(RunScriptTest, InterruptedMarkerMakesTheJobInterrupted) {
  LocalRun run = RunLocally(
      "marker", LocalSpec("touch \"$EVALCTL_RESULTS_DIR/.nemo_evaluator_interrupted\"; exit 0"));
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, kExitInterrupted) << Diagnostics(run);
  EXPECT_EQ(run.File(kExitCodeFile), "0\n");
}

// In an allocation (SLURM_JOB_ID set) with a fake srun that records its arguments: every hostile
// value reaches srun as exactly one argument, byte for byte, and nothing runs.
TEST(RunScriptTest, PyxisStepArgumentsReachSrunIntact) {
  const std::string hostile_path =
      "/data/it's $(touch evalctl_pwned8) `touch evalctl_pwned9` \"q\" ; x";
  InvocationSpec spec = MakeSpec("none", "pyxis");
  spec.execution.evaluation_mounts = {{hostile_path, "/mnt/a b'c $(id)"}};
  spec.tasks[0].container = "registry.example/eval:1 'x' $(touch evalctl_pwned10)";
  spec.tasks[0].command = kHostile;
  spec.tasks[0].pre_cmd = "echo 'pre' $(id)";
  spec.tasks[0].post_cmd = "`id`";
  LocalRun run;
  run.root = TempDir("pyxis");
  const fs::path bin = run.root / "bin";
  WriteFile(bin / "srun", "#!/bin/bash\nprintf '%s\\0' \"$@\" >\"$FAKE_SRUN_ARGV\"\n");
  WriteFile(bin / "scontrol", "#!/bin/bash\necho node7\n");
  fs::permissions(bin / "srun", fs::perms::owner_all);
  fs::permissions(bin / "scontrol", fs::perms::owner_all);
  spec.execution.output_dir = (run.root / "out").string();
  auto job = RenderTaskJob(spec, spec.tasks[0], kInvocation,
                           InvocationRunDir(spec.execution, "20261126_130405", kInvocation));
  ASSERT_TRUE(job.ok()) << job.status();
  fs::create_directories(fs::path(job->run_dir) / "logs");
  const fs::path argv_file = run.root / "argv";
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", absl::StrCat(bin.string(), ":", std::getenv("PATH"))},
      {"SLURM_JOB_ID", "4242"},
      {"SLURM_JOB_NODELIST", "node7"},
      {"USER", "evalctl-test"},
      {"FAKE_SRUN_ARGV", argv_file.string()}};
  for (const JobEnv& e : job->env) env.emplace_back(e.name, e.value);
  auto r = RunSubprocess({.argv = {"bash", "-c", job->script},
                          .env = env,
                          .clear_env = true,
                          .working_dir = job->run_dir});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  std::vector<std::string> argv = absl::StrSplit(ReadFile(argv_file), '\0');
  ASSERT_FALSE(argv.empty());
  argv.pop_back();  // after the last NUL
  EXPECT_THAT(argv, ::testing::Contains(absl::StrCat("--container-mounts=", job->run_dir,
                                                     "/artifacts:/results,", hostile_path,
                                                     ":/mnt/a b'c $(id)")));
  EXPECT_THAT(argv,
              ::testing::Contains(absl::StrCat("--container-image=", spec.tasks[0].container)));
  EXPECT_THAT(argv, ::testing::Contains("--nodelist=node7"));
  EXPECT_THAT(argv,
              ::testing::Contains(absl::StrCat("--output=", job->run_dir, "/logs/client-%j.log")));
  ASSERT_GE(argv.size(), 4u);
  EXPECT_EQ(argv[argv.size() - 4], "evalctl-eval");
  EXPECT_EQ(argv[argv.size() - 3], "echo 'pre' $(id)");
  EXPECT_EQ(argv[argv.size() - 2], kHostile);
  EXPECT_EQ(argv[argv.size() - 1], "`id`");
  for (const fs::path& dir : {fs::path(job->run_dir), run.root}) {
    for (const char* f : {"evalctl_pwned8", "evalctl_pwned9", "evalctl_pwned10"}) {
      EXPECT_FALSE(fs::exists(dir / f)) << dir / f;
    }
  }
  EXPECT_THAT(r->stderr_data, HasSubstr("job 4242"));
}

// A deployment of type generic running a real HTTP server on this host.
InvocationSpec ServerSpec(int port, absl::string_view server_command, absl::string_view eval) {
  InvocationSpec spec = MakeSpec("generic", "none");
  spec.deployment.command = std::string(server_command);
  spec.deployment.pre_cmd = "";
  spec.deployment.port = port;
  spec.deployment.endpoints = {{"health", "/"}, {"chat", "/v1/chat/completions"}};
  spec.tasks[0].command = std::string(eval);
  spec.tasks[0].pre_cmd = "";
  spec.tasks[0].post_cmd = "";
  spec.tasks[0].dataset_dir = std::nullopt;
  spec.tasks[0].endpoint_type = "chat";
  spec.deployment.env_vars = {Host("HF_TOKEN", kDepSecret), Literal("DEP_ONLY", "dep literal")};
  spec.tasks[0].env_vars.push_back(Literal("EVAL_ONLY", "eval literal"));
  return spec;
}

TEST(RunScriptTest, DeploymentReadyEvaluationTeardown) {
  const int port = FreePort();
  const std::string server = absl::StrCat(
      "env >\"$EVALCTL_RESULTS_DIR/server_env\"\n"
      "exec python3 -m http.server ",
      port, " --bind 127.0.0.1 --directory \"$EVALCTL_RESULTS_DIR\"");
  InvocationSpec spec =
      ServerSpec(port, server,
                 "env >\"$EVALCTL_RESULTS_DIR/eval_env\"\n"
                 "curl -sf -o /dev/null \"${EVALCTL_ENDPOINT_URL%/v1/chat/completions}/\"");
  LocalRun run = RunLocally("server", spec);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 0) << Diagnostics(run);
  EXPECT_EQ(run.File(kPhaseFile), "finished\n");
  const std::string server_env = run.File("artifacts/server_env");
  const std::string eval_env = run.File("artifacts/eval_env");
  // Each step sees its own variables and secrets only.
  EXPECT_THAT(server_env, HasSubstr(absl::StrCat("HF_TOKEN=", kDepSecret, "\n")));
  EXPECT_THAT(server_env, HasSubstr("DEP_ONLY=dep literal\n"));
  EXPECT_THAT(server_env, Not(HasSubstr(kSecret)));
  EXPECT_THAT(server_env, Not(HasSubstr("EVAL_ONLY")));
  EXPECT_THAT(server_env, Not(HasSubstr("EVALCTL_SECRET_")));
  EXPECT_THAT(eval_env, HasSubstr(absl::StrCat("HF_TOKEN=", kSecret, "\n")));
  EXPECT_THAT(eval_env, HasSubstr("EVAL_ONLY=eval literal\n"));
  EXPECT_THAT(eval_env, HasSubstr(absl::StrCat("EVALCTL_ENDPOINT_URL=http://127.0.0.1:", port,
                                               "/v1/chat/completions\n")));
  EXPECT_THAT(eval_env, Not(HasSubstr(kDepSecret)));
  EXPECT_THAT(eval_env, Not(HasSubstr("DEP_ONLY")));
  EXPECT_THAT(eval_env, Not(HasSubstr("EVALCTL_SECRET_")));
  // The server is gone.
  auto probe = RunSubprocess({.argv = {"curl", "-s", "-o", "/dev/null", "--max-time", "2",
                                       absl::StrCat("http://127.0.0.1:", port, "/")}});
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_NE(probe->exit_code, 0) << "the server still answers after the job ended";
}

TEST(RunScriptTest, ServerThatDiesFailsFast) {
  InvocationSpec spec = ServerSpec(FreePort(), "echo cannot load the model >&2; exit 3", "true");
  LocalRun run = RunLocally("dies", spec);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, kExitServerDied) << Diagnostics(run);
  EXPECT_THAT(run.result.stderr_data,
              HasSubstr("evalctl: deployment instance 0 exited before http://127.0.0.1:"));
  EXPECT_THAT(run.result.stderr_data,
              HasSubstr(absl::StrCat(run.run_dir, "/logs/server-0-local-")));
  EXPECT_THAT(run.File("logs/server-0-local-0.log"), HasSubstr("cannot load the model"));
  EXPECT_EQ(run.File(kPhaseFile), "finished\n");
  EXPECT_FALSE(fs::exists(fs::path(run.run_dir) / kExitCodeFile));
  EXPECT_LT(absl::ToDoubleSeconds(run.result.elapsed), 20);
}

TEST(RunScriptTest, ServerThatNeverAnswersTimesOut) {
  InvocationSpec spec = ServerSpec(FreePort(), "sleep 60", "true");
  spec.execution.endpoint_readiness_timeout_seconds = 3;
  LocalRun run = RunLocally("timeout", spec);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, kExitEndpointTimeout) << Diagnostics(run);
  EXPECT_THAT(run.result.stderr_data, HasSubstr("was not ready after 3 s"));
  EXPECT_EQ(run.File(kPhaseFile), "finished\n");
  EXPECT_LT(absl::ToDoubleSeconds(run.result.elapsed), 20);
}

TEST(RunScriptTest, SharedJobRunsEachTaskInItsOwnDirectory) {
  InvocationSpec spec = LocalSpec("echo first; exit 0");
  spec.execution.shared_deployment = true;
  TaskSpec second = MakeTask(1, "second", "none");
  second.command = "echo second; exit 4";
  TaskSpec third = MakeTask(2, "third", "none");
  third.command = "echo third; exit 5";
  third.env_vars = {Host("HF_TOKEN", "third-secret")};
  spec.tasks.push_back(second);
  spec.tasks.push_back(third);
  LocalRun run = RunLocally("shared", spec, /*shared=*/true);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 4) << Diagnostics(run);
  EXPECT_EQ(run.File("gpqa_diamond/.evalctl/eval_exit_code"), "0\n");
  EXPECT_EQ(run.File("second/.evalctl/eval_exit_code"), "4\n");
  EXPECT_EQ(run.File("third/.evalctl/eval_exit_code"), "5\n");
  EXPECT_EQ(run.File("third/logs/client-local.log"), "third\n");
  for (const char* dir : {".", "gpqa_diamond", "second", "third"}) {
    EXPECT_EQ(run.File(absl::StrCat(dir, "/", kPhaseFile)), "finished\n") << dir;
  }
}

TEST(RunScriptTest, SharedJobSkipsTasksThatSucceededBefore) {
  InvocationSpec spec = LocalSpec("echo ran >>\"$EVALCTL_RESULTS_DIR/runs\"");
  spec.execution.shared_deployment = true;
  TaskSpec second = MakeTask(1, "second", "none");
  second.command = "echo ran >>\"$EVALCTL_RESULTS_DIR/runs\"; exit 3";
  spec.tasks.push_back(second);
  LocalRun run = RunLocally("skip", spec, /*shared=*/true);
  ASSERT_FALSE(run.run_dir.empty());
  EXPECT_EQ(run.result.exit_code, 3) << Diagnostics(run);
  // Run the same script again, as a resumed attempt would.
  auto r = RunSubprocess({.argv = {"bash", (fs::path(run.run_dir) / "job.sh").string()},
                          .env = run.env,
                          .clear_env = true,
                          .timeout = absl::Seconds(60)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3) << r->stderr_data;
  EXPECT_EQ(run.File("gpqa_diamond/artifacts/runs"), "ran\n");
  EXPECT_EQ(run.File("second/artifacts/runs"), "ran\nran\n");
  EXPECT_THAT(r->stderr_data,
              HasSubstr("/gpqa_diamond: succeeded in an earlier attempt; not run again"));
  EXPECT_EQ(run.File(".evalctl/phase"), "finished\n");
  EXPECT_EQ(run.File("second/.evalctl/phase"), "finished\n");

  // Once every task has succeeded, a further attempt deploys nothing and exits 0.
  WriteFile(fs::path(run.run_dir) / "second" / kExitCodeFile, "0\n");
  r = RunSubprocess({.argv = {"bash", (fs::path(run.run_dir) / "job.sh").string()},
                     .env = run.env,
                     .clear_env = true,
                     .timeout = absl::Seconds(60)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_THAT(r->stderr_data, HasSubstr("every task succeeded in an earlier attempt"));
  EXPECT_EQ(run.File("second/artifacts/runs"), "ran\nran\n");
}

// ---------------------------------------------------------------------------------------------
// From a configuration file to the script: every string key that reaches a script, set to a
// hostile value in the user's YAML. Either the loader or the renderer refuses it with an error
// that names the key, or the script parses, passes shellcheck and holds the value as a literal.

// A YAML double-quoted scalar holding `v` exactly. In a value, `${` is escaped (`\${`) so that
// interpolation leaves it as text; keys are never interpolated.
std::string YamlQuoted(absl::string_view v, bool is_value = true) {
  std::string out = "\"";
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (is_value && c == '$' && i + 1 < v.size() && v[i + 1] == '{') {
      out += "\\\\${";
      ++i;
    } else if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// `-o key="value"`.
std::string Set(absl::string_view key, absl::string_view value) {
  return absl::StrCat("++", key, "=", YamlQuoted(value));
}

constexpr char kVllmConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: vllm
  - _self_
execution:
  hostname: head
  account: acct
  output_dir: /scratch/results
deployment:
  checkpoint_path: null
  hf_model_handle: org/model
  served_model_name: model
evaluation:
  tasks:
    - name: hellaswag
)";

constexpr char kGenericConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: generic
  - _self_
execution:
  hostname: head
  account: acct
  output_dir: /scratch/results
deployment:
  image: server:1
  command: serve
  served_model_name: model
evaluation:
  tasks:
    - name: hellaswag
)";

constexpr char kExternalConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: head
  account: acct
  output_dir: /scratch/results
target:
  api_endpoint:
    url: https://api.example.com/v1/chat/completions
    model_id: model
evaluation:
  tasks:
    - name: ifeval
)";

// Container runtime none: the built-in catalog tasks need pyxis, so the task brings its command.
const std::vector<std::string> kRuntimeNone = {"execution.container_runtime=none",
                                               "evaluation.tasks=[{name: t, command: run}]"};

struct ConfigCase {
  std::string what;
  std::string yaml;
  std::vector<std::string> overrides;
  // Refused: the key the error names. Empty: accepted, and `check` sees the result.
  std::string refused_key;
  std::function<void(const InvocationSpec&, const RenderedTaskJob&)> check;
};

std::vector<ConfigCase> HostileConfigCases() {
  const std::string ckpt = absl::StrCat(kHostilePath, "/ckpt");
  const std::string cache = absl::StrCat(kHostilePath, "/cache");
  const std::string data = absl::StrCat(kHostilePath, "/data");
  const std::string target = "/mnt/it's $(x) `y` ; # z";
  const std::string url = absl::StrCat("https://api.example.com/v1/chat/completions?q=",
                                       kHostileLine);
  auto images = [](const InvocationSpec&, const RenderedTaskJob& job) {
    return QuotedWordsAfter(job.script, "--container-image=");
  };
  auto has_quoted = [](std::string value) {
    return [value](const InvocationSpec&, const RenderedTaskJob& job) {
      EXPECT_THAT(job.script, HasSubstr(ShellQuote(value)));
    };
  };
  auto mount = [](std::string entry) {
    return [entry](const InvocationSpec&, const RenderedTaskJob& job) {
      EXPECT_THAT(MountEntries(job.script), ::testing::Contains(entry));
    };
  };
  auto export_of = [](std::string name, std::string value) {
    return [name, value](const InvocationSpec&, const RenderedTaskJob& job) {
      EXPECT_THAT(QuotedWordsAfter(job.script, absl::StrCat("export ", name, "=")),
                  ::testing::Contains(value));
    };
  };
  auto sbatch = [](std::string option, std::string value) {
    return [option, value](const InvocationSpec&, const RenderedTaskJob& job) {
      EXPECT_EQ(SbatchOption(job.script, option), value);
    };
  };
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  return {
      // deployment.image: one line, quoted.
      {"image", kVllmConfig, {Set("deployment.image", kHostileLine)}, "",
       [images](const InvocationSpec& spec, const RenderedTaskJob& job) {
         EXPECT_THAT(images(spec, job), ::testing::Contains(std::string(kHostileLine)));
       }},
      {"image with a newline", kVllmConfig, {Set("deployment.image", kHostile)},
       "deployment.image"},
      // deployment.extra_args: shell text appended to the server command (as in NEL), which
      // the script hands to the server's bash as one quoted word.
      {"extra_args", kVllmConfig, {Set("deployment.extra_args", kHostile)}, "",
       [](const InvocationSpec& spec, const RenderedTaskJob& job) {
         EXPECT_TRUE(absl::EndsWith(spec.deployment.command, kHostile)) << spec.deployment.command;
         EXPECT_THAT(job.script, HasSubstr(ShellQuote(spec.deployment.command)));
       }},
      // deployment.hf_model_handle and served_model_name go into the command unquoted.
      {"hf_model_handle", kVllmConfig, {Set("deployment.hf_model_handle", kHostile)},
       "deployment.hf_model_handle"},
      {"hf_model_handle on one line", kVllmConfig,
       {Set("deployment.hf_model_handle", kHostileLine)}, "deployment.hf_model_handle"},
      {"hf_model_handle with a space", kVllmConfig,
       {Set("deployment.hf_model_handle", "org/model --trust-remote-code")},
       "deployment.hf_model_handle"},
      {"plain hf_model_handle", kVllmConfig,
       {Set("deployment.hf_model_handle", "meta-llama/Llama-3.1-8B_x.v2")}, "",
       [](const InvocationSpec& spec, const RenderedTaskJob& job) {
         EXPECT_TRUE(absl::StartsWith(spec.deployment.command,
                                      "vllm serve meta-llama/Llama-3.1-8B_x.v2 "));
         EXPECT_THAT(job.script, HasSubstr(ShellQuote(spec.deployment.command)));
       }},
      {"served_model_name", kVllmConfig, {Set("deployment.served_model_name", kHostileLine)},
       "deployment.served_model_name"},
      {"served_model_name of generic", kGenericConfig,
       {Set("deployment.served_model_name", "my model")}, "deployment.served_model_name"},
      // deployment.checkpoint_path and cache_path: mounted (pyxis) or exported (none).
      {"checkpoint_path", kVllmConfig,
       {"deployment.hf_model_handle=null", Set("deployment.checkpoint_path", ckpt)}, "",
       mount(absl::StrCat(ckpt, ":/checkpoint:ro"))},
      {"checkpoint_path, runtime none", kVllmConfig,
       with({"deployment.hf_model_handle=null", Set("deployment.checkpoint_path", ckpt)},
            kRuntimeNone),
       "", export_of("EVALCTL_CHECKPOINT_DIR", ckpt)},
      {"checkpoint_path with a newline", kVllmConfig,
       {"deployment.hf_model_handle=null",
        Set("deployment.checkpoint_path", absl::StrCat("/lustre/", kHostile))},
       "deployment.checkpoint_path"},
      {"checkpoint_path with a colon", kVllmConfig,
       {"deployment.hf_model_handle=null", Set("deployment.checkpoint_path", "/a:/etc")},
       "deployment.checkpoint_path"},
      {"checkpoint_path relative", kVllmConfig,
       {"deployment.hf_model_handle=null", Set("deployment.checkpoint_path", kHostileLine)},
       "deployment.checkpoint_path"},
      {"cache_path", kVllmConfig, {Set("deployment.cache_path", cache)}, "",
       mount(absl::StrCat(cache, ":/cache"))},
      {"cache_path, runtime none", kVllmConfig,
       with({Set("deployment.cache_path", cache)}, kRuntimeNone), "",
       export_of("EVALCTL_CACHE_DIR", cache)},
      {"cache_path with a newline", kVllmConfig,
       {Set("deployment.cache_path", absl::StrCat("/lustre/", kHostile))}, "deployment.cache_path"},
      {"cache_path with a comma", kVllmConfig, {Set("deployment.cache_path", "/a,/etc")},
       "deployment.cache_path"},
      // execution.mounts.evaluation (and .deployment): host path → container path.
      {"evaluation mount", kVllmConfig,
       {absl::StrCat("++execution.mounts.evaluation={", YamlQuoted(data, false), ": ",
                     YamlQuoted(target), "}")},
       "", mount(absl::StrCat(data, ":", target))},
      {"deployment mount", kVllmConfig,
       {absl::StrCat("++execution.mounts.deployment={", YamlQuoted(data, false), ": ",
                     YamlQuoted(target), "}")},
       "", mount(absl::StrCat(data, ":", target))},
      {"evaluation mount with a newline", kVllmConfig,
       {absl::StrCat("++execution.mounts.evaluation={",
                     YamlQuoted(absl::StrCat("/lustre/", kHostile), false), ": /data}")},
       "execution.mounts.evaluation"},
      {"evaluation mount target with a newline", kVllmConfig,
       {absl::StrCat("++execution.mounts.evaluation={/data: ",
                     YamlQuoted(absl::StrCat("/mnt/", kHostile)), "}")},
       "execution.mounts.evaluation"},
      {"evaluation mount with a comma", kVllmConfig,
       {"++execution.mounts.evaluation={'/a,/etc': /data}"}, "execution.mounts.evaluation"},
      // target.api_endpoint.url and model_id (deployment none).
      {"api_endpoint.url", kExternalConfig, {Set("target.api_endpoint.url", url)}, "",
       export_of("EVALCTL_ENDPOINT_URL", url)},
      {"api_endpoint.url with a newline", kExternalConfig,
       {Set("target.api_endpoint.url", absl::StrCat("https://h/v1?q=", kHostile))},
       "target.api_endpoint.url"},
      {"api_endpoint.url not http", kExternalConfig, {Set("target.api_endpoint.url", kHostileLine)},
       "target.api_endpoint.url"},
      {"api_endpoint.model_id", kExternalConfig, {Set("target.api_endpoint.model_id", kHostile)},
       "", has_quoted(kHostile)},
      // execution.sbatch_extra_flags: values on #SBATCH lines, as sbatch reads them.
      {"sbatch_extra_flags value", kVllmConfig,
       {Set("execution.sbatch_extra_flags.constraint", kHostileLine)}, "",
       sbatch("constraint", kHostileLine)},
      {"sbatch_extra_flags value with a newline", kVllmConfig,
       {Set("execution.sbatch_extra_flags.constraint", kHostile)},
       "execution.sbatch_extra_flags.constraint"},
      {"sbatch_extra_flags value with hetjob", kVllmConfig,
       {Set("execution.sbatch_extra_flags.constraint", "a hetjob b")},
       "execution.sbatch_extra_flags.constraint"},
      {"sbatch_extra_flags name", kVllmConfig,
       {"++execution.sbatch_extra_flags={'x; touch /tmp/p': true}"},
       "execution.sbatch_extra_flags.x; touch /tmp/p"},
      {"sbatch_comment", kVllmConfig, {Set("execution.sbatch_comment", kHostileLine)}, "",
       sbatch("comment", kHostileLine)},
      {"partition", kVllmConfig, {Set("execution.partition", kHostileLine)}, "",
       sbatch("partition", kHostileLine)},
      // execution.account: sbatch's --account as it is; the job name through a safe alphabet.
      {"account", kVllmConfig, {Set("execution.account", kHostileLine)}, "",
       [](const InvocationSpec&, const RenderedTaskJob& job) {
         EXPECT_EQ(SbatchOption(job.script, "account"), kHostileLine);
         EXPECT_TRUE(absl::StartsWith(job.job_name_prefix,
                                      layout::SafeJobName(kHostileLine) + "-"))
             << job.job_name_prefix;
         EXPECT_EQ(job.job_name_prefix, layout::SafeJobName(job.job_name_prefix));
       }},
      // execution.output_dir: every path of the job starts with it.
      {"output_dir", kVllmConfig, {Set("execution.output_dir", kHostilePath)}, "",
       [](const InvocationSpec&, const RenderedTaskJob& job) {
         EXPECT_TRUE(absl::StartsWith(job.run_dir, kHostilePath)) << job.run_dir;
         EXPECT_THAT(QuotedWordsAfter(job.script, "RUN_DIR="), ::testing::ElementsAre(job.run_dir));
         EXPECT_EQ(SbatchOption(job.script, "chdir"), job.run_dir);
         EXPECT_EQ(SbatchOption(job.script, "output"),
                   absl::StrCat(job.run_dir, "/logs/slurm-%j.log"));
         EXPECT_THAT(MountEntries(job.script),
                     ::testing::Contains(absl::StrCat(job.run_dir, "/artifacts:/results")));
       }},
      {"output_dir with a newline", kVllmConfig,
       {Set("execution.output_dir", absl::StrCat("/lustre/", kHostile))}, "execution.output_dir"},
      {"output_dir with a backslash", kVllmConfig,
       {Set("execution.output_dir", absl::StrCat("/lustre/", kHostileLine))},
       "execution.output_dir"},
      {"output_dir with a colon (pyxis mounts it)", kVllmConfig,
       {Set("execution.output_dir", "/lustre/a:b")}, "execution.output_dir"},
      {"output_dir relative", kVllmConfig, {Set("execution.output_dir", kHostileLine)},
       "execution.output_dir"},
      // The task's container and dataset directory.
      {"task container", kVllmConfig, {Set("evaluation.tasks.0.container", kHostileLine)}, "",
       [images](const InvocationSpec& spec, const RenderedTaskJob& job) {
         EXPECT_THAT(images(spec, job), ::testing::Contains(std::string(kHostileLine)));
       }},
      {"task container with a newline", kVllmConfig,
       {Set("evaluation.tasks.0.container", kHostile)}, "evaluation.tasks.0.container"},
      {"task dataset_dir", kVllmConfig,
       {Set("evaluation.tasks.0.dataset_dir", absl::StrCat(kHostilePath, "/ds"))}, "",
       mount(absl::StrCat(kHostilePath, "/ds:/datasets"))},
      {"task dataset_dir with a newline", kVllmConfig,
       {Set("evaluation.tasks.0.dataset_dir", absl::StrCat("/lustre/", kHostile))},
       "evaluation.tasks.0.dataset_dir"},
      // Shell text the user writes: quoted into the script as one word each.
      {"deployment command", kGenericConfig, {Set("deployment.command", kHostile)}, "",
       has_quoted(kHostile)},
      {"deployment pre_cmd", kVllmConfig, {Set("deployment.pre_cmd", kHostile)}, "",
       has_quoted(kHostile)},
      {"task command", kVllmConfig, {Set("evaluation.tasks.0.command", kHostile)}, "",
       has_quoted(kHostile)},
      {"evaluation pre_cmd", kVllmConfig, {Set("evaluation.pre_cmd", kHostile)}, "",
       has_quoted(kHostile)},
      {"environment value", kVllmConfig, {Set("evaluation.env_vars.HOSTILE", kHostile)}, "",
       [](const InvocationSpec&, const RenderedTaskJob& job) {
         EXPECT_THAT(job.script,
                     HasSubstr(absl::StrCat("export HOSTILE=", ShellQuote(kHostile), "\n")));
       }},
      {"deployment health endpoint", kVllmConfig,
       {Set("deployment.endpoints.health", absl::StrCat("/", kHostileLine))},
       "deployment.endpoints.health"},
  };
}

TEST(ConfigToScriptTest, HostileValuesAreRefusedByKeyOrRenderedLiterally) {
  for (const char* f : {"/tmp/evalctl_pwned", "/tmp/evalctl_pwned2", "/tmp/evalctl_pwned3"}) {
    fs::remove(f);
  }
  for (const ConfigCase& c : HostileConfigCases()) {
    SCOPED_TRACE(c.what);
    LoadRequest req;
    req.yaml = c.yaml;
    req.file_name = "run.yaml";
    req.overrides = c.overrides;
    req.environment = {{"USER", "alice"}};
    auto spec = LoadInvocation(req);
    absl::Status status = spec.status();
    absl::StatusOr<RenderedTaskJob> job = absl::UnknownError("not rendered");
    if (spec.ok()) {
      job = RenderTaskJob(*spec, spec->tasks.at(0), kInvocation,
                          InvocationRunDir(spec->execution, "20261126_130405", kInvocation));
      status = job.status();
    }
    if (!c.refused_key.empty()) {
      if (status.ok()) {
        ADD_FAILURE() << "accepted; expected an error naming " << c.refused_key;
        continue;
      }
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
      // `key: what is wrong`, or `key.<entry>: ...` for an entry of a map such as mounts.
      const size_t at = status.message().find(c.refused_key + ": ") != absl::string_view::npos
                            ? status.message().find(c.refused_key + ": ")
                            : status.message().find(c.refused_key + ".");
      EXPECT_NE(at, absl::string_view::npos) << "the error does not name " << c.refused_key
                                             << ": " << status;
      continue;
    }
    if (!status.ok()) {
      ADD_FAILURE() << status;
      continue;
    }
    ExpectBashParses(job->script, c.what);
    ExpectShellcheckClean(job->script, c.what);
    c.check(*spec, *job);
  }
  for (const char* f : {"/tmp/evalctl_pwned", "/tmp/evalctl_pwned2", "/tmp/evalctl_pwned3"}) {
    EXPECT_FALSE(fs::exists(f)) << f;
  }
}

}  // namespace
}  // namespace evalctl::config

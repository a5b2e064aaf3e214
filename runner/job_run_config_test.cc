// A config's nemo_evaluator_config reaches evalctl-runner through the job evalctl renders: the
// config is loaded as the controller loads it (LoadInvocation: the global
// evaluation.nemo_evaluator_config merged with the task's), the job of the built-in task
// evalctl.arithmetic is rendered (RenderTaskJob), and the script runs with bash outside Slurm
// (its steps then run on this host) with the real evalctl-runner on PATH, against an
// OpenAI-compatible endpoint in this process that records every request.
#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/subprocess.h"
#include "common/testing/wait_for.h"
#include "controller/config/loader.h"
#include "controller/config/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace evalctl::runner {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kInvocation[] = "0c0ffee0c0ffee00";

// $OUTPUT_DIR and $URL are replaced.
constexpr char kConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: local
  username: tester
  account: acct
  output_dir: $OUTPUT_DIR
  container_runtime: none
target:
  api_endpoint: {url: '$URL', model_id: recorder}
evaluation:
  nemo_evaluator_config:
    config:
      params:
        limit_samples: 50
        temperature: 0.25
        max_new_tokens: 17
  tasks:
    - name: evalctl.arithmetic
      nemo_evaluator_config:
        config:
          params:
            limit_samples: 7
)";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A chat endpoint that answers every request with "Answer: 0" and keeps the request bodies.
class RecordingEndpoint {
 public:
  RecordingEndpoint() {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req,
                                                 httplib::Response& res) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        bodies_.push_back(json::parse(req.body, nullptr, /*allow_exceptions=*/false));
      }
      json answer = {{"choices",
                      {{{"index", 0},
                        {"message", {{"role", "assistant"}, {"content", "Answer: 0"}}},
                        {"finish_reason", "stop"}}}}};
      res.set_content(answer.dump(), "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    ::evalctl::testing::WaitFor([this] { return server_.is_running(); }, absl::Seconds(5),
                                absl::Milliseconds(5));
  }
  ~RecordingEndpoint() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/v1/chat/completions"); }
  std::vector<json> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<json> bodies_;
};

TEST(JobRunConfigTest, NemoEvaluatorConfigParamsTakeEffectInTheRunner) {
  const fs::path root = fs::path(::testing::TempDir()) / "job_run_config";
  fs::remove_all(root);
  fs::create_directories(root);
  RecordingEndpoint endpoint;

  config::LoadRequest request;
  request.yaml = absl::StrReplaceAll(
      kConfig, {{"$OUTPUT_DIR", (root / "out").string()}, {"$URL", endpoint.url()}});
  absl::StatusOr<config::InvocationSpec> spec = config::LoadInvocation(request);
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->tasks.size(), 1u);
  const std::string inv_dir = config::InvocationRunDir(spec->execution, "20261126_130405", kInvocation);
  auto job = config::RenderTaskJob(*spec, spec->tasks[0], kInvocation, inv_dir);
  ASSERT_TRUE(job.ok()) << job.status();
  fs::create_directories(fs::path(job->run_dir) / "logs");  // as the agent does
  const fs::path script = fs::path(job->run_dir) / "run.sub";
  {
    std::ofstream out(script);
    out << job->script;
  }

  const char* path = std::getenv("PATH");
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", absl::StrCat(fs::path(EVALCTL_RUNNER_BINARY).parent_path().string(), ":",
                            path != nullptr ? path : "/usr/bin:/bin")},
      {"HOME", root.string()},
      {"USER", "tester"},
      {"EVALCTL_DATASETS_DIR", EVALCTL_RUNNER_DATASETS}};
  for (const config::JobEnv& e : job->env) env.emplace_back(e.name, e.value);
  auto r = RunSubprocess({.argv = {"bash", script.string()},
                          .env = env,
                          .clear_env = true,
                          .working_dir = job->run_dir,
                          .timeout = absl::Seconds(120)});
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string client_log = ReadFile(fs::path(job->run_dir) / "logs/client-local.log");
  ASSERT_EQ(r->exit_code, 0) << r->stderr_data << "\nclient log:\n" << client_log;

  // The runner read the file: the task's limit_samples (over the global one), and the global
  // temperature and max_new_tokens.
  const fs::path artifacts = fs::path(job->run_dir) / "artifacts";
  EXPECT_THAT(ReadFile(artifacts / "nemo_evaluator_config.yaml"), HasSubstr("limit_samples: 7"));
  YAML::Node results = YAML::LoadFile((artifacts / "results.yml").string());
  const YAML::Node params = results["config"]["params"];
  ASSERT_TRUE(params["limit_samples"].IsScalar())
      << "the runner had no limit_samples: it did not read the config\n"
      << ReadFile(artifacts / "results.yml");
  EXPECT_EQ(params["limit_samples"].as<int>(), 7);
  EXPECT_DOUBLE_EQ(params["temperature"].as<double>(), 0.25);
  EXPECT_EQ(params["max_new_tokens"].as<int>(), 17);
  EXPECT_EQ(results["results"]["tasks"]["arithmetic"]["metrics"]["accuracy"]["scores"]["acc"]
                   ["stats"]["count"]
                       .as<int>(),
            7);
  // And what reached the endpoint: 7 requests, each with those parameters.
  const std::vector<json> bodies = endpoint.bodies();
  ASSERT_EQ(bodies.size(), 7u) << client_log;
  for (const json& body : bodies) {
    ASSERT_TRUE(body.is_object());
    EXPECT_DOUBLE_EQ(body.value("temperature", -1.0), 0.25) << body.dump();
    EXPECT_EQ(body.value("max_tokens", -1), 17) << body.dump();
    EXPECT_EQ(body.value("model", ""), "recorder");
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace evalctl::runner

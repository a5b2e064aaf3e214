// evalctl-runner against evalctl-standin on 127.0.0.1 (port 0): in-process, and as the real
// binaries where signals and exit codes matter.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/testing/wait_for.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runner/response_store.h"
#include "runner/runner.h"
#include "runner/standin_server.h"
#include "runner/test_process.h"
#include "yaml-cpp/yaml.h"

namespace evalctl::runner {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using ::evalctl::testing::WaitFor;
using testing::TestProcess;

const std::string kDatasets = EVALCTL_RUNNER_DATASETS;

std::string Dataset(const std::string& name) { return kDatasets + "/" + name + ".jsonl"; }

std::string FreshDir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) / "runner_component" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int64_t CountLines(const std::string& path) {
  std::string content = ReadFile(path);
  return static_cast<int64_t>(std::count(content.begin(), content.end(), '\n'));
}

// A stand-in server running on its own thread, on a free port of 127.0.0.1.
class RunningStandin {
 public:
  explicit RunningStandin(StandinOptions options) {
    Knowledge knowledge;
    absl::Status status = knowledge.AddDirectory(kDatasets);
    EXPECT_TRUE(status.ok()) << status;
    options.port = 0;
    server_ = std::make_unique<StandinServer>(options, std::move(knowledge));
    absl::StatusOr<int> port = server_->Bind();
    EXPECT_TRUE(port.ok()) << port.status();
    thread_ = std::thread([this] { server_->Serve(); });
  }
  ~RunningStandin() {
    server_->Stop();
    thread_.join();
  }
  std::string url(const std::string& route) const { return server_->base_url() + route; }
  json stats() const { return server_->Stats(); }

 private:
  std::unique_ptr<StandinServer> server_;
  std::thread thread_;
};

RunnerOptions Options(const std::string& url, const std::string& dataset, const std::string& dir) {
  RunnerOptions options;
  options.endpoint_url = url;
  options.model_id = "evalctl-standin";
  options.dataset_path = dataset;
  options.results_dir = dir;
  options.concurrency = 8;
  options.request_timeout = absl::Seconds(10);
  options.connect_timeout = absl::Seconds(2);
  options.retry_base = absl::Milliseconds(10);
  options.retry_max = absl::Milliseconds(100);
  options.log_interval = absl::Hours(1);
  return options;
}

RunOutcome RunRunner(const RunnerOptions& options) {
  StopSignal stop;
  return RunEvaluation(options, stop);
}

double ScoreInResultsYaml(const std::string& dir, const std::string& task) {
  YAML::Node doc = YAML::LoadFile(dir + "/results.yml");
  return doc["results"]["tasks"][task]["metrics"]["accuracy"]["scores"]["acc"]["value"]
      .as<double>();
}

TEST(RunnerComponentTest, PerfectAndHopelessModelsScoreOneAndZeroOnEveryDatasetAndRoute) {
  RunningStandin perfect({.accuracy = 1.0, .seed = 3});
  RunningStandin hopeless({.accuracy = 0.0, .seed = 3});
  for (const char* name : {"arithmetic", "unit_conversion", "arithmetic_mc"}) {
    for (const char* route : {"/v1/chat/completions", "/v1/completions"}) {
      SCOPED_TRACE(absl::StrCat(name, " ", route));
      const std::string label =
          absl::StrCat(name, absl::StrContains(route, "chat") ? "_chat" : "_completions");
      std::string dir = FreshDir("perfect_" + label);
      RunOutcome right = RunRunner(Options(perfect.url(route), Dataset(name), dir));
      ASSERT_EQ(right.exit_code, kExitOk) << right.message;
      ASSERT_TRUE(right.score.has_value());
      EXPECT_DOUBLE_EQ(right.score->value, 1.0);
      EXPECT_EQ(right.score->no_answer, 0);
      EXPECT_DOUBLE_EQ(ScoreInResultsYaml(dir, name), 1.0);

      std::string dir0 = FreshDir("hopeless_" + label);
      RunOutcome wrong = RunRunner(Options(hopeless.url(route), Dataset(name), dir0));
      ASSERT_EQ(wrong.exit_code, kExitOk) << wrong.message;
      EXPECT_DOUBLE_EQ(wrong.score->value, 0.0);
      EXPECT_EQ(wrong.score->no_answer, 0);  // wrong answers are still read as answers
    }
  }
  EXPECT_EQ(perfect.stats()["answered_unknown"], 0);
  EXPECT_EQ(perfect.stats()["duplicate_answers"], 0);
}

TEST(RunnerComponentTest, ScoresAsExpectedForAKnownAccuracyAndReusesTheCache) {
  RunningStandin standin({.accuracy = 0.8, .seed = 42});
  std::string dir = FreshDir("known_accuracy");
  RunnerOptions options = Options(standin.url("/v1/chat/completions"), Dataset("arithmetic"), dir);
  options.task = "arithmetic_demo";
  RunOutcome outcome = RunRunner(options);
  ASSERT_EQ(outcome.exit_code, kExitOk) << outcome.message;
  json stats = standin.stats();
  ASSERT_EQ(stats["answered"], 200);
  // Every prompt was answered once, so the score is exactly the stand-in's share of right answers.
  EXPECT_DOUBLE_EQ(outcome.score->value, stats["answered_correct"].get<double>() / 200.0);
  EXPECT_NEAR(outcome.score->value, 0.8, 0.08);
  EXPECT_EQ(outcome.score->count, 200);
  EXPECT_DOUBLE_EQ(ScoreInResultsYaml(dir, "arithmetic_demo"), outcome.score->value);
  EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 200);
  EXPECT_EQ(CountLines(dir + "/cache/responses.jsonl"), 200);
  EXPECT_EQ(CountLines(dir + "/samples.jsonl"), 200);
  json metrics = json::parse(ReadFile(dir + "/eval_factory_metrics.json"));
  EXPECT_EQ(metrics["response_stats"]["successful_count"], 200);
  EXPECT_EQ(metrics["evalctl_runner"]["status"], "completed");

  // Running again over the finished directory sends nothing and gives the same score.
  RunOutcome again = RunRunner(options);
  ASSERT_EQ(again.exit_code, kExitOk) << again.message;
  EXPECT_EQ(again.stats.http_requests, 0);
  EXPECT_EQ(again.stats.cached_at_start, 200);
  EXPECT_DOUBLE_EQ(again.score->value, outcome.score->value);
  EXPECT_EQ(standin.stats()["answered"], 200);

  // --limit: a prefix of the same requests, all cached.
  options.limit = 50;
  RunOutcome limited = RunRunner(options);
  ASSERT_EQ(limited.exit_code, kExitOk) << limited.message;
  EXPECT_EQ(limited.stats.http_requests, 0);
  EXPECT_EQ(limited.score->count, 50);
  EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 50);
}

class InterruptTest : public ::testing::TestWithParam<int> {};

TEST_P(InterruptTest, InterruptedRunResumesWithoutSendingAnyRequestTwice) {
  const int sig = GetParam();
  StandinOptions standin_options{.accuracy = 0.7, .seed = 9, .latency = absl::Milliseconds(25)};
  RunningStandin standin(standin_options);
  std::string dir = FreshDir(absl::StrCat("interrupt_", sig));
  std::vector<std::pair<std::string, std::string>> env = {
      {"EVALCTL_ENDPOINT_URL", standin.url("/v1/chat/completions")},
      {"EVALCTL_MODEL_ID", "evalctl-standin"},
      {"EVALCTL_RESULTS_DIR", dir},
      {"EVALCTL_ENDPOINT_TYPE", "chat"}};
  std::vector<std::string> argv = {EVALCTL_RUNNER_BINARY, "--task",          "arithmetic",
                                   "--dataset",           Dataset("arithmetic"), "--format",
                                   "exact",               "--concurrency",   "4",
                                   "--cache-sync-every",  "4",               "--drain-timeout-s",
                                   "10"};
  {
    TestProcess first(argv, env, dir + "/first");
    ASSERT_TRUE(first.started());
    WaitFor([&] { return standin.stats()["answered"].get<int64_t>() >= 40; }, absl::Seconds(30),
            absl::Milliseconds(5));
    first.Signal(sig);
    std::optional<int> code = first.Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, kExitInterrupted) << first.Stderr();
    EXPECT_THAT(first.Stderr(), HasSubstr("interrupted"));
  }
  json after_first = standin.stats();
  const int64_t answered_first = after_first["answered"];
  EXPECT_GE(answered_first, 40);
  EXPECT_LT(answered_first, 200);
  // Requests in flight were drained and recorded: what the server answered is what is saved.
  EXPECT_EQ(*ReadProgressFile(dir + "/progress"), answered_first);
  EXPECT_EQ(CountLines(dir + "/cache/responses.jsonl"), answered_first);
  EXPECT_FALSE(std::filesystem::exists(dir + "/results.yml"));
  json metrics = json::parse(ReadFile(dir + "/eval_factory_metrics.json"));
  EXPECT_EQ(metrics["evalctl_runner"]["status"], "interrupted");

  TestProcess second(argv, env, dir + "/second");
  std::optional<int> code = second.Wait(absl::Seconds(60));
  ASSERT_TRUE(code.has_value());
  ASSERT_EQ(*code, kExitOk) << second.Stderr();
  json stats = standin.stats();
  EXPECT_EQ(stats["answered"], 200);
  EXPECT_EQ(stats["max_answers_per_prompt"], 1);
  EXPECT_EQ(stats["duplicate_answers"], 0);
  EXPECT_EQ(*ReadProgressFile(dir + "/progress"), 200);
  EXPECT_EQ(CountLines(dir + "/cache/responses.jsonl"), 200);

  // Same score as an uninterrupted run against an identical stand-in.
  RunningStandin reference(standin_options);
  std::string reference_dir = FreshDir(absl::StrCat("interrupt_reference_", sig));
  RunOutcome uninterrupted =
      RunRunner(Options(reference.url("/v1/chat/completions"), Dataset("arithmetic"), reference_dir));
  ASSERT_EQ(uninterrupted.exit_code, kExitOk) << uninterrupted.message;
  EXPECT_DOUBLE_EQ(ScoreInResultsYaml(dir, "arithmetic"), uninterrupted.score->value);
  EXPECT_EQ(ReadFile(dir + "/samples.jsonl"), ReadFile(reference_dir + "/samples.jsonl"));
}

INSTANTIATE_TEST_SUITE_P(Signals, InterruptTest, ::testing::Values(SIGTERM, SIGUSR1),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return info.param == SIGTERM ? std::string("SIGTERM")
                                                        : std::string("SIGUSR1");
                         });

TEST(RunnerComponentTest, SlowFlakyStandinStillCompletesThanksToRetries) {
  StandinOptions flaky{.accuracy = 0.75,
                       .seed = 5,
                       .latency = absl::Milliseconds(5),
                       .jitter = absl::Milliseconds(5),
                       .error_rate = 0.2,
                       .hang_rate = 0.05,
                       .hang = absl::Seconds(60)};
  RunningStandin standin(flaky);
  std::string dir = FreshDir("flaky");
  RunnerOptions options = Options(standin.url("/v1/completions"), Dataset("arithmetic_mc"), dir);
  options.request_timeout = absl::Seconds(1);
  options.max_retries = 10;
  absl::Time start = absl::Now();
  RunOutcome outcome = RunRunner(options);
  ASSERT_EQ(outcome.exit_code, kExitOk) << outcome.message;
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  json stats = standin.stats();
  EXPECT_GT(stats["errors_injected"].get<int>(), 0);
  EXPECT_GT(stats["hangs_injected"].get<int>(), 0);
  EXPECT_EQ(stats["answered"], 150);
  EXPECT_EQ(stats["max_answers_per_prompt"], 1);
  EXPECT_GT(outcome.stats.retries, 0);
  EXPECT_GT(outcome.stats.failures["server_error"], 0);
  EXPECT_GT(outcome.stats.failures["timeout"], 0);

  // The faults change nothing in the answers: same score as against a reliable stand-in.
  flaky.error_rate = 0;
  flaky.hang_rate = 0;
  RunningStandin reliable(flaky);
  RunOutcome reference = RunRunner(Options(reliable.url("/v1/completions"), Dataset("arithmetic_mc"),
                                     FreshDir("flaky_reference")));
  ASSERT_EQ(reference.exit_code, kExitOk) << reference.message;
  EXPECT_DOUBLE_EQ(outcome.score->value, reference.score->value);
  EXPECT_DOUBLE_EQ(outcome.score->value, stats["answered_correct"].get<double>() / 150.0);
}

TEST(RunnerComponentTest, StartupDelayIsRetriedThrough) {
  RunningStandin standin({.accuracy = 1.0, .startup_delay = absl::Milliseconds(700)});
  RunnerOptions options =
      Options(standin.url("/v1/chat/completions"), Dataset("arithmetic"), FreshDir("startup"));
  options.limit = 10;
  options.max_retries = 8;
  options.retry_base = absl::Milliseconds(100);
  options.retry_max = absl::Milliseconds(400);
  RunOutcome outcome = RunRunner(options);
  ASSERT_EQ(outcome.exit_code, kExitOk) << outcome.message;
  EXPECT_GT(standin.stats()["rejected_starting"].get<int>(), 0);
  EXPECT_DOUBLE_EQ(outcome.score->value, 1.0);
}

// A port on which nothing listens: bound for a moment, never listened on, then closed.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

TEST(RunnerComponentTest, UnreachableEndpointGivesAClearErrorQuickly) {
  std::string url = absl::StrCat("http://127.0.0.1:", ClosedPort(), "/v1/chat/completions");
  std::string dir = FreshDir("unreachable");
  TestProcess runner({EVALCTL_RUNNER_BINARY, "--dataset", "arithmetic", "--datasets-dir", kDatasets,
                      "--endpoint-url", url, "--model-id", "m", "--results-dir", dir,
                      "--max-retries", "2", "--retry-base-ms", "50"},
                     {}, dir + "/runner");
  absl::Time start = absl::Now();
  std::optional<int> code = runner.Wait(absl::Seconds(30));
  ASSERT_TRUE(code.has_value());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(*code, kExitEndpoint);
  std::string stderr_text = runner.Stderr();
  EXPECT_THAT(stderr_text, HasSubstr(url));
  EXPECT_THAT(stderr_text, HasSubstr("cannot connect"));
  EXPECT_THAT(stderr_text, HasSubstr("gave up after 3 attempts"));
  EXPECT_THAT(stderr_text, HasSubstr("EVALCTL_ENDPOINT_URL"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/results.yml"));
}

TEST(RunnerComponentTest, WrongRouteGivesAClearErrorWithoutRetrying) {
  RunningStandin standin({});
  std::string url = standin.url("/v1/chat/completion");  // typo
  absl::Time start = absl::Now();
  RunnerOptions options = Options(url, Dataset("arithmetic"), FreshDir("wrong_route"));
  options.endpoint_type = EndpointType::kChat;
  RunOutcome outcome = RunRunner(options);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(outcome.exit_code, kExitEndpoint);
  EXPECT_THAT(outcome.message, HasSubstr(url));
  EXPECT_THAT(outcome.message, HasSubstr("HTTP 404"));
  EXPECT_THAT(outcome.message, HasSubstr("route does not exist"));
  json stats = standin.stats();
  EXPECT_EQ(stats["completion_requests"], 0);
  // At most one request per worker: a 404 is not retried.
  EXPECT_LE(stats["http_requests"].get<int>(), options.concurrency);
}

TEST(RunnerComponentTest, UnknownModelAndMissingKeyGiveClearErrors) {
  setenv("RUNNER_TEST_API_KEY", "sekrit", 1);
  RunningStandin standin(
      {.model_name = "served", .strict_model = true, .accuracy = 1.0, .api_key = "sekrit"});
  RunnerOptions options =
      Options(standin.url("/v1/chat/completions"), Dataset("arithmetic"), FreshDir("auth"));
  options.limit = 5;
  RunOutcome no_key = RunRunner(options);
  EXPECT_EQ(no_key.exit_code, kExitEndpoint);
  EXPECT_THAT(no_key.message, HasSubstr("HTTP 401"));
  EXPECT_THAT(no_key.message, HasSubstr("API key"));

  options.api_key_name = "RUNNER_TEST_API_KEY";
  RunOutcome wrong_model = RunRunner(options);
  EXPECT_EQ(wrong_model.exit_code, kExitEndpoint);
  EXPECT_THAT(wrong_model.message, HasSubstr("does not exist"));
  EXPECT_THAT(wrong_model.message, HasSubstr("--model-id"));

  options.model_id = "served";
  RunOutcome ok = RunRunner(options);
  ASSERT_EQ(ok.exit_code, kExitOk) << ok.message;
  EXPECT_EQ(ok.message.find("sekrit"), std::string::npos);

  options.api_key_name = "RUNNER_TEST_UNSET_VARIABLE";
  RunOutcome unset = RunRunner(options);
  EXPECT_EQ(unset.exit_code, kExitUsage);
  EXPECT_THAT(unset.message, HasSubstr("RUNNER_TEST_UNSET_VARIABLE"));
}

TEST(RunnerComponentTest, NonJsonAnswerGivesAClearError) {
  httplib::Server html;
  html.Post(".*", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html><body>Welcome to nginx!</body></html>", "text/html");
  });
  int port = html.bind_to_any_port("127.0.0.1");
  std::thread thread([&] { html.listen_after_bind(); });
  while (!html.is_running()) absl::SleepFor(absl::Milliseconds(1));
  std::string url = absl::StrCat("http://127.0.0.1:", port, "/v1/completions");
  RunnerOptions options = Options(url, Dataset("arithmetic"), FreshDir("html"));
  options.concurrency = 2;  // this test server keeps cpp-httplib's listen backlog of 5
  RunOutcome outcome = RunRunner(options);
  html.stop();
  thread.join();
  EXPECT_EQ(outcome.exit_code, kExitEndpoint);
  EXPECT_THAT(outcome.message, HasSubstr(url));
  EXPECT_THAT(outcome.message, HasSubstr("not JSON"));
  EXPECT_THAT(outcome.message, HasSubstr("Welcome to nginx"));
}

TEST(RunnerComponentTest, BadDatasetIsAUsageError) {
  RunOutcome outcome = RunRunner(Options("http://127.0.0.1:1/v1/completions", "/nonexistent.jsonl",
                                   FreshDir("bad_dataset")));
  EXPECT_EQ(outcome.exit_code, kExitUsage);
  EXPECT_THAT(outcome.message, HasSubstr("/nonexistent.jsonl"));
}

TEST(StandinBinaryTest, ServesHealthAfterStartupDelayAndStopsOnSigterm) {
  std::string dir = FreshDir("standin_binary");
  std::string port_file = dir + "/port";
  TestProcess help({EVALCTL_STANDIN_BINARY, "--help"}, {}, dir + "/help");
  ASSERT_EQ(help.Wait(absl::Seconds(10)), 0);
  EXPECT_THAT(help.Stdout(), HasSubstr("NOT a model"));

  TestProcess standin({EVALCTL_STANDIN_BINARY, "--port", "0", "--port-file", port_file,
                       "--startup-delay-s", "1", "--accuracy", "1", "--latency-ms", "1"},
                      {}, dir + "/standin");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(port_file); }, deadline - absl::Now()))
      << standin.Stderr();
  int port = std::atoi(ReadFile(port_file).c_str());
  ASSERT_GT(port, 0);
  httplib::Client client("127.0.0.1", port);
  auto health = client.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 503);
  WaitFor(
      [&] {
        health = client.Get("/health");
        return health && health->status == 200;
      },
      deadline - absl::Now(), absl::Milliseconds(50));
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto models = client.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "evalctl-standin");

  // The runner binary against the stand-in binary, configured through the environment.
  std::string results = dir + "/results";
  TestProcess runner({EVALCTL_RUNNER_BINARY, "--dataset", "unit_conversion", "--limit", "20"},
                     {{"EVALCTL_ENDPOINT_URL", absl::StrCat("http://127.0.0.1:", port, "/v1")},
                      {"EVALCTL_MODEL_ID", "evalctl-standin"},
                      {"EVALCTL_RESULTS_DIR", results},
                      {"EVALCTL_ENDPOINT_TYPE", "completions"},
                      {"EVALCTL_DATASETS_DIR", kDatasets}},
                     dir + "/runner");
  ASSERT_EQ(runner.Wait(absl::Seconds(30)), kExitOk) << runner.Stderr();
  EXPECT_DOUBLE_EQ(ScoreInResultsYaml(results, "unit_conversion"), 1.0);
  YAML::Node doc = YAML::LoadFile(results + "/results.yml");
  EXPECT_EQ(doc["target"]["api_endpoint"]["url"].as<std::string>(),
            absl::StrCat("http://127.0.0.1:", port, "/v1/completions"));
  auto stats = client.Get("/stats");
  ASSERT_TRUE(stats);
  EXPECT_EQ(json::parse(stats->body)["answered"], 20);

  standin.Signal(SIGTERM);
  std::optional<int> code = standin.Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << standin.Stderr();
  EXPECT_THAT(standin.Stdout(), HasSubstr(absl::StrCat("listening on http://127.0.0.1:", port)));
}

}  // namespace
}  // namespace evalctl::runner

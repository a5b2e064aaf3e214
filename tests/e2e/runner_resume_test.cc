// evalctl-runner through Slurm, interrupted by the walltime in the middle of the evaluation: the
// agent resumes the task, the next attempt continues from the response cache in the run
// directory, and the task ends with the score of an uninterrupted run while the stand-in answered
// every prompt exactly once. The stand-in runs in this test process (the jobs run on this
// machine), so that one set of counters sees every attempt. Jobs run on node1 (partition debug).
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runner/runner.h"
#include "runner/standin_server.h"
#include "runner/stop_signal.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr int kItems = 200;  // runner/datasets/arithmetic.jsonl

class Standin {
 public:
  explicit Standin(runner::StandinOptions options) {
    runner::Knowledge knowledge;
    absl::Status added = knowledge.AddDirectory(EVALCTL_RUNNER_DATASETS);
    EXPECT_TRUE(added.ok()) << added;
    options.port = 0;
    server_ = std::make_unique<runner::StandinServer>(options, std::move(knowledge));
    absl::StatusOr<int> port = server_->Bind();
    EXPECT_TRUE(port.ok()) << port.status();
    thread_ = std::thread([this] { server_->Serve(); });
  }
  ~Standin() {
    server_->Stop();
    thread_.join();
  }
  std::string url() const { return server_->base_url() + "/v1/chat/completions"; }
  json stats() const { return server_->Stats(); }

 private:
  std::unique_ptr<runner::StandinServer> server_;
  std::thread thread_;
};

const runner::StandinOptions kStandin{.accuracy = 0.7, .seed = 11};

std::string RunnerCommand(int concurrency) {
  return absl::StrCat("\"", EVALCTL_RUNNER_BINARY,
                      "\" --task arithmetic --dataset arithmetic --format exact --concurrency ",
                      concurrency, "\n");
}

// "interrupted (SIGTERM) after 123/200 requests answered" in the runner's output; -1 if absent.
int AnsweredWhenInterrupted(const std::string& log) {
  std::smatch m;
  static const std::regex kLine("after ([0-9]+)/200 requests answered");
  int n = -1;
  if (std::regex_search(log, m, kLine)) (void)absl::SimpleAtoi(m[1].str(), &n);
  return n;
}

class RunnerResumeTest : public E2eTest {
 protected:
  // Runs the arithmetic task against a stand-in that takes `latency` per answer, checks that it
  // needed more than one attempt, each interrupted one ending `interrupted_state`, and that the
  // final result is the uninterrupted one.
  void RunInterrupted(RunConfig config, absl::Duration latency,
                      const std::string& interrupted_state) {
    runner::StandinOptions options = kStandin;
    options.latency = latency;
    Standin standin(options);
    config.endpoint_url = standin.url();
    config.tasks.push_back({.name = "arithmetic", .command = RunnerCommand(2)});
    auto submitted = env_.Submit(config);
    E2E_ASSERT_OK(submitted);
    const std::string task_id = submitted->tasks(0).id();

    auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(4));
    E2E_ASSERT_OK(finished);
    const v1::Task& t = finished->tasks(0);
    ASSERT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.DebugString();
    ASSERT_GE(t.attempts_size(), 2) << "the first attempt was not interrupted: " << t.DebugString();
    int previous = 0;
    for (int i = 0; i < t.attempts_size(); ++i) {
      const v1::Attempt& a = t.attempts(i);
      SCOPED_TRACE(absl::StrCat("attempt ", a.number()));
      if (i > 0) {
        EXPECT_EQ(a.resume_reason(), v1::RESUME_REASON_TIMEOUT);
      }
      if (i + 1 == t.attempts_size()) {
        EXPECT_EQ(a.slurm_state(), "COMPLETED");
        break;
      }
      EXPECT_EQ(a.slurm_state(), interrupted_state);
      // It stopped in the middle, after the answers of the attempts before it.
      auto log = env_.ReadLog(task_id, v1::LOG_KIND_EVAL, a.number());
      E2E_ASSERT_OK(log);
      const int answered = AnsweredWhenInterrupted(*log);
      EXPECT_GT(answered, previous) << *log;
      EXPECT_LT(answered, kItems) << *log;
      previous = answered;
    }
    EXPECT_EQ(t.progress().done(), kItems);

    // The stand-in answered each prompt once, over all attempts.
    json stats = standin.stats();
    EXPECT_EQ(stats["answered"], kItems) << stats.dump();
    EXPECT_EQ(stats["duplicate_answers"], 0) << stats.dump();
    EXPECT_EQ(stats["max_answers_per_prompt"], 1) << stats.dump();

    // The score of an uninterrupted run against an identical stand-in.
    Standin reference(kStandin);
    const std::string reference_dir = env_.root() + "/uninterrupted";
    runner::RunnerOptions ro;
    ro.endpoint_url = reference.url();
    ro.model_id = "e2e-model";
    ro.dataset_path = std::string(EVALCTL_RUNNER_DATASETS) + "/arithmetic.jsonl";
    ro.task = "arithmetic";
    ro.results_dir = reference_dir;
    runner::StopSignal stop;
    runner::RunOutcome uninterrupted = runner::RunEvaluation(ro, stop);
    ASSERT_EQ(uninterrupted.exit_code, runner::kExitOk) << uninterrupted.message;
    ASSERT_TRUE(uninterrupted.score.has_value());
    ASSERT_EQ(t.results().scores_size(), 1) << t.results().DebugString();
    EXPECT_DOUBLE_EQ(t.results().scores(0).value(), uninterrupted.score->value);
    EXPECT_EQ(ReadFileOrEmpty(t.run_dir() + "/artifacts/samples.jsonl"),
              ReadFileOrEmpty(reference_dir + "/samples.jsonl"));
  }
};

// No pre-timeout warning: Slurm ends the first attempt at its time limit (TIMEOUT, TERM to the
// runner, which saves what it has). 100 s of answers cannot fit in a one-minute job, which
// Slurm ends after 60-86 s.
TEST_F(RunnerResumeTest, WalltimeInTheMiddleResumesWithTheUninterruptedScore) {
  RunConfig config;
  config.walltime = "00:01:00";
  config.pre_timeout_signal_seconds = 0;
  RunInterrupted(config, absl::Milliseconds(1000), "TIMEOUT");
}

// The pre-timeout warning (USR1, forwarded to the runner), which stops the runner before the
// limit: the job ends with the script's "interrupted" code and the agent resumes it.
TEST_F(RunnerResumeTest, PreTimeoutWarningInTheMiddleResumesWithTheUninterruptedScore) {
  RunConfig config;
  config.walltime = "00:02:00";
  config.pre_timeout_signal_seconds = 60;
  RunInterrupted(config, absl::Milliseconds(800), "FAILED");
}

}  // namespace
}  // namespace evalctl::e2e

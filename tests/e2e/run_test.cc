// A run from submission to results through every client surface: the C++ client library
// (SubmitInvocation, WatchInvocation, GetResults, StreamLogs) and the `evalctl` CLI (status and
// results as JSON), on the real cluster. Jobs run on node1 (partition debug).
#include <cctype>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;

// The JSON spelling of a state in the CLI's output.
std::string JsonState(v1::TaskState state) {
  std::string name = v1::TaskState_Name(state).substr(std::string("TASK_STATE_").size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

TEST_F(E2eTest, ThreeTasksRunAndEveryClientSurfaceAgrees) {
  const std::map<std::string, double> values = {{"alpha", 0.25}, {"beta", 0.5}, {"gamma", 0.75}};
  RunConfig config;
  for (const auto& [name, value] : values) {
    config.tasks.push_back({.name = name, .command = SucceedingCommand(name, 6, value)});
  }
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string id = submitted->id();
  ASSERT_EQ(submitted->tasks_size(), 3);
  EXPECT_EQ(submitted->cluster(), env_.cluster());

  // A watcher from the first event on; the stream ends by itself once every task is terminal.
  absl::StatusOr<std::vector<v1::WatchInvocationResponse>> watched = absl::UnknownError("not run");
  std::thread watcher([&] { watched = env_.WatchAll(id, 0, absl::Minutes(3)); });

  // `logs -f` from the moment a task runs: the stream follows its log as it grows and ends by
  // itself once the task has ended. (No fatal assertion while the watcher thread runs.)
  const std::string followed_id = submitted->tasks(0).id();
  std::string followed;
  auto running = env_.WaitTask(
      followed_id, [](const v1::Task& t) { return t.state() >= v1::TASK_STATE_RUNNING; },
      absl::Minutes(1));
  EXPECT_TRUE(running.ok()) << running.status();
  v1::StreamLogsRequest follow;
  follow.set_id(followed_id);
  follow.set_kind(v1::LOG_KIND_EVAL);
  follow.set_follow(true);
  auto stream = env_.client().StreamLogs(follow, {.timeout = absl::Minutes(2)});
  EXPECT_TRUE(stream.ok()) << stream.status();
  if (stream.ok()) {
    v1::StreamLogsResponse chunk;
    while ((*stream)->Next(&chunk)) followed += chunk.data();
    absl::Status s = (*stream)->Finish();
    EXPECT_TRUE(s.ok()) << s;
  }

  auto finished = env_.WaitFinished(id, absl::Minutes(3));
  watcher.join();
  E2E_ASSERT_OK(finished);
  E2E_ASSERT_OK(watched);

  // Final state from the controller: one completed attempt per task, with its scores.
  std::map<std::string, std::string> job_of;  // task id -> Slurm job id
  for (const v1::Task& t : finished->tasks()) {
    SCOPED_TRACE(t.id());
    EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
    EXPECT_EQ(t.phase(), v1::PHASE_FINISHED);
    ASSERT_EQ(t.attempts_size(), 1);
    const v1::Attempt& a = t.attempts(0);
    EXPECT_EQ(a.number(), 1);
    EXPECT_EQ(a.slurm_state(), "COMPLETED");
    EXPECT_EQ(a.exit_code(), 0);
    EXPECT_EQ(a.node_list(), "node1");
    EXPECT_EQ(a.resume_reason(), v1::RESUME_REASON_UNSPECIFIED);
    ASSERT_FALSE(a.slurm_job_id().empty());
    job_of[t.id()] = a.slurm_job_id();
    EXPECT_EQ(t.progress().done(), 2);
    ASSERT_EQ(t.results().scores_size(), 1);
    const v1::Score& s = t.results().scores(0);
    EXPECT_EQ(s.task(), t.name());
    EXPECT_EQ(s.metric(), "accuracy");
    EXPECT_EQ(s.score(), "acc");
    EXPECT_DOUBLE_EQ(s.value(), values.at(t.name()));
    EXPECT_EQ(t.results().results_path(), t.run_dir() + "/artifacts/results.yml");

    // Slurm agrees: one job with the attempt's name, COMPLETED on node1.
    std::vector<SacctRecord> jobs = SettledSacctByName(env_.JobName(t, 1), env_.started(), 1);
    ASSERT_EQ(jobs.size(), 1u);
    EXPECT_EQ(jobs[0].job_id, a.slurm_job_id());
    EXPECT_EQ(jobs[0].state, "COMPLETED");
    EXPECT_EQ(jobs[0].node_list, "node1");
  }
  EXPECT_TRUE(finished->finished());
  EXPECT_EQ(finished->counts().succeeded(), 3);

  // The watcher saw each task submitted with its job, running, and finished SUCCEEDED, last.
  std::map<std::string, std::vector<v1::TaskEvent>> by_task;
  uint64_t previous = 0;
  for (const v1::WatchInvocationResponse& r : *watched) {
    EXPECT_GT(r.sequence(), previous);
    previous = r.sequence();
    EXPECT_EQ(r.invocation_id(), id);
    EXPECT_FALSE(r.overflowed());
    by_task[r.event().task_id()].push_back(r.event());
  }
  ASSERT_EQ(by_task.size(), 3u);
  for (const auto& [task_id, events] : by_task) {
    SCOPED_TRACE(task_id);
    ASSERT_FALSE(events.empty());
    bool submitted_seen = false, running_seen = false;
    for (const v1::TaskEvent& e : events) {
      if (e.kind() == v1::TaskEvent::KIND_SUBMITTED) {
        submitted_seen = true;
        EXPECT_EQ(e.attempt().slurm_job_id(), job_of[task_id]);
      }
      running_seen |= e.state() == v1::TASK_STATE_RUNNING;
    }
    EXPECT_TRUE(submitted_seen);
    EXPECT_TRUE(running_seen);
    EXPECT_EQ(events.back().kind(), v1::TaskEvent::KIND_FINISHED);
    EXPECT_EQ(events.back().state(), v1::TASK_STATE_SUCCEEDED);
    EXPECT_EQ(events.back().results().scores_size(), 1);
  }

  // GetResults matches the tasks.
  v1::GetResultsRequest results_request;
  results_request.set_id(id);
  auto results = env_.client().GetResults(results_request);
  E2E_ASSERT_OK(results);
  ASSERT_EQ(results->tasks_size(), 3);
  for (const v1::TaskScores& s : results->tasks()) {
    const v1::Task* t = TaskNamed(*finished, s.name());
    ASSERT_NE(t, nullptr) << s.name();
    EXPECT_EQ(s.task_id(), t->id());
    EXPECT_EQ(s.state(), v1::TASK_STATE_SUCCEEDED);
    EXPECT_EQ(s.results().SerializeAsString(), t->results().SerializeAsString());
  }

  // `evalctl status --json` and `evalctl results --json` say the same.
  CliResult status = env_.Cli({"status", id, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  nlohmann::json sj = nlohmann::json::parse(status.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(sj.is_discarded()) << status.out;
  ASSERT_EQ(sj["invocations"].size(), 1u) << status.out;
  const nlohmann::json& inv_json = sj["invocations"][0];
  EXPECT_EQ(inv_json["id"], id);
  EXPECT_EQ(inv_json["cluster"], env_.cluster());
  EXPECT_EQ(inv_json["finished"], true);
  EXPECT_EQ(inv_json["counts"]["succeeded"], 3);
  ASSERT_EQ(inv_json["tasks"].size(), 3u);
  for (const nlohmann::json& tj : inv_json["tasks"]) {
    const v1::Task* t = TaskNamed(*finished, tj["name"].get<std::string>());
    ASSERT_NE(t, nullptr) << tj.dump();
    EXPECT_EQ(tj["id"], t->id());
    EXPECT_EQ(tj["state"], JsonState(t->state()));
    EXPECT_EQ(tj["slurm_job_id"], job_of[t->id()]);
    EXPECT_EQ(tj["run_dir"], t->run_dir());
    ASSERT_EQ(tj["attempts"].size(), 1u);
    EXPECT_EQ(tj["attempts"][0]["slurm_job_id"], job_of[t->id()]);
    EXPECT_EQ(tj["attempts"][0]["slurm_state"], "COMPLETED");
    EXPECT_EQ(tj["progress"]["done"], 2);
  }

  CliResult cli_results = env_.Cli({"results", id, "--json"});
  ASSERT_EQ(cli_results.exit_code, 0) << cli_results.err;
  nlohmann::json rj = nlohmann::json::parse(cli_results.out, nullptr, false);
  ASSERT_FALSE(rj.is_discarded()) << cli_results.out;
  ASSERT_EQ(rj["tasks"].size(), 3u) << cli_results.out;
  for (const nlohmann::json& tj : rj["tasks"]) {
    const v1::Task* t = TaskNamed(*finished, tj["name"].get<std::string>());
    ASSERT_NE(t, nullptr) << tj.dump();
    EXPECT_EQ(tj["task_id"], t->id());
    EXPECT_EQ(tj["state"], "succeeded");
    EXPECT_EQ(tj["results_path"], t->results().results_path());
    ASSERT_EQ(tj["scores"].size(), 1u);
    EXPECT_EQ(tj["scores"][0]["task"], t->name());
    EXPECT_EQ(tj["scores"][0]["metric"], "accuracy");
    EXPECT_EQ(tj["scores"][0]["score"], "acc");
    EXPECT_DOUBLE_EQ(tj["scores"][0]["value"].get<double>(), values.at(t->name()));
  }

  // Logs, read on the cluster by the agent and streamed through the controller.
  const v1::Task& first = finished->tasks(0);
  auto eval_log = env_.ReadLog(first.id(), v1::LOG_KIND_EVAL);
  E2E_ASSERT_OK(eval_log);
  EXPECT_THAT(*eval_log, HasSubstr(absl::StrCat("e2e task ", first.name(), " says hello")));
  EXPECT_THAT(*eval_log, HasSubstr(absl::StrCat("e2e task ", first.name(), " done")));
  auto slurm_log = env_.ReadLog(first.id(), v1::LOG_KIND_SLURM);
  E2E_ASSERT_OK(slurm_log);
  EXPECT_THAT(*slurm_log, HasSubstr(absl::StrCat("job ", job_of[first.id()])));
  EXPECT_THAT(*slurm_log, HasSubstr("evaluation exited with code 0"));
  // The followed stream got all of it.
  const v1::Task* followed_task = nullptr;
  for (const v1::Task& t : finished->tasks()) {
    if (t.id() == followed_id) followed_task = &t;
  }
  ASSERT_NE(followed_task, nullptr);
  auto followed_full = env_.ReadLog(followed_id, v1::LOG_KIND_EVAL);
  E2E_ASSERT_OK(followed_full);
  EXPECT_EQ(followed, *followed_full);
  EXPECT_THAT(followed, HasSubstr(absl::StrCat("e2e task ", followed_task->name(), " done")));
  // The CLI prints the same bytes.
  CliResult cli_logs = env_.Cli({"logs", first.id(), "--which", "eval"});
  ASSERT_EQ(cli_logs.exit_code, 0) << cli_logs.err;
  EXPECT_EQ(cli_logs.out, *eval_log);
}

// A task that exits 3 ends FAILED after one attempt, with the exit code in its reason.
TEST_F(E2eTest, FailedTaskIsNotResumed) {
  RunConfig config;
  config.tasks.push_back({.name = "fails", .command = "echo failing on purpose\nexit 3"});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_FAILED);
  ASSERT_EQ(t.attempts_size(), 1);
  EXPECT_EQ(t.attempts(0).slurm_state(), "FAILED");
  EXPECT_EQ(t.attempts(0).exit_code(), 3);
  EXPECT_THAT(t.reason(), HasSubstr("exited with status 3"));
  EXPECT_THAT(t.reason(), HasSubstr(t.attempts(0).slurm_job_id()));

  std::vector<SacctRecord> jobs = SettledSacctByName(env_.JobName(t, 1), env_.started(), 1);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].state, "FAILED");
  // No second attempt, not even a while later.
  absl::SleepFor(absl::Seconds(5));
  EXPECT_THAT(SacctByName(env_.JobName(t, 2), env_.started()), ::testing::IsEmpty());
  auto again = env_.GetTask(t.id());
  E2E_ASSERT_OK(again);
  EXPECT_EQ(again->attempts_size(), 1);
  EXPECT_EQ(again->state(), v1::TASK_STATE_FAILED);
}

}  // namespace
}  // namespace evalctl::e2e

// Resume after a real Slurm TIMEOUT, and the max_walltime budget. Slurm 22.05 kills a
// `--time=1` job after 70-86 s (limits are checked about every 30 s), so each test here takes
// about 1.5 minutes. Jobs run on node1 (partition debug).
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The batch shell forwards USR1 (--signal=B:USR1@120, which a one-minute job gets at once) to the
// evaluation step; a harness that checkpoints on USR1 keeps running.
constexpr char kRunsPastTheLimit[] =
    "trap 'echo \"e2e: got USR1\"' USR1\n"
    "echo \"e2e: running past the time limit\"\n"
    "while (( SECONDS < 300 )); do sleep 1; done\n"
    "echo \"e2e: was not stopped\"\n"
    "exit 1\n";

// Runs past the time limit the first time; a later attempt finds the marker it left in the
// artifacts directory (kept across attempts) and finishes at once.
std::string SecondAttemptFinishes(const std::string& name) {
  return absl::StrCat("if [ -e \"$EVALCTL_RESULTS_DIR/first_attempt_started\" ]; then\n",
                      "  echo \"e2e: a later attempt finds the marker and finishes\"\n",
                      "  echo 10 > \"$EVALCTL_RESULTS_DIR/progress\"\n",
                      WriteResultsCommand(name, 0.5), "  exit 0\n", "fi\n",
                      "touch \"$EVALCTL_RESULTS_DIR/first_attempt_started\"\n",
                      "echo 5 > \"$EVALCTL_RESULTS_DIR/progress\"\n", kRunsPastTheLimit);
}

TEST_F(E2eTest, TimeoutIsResumedAfterThePreviousAttemptEnded) {
  RunConfig config;
  config.walltime = "00:01:00";
  config.tasks.push_back({.name = "slow", .command = SecondAttemptFinishes("slow")});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string task_id = submitted->tasks(0).id();

  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(4));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.attempts_size(), 2) << t.DebugString();
  const v1::Attempt& first = t.attempts(0);
  const v1::Attempt& second = t.attempts(1);
  EXPECT_EQ(first.slurm_state(), "TIMEOUT");
  EXPECT_EQ(first.resume_reason(), v1::RESUME_REASON_UNSPECIFIED);
  EXPECT_GE(first.elapsed_seconds(), 60);
  EXPECT_EQ(second.number(), 2);
  EXPECT_EQ(second.attempt_id(), task_id + ".2");
  EXPECT_EQ(second.resume_reason(), v1::RESUME_REASON_TIMEOUT);
  EXPECT_EQ(second.slurm_state(), "COMPLETED");
  EXPECT_NE(second.slurm_job_id(), first.slurm_job_id());
  EXPECT_EQ(t.elapsed_seconds(), first.elapsed_seconds() + second.elapsed_seconds());
  EXPECT_EQ(t.progress().done(), 10);
  ASSERT_EQ(t.results().scores_size(), 1);
  EXPECT_DOUBLE_EQ(t.results().scores(0).value(), 0.5);
  EXPECT_GE(ToTime(second.start_time()), ToTime(first.end_time()));

  // Slurm: exactly one job per attempt; the second started after the first ended.
  std::vector<SacctRecord> a1 = SettledSacctByName(env_.JobName(t, 1), env_.started(), 1);
  std::vector<SacctRecord> a2 = SettledSacctByName(env_.JobName(t, 2), env_.started(), 1);
  ASSERT_EQ(a1.size(), 1u);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a1[0].job_id, first.slurm_job_id());
  EXPECT_EQ(a1[0].state, "TIMEOUT");
  EXPECT_EQ(a2[0].job_id, second.slurm_job_id());
  EXPECT_EQ(a2[0].state, "COMPLETED");
  EXPECT_GE(a2[0].start, a1[0].end);
  EXPECT_THAT(SacctByName(env_.JobName(t, 3), env_.started()), IsEmpty());
  // The agent asked Slurm for the ordering (afterany on the previous job).
  EXPECT_THAT(ReadFileOrEmpty(env_.agent_log()),
              HasSubstr(absl::StrCat("attempt=2 job=", second.slurm_job_id(),
                                     " dependency=afterany:", first.slurm_job_id())));

  // The watcher saw the resume.
  auto events = env_.WatchAll(submitted->id(), 0, absl::Seconds(30));
  E2E_ASSERT_OK(events);
  int resumed = 0;
  for (const v1::WatchInvocationResponse& r : *events) {
    if (r.event().kind() == v1::TaskEvent::KIND_RESUMED) {
      ++resumed;
      EXPECT_EQ(r.event().attempt().number(), 2);
      EXPECT_EQ(r.event().attempt().resume_reason(), v1::RESUME_REASON_TIMEOUT);
      EXPECT_THAT(r.event().reason(), HasSubstr("TIMEOUT"));
    }
  }
  EXPECT_EQ(resumed, 1);

  // Both attempts' logs stay readable: the first one ends with Slurm's time-limit message.
  auto log1 = env_.ReadLog(task_id, v1::LOG_KIND_SLURM, 1);
  E2E_ASSERT_OK(log1);
  EXPECT_THAT(*log1, HasSubstr("DUE TO TIME LIMIT"));
  auto eval1 = env_.ReadLog(task_id, v1::LOG_KIND_EVAL, 1);
  E2E_ASSERT_OK(eval1);
  EXPECT_THAT(*eval1, HasSubstr("e2e: running past the time limit"));
  auto eval2 = env_.ReadLog(task_id, v1::LOG_KIND_EVAL, 2);
  E2E_ASSERT_OK(eval2);
  EXPECT_THAT(*eval2, HasSubstr("a later attempt finds the marker"));
}

TEST_F(E2eTest, MaxWalltimeUsedUpEndsBudgetExhausted) {
  RunConfig config;
  config.walltime = "00:01:00";
  config.max_walltime = "00:01:00";
  config.tasks.push_back({.name = "endless", .command = kRunsPastTheLimit});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  EXPECT_EQ(submitted->tasks(0).resume_policy().max_walltime_seconds(), 60);

  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(4));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_BUDGET_EXHAUSTED);
  EXPECT_THAT(t.reason(), HasSubstr("TIMEOUT"));
  EXPECT_THAT(t.reason(), HasSubstr("max_walltime 0:01:00 used up"));
  ASSERT_EQ(t.attempts_size(), 1) << t.DebugString();
  EXPECT_EQ(t.attempts(0).slurm_state(), "TIMEOUT");
  EXPECT_GE(t.attempts(0).elapsed_seconds(), 60);

  std::vector<SacctRecord> a1 = SettledSacctByName(env_.JobName(t, 1), env_.started(), 1);
  ASSERT_EQ(a1.size(), 1u);
  EXPECT_EQ(a1[0].state, "TIMEOUT");
  absl::SleepFor(absl::Seconds(5));
  EXPECT_THAT(SacctByName(env_.JobName(t, 2), env_.started()), IsEmpty());
  EXPECT_THAT(SqueueByName(env_.JobName(t, 2)), IsEmpty());
}

}  // namespace
}  // namespace evalctl::e2e

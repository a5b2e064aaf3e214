// Preemption on the real cluster: a task's job runs in `lowcancel` (PreemptMode=CANCEL) on node4,
// or in `low` (PreemptMode=REQUEUE) on node3, and the test preempts it with a `high` job it
// submits itself with sbatch. These tests hold the `slurm_preemption` ctest lock (see
// CMakeLists.txt): nothing else preempts on node3 or node4 meanwhile.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::evalctl::testing::CommandOutput;
using ::evalctl::testing::JobReaper;
using ::evalctl::testing::Sbatch;
using ::evalctl::testing::Slurm;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSleeper[] = "#!/bin/bash\nsleep 300\n";

constexpr char kWaitsForPreemption[] = "first attempt, waiting to be preempted";

class E2ePreemptionTest : public E2eTest {
 protected:
  RunConfig LowCancelConfig() {
    RunConfig config;
    config.partition = "lowcancel";
    config.nodelist = "node4";
    return config;
  }

  // Waits until the task's current attempt runs in Slurm.
  void WaitRunning(const std::string& task_id) {
    auto running = env_.WaitTask(
        task_id, [](const v1::Task& t) { return t.state() == v1::TASK_STATE_RUNNING; },
        absl::Seconds(60));
    E2E_ASSERT_OK(running);
  }

  // Submits a job to `high` that needs all of `node`: Slurm preempts what runs there.
  std::string Preempt(const std::string& node = "node4") {
    return reaper_.Add(Sbatch({"-p", "high", "-w", node, "--exclusive",
                               absl::StrCat("--job-name=", env_.job_name_prefix(), "high")},
                              kSleeper));
  }

  void Release(const std::string& high_job) {
    CommandOutput r = Slurm({"scancel", high_job});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }

  JobReaper reaper_;
};

TEST_F(E2ePreemptionTest, PreemptedJobIsResumedAfterThePreemption) {
  RunConfig config = LowCancelConfig();
  config.tasks.push_back(
      {.name = "preempted", .command = SecondAttemptFinishes("preempted", kWaitsForPreemption)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string task_id = submitted->tasks(0).id();
  ASSERT_NO_FATAL_FAILURE(WaitRunning(task_id));

  const std::string high = Preempt();
  ASSERT_FALSE(high.empty());
  // The agent sees PREEMPTED and submits attempt 2, which waits for node4.
  auto resumed = env_.WaitAttemptSubmitted(task_id, 2, absl::Seconds(60));
  E2E_ASSERT_OK(resumed);
  EXPECT_EQ(resumed->attempts(0).slurm_state(), "PREEMPTED");
  EXPECT_EQ(resumed->attempts(1).resume_reason(), v1::RESUME_REASON_PREEMPTED);
  EXPECT_THAT(resumed->reason(), HasSubstr("PREEMPTED"));
  std::vector<SacctRecord> a1 = SettledSacctByName(env_.JobName(*resumed, 1), env_.started(), 1);
  ASSERT_EQ(a1.size(), 1u);
  EXPECT_EQ(a1[0].state, "PREEMPTED");
  EXPECT_EQ(a1[0].job_id, resumed->attempts(0).slurm_job_id());

  Release(high);
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.attempts_size(), 2) << t.DebugString();
  EXPECT_EQ(t.attempts(0).slurm_state(), "PREEMPTED");
  EXPECT_EQ(t.attempts(1).slurm_state(), "COMPLETED");
  EXPECT_EQ(t.attempts(1).resume_reason(), v1::RESUME_REASON_PREEMPTED);
  EXPECT_EQ(t.attempts(1).node_list(), "node4");
  EXPECT_GE(ToTime(t.attempts(1).start_time()), ToTime(t.attempts(0).end_time()));
  std::vector<SacctRecord> a2 = SettledSacctByName(env_.JobName(t, 2), env_.started(), 1);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2[0].job_id, t.attempts(1).slurm_job_id());
  EXPECT_EQ(a2[0].state, "COMPLETED");
  EXPECT_EQ(a2[0].partition, "lowcancel");
  EXPECT_THAT(SacctByName(env_.JobName(t, 3), env_.started()), IsEmpty());
}

// PreemptMode=REQUEUE would have Slurm requeue the job under the same id, but every job is
// --no-requeue (resume belongs to the agent): the preempted job ends PREEMPTED, once, and the
// agent resumes the task as a new job.
TEST_F(E2ePreemptionTest, RequeueModePreemptionIsResumedByTheAgentAsANewJob) {
  RunConfig config;
  config.partition = "low";
  config.nodelist = "node3";
  config.tasks.push_back({.name = "requeue-mode",
                          .command = SecondAttemptFinishes("requeue-mode", kWaitsForPreemption)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string task_id = submitted->tasks(0).id();
  ASSERT_NO_FATAL_FAILURE(WaitRunning(task_id));

  const std::string high = Preempt("node3");
  ASSERT_FALSE(high.empty());
  auto resumed = env_.WaitAttemptSubmitted(task_id, 2, absl::Seconds(60));
  E2E_ASSERT_OK(resumed);
  const std::string first_job = resumed->attempts(0).slurm_job_id();
  EXPECT_EQ(resumed->attempts(0).slurm_state(), "PREEMPTED");
  EXPECT_EQ(resumed->attempts(1).resume_reason(), v1::RESUME_REASON_PREEMPTED);
  EXPECT_NE(resumed->attempts(1).slurm_job_id(), first_job);
  // Slurm did not requeue it: one record, no restart.
  std::vector<SacctRecord> a1 = SettledSacctByName(env_.JobName(*resumed, 1), env_.started(), 1);
  ASSERT_EQ(a1.size(), 1u);
  EXPECT_EQ(a1[0].job_id, first_job);
  EXPECT_EQ(a1[0].state, "PREEMPTED");
  EXPECT_EQ(a1[0].partition, "low");

  Release(high);
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.attempts_size(), 2) << t.DebugString();
  EXPECT_EQ(t.attempts(0).slurm_restarts(), 0);
  EXPECT_EQ(t.attempts(1).slurm_state(), "COMPLETED");
  EXPECT_EQ(t.attempts(1).node_list(), "node3");
  EXPECT_GE(ToTime(t.attempts(1).start_time()), ToTime(t.attempts(0).end_time()));
  std::vector<SacctRecord> a2 = SettledSacctByName(env_.JobName(t, 2), env_.started(), 1);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2[0].job_id, t.attempts(1).slurm_job_id());
  EXPECT_EQ(a2[0].state, "COMPLETED");
  EXPECT_THAT(SacctByName(env_.JobName(t, 3), env_.started()), IsEmpty());
}

TEST_F(E2ePreemptionTest, PreemptionWithNoAttemptLeftIsBudgetExhausted) {
  RunConfig config = LowCancelConfig();
  config.max_attempts = 1;
  config.tasks.push_back({.name = "once", .command = "sleep 300"});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string task_id = submitted->tasks(0).id();
  EXPECT_EQ(submitted->tasks(0).resume_policy().max_attempts(), 1);
  ASSERT_NO_FATAL_FAILURE(WaitRunning(task_id));

  const std::string high = Preempt();
  ASSERT_FALSE(high.empty());
  auto finished = env_.WaitFinished(submitted->id(), absl::Seconds(60));
  Release(high);
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_BUDGET_EXHAUSTED);
  EXPECT_THAT(t.reason(), HasSubstr("PREEMPTED"));
  EXPECT_THAT(t.reason(), HasSubstr("max_attempts 1 reached"));
  ASSERT_EQ(t.attempts_size(), 1);
  EXPECT_EQ(t.attempts(0).slurm_state(), "PREEMPTED");
  absl::SleepFor(absl::Seconds(3));
  EXPECT_THAT(SacctByName(env_.JobName(t, 2), env_.started()), IsEmpty());
  EXPECT_THAT(SqueueByName(env_.JobName(t, 2)), IsEmpty());
}

// `evalctl kill` while attempt 2 waits in the queue: the chain stops, and nothing of the task
// runs afterwards, even once node4 is free again.
TEST_F(E2ePreemptionTest, CancelInTheMiddleOfAResumeChainStopsIt) {
  RunConfig config = LowCancelConfig();
  config.tasks.push_back(
      {.name = "chain", .command = SecondAttemptFinishes("chain", kWaitsForPreemption)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string task_id = submitted->tasks(0).id();
  ASSERT_NO_FATAL_FAILURE(WaitRunning(task_id));

  const std::string high = Preempt();
  ASSERT_FALSE(high.empty());
  auto resumed = env_.WaitAttemptSubmitted(task_id, 2, absl::Seconds(60));
  E2E_ASSERT_OK(resumed);
  const std::string second_job = resumed->attempts(1).slurm_job_id();
  // Attempt 2 is queued behind the high-priority job.
  EXPECT_THAT(SqueueByName(env_.JobName(*resumed, 2)),
              ::testing::ElementsAre(second_job + " PENDING"));

  CliResult kill = env_.Cli({"kill", task_id});
  ASSERT_EQ(kill.exit_code, 0) << kill.out << kill.err;
  EXPECT_THAT(kill.out, HasSubstr("Cancel requested for 1 task(s)"));
  auto cancelled = env_.WaitTask(
      task_id, [](const v1::Task& t) { return t.state() == v1::TASK_STATE_CANCELLED; },
      absl::Seconds(60));
  E2E_ASSERT_OK(cancelled);

  // Node4 free again: for 20 s, no job of the task may be queued or run.
  Release(high);
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until) {
    for (int attempt = 1; attempt <= 3; ++attempt) {
      EXPECT_THAT(SqueueByName(env_.JobName(*cancelled, attempt)), IsEmpty())
          << "attempt " << attempt;
    }
    absl::SleepFor(absl::Seconds(1));
  }
  std::vector<SacctRecord> a2 = SettledSacctByName(env_.JobName(*cancelled, 2), env_.started(), 1);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a2[0].job_id, second_job);
  EXPECT_EQ(a2[0].state, "CANCELLED");
  // It never started: a started job writes its batch log first thing.
  EXPECT_FALSE(std::filesystem::exists(
      absl::StrCat(cancelled->run_dir(), "/logs/slurm-", second_job, ".log")));
  EXPECT_THAT(SacctByName(env_.JobName(*cancelled, 3), env_.started()), IsEmpty());

  auto final_task = env_.GetTask(task_id);
  E2E_ASSERT_OK(final_task);
  EXPECT_EQ(final_task->state(), v1::TASK_STATE_CANCELLED);
  EXPECT_EQ(final_task->reason(), "cancelled");
  EXPECT_FALSE(final_task->cancel_requested());
  ASSERT_EQ(final_task->attempts_size(), 2);
  EXPECT_EQ(final_task->attempts(1).slurm_state(), "CANCELLED");
  EXPECT_FALSE(std::filesystem::exists(cancelled->run_dir() + "/artifacts/results.yml"));
}

}  // namespace
}  // namespace evalctl::e2e

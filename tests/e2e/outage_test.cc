// Cluster failures, each on a private instance of the local cluster (private_cluster.h), so that
// the tests on the shared cluster never see them: slurmdbd stopped while jobs run, and a node set
// down under a running job. The real controller and agent run against the private instance.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"
#include "tests/e2e/private_cluster.h"

namespace evalctl::e2e {
namespace {

using ::evalctl::testing::CommandOutput;
using ::evalctl::testing::kClusterPoll;
using ::evalctl::testing::Slurm;
using ::evalctl::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::optional<v1::Cluster> ClusterInfo(E2eEnv& env) {
  auto clusters = env.client().ListClusters({}, {.timeout = absl::Seconds(5)});
  if (!clusters.ok()) return std::nullopt;
  for (const v1::Cluster& c : clusters->clusters()) {
    if (c.name() == env.cluster()) return c;
  }
  return std::nullopt;
}

// Fixture: a private cluster in slot `Slot`, then the controller and the agent on it. Members are
// destroyed in reverse order: the agent and the test's jobs go before the cluster is stopped.
template <int Slot, int MinJobAge>
class PrivateClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    E2E_ASSERT_OK(cluster_->Start());
    ::evalctl::testing::RequireCluster();
    if (HasFatalFailure()) return;
    E2E_ASSERT_OK(env_.StartController());
    E2E_ASSERT_OK(env_.StartAgent());
  }

  std::unique_ptr<PrivateCluster> cluster_ = std::make_unique<PrivateCluster>(Slot, MinJobAge);
  E2eEnv env_;
};

// MinJobAge=2: a job that ends while slurmdbd is down is gone from slurmctld (squeue, scontrol)
// two seconds later, so only accounting could tell how it ended, and accounting is down.
using SlurmdbdOutageTest = PrivateClusterTest<1, 2>;

TEST_F(SlurmdbdOutageTest, NoTaskFailsAndTrackingRecoversAfterward) {
  RunConfig config;
  config.tasks.push_back({.name = "ends-in-outage", .command = ProgressingCommand("a", 8)});
  config.tasks.push_back({.name = "ends-after", .command = ProgressingCommand("b", 40)});
  auto first = env_.Submit(config);
  E2E_ASSERT_OK(first);
  ASSERT_TRUE(
      WaitFor([&] { return env_.AllRunning(first->id()); }, absl::Seconds(60), kClusterPoll));

  E2E_ASSERT_OK(cluster_->Run("stop-slurmdbd"));
  const absl::Time outage = absl::Now();
  CommandOutput sacct = Slurm({"sacct", "-X", "-n", "-j", "1"});
  EXPECT_NE(sacct.exit_code, 0) << "sacct works without slurmdbd: " << sacct.out;

  // Submitted during the outage: sbatch only needs slurmctld; the job ends (and is purged from
  // slurmctld) before accounting is back.
  RunConfig during;
  during.tasks.push_back({.name = "submitted-in-outage", .command = ProgressingCommand("c", 3)});
  auto second = env_.Submit(during);
  E2E_ASSERT_OK(second);

  // The agent reports the outage to the controller.
  std::optional<v1::Cluster> info;
  EXPECT_TRUE(WaitFor(
      [&] {
        info = ClusterInfo(env_);
        return info.has_value() && !info->slurm_reachable();
      },
      absl::Seconds(20), kClusterPoll))
      << (info ? info->DebugString() : "no cluster");
  if (info) {
    EXPECT_THAT(info->slurm_message(), HasSubstr("sacct"));
  }

  // 30 s of outage. A job's ending is visible in squeue for MinJobAge only; after that nothing
  // but accounting can tell how it ended. No task may fail or be resumed meanwhile.
  while (absl::Now() < outage + absl::Seconds(30)) {
    for (const std::string& id : {first->id(), second->id()}) {
      auto inv = env_.Get(id);
      E2E_ASSERT_OK(inv);
      for (const v1::Task& t : inv->tasks()) {
        EXPECT_NE(t.state(), v1::TASK_STATE_FAILED) << t.DebugString();
        EXPECT_NE(t.state(), v1::TASK_STATE_BUDGET_EXHAUSTED) << t.DebugString();
        EXPECT_LE(t.attempts_size(), 1) << t.DebugString();
      }
    }
    absl::SleepFor(absl::Seconds(1));
  }
  E2E_ASSERT_OK(cluster_->Run("start-slurmdbd"));

  for (const std::string& id : {first->id(), second->id()}) {
    auto finished = env_.WaitFinished(id, absl::Minutes(2));
    E2E_ASSERT_OK(finished);
    for (const v1::Task& t : finished->tasks()) {
      SCOPED_TRACE(t.name());
      EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
      ASSERT_EQ(t.attempts_size(), 1) << t.DebugString();
      EXPECT_EQ(t.attempts(0).slurm_state(), "COMPLETED");
      EXPECT_EQ(t.results().scores_size(), 1);
      std::vector<SacctRecord> jobs = SettledSacctByName(env_.JobName(t, 1), env_.started(), 1);
      ASSERT_EQ(jobs.size(), 1u);
      EXPECT_EQ(jobs[0].job_id, t.attempts(0).slurm_job_id());
      EXPECT_EQ(jobs[0].state, "COMPLETED");
      EXPECT_THAT(SacctByName(env_.JobName(t, 2), env_.started()), IsEmpty());
    }
    // Nothing was ever reported failed or resumed.
    auto events = env_.WatchAll(id, 0, absl::Seconds(30));
    E2E_ASSERT_OK(events);
    for (const v1::WatchInvocationResponse& r : *events) {
      EXPECT_NE(r.event().state(), v1::TASK_STATE_FAILED) << r.event().ShortDebugString();
      EXPECT_NE(r.event().kind(), v1::TaskEvent::KIND_RESUMED) << r.event().ShortDebugString();
    }
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        info = ClusterInfo(env_);
        return info.has_value() && info->slurm_reachable();
      },
      absl::Seconds(30), kClusterPoll))
      << (info ? info->DebugString() : "no cluster");
}

// A node set down under a running job ends it NODE_FAIL (every job is --no-requeue); the agent
// resumes the task as attempt 2, which waits for the node (the task names it) and finishes once
// the node is back in service.
using NodeFailureTest = PrivateClusterTest<2, 30>;

TEST_F(NodeFailureTest, NodeSetDownIsResumedAsANewAttempt) {
  RunConfig config;
  config.nodelist = "node2";
  config.tasks.push_back({.name = "on-node2",
                          .command = SecondAttemptFinishes(
                              "on-node2", "first attempt, waiting for the node to fail")});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  const std::string task_id = submitted->tasks(0).id();
  auto running = env_.WaitTask(
      task_id, [](const v1::Task& t) { return t.state() == v1::TASK_STATE_RUNNING; },
      absl::Seconds(60));
  E2E_ASSERT_OK(running);
  // Slurm says RUNNING before the step has started the command: wait until it has, so that
  // the node fails under a first attempt that is really running.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto log = env_.ReadLog(task_id, v1::LOG_KIND_EVAL, 1);
        return log.ok() && absl::StrContains(*log, "waiting for the node to fail");
      },
      absl::Seconds(60), kClusterPoll))
      << "the first attempt's command did not start";

  CommandOutput down =
      Slurm({"scontrol", "update", "nodename=node2", "state=down", "reason=e2e-node-failure"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  auto resumed = env_.WaitAttemptSubmitted(task_id, 2, absl::Seconds(60));
  E2E_ASSERT_OK(resumed);
  EXPECT_EQ(resumed->attempts(0).slurm_state(), "NODE_FAIL");
  EXPECT_EQ(resumed->attempts(1).resume_reason(), v1::RESUME_REASON_NODE_FAIL);
  EXPECT_THAT(resumed->reason(), HasSubstr("NODE_FAIL"));
  const std::string second_job = resumed->attempts(1).slurm_job_id();
  // Attempt 2 cannot start while its node is down.
  absl::SleepFor(absl::Seconds(3));
  EXPECT_THAT(SqueueByName(env_.JobName(*resumed, 2)),
              ::testing::ElementsAre(second_job + " PENDING"));

  CommandOutput back = Slurm({"scontrol", "update", "nodename=node2", "state=resume"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
  E2E_ASSERT_OK(finished);
  const v1::Task& t = finished->tasks(0);
  EXPECT_EQ(t.state(), v1::TASK_STATE_SUCCEEDED) << t.reason();
  ASSERT_EQ(t.attempts_size(), 2) << t.DebugString();
  EXPECT_EQ(t.attempts(1).slurm_job_id(), second_job);
  EXPECT_EQ(t.attempts(1).slurm_state(), "COMPLETED");
  EXPECT_EQ(t.attempts(1).node_list(), "node2");
  EXPECT_GE(ToTime(t.attempts(1).start_time()), ToTime(t.attempts(0).end_time()));
  ASSERT_EQ(t.results().scores_size(), 1);

  std::vector<SacctRecord> a1 = SettledSacctByName(env_.JobName(t, 1), env_.started(), 1);
  std::vector<SacctRecord> a2 = SettledSacctByName(env_.JobName(t, 2), env_.started(), 1);
  ASSERT_EQ(a1.size(), 1u);
  ASSERT_EQ(a2.size(), 1u);
  EXPECT_EQ(a1[0].job_id, t.attempts(0).slurm_job_id());
  EXPECT_EQ(a1[0].state, "NODE_FAIL");
  EXPECT_EQ(a2[0].state, "COMPLETED");
  EXPECT_GE(a2[0].start, a1[0].end);
  EXPECT_THAT(SacctByName(env_.JobName(t, 3), env_.started()), IsEmpty());
  auto eval1 = env_.ReadLog(task_id, v1::LOG_KIND_EVAL, 1);
  E2E_ASSERT_OK(eval1);
  EXPECT_THAT(*eval1, HasSubstr("waiting for the node to fail"));
}

}  // namespace
}  // namespace evalctl::e2e

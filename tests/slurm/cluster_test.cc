// Proves that the local cluster from deploy/dev/cluster.sh is the real thing: every ending the
// agent must handle (COMPLETED, CANCELLED, PREEMPTED in both preempt modes, NODE_FAIL) is produced
// by real slurmctld/slurmd/slurmdbd daemons and reported by sacct and scontrol.
//
// Node use, so that these tests may run in parallel: node1 for plain jobs, node3 and node4 for
// the two preemption modes, node2 for the node failure.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/slurm/slurm_test_util.h"

namespace evalctl::testing {
namespace {

using ::testing::Contains;

constexpr char kSleeper[] = "#!/bin/bash\nsleep 300\n";

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override { RequireCluster(); }
  JobReaper reaper_;
};

TEST_F(ClusterTest, SubmittedJobReachesCompletedInSacct) {
  std::string id = reaper_.Add(Sbatch({"-p", "debug", "-w", "node1"}, "#!/bin/bash\ntrue\n"));
  ASSERT_FALSE(id.empty());
  EXPECT_TRUE(WaitFor([&] { return SacctStates(id) == std::vector<std::string>{"COMPLETED"}; },
                      absl::Seconds(30), kClusterPoll))
      << "sacct states: " << ::testing::PrintToString(SacctStates(id));
}

TEST_F(ClusterTest, FailingJobShowsFailedWithItsExitCode) {
  std::string id = reaper_.Add(Sbatch({"-p", "debug", "-w", "node1"}, "#!/bin/bash\nexit 3\n"));
  ASSERT_TRUE(WaitFor([&] { return SacctStates(id) == std::vector<std::string>{"FAILED"}; },
                      absl::Seconds(30), kClusterPoll));
  EXPECT_EQ(ScontrolField(id, "ExitCode"), "3:0");
}

TEST_F(ClusterTest, CancelledJobShowsCancelled) {
  std::string id = reaper_.Add(Sbatch({"-p", "debug", "-w", "node1"}, kSleeper));
  ASSERT_TRUE(WaitFor([&] { return ScontrolField(id, "JobState") == "RUNNING"; }, absl::Seconds(30),
                      kClusterPoll));
  CommandOutput r = Slurm({"scancel", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(WaitFor([&] { return SacctStates(id) == std::vector<std::string>{"CANCELLED"}; },
                      absl::Seconds(30), kClusterPoll))
      << ::testing::PrintToString(SacctStates(id));
}

// A job in `low` (PreemptMode=REQUEUE) is preempted by a job in `high` on the same node: Slurm
// records a PREEMPTED instance and requeues the job under the same id.
TEST_F(ClusterTest, PreemptionWithRequeue) {
  std::string low = reaper_.Add(Sbatch({"-p", "low", "-w", "node3", "--exclusive"}, kSleeper));
  ASSERT_TRUE(WaitFor([&] { return ScontrolField(low, "JobState") == "RUNNING"; },
                      absl::Seconds(30), kClusterPoll));
  std::string high = reaper_.Add(Sbatch({"-p", "high", "-w", "node3", "--exclusive"}, kSleeper));
  ASSERT_TRUE(WaitFor([&] { return ScontrolField(high, "JobState") == "RUNNING"; },
                      absl::Seconds(60), kClusterPoll))
      << "high-priority job never started; low job state " << ScontrolField(low, "JobState");
  EXPECT_TRUE(WaitFor(
      [&] {
        std::vector<std::string> states = SacctStates(low, /*duplicates=*/true);
        return std::find(states.begin(), states.end(), "PREEMPTED") != states.end();
      },
      absl::Seconds(30), kClusterPoll))
      << ::testing::PrintToString(SacctStates(low, true));
  EXPECT_EQ(ScontrolField(low, "Restarts"), "1");
}

// The same with PreemptMode=CANCEL (`lowcancel`): the job ends PREEMPTED and is not requeued.
TEST_F(ClusterTest, PreemptionWithCancel) {
  std::string low =
      reaper_.Add(Sbatch({"-p", "lowcancel", "-w", "node4", "--exclusive"}, kSleeper));
  ASSERT_TRUE(WaitFor([&] { return ScontrolField(low, "JobState") == "RUNNING"; },
                      absl::Seconds(30), kClusterPoll));
  std::string high = reaper_.Add(Sbatch({"-p", "high", "-w", "node4", "--exclusive"}, kSleeper));
  EXPECT_TRUE(WaitFor([&] { return SacctStates(low) == std::vector<std::string>{"PREEMPTED"}; },
                      absl::Seconds(60), kClusterPoll))
      << ::testing::PrintToString(SacctStates(low, true));
  EXPECT_TRUE(WaitFor([&] { return ScontrolField(high, "JobState") == "RUNNING"; },
                      absl::Seconds(60), kClusterPoll));
}

// A node set down under a running --no-requeue job ends it NODE_FAIL.
TEST_F(ClusterTest, NodeDownGivesNodeFail) {
  std::string id =
      reaper_.Add(Sbatch({"-p", "debug", "-w", "node2", "--no-requeue"}, kSleeper));
  ASSERT_TRUE(WaitFor([&] { return ScontrolField(id, "JobState") == "RUNNING"; }, absl::Seconds(30),
                      kClusterPoll));
  CommandOutput down =
      Slurm({"scontrol", "update", "nodename=node2", "state=down", "reason=evalctl-test"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  bool failed = WaitFor([&] { return SacctStates(id) == std::vector<std::string>{"NODE_FAIL"}; },
                        absl::Seconds(30), kClusterPoll);
  CommandOutput resume = Slurm({"scontrol", "update", "nodename=node2", "state=resume"});
  EXPECT_EQ(resume.exit_code, 0) << resume.err;
  EXPECT_TRUE(failed) << ::testing::PrintToString(SacctStates(id));
  EXPECT_EQ(ScontrolField(id, "JobState"), "NODE_FAIL");
}

}  // namespace
}  // namespace evalctl::testing

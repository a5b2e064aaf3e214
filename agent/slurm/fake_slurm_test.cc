#include "agent/slurm/fake_slurm.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class FakeSlurmTest : public ::testing::Test {
 protected:
  FakeSlurmTest()
      : slurm_(&clock_,
               {.default_plan = {.pending_for = absl::Seconds(2), .run_for = absl::Seconds(10)},
                .min_job_age = absl::Seconds(30)}) {}

  std::string Submit(const std::string& name, const std::string& dependency = "") {
    absl::StatusOr<std::string> id =
        slurm_.Submit({.script_path = "/run/job.sh", .job_name = name, .dependency = dependency});
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or("");
  }

  JobInfo QueueOne(const std::string& id) {
    absl::StatusOr<std::vector<JobInfo>> q = slurm_.Queue({id});
    EXPECT_TRUE(q.ok()) << q.status();
    if (!q.ok() || q->size() != 1) {
      ADD_FAILURE() << "job " << id << " not in the queue";
      return {};
    }
    return q->front();
  }

  std::vector<JobInfo> Acct(const std::vector<std::string>& ids) {
    absl::StatusOr<std::vector<JobInfo>> a = slurm_.Accounting(ids);
    EXPECT_TRUE(a.ok()) << a.status();
    return a.value_or(std::vector<JobInfo>());
  }

  void Advance(int seconds) { clock_.Advance(absl::Seconds(seconds)); }

  FakeClock clock_;
  FakeSlurm slurm_;
};

TEST_F(FakeSlurmTest, LifecycleFollowsTheClock) {
  const absl::Time t0 = clock_.Now();
  const std::string id = Submit("job-a");
  EXPECT_EQ(id, "1");
  EXPECT_EQ(QueueOne(id).state, "PENDING");
  Advance(2);
  JobInfo running = QueueOne(id);
  EXPECT_EQ(running.state, "RUNNING");
  EXPECT_EQ(running.start_time, t0 + absl::Seconds(2));
  EXPECT_EQ(running.node_list, "node1");
  Advance(5);
  EXPECT_EQ(QueueOne(id).elapsed_seconds, 5);
  // One big step past the end: the end time is the planned one, not "now".
  Advance(100);
  absl::StatusOr<JobInfo> shown = slurm_.Show(id);
  EXPECT_FALSE(shown.ok());  // purged: ended at t0+12, MinJobAge 30
  std::vector<JobInfo> acct = Acct({id});
  ASSERT_THAT(acct, SizeIs(1));
  EXPECT_EQ(acct[0].state, "COMPLETED");
  EXPECT_EQ(acct[0].exit_code, 0);
  EXPECT_EQ(acct[0].end_time, t0 + absl::Seconds(12));
  EXPECT_EQ(acct[0].elapsed_seconds, 10);
  EXPECT_EQ(acct[0].name, "job-a");
}

TEST_F(FakeSlurmTest, EndedJobsArePurgedFromQueueAndShowAfterMinJobAge) {
  const std::string id = Submit("job-a");
  Advance(12);  // ended now
  EXPECT_EQ(QueueOne(id).state, "COMPLETED");
  Advance(29);
  EXPECT_TRUE(slurm_.Show(id).ok());
  Advance(1);
  EXPECT_THAT(slurm_.Queue({id}).value(), IsEmpty());
  absl::StatusOr<JobInfo> shown = slurm_.Show(id);
  EXPECT_EQ(shown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(shown.status().message()), HasSubstr("Invalid job id specified"));
  EXPECT_THAT(Acct({id}), SizeIs(1));  // sacct still has it
}

TEST_F(FakeSlurmTest, ExitCodeIsWholeInShowAndModulo128InAccounting) {
  slurm_.SetPlanForName("exit-200", {.pending_for = absl::ZeroDuration(),
                                     .run_for = absl::Seconds(1),
                                     .final_state = "FAILED",
                                     .exit_code = 200});
  const std::string id = Submit("exit-200");
  Advance(1);
  JobInfo shown = slurm_.Show(id).value();
  EXPECT_EQ(shown.state, "FAILED");
  EXPECT_EQ(shown.reason, "NonZeroExitCode");
  EXPECT_EQ(shown.exit_code, 200);
  std::vector<JobInfo> acct = Acct({id});
  ASSERT_THAT(acct, SizeIs(1));
  EXPECT_EQ(acct[0].exit_code, 72);
  // squeue -o has no exit code.
  EXPECT_FALSE(QueueOne(id).exit_code.has_value());
}

TEST_F(FakeSlurmTest, FailJobHook) {
  const std::string id = Submit("j");
  EXPECT_EQ(slurm_.FailJob(id, 3).code(), absl::StatusCode::kFailedPrecondition);  // pending
  Advance(3);
  ASSERT_TRUE(slurm_.FailJob(id, 3).ok());
  JobInfo shown = slurm_.Show(id).value();
  EXPECT_EQ(shown.state, "FAILED");
  EXPECT_EQ(shown.exit_code, 3);
  EXPECT_EQ(shown.end_time, clock_.Now());
  EXPECT_EQ(slurm_.FailJob(id, 3).code(), absl::StatusCode::kFailedPrecondition);  // ended
  EXPECT_EQ(slurm_.FailJob("99", 3).code(), absl::StatusCode::kNotFound);
}

TEST_F(FakeSlurmTest, TimeOut) {
  const std::string id = Submit("j");
  Advance(3);
  ASSERT_TRUE(slurm_.TimeOutJob(id).ok());
  JobInfo shown = slurm_.Show(id).value();
  EXPECT_EQ(shown.state, "TIMEOUT");
  EXPECT_EQ(shown.reason, "TimeLimit");
  EXPECT_EQ(shown.signal, 15);
  EXPECT_EQ(Acct({id})[0].state, "TIMEOUT");
}

TEST_F(FakeSlurmTest, PlannedTimeout) {
  slurm_.SetDefaultPlan({.pending_for = absl::ZeroDuration(),
                         .run_for = absl::Minutes(1),
                         .final_state = "TIMEOUT",
                         .signal = 15});
  const std::string id = Submit("j");
  Advance(61);
  EXPECT_EQ(QueueOne(id).state, "TIMEOUT");
  EXPECT_EQ(QueueOne(id).reason, "TimeLimit");
}

TEST_F(FakeSlurmTest, PreemptWithRequeueKeepsTheIdAndCountsRestarts) {
  const std::string id = Submit("j");
  Advance(3);
  ASSERT_TRUE(slurm_.PreemptJob(id, /*requeue=*/true).ok());
  const absl::Time requeued_at = clock_.Now();
  JobInfo shown = slurm_.Show(id).value();
  EXPECT_EQ(shown.state, "PENDING");
  EXPECT_EQ(shown.reason, "BeginTime");
  EXPECT_EQ(shown.restarts, 1);
  EXPECT_EQ(shown.submit_time, requeued_at);  // reset on requeue, as in Slurm
  std::vector<JobInfo> acct = Acct({id});
  ASSERT_THAT(acct, SizeIs(1));
  EXPECT_EQ(acct[0].state, "PENDING");
  EXPECT_EQ(acct[0].restarts, 1);
  // Eligible after requeue_delay (11 s), then pending_for (2 s).
  Advance(12);
  EXPECT_EQ(QueueOne(id).state, "PENDING");
  Advance(1);
  EXPECT_EQ(QueueOne(id).state, "RUNNING");
  Advance(10);
  EXPECT_EQ(slurm_.Show(id)->state, "COMPLETED");
  EXPECT_EQ(slurm_.Show(id)->restarts, 1);
}

TEST_F(FakeSlurmTest, PreemptWithCancelEndsPreempted) {
  const std::string id = Submit("j");
  Advance(3);
  ASSERT_TRUE(slurm_.PreemptJob(id, /*requeue=*/false).ok());
  EXPECT_EQ(slurm_.Show(id)->state, "PREEMPTED");
  EXPECT_EQ(slurm_.Show(id)->restarts, 0);
  EXPECT_EQ(Acct({id})[0].state, "PREEMPTED");
}

TEST_F(FakeSlurmTest, NodeFailAndAdminRequeue) {
  const std::string a = Submit("a");
  const std::string b = Submit("b");
  const std::string c = Submit("c");
  Advance(3);
  ASSERT_TRUE(slurm_.NodeFailJob(a, /*requeue=*/false).ok());
  ASSERT_TRUE(slurm_.NodeFailJob(b, /*requeue=*/true).ok());
  ASSERT_TRUE(slurm_.RequeueJob(c).ok());
  EXPECT_EQ(slurm_.Show(a)->state, "NODE_FAIL");
  EXPECT_EQ(slurm_.Show(a)->reason, "NodeDown");
  EXPECT_EQ(slurm_.Show(b)->state, "PENDING");
  EXPECT_EQ(slurm_.Show(b)->restarts, 1);
  EXPECT_EQ(slurm_.Show(c)->restarts, 1);
}

TEST_F(FakeSlurmTest, AccountingLagHidesNewRecords) {
  slurm_.SetAccountingLag(absl::Seconds(5));
  const std::string id = Submit("j");
  EXPECT_THAT(Acct({id}), IsEmpty());
  EXPECT_THAT(slurm_.Queue({id}).value(), SizeIs(1));
  Advance(5);
  ASSERT_THAT(Acct({id}), SizeIs(1));
  // After a requeue the new run's record lags too: the newest visible one is the ended run.
  ASSERT_TRUE(slurm_.RequeueJob(id).ok());
  std::vector<JobInfo> acct = Acct({id});
  ASSERT_THAT(acct, SizeIs(1));
  EXPECT_EQ(acct[0].state, "REQUEUED");
  EXPECT_EQ(acct[0].restarts, 0);
  Advance(5);
  acct = Acct({id});
  EXPECT_EQ(acct[0].state, "PENDING");
  EXPECT_EQ(acct[0].restarts, 1);
}

TEST_F(FakeSlurmTest, DependencyAfterany) {
  const std::string parent = Submit("parent");
  const std::string child = Submit("child", absl::StrCat("afterany:", parent));
  Advance(5);
  EXPECT_EQ(QueueOne(parent).state, "RUNNING");
  JobInfo waiting = QueueOne(child);
  EXPECT_EQ(waiting.state, "PENDING");
  EXPECT_EQ(waiting.reason, "Dependency");
  ASSERT_TRUE(slurm_.FailJob(parent, 1).ok());
  const absl::Time parent_end = clock_.Now();
  Advance(1);
  EXPECT_EQ(QueueOne(child).state, "PENDING");
  Advance(1);
  JobInfo started = QueueOne(child);
  EXPECT_EQ(started.state, "RUNNING");
  EXPECT_EQ(started.start_time, parent_end + absl::Seconds(2));
}

TEST_F(FakeSlurmTest, DependencyIsEvaluatedInOneBigStep) {
  const std::string parent = Submit("parent");
  const std::string child = Submit("child", absl::StrCat("afterany:", parent));
  Advance(1000);
  std::vector<JobInfo> acct = Acct({parent, child});
  ASSERT_THAT(acct, SizeIs(2));
  EXPECT_EQ(acct[1].state, "COMPLETED");
  EXPECT_EQ(acct[1].start_time, acct[0].end_time + absl::Seconds(2));
}

TEST_F(FakeSlurmTest, AfterokOnAFailedParentNeverRuns) {
  const std::string parent = Submit("parent");
  const std::string child = Submit("child", absl::StrCat("afterok:", parent));
  Advance(3);
  ASSERT_TRUE(slurm_.FailJob(parent, 2).ok());
  Advance(100);
  JobInfo shown = slurm_.Show(child).value();
  EXPECT_EQ(shown.state, "PENDING");
  EXPECT_EQ(shown.reason, "DependencyNeverSatisfied");
}

TEST_F(FakeSlurmTest, DependencyOnAPurgedOrUnknownJobIsSatisfied) {
  const std::string parent = Submit("parent");
  Advance(100);  // parent ended and purged
  const std::string child = Submit("child", absl::StrCat("afterok:", parent));
  const std::string orphan = Submit("orphan", "afterany:999");
  Advance(2);
  EXPECT_EQ(QueueOne(child).state, "RUNNING");
  EXPECT_EQ(QueueOne(orphan).state, "RUNNING");
}

TEST_F(FakeSlurmTest, BadDependencyIsRejected) {
  for (const char* dep : {"bogus:1", "afterany", "afterany:x", "afterany:1?afterok:2"}) {
    absl::StatusOr<std::string> id =
        slurm_.Submit({.script_path = "/s", .job_name = "j", .dependency = dep});
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << dep;
  }
}

TEST_F(FakeSlurmTest, CancelPendingRunningUnknownAndEnded) {
  const std::string running = Submit("r");
  const std::string pending = Submit("p", absl::StrCat("afterany:", running));
  Advance(3);
  ASSERT_TRUE(slurm_.Cancel({pending, running, "4242"}).ok());
  EXPECT_EQ(slurm_.Show(pending)->state, "CANCELLED");
  EXPECT_EQ(slurm_.Show(running)->state, "CANCELLED");
  EXPECT_EQ(slurm_.Show(running)->signal, 15);
  EXPECT_TRUE(slurm_.Cancel({running}).ok());  // already ended
  EXPECT_EQ(Acct({running})[0].state, "CANCELLED");
  EXPECT_EQ(Acct({running})[0].exit_code, 0);
  EXPECT_EQ(slurm_.Cancel({"-u"}).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(FakeSlurmTest, ControllerDown) {
  const std::string id = Submit("j");
  slurm_.SetControllerDown(true);
  EXPECT_EQ(slurm_.Submit({.script_path = "/s", .job_name = "k"}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(slurm_.Queue({id}).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(slurm_.Show(id).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(slurm_.Cancel({id}).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(slurm_.FindByName({"j"}, absl::InfinitePast()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_THAT(Acct({id}), SizeIs(1));  // slurmdbd still answers
  // Jobs keep running while slurmctld is unreachable.
  Advance(20);
  slurm_.SetControllerDown(false);
  EXPECT_EQ(QueueOne(id).state, "COMPLETED");
}

TEST_F(FakeSlurmTest, AccountingDown) {
  const std::string id = Submit("j");
  slurm_.SetAccountingDown(true);
  absl::StatusOr<std::vector<JobInfo>> acct = slurm_.Accounting({id});
  EXPECT_EQ(acct.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(acct.status().message()), HasSubstr("Connection refused"));
  EXPECT_TRUE(slurm_.Submit({.script_path = "/s", .job_name = "k"}).ok());
  EXPECT_TRUE(slurm_.Queue({id}).ok());
}

TEST_F(FakeSlurmTest, SubmitErrorAndLostResponse) {
  slurm_.SetSubmitError(absl::InvalidArgumentError("sbatch: error: invalid partition specified"));
  EXPECT_EQ(slurm_.Submit({.script_path = "/s", .job_name = "j"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  slurm_.SetSubmitError(absl::OkStatus());
  slurm_.LoseNextSubmitResponse();
  absl::StatusOr<std::string> lost = slurm_.Submit({.script_path = "/s", .job_name = "lost"});
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  // The job exists all the same; FindByName adopts it.
  absl::StatusOr<std::vector<JobInfo>> found =
      slurm_.FindByName({"lost"}, clock_.Now() - absl::Minutes(1));
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_THAT(*found, SizeIs(1));
  EXPECT_EQ(found->front().job_id, "1");
  EXPECT_THAT(slurm_.JobIdsByName("lost"), ElementsAre("1"));
  EXPECT_TRUE(slurm_.Submit({.script_path = "/s", .job_name = "next"}).ok());
}

TEST_F(FakeSlurmTest, FindByNameMergesQueueAndAccounting) {
  const std::string a = Submit("name-a");
  const std::string b = Submit("name-b");
  Submit("other");
  Advance(3);
  ASSERT_TRUE(slurm_.RequeueJob(a).ok());
  absl::StatusOr<std::vector<JobInfo>> found =
      slurm_.FindByName({"name-a", "name-b"}, clock_.Now() - absl::Hours(1));
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_THAT(*found, SizeIs(2));
  EXPECT_EQ((*found)[0].job_id, a);
  EXPECT_EQ((*found)[0].state, "PENDING");
  EXPECT_EQ((*found)[0].restarts, 1);  // from accounting
  EXPECT_EQ((*found)[1].job_id, b);
  EXPECT_EQ((*found)[1].state, "RUNNING");
  // Long after: purged from the queue, and ended before `since` for sacct.
  Advance(3600);
  EXPECT_THAT(slurm_.FindByName({"name-b"}, clock_.Now() - absl::Minutes(1)).value(), IsEmpty());
  EXPECT_THAT(slurm_.FindByName({"name-b"}, clock_.Now() - absl::Hours(2)).value(), SizeIs(1));
}

TEST_F(FakeSlurmTest, SetPlanOfASubmittedJob) {
  const std::string id = Submit("j");
  ASSERT_TRUE(
      slurm_.SetPlan(id, {.pending_for = absl::Seconds(2), .run_for = absl::InfiniteDuration()})
          .ok());
  Advance(10000);
  EXPECT_EQ(QueueOne(id).state, "RUNNING");
  ASSERT_TRUE(slurm_.FailJob(id, 0).ok());
  EXPECT_EQ(QueueOne(id).state, "COMPLETED");
  EXPECT_EQ(slurm_.SetPlan(id, {}).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(FakeSlurmTest, CompletingPhase) {
  FakeSlurm slurm(
      &clock_, {.default_plan = {.pending_for = absl::ZeroDuration(), .run_for = absl::Seconds(1)},
                .completing_for = absl::Seconds(3)});
  const std::string id = slurm.Submit({.script_path = "/s", .job_name = "j"}).value();
  Advance(2);
  EXPECT_EQ(slurm.Queue({id})->front().state, "COMPLETING");
  EXPECT_EQ(slurm.Accounting({id})->front().state, "COMPLETED");
  Advance(2);
  EXPECT_EQ(slurm.Queue({id})->front().state, "COMPLETED");
}

TEST_F(FakeSlurmTest, CompletingBeforeARequeuedJobIsPendingAgain) {
  FakeSlurm slurm(&clock_, {.default_plan = {.pending_for = absl::ZeroDuration(),
                                             .run_for = absl::InfiniteDuration()},
                            .completing_for = absl::Seconds(1)});
  const std::string id = slurm.Submit({.script_path = "/s", .job_name = "j"}).value();
  Advance(5);
  ASSERT_TRUE(slurm.RequeueJob(id).ok());
  EXPECT_EQ(slurm.Show(id)->state, "COMPLETING");
  EXPECT_EQ(slurm.Show(id)->restarts, 1);
  Advance(1);
  EXPECT_EQ(slurm.Show(id)->state, "PENDING");
  EXPECT_EQ(slurm.Show(id)->reason, "BeginTime");
}

TEST_F(FakeSlurmTest, CountsCallsAndRecordsSubmissions) {
  ASSERT_TRUE(
      slurm_
          .Submit(
              {.script_path = "/run/a.sh", .job_name = "a", .env = {{"HF_TOKEN", "secret-value"}}})
          .ok());
  const std::vector<std::string> many = {"1", "2", "3"};
  (void)slurm_.Queue(many);
  (void)slurm_.Accounting(many);
  (void)slurm_.Show("1");
  (void)slurm_.Cancel({"1"});
  slurm_.SetControllerDown(true);
  (void)slurm_.Queue(many);  // failed calls count too
  FakeSlurm::CallCounts calls = slurm_.calls();
  EXPECT_EQ(calls.submit, 1);
  EXPECT_EQ(calls.queue, 2);
  EXPECT_EQ(calls.accounting, 1);
  EXPECT_EQ(calls.show, 1);
  EXPECT_EQ(calls.cancel, 1);
  std::vector<FakeSlurm::Submission> subs = slurm_.submissions();
  ASSERT_THAT(subs, SizeIs(1));
  EXPECT_EQ(subs[0].job_id, "1");
  EXPECT_EQ(subs[0].request.job_name, "a");
  EXPECT_THAT(subs[0].request.env,
              ElementsAre(std::make_pair(std::string("HF_TOKEN"), std::string("secret-value"))));
  slurm_.ResetCalls();
  EXPECT_EQ(slurm_.calls().queue, 0);
}

TEST_F(FakeSlurmTest, InvalidIdsAreRejected) {
  EXPECT_EQ(slurm_.Queue({"--me"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm_.Accounting({""}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm_.Show("1;2").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace evalctl::agent

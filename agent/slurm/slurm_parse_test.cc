#include "agent/slurm/slurm_parse.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

const absl::TimeZone kUtc = absl::UTCTimeZone();

absl::Time At(int h, int m, int s) {
  return absl::FromCivil(absl::CivilSecond(2026, 11, 26, h, m, s), kUtc);
}

// --- sbatch

TEST(ParseSbatchOutputTest, PlainId) { EXPECT_EQ(ParseSbatchOutput("12345\n").value(), "12345"); }

TEST(ParseSbatchOutputTest, IdWithCluster) {
  EXPECT_EQ(ParseSbatchOutput("77;eos\n").value(), "77");
}

TEST(ParseSbatchOutputTest, WarningLinesBeforeTheId) {
  EXPECT_EQ(ParseSbatchOutput("sbatch: warning: something odd\n42\n").value(), "42");
}

TEST(ParseSbatchOutputTest, GarbageIsAnError) {
  for (const char* out : {"", "\n", "Submitted batch job 12\n", "-5\n", "12a\n", ";eos\n",
                          "123456789012345678901234567890\n"}) {
    absl::StatusOr<std::string> id = ParseSbatchOutput(out);
    EXPECT_FALSE(id.ok()) << "output " << out << " gave " << *id;
    if (!id.ok()) {
      EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

// --- squeue (lines captured from Slurm 22.05 with kSqueueFormat)

TEST(ParseSqueueTest, RealOutput) {
  const std::string out =
      "1|FAILED|NonZeroExitCode|2026-11-26T13:54:43|2026-11-26T13:54:44|2026-11-26T13:54:44|0:00|"
      "node1|debug|my job|x=y z\n"
      "3|PENDING|Dependency|2026-11-26T13:54:43|N/A|N/A|0:00||debug|dep\n"
      "2|RUNNING|None|2026-11-26T13:54:43|2026-11-26T13:54:44|NONE|1:03|node1|debug|sleeper\n";
  ParsedJobs p = ParseSqueue(out, kUtc);
  EXPECT_THAT(p.problems, IsEmpty());
  ASSERT_THAT(p.jobs, SizeIs(3));

  const JobInfo& failed = p.jobs[0];
  EXPECT_EQ(failed.job_id, "1");
  EXPECT_EQ(failed.name, "my job|x=y z");  // the name is last, so '|' in it survives
  EXPECT_EQ(failed.state, "FAILED");
  EXPECT_EQ(failed.reason, "NonZeroExitCode");
  EXPECT_EQ(failed.submit_time, At(13, 54, 43));
  EXPECT_EQ(failed.start_time, At(13, 54, 44));
  EXPECT_EQ(failed.end_time, At(13, 54, 44));
  EXPECT_EQ(failed.node_list, "node1");
  EXPECT_EQ(failed.partition, "debug");
  EXPECT_FALSE(failed.exit_code.has_value());  // squeue does not know it

  const JobInfo& pending = p.jobs[1];
  EXPECT_EQ(pending.state, "PENDING");
  EXPECT_EQ(pending.reason, "Dependency");
  EXPECT_EQ(pending.start_time, absl::InfinitePast());
  EXPECT_EQ(pending.node_list, "");

  const JobInfo& running = p.jobs[2];
  EXPECT_EQ(running.state, "RUNNING");
  EXPECT_EQ(running.reason, "");
  EXPECT_EQ(running.end_time, absl::InfinitePast());
  EXPECT_EQ(running.elapsed_seconds, 63);
}

TEST(ParseSqueueTest, PredictedTimesAreDropped) {
  // A pending job's %S is the scheduler's estimate; a running job's %e its time-limit end.
  ParsedJobs p = ParseSqueue(
      "4|PENDING|BeginTime|2026-11-26T13:55:59|2026-11-26T13:56:10|NONE|0:00||debug|a\n"
      "5|RUNNING|None|2026-11-26T13:55:59|2026-11-26T13:56:10|2026-11-26T14:56:10|5:00|node2|"
      "debug|b\n"
      "6|COMPLETING|None|2026-11-26T13:55:59|2026-11-26T13:56:10|2026-11-26T13:57:10|1:00|node2|"
      "debug|c\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(3));
  EXPECT_EQ(p.jobs[0].start_time, absl::InfinitePast());
  EXPECT_EQ(p.jobs[1].start_time, At(13, 56, 10));
  EXPECT_EQ(p.jobs[1].end_time, absl::InfinitePast());
  EXPECT_EQ(p.jobs[2].end_time, At(13, 57, 10));  // COMPLETING: the end is real
}

TEST(ParseSqueueTest, MalformedLinesAreSkippedWithAMessage) {
  ParsedJobs p = ParseSqueue(
      "garbage\n"
      "abc|RUNNING|None|N/A|N/A|N/A|0:00||debug|x\n"
      "7|running|None|N/A|N/A|N/A|0:00||debug|x\n"
      "\n"
      "8|RUNNING|None|2026-13-45T99:00:00|N/A|N/A|0:00|node1|debug|kept\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(1));
  EXPECT_EQ(p.jobs[0].job_id, "8");
  EXPECT_EQ(p.jobs[0].submit_time, absl::InfinitePast());
  ASSERT_THAT(p.problems, SizeIs(4));
  EXPECT_THAT(p.problems[0], HasSubstr("line 1: expected 10"));
  EXPECT_THAT(p.problems[1], HasSubstr("line 2: bad job id"));
  EXPECT_THAT(p.problems[2], HasSubstr("line 3: bad job state"));
  EXPECT_THAT(p.problems[3], HasSubstr("line 5: bad submit time"));
}

TEST(ParseSqueueTest, EmptyOutputIsNoJobs) {
  ParsedJobs p = ParseSqueue("", kUtc);
  EXPECT_THAT(p.jobs, IsEmpty());
  EXPECT_THAT(p.problems, IsEmpty());
}

// --- sacct (captured with kSacctFormat, -X -D --parsable2)

TEST(ParseSacctTest, RealOutput) {
  const std::string out =
      "1|FAILED|72:0|None|2026-11-26T13:54:43|2026-11-26T13:54:44|2026-11-26T13:54:44|0|node1|"
      "debug|my job|x=y z\n"
      "2|CANCELLED by 0|0:0|None|2026-11-26T13:54:43|2026-11-26T13:54:44|2026-11-26T13:54:53|9|"
      "node1|debug|sleeper\n"
      "3|PENDING|0:0|Dependency|2026-11-26T13:54:43|Unknown|Unknown|0|None assigned|debug|dep\n";
  ParsedJobs p = ParseSacct(out, kUtc);
  EXPECT_THAT(p.problems, IsEmpty());
  ASSERT_THAT(p.jobs, SizeIs(3));
  EXPECT_EQ(p.jobs[0].name, "my job|x=y z");
  EXPECT_EQ(p.jobs[0].state, "FAILED");
  EXPECT_EQ(p.jobs[0].exit_code, 72);  // 200 modulo 128: the 22.05 bug
  EXPECT_EQ(p.jobs[0].signal, 0);
  EXPECT_EQ(p.jobs[1].state, "CANCELLED");
  EXPECT_EQ(p.jobs[1].elapsed_seconds, 9);
  EXPECT_EQ(p.jobs[1].end_time, At(13, 54, 53));
  EXPECT_EQ(p.jobs[2].state, "PENDING");
  EXPECT_EQ(p.jobs[2].node_list, "");
  EXPECT_EQ(p.jobs[2].start_time, absl::InfinitePast());
  EXPECT_EQ(p.jobs[2].reason, "Dependency");
  for (const JobInfo& j : p.jobs) EXPECT_EQ(j.restarts, 0);
}

TEST(ParseSacctTest, DuplicatesCollapseIntoTheNewestWithRestarts) {
  // Two requeues (REQUEUED then PREEMPTED), then the current run; printed out of order.
  const std::string out =
      "4|REQUEUED|0:0|None|2026-11-26T13:54:53|2026-11-26T13:54:53|2026-11-26T13:55:59|66|node1|"
      "debug|sl\n"
      "4|RUNNING|0:0|None|2026-11-26T13:57:00|2026-11-26T13:57:11|Unknown|5|node1|debug|sl\n"
      "4|PREEMPTED|0:0|None|2026-11-26T13:55:59|2026-11-26T13:56:10|2026-11-26T13:56:50|40|node3|"
      "low|sl\n";
  ParsedJobs p = ParseSacct(out, kUtc);
  ASSERT_THAT(p.jobs, SizeIs(1));
  EXPECT_EQ(p.jobs[0].state, "RUNNING");
  EXPECT_EQ(p.jobs[0].restarts, 2);
  EXPECT_EQ(p.jobs[0].submit_time, At(13, 57, 0));
}

TEST(ParseSacctTest, RequeuedRecordBeforeTheNewRunAppears) {
  ParsedJobs p = ParseSacct(
      "4|REQUEUED|0:0|None|2026-11-26T13:54:53|2026-11-26T13:54:53|2026-11-26T13:55:59|66|node1|"
      "debug|sl\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(1));
  EXPECT_EQ(p.jobs[0].state, "REQUEUED");
  EXPECT_EQ(p.jobs[0].restarts, 0);
}

TEST(ParseSacctTest, ReusedIdWithAnotherNameIsNotARestart) {
  ParsedJobs p = ParseSacct(
      "9|COMPLETED|0:0|None|2025-01-01T00:00:00|2025-01-01T00:00:01|2025-01-01T00:00:02|1|node1|"
      "debug|old-job\n"
      "9|RUNNING|0:0|None|2026-11-26T13:00:00|2026-11-26T13:00:01|Unknown|5|node1|debug|new-job\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(1));
  EXPECT_EQ(p.jobs[0].name, "new-job");
  EXPECT_EQ(p.jobs[0].restarts, 0);
}

TEST(ParseSacctTest, PlaceholderRecordHasNoName) {
  // Captured 0.2 s after sbatch: slurmdbd's first record of a running job.
  ParsedJobs p = ParseSacct(
      "26|PENDING|0:0|None|2026-11-26T14:06:21|2026-11-26T14:06:21|Unknown|0|node1||allocation\n"
      "27|COMPLETED|0:0|None|2026-11-26T14:06:21|2026-11-26T14:06:21|2026-11-26T14:06:22|1|node1|"
      "debug|allocation\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(2));
  EXPECT_EQ(p.jobs[0].name, "");
  EXPECT_EQ(p.jobs[1].name, "allocation");  // a partition: a real record of a job so named
}

TEST(ParseSacctTest, PlaceholderRecordStillCountsAsARun) {
  ParsedJobs p = ParseSacct(
      "4|PREEMPTED|0:0|None|2026-11-26T13:54:53|2026-11-26T13:54:53|2026-11-26T13:55:59|66|node3|"
      "low|sl\n"
      "4|PENDING|0:0|None|2026-11-26T13:55:59|Unknown|Unknown|0|None assigned||allocation\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(1));
  EXPECT_EQ(p.jobs[0].state, "PENDING");
  EXPECT_EQ(p.jobs[0].restarts, 1);
}

TEST(ParseSacctTest, StepsAreIgnoredAndGarbageSkipped) {
  ParsedJobs p = ParseSacct(
      "5|COMPLETED|0:0|None|2026-11-26T13:00:00|2026-11-26T13:00:01|2026-11-26T13:00:02|1|node1|"
      "debug|j\n"
      "5.batch|COMPLETED|0:0||2026-11-26T13:00:00|2026-11-26T13:00:01|2026-11-26T13:00:02|1|"
      "node1||batch\n"
      "6|COMPLETED|x:y|None|bad|N/A|N/A|-3|node1|debug|j2\n"
      "only|three|fields\n",
      kUtc);
  ASSERT_THAT(p.jobs, SizeIs(2));
  EXPECT_EQ(p.jobs[0].job_id, "5");
  EXPECT_EQ(p.jobs[1].job_id, "6");
  EXPECT_FALSE(p.jobs[1].exit_code.has_value());
  EXPECT_EQ(p.jobs[1].submit_time, absl::InfinitePast());
  EXPECT_EQ(p.jobs[1].elapsed_seconds, 0);
  EXPECT_THAT(p.problems, SizeIs(4));  // exit code, submit time, ElapsedRaw, field count
}

// --- scontrol show job -o (captured)

constexpr char kScontrolFailed[] =
    "JobId=1 JobName=my job|x=y z UserId=root(0) GroupId=root(0) MCS_label=N/A "
    "Priority=4294901759 Nice=0 Account=root QOS=normal JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=200:0 "
    "RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-26T13:54:43 "
    "EligibleTime=2026-11-26T13:54:43 AccrueTime=2026-11-26T13:54:43 "
    "StartTime=2026-11-26T13:54:44 EndTime=2026-11-26T13:54:44 Deadline=N/A "
    "PreemptEligibleTime=2026-11-26T13:54:44 PreemptTime=None SuspendTime=None SecsPreSuspend=0 "
    "LastSchedEval=2026-11-26T13:54:44 Scheduler=Main Partition=debug "
    "AllocNode:Sid=localhost:22704 ReqNodeList=(null) ExcNodeList=(null) NodeList=node1 "
    "BatchHost=node1 NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* "
    "MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 "
    "OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) Command=/tmp/my dir/e200.sh "
    "WorkDir=/tmp/my dir StdErr=/dev/null StdIn=/dev/null StdOut=/dev/null Power= \n";

TEST(ParseScontrolShowJobTest, RealOutput) {
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(kScontrolFailed, "1", kUtc);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->job_id, "1");
  EXPECT_EQ(job->name, "my job|x=y z");
  EXPECT_EQ(job->state, "FAILED");
  EXPECT_EQ(job->reason, "NonZeroExitCode");
  EXPECT_EQ(job->exit_code, 200);  // whole, unlike sacct
  EXPECT_EQ(job->signal, 0);
  EXPECT_EQ(job->restarts, 0);
  EXPECT_EQ(job->submit_time, At(13, 54, 43));
  EXPECT_EQ(job->start_time, At(13, 54, 44));
  EXPECT_EQ(job->end_time, At(13, 54, 44));
  EXPECT_EQ(job->node_list, "node1");
  EXPECT_EQ(job->partition, "debug");
}

TEST(ParseScontrolShowJobTest, RequeuedPendingJob) {
  const std::string line =
      "JobId=4 JobName=sl.sh UserId=root(0) GroupId=root(0) JobState=PENDING Reason=BeginTime "
      "Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 ExitCode=0:0 RunTime=00:00:00 "
      "TimeLimit=UNLIMITED SubmitTime=2026-11-26T13:55:59 EligibleTime=2026-11-26T13:56:10 "
      "StartTime=2026-11-26T13:56:10 EndTime=Unknown Partition=debug NodeList=(null)\n";
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(line, "4", kUtc);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, "PENDING");
  EXPECT_EQ(job->restarts, 1);
  EXPECT_EQ(job->start_time, absl::InfinitePast());  // an estimate while pending
  EXPECT_EQ(job->node_list, "");
}

TEST(ParseScontrolShowJobTest, SignalAndLongRunTime) {
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(
      "JobId=12 JobName=x UserId=u(1) JobState=CANCELLED Reason=None ExitCode=0:15 "
      "RunTime=1-02:03:04 SubmitTime=Unknown StartTime=None EndTime=N/A\n",
      "", kUtc);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->exit_code, 0);
  EXPECT_EQ(job->signal, 15);
  EXPECT_EQ(job->elapsed_seconds, 86400 + 2 * 3600 + 3 * 60 + 4);
  EXPECT_EQ(job->reason, "");
  EXPECT_EQ(job->submit_time, absl::InfinitePast());
}

TEST(ParseScontrolShowJobTest, NameWithKeyLikeWordsAndCommentCannotOverrideFields) {
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(
      "JobId=5 JobName=a JobState=COMPLETED b UserId=u(1) JobState=RUNNING Reason=None "
      "ExitCode=0:0 Comment=JobState=FAILED ExitCode=3:0 Command=/x y\n",
      "5", kUtc);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->name, "a JobState=COMPLETED b");
  EXPECT_EQ(job->state, "RUNNING");
  EXPECT_EQ(job->exit_code, 0);
}

TEST(ParseScontrolShowJobTest, PicksTheRequestedJob) {
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(
      "JobId=7 JobName=a UserId=u(1) JobState=RUNNING\n"
      "JobId=8 JobName=b UserId=u(1) JobState=PENDING\n",
      "8", kUtc);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->name, "b");
  EXPECT_EQ(ParseScontrolShowJob("JobId=7 JobName=a UserId=u(1) JobState=RUNNING\n", "9", kUtc)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(ParseScontrolShowJobTest, Garbage) {
  EXPECT_EQ(ParseScontrolShowJob("", "1", kUtc).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseScontrolShowJob("No jobs in the system\n", "", kUtc).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseScontrolShowJob("JobId=1 JobName=x\n", "1", kUtc).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseScontrolShowJob("JobId=-1 JobState=RUNNING\n", "", kUtc).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Bad optional fields stay unset rather than becoming zeros.
  absl::StatusOr<JobInfo> job = ParseScontrolShowJob(
      "JobId=1 JobState=FAILED ExitCode=zz Restarts=-4 RunTime=x SubmitTime=yesterday\n", "1",
      kUtc);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_FALSE(job->exit_code.has_value());
  EXPECT_EQ(job->restarts, 0);
  EXPECT_EQ(job->submit_time, absl::InfinitePast());
}

// --- building blocks

TEST(ParseSlurmTimeTest, Forms) {
  EXPECT_EQ(ParseSlurmTime("2026-11-26T13:04:05", kUtc), At(13, 4, 5));
  for (const char* unset : {"Unknown", "None", "N/A", "NONE", "", "  "}) {
    EXPECT_EQ(ParseSlurmTime(unset, kUtc), absl::InfinitePast()) << unset;
  }
  for (const char* bad :
       {"2026-11-26", "2026-11-26 13:04:05", "+026-11-26T13:04:05", "2026-11-26T13:04:05Z",
        "2026-02-30T13:04:05", "2026-11-26T25:04:05", "relative", "Today 13:04"}) {
    EXPECT_FALSE(ParseSlurmTime(bad, kUtc).has_value()) << bad;
  }
}

TEST(ParseSlurmTimeTest, UsesTheGivenZone) {
  absl::TimeZone berlin;
  ASSERT_TRUE(absl::LoadTimeZone("Europe/Berlin", &berlin));
  EXPECT_EQ(*ParseSlurmTime("2026-11-26T14:04:05", berlin), At(13, 4, 5));
}

TEST(ParseSlurmElapsedTest, Forms) {
  EXPECT_EQ(ParseSlurmElapsed("0:00"), 0);
  EXPECT_EQ(ParseSlurmElapsed("1:03"), 63);
  EXPECT_EQ(ParseSlurmElapsed("01:02:03"), 3723);
  EXPECT_EQ(ParseSlurmElapsed("2-00:00:01"), 2 * 86400 + 1);
  EXPECT_EQ(ParseSlurmElapsed("17"), 17);
  for (const char* bad : {"", "INVALID", "UNLIMITED", "1:2:3:4", "-1", "1-", "a:b", "1::2",
                          "99999999999999999999", "1- 2:00"}) {
    EXPECT_FALSE(ParseSlurmElapsed(bad).has_value()) << bad;
  }
}

TEST(NormalizeJobStateTest, Forms) {
  EXPECT_EQ(NormalizeJobState("CANCELLED by 0"), "CANCELLED");
  EXPECT_EQ(NormalizeJobState("CANCELLED+"), "CANCELLED");
  EXPECT_EQ(NormalizeJobState("NODE_FAIL"), "NODE_FAIL");
  EXPECT_EQ(NormalizeJobState(" RUNNING"), "RUNNING");
  EXPECT_EQ(NormalizeJobState("running"), "");
  EXPECT_EQ(NormalizeJobState("RUNNING1"), "");
  EXPECT_EQ(NormalizeJobState(""), "");
}

TEST(IsEndedStateTest, Classification) {
  for (const char* s : {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL",
                        "BOOT_FAIL", "OUT_OF_MEMORY", "DEADLINE", "REQUEUED"}) {
    EXPECT_TRUE(IsEndedState(s)) << s;
  }
  for (const char* s : {"PENDING", "RUNNING", "COMPLETING", "SUSPENDED", "", "BOGUS"}) {
    EXPECT_FALSE(IsEndedState(s)) << s;
  }
}

TEST(MergeQueueIntoAccountingTest, QueueFieldsWinAccountingKeepsExitAndRestarts) {
  JobInfo acct;
  acct.job_id = "10";
  acct.name = "n";
  acct.state = "PENDING";
  acct.exit_code = 0;
  acct.restarts = 2;
  JobInfo queued = acct;
  queued.state = "RUNNING";
  queued.exit_code.reset();
  queued.restarts = 0;
  queued.node_list = "node1";
  JobInfo only_queue;
  only_queue.job_id = "9";
  only_queue.state = "PENDING";
  std::vector<JobInfo> merged = MergeQueueIntoAccounting({acct}, {queued, only_queue});
  ASSERT_THAT(merged, SizeIs(2));
  EXPECT_EQ(merged[0].job_id, "9");
  EXPECT_EQ(merged[1].state, "RUNNING");
  EXPECT_EQ(merged[1].node_list, "node1");
  EXPECT_EQ(merged[1].restarts, 2);
  EXPECT_EQ(merged[1].exit_code, 0);
}

// Every prefix and a few mutations of real output parse without crashing (a cheap stand-in for
// the fuzz targets).
TEST(ParsersTest, SurviveTruncationAndMutation) {
  const std::string inputs[] = {
      kScontrolFailed,
      "1|FAILED|72:0|None|2026-11-26T13:54:43|2026-11-26T13:54:44|2026-11-26T13:54:44|0|node1|"
      "debug|j\n",
      "2|RUNNING|None|2026-11-26T13:54:43|2026-11-26T13:54:44|NONE|1:03|node1|debug|sleeper\n"};
  for (const std::string& in : inputs) {
    for (size_t n = 0; n <= in.size(); ++n) {
      std::string s = in.substr(0, n);
      (void)ParseSqueue(s, kUtc);
      (void)ParseSacct(s, kUtc);
      (void)ParseScontrolShowJob(s, "", kUtc);
      (void)ParseSbatchOutput(s);
      std::string m = in;
      m[n % in.size()] = static_cast<char>((n * 37) & 0xff);
      (void)ParseSqueue(m, kUtc);
      (void)ParseSacct(m, kUtc);
      (void)ParseScontrolShowJob(m, "1", kUtc);
    }
  }
}

}  // namespace
}  // namespace evalctl::agent

// SlurmCliClient against the real local cluster (deploy/dev/cluster.sh): every SlurmClient method
// runs the real sbatch/squeue/sacct/scontrol/scancel, and the Slurm 22.05 pitfalls the adapter
// handles (sacct exit codes modulo 128, purged jobs, scancel of unknown ids, chunked id lists,
// secrets only in the environment) are checked on real jobs.
//
// Jobs run on node1 only (`#SBATCH --nodelist=node1`): cluster_test takes node2 down and uses
// node3/node4 for preemption, and the tests may run in parallel.
#include "agent/slurm/slurm_cli_client.h"

#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/testing/test_account.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/slurm/slurm_test_util.h"

namespace evalctl::testing {
namespace {

using ::evalctl::agent::JobInfo;
using ::evalctl::testing::EnsureTestAccount;
using ::evalctl::testing::GiveTo;
using ::evalctl::agent::SlurmCliClient;
using ::evalctl::agent::SlurmCliOptions;
using ::evalctl::agent::SubmitRequest;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& text, bool executable = false) {
  std::ofstream f(path);
  f << text;
  f.close();
  if (executable) {
    ASSERT_EQ(::chmod(path.c_str(), 0755), 0) << path;
  }
}

class SlurmCliClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireCluster();
    std::string tmpl = ::testing::TempDir();
    if (!tmpl.empty() && tmpl.back() == '/') tmpl.pop_back();
    tmpl += "/slurm_cli_client_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  }

  // A unique job name, so that tests running at the same time never see each other's jobs.
  std::string UniqueName(const std::string& what) {
    return absl::StrCat("evalctl-test-", what, "-", absl::Uniform<uint64_t>(bitgen_));
  }

  // Writes a batch script on node1 with its output in the test directory; returns its path.
  std::string Script(const std::string& name, const std::string& body) {
    const std::string path = absl::StrCat(dir_, "/", name, ".sbatch");
    WriteFile(path, absl::StrCat("#!/bin/bash\n#SBATCH --nodelist=node1\n#SBATCH --output=", dir_,
                                 "/", name, "-%j.out\n", body));
    return path;
  }

  std::string Submit(SlurmCliClient& slurm, const std::string& name, const std::string& body,
                     std::vector<std::pair<std::string, std::string>> env = {}) {
    absl::StatusOr<std::string> id = slurm.Submit({.script_path = Script(name, body),
                                                   .job_name = name,
                                                   .working_dir = dir_,
                                                   .env = std::move(env)});
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) return "";
    return reaper_.Add(*id);
  }

  // The job's record in Accounting once `done` accepts it (polling for up to `timeout`).
  JobInfo WaitForAccounting(SlurmCliClient& slurm, const std::string& id,
                            const std::function<bool(const JobInfo&)>& done,
                            absl::Duration timeout = absl::Seconds(30)) {
    JobInfo last;
    const bool ok = WaitFor(
        [&] {
          absl::StatusOr<std::vector<JobInfo>> acct = slurm.Accounting({id});
          EXPECT_TRUE(acct.ok()) << acct.status();
          if (!acct.ok() || acct->size() != 1) return false;
          last = acct->front();
          return done(last);
        },
        timeout, kClusterPoll);
    EXPECT_TRUE(ok) << "job " << id << " in sacct: state=" << last.state;
    return last;
  }

  std::string dir_;
  JobReaper reaper_;
  absl::BitGen bitgen_;
};

TEST_F(SlurmCliClientTest, SubmitQueueAndAccountingOfACompletedJob) {
  SlurmCliClient slurm;
  const std::string name = UniqueName("ok");
  const std::string id = Submit(slurm, name, "sleep 1\n");
  ASSERT_FALSE(id.empty());

  // slurmctld knows the job at once (sacct may not yet: a pending job reaches slurmdbd later).
  absl::StatusOr<std::vector<JobInfo>> queued = slurm.Queue({id});
  ASSERT_TRUE(queued.ok()) << queued.status();
  ASSERT_THAT(*queued, SizeIs(1));
  EXPECT_EQ(queued->front().job_id, id);
  EXPECT_EQ(queued->front().name, name);
  EXPECT_THAT(queued->front().state,
              ::testing::AnyOf("PENDING", "RUNNING", "COMPLETING", "COMPLETED"));
  EXPECT_EQ(queued->front().partition, "debug");
  EXPECT_GT(queued->front().submit_time, absl::Now() - absl::Minutes(1));

  // For its first seconds slurmdbd may show a placeholder record (JobName "allocation", shown as
  // an empty name); wait for the real one.
  JobInfo done = WaitForAccounting(
      slurm, id, [&name](const JobInfo& j) { return j.state == "COMPLETED" && j.name == name; });
  EXPECT_EQ(done.exit_code, 0);
  EXPECT_EQ(done.signal, 0);
  EXPECT_EQ(done.name, name);
  EXPECT_EQ(done.node_list, "node1");
  EXPECT_EQ(done.restarts, 0);
  EXPECT_GE(done.end_time, done.start_time);
  EXPECT_GE(done.elapsed_seconds, 1);

  absl::StatusOr<JobInfo> shown = slurm.Show(id);
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->state, "COMPLETED");
  EXPECT_EQ(shown->exit_code, 0);
}

// Slurm 22.05's sacct reports the exit status modulo 128; scontrol has the real one.
TEST_F(SlurmCliClientTest, ExitCode200IsWholeInShowAnd72InAccounting) {
  SlurmCliClient slurm;
  const std::string id = Submit(slurm, UniqueName("exit200"), "exit 200\n");
  ASSERT_FALSE(id.empty());
  JobInfo acct = WaitForAccounting(slurm, id, [](const JobInfo& j) { return j.state == "FAILED"; });
  EXPECT_EQ(acct.exit_code, 72);
  absl::StatusOr<JobInfo> shown = slurm.Show(id);
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->state, "FAILED");
  EXPECT_EQ(shown->reason, "NonZeroExitCode");
  EXPECT_EQ(shown->exit_code, 200);
  EXPECT_EQ(shown->signal, 0);
}

TEST_F(SlurmCliClientTest, CancelARunningJob) {
  SlurmCliClient slurm;
  const std::string id = Submit(slurm, UniqueName("cancel"), "sleep 300\n");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::vector<JobInfo>> q = slurm.Queue({id});
        return q.ok() && q->size() == 1 && q->front().state == "RUNNING";
      },
      absl::Seconds(30), kClusterPoll));
  ASSERT_TRUE(slurm.Cancel({id}).ok());
  JobInfo acct = WaitForAccounting(slurm, id, [](const JobInfo& j) {
    return j.state == "CANCELLED";  // sacct says "CANCELLED by 0"
  });
  EXPECT_NE(acct.end_time, absl::InfinitePast());
  absl::StatusOr<JobInfo> shown = slurm.Show(id);
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_EQ(shown->state, "CANCELLED");
  // Cancelling again, or ids Slurm never had, is fine.
  EXPECT_TRUE(slurm.Cancel({id, "99999999"}).ok());
}

// A requeued job keeps its id; Show has Restarts, Accounting counts the older sacct -D records.
TEST_F(SlurmCliClientTest, RequeuedJobCountsRestarts) {
  SlurmCliClient slurm;
  const std::string name = UniqueName("requeue");
  const std::string id = Submit(slurm, name, "#SBATCH --open-mode=append\nsleep 300\n");
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::vector<JobInfo>> q = slurm.Queue({id});
        return q.ok() && q->size() == 1 && q->front().state == "RUNNING";
      },
      absl::Seconds(30), kClusterPoll));
  CommandOutput requeue = Slurm({"scontrol", "requeue", id});
  ASSERT_EQ(requeue.exit_code, 0) << requeue.err;
  // The job passes through COMPLETING (the old run's cleanup) before it is PENDING again, with
  // reason None until slurmctld has set BeginTime (the requeue delay).
  absl::StatusOr<JobInfo> shown;
  ASSERT_TRUE(WaitFor(
      [&] {
        shown = slurm.Show(id);
        return shown.ok() && shown->state == "PENDING" && shown->reason == "BeginTime";
      },
      absl::Seconds(30), kClusterPoll))
      << (shown.ok() ? shown->state + " (" + shown->reason + ")" : shown.status().ToString());
  EXPECT_EQ(shown->restarts, 1);
  JobInfo acct = WaitForAccounting(
      slurm, id, [&name](const JobInfo& j) { return j.restarts == 1 && j.name == name; });
  EXPECT_THAT(acct.state, ::testing::AnyOf("PENDING", "RUNNING"));
}

TEST_F(SlurmCliClientTest, UnknownJobs) {
  SlurmCliClient slurm;
  absl::StatusOr<JobInfo> shown = slurm.Show("99999999");
  EXPECT_EQ(shown.status().code(), absl::StatusCode::kNotFound) << shown.status();
  // A single unknown id makes squeue exit 1 ("Invalid job id specified"): still no error.
  absl::StatusOr<std::vector<JobInfo>> one = slurm.Queue({"99999999"});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(*one, IsEmpty());
  absl::StatusOr<std::vector<JobInfo>> two = slurm.Queue({"99999998", "99999999"});
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_THAT(*two, IsEmpty());
  absl::StatusOr<std::vector<JobInfo>> acct = slurm.Accounting({"99999999"});
  ASSERT_TRUE(acct.ok()) << acct.status();
  EXPECT_THAT(*acct, IsEmpty());
}

TEST_F(SlurmCliClientTest, FindByNameFindsAJobByItsUniqueName) {
  SlurmCliClient slurm;
  const absl::Time since = absl::Now() - absl::Minutes(1);
  const std::string name = UniqueName("adopt");
  const std::string id = Submit(slurm, name, "sleep 2\n");
  ASSERT_FALSE(id.empty());
  // At once (from squeue) ...
  absl::StatusOr<std::vector<JobInfo>> found = slurm.FindByName({name}, since);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_THAT(*found, SizeIs(1));
  EXPECT_EQ(found->front().job_id, id);
  EXPECT_EQ(found->front().name, name);
  // ... and after it ended (both sources).
  EXPECT_TRUE(WaitFor(
      [&] {
        found = slurm.FindByName({name, UniqueName("nobody")}, since);
        return found.ok() && found->size() == 1 && found->front().state == "COMPLETED" &&
               found->front().exit_code.has_value();
      },
      absl::Seconds(30), kClusterPoll))
      << (found.ok() ? ::testing::PrintToString(found->size()) : found.status().ToString());
  EXPECT_THAT(slurm.FindByName({UniqueName("nobody")}, since).value(), IsEmpty());
}

// With a user set (the agent sets its own), the name lookup sees only that user's jobs: a job
// another user gave the same name is never taken for ours.
TEST_F(SlurmCliClientTest, FindByNameSeesOnlyItsUsersJobs) {
  auto account = EnsureTestAccount("evalctl-ssh");
  ASSERT_TRUE(account.ok()) << account.status();
  ASSERT_TRUE(GiveTo(*account, dir_).ok());
  const std::string as_other = absl::StrCat(dir_, "/sbatch-as-other");
  WriteFile(as_other, absl::StrCat("#!/bin/sh\nexec runuser -u ", account->name, " -- sbatch \"$@\"\n"),
            /*executable=*/true);
  SlurmCliClient other({.sbatch = as_other});
  const absl::Time since = absl::Now() - absl::Minutes(1);
  const std::string name = UniqueName("squat");
  const std::string id = Submit(other, name, "sleep 30\n");
  ASSERT_FALSE(id.empty());

  SlurmCliClient anyone;
  absl::StatusOr<std::vector<JobInfo>> all = anyone.FindByName({name}, since);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_THAT(*all, SizeIs(1)) << "the other user's job is not visible at all";
  EXPECT_EQ(all->front().job_id, id);

  const passwd* me = ::getpwuid(::getuid());
  ASSERT_NE(me, nullptr);
  SlurmCliClient mine({.user = me->pw_name});
  absl::StatusOr<std::vector<JobInfo>> own = mine.FindByName({name}, since);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_THAT(*own, IsEmpty());
}

TEST_F(SlurmCliClientTest, BadPartitionIsInvalidArgumentWithSlurmsMessage) {
  SlurmCliClient slurm;
  const std::string path = absl::StrCat(dir_, "/bad.sbatch");
  WriteFile(path, "#!/bin/bash\n#SBATCH --partition=nosuch\n#SBATCH --output=/dev/null\ntrue\n");
  absl::StatusOr<std::string> id =
      slurm.Submit({.script_path = path, .job_name = UniqueName("badpart")});
  if (id.ok()) reaper_.Add(*id);
  ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << id.status();
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("invalid partition specified"));
}

// More ids than max_ids_per_command: several squeue/sacct/scancel commands (counted by
// wrappers that log and exec the real tools), one complete answer.
TEST_F(SlurmCliClientTest, LongIdListsAreChunked) {
  SlurmCliOptions options;
  options.max_ids_per_command = 3;
  for (const char* tool : {"squeue", "sacct", "scancel"}) {
    const std::string wrapper = absl::StrCat(dir_, "/", tool);
    WriteFile(
        wrapper,
        absl::StrCat("#!/bin/bash\necho \"$*\" >> ", wrapper, ".calls\nexec ", tool, " \"$@\"\n"),
        /*executable=*/true);
    if (std::string(tool) == "squeue") options.squeue = wrapper;
    if (std::string(tool) == "sacct") options.sacct = wrapper;
    if (std::string(tool) == "scancel") options.scancel = wrapper;
  }
  SlurmCliClient slurm(options);
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    const std::string id = Submit(slurm, UniqueName(absl::StrCat("chunk", i)), "true\n");
    ASSERT_FALSE(id.empty());
    ids.push_back(id);
  }
  std::vector<std::string> asked = ids;
  asked.push_back("99999999");  // unknown ids are simply absent

  absl::StatusOr<std::vector<JobInfo>> queued = slurm.Queue(asked);
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_THAT(*queued, SizeIs(7));
  std::vector<std::string> lines =
      absl::StrSplit(ReadFile(dir_ + "/squeue.calls"), '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, SizeIs(3));  // 8 ids, 3 per command

  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::vector<JobInfo>> acct = slurm.Accounting(asked);
        if (!acct.ok() || acct->size() != 7) return false;
        return std::all_of(acct->begin(), acct->end(),
                           [](const JobInfo& j) { return j.state == "COMPLETED"; });
      },
      absl::Seconds(60), kClusterPoll));
  lines = absl::StrSplit(ReadFile(dir_ + "/sacct.calls"), '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.size() % 3, 0u) << "sacct calls: " << absl::StrJoin(lines, "\n");

  ASSERT_TRUE(slurm.Cancel(asked).ok());
  lines = absl::StrSplit(ReadFile(dir_ + "/scancel.calls"), '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, SizeIs(3));
}

// A secret given in SubmitRequest::env reaches the job's environment but neither sbatch's command
// line (checked by a wrapper that logs its argv) nor Slurm's record of it (sacct SubmitLine).
TEST_F(SlurmCliClientTest, SecretReachesTheJobButNotTheCommandLine) {
  const std::string secret = absl::StrCat("s3cr3t-", absl::Uniform<uint64_t>(bitgen_));
  SlurmCliOptions options;
  options.sbatch = absl::StrCat(dir_, "/sbatch");
  WriteFile(options.sbatch,
            absl::StrCat("#!/bin/bash\nprintf '%s\\n' \"$0\" \"$@\" > ", dir_,
                         "/sbatch.argv\nexec sbatch \"$@\"\n"),
            /*executable=*/true);
  SlurmCliClient slurm(options);
  const std::string out = absl::StrCat(dir_, "/secret.txt");
  const std::string id = Submit(slurm, UniqueName("secret"),
                                absl::StrCat("printf '%s' \"$EVALCTL_TEST_SECRET\" > ", out, "\n"),
                                {{"EVALCTL_TEST_SECRET", secret}});
  ASSERT_FALSE(id.empty());
  WaitForAccounting(slurm, id, [](const JobInfo& j) { return j.state == "COMPLETED"; });
  EXPECT_EQ(ReadFile(out), secret);
  const std::string argv = ReadFile(absl::StrCat(dir_, "/sbatch.argv"));
  EXPECT_THAT(argv, HasSubstr("--parsable"));
  EXPECT_THAT(argv, Not(HasSubstr(secret)));
  // SubmitLine is empty in slurmdbd's placeholder record of the first seconds.
  CommandOutput submit_line;
  EXPECT_TRUE(WaitFor(
      [&] {
        submit_line = Slurm({"sacct", "-X", "-n", "--parsable2", "-j", id, "--format=SubmitLine"});
        return absl::StrContains(submit_line.out, "--parsable");
      },
      absl::Seconds(30), kClusterPoll))
      << submit_line.out << submit_line.err;
  EXPECT_THAT(submit_line.out, Not(HasSubstr(secret)));
  // Nor the script text Slurm shows.
  EXPECT_THAT(ScontrolField(id, "Command"), Not(HasSubstr(secret)));
}

// With the daemons unreachable (a copy of slurm.conf with ports nobody listens on), every call
// is UNAVAILABLE: sacct fails at once with "Connection refused", squeue/sbatch retry for about
// 9 s and are cut off by the timeout.
TEST_F(SlurmCliClientTest, UnreachableDaemonsAreUnavailable) {
  const char* conf = std::getenv("SLURM_CONF");
  ASSERT_NE(conf, nullptr);
  std::string text = ReadFile(conf);
  ASSERT_THAT(text, HasSubstr("SlurmctldPort="));
  ASSERT_THAT(text, HasSubstr("AccountingStoragePort="));
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (std::string& line : lines) {
    if (absl::StartsWith(line, "SlurmctldPort=")) line = "SlurmctldPort=1";
    if (absl::StartsWith(line, "AccountingStoragePort=")) line = "AccountingStoragePort=2";
  }
  const std::string bad_conf = absl::StrCat(dir_, "/slurm.conf");
  WriteFile(bad_conf, absl::StrJoin(lines, "\n"));

  SlurmCliClient slurm({.timeout = absl::Seconds(3), .env = {{"SLURM_CONF", bad_conf}}});
  absl::StatusOr<std::vector<JobInfo>> acct = slurm.Accounting({"1"});
  EXPECT_EQ(acct.status().code(), absl::StatusCode::kUnavailable) << acct.status();
  EXPECT_THAT(std::string(acct.status().message()), HasSubstr("Connection refused"));
  absl::StatusOr<std::vector<JobInfo>> queued = slurm.Queue({"1", "2"});
  EXPECT_EQ(queued.status().code(), absl::StatusCode::kUnavailable) << queued.status();
  absl::StatusOr<JobInfo> shown = slurm.Show("1");
  EXPECT_EQ(shown.status().code(), absl::StatusCode::kUnavailable) << shown.status();
  absl::StatusOr<std::string> id =
      slurm.Submit({.script_path = Script("never", "true\n"), .job_name = UniqueName("never")});
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnavailable) << id.status();
}

}  // namespace
}  // namespace evalctl::testing

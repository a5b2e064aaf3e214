// SlurmCliClient against stand-in Slurm binaries (small bash scripts that record their argv and
// environment and print canned output), so that argv, chunking, environment and error mapping are
// checked without a cluster. tests/slurm/slurm_cli_client_test.cc runs it against real Slurm.
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/slurm/slurm_cli_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::agent {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

class SlurmCliClientUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir();
    if (!tmpl.empty() && tmpl.back() == '/') tmpl.pop_back();
    tmpl += "/slurm_cli_unit.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    options_.env = {{"FAKE_SLURM_LOG", dir_}};
  }

  // Writes an executable bash script `name` whose body follows a line that logs its argv (one
  // argument per line, then a `--` line) to <dir>/<name>.calls.
  std::string Tool(const std::string& name, const std::string& body) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream f(path);
    f << "#!/bin/bash\n"
      << "printf '%s\\n' \"$@\" -- >> \"$FAKE_SLURM_LOG/" << name << ".calls\"\n"
      << body;
    f.close();
    ::chmod(path.c_str(), 0755);
    return path;
  }

  std::string Read(const std::string& file) {
    std::ifstream f(absl::StrCat(dir_, "/", file));
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

  // The argv of each call of `tool`.
  std::vector<std::vector<std::string>> Calls(const std::string& tool) {
    std::vector<std::vector<std::string>> calls(1);
    for (absl::string_view line : absl::StrSplit(Read(tool + ".calls"), '\n', absl::SkipEmpty())) {
      if (line == "--") {
        calls.emplace_back();
      } else {
        calls.back().emplace_back(line);
      }
    }
    calls.pop_back();
    return calls;
  }

  std::string dir_;
  SlurmCliOptions options_;
};

TEST_F(SlurmCliClientUnitTest, SubmitArgvAndEnvironment) {
  options_.sbatch = Tool("sbatch",
                         "echo \"$HF_TOKEN\" > \"$FAKE_SLURM_LOG/token\"\n"
                         "echo \"${SLURM_TIME_FORMAT-unset}\" > \"$FAKE_SLURM_LOG/time_format\"\n"
                         "pwd > \"$FAKE_SLURM_LOG/cwd\"\n"
                         "echo '4711;ci'\n");
  SlurmCliClient slurm(options_);
  absl::StatusOr<std::string> id = slurm.Submit({.script_path = "/runs/t1/job.sbatch",
                                                 .job_name = "inv1.0.1",
                                                 .working_dir = dir_,
                                                 .dependency = "afterany:12",
                                                 .env = {{"HF_TOKEN", "s3cr3t"}}});
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "4711");
  std::vector<std::vector<std::string>> calls = Calls("sbatch");
  ASSERT_THAT(calls, SizeIs(1));
  EXPECT_THAT(calls[0], ElementsAre("--parsable", "--export=ALL", "--job-name=inv1.0.1",
                                    "--dependency=afterany:12", "/runs/t1/job.sbatch"));
  EXPECT_THAT(Read("sbatch.calls"), Not(HasSubstr("s3cr3t")));
  EXPECT_EQ(Read("token"), "s3cr3t\n");
  EXPECT_EQ(Read("time_format"), "unset\n");  // sbatch's environment is the job's
  EXPECT_EQ(Read("cwd"), dir_ + "\n");
}

TEST_F(SlurmCliClientUnitTest, SubmitValidatesItsInput) {
  SlurmCliClient slurm(options_);
  EXPECT_EQ(slurm.Submit({.script_path = "", .job_name = "a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.Submit({.script_path = "/s", .job_name = ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.Submit({.script_path = "/s", .job_name = "a\nb"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.Submit({.script_path = "/s", .job_name = "a", .dependency = "afterany:1 -p x"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.SbatchArgv({.script_path = "-rf", .job_name = "a"}).back(), "./-rf");
}

TEST_F(SlurmCliClientUnitTest, SubmitRejectionIsInvalidArgumentWithSlurmsMessage) {
  options_.sbatch = Tool("sbatch",
                         "echo 'sbatch: error: invalid partition specified: nosuch' >&2\n"
                         "echo 'sbatch: error: Batch job submission failed: Invalid partition "
                         "name specified' >&2\n"
                         "exit 1\n");
  absl::StatusOr<std::string> id =
      SlurmCliClient(options_).Submit({.script_path = "/s", .job_name = "a"});
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status().message()),
              AllOf(HasSubstr("sbatch: error: invalid partition specified: nosuch"),
                    HasSubstr("Invalid partition name specified")));
}

TEST_F(SlurmCliClientUnitTest, SubmitErrorCodes) {
  struct Case {
    std::string stderr_text;
    int exit_code;
    absl::StatusCode code;
  };
  const Case cases[] = {
      {"sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect "
       "failure)",
       1, absl::StatusCode::kUnavailable},
      {"sbatch: error: Batch job submission failed: Socket timed out on send/recv operation", 1,
       absl::StatusCode::kUnavailable},
      {"sbatch: fatal: Could not establish a configuration source", 1,
       absl::StatusCode::kUnavailable},
      {"sbatch: error: Batch job submission failed: Job violates accounting/QOS policy (job "
       "submit limit, user's size and/or time limits)",
       1, absl::StatusCode::kFailedPrecondition},
      {"sbatch: error: Batch job submission failed: Invalid account or account/partition "
       "combination specified",
       1, absl::StatusCode::kInvalidArgument},
      {"sbatch: error: Unable to open file /nonexistent.sh", 1, absl::StatusCode::kInvalidArgument},
      {"", 1, absl::StatusCode::kUnknown},
  };
  for (const Case& c : cases) {
    options_.sbatch =
        Tool("sbatch", absl::StrCat("echo \"", c.stderr_text, "\" >&2\nexit ", c.exit_code, "\n"));
    absl::StatusOr<std::string> id =
        SlurmCliClient(options_).Submit({.script_path = "/s", .job_name = "a"});
    EXPECT_EQ(id.status().code(), c.code) << c.stderr_text << " → " << id.status();
  }
}

TEST_F(SlurmCliClientUnitTest, SubmitWithUnparsableOutputIsUnknown) {
  options_.sbatch = Tool("sbatch", "echo 'Submitted batch job 12'\n");
  EXPECT_EQ(SlurmCliClient(options_).Submit({.script_path = "/s", .job_name = "a"}).status().code(),
            absl::StatusCode::kUnknown);
}

TEST_F(SlurmCliClientUnitTest, TimeoutIsUnavailable) {
  options_.sbatch = Tool("sbatch", "sleep 10\n");
  options_.squeue = Tool("squeue", "sleep 10\n");
  options_.timeout = absl::Milliseconds(200);
  SlurmCliClient slurm(options_);
  absl::StatusOr<std::string> id = slurm.Submit({.script_path = "/s", .job_name = "a"});
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr("may have been submitted"));
  EXPECT_EQ(slurm.Queue({"1"}).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SlurmCliClientUnitTest, MissingBinaryIsFailedPrecondition) {
  options_.squeue = dir_ + "/no-such-squeue";
  options_.scontrol = dir_ + "/no-such-scontrol";
  SlurmCliClient slurm(options_);
  EXPECT_EQ(slurm.Queue({"1"}).status().code(), absl::StatusCode::kFailedPrecondition);
  // Not NOT_FOUND, which Show reserves for "job purged".
  EXPECT_EQ(slurm.Show("1").status().code(), absl::StatusCode::kFailedPrecondition);
}

constexpr char kSqueueEcho[] =
    "for a in \"$@\"; do case \"$a\" in --jobs=*) ids=\"${a#--jobs=}\";; esac; done\n"
    "IFS=, read -ra arr <<< \"$ids\"\n"
    "for i in \"${arr[@]}\"; do\n"
    "  echo \"$i|RUNNING|None|2026-11-26T13:54:43|2026-11-26T13:54:44|NONE|0:05|node1|debug|j$i\"\n"
    "done\n";

TEST_F(SlurmCliClientUnitTest, QueueChunksLongIdLists) {
  options_.squeue =
      Tool("squeue",
           absl::StrCat("echo \"$SLURM_TIME_FORMAT\" > \"$FAKE_SLURM_LOG/tf\"\n", kSqueueEcho));
  options_.max_ids_per_command = 2;
  options_.env.emplace_back("SLURM_TIME_FORMAT", "relative");  // cannot break the parser
  SlurmCliClient slurm(options_);
  absl::StatusOr<std::vector<JobInfo>> jobs = slurm.Queue({"1", "2", "3", "4", "5", "3"});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_THAT(*jobs, SizeIs(5));
  EXPECT_EQ((*jobs)[4].job_id, "5");
  EXPECT_EQ((*jobs)[4].name, "j5");
  EXPECT_EQ((*jobs)[4].elapsed_seconds, 5);
  std::vector<std::vector<std::string>> calls = Calls("squeue");
  ASSERT_THAT(calls, SizeIs(3));
  EXPECT_THAT(calls[0],
              ElementsAre("-h", "-t", "all", "--jobs=1,2", "-o", "%i|%T|%r|%V|%S|%e|%M|%N|%P|%j"));
  EXPECT_THAT(calls[2], Contains("--jobs=5"));
  EXPECT_EQ(Read("tf"), "standard\n");
}

TEST_F(SlurmCliClientUnitTest, QueueOfOnePurgedJobIsEmpty) {
  options_.squeue =
      Tool("squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n");
  absl::StatusOr<std::vector<JobInfo>> jobs = SlurmCliClient(options_).Queue({"77"});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  EXPECT_THAT(*jobs, IsEmpty());
}

TEST_F(SlurmCliClientUnitTest, QueueWithSlurmctldDownIsUnavailable) {
  options_.squeue = Tool("squeue",
                         "echo 'slurm_load_jobs error: Unable to contact slurm controller "
                         "(connect failure)' >&2\nexit 1\n");
  absl::StatusOr<std::vector<JobInfo>> jobs = SlurmCliClient(options_).Queue({"1", "2"});
  EXPECT_EQ(jobs.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(jobs.status().message()), HasSubstr("Unable to contact"));
}

TEST_F(SlurmCliClientUnitTest, EmptyIdListRunsNothing) {
  options_.squeue = Tool("squeue", "exit 1\n");
  options_.sacct = Tool("sacct", "exit 1\n");
  options_.scancel = Tool("scancel", "exit 1\n");
  SlurmCliClient slurm(options_);
  EXPECT_THAT(slurm.Queue({}).value(), IsEmpty());
  EXPECT_THAT(slurm.Accounting({}).value(), IsEmpty());
  EXPECT_TRUE(slurm.Cancel({}).ok());
  EXPECT_THAT(slurm.FindByName({}, absl::Now()).value(), IsEmpty());
  EXPECT_EQ(Read("squeue.calls"), "");
}

TEST_F(SlurmCliClientUnitTest, IdsThatCouldBeOptionsAreRejected) {
  options_.scancel = Tool("scancel", "");
  SlurmCliClient slurm(options_);
  EXPECT_EQ(slurm.Cancel({"12", "--user=bob"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.Queue({"-u"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.Show("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(slurm.FindByName({"a,b"}, absl::Now()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Read("scancel.calls"), "");
}

TEST_F(SlurmCliClientUnitTest, AccountingArgvAndDuplicates) {
  options_.sacct = Tool(
      "sacct",
      "echo '4|REQUEUED|0:0|None|2026-11-26T13:54:53|2026-11-26T13:54:53|2026-11-26T13:55:59|66|"
      "node1|debug|sl'\n"
      "echo '4|RUNNING|0:0|None|2026-11-26T13:55:59|2026-11-26T13:56:10|Unknown|3|node1|debug|sl'\n"
      "echo '5|FAILED|72:0|NonZeroExitCode|2026-11-26T13:55:59|2026-11-26T13:56:10|"
      "2026-11-26T13:56:11|1|node1|debug|x'\n");
  absl::StatusOr<std::vector<JobInfo>> jobs = SlurmCliClient(options_).Accounting({"4", "5"});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_THAT(*jobs, SizeIs(2));
  EXPECT_EQ((*jobs)[0].state, "RUNNING");
  EXPECT_EQ((*jobs)[0].restarts, 1);
  EXPECT_EQ((*jobs)[1].exit_code, 72);
  std::vector<std::vector<std::string>> calls = Calls("sacct");
  ASSERT_THAT(calls, SizeIs(1));
  EXPECT_THAT(calls[0],
              ElementsAre("-X", "-D", "-n", "--parsable2", "--jobs=4,5",
                          "--format=JobIDRaw,State,ExitCode,Reason,Submit,Start,End,ElapsedRaw,"
                          "NodeList,Partition,JobName"));
}

TEST_F(SlurmCliClientUnitTest, AccountingWithSlurmdbdDownIsUnavailable) {
  options_.sacct =
      Tool("sacct",
           "echo 'sacct: error: slurm_persist_conn_open_without_init: failed to open persistent "
           "connection to host:localhost:6819: Connection refused' >&2\n"
           "echo 'sacct: error: Sending PersistInit msg: Connection refused' >&2\n"
           "echo 'sacct: error: Problem talking to the database: Connection refused' >&2\n"
           "exit 1\n");
  EXPECT_EQ(SlurmCliClient(options_).Accounting({"1"}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(SlurmCliClientUnitTest, ShowFoundPurgedAndDown) {
  options_.scontrol = Tool("scontrol",
                           "case \"$4\" in\n"
                           "  1) echo 'JobId=1 JobName=a UserId=u(1) JobState=FAILED "
                           "Reason=NonZeroExitCode Restarts=0 ExitCode=200:0';;\n"
                           "  2) echo 'slurm_load_jobs error: Invalid job id specified' >&2; "
                           "exit 1;;\n"
                           "  *) echo 'slurm_load_jobs error: Socket timed out on send/recv "
                           "operation' >&2; exit 1;;\n"
                           "esac\n");
  SlurmCliClient slurm(options_);
  absl::StatusOr<JobInfo> job = slurm.Show("1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->exit_code, 200);
  EXPECT_EQ(slurm.Show("2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(slurm.Show("3").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Calls("scontrol")[0], ElementsAre("show", "job", "-o", "1"));
}

TEST_F(SlurmCliClientUnitTest, CancelChunksAndToleratesGoneJobs) {
  options_.scancel = Tool("scancel",
                          "echo 'scancel: error: Kill job error on job id 9: Invalid job id "
                          "specified' >&2\nexit 1\n");
  options_.max_ids_per_command = 2;
  SlurmCliClient slurm(options_);
  EXPECT_TRUE(slurm.Cancel({"7", "8", "9"}).ok());
  std::vector<std::vector<std::string>> calls = Calls("scancel");
  ASSERT_THAT(calls, SizeIs(2));
  EXPECT_THAT(calls[0], ElementsAre("7", "8"));
  EXPECT_THAT(calls[1], ElementsAre("9"));
}

// With the default bound, one scancel per 500 ids.
TEST_F(SlurmCliClientUnitTest, CancelOfManyJobsIsOneScancelPer500) {
  options_.scancel = Tool("scancel", "exit 0\n");
  SlurmCliClient slurm(options_);
  std::vector<std::string> ids;
  for (int i = 1; i <= 1200; ++i) ids.push_back(std::to_string(i));
  EXPECT_TRUE(slurm.Cancel(ids).ok());
  std::vector<std::vector<std::string>> calls = Calls("scancel");
  ASSERT_THAT(calls, SizeIs(3));
  EXPECT_THAT(calls[0], SizeIs(500));
  EXPECT_THAT(calls[1], SizeIs(500));
  EXPECT_THAT(calls[2], SizeIs(200));
  EXPECT_EQ(calls[0].front(), "1");
  EXPECT_EQ(calls[2].back(), "1200");
}

TEST_F(SlurmCliClientUnitTest, CancelWithSlurmctldDownIsUnavailable) {
  options_.scancel = Tool("scancel",
                          "echo 'scancel: error: Kill job error on job id 1: Unable to contact "
                          "slurm controller (connect failure)' >&2\nexit 8\n");
  EXPECT_EQ(SlurmCliClient(options_).Cancel({"1"}).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SlurmCliClientUnitTest, FindByNameAsksBothAndMerges) {
  options_.squeue =
      Tool("squeue",
           "echo '8|PENDING|Dependency|2026-11-26T13:54:43|N/A|N/A|0:00||debug|b'\n"
           "echo '7|RUNNING|None|2026-11-26T13:57:00|2026-11-26T13:57:01|NONE|0:09|node2|"
           "debug|a'\n");
  options_.sacct = Tool(
      "sacct",
      "echo '7|PREEMPTED|0:0|None|2026-11-26T13:50:00|2026-11-26T13:50:01|2026-11-26T13:55:00|"
      "299|node3|low|a'\n"
      "echo '7|PENDING|0:0|BeginTime|2026-11-26T13:55:00|Unknown|Unknown|0|None assigned|low|a'\n"
      "echo '6|COMPLETED|0:0|None|2026-11-26T13:40:00|2026-11-26T13:40:01|2026-11-26T13:40:05|4|"
      "node1|debug|a'\n"
      "echo '5|COMPLETED|0:0|None|2026-11-26T13:40:00|2026-11-26T13:40:01|2026-11-26T13:40:05|4|"
      "node1|debug|unrelated'\n");
  const absl::Time since = absl::FromUnixSeconds(1'800'000'000);
  absl::StatusOr<std::vector<JobInfo>> jobs =
      SlurmCliClient(options_).FindByName({"a", "b", "a"}, since);
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_THAT(*jobs, SizeIs(3));
  EXPECT_EQ((*jobs)[0].job_id, "6");
  EXPECT_EQ((*jobs)[1].job_id, "7");
  EXPECT_EQ((*jobs)[1].state, "RUNNING");  // squeue is fresher
  EXPECT_EQ((*jobs)[1].restarts, 1);       // sacct -D knows the older run
  EXPECT_EQ((*jobs)[2].job_id, "8");
  std::vector<std::vector<std::string>> squeue = Calls("squeue");
  ASSERT_THAT(squeue, SizeIs(1));
  EXPECT_THAT(squeue[0], Contains("--name=a,b"));
  std::vector<std::vector<std::string>> sacct = Calls("sacct");
  ASSERT_THAT(sacct, SizeIs(1));
  EXPECT_THAT(sacct[0], Contains("--name=a,b"));
  EXPECT_THAT(sacct[0], Contains("-S"));
  EXPECT_THAT(sacct[0],
              Contains(absl::FormatTime("%Y-%m-%dT%H:%M:%S", since, absl::LocalTimeZone())));
}

}  // namespace
}  // namespace evalctl::agent

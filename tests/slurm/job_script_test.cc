// The rendered job script (controller/config/render.h) on the real local cluster
// (deploy/dev/cluster.sh): a config is loaded and rendered as the controller does it
// (LoadInvocation + RenderTaskJob), the script is written into a fresh run directory and submitted
// with sbatch as the agent does, and the deployment's two failures before the evaluation starts
// must end the job with evalctl's exit code and a clear line in the job's Slurm log:
//   - the server runs but never answers: FAILED, exit code 122 (kExitEndpointTimeout);
//   - the server dies at once: FAILED, exit code 121 (kExitServerDied), naming the server's log.
//
// Jobs run on node1 only (cluster_test takes node2 down), with the deployment `generic` and
// container runtime `none` of the quick start (deploy/examples/quickstart.yaml).
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "common/run_layout.h"
#include "common/subprocess.h"
#include "controller/config/loader.h"
#include "controller/config/render.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/slurm/slurm_test_util.h"

namespace evalctl::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kInvocation[] = "0b5e55ed0fa11ed0";

// $OUTPUT_DIR, $TIMEOUT and $COMMAND are replaced per test.
constexpr char kConfig[] = R"(defaults:
  - execution: slurm/default
  - deployment: generic
  - _self_
execution:
  hostname: evalctl
  username: root
  account: root
  output_dir: $OUTPUT_DIR
  partition: debug
  walltime: "00:05:00"
  endpoint_readiness_timeout: $TIMEOUT
  gres: null
  sbatch_extra_flags: {}
  container_runtime: none
deployment:
  image: null
  port: 0
  served_model_name: never-ready
  command: $COMMAND
evaluation:
  tasks:
    - name: never-evaluated
      command: echo the evaluation must not start; exit 1
)";

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

class JobScriptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RequireCluster();
    std::string tmpl = ::testing::TempDir();
    if (!tmpl.empty() && tmpl.back() == '/') tmpl.pop_back();
    tmpl += "/job_script_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    output_dir_ = tmpl;
    ASSERT_EQ(::chmod(output_dir_.c_str(), 0755), 0);
  }
  // A failed test keeps its run directory (script and logs) for a look.
  void TearDown() override {
    if (!HasFailure()) {
      std::error_code ec;
      std::filesystem::remove_all(output_dir_, ec);
    }
  }

  // Loads and renders the config for `command`, writes run.sub into the task's run directory
  // (with its logs/, as the agent makes it) and submits it on node1. Returns the job id.
  std::string RenderAndSubmit(const std::string& command, int readiness_timeout_s) {
    config::LoadRequest request;
    request.file_name = "job_script_test.yaml";
    request.yaml = absl::StrReplaceAll(kConfig, {{"$OUTPUT_DIR", output_dir_},
                                                 {"$TIMEOUT", absl::StrCat(readiness_timeout_s)},
                                                 {"$COMMAND", command}});
    request.environment = {{"USER", "root"}};
    absl::StatusOr<config::InvocationSpec> spec = config::LoadInvocation(request);
    EXPECT_TRUE(spec.ok()) << spec.status();
    if (!spec.ok() || spec->tasks.size() != 1) return "";
    absl::StatusOr<config::RenderedTaskJob> job = config::RenderTaskJob(
        *spec, spec->tasks[0], kInvocation,
        config::InvocationRunDir(spec->execution, "20261126_130405", kInvocation));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return "";
    EXPECT_TRUE(job->env.empty()) << "the config has no secrets";
    run_dir_ = job->run_dir;
    std::error_code ec;
    std::filesystem::create_directories(run_dir_ + "/logs", ec);
    EXPECT_FALSE(ec) << run_dir_ << ": " << ec.message();
    const std::string script = absl::StrCat(run_dir_, "/", layout::kScriptFile);
    std::ofstream(script) << job->script;

    // --nodelist on the command line wins over the script's #SBATCH lines.
    auto r = RunSubprocess(
        {.argv = {"sbatch", "--parsable", absl::StrCat("--job-name=", job->job_name_prefix, ".1"),
                  "--nodelist=node1", script},
         .working_dir = run_dir_,
         .timeout = absl::Seconds(30)});
    if (!r.ok() || !r->ok()) {
      ADD_FAILURE() << "sbatch " << script << " failed: "
                    << (r.ok() ? r->Check("sbatch").ToString() : r.status().ToString());
      return "";
    }
    return reaper_.Add(std::string(absl::StripAsciiWhitespace(r->stdout_data)));
  }

  // Waits for the job to start (other tests may hold node1 for a while; e2e jobs are exclusive)
  // and then to end; returns its final JobState (scontrol), or the state it was stuck in.
  std::string WaitForEnd(const std::string& id) {
    std::string state;
    WaitFor(
        [&] {
          state = ScontrolField(id, "JobState");
          return state != "" && state != "PENDING";
        },
        absl::Seconds(240), kClusterPoll);
    WaitFor(
        [&] {
          state = ScontrolField(id, "JobState");
          return state != "" && state != "PENDING" && state != "RUNNING" && state != "COMPLETING" &&
                 state != "CONFIGURING";
        },
        absl::Seconds(120), kClusterPoll);
    return state;
  }

  std::string SlurmLog(const std::string& id) {
    return ReadFile(absl::StrCat(run_dir_, "/logs/slurm-", id, ".log"));
  }

  std::string output_dir_;
  std::string run_dir_;
  JobReaper reaper_;
};

// The server starts and stays up but never answers: after endpoint_readiness_timeout (5 s) the
// job gives up with 122 and tears the deployment down.
TEST_F(JobScriptTest, ServerThatNeverAnswersEndsWithEndpointTimeout) {
  const std::string id = RenderAndSubmit("sleep 600", /*readiness_timeout_s=*/5);
  ASSERT_FALSE(id.empty());
  const std::string state = WaitForEnd(id);
  const std::string log = SlurmLog(id);
  ASSERT_EQ(state, "FAILED") << "slurm log:\n" << log;
  EXPECT_EQ(ScontrolField(id, "ExitCode"), absl::StrCat(config::kExitEndpointTimeout, ":0")) << log;
  EXPECT_THAT(log, HasSubstr("was not ready after 5 s (execution.endpoint_readiness_timeout)"));
  EXPECT_THAT(log, HasSubstr("stopping the deployment"));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("job exits with code ", config::kExitEndpointTimeout)));
  EXPECT_THAT(log, ::testing::Not(HasSubstr("evaluation starting")));
}

// The server exits at once: the wait ends as soon as its step is gone, with 121 and the path of
// the server's log. (A readiness timeout well beyond the step's start, so that only the death can
// end the wait.)
TEST_F(JobScriptTest, ServerThatDiesEndsWithServerDiedAndNamesItsLog) {
  const std::string id =
      RenderAndSubmit("echo the server failed to start >&2; exit 3", /*readiness_timeout_s=*/120);
  ASSERT_FALSE(id.empty());
  const std::string state = WaitForEnd(id);
  const std::string log = SlurmLog(id);
  ASSERT_EQ(state, "FAILED") << "slurm log:\n" << log;
  EXPECT_EQ(ScontrolField(id, "ExitCode"), absl::StrCat(config::kExitServerDied, ":0")) << log;
  const std::string server_logs = absl::StrCat(run_dir_, "/logs/server-0-", id, "-*.log");
  EXPECT_THAT(log, HasSubstr("deployment instance 0 exited before"));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("see its log ", server_logs)));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("job exits with code ", config::kExitServerDied)));
  // The log it names holds what the server said.
  EXPECT_THAT(ReadFile(absl::StrCat(run_dir_, "/logs/server-0-", id, "-0.log")),
              HasSubstr("the server failed to start"));
}

}  // namespace
}  // namespace evalctl::testing

// Harness of the end-to-end tests: the real evalctl-controller, evalctl-agent and evalctl
// binaries against the real local Slurm cluster (deploy/dev/cluster.sh).
//
//   TEST_F(E2eTest, Something) {                // E2eTest: cluster checked, controller and
//     RunConfig config;                           // agent started (see the end of this file)
//     config.tasks.push_back({.name = "t0", .command = SucceedingCommand("t0", 2)});
//     auto inv = env_.Submit(config);             // through the C++ client library
//     E2E_ASSERT_OK(inv);
//     auto done = env_.WaitFinished(inv->id(), absl::Minutes(2));
//     ...
//   }
//
// Every test gets its own root directory (controller and agent state, run directories, configs,
// process logs), its own controller port, its own cluster name and its own Slurm job-name prefix,
// so tests may run in parallel. The destructor kills what it started (SIGKILL) and cancels every
// Slurm job whose name carries the test's prefix, also when the test failed; the root directory
// is removed when the test passed and kept (its path printed) when it failed, or always with
// EVALCTL_E2E_KEEP=1 in the environment.
//
// Controller and agent run as child processes (fork + exec, output to a log file, killed with
// the test process through PR_SET_PDEATHSIG). `KillController`/`KillAgent` send SIGKILL and
// `Restart*` start them again with the same state directory (and port).
//
// Both run in the loopback-only insecure mode unless a test sets their security flags; for the
// secure mode (TLS and bearer tokens):
//
//   E2E_ASSERT_OK(env_.MakeCerts());              // deploy/dev/make-certs.sh into certs_dir()
//   env_.set_controller_security({"--tls-cert", env_.certs_dir() + "/server.crt", "--tls-key",
//                                 env_.certs_dir() + "/server.key", "--admin-token-file",
//                                 env_.admin_token_file()});
//   E2E_ASSERT_OK(env_.StartController());
//   env_.set_client_credentials(env_.admin_token(), {.ca_file = env_.certs_dir() + "/ca.crt"});
//   E2E_ASSERT_OK(env_.Connect());
//   env_.set_agent_security({"--tls-ca", env_.certs_dir() + "/ca.crt", "--token-file", path});
//
// Not thread-safe: one test thread drives it (watch streams may be read on other threads).
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/cpp/client.h"
#include "common/subprocess.h"
#include "evalctl/v1/eval_service.pb.h"
#include "gtest/gtest.h"
#include "tests/slurm/slurm_test_util.h"

namespace evalctl::e2e {

namespace v1 = ::evalctl::v1;

// A long-lived child process whose stdout and stderr go to a file.
class ChildProcess {
 public:
  // `env` is set in (or replaces a value of) this process's environment; names in `unset` are
  // removed from it.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::vector<std::string>& argv, const std::string& log_path,
      const std::vector<std::pair<std::string, std::string>>& env = {},
      const std::vector<std::string>& unset = {});
  ~ChildProcess();  // SIGKILL if still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // False once the process has exited (it is reaped then).
  bool Running();
  // Sends `signal` and waits until the process is gone.
  void Kill(int signal);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool reaped_ = false;
};

struct TaskConfig {
  std::string name;
  // A bash snippet; it must not contain "${" (the config loader would read it as an
  // interpolation): write $VAR instead of ${VAR}.
  std::string command;
  // evaluation.tasks[].env_vars (e.g. {"MY_SECRET", "host:E2E_SECRET"}).
  std::vector<std::pair<std::string, std::string>> env_vars;
};

struct RunConfig {
  std::string partition = "debug";
  // sbatch_extra_flags.nodelist; empty leaves it out.
  std::string nodelist = "node1";
  std::string walltime = "00:10:00";
  // execution.max_walltime; empty keeps the default.
  std::string max_walltime;
  std::optional<int> max_attempts;
  std::optional<int> pre_timeout_signal_seconds;
  // target.api_endpoint.url (EVALCTL_ENDPOINT_URL in the job).
  std::string endpoint_url = "http://127.0.0.1:9/v1/chat/completions";
  std::vector<TaskConfig> tasks;
};

// Snippets for task commands.
// Prints "e2e task <name> says hello", writes progress 1, sleeps `seconds`, writes progress 2 and
// results.yml (nemo-evaluator layout, score acc = `value`), prints "e2e task <name> done".
std::string SucceedingCommand(const std::string& name, int seconds, double value = 0.9);
// The results.yml write alone (atomically: the agent may read it at any time).
std::string WriteResultsCommand(const std::string& name, double value = 0.9);
// Writes its progress every second for `seconds` seconds, then results.yml.
std::string ProgressingCommand(const std::string& name, int seconds);
// Prints `waiting` and sleeps until stopped the first time; a later attempt finds the marker the
// first one left in the artifacts directory (kept across attempts), writes results.yml and
// finishes at once.
std::string SecondAttemptFinishes(const std::string& name, const std::string& waiting);

// One record of `sacct -X -D` for a job.
struct SacctRecord {
  std::string job_id;
  std::string name;
  std::string state;  // "CANCELLED by 0" -> "CANCELLED"
  std::string partition;
  std::string node_list;
  absl::Time start = absl::InfinitePast();  // InfinitePast: never started ("Unknown"/"None")
  absl::Time end = absl::InfinitePast();
};
// Every job (and requeued instance) with exactly this name, submitted since `since`.
std::vector<SacctRecord> SacctByName(const std::string& name, absl::Time since);
std::vector<SacctRecord> SacctByJob(const std::string& job_id);
// SacctByName once slurmdbd has caught up (it lags behind squeue by up to a few seconds): polls
// for up to 30 s until there are `count` records and none is in a live state (PENDING, RUNNING,
// COMPLETING, ...). Returns the last records seen.
std::vector<SacctRecord> SettledSacctByName(const std::string& name, absl::Time since,
                                            size_t count);
// Active jobs (squeue) with this exact name: "id STATE" strings.
std::vector<std::string> SqueueByName(const std::string& name);

// Output of a CLI run.
struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

class E2eEnv {
 public:
  E2eEnv();
  ~E2eEnv();
  E2eEnv(const E2eEnv&) = delete;
  E2eEnv& operator=(const E2eEnv&) = delete;

  // --- processes
  // Starts the controller on a free loopback port (the first time) or on the port it had.
  absl::Status StartController(const std::vector<std::pair<std::string, std::string>>& env = {});
  void KillController();  // SIGKILL
  absl::Status RestartController() { return StartController(controller_env_); }
  // Starts the agent and waits until the controller lists its cluster as connected.
  absl::Status StartAgent(const std::vector<std::pair<std::string, std::string>>& env = {});
  void KillAgent();  // SIGKILL
  absl::Status RestartAgent() { return StartAgent(agent_env_); }
  // Runs another evalctl-agent with this agent's flags and state directory until it exits (or,
  // after `timeout`, kills it): what a second agent started on the same state directory does.
  absl::StatusOr<SubprocessResult> RunSecondAgent(absl::Duration timeout = absl::Seconds(30));
  // The agent's flags after its connection and state flags, from the next StartAgent on. The
  // default tracks fast, for tests: {"--min-interval", "0.5", "--max-interval", "5"}.
  void set_agent_flags(std::vector<std::string> flags) { agent_flags_ = std::move(flags); }
  pid_t agent_pid() const { return agent_ != nullptr ? agent_->pid() : -1; }
  pid_t controller_pid() const { return controller_ != nullptr ? controller_->pid() : -1; }
  // Waits until the controller lists the agent's cluster as connected.
  absl::Status WaitAgentConnected(absl::Duration timeout);

  // --- security (default: --insecure for both, no token and no TLS for the clients)
  // The controller's flags in place of "--insecure", from the next StartController on, e.g.
  // {"--tls-cert", crt, "--tls-key", key, "--admin-token-file", admin_token_file()}.
  void set_controller_security(std::vector<std::string> flags) {
    controller_security_ = std::move(flags);
  }
  // The agent's flags in place of "--insecure", from the next StartAgent on, e.g.
  // {"--tls-ca", ca, "--token-file", path}.
  void set_agent_security(std::vector<std::string> flags) { agent_security_ = std::move(flags); }
  // What client() and Cli() present from the next StartController or Connect() on: a bearer
  // token (Cli: in EVALCTL_TOKEN, never on the command line) and TLS files (Cli: --ca-cert,
  // --client-cert, --client-key).
  void set_client_credentials(std::string token, client::TlsOptions tls) {
    client_token_ = std::move(token);
    client_tls_ = std::move(tls);
  }
  // Gives client() a fresh channel with the current credentials.
  absl::Status Connect();
  // Another client of the running controller, with its own credentials (e.g. another user's).
  absl::StatusOr<std::unique_ptr<client::Client>> NewClient(const std::string& token,
                                                            const client::TlsOptions& tls) const;
  // Runs deploy/dev/make-certs.sh into `dir` (default certs_dir()): ca.crt, server.crt/key for
  // 127.0.0.1 and localhost, client.crt/key.
  absl::Status MakeCerts(const std::string& dir = "");
  std::string certs_dir() const { return root_ + "/certs"; }
  // Where a controller started with --admin-token-file admin_token_file() writes its first
  // admin token.
  std::string admin_token_file() const { return root_ + "/admin.token"; }
  // Its content without the newline; "" when there is none.
  std::string admin_token() const;
  bool controller_running();
  bool agent_running();

  // --- names and places
  // The Unix user the configs' execution.username names (default: the user running the test),
  // for an agent that runs as another account.
  void set_run_as(std::string user) { run_as_ = std::move(user); }
  const std::string& root() const { return root_; }
  const std::string& cluster() const { return cluster_; }
  std::string controller_address() const;
  std::string controller_state_dir() const { return root_ + "/controller"; }
  std::string agent_state_dir() const { return root_ + "/agent"; }
  std::string output_dir() const { return root_ + "/runs"; }
  std::string controller_log() const { return root_ + "/logs/controller.log"; }
  std::string agent_log() const { return root_ + "/logs/agent.log"; }
  // Prefix of every Slurm job name of this test: "<account>-<subproject>.".
  std::string job_name_prefix() const;
  // The Slurm job name of a task's attempt.
  std::string JobName(const v1::Task& task, int attempt) const;
  absl::Time started() const { return started_; }

  // --- configs and the controller
  // Writes the YAML of `config` into the test's config directory; returns its path.
  absl::StatusOr<std::string> WriteConfig(const RunConfig& config);
  // The client of the running controller (a fresh channel after each controller start).
  client::Client& client() { return *client_; }
  // Writes the config and submits it through the C++ client library.
  absl::StatusOr<v1::Invocation> Submit(const RunConfig& config);
  absl::StatusOr<v1::Invocation> Get(const std::string& invocation_id);
  absl::StatusOr<v1::Task> GetTask(const std::string& task_id);
  // Polls GetInvocation until every task is terminal.
  absl::StatusOr<v1::Invocation> WaitFinished(const std::string& invocation_id,
                                              absl::Duration timeout);
  // Polls GetTask until `done(task)` holds; returns the last task seen on timeout, as an error.
  absl::StatusOr<v1::Task> WaitTask(const std::string& task_id,
                                    const std::function<bool(const v1::Task&)>& done,
                                    absl::Duration timeout);
  // WaitTask until attempt `number` of the task has a Slurm job.
  absl::StatusOr<v1::Task> WaitAttemptSubmitted(const std::string& task_id, int number,
                                                absl::Duration timeout);
  // True when every task of the invocation is RUNNING.
  bool AllRunning(const std::string& invocation_id);
  // Every event of an invocation from `after` on, until the stream ends (all tasks terminal and
  // sent) or `timeout`.
  absl::StatusOr<std::vector<v1::WatchInvocationResponse>> WatchAll(
      const std::string& invocation_id, uint64_t after, absl::Duration timeout);
  // The whole log of a task's attempt (0 = newest) through StreamLogs.
  absl::StatusOr<std::string> ReadLog(const std::string& task_id, v1::LogKind kind,
                                      int attempt = 0);

  // Runs `evalctl --controller <address> args...` with `env` added to its environment (and the
  // credentials of set_client_credentials).
  CliResult Cli(const std::vector<std::string>& args,
                const std::vector<std::pair<std::string, std::string>>& env = {},
                absl::Duration timeout = absl::Seconds(60));

  // Cancels every active Slurm job of this test (by name prefix).
  void CancelSlurmJobs();

 private:
  // The agent's command line: security flags, controller, state directory, cluster, extra flags.
  std::vector<std::string> AgentArgv() const;

  std::string root_;
  std::string test_name_;
  std::string subproject_;
  std::string cluster_;
  std::string run_as_;
  absl::Time started_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> controller_;
  std::unique_ptr<ChildProcess> agent_;
  std::vector<std::pair<std::string, std::string>> controller_env_;
  std::vector<std::pair<std::string, std::string>> agent_env_;
  std::vector<std::string> agent_flags_ = {"--min-interval", "0.5", "--max-interval", "5"};
  std::vector<std::string> controller_security_ = {"--insecure"};
  std::vector<std::string> agent_security_ = {"--insecure"};
  std::string client_token_;
  client::TlsOptions client_tls_;
  std::unique_ptr<client::Client> client_;
  int config_count_ = 0;
};

// Calls `visit(path)` for every regular file under `dir` (recursively), skipping paths for which
// `skip(path)` is true; a listing error is a test failure.
void ForEachFile(const std::string& dir, const std::function<bool(const std::string&)>& skip,
                 const std::function<void(const std::string&)>& visit);
// Files under `dir` (recursively) whose content holds `needle`, skipping paths for which
// `skip(path)` is true.
std::vector<std::string> FilesContaining(const std::string& dir, const std::string& needle,
                                         const std::function<bool(const std::string&)>& skip = {});
std::string ReadFileOrEmpty(const std::string& path);
// The Unix user running the tests (`id -un`).
std::string CurrentUser();
// This host's name up to the first dot (what an agent claims as an alias).
std::string ShortHostname();

const v1::Task* TaskNamed(const v1::Invocation& inv, const std::string& name);
absl::Time ToTime(const google::protobuf::Timestamp& ts);

// Fails the test (fatally) unless `expr`, an absl::Status or StatusOr, is OK.
#define E2E_ASSERT_OK(expr)                                 \
  do {                                                      \
    const auto& e2e_result_ = (expr);                       \
    ASSERT_TRUE(::evalctl::e2e::internal::Ok(e2e_result_))  \
        << ::evalctl::e2e::internal::StatusOf(e2e_result_); \
  } while (0)

namespace internal {
inline bool Ok(const absl::Status& s) { return s.ok(); }
template <typename T>
bool Ok(const absl::StatusOr<T>& s) {
  return s.ok();
}
inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}
}  // namespace internal

// A test with the cluster checked (failing loudly when it is down), a controller and an agent.
class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::evalctl::testing::RequireCluster();
    if (HasFatalFailure()) return;
    E2E_ASSERT_OK(env_.StartController());
    E2E_ASSERT_OK(env_.StartAgent());
  }

  E2eEnv env_;
};

}  // namespace evalctl::e2e

// `evalctl cluster install|uninstall` and tunnel mode end to end: the real evalctl CLI installs
// the real evalctl-agent through a real sshd on 127.0.0.1 (TestSshd) into a directory of the
// test, the agent registers with an insecure controller on loopback and runs a job on the local
// Slurm cluster (node1). The agent runs as the sshd's test account on this machine, so the jobs
// run as that account too; every process the test starts is stopped at its end.
#include <signal.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "clients/install/agent_install.h"
#include "clients/ssh/testing/test_sshd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::evalctl::ssh::testing::KillInstalledAgent;
using ::evalctl::ssh::testing::ProcessRunning;
using ::evalctl::ssh::testing::ReadPidFile;
using ::evalctl::ssh::testing::TestSshd;
using ::testing::HasSubstr;

class ClusterInstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::evalctl::testing::RequireCluster();
    if (HasFatalFailure()) return;
    E2E_ASSERT_OK(env_.StartController());
    auto sshd = TestSshd::Start();
    E2E_ASSERT_OK(sshd);
    sshd_ = *std::move(sshd);
    remote_dir_ = sshd_->user_dir() + "/headnode";
    // The agent logs in as the account, so its jobs run as that account and write there.
    env_.set_run_as(sshd_->account().name);
    E2E_ASSERT_OK(::evalctl::testing::GiveTo(sshd_->account(), env_.output_dir()));
  }

  void TearDown() override {
    if (tunnel_ != nullptr) tunnel_->Kill(SIGKILL);
    KillInstalledAgent(remote_dir_);  // an agent a failed test left behind
    if (HasFailure() && sshd_ != nullptr) {
      std::cerr << "---- agent.log\n" << ReadFileOrEmpty(remote_dir_ + "/agent.log") << "\n";
    }
  }

  std::vector<std::string> SshArgs(const std::string& command) const {
    return {"cluster",
            command,
            "127.0.0.1",
            "--port",
            absl::StrCat(sshd_->port()),
            "--identity",
            sshd_->client_key(),
            "--known-hosts",
            sshd_->dir() + "/known_hosts",
            "--remote-dir",
            remote_dir_,
            "--user",
            sshd_->account().name};
  }

  std::vector<std::string> InstallArgs() const {
    std::vector<std::string> args = SshArgs("install");
    const char* slurm_conf = std::getenv("SLURM_CONF");
    // SLURM_CONF does not pass through ssh; the agent needs it for sbatch and friends.
    args.insert(args.end(), {"--cluster", env_.cluster(), "--supervisor", "process", "--agent-env",
                             absl::StrCat("SLURM_CONF=", slurm_conf ? slurm_conf : ""),
                             "--agent-arg=--min-interval=0.5", "--agent-arg=--max-interval=5",
                             "--wait", "60s"});
    return args;
  }

  // Submits one short task and waits for it to succeed.
  void RunsAJob(const std::string& name) {
    RunConfig config;
    config.tasks.push_back({.name = name, .command = SucceedingCommand(name, 1)});
    auto submitted = env_.Submit(config);
    E2E_ASSERT_OK(submitted);
    EXPECT_EQ(submitted->cluster(), env_.cluster());
    auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(2));
    E2E_ASSERT_OK(finished);
    ASSERT_EQ(finished->tasks_size(), 1);
    EXPECT_EQ(finished->tasks(0).state(), v1::TASK_STATE_SUCCEEDED) << finished->tasks(0).reason();
  }

  E2eEnv env_;
  std::unique_ptr<TestSshd> sshd_;
  std::string remote_dir_;
  std::unique_ptr<ChildProcess> tunnel_;
};

TEST_F(ClusterInstallTest, InstallRunsAJobReinstallRestartsUninstallStops) {
  CliResult installed = env_.Cli(InstallArgs(), {}, absl::Seconds(120));
  ASSERT_EQ(installed.exit_code, 0) << installed.err;
  EXPECT_THAT(installed.out, HasSubstr("cluster " + env_.cluster() + ": agent running on"));
  EXPECT_THAT(installed.out, HasSubstr("registered with the controller"));
  EXPECT_THAT(ReadFileOrEmpty(remote_dir_ + "/agent.args"),
              HasSubstr("--controller\n" + env_.controller_address() + "\n"));
  const int agent = ReadPidFile(remote_dir_ + "/agent.child.pid");
  EXPECT_TRUE(ProcessRunning(agent));

  RunsAJob("over-ssh");

  // Installing again upgrades in place and restarts the agent, which registers again.
  CliResult again = env_.Cli(InstallArgs(), {}, absl::Seconds(120));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("upgraded the agent of cluster " + env_.cluster()));
  const int agent2 = ReadPidFile(remote_dir_ + "/agent.child.pid");
  EXPECT_NE(agent2, agent);
  EXPECT_FALSE(ProcessRunning(agent));
  EXPECT_TRUE(ProcessRunning(agent2));

  CliResult removed = env_.Cli(SshArgs("uninstall"));
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_FALSE(ProcessRunning(agent2));
  EXPECT_FALSE(std::filesystem::exists(remote_dir_));
  E2E_ASSERT_OK(install::WaitForAgent(env_.client(), env_.cluster(), absl::Seconds(15),
                                      /*connected=*/false));
}

// Against a controller with TLS, `cluster install` (run with an admin's token) creates the
// agent's one-time enrollment token itself; the agent trades it for its credential and deletes
// it, and a reinstall enrolls afresh.
TEST_F(ClusterInstallTest, InstallOnATlsControllerEnrollsTheAgent) {
  env_.KillController();
  E2E_ASSERT_OK(env_.MakeCerts());
  const std::string certs = env_.certs_dir();
  env_.set_controller_security({"--tls-cert", certs + "/server.crt", "--tls-key",
                                certs + "/server.key", "--admin-token-file",
                                env_.admin_token_file()});
  E2E_ASSERT_OK(env_.StartController());
  env_.set_client_credentials(env_.admin_token(), {.ca_file = certs + "/ca.crt"});
  E2E_ASSERT_OK(env_.Connect());

  for (const char* round : {"installed", "upgraded"}) {
    SCOPED_TRACE(round);
    CliResult installed = env_.Cli(InstallArgs(), {}, absl::Seconds(120));
    ASSERT_EQ(installed.exit_code, 0) << installed.err;
    EXPECT_THAT(installed.err, HasSubstr(absl::StrCat(round, " the agent of cluster ")));
    const std::string args = ReadFileOrEmpty(remote_dir_ + "/agent.args");
    EXPECT_THAT(args, HasSubstr("--tls-ca\n" + remote_dir_ + "/ca.pem\n"));
    EXPECT_THAT(args, HasSubstr("--token-file\n" + remote_dir_ + "/token\n"));
    // Registered means enrolled: the one-time token is spent and gone from the headnode.
    EXPECT_TRUE(::evalctl::testing::WaitFor(
        [&] { return !std::filesystem::exists(remote_dir_ + "/token"); }, absl::Seconds(10),
        absl::Milliseconds(50)));
    RunsAJob(absl::StrCat("over-tls-", round));
  }
  auto tokens = env_.client().ListTokens([] {
    v1::ListTokensRequest r;
    r.set_user("*");
    return r;
  }());
  E2E_ASSERT_OK(tokens);
  int enrollments = 0, live_agents = 0;
  for (const v1::TokenInfo& t : tokens->tokens()) {
    if (t.kind() == v1::TOKEN_KIND_ENROLLMENT) {
      ++enrollments;
      EXPECT_TRUE(t.used()) << t.ShortDebugString();
      EXPECT_EQ(t.cluster(), env_.cluster());
    }
    if (t.kind() == v1::TOKEN_KIND_AGENT && !t.revoked()) ++live_agents;
  }
  EXPECT_EQ(enrollments, 2);
  EXPECT_EQ(live_agents, 1);  // the reinstall's credential replaced the first one
}

TEST_F(ClusterInstallTest, UnknownHostKeyStopsTheInstallBeforeAnythingIsSent) {
  std::vector<std::string> args = InstallArgs();
  args[8] = sshd_->dir() + "/empty_known_hosts";  // --known-hosts
  CliResult r = env_.Cli(args);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("unknown host [127.0.0.1]:" + std::to_string(sshd_->port())));
  EXPECT_THAT(r.err, HasSubstr("--accept-new-host-key"));
  EXPECT_FALSE(std::filesystem::exists(remote_dir_));
}

TEST_F(ClusterInstallTest, TunnelCarriesTheAgentStreamAndComesBackAfterADrop) {
  std::vector<std::string> argv = {EVALCTL_CLI_BIN, "--controller", env_.controller_address()};
  for (const std::string& a : InstallArgs()) argv.push_back(a);
  argv.push_back("--tunnel");
  const std::string log = env_.root() + "/logs/tunnel.log";
  auto child = ChildProcess::Start(argv, log);
  E2E_ASSERT_OK(child);
  tunnel_ = *std::move(child);
  E2E_ASSERT_OK(install::WaitForAgent(env_.client(), env_.cluster(), absl::Seconds(90)));

  // The agent dials only the forwarded port on the headnode's loopback.
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      absl::StripAsciiWhitespace(ReadFileOrEmpty(remote_dir_ + "/tunnel.port")), &port));
  EXPECT_THAT(ReadFileOrEmpty(remote_dir_ + "/agent.args"),
              HasSubstr(absl::StrCat("--controller\n127.0.0.1:", port, "\n")));
  EXPECT_NE(absl::StrCat("127.0.0.1:", port), env_.controller_address());
  RunsAJob("through-tunnel");

  // The SSH connection dies; the tunnel comes back on the same port and the agent reconnects.
  sshd_->DropConnections();
  E2E_ASSERT_OK(install::WaitForAgent(env_.client(), env_.cluster(), absl::Seconds(30),
                                      /*connected=*/false));
  E2E_ASSERT_OK(install::WaitForAgent(env_.client(), env_.cluster(), absl::Seconds(90)));
  EXPECT_THAT(ReadFileOrEmpty(log), HasSubstr("tunnel down"));
  RunsAJob("after-reconnect");

  // Ctrl-C ends the tunnel; `cluster uninstall` removes the agent.
  tunnel_->Kill(SIGINT);
  tunnel_.reset();
  CliResult removed = env_.Cli(SshArgs("uninstall"));
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
}

}  // namespace
}  // namespace evalctl::e2e

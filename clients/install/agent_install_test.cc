// InstallAgent and UninstallAgent over a real sshd (TestSshd) with a stand-in agent binary (a
// shell script that records its arguments and environment, then idles): files and modes, the
// supervisor restarting the agent, upgrade in place, removal. The evalctl-agent end to end is in
// tests/e2e/cluster_install_test.cc.
#include "clients/install/agent_install.h"

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "clients/ssh/libssh_remote_host.h"
#include "clients/ssh/testing/test_sshd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::install {
namespace {

using ::evalctl::ssh::testing::Eventually;
using ::evalctl::ssh::testing::KillInstalledAgent;
using ::evalctl::ssh::testing::ProcessRunning;
using ::evalctl::ssh::testing::ReadPidFile;
using ::evalctl::ssh::testing::ReadFile;
using ::evalctl::ssh::testing::TestSshd;
using ::testing::HasSubstr;

class AgentInstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sshd = TestSshd::Start();
    ASSERT_TRUE(sshd.ok()) << sshd.status();
    sshd_ = *std::move(sshd);
    auto host = ssh::LibsshRemoteHost::Connect(sshd_->Options());
    ASSERT_TRUE(host.ok()) << host.status();
    host_ = *std::move(host);
    remote_dir_ = sshd_->user_dir() + "/remote";
    fake_agent_ = sshd_->dir() + "/fake-agent";
    std::ofstream(fake_agent_) << "#!/bin/sh\n"
                                  "d=$(dirname \"$0\")/..\n"
                                  "printf '%s\\n' \"$@\" > \"$d/seen-args\"\n"
                                  "printf '%s\\n' \"$FAKE_SETTING\" > \"$d/seen-env\"\n"
                                  "while :; do sleep 1; done\n";
    std::filesystem::permissions(fake_agent_, std::filesystem::perms::owner_all);
    options_ = {.remote_dir = remote_dir_,
                .agent_binary = fake_agent_,
                .cluster = "testcluster",
                .controller = "127.0.0.1:9",
                .aliases = {"headnode"},
                .enrollment_token = "one-time-secret",
                .env = {{"FAKE_SETTING", "it's $HOME and \"quoted\""}},
                .extra_args = {"--min-interval", "0.5"},
                .supervisor = Supervisor::kProcess};
  }

  void TearDown() override {
    KillInstalledAgent(remote_dir_);  // whatever a failed test left running
  }

  std::unique_ptr<TestSshd> sshd_;
  std::unique_ptr<ssh::LibsshRemoteHost> host_;
  std::string remote_dir_;
  std::string fake_agent_;
  AgentInstallOptions options_;
};

TEST_F(AgentInstallTest, InstallsStartsUpgradesAndRemoves) {
  bool stopped_hook = false;
  options_.after_stop = [&](const std::string& cluster) {
    EXPECT_EQ(cluster, "testcluster");
    stopped_hook = true;
  };
  auto installed = InstallAgent(*host_, options_);
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_FALSE(installed->upgraded);
  EXPECT_EQ(installed->cluster, "testcluster");
  EXPECT_EQ(installed->remote_dir, remote_dir_);
  EXPECT_THAT(installed->supervisor, HasSubstr("process (pid "));
  EXPECT_TRUE(stopped_hook);

  // The agent got its arguments and environment; the token is a 0600 file, not an argument.
  ASSERT_TRUE(Eventually([&] { return !ReadFile(remote_dir_ + "/seen-env").empty(); }));
  EXPECT_EQ(ReadFile(remote_dir_ + "/seen-args"),
            absl::StrCat("--controller\n127.0.0.1:9\n--state-dir\n", remote_dir_,
                         "/state\n--cluster\ntestcluster\n--alias\nheadnode\n--insecure\n"
                         "--token-file\n",
                         remote_dir_, "/token\n--min-interval\n0.5\n"));
  EXPECT_EQ(ReadFile(remote_dir_ + "/seen-env"), "it's $HOME and \"quoted\"\n");
  EXPECT_EQ(ReadFile(remote_dir_ + "/token"), "one-time-secret\n");
  for (const char* f : {"/token", "/agent.env", "/agent.args"}) {
    struct stat st {};
    ASSERT_EQ(::stat((remote_dir_ + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  const int supervisor = ReadPidFile(remote_dir_ + "/agent.pid");
  const int agent = ReadPidFile(remote_dir_ + "/agent.child.pid");
  ASSERT_TRUE(ProcessRunning(supervisor));
  ASSERT_TRUE(ProcessRunning(agent));
  EXPECT_THAT(ReadFile(absl::StrCat("/proc/", agent, "/cmdline")),
              ::testing::Not(HasSubstr("one-time-secret")));
  auto status = host_->Exec(remote_dir_ + "/agentctl status", absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(status->stdout_data, HasSubstr(absl::StrCat("running supervisor=", supervisor)));

  // The supervisor restarts an agent that dies.
  ASSERT_EQ(::kill(agent, SIGKILL), 0);
  EXPECT_TRUE(Eventually([&] {
    int now = ReadPidFile(remote_dir_ + "/agent.child.pid");
    return now != agent && ProcessRunning(now);
  }));
  EXPECT_THAT(ReadFile(remote_dir_ + "/agent.log"), HasSubstr("restarting in 1s"));

  // Installing again upgrades in place: the old processes stop, new ones start, and files that
  // no longer apply (the token) go.
  options_.enrollment_token.clear();
  options_.tunnel_port = 47001;
  stopped_hook = false;
  auto again = InstallAgent(*host_, options_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->upgraded);
  EXPECT_TRUE(stopped_hook);
  EXPECT_FALSE(ProcessRunning(supervisor)) << ReadFile(absl::StrCat("/proc/", supervisor, "/status"));
  const int supervisor2 = ReadPidFile(remote_dir_ + "/agent.pid");
  EXPECT_NE(supervisor2, supervisor);
  EXPECT_TRUE(ProcessRunning(supervisor2));
  EXPECT_FALSE(std::filesystem::exists(remote_dir_ + "/token"));
  auto port = ReadTunnelPort(*host_, remote_dir_);
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_EQ(*port, 47001);

  const int agent2 = ReadPidFile(remote_dir_ + "/agent.child.pid");
  absl::Status removed = UninstallAgent(*host_, remote_dir_, /*keep_state=*/false);
  ASSERT_TRUE(removed.ok()) << removed;
  EXPECT_FALSE(ProcessRunning(supervisor2));
  EXPECT_FALSE(ProcessRunning(agent2));
  EXPECT_FALSE(std::filesystem::exists(remote_dir_));

  removed = UninstallAgent(*host_, remote_dir_, false);
  EXPECT_EQ(removed.code(), absl::StatusCode::kNotFound) << removed;
  EXPECT_THAT(removed.message(), HasSubstr("no agent is installed in " + remote_dir_));
  EXPECT_EQ(ReadTunnelPort(*host_, remote_dir_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(AgentInstallTest, UninstallCanKeepTheState) {
  ASSERT_TRUE(InstallAgent(*host_, options_).ok());
  std::ofstream(remote_dir_ + "/state/journal.db") << "journal";
  ASSERT_TRUE(UninstallAgent(*host_, remote_dir_, /*keep_state=*/true).ok());
  EXPECT_EQ(ReadFile(remote_dir_ + "/state/journal.db"), "journal");
  EXPECT_FALSE(std::filesystem::exists(remote_dir_ + "/agentctl"));
  EXPECT_FALSE(std::filesystem::exists(remote_dir_ + "/bin"));
}

TEST_F(AgentInstallTest, RejectsUnusableOptions) {
  AgentInstallOptions o = options_;
  o.env = {{"NOT-A-NAME", "x"}};
  EXPECT_EQ(InstallAgent(*host_, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = options_;
  o.tls_cert_file = "/etc/hostname";
  EXPECT_EQ(InstallAgent(*host_, o).status().code(), absl::StatusCode::kInvalidArgument);
  o = options_;
  o.agent_binary = sshd_->dir() + "/missing-agent";
  auto r = InstallAgent(*host_, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("missing-agent"));
}

TEST(RemotePathExprTest, ExpandsHomeAndQuotesTheRest) {
  EXPECT_EQ(RemotePathExpr("~/.evalctl"), "\"$HOME\"/'.evalctl'");
  EXPECT_EQ(RemotePathExpr("~"), "\"$HOME\"");
  EXPECT_EQ(RemotePathExpr("/opt/it's"), "'/opt/it'\\''s'");
}

}  // namespace
}  // namespace evalctl::install

// LibsshRemoteHost against a real sshd on 127.0.0.1 (TestSshd): commands, SFTP uploads, host-key
// checking, authentication and connection errors, and a reverse port forward.
#include "clients/ssh/libssh_remote_host.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "clients/ssh/testing/echo_server.h"
#include "clients/ssh/testing/test_sshd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::ssh {
namespace {

using ::evalctl::ssh::testing::EchoServer;
using ::evalctl::ssh::testing::GenerateKey;
using ::evalctl::ssh::testing::ReadFile;
using ::evalctl::ssh::testing::RoundTrip;
using ::evalctl::ssh::testing::TestSshd;
using ::testing::HasSubstr;

class LibsshRemoteHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sshd = TestSshd::Start();
    ASSERT_TRUE(sshd.ok()) << sshd.status();
    sshd_ = *std::move(sshd);
  }

  std::unique_ptr<LibsshRemoteHost> ConnectOrDie(const SshOptions& options) {
    auto host = LibsshRemoteHost::Connect(options);
    EXPECT_TRUE(host.ok()) << host.status() << "\nsshd log:\n"
                           << ReadFile(sshd_->dir() + "/sshd.log");
    return host.ok() ? *std::move(host) : nullptr;
  }

  std::string HostName() const { return absl::StrCat("[127.0.0.1]:", sshd_->port()); }

  std::unique_ptr<TestSshd> sshd_;
};

TEST_F(LibsshRemoteHostTest, RunsCommandsWithExitCodeAndBothStreams) {
  auto host = ConnectOrDie(sshd_->Options());
  ASSERT_NE(host, nullptr);
  auto r = host->Exec("echo out; echo err >&2; exit 3", absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->stdout_data, "out\n");
  EXPECT_EQ(r->stderr_data, "err\n");
  EXPECT_THAT(r->Check("the probe").message(), HasSubstr("the probe exited with status 3: err"));

  // The same session runs further commands; stdin is closed, so `cat` ends at once.
  r = host->Exec(absl::StrCat("printf %s ", ShellQuote("it's $HOME"), "; cat"), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "it's $HOME");

  // Commands run as the test account, in its home, with its own startup files.
  r = host->Exec("id -un; echo \"$HOME\"", absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, absl::StrCat(sshd_->account().name, "\n", sshd_->account().home, "\n"));

  r = host->Exec("sleep 5", absl::Milliseconds(300));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
}

// A login shell whose startup files print and take seconds (module systems, conda, pyenv): the
// command's timeout counts from when it starts, what the startup files print is not its output,
// and a shell that does not start the command in time is named as the cause.
TEST(SlowLoginShellTest, StartupTimeIsNotTheCommandsAndIsNamedWhenTooLong) {
  auto sshd = TestSshd::Start(
      {.account = "evalctl-slowshell", .startup = "echo banner-from-bashrc\nsleep 3\n"});
  ASSERT_TRUE(sshd.ok()) << sshd.status();
  auto host = LibsshRemoteHost::Connect((*sshd)->Options());
  ASSERT_TRUE(host.ok()) << host.status();
  auto r = (*host)->Exec("echo hi", absl::Seconds(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "hi\n");
  EXPECT_EQ(r->exit_code, 0);

  SshOptions impatient = (*sshd)->Options();
  impatient.login_timeout = absl::Seconds(1);
  auto quick = LibsshRemoteHost::Connect(impatient);
  ASSERT_TRUE(quick.ok()) << quick.status();
  r = (*quick)->Exec("echo hi", absl::Seconds(10));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(r.status().message(), HasSubstr("did not start a command within 1s"));
  EXPECT_THAT(r.status().message(), HasSubstr("startup files (such as ~/.bashrc"));
}

TEST_F(LibsshRemoteHostTest, UploadsAtomicallyWithTheMode) {
  auto host = ConnectOrDie(sshd_->Options());
  ASSERT_NE(host, nullptr);
  const std::string dir = sshd_->user_dir() + "/upload";
  std::filesystem::create_directories(dir);
  ASSERT_TRUE(::evalctl::testing::GiveTo(sshd_->account(), dir).ok());
  const std::string target = dir + "/token";
  ASSERT_TRUE(host->UploadData("first", target, 0600).ok());
  EXPECT_EQ(ReadFile(target), "first");
  struct stat st {};
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  // Replacing an existing file (a running binary, on upgrade) works, with the new mode.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  const std::string local = sshd_->dir() + "/big.bin";
  std::ofstream(local, std::ios::binary) << big;
  absl::Status s = host->UploadFile(local, target, 0755);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(ReadFile(target), big);
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  // No temporary file is left next to it.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "token");
  }
  EXPECT_EQ(entries, 1);

  EXPECT_EQ(host->UploadData("x", "relative/path", 0600).code(),
            absl::StatusCode::kInvalidArgument);
  s = host->UploadData("x", sshd_->dir() + "/no/such/dir/file", 0600);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("/no/such/dir/"));
  EXPECT_EQ(host->UploadFile(sshd_->dir() + "/missing", target, 0600).code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LibsshRemoteHostTest, UnknownHostIsRefusedUnlessNewKeysAreAccepted) {
  SshOptions options = sshd_->Options();
  options.known_hosts_file = sshd_->dir() + "/empty_known_hosts";
  auto host = LibsshRemoteHost::Connect(options);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(host.status().message(), HasSubstr("unknown host " + HostName()));
  EXPECT_THAT(host.status().message(), HasSubstr("ssh-ed25519 SHA256:"));
  EXPECT_THAT(host.status().message(), HasSubstr("--accept-new-host-key"));
  EXPECT_THAT(host.status().message(), HasSubstr(options.known_hosts_file));
  EXPECT_FALSE(std::filesystem::exists(options.known_hosts_file));

  options.host_key_policy = HostKeyPolicy::kAcceptNew;
  ASSERT_NE(ConnectOrDie(options), nullptr);
  EXPECT_THAT(ReadFile(options.known_hosts_file), HasSubstr("ssh-ed25519"));
  // Once recorded, strict checking accepts it.
  options.host_key_policy = HostKeyPolicy::kStrict;
  EXPECT_NE(ConnectOrDie(options), nullptr);
}

TEST_F(LibsshRemoteHostTest, ChangedHostKeyIsRefusedEvenWhenAcceptingNewKeys) {
  ASSERT_TRUE(sshd_->NewHostKey().ok());
  ASSERT_TRUE(sshd_->Restart().ok());
  SshOptions options = sshd_->Options();  // known_hosts still has the old key
  for (HostKeyPolicy policy : {HostKeyPolicy::kStrict, HostKeyPolicy::kAcceptNew}) {
    options.host_key_policy = policy;
    auto host = LibsshRemoteHost::Connect(options);
    ASSERT_FALSE(host.ok());
    EXPECT_EQ(host.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(host.status().message(), HasSubstr("host key for " + HostName() + " changed"));
    EXPECT_THAT(host.status().message(), HasSubstr("SHA256:"));
    EXPECT_THAT(host.status().message(), HasSubstr("refusing to connect"));
    EXPECT_THAT(host.status().message(), HasSubstr("ssh-keygen -R"));
  }
}

TEST_F(LibsshRemoteHostTest, WrongKeySaysWhichMethodsWereTried) {
  SshOptions options = sshd_->Options();
  options.identity_file = sshd_->dir() + "/other_key";
  ASSERT_TRUE(GenerateKey(options.identity_file).ok());
  auto host = LibsshRemoteHost::Connect(options);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(host.status().message(), HasSubstr("authentication to "));
  EXPECT_THAT(host.status().message(), HasSubstr("tried publickey with " + options.identity_file));
  EXPECT_THAT(host.status().message(), HasSubstr("the server accepts publickey"));
  // No key material in the message.
  EXPECT_THAT(host.status().message(), ::testing::Not(HasSubstr("PRIVATE KEY")));

  options.identity_file = sshd_->dir() + "/no_such_key";
  host = LibsshRemoteHost::Connect(options);
  EXPECT_EQ(host.status().code(), absl::StatusCode::kInvalidArgument) << host.status();
  EXPECT_THAT(host.status().message(), HasSubstr(options.identity_file));
}

TEST_F(LibsshRemoteHostTest, UnreachablePortIsUnavailableWithTheCause) {
  SshOptions options = sshd_->Options();
  const int port = options.port;
  sshd_.reset();  // nothing listens there any more
  options.port = port;
  auto host = LibsshRemoteHost::Connect(options);
  ASSERT_FALSE(host.ok());
  EXPECT_EQ(host.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(host.status().message(), HasSubstr(absl::StrCat("cannot connect to ")));
  EXPECT_THAT(host.status().message(), HasSubstr(absl::StrCat("127.0.0.1:", port)));
  EXPECT_THAT(host.status().message(), HasSubstr("refused"));
}

TEST_F(LibsshRemoteHostTest, ReverseForwardCarriesBytesBothWays) {
  EchoServer echo;
  auto host = ConnectOrDie(sshd_->Options());
  ASSERT_NE(host, nullptr);
  auto port = host->ListenForward("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_GT(*port, 0);
  std::atomic<bool> stop{false};
  absl::Status served;
  std::thread server([&] { served = host->ServeForwards("127.0.0.1", echo.port(), stop); });

  auto small = RoundTrip(*port, "hello through the tunnel");
  EXPECT_TRUE(small.ok()) << small.status();
  if (small.ok()) {
    EXPECT_EQ(*small, "hello through the tunnel");
  }
  // More than the SSH channel window, so flow control is exercised.
  std::string big(2 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + (i / 4096) % 26);
  auto large = RoundTrip(*port, big, absl::Seconds(30));
  EXPECT_TRUE(large.ok()) << large.status();
  if (large.ok()) {
    EXPECT_TRUE(*large == big) << large->size() << " bytes came back";
  }

  stop = true;
  server.join();
  EXPECT_TRUE(served.ok()) << served;
}

TEST_F(LibsshRemoteHostTest, ForwardToADeadTargetClosesOnlyThatConnection) {
  auto host = ConnectOrDie(sshd_->Options());
  ASSERT_NE(host, nullptr);
  auto port = host->ListenForward("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  int dead_port = 0;
  {
    EchoServer gone;
    dead_port = gone.port();
  }
  std::atomic<bool> stop{false};
  absl::Status served;
  std::thread server([&] { served = host->ServeForwards("127.0.0.1", dead_port, stop); });
  auto r = RoundTrip(*port, "anyone?");
  EXPECT_TRUE(r.ok()) << r.status();
  if (r.ok()) {
    EXPECT_EQ(*r, "");
  }
  EXPECT_TRUE(host->connected());
  stop = true;
  server.join();
  EXPECT_TRUE(served.ok()) << served;
}

}  // namespace
}  // namespace evalctl::ssh

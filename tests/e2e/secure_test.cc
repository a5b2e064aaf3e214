// The controller's secure mode with the real binaries on the real local Slurm cluster: TLS with
// the certificates of deploy/dev/make-certs.sh, bearer tokens (admin, users, agents), one-time
// agent enrollment, and mutual TLS. Jobs run on node1 (partition debug), never exclusive.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "clients/cpp/config_source.h"
#include "common/sqlite.h"
#include "common/subprocess.h"
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::StatusCode kUnauthenticated = absl::StatusCode::kUnauthenticated;
constexpr absl::StatusCode kPermissionDenied = absl::StatusCode::kPermissionDenied;
constexpr absl::StatusCode kNotFound = absl::StatusCode::kNotFound;
constexpr absl::StatusCode kUnavailable = absl::StatusCode::kUnavailable;

template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

int FileMode(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return static_cast<int>(st.st_mode & 07777);
}

bool WaitForText(const std::string& path, const std::string& needle, absl::Duration timeout) {
  return ::evalctl::testing::WaitFor(
      [&] { return absl::StrContains(ReadFileOrEmpty(path), needle); }, timeout,
      ::evalctl::testing::kClusterPoll);
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The secret of a token `evalctl_<16 hex digits of id>_<secret>` (the secret is URL-safe base64,
// which may contain '_').
std::string SecretOf(const std::string& token) {
  constexpr size_t kSecretAt = sizeof("evalctl_") - 1 + 16 + 1;
  return token.size() > kSecretAt ? token.substr(kSecretAt) : "";
}

// The public id of a token `evalctl_<id>_<secret>`.
std::string TokenId(const std::string& token) {
  absl::string_view rest = token;
  if (!absl::ConsumePrefix(&rest, "evalctl_")) return "";
  return std::string(rest.substr(0, rest.find('_')));
}

// ---------------------------------------------------------------- start-up refusals

struct Refusal {
  int exit_code;
  std::string err;
};

Refusal RunController(const std::string& state_dir, std::vector<std::string> flags) {
  std::vector<std::string> argv = {EVALCTL_CONTROLLER_BIN, "--state-dir", state_dir};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto r = RunSubprocess({.argv = argv, .timeout = absl::Seconds(20)});
  if (!r.ok()) return {-100, r.status().ToString()};
  if (r->timed_out) return {-101, "still running after 20 s (it served)"};
  return {r->exit_code, r->stderr_data};
}

// Without TLS the controller serves loopback addresses only, and only when told so (--insecure).
TEST(SecureStartTest, InsecureModeIsLoopbackOnlyAndNeverImplied) {
  E2eEnv env;
  const std::string state = env.root() + "/refused-state";
  for (const char* listen : {"0.0.0.0:0", "[::]:0"}) {
    SCOPED_TRACE(listen);
    Refusal r = RunController(state, {"--insecure", "--listen", listen});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("--insecure serves without TLS or authentication, so it binds "
                                 "loopback addresses only"));
    EXPECT_THAT(r.err, HasSubstr(absl::StrCat(listen, " is not one")));
  }
  // Neither TLS nor --insecure: refused on any address, loopback included.
  for (const char* listen : {"0.0.0.0:0", "127.0.0.1:0"}) {
    SCOPED_TRACE(listen);
    Refusal r = RunController(state, {"--listen", listen});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("give --tls-cert and --tls-key (TLS with bearer tokens), or "
                                 "--insecure (no TLS, no authentication, loopback only)"));
  }
  // Half or contradictory settings.
  Refusal both = RunController(state, {"--insecure", "--listen", "127.0.0.1:0", "--tls-cert",
                                       "/nonexistent.crt", "--tls-key", "/nonexistent.key"});
  EXPECT_EQ(both.exit_code, 2) << both.err;
  Refusal half = RunController(state, {"--listen", "127.0.0.1:0", "--tls-cert", "/x.crt"});
  EXPECT_EQ(half.exit_code, 2) << half.err;
  EXPECT_THAT(half.err, HasSubstr("--tls-cert and --tls-key go together"));
  Refusal require = RunController(state, {"--listen", "127.0.0.1:0", "--tls-cert", "/x.crt",
                                          "--tls-key", "/x.key", "--require-client-cert"});
  EXPECT_EQ(require.exit_code, 2) << require.err;
  EXPECT_THAT(require.err, HasSubstr("--require-client-cert needs --tls-client-ca"));
  // Refused before anything was created.
  EXPECT_FALSE(std::filesystem::exists(state + "/controller.db"));
}

// ---------------------------------------------------------------- TLS and tokens

class SecureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::evalctl::testing::RequireCluster();
    if (HasFatalFailure()) return;
    E2E_ASSERT_OK(env_.MakeCerts());
  }

  std::string Certs(const std::string& name) const { return env_.certs_dir() + "/" + name; }
  client::TlsOptions Tls() const { return {.ca_file = Certs("ca.crt")}; }
  client::TlsOptions MutualTls() const {
    return {.ca_file = Certs("ca.crt"),
            .cert_file = Certs("client.crt"),
            .key_file = Certs("client.key")};
  }

  // Starts the controller with TLS and --admin-token-file (with `mutual`, client certificates
  // are required too) and makes the harness's client that admin.
  void StartSecureController(bool mutual = false) {
    std::vector<std::string> flags = {"--tls-cert",         Certs("server.crt"),
                                      "--tls-key",          Certs("server.key"),
                                      "--admin-token-file", env_.admin_token_file()};
    if (mutual) {
      flags.insert(flags.end(), {"--tls-client-ca", Certs("ca.crt"), "--require-client-cert"});
    }
    env_.set_controller_security(flags);
    E2E_ASSERT_OK(env_.StartController());
    EXPECT_THAT(ReadFileOrEmpty(env_.controller_log()),
                HasSubstr(mutual ? "TLS, client certificates)" : "TLS)"));
    EXPECT_EQ(FileMode(env_.admin_token_file()), 0600);
    admin_token_ = env_.admin_token();
    ASSERT_TRUE(absl::StartsWith(admin_token_, "evalctl_")) << "no admin token was written";
    tls_ = mutual ? MutualTls() : Tls();
    env_.set_client_credentials(admin_token_, tls_);
    E2E_ASSERT_OK(env_.Connect());
  }

  // A fresh enrollment token for the agent of the user running the tests on `cluster`, also
  // written (0600) to `path`.
  std::string EnrollmentToken(const std::string& cluster, const std::string& path) {
    v1::CreateEnrollmentTokenRequest req;
    req.set_cluster(cluster);
    req.set_unix_user(CurrentUser());
    req.add_aliases(ShortHostname());  // the agent claims its host's short name
    auto resp = env_.client().CreateEnrollmentToken(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok()) return "";
    EXPECT_EQ(resp->info().kind(), v1::TOKEN_KIND_ENROLLMENT);
    EXPECT_EQ(resp->info().cluster(), cluster);
    EXPECT_FALSE(resp->info().used());
    EXPECT_TRUE(WritePrivate(path, resp->token() + "\n"));
    return resp->token();
  }

  static bool WritePrivate(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    return FileMode(path) == 0600;
  }

  // Starts the harness's agent with the CA (and, with `mutual`, the client certificate) and an
  // enrollment token file, and waits until it is connected.
  void StartEnrollingAgent(const std::string& token_file, bool mutual = false) {
    std::vector<std::string> flags = {"--tls-ca", Certs("ca.crt"), "--token-file", token_file};
    if (mutual) {
      flags.insert(flags.end(),
                   {"--tls-cert", Certs("client.crt"), "--tls-key", Certs("client.key")});
    }
    env_.set_agent_security(flags);
    E2E_ASSERT_OK(env_.StartAgent());
  }

  // An agent besides the harness's one, with its own state directory and log.
  struct OtherAgent {
    std::unique_ptr<ChildProcess> process;
    std::string state_dir;
    std::string log;
  };
  OtherAgent StartOtherAgent(const std::string& name, const std::string& cluster,
                             const std::vector<std::string>& security) {
    OtherAgent agent{.state_dir = env_.root() + "/" + name,
                     .log = env_.root() + "/logs/" + name + ".log"};
    std::vector<std::string> argv = {EVALCTL_AGENT_BIN};
    argv.insert(argv.end(), security.begin(), security.end());
    argv.insert(argv.end(),
                {"--controller", env_.controller_address(), "--state-dir", agent.state_dir,
                 "--cluster", cluster, "--min-interval", "0.5", "--max-interval", "5"});
    auto child = ChildProcess::Start(argv, agent.log);
    EXPECT_TRUE(child.ok()) << child.status();
    if (child.ok()) agent.process = *std::move(child);
    return agent;
  }

  // Opens AgentService.Connect as an agent does (TLS with the CA, `token` as the bearer token),
  // sends Register and returns how the controller ended the stream. Only for registrations the
  // controller refuses: an accepted one is closed at once.
  grpc::Status RegisterAs(const std::string& token, const std::string& cluster,
                          const std::string& agent_id,
                          const std::string& unix_user = CurrentUser()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFileOrEmpty(Certs("ca.crt"));
    auto channel = grpc::CreateChannel(env_.controller_address(), grpc::SslCredentials(ssl));
    auto stub = v1::AgentService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    auto stream = stub->Connect(&context);
    v1::AgentMessage reg;
    reg.mutable_register_()->set_agent_id(agent_id);
    reg.mutable_register_()->set_cluster(cluster);
    reg.mutable_register_()->set_unix_user(unix_user);
    reg.mutable_register_()->set_version("secure-test");
    (void)stream->Write(reg);
    v1::ControllerMessage reply;
    if (stream->Read(&reply)) {
      ADD_FAILURE() << "the controller accepted the registration: " << reply.ShortDebugString();
      context.TryCancel();
    }
    return stream->Finish();
  }

  // The credential in an agent's secret store; "" when there is none.
  static std::string StoredCredential(const std::string& state_dir) {
    auto secrets = SqliteDb::Open(state_dir + "/secrets.db");
    EXPECT_TRUE(secrets.ok()) << secrets.status();
    if (!secrets.ok()) return "";
    auto st = (*secrets)->Prepare("SELECT value FROM credential WHERE id = 1");
    EXPECT_TRUE(st.ok()) << st.status();
    if (!st.ok()) return "";
    auto row = st->Step();
    EXPECT_TRUE(row.ok()) << row.status();
    return row.ok() && *row ? st->Text(0) : "";
  }

  // Whether the controller lists `cluster` as connected now.
  bool Connected(const std::string& cluster) {
    auto clusters = env_.client().ListClusters();
    EXPECT_TRUE(clusters.ok()) << clusters.status();
    if (!clusters.ok()) return false;
    for (const v1::Cluster& c : clusters->clusters()) {
      if (c.name() == cluster && c.connected()) return true;
    }
    return false;
  }

  absl::StatusOr<v1::Invocation> SubmitAs(client::Client& client, const RunConfig& config) {
    absl::StatusOr<std::string> path = env_.WriteConfig(config);
    if (!path.ok()) return path.status();
    absl::StatusOr<v1::ConfigSource> source = client::BuildConfigSource({.path = *path});
    if (!source.ok()) return source.status();
    v1::SubmitInvocationRequest req;
    *req.mutable_config() = *std::move(source);
    auto resp = client.SubmitInvocation(req);
    if (!resp.ok()) return resp.status();
    return resp->invocation();
  }

  std::unique_ptr<client::Client> ClientWith(const std::string& token,
                                             const client::TlsOptions& tls) {
    auto c = env_.NewClient(token, tls);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  std::string CreateUserToken(const std::string& user) {
    v1::CreateTokenRequest req;
    req.set_user(user);
    req.set_role(v1::ROLE_USER);
    req.set_description(absl::StrCat("token of ", user));
    auto resp = env_.client().CreateToken(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok()) return "";
    EXPECT_EQ(resp->info().user(), user);
    EXPECT_EQ(resp->info().role(), v1::ROLE_USER);
    EXPECT_EQ(resp->info().kind(), v1::TOKEN_KIND_USER);
    EXPECT_EQ(resp->info().token_id(), TokenId(resp->token()));
    return resp->token();
  }

  // Reads a watch to its end and returns how it ended.
  template <typename Watch>
  static absl::Status EndOf(Watch& watch) {
    v1::WatchInvocationResponse event;
    while (watch.Next(&event)) {
    }
    return watch.Finish();
  }

  E2eEnv env_;
  std::string admin_token_;
  client::TlsOptions tls_;
};

// Who may call what: no token, a wrong one, a plaintext client, users who see only their own
// invocations, an admin who sees everyone's, revocation, and token listings without secrets.
TEST_F(SecureTest, TokensDecideWhoSeesWhat) {
  ASSERT_NO_FATAL_FAILURE(StartSecureController());
  const std::string enroll_file = env_.root() + "/enroll.token";
  const std::string enrollment = EnrollmentToken(env_.cluster(), enroll_file);
  ASSERT_NO_FATAL_FAILURE(StartEnrollingAgent(enroll_file));

  // --- no token, a malformed one, an unknown id, a known id with a wrong secret: the same answer
  auto anonymous = ClientWith("", Tls());
  ASSERT_NE(anonymous, nullptr);
  absl::Status s = StatusOf(anonymous->ListInvocations({}));
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("needs a bearer token"));
  s = StatusOf(anonymous->ListClusters());
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  s = StatusOf(anonymous->ListTokens());
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  const std::string admin_id = TokenId(admin_token_);
  for (const std::string& garbage :
       {std::string("garbage"), std::string("evalctl_0123456789abcdef_c2VjcmV0"),
        absl::StrCat("evalctl_", admin_id, "_not-the-secret")}) {
    SCOPED_TRACE(garbage);
    auto wrong = ClientWith(garbage, Tls());
    ASSERT_NE(wrong, nullptr);
    s = StatusOf(wrong->ListInvocations({}));
    EXPECT_EQ(s.code(), kUnauthenticated) << s;
    EXPECT_THAT(s.message(), HasSubstr("the bearer token is not valid"));
    EXPECT_THAT(s.message(), Not(HasSubstr(admin_id)));
    s = StatusOf(wrong->CreateToken({}));
    EXPECT_EQ(s.code(), kUnauthenticated) << s;
  }

  // --- the TLS port speaks TLS only, with a certificate of the given CA
  auto plaintext = ClientWith(admin_token_, {});
  ASSERT_NE(plaintext, nullptr);
  s = StatusOf(plaintext->ListClusters({}, {.timeout = absl::Seconds(5)}));
  EXPECT_EQ(s.code(), kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("cannot reach evalctl-controller")) << s;
  const std::string other_ca_dir = env_.root() + "/other-ca";
  E2E_ASSERT_OK(env_.MakeCerts(other_ca_dir));
  auto foreign_ca = ClientWith(admin_token_, {.ca_file = other_ca_dir + "/ca.crt"});
  ASSERT_NE(foreign_ca, nullptr);
  s = StatusOf(foreign_ca->ListClusters({}, {.timeout = absl::Seconds(5)}));
  EXPECT_EQ(s.code(), kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("TLS handshake failed")) << s;

  // --- tokens for alice and bob
  const std::string alice_token = CreateUserToken("alice");
  const std::string bob_token = CreateUserToken("bob");
  ASSERT_FALSE(alice_token.empty());
  ASSERT_FALSE(bob_token.empty());
  auto alice = ClientWith(alice_token, Tls());
  auto bob = ClientWith(bob_token, Tls());
  ASSERT_NE(alice, nullptr);
  ASSERT_NE(bob, nullptr);

  // Users make tokens for themselves only, and no enrollment tokens.
  {
    v1::CreateTokenRequest for_bob;
    for_bob.set_user("bob");
    s = StatusOf(alice->CreateToken(for_bob));
    EXPECT_EQ(s.code(), kPermissionDenied) << s;
    v1::CreateTokenRequest admin_role;
    admin_role.set_role(v1::ROLE_ADMIN);
    s = StatusOf(alice->CreateToken(admin_role));
    EXPECT_EQ(s.code(), kPermissionDenied) << s;
    v1::CreateEnrollmentTokenRequest enroll;
    enroll.set_cluster(env_.cluster());
    s = StatusOf(alice->CreateEnrollmentToken(enroll));
    EXPECT_EQ(s.code(), kPermissionDenied) << s;
    EXPECT_THAT(s.message(), HasSubstr("only admins can create enrollment tokens"));
  }

  // --- alice's invocation. Its jobs run as the Unix user running the tests, not "alice": she may
  // submit it once an admin granted her that account.
  RunConfig config;
  config.tasks.push_back({.name = "alices-task", .command = SucceedingCommand("alices-task", 4)});
  const std::string unix_user = CurrentUser();
  s = StatusOf(SubmitAs(*alice, config));
  EXPECT_EQ(s.code(), kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("user alice may not run jobs as the Unix user ",
                                                  unix_user, " (execution.username)")));
  CliResult grant_denied =
      env_.Cli({"grant", "add", "alice", unix_user}, {{"EVALCTL_TOKEN", alice_token}});
  EXPECT_EQ(grant_denied.exit_code, 1);
  EXPECT_THAT(grant_denied.err, HasSubstr("only admins can grant run-as"));
  CliResult granted = env_.Cli({"grant", "add", "alice", unix_user});
  ASSERT_EQ(granted.exit_code, 0) << granted.err;
  EXPECT_THAT(granted.out, HasSubstr("alice may run jobs as the Unix user " + unix_user));
  CliResult her_grants = env_.Cli({"grant", "ls", "--json"}, {{"EVALCTL_TOKEN", alice_token}});
  ASSERT_EQ(her_grants.exit_code, 0) << her_grants.err;
  EXPECT_THAT(her_grants.out, HasSubstr("\"unix_user\": \"" + unix_user + "\""));
  CliResult bobs_grants = env_.Cli({"grant", "ls"}, {{"EVALCTL_TOKEN", bob_token}});
  ASSERT_EQ(bobs_grants.exit_code, 0) << bobs_grants.err;
  EXPECT_THAT(bobs_grants.out, HasSubstr("No grants"));
  auto submitted = SubmitAs(*alice, config);
  E2E_ASSERT_OK(submitted);
  const std::string id = submitted->id();
  ASSERT_EQ(submitted->tasks_size(), 1);
  const std::string task_id = submitted->tasks(0).id();
  EXPECT_EQ(submitted->owner(), "alice");

  // Bob learns nothing of it: not by id, not by task, not in lists, watches, logs or results,
  // and cannot cancel or resume it. (NOT_FOUND, as for an id that does not exist.)
  {
    v1::GetInvocationRequest get;
    get.set_id(id);
    s = StatusOf(bob->GetInvocation(get));
    EXPECT_EQ(s.code(), kNotFound) << s;
    EXPECT_THAT(s.message(), Not(HasSubstr("alice")));
    v1::GetTaskRequest get_task;
    get_task.set_id(task_id);
    s = StatusOf(bob->GetTask(get_task));
    EXPECT_EQ(s.code(), kNotFound) << s;
    v1::CancelInvocationRequest cancel;
    cancel.set_id(id);
    s = StatusOf(bob->CancelInvocation(cancel));
    EXPECT_EQ(s.code(), kNotFound) << s;
    v1::ResumeInvocationRequest resume;
    resume.set_id(id);
    s = StatusOf(bob->ResumeInvocation(resume));
    EXPECT_EQ(s.code(), kNotFound) << s;
    v1::GetResultsRequest results;
    results.set_id(id);
    s = StatusOf(bob->GetResults(results));
    EXPECT_EQ(s.code(), kNotFound) << s;

    auto bobs = bob->ListInvocations({});
    E2E_ASSERT_OK(bobs);
    EXPECT_EQ(bobs->invocations_size(), 0) << bobs->DebugString();
    EXPECT_FALSE(absl::StrContains(bobs->SerializeAsString(), id));
    for (const char* owner : {"alice", "*"}) {
      v1::ListInvocationsRequest others;
      others.set_owner(owner);
      s = StatusOf(bob->ListInvocations(others));
      EXPECT_EQ(s.code(), kPermissionDenied) << owner << ": " << s;
    }

    v1::WatchInvocationRequest watch;
    watch.set_id(id);
    auto watched = bob->WatchInvocation(watch, {.timeout = absl::Seconds(10)});
    if (watched.ok()) {
      v1::WatchInvocationResponse event;
      EXPECT_FALSE((*watched)->Next(&event)) << event.DebugString();
      s = (*watched)->Finish();
    } else {
      s = watched.status();
    }
    EXPECT_EQ(s.code(), kNotFound) << s;
    // A watch of everything of bob's, while alice's task runs, gets none of her events.
    v1::WatchInvocationRequest all;
    auto everything = bob->WatchInvocation(all, {.timeout = absl::Seconds(4)});
    E2E_ASSERT_OK(everything);
    v1::WatchInvocationResponse event;
    std::vector<std::string> seen;
    while ((*everything)->Next(&event)) seen.push_back(event.ShortDebugString());
    EXPECT_THAT(seen, IsEmpty());
    s = (*everything)->Finish();
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;

    v1::StreamLogsRequest logs;
    logs.set_id(task_id);
    logs.set_kind(v1::LOG_KIND_EVAL);
    auto log_stream = bob->StreamLogs(logs, {.timeout = absl::Seconds(10)});
    if (log_stream.ok()) {
      v1::StreamLogsResponse chunk;
      std::string data;
      while ((*log_stream)->Next(&chunk)) data += chunk.data();
      EXPECT_THAT(data, IsEmpty());
      s = (*log_stream)->Finish();
    } else {
      s = log_stream.status();
    }
    EXPECT_EQ(s.code(), kNotFound) << s;

    // The CLI (bob's token in EVALCTL_TOKEN, the CA from the harness) says the same.
    CliResult status = env_.Cli({"status", id, "--json"}, {{"EVALCTL_TOKEN", bob_token}});
    EXPECT_NE(status.exit_code, 0) << status.out;
    EXPECT_THAT(status.err, HasSubstr("no invocation matches"));
    EXPECT_THAT(status.out + status.err, Not(HasSubstr("alices-task")));
    CliResult kill = env_.Cli({"kill", id}, {{"EVALCTL_TOKEN", bob_token}});
    EXPECT_NE(kill.exit_code, 0) << kill.out;
  }

  // Alice's invocation ran to its end regardless of bob's attempts.
  auto alices = alice->ListInvocations({});
  E2E_ASSERT_OK(alices);
  ASSERT_EQ(alices->invocations_size(), 1);
  EXPECT_EQ(alices->invocations(0).id(), id);
  env_.set_client_credentials(alice_token, Tls());
  E2E_ASSERT_OK(env_.Connect());
  auto finished = env_.WaitFinished(id, absl::Minutes(3));
  E2E_ASSERT_OK(finished);
  EXPECT_EQ(finished->tasks(0).state(), v1::TASK_STATE_SUCCEEDED) << finished->tasks(0).reason();
  CliResult alice_status = env_.Cli({"status", id, "--json"});
  EXPECT_EQ(alice_status.exit_code, 0) << alice_status.err;
  EXPECT_THAT(alice_status.out, HasSubstr("alices-task"));

  // The admin sees it, and everyone's.
  env_.set_client_credentials(admin_token_, Tls());
  E2E_ASSERT_OK(env_.Connect());
  auto as_admin = env_.Get(id);
  E2E_ASSERT_OK(as_admin);
  EXPECT_EQ(as_admin->owner(), "alice");
  v1::ListInvocationsRequest all_owners;
  all_owners.set_owner("*");
  auto listed = env_.client().ListInvocations(all_owners);
  E2E_ASSERT_OK(listed);
  ASSERT_EQ(listed->invocations_size(), 1);
  EXPECT_EQ(listed->invocations(0).id(), id);

  // --- token listings never hold a secret; the controller stores none either
  v1::ListTokensRequest everyone;
  everyone.set_user("*");
  auto tokens = env_.client().ListTokens(everyone);
  E2E_ASSERT_OK(tokens);
  auto alices_tokens = alice->ListTokens();
  E2E_ASSERT_OK(alices_tokens);
  ASSERT_EQ(alices_tokens->tokens_size(), 1);
  EXPECT_EQ(alices_tokens->tokens(0).user(), "alice");
  v1::ListTokensRequest bobs_tokens;
  bobs_tokens.set_user("bob");
  s = StatusOf(alice->ListTokens(bobs_tokens));
  EXPECT_EQ(s.code(), kPermissionDenied) << s;
  std::vector<std::string> kinds;
  for (const v1::TokenInfo& t : tokens->tokens()) {
    kinds.push_back(absl::StrCat(t.user(), "/", v1::TokenKind_Name(t.kind())));
  }
  // admin, the enrollment, the agent's credential, alice, bob.
  EXPECT_EQ(tokens->tokens_size(), 5) << tokens->DebugString();
  for (const std::string& secret : {admin_token_, alice_token, bob_token, enrollment}) {
    const std::string secret_part = SecretOf(secret);
    ASSERT_GE(secret_part.size(), 40u);
    for (const std::string& listing :
         {tokens->SerializeAsString(), tokens->DebugString(), alices_tokens->SerializeAsString()}) {
      EXPECT_FALSE(absl::StrContains(listing, secret_part));
    }
    EXPECT_THAT(FilesContaining(env_.controller_state_dir(), secret_part), IsEmpty());
    EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env_.controller_log()), secret_part));
  }

  // --- a revoked grant stops alice's next submission (and her resumes), at once
  CliResult ungrant = env_.Cli({"grant", "revoke", "alice", unix_user});
  ASSERT_EQ(ungrant.exit_code, 0) << ungrant.err;
  s = StatusOf(SubmitAs(*alice, config));
  EXPECT_EQ(s.code(), kPermissionDenied) << s;
  v1::ResumeInvocationRequest resume_hers;
  resume_hers.set_id(id);
  s = StatusOf(alice->ResumeInvocation(resume_hers));
  EXPECT_EQ(s.code(), kPermissionDenied) << s;

  // --- revocation takes effect at the next call; bob cannot revoke alice's token
  v1::RevokeTokenRequest revoke_alice;
  revoke_alice.set_token_id(TokenId(alice_token));
  s = StatusOf(bob->RevokeToken(revoke_alice));
  EXPECT_EQ(s.code(), kNotFound) << s;
  E2E_ASSERT_OK(alice->ListInvocations({}));
  // Bob watches everything he may see; revoking his token ends the open watch, with the reason,
  // long before its 60 s deadline.
  auto bobs_watch = bob->WatchInvocation({}, {.timeout = absl::Seconds(60)});
  E2E_ASSERT_OK(bobs_watch);
  v1::RevokeTokenRequest revoke_bob;
  revoke_bob.set_token_id(TokenId(bob_token));
  auto revoked = env_.client().RevokeToken(revoke_bob);
  E2E_ASSERT_OK(revoked);
  s = EndOf(**bobs_watch);
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("was revoked"));
  EXPECT_TRUE(revoked->info().revoked());
  s = StatusOf(bob->ListInvocations({}));
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("was revoked"));
  s = StatusOf(bob->ListTokens());
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  E2E_ASSERT_OK(alice->ListInvocations({}));

  // A token that expires while its watch is open ends the watch too.
  v1::CreateTokenRequest short_lived;
  short_lived.set_user("erin");
  short_lived.set_ttl_seconds(3);
  auto erin_token = env_.client().CreateToken(short_lived);
  E2E_ASSERT_OK(erin_token);
  auto erin = ClientWith(erin_token->token(), Tls());
  ASSERT_NE(erin, nullptr);
  auto erins_watch = erin->WatchInvocation({}, {.timeout = absl::Seconds(60)});
  E2E_ASSERT_OK(erins_watch);
  s = EndOf(**erins_watch);
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  EXPECT_THAT(s.message(), HasSubstr("has expired"));
}

// An agent enrolls once: its token file is spent and deleted, its credential lives only in its
// secret store, it runs jobs, and it reconnects with the credential after a restart. The same
// enrollment token is refused the second time, and for another cluster.
TEST_F(SecureTest, AgentEnrollsOnceAndKeepsItsCredential) {
  ASSERT_NO_FATAL_FAILURE(StartSecureController());
  const std::string token_file = env_.root() + "/enroll.token";
  const std::string enrollment = EnrollmentToken(env_.cluster(), token_file);
  ASSERT_FALSE(enrollment.empty());
  ASSERT_NO_FATAL_FAILURE(StartEnrollingAgent(token_file));

  EXPECT_TRUE(::evalctl::testing::WaitFor([&] { return !std::filesystem::exists(token_file); },
                                          absl::Seconds(10), ::evalctl::testing::kClusterPoll))
      << "the spent enrollment token file is still there";
  ASSERT_TRUE(WaitForText(env_.agent_log(), "enrolled with the controller", absl::Seconds(10)));

  // A job runs on the real cluster through the enrolled agent.
  RunConfig config;
  config.tasks.push_back({.name = "t0", .command = SucceedingCommand("t0", 1)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(3));
  E2E_ASSERT_OK(finished);
  EXPECT_EQ(finished->tasks(0).state(), v1::TASK_STATE_SUCCEEDED) << finished->tasks(0).reason();

  // The credential: in the secret store, bound to the cluster and the agent's id.
  auto clusters = env_.client().ListClusters();
  E2E_ASSERT_OK(clusters);
  std::string agent_id;
  for (const v1::Cluster& c : clusters->clusters()) {
    if (c.name() == env_.cluster()) agent_id = c.agent_id();
  }
  ASSERT_FALSE(agent_id.empty()) << clusters->DebugString();
  env_.KillAgent();  // everything on disk, SQLite's WAL included
  const std::string credential = StoredCredential(env_.agent_state_dir());
  ASSERT_FALSE(credential.empty()) << "no credential in the agent's secret store";
  EXPECT_EQ(FileMode(env_.agent_state_dir() + "/secrets.db"), 0600);
  ASSERT_TRUE(absl::StartsWith(credential, "evalctl_"));
  EXPECT_NE(credential, enrollment);
  v1::ListTokensRequest everyone;
  everyone.set_user("*");
  auto tokens = env_.client().ListTokens(everyone);
  E2E_ASSERT_OK(tokens);
  int agent_tokens = 0;
  for (const v1::TokenInfo& t : tokens->tokens()) {
    if (t.token_id() == TokenId(enrollment)) {
      EXPECT_TRUE(t.used());
    }
    if (t.kind() == v1::TOKEN_KIND_AGENT) {
      ++agent_tokens;
      EXPECT_EQ(t.token_id(), TokenId(credential));
      EXPECT_EQ(t.cluster(), env_.cluster());
      EXPECT_EQ(t.agent_id(), agent_id);
      EXPECT_FALSE(t.revoked());
    }
  }
  EXPECT_EQ(agent_tokens, 1) << tokens->DebugString();

  // Neither secret outside the secret store: not in the journal, the logs or the controller's
  // state (which keeps hashes).
  auto secret_store = [](const std::string& p) { return absl::StrContains(p, "/secrets.db"); };
  for (const std::string& secret : {credential, enrollment}) {
    const std::string secret_part = SecretOf(secret);
    ASSERT_GE(secret_part.size(), 40u);
    EXPECT_THAT(FilesContaining(env_.agent_state_dir(), secret_part, secret_store), IsEmpty());
    EXPECT_THAT(FilesContaining(env_.controller_state_dir(), secret_part), IsEmpty());
    EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env_.agent_log()), secret_part));
    EXPECT_FALSE(absl::StrContains(ReadFileOrEmpty(env_.controller_log()), secret_part));
    EXPECT_FALSE(absl::StrContains(tokens->SerializeAsString(), secret_part));
  }
  EXPECT_TRUE(std::filesystem::exists(env_.agent_state_dir() + "/journal.db"));

  // The agent's credential is no user's: EvalService and AdminService refuse it.
  auto as_agent = ClientWith(credential, Tls());
  ASSERT_NE(as_agent, nullptr);
  absl::Status s = StatusOf(as_agent->ListInvocations({}));
  EXPECT_EQ(s.code(), kPermissionDenied) << s;
  EXPECT_THAT(s.message(), HasSubstr("belongs to an agent"));
  s = StatusOf(as_agent->ListTokens());
  EXPECT_EQ(s.code(), kPermissionDenied) << s;
  // A spent enrollment token is worth nothing.
  auto spent = ClientWith(enrollment, Tls());
  ASSERT_NE(spent, nullptr);
  s = StatusOf(spent->ListInvocations({}));
  EXPECT_EQ(s.code(), kUnauthenticated) << s;

  // --- restarted without a token file, the agent connects with its stored credential
  const size_t agent_log_before = ReadFileOrEmpty(env_.agent_log()).size();
  E2E_ASSERT_OK(env_.RestartAgent());
  const std::string restarted_log = ReadFileOrEmpty(env_.agent_log()).substr(agent_log_before);
  EXPECT_THAT(restarted_log, Not(HasSubstr("enrolled with the controller")));
  EXPECT_EQ(Count(ReadFileOrEmpty(env_.controller_log()), " enrolled; credential "), 1);
  RunConfig again;
  again.tasks.push_back({.name = "t1", .command = SucceedingCommand("t1", 1)});
  auto second = env_.Submit(again);
  E2E_ASSERT_OK(second);
  auto second_done = env_.WaitFinished(second->id(), absl::Minutes(3));
  E2E_ASSERT_OK(second_done);
  EXPECT_EQ(second_done->tasks(0).state(), v1::TASK_STATE_SUCCEEDED)
      << second_done->tasks(0).reason();

  // --- the same enrollment token, presented by a second agent: refused, nothing issued
  const std::string reused_file = env_.root() + "/reused.token";
  ASSERT_TRUE(WritePrivate(reused_file, enrollment + "\n"));
  OtherAgent second_agent = StartOtherAgent(
      "agent-reused", env_.cluster(), {"--tls-ca", Certs("ca.crt"), "--token-file", reused_file});
  ASSERT_NE(second_agent.process, nullptr);
  EXPECT_TRUE(::evalctl::testing::WaitFor(
      [&] { return Count(ReadFileOrEmpty(second_agent.log), "reconnecting in") >= 2; },
      absl::Seconds(20), ::evalctl::testing::kClusterPoll))
      << ReadFileOrEmpty(second_agent.log);
  second_agent.process->Kill(SIGKILL);
  EXPECT_THAT(ReadFileOrEmpty(second_agent.log), Not(HasSubstr("enrolled with the controller")));
  EXPECT_THAT(StoredCredential(second_agent.state_dir), IsEmpty());
  EXPECT_TRUE(std::filesystem::exists(reused_file));
  // What the controller answers such a stream.
  grpc::Status refused = RegisterAs(enrollment, env_.cluster(), "agent-secure-test-second");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused.error_message();
  EXPECT_THAT(refused.error_message(),
              HasSubstr(absl::StrCat("enrollment token ", TokenId(enrollment),
                                     " was used already; create a new one")));

  // --- an enrollment token for this cluster, presented by an agent of another cluster: refused,
  // and the token stays unspent
  const std::string other_cluster = env_.cluster() + "-other";
  const std::string wrong_file = env_.root() + "/wrong-cluster.token";
  const std::string for_this_cluster = EnrollmentToken(env_.cluster(), wrong_file);
  ASSERT_FALSE(for_this_cluster.empty());
  const std::string wrong_cluster_refusal = absl::StrCat(
      "this token is for cluster \"", env_.cluster(), "\", not \"", other_cluster, "\"");
  OtherAgent impostor = StartOtherAgent("agent-other-cluster", other_cluster,
                                        {"--tls-ca", Certs("ca.crt"), "--token-file", wrong_file});
  ASSERT_NE(impostor.process, nullptr);
  EXPECT_TRUE(WaitForText(env_.controller_log(),
                          absl::StrCat("agent stream refused: ", wrong_cluster_refusal),
                          absl::Seconds(20)));
  EXPECT_FALSE(Connected(other_cluster));
  impostor.process->Kill(SIGKILL);
  EXPECT_THAT(StoredCredential(impostor.state_dir), IsEmpty());
  EXPECT_TRUE(std::filesystem::exists(wrong_file));
  refused = RegisterAs(for_this_cluster, other_cluster, "agent-secure-test-impostor");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr(wrong_cluster_refusal));

  // --- the agent's credential is its own: not for another agent id, nor another cluster
  refused = RegisterAs(credential, env_.cluster(), "agent-secure-test-thief");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr(absl::StrCat("belongs to agent ", agent_id)));
  refused = RegisterAs(credential, other_cluster, agent_id);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  // ... nor another Unix user than the one the admin enrolled it for.
  refused = RegisterAs(credential, env_.cluster(), agent_id, "nobody");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_THAT(refused.error_message(),
              HasSubstr(absl::StrCat("this token is for the agent of Unix user ", CurrentUser(),
                                     " on ", env_.cluster(), ", not of \"nobody\"")));

  // --- a user's token, or none, does not make an agent
  const std::string carol = CreateUserToken("carol");
  const std::string user_file = env_.root() + "/user.token";
  ASSERT_TRUE(WritePrivate(user_file, carol + "\n"));
  OtherAgent as_user = StartOtherAgent("agent-user-token", other_cluster,
                                       {"--tls-ca", Certs("ca.crt"), "--token-file", user_file});
  ASSERT_NE(as_user.process, nullptr);
  EXPECT_TRUE(::evalctl::testing::WaitFor(
      [&] { return Count(ReadFileOrEmpty(as_user.log), "reconnecting in") >= 2; },
      absl::Seconds(20), ::evalctl::testing::kClusterPoll))
      << ReadFileOrEmpty(as_user.log);
  EXPECT_FALSE(Connected(other_cluster));
  refused = RegisterAs(carol, other_cluster, "agent-secure-test-user");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_THAT(refused.error_message(), HasSubstr("is a user's"));
  refused = RegisterAs("", other_cluster, "agent-secure-test-anonymous");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED) << refused.error_message();

  // Nothing was issued for any of them, and the enrolled agent is still the cluster's.
  tokens = env_.client().ListTokens(everyone);
  E2E_ASSERT_OK(tokens);
  agent_tokens = 0;
  for (const v1::TokenInfo& t : tokens->tokens()) {
    if (t.kind() == v1::TOKEN_KIND_AGENT) ++agent_tokens;
    if (t.token_id() == TokenId(for_this_cluster)) {
      EXPECT_FALSE(t.used());
    }
  }
  EXPECT_EQ(agent_tokens, 1) << tokens->DebugString();
  EXPECT_TRUE(Connected(env_.cluster()));

  // --- revoking the agent's credential ends its open stream, and its reconnects are refused
  v1::RevokeTokenRequest revoke_agent;
  revoke_agent.set_token_id(TokenId(credential));
  E2E_ASSERT_OK(env_.client().RevokeToken(revoke_agent));
  EXPECT_TRUE(::evalctl::testing::WaitFor([&] { return !Connected(env_.cluster()); },
                                          absl::Seconds(20), ::evalctl::testing::kClusterPoll))
      << "the agent is still connected with a revoked credential";
  EXPECT_TRUE(WaitForText(env_.controller_log(),
                          absl::StrCat("ended: token ", TokenId(credential), " was revoked"),
                          absl::Seconds(10)));
  EXPECT_FALSE(Connected(env_.cluster()));
}

// An enrolled agent whose token file is still there (its deletion failed, or the file was put
// back) presents the spent token, is refused, and connects with its stored credential instead
// (AgentOptions::token_file); its log says why the controller refused the token.
TEST_F(SecureTest, AgentWithASpentTokenFileFallsBackToItsCredential) {
  ASSERT_NO_FATAL_FAILURE(StartSecureController());
  const std::string token_file = env_.root() + "/enroll.token";
  const std::string enrollment = EnrollmentToken(env_.cluster(), token_file);
  ASSERT_FALSE(enrollment.empty());
  ASSERT_NO_FATAL_FAILURE(StartEnrollingAgent(token_file));
  ASSERT_TRUE(::evalctl::testing::WaitFor([&] { return !std::filesystem::exists(token_file); },
                                          absl::Seconds(10), ::evalctl::testing::kClusterPoll));
  env_.KillAgent();
  ASSERT_FALSE(StoredCredential(env_.agent_state_dir()).empty());

  ASSERT_TRUE(WritePrivate(token_file, enrollment + "\n"));
  const size_t log_before = ReadFileOrEmpty(env_.agent_log()).size();
  absl::Status restarted = env_.RestartAgent();
  const std::string log = ReadFileOrEmpty(env_.agent_log()).substr(log_before);
  EXPECT_TRUE(restarted.ok()) << restarted << "\nagent log since the restart:\n" << log;
  EXPECT_THAT(
      log, HasSubstr(absl::StrCat("enrollment token ", TokenId(enrollment), " was used already")));
  EXPECT_EQ(Count(ReadFileOrEmpty(env_.controller_log()), " enrolled; credential "), 1);
}

// Mutual TLS: with --require-client-cert, agents and clients without a certificate of the CA do
// not get through the handshake (and spend nothing), the ones with it do; a certificate does not
// replace the bearer token.
TEST_F(SecureTest, MutualTlsAdmitsOnlyClientsWithACertificate) {
  ASSERT_NO_FATAL_FAILURE(StartSecureController(/*mutual=*/true));
  E2E_ASSERT_OK(env_.client().ListClusters());

  // Clients: no certificate, or one of another CA, is refused in the handshake.
  const std::string other_ca_dir = env_.root() + "/other-ca";
  E2E_ASSERT_OK(env_.MakeCerts(other_ca_dir));
  for (const client::TlsOptions& tls : {Tls(), client::TlsOptions{.ca_file = Certs("ca.crt"),
                                               .cert_file = other_ca_dir + "/client.crt",
                                               .key_file = other_ca_dir + "/client.key"}}) {
    SCOPED_TRACE(tls.cert_file.empty() ? "no client certificate" : "another CA's certificate");
    auto c = ClientWith(admin_token_, tls);
    ASSERT_NE(c, nullptr);
    absl::Status s = StatusOf(c->ListClusters({}, {.timeout = absl::Seconds(5)}));
    EXPECT_EQ(s.code(), kUnavailable) << s;
    EXPECT_THAT(s.message(), HasSubstr("cannot reach evalctl-controller")) << s;
  }
  // A certificate without a token: TLS passes, the call does not.
  auto no_token = ClientWith("", MutualTls());
  ASSERT_NE(no_token, nullptr);
  absl::Status s = StatusOf(no_token->ListClusters());
  EXPECT_EQ(s.code(), kUnauthenticated) << s;
  // The CLI with the certificate (the harness passes --client-cert/--client-key) and without.
  CliResult with_cert = env_.Cli({"cluster", "ls", "--json"});
  EXPECT_EQ(with_cert.exit_code, 0) << with_cert.err;
  env_.set_client_credentials(admin_token_, Tls());
  CliResult without_cert = env_.Cli({"cluster", "ls", "--json"});
  EXPECT_NE(without_cert.exit_code, 0) << without_cert.out;
  EXPECT_THAT(without_cert.err, HasSubstr("cannot reach evalctl-controller"));
  env_.set_client_credentials(admin_token_, MutualTls());

  // An agent without a client certificate: its streams fail in the handshake, and its
  // enrollment token is not spent.
  const std::string token_file = env_.root() + "/enroll.token";
  const std::string enrollment = EnrollmentToken(env_.cluster(), token_file);
  ASSERT_FALSE(enrollment.empty());
  OtherAgent no_cert = StartOtherAgent("agent-no-cert", env_.cluster(),
                                       {"--tls-ca", Certs("ca.crt"), "--token-file", token_file});
  ASSERT_NE(no_cert.process, nullptr);
  EXPECT_TRUE(WaitForText(no_cert.log, "reconnecting in", absl::Seconds(20)))
      << ReadFileOrEmpty(no_cert.log);
  absl::SleepFor(absl::Seconds(2));
  EXPECT_FALSE(Connected(env_.cluster()));
  no_cert.process->Kill(SIGKILL);
  EXPECT_TRUE(std::filesystem::exists(token_file));
  EXPECT_THAT(ReadFileOrEmpty(no_cert.log), Not(HasSubstr("enrolled with the controller")));
  v1::ListTokensRequest everyone;
  everyone.set_user("*");
  auto tokens = env_.client().ListTokens(everyone);
  E2E_ASSERT_OK(tokens);
  for (const v1::TokenInfo& t : tokens->tokens()) {
    if (t.token_id() == TokenId(enrollment)) {
      EXPECT_FALSE(t.used());
    }
  }

  // With the client certificate the agent enrolls with the same token and runs a job.
  ASSERT_NO_FATAL_FAILURE(StartEnrollingAgent(token_file, /*mutual=*/true));
  EXPECT_TRUE(::evalctl::testing::WaitFor([&] { return !std::filesystem::exists(token_file); },
                                          absl::Seconds(10), ::evalctl::testing::kClusterPoll));
  RunConfig config;
  config.tasks.push_back({.name = "t0", .command = SucceedingCommand("t0", 1)});
  auto submitted = env_.Submit(config);
  E2E_ASSERT_OK(submitted);
  auto finished = env_.WaitFinished(submitted->id(), absl::Minutes(3));
  E2E_ASSERT_OK(finished);
  EXPECT_EQ(finished->tasks(0).state(), v1::TASK_STATE_SUCCEEDED) << finished->tasks(0).reason();
}

// The CLI's token commands against the real controller: an admin creates a user's token into a
// 0600 file, lists tokens without their secrets, enrolls a cluster, and revokes; the user works
// with --token-file and $EVALCTL_TOKEN_FILE, may not enroll, and is shut out once revoked.
TEST_F(SecureTest, CliCreatesListsAndRevokesTokens) {
  ASSERT_NO_FATAL_FAILURE(StartSecureController());
  const std::string carol_file = env_.root() + "/carol.token";
  CliResult create = env_.Cli({"token", "create", "--user", "carol", "--ttl", "30d",
                               "--description", "carol's laptop", "--output", carol_file});
  ASSERT_EQ(create.exit_code, 0) << create.err;
  EXPECT_EQ(create.out, "");
  EXPECT_THAT(create.err, HasSubstr("for carol (user), expires "));
  EXPECT_EQ(FileMode(carol_file), 0600);
  const std::string carol_token(absl::StripAsciiWhitespace(ReadFileOrEmpty(carol_file)));
  ASSERT_TRUE(absl::StartsWith(carol_token, "evalctl_")) << carol_token;
  const std::string carol_id = TokenId(carol_token);

  // Without --output the token is alone on stdout.
  CliResult to_stdout = env_.Cli({"token", "create", "--user", "dave"});
  ASSERT_EQ(to_stdout.exit_code, 0) << to_stdout.err;
  EXPECT_TRUE(absl::StartsWith(to_stdout.out, "evalctl_")) << to_stdout.out;
  EXPECT_EQ(std::count(to_stdout.out.begin(), to_stdout.out.end(), '\n'), 1) << to_stdout.out;

  // Carol, by flag and by environment; her listing shows her token only.
  CliResult mine = env_.Cli({"--token-file", carol_file, "token", "ls"});
  ASSERT_EQ(mine.exit_code, 0) << mine.err;
  EXPECT_THAT(mine.out, HasSubstr(carol_id));
  EXPECT_THAT(mine.out, HasSubstr("carol's laptop"));
  EXPECT_THAT(mine.out, Not(HasSubstr("dave")));
  CliResult runs = env_.Cli({"ls", "runs"}, {{"EVALCTL_TOKEN_FILE", carol_file}});
  EXPECT_EQ(runs.exit_code, 0) << runs.err;
  CliResult enroll_denied =
      env_.Cli({"cluster", "enroll", "eos", "--unix-user", "carol"},
               {{"EVALCTL_TOKEN_FILE", carol_file}});
  EXPECT_EQ(enroll_denied.exit_code, 1);
  EXPECT_THAT(enroll_denied.err, HasSubstr("only admins can create enrollment tokens"));
  // A token file others can read is refused before anything is sent.
  std::filesystem::permissions(carol_file, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  CliResult open_file = env_.Cli({"--token-file", carol_file, "ls", "runs"});
  EXPECT_EQ(open_file.exit_code, 2);
  EXPECT_THAT(open_file.err, HasSubstr("is readable by other users (mode 0640)"));
  std::filesystem::permissions(carol_file, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::remove);

  // The admin enrolls a cluster; the listing names everything and shows no secret.
  const std::string enroll_file = env_.root() + "/eos.token";
  CliResult no_user = env_.Cli({"cluster", "enroll", "eos"});
  EXPECT_EQ(no_user.exit_code, 2);
  EXPECT_THAT(no_user.err, HasSubstr("--unix-user is required"));
  CliResult enroll = env_.Cli({"cluster", "enroll", "eos", "--unix-user", "svc-eval", "--alias",
                               "eos-login", "--ttl", "10m", "-O", enroll_file});
  ASSERT_EQ(enroll.exit_code, 0) << enroll.err;
  EXPECT_THAT(enroll.err, HasSubstr("for the agent of svc-eval on cluster eos, valid once until "));
  EXPECT_EQ(FileMode(enroll_file), 0600);
  const std::string enroll_token(absl::StripAsciiWhitespace(ReadFileOrEmpty(enroll_file)));
  CliResult all = env_.Cli({"token", "ls", "--all", "--json"});
  ASSERT_EQ(all.exit_code, 0) << all.err;
  for (const std::string& needle :
       {carol_id, TokenId(enroll_token), std::string("\"kind\": \"enrollment\""),
        std::string("\"cluster\": \"eos\""), std::string("\"user\": \"dave\""),
        std::string("\"unix_user\": \"svc-eval\"")}) {
    EXPECT_THAT(all.out, HasSubstr(needle));
  }
  for (const std::string& token : {carol_token, enroll_token, admin_token_}) {
    // evalctl_<id>_<secret>: the id is hex, the secret may hold '_' itself.
    const std::string secret = token.substr(token.find('_', std::string("evalctl_").size()) + 1);
    EXPECT_THAT(all.out, Not(HasSubstr(secret)));
  }

  // Revoked: carol's next call is refused, and says why.
  CliResult revoke = env_.Cli({"token", "revoke", carol_id});
  ASSERT_EQ(revoke.exit_code, 0) << revoke.err;
  EXPECT_THAT(revoke.out, HasSubstr("Revoked " + carol_id + " (user, carol)"));
  CliResult after = env_.Cli({"--token-file", carol_file, "ls", "runs"});
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_THAT(after.err, HasSubstr("was revoked"));

  CliResult bad_ttl = env_.Cli({"token", "create", "--ttl", "soon"});
  EXPECT_EQ(bad_ttl.exit_code, 2);
  EXPECT_THAT(bad_ttl.err, HasSubstr("bad --ttl \"soon\""));
}

}  // namespace
}  // namespace evalctl::e2e

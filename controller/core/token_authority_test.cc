#include "controller/core/token_authority.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

class TokenAuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto opened = TokenAuthority::Open((dir_ / "auth.db").string(), &clock_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    auth_ = *std::move(opened);
  }

  IssuedToken MustCreate(const Caller& caller, const std::string& user, v1::Role role,
                         int64_t ttl = 0) {
    v1::CreateTokenRequest req;
    req.set_user(user);
    req.set_role(role);
    req.set_ttl_seconds(ttl);
    auto t = auth_->CreateToken(caller, req);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : IssuedToken{};
  }

  FakeClock clock_;
  std::filesystem::path dir_;
  std::unique_ptr<TokenAuthority> auth_;
  const Caller admin_{.user = "root", .admin = true};
  const Caller alice_{.user = "alice", .admin = false};
};

TEST_F(TokenAuthorityTest, IssuedTokenVerifiesAndOnlyItsHashIsStored) {
  IssuedToken t = MustCreate(admin_, "alice", v1::ROLE_USER);
  EXPECT_TRUE(absl::StartsWith(t.token, "evalctl_" + t.info.token_id() + "_"));
  auto p = auth_->Verify(t.token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->user, "alice");
  EXPECT_FALSE(p->admin);
  EXPECT_EQ(p->kind, TokenKind::kUser);

  // The database file holds no secret, and nobody else may read it.
  // evalctl_<id>_<secret>: the secret (web-safe base64) may hold '_' itself.
  const std::string secret = t.token.substr(absl::StrCat("evalctl_", t.info.token_id(), "_").size());
  ASSERT_EQ(secret.size(), 43u);
  for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    EXPECT_FALSE(absl::StrContains(bytes, secret)) << entry.path();
  }
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "auth.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(TokenAuthorityTest, WrongMalformedRevokedAndExpiredTokensAreRejected) {
  IssuedToken t = MustCreate(admin_, "alice", v1::ROLE_USER, /*ttl=*/60);
  std::string wrong = t.token;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  for (const std::string& bad : {wrong, std::string("evalctl_"), std::string("Bearer x"),
                                 std::string(""), t.token.substr(0, 25),
                                 std::string("evalctl_ZZZZZZZZZZZZZZZZ_abc")}) {
    auto p = auth_->Verify(bad);
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << bad;
    EXPECT_EQ(p.status().message(), "the bearer token is not valid");
  }
  clock_.Advance(absl::Seconds(61));
  EXPECT_THAT(auth_->Verify(t.token).status().message(), HasSubstr("has expired"));

  IssuedToken u = MustCreate(alice_, "alice", v1::ROLE_USER);
  ASSERT_TRUE(auth_->RevokeToken(alice_, u.info.token_id()).ok());
  auto revoked = auth_->Verify(u.token);
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(revoked.status().message(), HasSubstr("was revoked"));
}

TEST_F(TokenAuthorityTest, UsersManageOnlyTheirOwnTokens) {
  v1::CreateTokenRequest for_bob;
  for_bob.set_user("bob");
  EXPECT_EQ(auth_->CreateToken(alice_, for_bob).status().code(),
            absl::StatusCode::kPermissionDenied);
  v1::CreateTokenRequest admin_role;
  admin_role.set_role(v1::ROLE_ADMIN);
  EXPECT_EQ(auth_->CreateToken(alice_, admin_role).status().code(),
            absl::StatusCode::kPermissionDenied);

  IssuedToken bobs = MustCreate(admin_, "bob", v1::ROLE_USER);
  MustCreate(alice_, "", v1::ROLE_USER);  // empty user: the caller
  auto mine = auth_->ListTokens(alice_, "");
  ASSERT_TRUE(mine.ok());
  ASSERT_THAT(*mine, SizeIs(1));
  EXPECT_EQ((*mine)[0].user(), "alice");
  EXPECT_EQ(auth_->ListTokens(alice_, "*").status().code(), absl::StatusCode::kPermissionDenied);
  auto all = auth_->ListTokens(admin_, "*");
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(*all, SizeIs(2));

  // Someone else's token looks like no token at all.
  auto revoke = auth_->RevokeToken(alice_, bobs.info.token_id());
  EXPECT_EQ(revoke.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(auth_->Verify(bobs.token).ok());
  EXPECT_TRUE(auth_->RevokeToken(admin_, bobs.info.token_id()).ok());
}

// A token cannot create one that outlives it (nor, above, one with more rights): the expiry of
// the caller's token travels with it from Verify, and Create checks the new ttl against it.
TEST_F(TokenAuthorityTest, ATokenCannotMintALongerLivedOne) {
  IssuedToken hour = MustCreate(admin_, "alice", v1::ROLE_USER, /*ttl=*/3600);
  auto principal = auth_->Verify(hour.token);
  ASSERT_TRUE(principal.ok()) << principal.status();
  EXPECT_EQ(principal->expires, clock_.Now() + absl::Hours(1));
  const Caller caller{.user = "alice", .admin = false, .token_expires = principal->expires};
  for (int64_t ttl : {0, 7200}) {
    v1::CreateTokenRequest longer;
    longer.set_ttl_seconds(ttl);
    auto refused = auth_->CreateToken(caller, longer);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied) << ttl;
    EXPECT_THAT(refused.status().message(), HasSubstr("cannot outlive it: give a ttl of at most 3600 s"));
  }
  MustCreate(caller, "", v1::ROLE_USER, /*ttl=*/1800);
  // A token that never expires creates what it may.
  EXPECT_EQ(auth_->Verify(MustCreate(admin_, "bob", v1::ROLE_USER).token)->expires,
            absl::InfiniteFuture());
}

TEST_F(TokenAuthorityTest, BadRequestsSayWhatIsWrong) {
  v1::CreateTokenRequest req;
  req.set_user("eve; rm -rf /");
  EXPECT_THAT(auth_->CreateToken(admin_, req).status().message(),
              HasSubstr("may contain only letters"));
  req.set_user("eve");
  req.set_ttl_seconds(-5);
  EXPECT_EQ(auth_->CreateToken(admin_, req).status().code(), absl::StatusCode::kInvalidArgument);
  req.set_ttl_seconds(0);
  req.set_description(std::string(1000, 'x'));
  EXPECT_THAT(auth_->CreateToken(admin_, req).status().message(), HasSubstr("description"));

  v1::CreateEnrollmentTokenRequest enroll;
  enroll.set_cluster("../etc");
  EXPECT_EQ(auth_->CreateEnrollmentToken(admin_, enroll).status().code(),
            absl::StatusCode::kInvalidArgument);
  enroll.set_cluster("eos");
  enroll.set_unix_user("svc-eval");
  EXPECT_EQ(auth_->CreateEnrollmentToken(alice_, enroll).status().code(),
            absl::StatusCode::kPermissionDenied);
  enroll.set_ttl_seconds(30 * 24 * 3600);
  EXPECT_EQ(auth_->CreateEnrollmentToken(admin_, enroll).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TokenAuthorityTest, EnrollmentIsOneTimeAndTheCredentialIsBoundToClusterAndAgent) {
  v1::CreateEnrollmentTokenRequest req;
  req.set_cluster("eos");
  // The admin fixes the Unix user the agent runs as: required.
  EXPECT_THAT(auth_->CreateEnrollmentToken(admin_, req).status().message(),
              HasSubstr("unix_user is required"));
  req.set_unix_user("svc-eval");
  req.add_aliases("eos-login");
  auto e = auth_->CreateEnrollmentToken(admin_, req);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->info.unix_user(), "svc-eval");
  auto enrollment = auth_->Verify(e->token);
  ASSERT_TRUE(enrollment.ok());
  EXPECT_EQ(enrollment->kind, TokenKind::kEnrollment);
  EXPECT_EQ(enrollment->cluster, "eos");

  auto cred = auth_->Enroll(*enrollment, "agent-1");
  ASSERT_TRUE(cred.ok()) << cred.status();
  auto agent = auth_->Verify(cred->token);
  ASSERT_TRUE(agent.ok());
  EXPECT_EQ(agent->kind, TokenKind::kAgent);
  EXPECT_EQ(agent->cluster, "eos");
  EXPECT_EQ(agent->agent_id, "agent-1");
  // The credential carries the enrolled Unix user and aliases, also after a restart.
  EXPECT_EQ(agent->unix_user, "svc-eval");
  EXPECT_THAT(agent->aliases, ::testing::ElementsAre("eos-login"));
  auth_.reset();
  auth_ = *TokenAuthority::Open((dir_ / "auth.db").string(), &clock_);
  agent = auth_->Verify(cred->token);
  ASSERT_TRUE(agent.ok());
  EXPECT_EQ(agent->unix_user, "svc-eval");
  EXPECT_THAT(agent->aliases, ::testing::ElementsAre("eos-login"));

  // Used once: neither Verify nor a second Enroll accepts it again.
  EXPECT_THAT(auth_->Verify(e->token).status().message(), HasSubstr("used already"));
  EXPECT_EQ(auth_->Enroll(*enrollment, "agent-2").status().code(),
            absl::StatusCode::kUnauthenticated);

  // Re-enrolling the same agent (a reinstall) replaces its old credential.
  auto e2 = auth_->CreateEnrollmentToken(admin_, req);
  ASSERT_TRUE(e2.ok());
  auto cred2 = auth_->Enroll(*auth_->Verify(e2->token), "agent-1");
  ASSERT_TRUE(cred2.ok());
  EXPECT_TRUE(auth_->Verify(cred2->token).ok());
  EXPECT_THAT(auth_->Verify(cred->token).status().message(), HasSubstr("was revoked"));

  // Enrollment tokens expire after their ttl (an hour by default).
  auto e3 = auth_->CreateEnrollmentToken(admin_, req);
  ASSERT_TRUE(e3.ok());
  clock_.Advance(absl::Hours(1) + absl::Seconds(1));
  EXPECT_THAT(auth_->Verify(e3->token).status().message(), HasSubstr("has expired"));
}

TEST_F(TokenAuthorityTest, BootstrapIssuesTheFirstAdminTokenOnce) {
  auto first = auth_->BootstrapAdmin("root");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(first->has_value());
  auto p = auth_->Verify((*first)->token);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->admin);
  auto again = auth_->BootstrapAdmin("root");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());

  // Once every admin token is revoked, a restart may bootstrap again.
  ASSERT_TRUE(auth_->RevokeToken(admin_, (*first)->info.token_id()).ok());
  auto after = auth_->BootstrapAdmin("root");
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->has_value());
}

TEST_F(TokenAuthorityTest, TokensSurviveReopening) {
  IssuedToken t = MustCreate(admin_, "alice", v1::ROLE_ADMIN);
  auth_.reset();
  auto reopened = TokenAuthority::Open((dir_ / "auth.db").string(), &clock_);
  ASSERT_TRUE(reopened.ok());
  auto p = (*reopened)->Verify(t.token);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->admin);
}

// Run-as grants: admins grant and revoke, users list their own, and grants outlive a restart.
TEST_F(TokenAuthorityTest, RunAsGrantsAreAdminsToGiveAndSurviveARestart) {
  EXPECT_FALSE(auth_->Granted("alice", "svc-eval"));
  auto denied = auth_->GrantRunAs(alice_, "alice", "svc-eval");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  auto bad = auth_->GrantRunAs(admin_, "alice", "svc eval;rm");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  auto g = auth_->GrantRunAs(admin_, "alice", "svc-eval");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->granted_by(), "root");
  EXPECT_TRUE(auth_->GrantRunAs(admin_, "alice", "svc-eval").ok());  // twice: the same grant
  EXPECT_TRUE(auth_->Granted("alice", "svc-eval"));
  EXPECT_FALSE(auth_->Granted("bob", "svc-eval"));

  auto mine = auth_->ListRunAsGrants(alice_, "");
  ASSERT_TRUE(mine.ok());
  ASSERT_THAT(*mine, SizeIs(1));
  EXPECT_EQ((*mine)[0].unix_user(), "svc-eval");
  EXPECT_EQ(auth_->ListRunAsGrants(alice_, "*").status().code(),
            absl::StatusCode::kPermissionDenied);

  auth_.reset();
  auto reopened = TokenAuthority::Open((dir_ / "auth.db").string(), &clock_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  auth_ = *std::move(reopened);
  EXPECT_TRUE(auth_->Granted("alice", "svc-eval"));
  EXPECT_EQ(auth_->RevokeRunAs(alice_, "alice", "svc-eval").status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_TRUE(auth_->RevokeRunAs(admin_, "alice", "svc-eval").ok());
  EXPECT_FALSE(auth_->Granted("alice", "svc-eval"));
  EXPECT_EQ(auth_->RevokeRunAs(admin_, "alice", "svc-eval").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace evalctl::controller

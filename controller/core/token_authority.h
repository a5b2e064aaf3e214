// Bearer tokens: who may call the controller, and as what.
//
// Three kinds of token, all of the form `evalctl_<token id>_<secret>`:
//   user        a person (role user or admin) calling EvalService and AdminService;
//   enrollment  one-time and short-lived, for one cluster: an agent presents it once and gets
//   agent       its own long-lived credential, bound to that cluster and the agent's id.
// The token id is public (it names the token in `evalctl token ls` and revocation); the secret is
// shown once, when the token is created, and only its SHA-256 is stored. Tokens live in their own
// SQLite file (mode 0600) next to the controller's store, and in memory for Verify.
//
// The authorization rules of AdminService live here too: admins create tokens for anyone, users
// create further user-role tokens for themselves, list and revoke their own. So do the run-as
// grants (which Unix users besides their own a user's jobs may run as; see RunAsPolicy): admins
// grant and revoke, users list their own; kept in the same file and in memory.
//
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/sqlite.h"
#include "controller/core/controller_core.h"
#include "evalctl/v1/admin_service.pb.h"

namespace evalctl::controller {

enum class TokenKind { kUser = 0, kEnrollment = 1, kAgent = 2 };

// Who a valid token belongs to.
struct Principal {
  TokenKind kind = TokenKind::kUser;
  std::string token_id;
  // Users: the caller. Agents and enrollment tokens: the admin who created the enrollment.
  std::string user;
  bool admin = false;
  // Enrollment and agent tokens: the cluster the agent serves, the Unix user it runs as and the
  // cluster's aliases (empty unix_user: a credential from before enrollment bound them). Agent
  // tokens: the agent's id.
  std::string cluster;
  std::string unix_user;
  std::vector<std::string> aliases;
  std::string agent_id;
  // When the token expires; InfiniteFuture when never.
  absl::Time expires = absl::InfiniteFuture();
};

// A new token; `token` is the secret text, shown once.
struct IssuedToken {
  v1::TokenInfo info;
  std::string token;
};

class TokenAuthority : public RunAsPolicy {
 public:
  // Opens (creating when missing, mode 0600) the token database at `path`.
  static absl::StatusOr<std::unique_ptr<TokenAuthority>> Open(const std::string& path,
                                                              Clock* clock);

  // UNAUTHENTICATED (the same message for a malformed, unknown or wrong token, so that a caller
  // learns nothing about which ids exist) or with the reason for a revoked or expired one.
  absl::StatusOr<Principal> Verify(absl::string_view token);
  // Whether the token with this id still authenticates (not revoked, not expired); the reason
  // otherwise. For streams opened with it, which end when it does not.
  absl::Status StillValid(const std::string& token_id);

  // AdminService.
  absl::StatusOr<IssuedToken> CreateToken(const Caller& caller, const v1::CreateTokenRequest& req);
  absl::StatusOr<v1::TokenInfo> RevokeToken(const Caller& caller, const std::string& token_id);
  absl::StatusOr<std::vector<v1::TokenInfo>> ListTokens(const Caller& caller,
                                                        const std::string& user);
  absl::StatusOr<IssuedToken> CreateEnrollmentToken(const Caller& caller,
                                                    const v1::CreateEnrollmentTokenRequest& req);

  // Run-as grants (AdminService). Granting twice returns the existing grant.
  absl::StatusOr<v1::RunAsGrant> GrantRunAs(const Caller& caller, const std::string& user,
                                            const std::string& unix_user);
  absl::StatusOr<v1::RunAsGrant> RevokeRunAs(const Caller& caller, const std::string& user,
                                             const std::string& unix_user);
  absl::StatusOr<std::vector<v1::RunAsGrant>> ListRunAsGrants(const Caller& caller,
                                                              const std::string& user);
  bool Granted(const std::string& user, const std::string& unix_user) override;

  // Consumes an enrollment token (it cannot be used again, even if this agent never stores its
  // credential) and issues the agent's credential for `enrollment.cluster` and `agent_id`.
  absl::StatusOr<IssuedToken> Enroll(const Principal& enrollment, const std::string& agent_id);

  // For a fresh deployment: when no usable admin token exists, issues one for `user`.
  // Returns nullopt when an admin token exists already.
  absl::StatusOr<std::optional<IssuedToken>> BootstrapAdmin(const std::string& user);

 private:
  TokenAuthority(std::unique_ptr<SqliteDb> db, Clock* clock) : db_(std::move(db)), clock_(clock) {}

  struct Spec {
    TokenKind kind;
    std::string user;
    bool admin = false;
    std::string cluster;
    std::string unix_user;
    std::vector<std::string> aliases;
    std::string agent_id;
    std::string description;
    absl::Duration ttl = absl::InfiniteDuration();
  };
  absl::StatusOr<IssuedToken> Issue(const Spec& spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<v1::TokenInfo>> Info(const std::string& token_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // What Verify needs of a token, kept in memory so that authenticating a call reads no disk.
  struct Entry {
    std::string secret_sha256;
    Principal principal;
    int64_t expires_ms = 0;  // 0: never
    bool revoked = false;
    bool used = false;
  };
  absl::Status LoadEntries() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<SqliteDb> db_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry, std::less<>> entries_ ABSL_GUARDED_BY(mu_);
  // (user, unix_user) → the grant.
  std::map<std::pair<std::string, std::string>, v1::RunAsGrant> grants_ ABSL_GUARDED_BY(mu_);
  Clock* clock_;
};

}  // namespace evalctl::controller

#include "controller/core/token_authority.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace evalctl::controller {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::string_view kPrefix = "evalctl_";
constexpr size_t kIdHexLength = 16;
constexpr size_t kSecretBytes = 32;
constexpr absl::Duration kDefaultEnrollmentTtl = absl::Hours(1);
constexpr absl::Duration kMaxEnrollmentTtl = absl::Hours(24 * 7);
constexpr int64_t kMaxTtlSeconds = int64_t{10} * 366 * 24 * 3600;
constexpr size_t kMaxDescription = 200;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS tokens (
  token_id      TEXT PRIMARY KEY,
  secret_sha256 BLOB NOT NULL,
  kind          INTEGER NOT NULL,
  user          TEXT NOT NULL,
  admin         INTEGER NOT NULL,
  cluster       TEXT NOT NULL,
  agent_id      TEXT NOT NULL,
  description   TEXT NOT NULL,
  created_ms    INTEGER NOT NULL,
  expires_ms    INTEGER NOT NULL,  -- 0: never
  revoked       INTEGER NOT NULL DEFAULT 0,
  used          INTEGER NOT NULL DEFAULT 0,
  unix_user     TEXT NOT NULL DEFAULT '',
  aliases       TEXT NOT NULL DEFAULT ''  -- newline-separated
);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (user);
CREATE TABLE IF NOT EXISTS run_as_grants (
  user        TEXT NOT NULL,
  unix_user   TEXT NOT NULL,
  granted_by  TEXT NOT NULL,
  created_ms  INTEGER NOT NULL,
  PRIMARY KEY (user, unix_user)
);
)sql";

constexpr char kColumns[] =
    "token_id, kind, user, admin, cluster, agent_id, description, created_ms, expires_ms, revoked, "
    "used, unix_user, aliases";

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) == 1)
      << "the system's random source failed";
  return out;
}

bool IsHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

// User and cluster names: what a Unix user or a Slurm ClusterName can be, and nothing that could
// confuse a log line or a table.
absl::Status CheckName(absl::string_view what, absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(what, " must have 1 to 64 characters"));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-' && c != '@') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " \"", absl::CHexEscape(name),
          "\" may contain only letters, digits and . _ - @"));
    }
  }
  return absl::OkStatus();
}

google::protobuf::Timestamp Ts(int64_t ms) { return TimeUtil::MillisecondsToTimestamp(ms); }

v1::TokenKind ProtoKind(TokenKind kind) {
  switch (kind) {
    case TokenKind::kUser: return v1::TOKEN_KIND_USER;
    case TokenKind::kEnrollment: return v1::TOKEN_KIND_ENROLLMENT;
    case TokenKind::kAgent: return v1::TOKEN_KIND_AGENT;
  }
  return v1::TOKEN_KIND_UNSPECIFIED;
}

// A row selected with kColumns.
v1::TokenInfo InfoFromRow(const SqliteStatement& st) {
  v1::TokenInfo info;
  info.set_token_id(st.Text(0));
  info.set_kind(ProtoKind(static_cast<TokenKind>(st.Int(1))));
  info.set_user(st.Text(2));
  info.set_role(st.Int(3) != 0 ? v1::ROLE_ADMIN : v1::ROLE_USER);
  info.set_cluster(st.Text(4));
  info.set_agent_id(st.Text(5));
  info.set_description(st.Text(6));
  *info.mutable_created_time() = Ts(st.Int(7));
  if (st.Int(8) != 0) *info.mutable_expire_time() = Ts(st.Int(8));
  info.set_revoked(st.Int(9) != 0);
  info.set_used(st.Int(10) != 0);
  info.set_unix_user(st.Text(11));
  for (absl::string_view a : absl::StrSplit(st.Text(12), '\n', absl::SkipEmpty())) {
    info.add_aliases(std::string(a));
  }
  return info;
}

absl::Status Unauthenticated() {
  return absl::UnauthenticatedError("the bearer token is not valid");
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenAuthority>> TokenAuthority::Open(const std::string& path,
                                                                     Clock* clock) {
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path, {.create_mode = 0600}));
  RETURN_IF_ERROR(db->Exec(kSchema));
  // A database from before enrollment bound the Unix user and aliases gains their columns.
  {
    ASSIGN_OR_RETURN(SqliteStatement cols, db->Prepare("SELECT name FROM pragma_table_info('tokens')"));
    bool has_unix_user = false;
    while (true) {
      ASSIGN_OR_RETURN(bool row, cols.Step());
      if (!row) break;
      has_unix_user |= cols.Text(0) == "unix_user";
    }
    if (!has_unix_user) {
      RETURN_IF_ERROR(db->Exec(
          "ALTER TABLE tokens ADD COLUMN unix_user TEXT NOT NULL DEFAULT '';"
          "ALTER TABLE tokens ADD COLUMN aliases TEXT NOT NULL DEFAULT '';"));
    }
  }
  std::unique_ptr<TokenAuthority> authority(new TokenAuthority(std::move(db), clock));
  absl::MutexLock lock(&authority->mu_);
  RETURN_IF_ERROR(authority->LoadEntries());
  return authority;
}

absl::Status TokenAuthority::LoadEntries() {
  {
    ASSIGN_OR_RETURN(SqliteStatement st, db_->Prepare("SELECT user, unix_user, granted_by, "
                                                      "created_ms FROM run_as_grants"));
    grants_.clear();
    while (true) {
      ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      v1::RunAsGrant g;
      g.set_user(st.Text(0));
      g.set_unix_user(st.Text(1));
      g.set_granted_by(st.Text(2));
      *g.mutable_created_time() = Ts(st.Int(3));
      grants_[{g.user(), g.unix_user()}] = std::move(g);
    }
  }
  ASSIGN_OR_RETURN(SqliteStatement st,
                   db_->Prepare("SELECT token_id, secret_sha256, kind, user, admin, cluster, "
                                "agent_id, expires_ms, revoked, used, unix_user, aliases "
                                "FROM tokens"));
  entries_.clear();
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    Entry e;
    e.principal.token_id = st.Text(0);
    e.secret_sha256 = std::string(st.Bytes(1));
    e.principal.kind = static_cast<TokenKind>(st.Int(2));
    e.principal.user = st.Text(3);
    e.principal.admin = st.Int(4) != 0;
    e.principal.cluster = st.Text(5);
    e.principal.agent_id = st.Text(6);
    e.expires_ms = st.Int(7);
    e.revoked = st.Int(8) != 0;
    e.used = st.Int(9) != 0;
    e.principal.unix_user = st.Text(10);
    e.principal.aliases = absl::StrSplit(st.Text(11), '\n', absl::SkipEmpty());
    entries_[e.principal.token_id] = std::move(e);
  }
  return absl::OkStatus();
}

absl::StatusOr<IssuedToken> TokenAuthority::Issue(const Spec& spec) {
  const std::string id = absl::BytesToHexString(RandomBytes(kIdHexLength / 2));
  const std::string secret = absl::WebSafeBase64Escape(RandomBytes(kSecretBytes));
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  const int64_t expires_ms =
      spec.ttl == absl::InfiniteDuration() ? 0 : now_ms + absl::ToInt64Milliseconds(spec.ttl);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   db_->Prepare("INSERT INTO tokens (token_id, secret_sha256, kind, user, admin, "
                                "cluster, agent_id, description, created_ms, expires_ms, "
                                "unix_user, aliases) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  st.Bind(1, id)
      .BindBlob(2, Sha256(secret))
      .Bind(3, static_cast<int>(spec.kind))
      .Bind(4, spec.user)
      .Bind(5, spec.admin ? 1 : 0)
      .Bind(6, spec.cluster)
      .Bind(7, spec.agent_id)
      .Bind(8, spec.description)
      .Bind(9, now_ms)
      .Bind(10, expires_ms)
      .Bind(11, spec.unix_user)
      .Bind(12, absl::StrJoin(spec.aliases, "\n"));
  RETURN_IF_ERROR(st.Run());
  ASSIGN_OR_RETURN(std::optional<v1::TokenInfo> info, Info(id));
  if (!info) return absl::InternalError("a token just written cannot be read back");
  Entry& e = entries_[id];
  e.secret_sha256 = Sha256(secret);
  e.principal = {.kind = spec.kind,
                 .token_id = id,
                 .user = spec.user,
                 .admin = spec.admin,
                 .cluster = spec.cluster,
                 .unix_user = spec.unix_user,
                 .aliases = spec.aliases,
                 .agent_id = spec.agent_id};
  e.expires_ms = expires_ms;
  return IssuedToken{*std::move(info), absl::StrCat(kPrefix, id, "_", secret)};
}

absl::StatusOr<std::optional<v1::TokenInfo>> TokenAuthority::Info(const std::string& token_id) {
  ASSIGN_OR_RETURN(SqliteStatement st, db_->Prepare(absl::StrCat(
                                           "SELECT ", kColumns, " FROM tokens WHERE token_id = ?")));
  st.Bind(1, token_id);
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::nullopt;
  return InfoFromRow(st);
}

absl::StatusOr<Principal> TokenAuthority::Verify(absl::string_view token) {
  // evalctl_<16 hex>_<secret>
  if (!absl::ConsumePrefix(&token, kPrefix) || token.size() < kIdHexLength + 2 ||
      token[kIdHexLength] != '_') {
    return Unauthenticated();
  }
  const absl::string_view id = token.substr(0, kIdHexLength);
  const absl::string_view secret = token.substr(kIdHexLength + 1);
  if (!IsHex(id)) return Unauthenticated();

  absl::MutexLock lock(&mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return Unauthenticated();
  const Entry& e = it->second;
  const std::string got = Sha256(secret);
  if (e.secret_sha256.size() != got.size() ||
      CRYPTO_memcmp(e.secret_sha256.data(), got.data(), got.size()) != 0) {
    return Unauthenticated();
  }
  if (e.revoked) return absl::UnauthenticatedError(absl::StrCat("token ", id, " was revoked"));
  if (e.expires_ms != 0 && e.expires_ms <= absl::ToUnixMillis(clock_->Now())) {
    return absl::UnauthenticatedError(absl::StrCat("token ", id, " has expired"));
  }
  if (e.principal.kind == TokenKind::kEnrollment && e.used) {
    return absl::UnauthenticatedError(
        absl::StrCat("enrollment token ", id, " was used already; create a new one"));
  }
  Principal principal = e.principal;
  if (e.expires_ms != 0) principal.expires = absl::FromUnixMillis(e.expires_ms);
  return principal;
}

absl::Status TokenAuthority::StillValid(const std::string& token_id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(token_id);
  if (it == entries_.end()) return Unauthenticated();
  if (it->second.revoked) {
    return absl::UnauthenticatedError(absl::StrCat("token ", token_id, " was revoked"));
  }
  if (it->second.expires_ms != 0 && it->second.expires_ms <= absl::ToUnixMillis(clock_->Now())) {
    return absl::UnauthenticatedError(absl::StrCat("token ", token_id, " has expired"));
  }
  return absl::OkStatus();
}

absl::StatusOr<IssuedToken> TokenAuthority::CreateToken(const Caller& caller,
                                                        const v1::CreateTokenRequest& req) {
  Spec spec{.kind = TokenKind::kUser};
  spec.user = req.user().empty() ? caller.user : req.user();
  RETURN_IF_ERROR(CheckName("user", spec.user));
  spec.admin = req.role() == v1::ROLE_ADMIN;
  if (!caller.admin && spec.user != caller.user) {
    return absl::PermissionDeniedError("only admins can create tokens for other users");
  }
  if (!caller.admin && spec.admin) {
    return absl::PermissionDeniedError("only admins can create admin tokens");
  }
  if (req.ttl_seconds() < 0 || req.ttl_seconds() > kMaxTtlSeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttl_seconds must be 0 (never expires) or up to ten years, not ",
                     req.ttl_seconds()));
  }
  if (req.ttl_seconds() > 0) spec.ttl = absl::Seconds(req.ttl_seconds());
  // A token cannot make one that outlives it: rights would survive the expiry of their source.
  if (caller.token_expires != absl::InfiniteFuture()) {
    const absl::Time now = clock_->Now();
    const absl::Duration left = caller.token_expires - now;
    if (spec.ttl == absl::InfiniteDuration() || spec.ttl > left) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the token you call with expires at ", absl::FormatTime(caller.token_expires),
          ", and a token it creates cannot outlive it: give a ttl of at most ",
          absl::ToInt64Seconds(left), " s"));
    }
  }
  if (req.description().size() > kMaxDescription) {
    return absl::InvalidArgumentError(
        absl::StrCat("the description has ", req.description().size(),
                     " bytes; at most ", kMaxDescription, " are allowed"));
  }
  spec.description = req.description();
  absl::MutexLock lock(&mu_);
  return Issue(spec);
}

absl::StatusOr<v1::TokenInfo> TokenAuthority::RevokeToken(const Caller& caller,
                                                          const std::string& token_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<v1::TokenInfo> info, Info(token_id));
  // A user is not told whether someone else's token id exists.
  if (!info || (!caller.admin && (info->user() != caller.user ||
                                  info->kind() != v1::TOKEN_KIND_USER))) {
    return absl::NotFoundError(absl::StrCat("no token of yours has id \"",
                                            absl::CHexEscape(token_id), "\""));
  }
  ASSIGN_OR_RETURN(SqliteStatement st,
                   db_->Prepare("UPDATE tokens SET revoked = 1 WHERE token_id = ?"));
  RETURN_IF_ERROR(st.Bind(1, token_id).Run());
  entries_[token_id].revoked = true;
  info->set_revoked(true);
  return *std::move(info);
}

absl::StatusOr<std::vector<v1::TokenInfo>> TokenAuthority::ListTokens(const Caller& caller,
                                                                      const std::string& user) {
  const std::string who = user.empty() ? caller.user : user;
  if (!caller.admin && who != caller.user) {
    return absl::PermissionDeniedError("only admins can list other users' tokens");
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      SqliteStatement st,
      db_->Prepare(absl::StrCat("SELECT ", kColumns, " FROM tokens",
                                who == "*" ? "" : " WHERE user = ? AND kind = 0",
                                " ORDER BY created_ms, token_id")));
  if (who != "*") st.Bind(1, who);
  std::vector<v1::TokenInfo> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(InfoFromRow(st));
  }
  return out;
}

absl::StatusOr<IssuedToken> TokenAuthority::CreateEnrollmentToken(
    const Caller& caller, const v1::CreateEnrollmentTokenRequest& req) {
  if (!caller.admin) {
    return absl::PermissionDeniedError("only admins can create enrollment tokens for agents");
  }
  RETURN_IF_ERROR(CheckName("cluster", req.cluster()));
  if (req.unix_user().empty()) {
    return absl::InvalidArgumentError(
        "unix_user is required: the Unix account the agent runs as (its jobs run as that user)");
  }
  RETURN_IF_ERROR(CheckName("unix_user", req.unix_user()));
  if (req.aliases_size() > 32) return absl::InvalidArgumentError("at most 32 aliases");
  for (const std::string& a : req.aliases()) RETURN_IF_ERROR(CheckName("alias", a));
  absl::Duration ttl = kDefaultEnrollmentTtl;
  if (req.ttl_seconds() != 0) ttl = absl::Seconds(req.ttl_seconds());
  if (ttl <= absl::ZeroDuration() || ttl > kMaxEnrollmentTtl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "an enrollment token lives up to 7 days; ttl_seconds ", req.ttl_seconds(), " is not allowed"));
  }
  absl::MutexLock lock(&mu_);
  return Issue({.kind = TokenKind::kEnrollment,
                .user = caller.user,
                .cluster = req.cluster(),
                .unix_user = req.unix_user(),
                .aliases = {req.aliases().begin(), req.aliases().end()},
                .description = absl::StrCat("enrollment of an agent for ", req.unix_user(), "@",
                                            req.cluster()),
                .ttl = ttl});
}

absl::StatusOr<IssuedToken> TokenAuthority::Enroll(const Principal& enrollment,
                                                   const std::string& agent_id) {
  if (enrollment.kind != TokenKind::kEnrollment) {
    return absl::InvalidArgumentError("only an enrollment token can enroll an agent");
  }
  absl::MutexLock lock(&mu_);
  absl::StatusOr<IssuedToken> issued;
  absl::Status s = db_->Transaction([&]() -> absl::Status {
    mu_.AssertHeld();
    ASSIGN_OR_RETURN(SqliteStatement use,
                     db_->Prepare("UPDATE tokens SET used = 1 WHERE token_id = ? AND kind = 1 "
                                  "AND used = 0 AND revoked = 0"));
    RETURN_IF_ERROR(use.Bind(1, enrollment.token_id).Run());
    if (db_->Changes() != 1) {
      return absl::UnauthenticatedError(absl::StrCat(
          "enrollment token ", enrollment.token_id, " was used already; create a new one"));
    }
    // A re-enrolled agent (a reinstall) replaces its earlier credentials.
    ASSIGN_OR_RETURN(SqliteStatement old,
                     db_->Prepare("UPDATE tokens SET revoked = 1 WHERE kind = 2 AND cluster = ? "
                                  "AND agent_id = ?"));
    RETURN_IF_ERROR(old.Bind(1, enrollment.cluster).Bind(2, agent_id).Run());
    for (auto& [id, e] : entries_) {
      if (e.principal.kind == TokenKind::kAgent && e.principal.cluster == enrollment.cluster &&
          e.principal.agent_id == agent_id) {
        e.revoked = true;
      }
    }
    entries_[enrollment.token_id].used = true;
    issued = Issue({.kind = TokenKind::kAgent,
                    .user = enrollment.user,
                    .cluster = enrollment.cluster,
                    .unix_user = enrollment.unix_user,
                    .aliases = enrollment.aliases,
                    .agent_id = agent_id,
                    .description = absl::StrCat("agent ", agent_id, " of ", enrollment.cluster)});
    return issued.status();
  });
  // A rolled-back transaction leaves the database as it was: so must the memory be.
  if (!s.ok()) RETURN_IF_ERROR(LoadEntries());
  RETURN_IF_ERROR(s);
  return issued;
}

absl::StatusOr<std::optional<IssuedToken>> TokenAuthority::BootstrapAdmin(const std::string& user) {
  RETURN_IF_ERROR(CheckName("user", user));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   db_->Prepare("SELECT COUNT(*) FROM tokens WHERE kind = 0 AND admin = 1 AND "
                                "revoked = 0 AND (expires_ms = 0 OR expires_ms > ?)"));
  st.Bind(1, absl::ToUnixMillis(clock_->Now()));
  ASSIGN_OR_RETURN(bool row, st.Step());
  if (row && st.Int(0) > 0) return std::nullopt;
  st.Reset();
  ASSIGN_OR_RETURN(IssuedToken issued, Issue({.kind = TokenKind::kUser,
                                              .user = user,
                                              .admin = true,
                                              .description = "first admin token"}));
  return std::optional<IssuedToken>(std::move(issued));
}

// ---------------------------------------------------------------- run-as grants

absl::StatusOr<v1::RunAsGrant> TokenAuthority::GrantRunAs(const Caller& caller,
                                                          const std::string& user,
                                                          const std::string& unix_user) {
  if (!caller.admin) return absl::PermissionDeniedError("only admins can grant run-as");
  RETURN_IF_ERROR(CheckName("user", user));
  RETURN_IF_ERROR(CheckName("unix_user", unix_user));
  absl::MutexLock lock(&mu_);
  if (auto it = grants_.find({user, unix_user}); it != grants_.end()) return it->second;
  v1::RunAsGrant g;
  g.set_user(user);
  g.set_unix_user(unix_user);
  g.set_granted_by(caller.user);
  const int64_t now_ms = absl::ToUnixMillis(clock_->Now());
  *g.mutable_created_time() = Ts(now_ms);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   db_->Prepare("INSERT INTO run_as_grants (user, unix_user, granted_by, "
                                "created_ms) VALUES (?, ?, ?, ?)"));
  RETURN_IF_ERROR(st.Bind(1, user).Bind(2, unix_user).Bind(3, caller.user).Bind(4, now_ms).Run());
  grants_[{user, unix_user}] = g;
  return g;
}

absl::StatusOr<v1::RunAsGrant> TokenAuthority::RevokeRunAs(const Caller& caller,
                                                           const std::string& user,
                                                           const std::string& unix_user) {
  if (!caller.admin) return absl::PermissionDeniedError("only admins can revoke run-as grants");
  absl::MutexLock lock(&mu_);
  auto it = grants_.find({user, unix_user});
  if (it == grants_.end()) {
    return absl::NotFoundError(absl::StrCat("user ", absl::CHexEscape(user),
                                            " has no grant to run as ",
                                            absl::CHexEscape(unix_user)));
  }
  ASSIGN_OR_RETURN(SqliteStatement st,
                   db_->Prepare("DELETE FROM run_as_grants WHERE user = ? AND unix_user = ?"));
  RETURN_IF_ERROR(st.Bind(1, user).Bind(2, unix_user).Run());
  v1::RunAsGrant g = std::move(it->second);
  grants_.erase(it);
  return g;
}

absl::StatusOr<std::vector<v1::RunAsGrant>> TokenAuthority::ListRunAsGrants(
    const Caller& caller, const std::string& user) {
  const std::string who = user.empty() ? caller.user : user;
  if (!caller.admin && who != caller.user) {
    return absl::PermissionDeniedError("only admins can list other users' grants");
  }
  absl::MutexLock lock(&mu_);
  std::vector<v1::RunAsGrant> out;
  for (const auto& [key, g] : grants_) {
    if (who == "*" || key.first == who) out.push_back(g);
  }
  return out;
}

bool TokenAuthority::Granted(const std::string& user, const std::string& unix_user) {
  absl::MutexLock lock(&mu_);
  return grants_.count({user, unix_user}) > 0;
}

}  // namespace evalctl::controller

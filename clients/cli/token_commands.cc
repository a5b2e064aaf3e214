#include "clients/cli/token_commands.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "clients/cli/format.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace evalctl::cli {
namespace {

std::string KindName(v1::TokenKind kind) {
  switch (kind) {
    case v1::TOKEN_KIND_USER:
      return "user";
    case v1::TOKEN_KIND_ENROLLMENT:
      return "enrollment";
    case v1::TOKEN_KIND_AGENT:
      return "agent";
    default:
      return "-";
  }
}

std::string RoleName(const v1::TokenInfo& t) {
  if (t.kind() != v1::TOKEN_KIND_USER) return "-";
  return t.role() == v1::ROLE_ADMIN ? "admin" : "user";
}

std::string TokenState(const v1::TokenInfo& t, absl::Time now) {
  if (t.revoked()) return "revoked";
  if (t.used()) return "used";
  if (t.has_expire_time() && absl::FromUnixSeconds(t.expire_time().seconds()) <= now) {
    return "expired";
  }
  return "valid";
}

nlohmann::json ToJson(const v1::TokenInfo& t, absl::Time now) {
  nlohmann::json j = {{"token_id", t.token_id()},
                      {"kind", KindName(t.kind())},
                      {"user", t.user()},
                      {"role", RoleName(t)},
                      {"state", TokenState(t, now)},
                      {"description", t.description()},
                      {"created_time", TimestampJson(t.created_time())},
                      {"expire_time", t.has_expire_time() ? TimestampJson(t.expire_time())
                                                          : nlohmann::json(nullptr)}};
  if (!t.cluster().empty()) j["cluster"] = t.cluster();
  if (!t.agent_id().empty()) j["agent_id"] = t.agent_id();
  if (!t.unix_user().empty()) j["unix_user"] = t.unix_user();
  if (t.aliases_size() > 0) j["aliases"] = std::vector<std::string>(t.aliases().begin(), t.aliases().end());
  return j;
}

std::string Expiry(const v1::TokenInfo& t, const Io& io) {
  return t.has_expire_time() ? FormatTimestamp(t.expire_time(), io.tz) : "never";
}

// The secret to io.out, or to a new 0600 file; the note about it to io.err.
absl::Status HandOut(const std::string& token, const std::string& output, const std::string& note,
                     const Io& io) {
  if (output.empty()) {
    io.out << token << "\n";
    io.err << note << "\n";
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(WritePrivateFile(output, token + "\n"));
  io.err << note << " Written to " << output << " (mode 0600).\n";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<absl::Duration> ParseTtl(absl::string_view raw) {
  const std::string text = absl::AsciiStrToLower(absl::StripAsciiWhitespace(raw));
  if (text == "never" || text == "0") return absl::InfiniteDuration();
  absl::Duration d;
  int64_t n = 0;
  if (text.size() > 1 && absl::SimpleAtoi(absl::string_view(text).substr(0, text.size() - 1), &n) &&
      (text.back() == 'd' || text.back() == 'w')) {
    d = absl::Hours(24) * n * (text.back() == 'w' ? 7 : 1);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad --ttl \"", raw, "\"; use e.g. 30m, 12h, 90d, 2w, or never"));
  }
  if (d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--ttl must be positive, not \"", raw, "\""));
  }
  return d;
}

absl::Status TokenCreateCommand(client::Client& client, const TokenCreateOptions& options,
                                const Io& io) {
  v1::CreateTokenRequest request;
  request.set_user(options.user);
  request.set_role(options.admin ? v1::ROLE_ADMIN : v1::ROLE_USER);
  request.set_description(options.description);
  if (options.ttl != absl::InfiniteDuration()) {
    request.set_ttl_seconds(std::max<int64_t>(1, absl::ToInt64Seconds(options.ttl)));
  }
  ASSIGN_OR_RETURN(v1::CreateTokenResponse response, client.CreateToken(request));
  const v1::TokenInfo& info = response.info();
  return HandOut(response.token(), options.output,
                 absl::StrCat("Token ", info.token_id(), " for ", info.user(), " (",
                              RoleName(info), "), expires ", Expiry(info, io),
                              ". It is shown only now: keep it like a password (export "
                              "EVALCTL_TOKEN or use --token-file)."),
                 io);
}

absl::Status TokenLsCommand(client::Client& client, const TokenLsOptions& options, const Io& io) {
  v1::ListTokensRequest request;
  request.set_user(options.all ? "*" : options.user);
  ASSIGN_OR_RETURN(v1::ListTokensResponse response, client.ListTokens(request));
  const absl::Time now = absl::Now();
  if (options.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const v1::TokenInfo& t : response.tokens()) j.push_back(ToJson(t, now));
    io.out << DumpJson(j, 2) << "\n";
    return absl::OkStatus();
  }
  if (response.tokens_size() == 0) {
    io.out << "No tokens.\n";
    return absl::OkStatus();
  }
  Table table({"Token ID", "Kind", "User", "Role", "Cluster", "State", "Created", "Expires",
               "Description"});
  for (const v1::TokenInfo& t : response.tokens()) {
    std::string cluster = t.cluster();
    if (!t.unix_user().empty()) cluster = absl::StrCat(t.unix_user(), "@", cluster);
    if (!t.agent_id().empty()) absl::StrAppend(&cluster, " (agent ", t.agent_id(), ")");
    table.AddRow({t.token_id(), KindName(t.kind()), Cell(t.user()), RoleName(t), Cell(cluster),
                  TokenState(t, now), FormatTimestamp(t.created_time(), io.tz), Expiry(t, io),
                  Cell(t.description())});
  }
  table.Print(io.out);
  return absl::OkStatus();
}

absl::Status TokenRevokeCommand(client::Client& client, const std::vector<std::string>& ids,
                                const Io& io) {
  for (const std::string& id : ids) {
    v1::RevokeTokenRequest request;
    request.set_token_id(id);
    ASSIGN_OR_RETURN(v1::RevokeTokenResponse response, client.RevokeToken(request));
    io.out << "Revoked " << response.info().token_id() << " (" << KindName(response.info().kind())
           << ", " << Cell(response.info().user()) << ")\n";
  }
  return absl::OkStatus();
}

absl::Status ClusterEnrollCommand(client::Client& client, const ClusterEnrollOptions& options,
                                  const Io& io) {
  v1::CreateEnrollmentTokenRequest request;
  request.set_cluster(options.cluster);
  request.set_unix_user(options.unix_user);
  for (const std::string& a : options.aliases) request.add_aliases(a);
  if (options.ttl > absl::ZeroDuration() && options.ttl != absl::InfiniteDuration()) {
    request.set_ttl_seconds(std::max<int64_t>(1, absl::ToInt64Seconds(options.ttl)));
  }
  ASSIGN_OR_RETURN(v1::CreateEnrollmentTokenResponse response,
                   client.CreateEnrollmentToken(request));
  return HandOut(response.token(), options.output,
                 absl::StrCat("Enrollment token ", response.info().token_id(),
                              " for the agent of ", options.unix_user, " on cluster ",
                              options.cluster, ", valid once until ",
                              FormatTimestamp(response.expire_time(), io.tz),
                              ". Start the agent with --token-file pointing at it; the agent "
                              "deletes the file once it has its own credential."),
                 io);
}

}  // namespace evalctl::cli

#include "controller/service/auth.h"

#include <atomic>
#include <deque>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controller/service/rpc_util.h"

namespace evalctl::controller {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::StatusOr<Caller> InsecureAuthenticator::Authenticate(
    const grpc::CallbackServerContext& context) {
  Caller caller;
  caller.admin = true;
  const auto& md = context.client_metadata();
  auto it = md.find("x-evalctl-user");
  caller.user = it == md.end() ? "anonymous" : std::string(it->second.data(), it->second.size());
  if (caller.user.empty() || caller.user.size() > 64) caller.user = "anonymous";
  return caller;
}

absl::StatusOr<Principal> InsecureAuthenticator::AuthenticateAgent(
    const grpc::CallbackServerContext&) {
  return Principal{.kind = TokenKind::kAgent, .user = "anonymous", .admin = false};
}

absl::StatusOr<Principal> TokenAuthenticator::Verify(const grpc::CallbackServerContext& context) {
  const auto& md = context.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return absl::UnauthenticatedError(
        "this controller needs a bearer token (metadata `authorization: Bearer <token>`); give "
        "evalctl one with EVALCTL_TOKEN or --token-file");
  }
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("the authorization metadata must be `Bearer <token>`");
  }
  return tokens_->Verify(absl::StripAsciiWhitespace(value.substr(kScheme.size())));
}

absl::StatusOr<Caller> TokenAuthenticator::Authenticate(
    const grpc::CallbackServerContext& context) {
  ASSIGN_OR_RETURN(Principal p, Verify(context));
  if (p.kind != TokenKind::kUser) {
    return absl::PermissionDeniedError(
        absl::StrCat("token ", p.token_id, " belongs to an agent and cannot call this service"));
  }
  return Caller{.user = std::move(p.user),
                .admin = p.admin,
                .token_expires = p.expires,
                .token_id = std::move(p.token_id)};
}

absl::StatusOr<Principal> TokenAuthenticator::AuthenticateAgent(
    const grpc::CallbackServerContext& context) {
  ASSIGN_OR_RETURN(Principal p, Verify(context));
  if (p.kind == TokenKind::kUser) {
    return absl::PermissionDeniedError(
        absl::StrCat("token ", p.token_id,
                     " is a user's; an agent connects with an enrollment token "
                     "(evalctl cluster enroll CLUSTER) and then with its own credential"));
  }
  return p;
}

}  // namespace evalctl::controller

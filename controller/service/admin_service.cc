#include "controller/service/admin_service.h"

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

template <typename Fn>
grpc::ServerUnaryReactor* AdminServiceImpl::Unary(grpc::CallbackServerContext* ctx,
                                                  const char* method, Fn fn) {
  RpcObservation rpc(metrics_, v1::AdminService::service_full_name(), method);
  return RunUnary(ctx, auth_, pool_, rpc, [this, fn = std::move(fn)](const Caller& c) {
    if (tokens_ == nullptr) {
      return absl::FailedPreconditionError(
          "this controller runs with --insecure and has no tokens; start it with TLS to use them");
    }
    return fn(c);
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateToken(grpc::CallbackServerContext* ctx,
                                                        const v1::CreateTokenRequest* req,
                                                        v1::CreateTokenResponse* resp) {
  return Unary(ctx, "CreateToken", [this, req, resp](const Caller& c) -> absl::Status {
    ASSIGN_OR_RETURN(IssuedToken issued, tokens_->CreateToken(c, *req));
    LOG(INFO) << "user=" << c.user << " created token " << issued.info.token_id() << " for "
              << issued.info.user();
    *resp->mutable_info() = std::move(issued.info);
    resp->set_token(std::move(issued.token));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RevokeToken(grpc::CallbackServerContext* ctx,
                                                        const v1::RevokeTokenRequest* req,
                                                        v1::RevokeTokenResponse* resp) {
  return Unary(ctx, "RevokeToken", [this, req, resp](const Caller& c) -> absl::Status {
    ASSIGN_OR_RETURN(*resp->mutable_info(), tokens_->RevokeToken(c, req->token_id()));
    LOG(INFO) << "user=" << c.user << " revoked token " << resp->info().token_id();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListTokens(grpc::CallbackServerContext* ctx,
                                                       const v1::ListTokensRequest* req,
                                                       v1::ListTokensResponse* resp) {
  return Unary(ctx, "ListTokens", [this, req, resp](const Caller& c) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<v1::TokenInfo> tokens, tokens_->ListTokens(c, req->user()));
    for (v1::TokenInfo& t : tokens) *resp->add_tokens() = std::move(t);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::CreateEnrollmentToken(
    grpc::CallbackServerContext* ctx, const v1::CreateEnrollmentTokenRequest* req,
    v1::CreateEnrollmentTokenResponse* resp) {
  return Unary(ctx, "CreateEnrollmentToken", [this, req, resp](const Caller& c) -> absl::Status {
    ASSIGN_OR_RETURN(IssuedToken issued, tokens_->CreateEnrollmentToken(c, *req));
    LOG(INFO) << "user=" << c.user << " created enrollment token " << issued.info.token_id()
              << " for cluster " << issued.info.cluster();
    *resp->mutable_expire_time() = issued.info.expire_time();
    *resp->mutable_info() = std::move(issued.info);
    resp->set_token(std::move(issued.token));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::GrantRunAs(grpc::CallbackServerContext* ctx,
                                                       const v1::GrantRunAsRequest* req,
                                                       v1::RunAsGrant* resp) {
  return Unary(ctx, "GrantRunAs", [this, req, resp](const Caller& c) -> absl::Status {
    RETURN_IF_ERROR(Reply(tokens_->GrantRunAs(c, req->user(), req->unix_user()), resp));
    LOG(INFO) << "user=" << c.user << " granted " << resp->user() << " to run as Unix user "
              << resp->unix_user();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::RevokeRunAs(grpc::CallbackServerContext* ctx,
                                                        const v1::RevokeRunAsRequest* req,
                                                        v1::RunAsGrant* resp) {
  return Unary(ctx, "RevokeRunAs", [this, req, resp](const Caller& c) -> absl::Status {
    RETURN_IF_ERROR(Reply(tokens_->RevokeRunAs(c, req->user(), req->unix_user()), resp));
    LOG(INFO) << "user=" << c.user << " revoked " << resp->user() << "'s grant to run as "
              << resp->unix_user();
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListRunAsGrants(
    grpc::CallbackServerContext* ctx, const v1::ListRunAsGrantsRequest* req,
    v1::ListRunAsGrantsResponse* resp) {
  return Unary(ctx, "ListRunAsGrants", [this, req, resp](const Caller& c) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<v1::RunAsGrant> grants, tokens_->ListRunAsGrants(c, req->user()));
    for (v1::RunAsGrant& g : grants) *resp->add_grants() = std::move(g);
    return absl::OkStatus();
  });
}

}  // namespace evalctl::controller

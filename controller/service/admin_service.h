// AdminService: tokens and enrollment.
//
// Thread-safe.
#pragma once

#include "absl/status/status.h"
#include "common/thread_pool.h"
#include "controller/core/controller_core.h"
#include "controller/core/token_authority.h"
#include "controller/service/auth.h"
#include "controller/service/metrics.h"
#include "evalctl/v1/admin_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace evalctl::controller {

// Tokens and enrollment. With a null `tokens` (the insecure mode) every call is
// FAILED_PRECONDITION: there are no tokens to manage.
class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(TokenAuthority* tokens, Authenticator* auth, ThreadPool* pool,
                   ControllerMetrics* metrics = nullptr)
      : tokens_(tokens), auth_(auth), pool_(pool), metrics_(metrics) {}

  grpc::ServerUnaryReactor* CreateToken(grpc::CallbackServerContext* ctx,
                                        const v1::CreateTokenRequest* req,
                                        v1::CreateTokenResponse* resp) override;
  grpc::ServerUnaryReactor* RevokeToken(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeTokenRequest* req,
                                        v1::RevokeTokenResponse* resp) override;
  grpc::ServerUnaryReactor* ListTokens(grpc::CallbackServerContext* ctx,
                                       const v1::ListTokensRequest* req,
                                       v1::ListTokensResponse* resp) override;
  grpc::ServerUnaryReactor* CreateEnrollmentToken(grpc::CallbackServerContext* ctx,
                                                  const v1::CreateEnrollmentTokenRequest* req,
                                                  v1::CreateEnrollmentTokenResponse* resp) override;
  grpc::ServerUnaryReactor* GrantRunAs(grpc::CallbackServerContext* ctx,
                                       const v1::GrantRunAsRequest* req,
                                       v1::RunAsGrant* resp) override;
  grpc::ServerUnaryReactor* RevokeRunAs(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeRunAsRequest* req,
                                        v1::RunAsGrant* resp) override;
  grpc::ServerUnaryReactor* ListRunAsGrants(grpc::CallbackServerContext* ctx,
                                            const v1::ListRunAsGrantsRequest* req,
                                            v1::ListRunAsGrantsResponse* resp) override;

 private:
  template <typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const char* method, Fn fn);

  TokenAuthority* tokens_;
  Authenticator* auth_;
  ThreadPool* pool_;
  ControllerMetrics* metrics_;
};

}  // namespace evalctl::controller

// Who is calling the controller: the authenticators (tokens, or the loopback-only insecure mode)
// and the one conversion of absl::Status to grpc::Status.
//
// Thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/core/controller_core.h"
#include "controller/core/token_authority.h"
#include "grpcpp/grpcpp.h"

namespace evalctl::controller {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Who is calling. Users call EvalService and AdminService; agents call AgentService.
class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // A user (or admin). UNAUTHENTICATED without a valid token; PERMISSION_DENIED for an agent's.
  virtual absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext& context) = 0;
  // An agent: its credential, or an enrollment token it may exchange for one. A Principal with
  // an empty cluster is not bound to any cluster (the insecure mode).
  virtual absl::StatusOr<Principal> AuthenticateAgent(
      const grpc::CallbackServerContext& context) = 0;
  // Whether the caller's token still authenticates (streams opened with it end when not).
  virtual absl::Status StillValid(const Caller& caller) {
    (void)caller;
    return absl::OkStatus();
  }
};

// The loopback-only insecure mode: the user name comes from the `x-evalctl-user` metadata the
// client sends, every caller is an admin, and agents are not bound to a cluster.
class InsecureAuthenticator : public Authenticator {
 public:
  absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext& context) override;
  absl::StatusOr<Principal> AuthenticateAgent(const grpc::CallbackServerContext& context) override;
};

// `authorization: Bearer <token>`, verified by the TokenAuthority (from memory, no disk I/O).
class TokenAuthenticator : public Authenticator {
 public:
  explicit TokenAuthenticator(TokenAuthority* tokens) : tokens_(tokens) {}
  absl::StatusOr<Caller> Authenticate(const grpc::CallbackServerContext& context) override;
  absl::Status StillValid(const Caller& caller) override {
    return tokens_->StillValid(caller.token_id);
  }
  absl::StatusOr<Principal> AuthenticateAgent(const grpc::CallbackServerContext& context) override;

 private:
  absl::StatusOr<Principal> Verify(const grpc::CallbackServerContext& context);
  TokenAuthority* tokens_;
};

}  // namespace evalctl::controller

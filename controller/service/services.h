// The controller's gRPC layer: thin callback-API handlers over ControllerCore.
//
// Each handler authenticates the caller, hands the work to a worker pool (no disk I/O on gRPC
// threads), and converts absl::Status to grpc::Status in one place (ToGrpcStatus). Streams
// (WatchInvocation, StreamLogs, the agents' Connect) are reactors with one write in flight.
//
// Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/thread_pool.h"
#include "controller/core/controller_core.h"
#include "controller/core/token_authority.h"
#include "controller/service/metrics.h"
#include "evalctl/v1/admin_service.grpc.pb.h"
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "evalctl/v1/eval_service.grpc.pb.h"
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
  absl::StatusOr<Principal> AuthenticateAgent(const grpc::CallbackServerContext& context) override;

 private:
  absl::StatusOr<Principal> Verify(const grpc::CallbackServerContext& context);
  TokenAuthority* tokens_;
};

class EvalServiceImpl final : public v1::EvalService::CallbackService {
 public:
  // `metrics` (optional): per-RPC counts and durations, open watchers.
  EvalServiceImpl(ControllerCore* core, Authenticator* auth, ThreadPool* pool,
                  ControllerMetrics* metrics = nullptr)
      : core_(core), auth_(auth), pool_(pool), metrics_(metrics) {}

  grpc::ServerUnaryReactor* PlanInvocation(grpc::CallbackServerContext* ctx,
                                           const v1::PlanInvocationRequest* req,
                                           v1::PlanInvocationResponse* resp) override;
  grpc::ServerUnaryReactor* SubmitInvocation(grpc::CallbackServerContext* ctx,
                                             const v1::SubmitInvocationRequest* req,
                                             v1::SubmitInvocationResponse* resp) override;
  grpc::ServerUnaryReactor* GetInvocation(grpc::CallbackServerContext* ctx,
                                          const v1::GetInvocationRequest* req,
                                          v1::Invocation* resp) override;
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* ctx,
                                    const v1::GetTaskRequest* req, v1::Task* resp) override;
  grpc::ServerUnaryReactor* ListInvocations(grpc::CallbackServerContext* ctx,
                                            const v1::ListInvocationsRequest* req,
                                            v1::ListInvocationsResponse* resp) override;
  grpc::ServerWriteReactor<v1::WatchInvocationResponse>* WatchInvocation(
      grpc::CallbackServerContext* ctx, const v1::WatchInvocationRequest* req) override;
  grpc::ServerUnaryReactor* CancelInvocation(grpc::CallbackServerContext* ctx,
                                             const v1::CancelInvocationRequest* req,
                                             v1::CancelInvocationResponse* resp) override;
  grpc::ServerUnaryReactor* ResumeInvocation(grpc::CallbackServerContext* ctx,
                                             const v1::ResumeInvocationRequest* req,
                                             v1::ResumeInvocationResponse* resp) override;
  grpc::ServerWriteReactor<v1::StreamLogsResponse>* StreamLogs(
      grpc::CallbackServerContext* ctx, const v1::StreamLogsRequest* req) override;
  grpc::ServerUnaryReactor* GetResults(grpc::CallbackServerContext* ctx,
                                       const v1::GetResultsRequest* req,
                                       v1::GetResultsResponse* resp) override;
  grpc::ServerUnaryReactor* ListClusters(grpc::CallbackServerContext* ctx,
                                         const v1::ListClustersRequest* req,
                                         v1::ListClustersResponse* resp) override;

 private:
  // Authenticates, runs `fn(caller)` on the pool, finishes with its status, and records the RPC.
  template <typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const char* method, Fn fn);

  ControllerCore* core_;
  Authenticator* auth_;
  ThreadPool* pool_;
  ControllerMetrics* metrics_;
};

// `tokens` may be null (the insecure mode), and then agents are not enrolled.
// The stream carries raw bytes that the reactor decodes itself: gRPC's typed reactor reports a
// message it cannot decode as the end of the stream, indistinguishable from the agent closing it.
// A message that is not a valid AgentMessage (undecodable, no known body, a second Register) is
// logged once and ends the stream with INVALID_ARGUMENT and a message saying what was wrong.
class AgentServiceImpl final
    : public v1::AgentService::WithRawCallbackMethod_Connect<v1::AgentService::Service> {
 public:
  AgentServiceImpl(ControllerCore* core, Authenticator* auth, TokenAuthority* tokens,
                   ThreadPool* pool, ControllerMetrics* metrics = nullptr)
      : core_(core), auth_(auth), tokens_(tokens), pool_(pool), metrics_(metrics) {}
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Connect(
      grpc::CallbackServerContext* ctx) override;

 private:
  ControllerCore* core_;
  Authenticator* auth_;
  TokenAuthority* tokens_;
  ThreadPool* pool_;
  ControllerMetrics* metrics_;
};

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
  grpc::ServerUnaryReactor* CreateEnrollmentToken(
      grpc::CallbackServerContext* ctx, const v1::CreateEnrollmentTokenRequest* req,
      v1::CreateEnrollmentTokenResponse* resp) override;

 private:
  template <typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const char* method, Fn fn);

  TokenAuthority* tokens_;
  Authenticator* auth_;
  ThreadPool* pool_;
  ControllerMetrics* metrics_;
};

}  // namespace evalctl::controller

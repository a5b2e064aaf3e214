// EvalService: what users call. Unary handlers authenticate, run the ControllerCore call on the
// worker pool (no disk I/O on gRPC threads) and reply; WatchInvocation and StreamLogs are
// reactors with one write in flight, reading from the store and the agent as the client keeps up.
//
// Thread-safe.
#pragma once

#include "absl/status/status.h"
#include "common/thread_pool.h"
#include "controller/core/controller_core.h"
#include "controller/core/token_authority.h"
#include "controller/service/auth.h"
#include "controller/service/metrics.h"
#include "controller/service/rpc_util.h"
#include "evalctl/v1/eval_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace evalctl::controller {

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
  grpc::ServerUnaryReactor* GetTask(grpc::CallbackServerContext* ctx, const v1::GetTaskRequest* req,
                                    v1::Task* resp) override;
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

  // Ends the open watches and log streams whose token was revoked or has expired; the server
  // calls it every second.
  void EndStreamsOfInvalidTokens() { streams_.EndInvalid(); }

 private:
  // Authenticates, runs `fn(caller)` on the pool, puts its value in `resp`, finishes with its
  // status, and records the RPC.
  template <typename Response, typename Fn>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const char* method,
                                  Response* resp, Fn fn);

  ControllerCore* core_;
  Authenticator* auth_;
  ThreadPool* pool_;
  ControllerMetrics* metrics_;
  OpenStreams streams_;
};

}  // namespace evalctl::controller

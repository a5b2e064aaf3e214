// What the service files share: reference-counted reactors, and running a unary call.
#pragma once

#include <atomic>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "controller/service/auth.h"
#include "controller/service/metrics.h"
#include "grpcpp/grpcpp.h"

namespace evalctl::controller {

// Counts the reactor itself plus every piece of work scheduled for it; the last Release deletes.
class RefCounted {
 public:
  virtual ~RefCounted() = default;
  void AddRef() { refs_.fetch_add(1); }
  void Release() {
    if (refs_.fetch_sub(1) == 1) delete this;
  }

 private:
  std::atomic<int> refs_{1};
};

template <typename Fn>
grpc::ServerUnaryReactor* RunUnary(grpc::CallbackServerContext* ctx, Authenticator* auth,
                                   ThreadPool* pool, RpcObservation rpc, Fn fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Caller> caller = auth->Authenticate(*ctx);
  if (!caller.ok()) {
    grpc::Status status = ToGrpcStatus(caller.status());
    rpc.Done(status.error_code());
    reactor->Finish(status);
    return reactor;
  }
  pool->Schedule([reactor, rpc, caller = *caller, fn = std::move(fn)]() mutable {
    grpc::Status status = ToGrpcStatus(fn(caller));
    rpc.Done(status.error_code());
    reactor->Finish(status);
  });
  return reactor;
}

// The one reply of unary handlers: the value goes to the response, the status to the client.
template <typename Response>
absl::Status Reply(absl::StatusOr<Response> result, Response* resp) {
  if (!result.ok()) return result.status();
  *resp = *std::move(result);
  return absl::OkStatus();
}

}  // namespace evalctl::controller

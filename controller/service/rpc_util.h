// What the service files share: reference-counted reactors, and running a unary call.
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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

// Open server streams (watches, log streams) that end when their caller's token stops
// authenticating: revoked, or expired while the stream is open. A reactor tracks itself when it
// starts and untracks in OnDone; EndInvalid, called every second, asks each open one to check
// its caller, so a revoked token's streams end within about a second.
class OpenStreams {
 public:
  class Stream {
   public:
    virtual ~Stream() = default;
    // Finishes the stream (UNAUTHENTICATED, with the reason) when its caller's token no longer
    // authenticates. Must not block.
    virtual void EndIfInvalid() = 0;
  };
  struct Slot {
    absl::Mutex mu;
    Stream* stream ABSL_GUARDED_BY(mu) = nullptr;
  };

  std::shared_ptr<Slot> Track(Stream* stream) {
    auto slot = std::make_shared<Slot>();
    {
      absl::MutexLock lock(&slot->mu);
      slot->stream = stream;
    }
    absl::MutexLock lock(&mu_);
    slots_.insert(slot);
    return slot;
  }
  // After this returns, EndIfInvalid is never called on the slot's stream again.
  void Untrack(const std::shared_ptr<Slot>& slot) {
    {
      absl::MutexLock lock(&slot->mu);
      slot->stream = nullptr;
    }
    absl::MutexLock lock(&mu_);
    slots_.erase(slot);
  }
  void EndInvalid() {
    std::vector<std::shared_ptr<Slot>> open;
    {
      absl::MutexLock lock(&mu_);
      open.assign(slots_.begin(), slots_.end());
    }
    for (const std::shared_ptr<Slot>& slot : open) {
      absl::MutexLock lock(&slot->mu);
      if (slot->stream != nullptr) slot->stream->EndIfInvalid();
    }
  }

 private:
  absl::Mutex mu_;
  std::set<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
};

// The one reply of unary handlers: the value goes to the response, the status to the client.
template <typename Response>
absl::Status Reply(absl::StatusOr<Response> result, Response* resp) {
  if (!result.ok()) return result.status();
  *resp = *std::move(result);
  return absl::OkStatus();
}

}  // namespace evalctl::controller

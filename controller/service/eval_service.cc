#include "controller/service/eval_service.h"

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
namespace {

constexpr int kWatchBatch = 256;

RpcObservation EvalRpc(ControllerMetrics* metrics, absl::string_view method) {
  return RpcObservation(metrics, v1::EvalService::service_full_name(), method);
}

// Streams committed events from the store: each batch is read when the previous one was written
// and new events were announced, so a slow watcher lags (and catches up from the log) instead of
// buffering without bound or stalling the core.
class WatchReactor : public grpc::ServerWriteReactor<v1::WatchInvocationResponse>,
                     public RefCounted,
                     public OpenStreams::Stream {
 public:
  WatchReactor(ControllerCore* core, ThreadPool* pool, ControllerMetrics* metrics,
               Authenticator* auth, OpenStreams* streams, Caller caller,
               v1::WatchInvocationRequest request)
      : core_(core),
        pool_(pool),
        auth_(auth),
        streams_(streams),
        metrics_(metrics),
        rpc_(EvalRpc(metrics, "WatchInvocation")),
        caller_(std::move(caller)),
        request_(std::move(request)),
        link_(std::make_shared<Link>()) {
    last_ = request_.after_sequence();
    {
      absl::MutexLock lock(&mu_);
      read_through_ = delivered_ = last_;
    }
    if (metrics_ != nullptr) watcher_id_ = metrics_->WatcherOpened(last_);
    link_->reactor = this;
    slot_ = streams_->Track(this);
    Schedule([this] { Start(); });
  }

  void EndIfInvalid() override {
    if (absl::Status valid = auth_->StillValid(caller_); !valid.ok()) {
      FinishOnce(ToGrpcStatus(valid));
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "watcher went away"));
    absl::MutexLock lock(&mu_);
    writing_ = false;
    delivered_ = last_;
    WriteNextLocked();
    ReportPositionLocked();
  }
  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }
  void OnDone() override {
    {
      absl::MutexLock lock(&link_->mu);
      link_->reactor = nullptr;
    }
    streams_->Untrack(slot_);
    if (listener_ != 0) core_->RemoveListener(listener_);
    if (metrics_ != nullptr) metrics_->WatcherClosed(watcher_id_);
    {
      absl::MutexLock lock(&mu_);
      rpc_.Done(code_);
    }
    Release();
  }

 private:
  struct Link {
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  template <typename F>
  void Schedule(F f) {
    AddRef();
    pool_->Schedule([this, f = std::move(f)] {
      f();
      Release();
    });
  }

  void Start() {
    auto scope = core_->ResolveWatch(caller_, request_.id());
    if (!scope.ok()) return FinishOnce(ToGrpcStatus(scope.status()));
    scope_ = *scope;
    std::shared_ptr<Link> link = link_;
    listener_ = core_->AddListener([link] {
      absl::MutexLock lock(&link->mu);
      if (link->reactor != nullptr) link->reactor->Wake();
    });
    Wake();
  }

  void Wake() {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (fetching_ || writing_ || !buffer_.empty()) {
      dirty_ = true;
      return;
    }
    fetching_ = true;
    Schedule([this] { Fetch(); });
  }

  void Fetch() {
    // Every event up to `head` is committed: a read that returns less than a batch has seen all
    // of them that this watcher may see.
    const uint64_t head = core_->LastEventSequence();
    auto events = core_->EventsAfter(scope_, last_fetched_, kWatchBatch);
    bool done_watching = false;
    if (events.ok() && events->empty() && !scope_.invocation_id.empty()) {
      done_watching = core_->InvocationFinished(scope_.invocation_id);
    }
    if (!events.ok()) {
      {
        absl::MutexLock lock(&mu_);
        fetching_ = false;
      }
      return FinishOnce(ToGrpcStatus(events.status()));
    }
    absl::MutexLock lock(&mu_);
    fetching_ = false;
    if (static_cast<int>(events->size()) < kWatchBatch) {
      read_through_ = std::max(read_through_, head);
    }
    if (events->empty()) {
      ReportPositionLocked();
      if (done_watching && !dirty_) {
        finished_ = true;
        Finish(grpc::Status::OK);
        return;
      }
      if (dirty_) {
        dirty_ = false;
        fetching_ = true;
        Schedule([this] { Fetch(); });
      }
      return;
    }
    for (auto& e : *events) {
      last_fetched_ = std::max(last_fetched_, e.sequence());
      // A placeholder that only advances the position (events of other owners) is not sent.
      if (!e.has_event()) continue;
      if (e.sequence() <= last_) continue;
      buffer_.push_back(std::move(e));
    }
    if (static_cast<int>(events->size()) == kWatchBatch) dirty_ = true;
    read_through_ = std::max(read_through_, last_fetched_);
    WriteNextLocked();
    ReportPositionLocked();
  }

  // The watcher's position for its lag (ControllerMetrics::WatcherAt): all it has read once that
  // is written out, else the last event written.
  void ReportPositionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (metrics_ == nullptr) return;
    metrics_->WatcherAt(watcher_id_, buffer_.empty() && !writing_ ? read_through_ : delivered_);
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || writing_) return;
    if (buffer_.empty()) {
      if (!fetching_) {
        // Caught up with what was fetched; look again (also to notice the end).
        fetching_ = true;
        dirty_ = false;
        Schedule([this] { Fetch(); });
      }
      return;
    }
    current_ = std::move(buffer_.front());
    buffer_.pop_front();
    last_ = current_.sequence();
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishOnce(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    code_ = status.error_code();
    Finish(status);
  }

  ControllerCore* core_;
  ThreadPool* pool_;
  Authenticator* auth_;
  OpenStreams* streams_;
  std::shared_ptr<OpenStreams::Slot> slot_;
  ControllerMetrics* metrics_;
  RpcObservation rpc_;
  Caller caller_;
  v1::WatchInvocationRequest request_;
  std::shared_ptr<Link> link_;
  ControllerCore::WatchScope scope_;
  int64_t listener_ = 0;

  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool fetching_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::WatchInvocationResponse> buffer_ ABSL_GUARDED_BY(mu_);
  v1::WatchInvocationResponse current_;
  uint64_t last_ = 0;
  uint64_t last_fetched_ = 0;
  // For the lag metric: the watcher's id, how far it has read the log (events it may not see
  // included), and the sequence of the last event written out.
  uint64_t watcher_id_ = 0;
  uint64_t read_through_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
};

// Streams a log: each chunk is asked of the task's agent (over its stream), written, then the
// next one is asked for. With `follow` the agent waits for the file to grow before answering.
class LogsReactor : public grpc::ServerWriteReactor<v1::StreamLogsResponse>,
                    public RefCounted,
                    public OpenStreams::Stream {
 public:
  LogsReactor(ControllerCore* core, ThreadPool* pool, ControllerMetrics* metrics,
              Authenticator* auth, OpenStreams* streams, Caller caller,
              v1::StreamLogsRequest request)
      : core_(core),
        pool_(pool),
        auth_(auth),
        streams_(streams),
        rpc_(EvalRpc(metrics, "StreamLogs")),
        caller_(std::move(caller)),
        request_(std::move(request)) {
    offset_ = request_.offset();
    slot_ = streams_->Track(this);
    Ask();
  }

  void EndIfInvalid() override {
    if (absl::Status valid = auth_->StillValid(caller_); !valid.ok()) {
      FinishOnce(ToGrpcStatus(valid));
    }
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return FinishOnce(grpc::Status::CANCELLED);
    Ask();
  }
  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }
  void OnDone() override {
    streams_->Untrack(slot_);
    {
      absl::MutexLock lock(&mu_);
      rpc_.Done(code_);
    }
    Release();
  }

 private:
  // Each Ask holds a reference until the agent's answer (or failure) arrives, so the reactor
  // outlives a late answer.
  void Ask() {
    AddRef();
    pool_->Schedule([this] {
      int32_t wait = request_.follow() ? 2000 : 0;
      AddRef();
      core_->ReadLog(caller_, request_, offset_, wait,
                     [this](absl::StatusOr<v1::LogChunk> chunk) { OnChunk(std::move(chunk)); });
      Release();
    });
  }

  void OnChunk(absl::StatusOr<v1::LogChunk> chunk) {
    if (!chunk.ok()) {
      FinishOnce(ToGrpcStatus(chunk.status()));
      Release();
      return;
    }
    if (chunk->data().empty()) {
      bool stop = !request_.follow();
      if (!stop) {
        auto task = core_->GetTask(caller_, request_.id());
        stop = !task.ok() || task->state() == v1::TASK_STATE_SUCCEEDED ||
               task->state() == v1::TASK_STATE_FAILED ||
               task->state() == v1::TASK_STATE_CANCELLED ||
               task->state() == v1::TASK_STATE_BUDGET_EXHAUSTED;
        // One more read after the end, so nothing written just before it is missed.
        if (stop && !final_read_) {
          final_read_ = true;
          stop = false;
        }
      }
      if (stop) {
        FinishOnce(grpc::Status::OK);
      } else {
        offset_ = chunk->offset();
        Ask();
      }
      Release();
      return;
    }
    offset_ = chunk->offset() + static_cast<int64_t>(chunk->data().size());
    response_.set_path(chunk->path());
    response_.set_offset(chunk->offset());
    response_.set_data(chunk->data());
    {
      absl::MutexLock lock(&mu_);
      if (!finished_) StartWrite(&response_);
    }
    Release();
  }

  void FinishOnce(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    code_ = status.error_code();
    Finish(status);
  }

  ControllerCore* core_;
  ThreadPool* pool_;
  Authenticator* auth_;
  OpenStreams* streams_;
  std::shared_ptr<OpenStreams::Slot> slot_;
  RpcObservation rpc_;
  Caller caller_;
  v1::StreamLogsRequest request_;
  int64_t offset_ = 0;
  bool final_read_ = false;
  v1::StreamLogsResponse response_;
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
};

// A server stream refused before it started: the caller is not authenticated.
template <typename Response>
class Refused : public grpc::ServerWriteReactor<Response> {
 public:
  explicit Refused(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// Authenticates the caller of a server stream and makes its reactor, or refuses the stream.
template <typename Response, typename Make>
grpc::ServerWriteReactor<Response>* OpenStream(Authenticator* auth, ControllerMetrics* metrics,
                                               grpc::CallbackServerContext* ctx,
                                               absl::string_view method, Make make) {
  absl::StatusOr<Caller> caller = auth->Authenticate(*ctx);
  if (!caller.ok()) {
    grpc::Status status = ToGrpcStatus(caller.status());
    EvalRpc(metrics, method).Done(status.error_code());
    return new Refused<Response>(status);
  }
  return make(*caller);
}

}  // namespace

template <typename Response, typename Fn>
grpc::ServerUnaryReactor* EvalServiceImpl::Unary(grpc::CallbackServerContext* ctx,
                                                 const char* method, Response* resp, Fn fn) {
  return RunUnary(ctx, auth_, pool_, EvalRpc(metrics_, method),
                  [resp, fn = std::move(fn)](const Caller& c) { return Reply(fn(c), resp); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::PlanInvocation(grpc::CallbackServerContext* ctx,
                                                          const v1::PlanInvocationRequest* req,
                                                          v1::PlanInvocationResponse* resp) {
  return Unary(ctx, "PlanInvocation", resp,
               [this, req](const Caller& c) { return core_->Plan(c, req->config()); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::SubmitInvocation(grpc::CallbackServerContext* ctx,
                                                            const v1::SubmitInvocationRequest* req,
                                                            v1::SubmitInvocationResponse* resp) {
  return Unary(ctx, "SubmitInvocation", resp,
               [this, req](const Caller& c) { return core_->Submit(c, *req); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::GetInvocation(grpc::CallbackServerContext* ctx,
                                                         const v1::GetInvocationRequest* req,
                                                         v1::Invocation* resp) {
  return Unary(ctx, "GetInvocation", resp,
               [this, req](const Caller& c) { return core_->GetInvocation(c, *req); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::GetTask(grpc::CallbackServerContext* ctx,
                                                   const v1::GetTaskRequest* req, v1::Task* resp) {
  return Unary(ctx, "GetTask", resp,
               [this, req](const Caller& c) { return core_->GetTask(c, req->id()); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::ListInvocations(grpc::CallbackServerContext* ctx,
                                                           const v1::ListInvocationsRequest* req,
                                                           v1::ListInvocationsResponse* resp) {
  return Unary(ctx, "ListInvocations", resp,
               [this, req](const Caller& c) { return core_->List(c, *req); });
}

grpc::ServerWriteReactor<v1::WatchInvocationResponse>* EvalServiceImpl::WatchInvocation(
    grpc::CallbackServerContext* ctx, const v1::WatchInvocationRequest* req) {
  return OpenStream<v1::WatchInvocationResponse>(
      auth_, metrics_, ctx, "WatchInvocation",
      [&](const Caller& caller) {
        return new WatchReactor(core_, pool_, metrics_, auth_, &streams_, caller, *req);
      });
}

grpc::ServerUnaryReactor* EvalServiceImpl::CancelInvocation(grpc::CallbackServerContext* ctx,
                                                            const v1::CancelInvocationRequest* req,
                                                            v1::CancelInvocationResponse* resp) {
  return Unary(ctx, "CancelInvocation", resp,
               [this, req](const Caller& c) { return core_->Cancel(c, req->id()); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::ResumeInvocation(grpc::CallbackServerContext* ctx,
                                                            const v1::ResumeInvocationRequest* req,
                                                            v1::ResumeInvocationResponse* resp) {
  return Unary(ctx, "ResumeInvocation", resp,
               [this, req](const Caller& c) { return core_->Resume(c, req->id()); });
}

grpc::ServerWriteReactor<v1::StreamLogsResponse>* EvalServiceImpl::StreamLogs(
    grpc::CallbackServerContext* ctx, const v1::StreamLogsRequest* req) {
  return OpenStream<v1::StreamLogsResponse>(
      auth_, metrics_, ctx, "StreamLogs",
      [&](const Caller& caller) {
        return new LogsReactor(core_, pool_, metrics_, auth_, &streams_, caller, *req);
      });
}

grpc::ServerUnaryReactor* EvalServiceImpl::GetResults(grpc::CallbackServerContext* ctx,
                                                      const v1::GetResultsRequest* req,
                                                      v1::GetResultsResponse* resp) {
  return Unary(ctx, "GetResults", resp,
               [this, req](const Caller& c) { return core_->Results(c, req->id()); });
}

grpc::ServerUnaryReactor* EvalServiceImpl::ListClusters(grpc::CallbackServerContext* ctx,
                                                        const v1::ListClustersRequest* req,
                                                        v1::ListClustersResponse* resp) {
  (void)req;
  return Unary(ctx, "ListClusters", resp, [this](const Caller&) {
    return absl::StatusOr<v1::ListClustersResponse>(core_->Clusters());
  });
}

}  // namespace evalctl::controller

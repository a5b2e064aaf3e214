#include "controller/service/services.h"

#include <atomic>
#include <deque>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/logging.h"

namespace evalctl::controller {
namespace {

constexpr int kWatchBatch = 256;

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

RpcObservation EvalRpc(ControllerMetrics* metrics, absl::string_view method) {
  return RpcObservation(metrics, v1::EvalService::service_full_name(), method);
}

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

// Streams committed events from the store: each batch is read when the previous one was written
// and new events were announced, so a slow watcher lags (and catches up from the log) instead of
// buffering without bound or stalling the core.
class WatchReactor : public grpc::ServerWriteReactor<v1::WatchInvocationResponse>,
                     public RefCounted {
 public:
  WatchReactor(ControllerCore* core, ThreadPool* pool, ControllerMetrics* metrics, Caller caller,
               v1::WatchInvocationRequest request)
      : core_(core),
        pool_(pool),
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
    Schedule([this] { Start(); });
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
class LogsReactor : public grpc::ServerWriteReactor<v1::StreamLogsResponse>, public RefCounted {
 public:
  LogsReactor(ControllerCore* core, ThreadPool* pool, ControllerMetrics* metrics, Caller caller,
              v1::StreamLogsRequest request)
      : core_(core),
        pool_(pool),
        rpc_(EvalRpc(metrics, "StreamLogs")),
        caller_(std::move(caller)),
        request_(std::move(request)) {
    offset_ = request_.offset();
    Ask();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return FinishOnce(grpc::Status::CANCELLED);
    Ask();
  }
  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }
  void OnDone() override {
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
               task->state() == v1::TASK_STATE_FAILED || task->state() == v1::TASK_STATE_CANCELLED ||
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

// The wire form of a message to the agent; empty when it cannot be serialized (never for the
// messages the controller builds: they are far below protobuf's 2 GiB limit).
std::optional<grpc::ByteBuffer> Serialize(const v1::ControllerMessage& message) {
  grpc::ByteBuffer buffer;
  bool own_buffer = false;
  if (!grpc::SerializationTraits<v1::ControllerMessage>::Serialize(message, &buffer, &own_buffer)
           .ok()) {
    return std::nullopt;
  }
  return buffer;
}

// One agent's stream. The reactor reads raw bytes and decodes them itself (see AgentServiceImpl),
// so that a message that is not a valid AgentMessage ends the stream with INVALID_ARGUMENT instead
// of looking like the agent's end of the stream. Reads are handled one at a time, in order, on the
// pool; writes are queued with one in flight.
class AgentReactor : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                     public AgentLink,
                     public RefCounted {
 public:
  // `principal` is what the stream's token says; `tokens` (null in the insecure mode) enrolls.
  AgentReactor(ControllerCore* core, TokenAuthority* tokens, ThreadPool* pool,
               ControllerMetrics* metrics, absl::StatusOr<Principal> principal, std::string peer)
      : core_(core),
        tokens_(tokens),
        pool_(pool),
        rpc_(metrics, v1::AgentService::service_full_name(), "Connect"),
        peer_(std::move(peer)) {
    if (!principal.ok()) {
      FinishOnce(ToGrpcStatus(principal.status()));
      return;
    }
    principal_ = *std::move(principal);
    StartRead(&incoming_);
  }

  void Send(v1::ControllerMessage message) override {
    std::optional<grpc::ByteBuffer> wire = Serialize(message);
    if (!wire) {
      LOG(ERROR) << "agent stream from " << absl::CHexEscape(peer_)
                 << ": a message to the agent cannot be serialized; the stream is closed";
      return FinishOnce(grpc::Status(grpc::StatusCode::INTERNAL,
                                     "the controller could not serialize a message"));
    }
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    outbox_.push_back(*std::move(wire));
    WriteNextLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return FinishOnce(grpc::Status::OK);
    AddRef();
    pool_->Schedule([this] {
      ++messages_read_;
      v1::AgentMessage msg;
      if (absl::Status valid = Decode(&incoming_, &msg); !valid.ok()) {
        Refuse(valid);
      } else {
        Handle(msg);
      }
      {
        absl::MutexLock lock(&mu_);
        if (!finished_) StartRead(&incoming_);
      }
      Release();
    });
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) return;
    outbox_.pop_front();
    WriteNextLocked();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    if (!agent_id_.empty()) core_->AgentDisconnected(agent_id_, this);
    {
      absl::MutexLock lock(&mu_);
      rpc_.Done(code_);
    }
    Release();
  }

 private:
  // Decodes one message (consuming `wire`) and checks that it is one the protocol allows here.
  absl::Status Decode(grpc::ByteBuffer* wire, v1::AgentMessage* msg) {
    const size_t bytes = wire->Length();
    if (bytes == 0) {
      wire->Clear();  // an empty message: no body, refused below
    } else if (!grpc::SerializationTraits<v1::AgentMessage>::Deserialize(wire, msg).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", messages_read_, " on the agent stream (", bytes,
          " bytes) cannot be decoded as an evalctl.v1.AgentMessage: malformed protobuf, or a "
          "string field that is not valid UTF-8"));
    }
    if (msg->body_case() == v1::AgentMessage::BODY_NOT_SET) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", messages_read_, " on the agent stream (", bytes,
          " bytes) is none of register, events, command_result or heartbeat"));
    }
    if (msg->has_register_() && !agent_id_.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", messages_read_,
          " on the agent stream is a second Register; an agent registers once per stream"));
    }
    return absl::OkStatus();
  }

  // Logs the refusal once and ends the stream with it; the agent reconnects.
  void Refuse(const absl::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
    }
    LOG(WARNING) << "agent stream from " << absl::CHexEscape(peer_) << " (agent="
                 << (agent_id_.empty() ? std::string("not registered")
                                       : absl::CHexEscape(agent_id_))
                 << ") closed: " << status.message();
    FinishOnce(ToGrpcStatus(status));
  }

  void Handle(const v1::AgentMessage& msg) {
    if (agent_id_.empty()) {
      if (!msg.has_register_()) {
        return FinishOnce(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                       "the first message on the stream must be Register"));
      }
      absl::StatusOr<std::string> credential = CheckIdentity(msg.register_());
      if (!credential.ok()) {
        // The message quotes agent-supplied values only through CHexEscape (CheckIdentity).
        LOG(WARNING) << "agent stream refused: " << credential.status().message();
        return FinishOnce(ToGrpcStatus(credential.status()));
      }
      auto registered = core_->AgentConnected(msg.register_(), this);
      if (!registered.ok()) return FinishOnce(ToGrpcStatus(registered.status()));
      agent_id_ = msg.register_().agent_id();
      v1::ControllerMessage reply;
      *reply.mutable_registered() = *registered;
      reply.mutable_registered()->set_credential(*std::move(credential));
      // Registered must precede the commands AgentConnected queued (nothing was written yet, see
      // WriteNextLocked): put it first.
      std::optional<grpc::ByteBuffer> wire = Serialize(reply);
      if (!wire) {
        return FinishOnce(grpc::Status(grpc::StatusCode::INTERNAL,
                                       "the controller could not serialize Registered"));
      }
      absl::MutexLock lock(&mu_);
      outbox_.push_front(*std::move(wire));
      registered_ = true;
      WriteNextLocked();
      return;
    }
    switch (msg.body_case()) {
      case v1::AgentMessage::kEvents: {
        auto ack = core_->AgentEvents(agent_id_, msg.events());
        if (!ack.ok()) {
          LOG(ERROR) << "agent=" << absl::CHexEscape(agent_id_)
                     << " events not applied: " << absl::CHexEscape(ack.status().ToString());
          return FinishOnce(ToGrpcStatus(ack.status()));
        }
        v1::ControllerMessage reply;
        reply.mutable_events_ack()->set_sequence(*ack);
        Send(std::move(reply));
        return;
      }
      case v1::AgentMessage::kCommandResult:
        core_->AgentCommandResult(agent_id_, msg.command_result());
        return;
      case v1::AgentMessage::kHeartbeat:
        core_->AgentHeartbeat(agent_id_, msg.heartbeat());
        return;
      default:  // Decode lets no other message through
        return;
    }
  }

  // An agent may register only as the cluster (and agent id) its token names. An enrollment
  // token is exchanged here for the agent's own credential, which is returned; "" otherwise.
  absl::StatusOr<std::string> CheckIdentity(const v1::Register& reg) {
    if (principal_.cluster.empty()) return std::string();  // the insecure mode: not bound
    if (reg.cluster() != principal_.cluster) {
      return absl::PermissionDeniedError(absl::StrCat(
          "this token is for cluster \"", principal_.cluster, "\", not \"",
          absl::CHexEscape(reg.cluster()), "\""));
    }
    if (principal_.kind == TokenKind::kAgent) {
      if (reg.agent_id() != principal_.agent_id) {
        return absl::PermissionDeniedError(absl::StrCat(
            "this credential belongs to agent ", principal_.agent_id, " of ", principal_.cluster,
            ", not to agent \"", absl::CHexEscape(reg.agent_id()), "\""));
      }
      return std::string();
    }
    if (reg.agent_id().empty() || reg.agent_id().size() > 128) {
      return absl::InvalidArgumentError("Register needs agent_id (at most 128 characters)");
    }
    ASSIGN_OR_RETURN(IssuedToken issued, tokens_->Enroll(principal_, reg.agent_id()));
    LOG(INFO) << "agent=" << absl::CHexEscape(reg.agent_id()) << " of cluster "
              << absl::CHexEscape(reg.cluster())
              << " enrolled; credential " << issued.info.token_id();
    // From here on this stream acts with the new credential.
    principal_.kind = TokenKind::kAgent;
    principal_.agent_id = reg.agent_id();
    principal_.token_id = issued.info.token_id();
    return std::move(issued.token);
  }

  // Nothing is written before Registered: the commands that AgentConnected (or another thread,
  // once the link is known) sends wait in the outbox until Registered is queued in front of them.
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!registered_ || writing_ || outbox_.empty() || finished_) return;
    writing_ = true;
    StartWrite(&outbox_.front());
  }

  void FinishOnce(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
    code_ = status.error_code();
    Finish(status);
  }

  ControllerCore* core_;
  TokenAuthority* tokens_;
  ThreadPool* pool_;
  RpcObservation rpc_;
  const std::string peer_;
  Principal principal_;
  grpc::ByteBuffer incoming_;
  // Pool work on the stream runs one message at a time: these need no lock.
  uint64_t messages_read_ = 0;
  std::string agent_id_;
  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> outbox_ ABSL_GUARDED_BY(mu_);
  // Registered is at the front of the outbox: writing may start.
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
};

}  // namespace

template <typename Fn>
grpc::ServerUnaryReactor* EvalServiceImpl::Unary(grpc::CallbackServerContext* ctx,
                                                 const char* method, Fn fn) {
  return RunUnary(ctx, auth_, pool_, EvalRpc(metrics_, method), std::move(fn));
}

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

absl::StatusOr<Caller> TokenAuthenticator::Authenticate(const grpc::CallbackServerContext& context) {
  ASSIGN_OR_RETURN(Principal p, Verify(context));
  if (p.kind != TokenKind::kUser) {
    return absl::PermissionDeniedError(
        absl::StrCat("token ", p.token_id, " belongs to an agent and cannot call this service"));
  }
  return Caller{.user = std::move(p.user), .admin = p.admin, .token_expires = p.expires};
}

absl::StatusOr<Principal> TokenAuthenticator::AuthenticateAgent(
    const grpc::CallbackServerContext& context) {
  ASSIGN_OR_RETURN(Principal p, Verify(context));
  if (p.kind == TokenKind::kUser) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token ", p.token_id, " is a user's; an agent connects with an enrollment token "
        "(evalctl cluster enroll CLUSTER) and then with its own credential"));
  }
  return p;
}

grpc::ServerUnaryReactor* EvalServiceImpl::PlanInvocation(grpc::CallbackServerContext* ctx,
                                                          const v1::PlanInvocationRequest* req,
                                                          v1::PlanInvocationResponse* resp) {
  return Unary(ctx, "PlanInvocation", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->Plan(c, req->config());
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EvalServiceImpl::SubmitInvocation(grpc::CallbackServerContext* ctx,
                                                            const v1::SubmitInvocationRequest* req,
                                                            v1::SubmitInvocationResponse* resp) {
  return Unary(ctx, "SubmitInvocation", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->Submit(c, *req);
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EvalServiceImpl::GetInvocation(grpc::CallbackServerContext* ctx,
                                                         const v1::GetInvocationRequest* req,
                                                         v1::Invocation* resp) {
  return Unary(ctx, "GetInvocation", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->GetInvocation(c, *req);
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EvalServiceImpl::GetTask(grpc::CallbackServerContext* ctx,
                                                   const v1::GetTaskRequest* req, v1::Task* resp) {
  return Unary(ctx, "GetTask", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->GetTask(c, req->id());
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EvalServiceImpl::ListInvocations(grpc::CallbackServerContext* ctx,
                                                           const v1::ListInvocationsRequest* req,
                                                           v1::ListInvocationsResponse* resp) {
  return Unary(ctx, "ListInvocations", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->List(c, *req);
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::WatchInvocationResponse>* EvalServiceImpl::WatchInvocation(
    grpc::CallbackServerContext* ctx, const v1::WatchInvocationRequest* req) {
  auto caller = auth_->Authenticate(*ctx);
  if (!caller.ok()) {
    class Refused : public grpc::ServerWriteReactor<v1::WatchInvocationResponse> {
     public:
      explicit Refused(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    grpc::Status status = ToGrpcStatus(caller.status());
    EvalRpc(metrics_, "WatchInvocation").Done(status.error_code());
    return new Refused(status);
  }
  return new WatchReactor(core_, pool_, metrics_, *caller, *req);
}

grpc::ServerUnaryReactor* EvalServiceImpl::CancelInvocation(grpc::CallbackServerContext* ctx,
                                                            const v1::CancelInvocationRequest* req,
                                                            v1::CancelInvocationResponse* resp) {
  return Unary(ctx, "CancelInvocation", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->Cancel(c, req->id());
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EvalServiceImpl::ResumeInvocation(grpc::CallbackServerContext* ctx,
                                                            const v1::ResumeInvocationRequest* req,
                                                            v1::ResumeInvocationResponse* resp) {
  return Unary(ctx, "ResumeInvocation", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->Resume(c, req->id());
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::StreamLogsResponse>* EvalServiceImpl::StreamLogs(
    grpc::CallbackServerContext* ctx, const v1::StreamLogsRequest* req) {
  auto caller = auth_->Authenticate(*ctx);
  if (!caller.ok()) {
    class Refused : public grpc::ServerWriteReactor<v1::StreamLogsResponse> {
     public:
      explicit Refused(const grpc::Status& s) { Finish(s); }
      void OnDone() override { delete this; }
    };
    grpc::Status status = ToGrpcStatus(caller.status());
    EvalRpc(metrics_, "StreamLogs").Done(status.error_code());
    return new Refused(status);
  }
  return new LogsReactor(core_, pool_, metrics_, *caller, *req);
}

grpc::ServerUnaryReactor* EvalServiceImpl::GetResults(grpc::CallbackServerContext* ctx,
                                                      const v1::GetResultsRequest* req,
                                                      v1::GetResultsResponse* resp) {
  return Unary(ctx, "GetResults", [this, req, resp](const Caller& c) -> absl::Status {
    auto r = core_->Results(c, req->id());
    if (!r.ok()) return r.status();
    *resp = *std::move(r);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* EvalServiceImpl::ListClusters(grpc::CallbackServerContext* ctx,
                                                        const v1::ListClustersRequest* req,
                                                        v1::ListClustersResponse* resp) {
  (void)req;
  return Unary(ctx, "ListClusters", [this, resp](const Caller&) -> absl::Status {
    *resp = core_->Clusters();
    return absl::OkStatus();
  });
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* ctx) {
  return new AgentReactor(core_, tokens_, pool_, metrics_, auth_->AuthenticateAgent(*ctx),
                          ctx->peer());
}

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

}  // namespace evalctl::controller

#include "controller/service/agent_service.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "controller/service/rpc_util.h"

namespace evalctl::controller {
namespace {

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
                     public RefCounted,
                     public OpenStreams::Stream {
 public:
  // `principal` is what the stream's token says; `tokens` (null in the insecure mode) enrolls.
  AgentReactor(ControllerCore* core, TokenAuthority* tokens, ThreadPool* pool,
               ControllerMetrics* metrics, OpenStreams* streams,
               absl::StatusOr<Principal> principal, std::string peer)
      : core_(core),
        tokens_(tokens),
        pool_(pool),
        streams_(streams),
        rpc_(metrics, v1::AgentService::service_full_name(), "Connect"),
        peer_(std::move(peer)) {
    if (!principal.ok()) {
      FinishOnce(ToGrpcStatus(principal.status()));
      return;
    }
    principal_ = *std::move(principal);
    {
      absl::MutexLock lock(&mu_);
      token_id_ = principal_.token_id;
    }
    slot_ = streams_->Track(this);
    StartRead(&incoming_);
  }

  // A revoked (or expired) credential ends the stream; the agent's reconnects are refused.
  void EndIfInvalid() override {
    std::string token_id;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      token_id = token_id_;
    }
    if (tokens_ == nullptr || token_id.empty()) return;
    if (absl::Status valid = tokens_->StillValid(token_id); !valid.ok()) {
      LOG(WARNING) << "agent stream from " << absl::CHexEscape(peer_)
                   << " ended: " << valid.message();
      FinishOnce(ToGrpcStatus(valid));
    }
  }

  void Send(v1::ControllerMessage message) override {
    std::optional<grpc::ByteBuffer> wire = Serialize(message);
    if (!wire) {
      LOG(ERROR) << "agent stream from " << absl::CHexEscape(peer_)
                 << ": a message to the agent cannot be serialized; the stream is closed";
      return FinishOnce(
          grpc::Status(grpc::StatusCode::INTERNAL, "the controller could not serialize a message"));
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
    if (slot_ != nullptr) streams_->Untrack(slot_);
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
      return absl::InvalidArgumentError(
          absl::StrCat("message ", messages_read_, " on the agent stream (", bytes,
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
      return absl::PermissionDeniedError(absl::StrCat("this token is for cluster \"",
                                                      principal_.cluster, "\", not \"",
                                                      absl::CHexEscape(reg.cluster()), "\""));
    }
    // What the admin fixed at enrollment: the Unix user and the cluster's aliases (credentials
    // from before enrollment bound them carry none, and are checked by cluster only).
    if (!principal_.unix_user.empty()) {
      if (reg.unix_user() != principal_.unix_user) {
        return absl::PermissionDeniedError(absl::StrCat(
            "this token is for the agent of Unix user ", principal_.unix_user, " on ",
            principal_.cluster, ", not of \"", absl::CHexEscape(reg.unix_user()),
            "\"; enroll an agent for that user (evalctl cluster enroll ", principal_.cluster,
            " --unix-user USER)"));
      }
      // The agent may claim fewer aliases than enrolled, never another one (it would receive
      // the tasks users send to that host name).
      std::vector<std::string> unknown;
      for (const std::string& a : reg.aliases()) {
        if (std::find(principal_.aliases.begin(), principal_.aliases.end(), a) ==
            principal_.aliases.end()) {
          unknown.push_back(absl::CHexEscape(a));
        }
      }
      if (!unknown.empty()) {
        return absl::PermissionDeniedError(absl::StrCat(
            "the agent claims the alias(es) ", absl::StrJoin(unknown, ", "), " for ",
            principal_.cluster, ", which it was not enrolled with (enrolled: ",
            principal_.aliases.empty() ? "none" : absl::StrJoin(principal_.aliases, ", "),
            "); enroll it again with --alias for each host name it serves (an agent claims its "
            "host's short name too)"));
      }
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
              << absl::CHexEscape(reg.cluster()) << " enrolled; credential "
              << issued.info.token_id();
    // From here on this stream acts with the new credential.
    principal_.kind = TokenKind::kAgent;
    principal_.agent_id = reg.agent_id();
    principal_.token_id = issued.info.token_id();
    {
      absl::MutexLock lock(&mu_);
      token_id_ = principal_.token_id;
    }
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
  OpenStreams* streams_;
  std::shared_ptr<OpenStreams::Slot> slot_;
  RpcObservation rpc_;
  const std::string peer_;
  Principal principal_;
  grpc::ByteBuffer incoming_;
  // Pool work on the stream runs one message at a time: these need no lock.
  uint64_t messages_read_ = 0;
  std::string agent_id_;
  absl::Mutex mu_;
  // The token the stream acts with (the agent's credential once enrolled), for EndIfInvalid.
  std::string token_id_ ABSL_GUARDED_BY(mu_);
  std::deque<grpc::ByteBuffer> outbox_ ABSL_GUARDED_BY(mu_);
  // Registered is at the front of the outbox: writing may start.
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* AgentServiceImpl::Connect(
    grpc::CallbackServerContext* ctx) {
  return new AgentReactor(core_, tokens_, pool_, metrics_, &streams_,
                          auth_->AuthenticateAgent(*ctx), ctx->peer());
}

}  // namespace evalctl::controller

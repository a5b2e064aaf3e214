// AgentService: the agents' one long-lived stream each (Connect).
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
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace evalctl::controller {

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

  // Ends the agent streams whose credential was revoked or has expired; the server calls it
  // every second.
  void EndStreamsOfInvalidTokens() { streams_.EndInvalid(); }

 private:
  ControllerCore* core_;
  Authenticator* auth_;
  TokenAuthority* tokens_;
  ThreadPool* pool_;
  ControllerMetrics* metrics_;
  OpenStreams streams_;
};

}  // namespace evalctl::controller

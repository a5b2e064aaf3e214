// The C++ client of evalctl-controller's EvalService and AdminService (proto/evalctl/v1/).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Client> client,
//                    Client::Connect({.target = "127.0.0.1:50051", .token = token}));
//   v1::GetInvocationRequest req;
//   req.set_id("3f2a");                      // any unique prefix; the controller resolves it
//   ASSIGN_OR_RETURN(v1::Invocation inv, client->GetInvocation(req));
//
//   ASSIGN_OR_RETURN(auto stream, client->WatchInvocation(watch_req));
//   v1::WatchInvocationResponse event;
//   while (stream->Next(&event)) { ... }     // stream->Cancel() from any thread stops it
//   RETURN_IF_ERROR(stream->Finish());
//
// Every unary call carries a deadline (ClientOptions::timeout unless CallOptions says otherwise).
// A controller that cannot be reached gives UNAVAILABLE with a message that names the address and
// the cause ("cannot reach evalctl-controller at 127.0.0.1:50051 (connection refused)") within
// that deadline, never a hang. Errors from the controller keep their code and message.
//
// Thread-safety: Client is thread-safe (share one per process). A StreamReader is used by one
// thread, except Cancel(), which any thread may call.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "evalctl/v1/admin_service.grpc.pb.h"
#include "evalctl/v1/eval_service.grpc.pb.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "grpcpp/support/sync_stream.h"

namespace evalctl::client {

namespace v1 = ::evalctl::v1;

// TLS is used when any file is set; with only `ca_file` unset, the system's roots verify the
// controller. With no file set the channel is insecure (the controller's loopback-only mode).
struct TlsOptions {
  // PEM bundle of the CAs that sign the controller's certificate.
  std::string ca_file;
  // PEM client certificate and its private key, for mutual TLS (both or neither).
  std::string cert_file;
  std::string key_file;
};

struct ClientOptions {
  // host:port of evalctl-controller (any gRPC target: dns:///host:port, unix:/path, ...).
  std::string target;
  // Bearer token, sent as `authorization: Bearer <token>` on every call. Empty: none.
  std::string token;
  TlsOptions tls;
  // Deadline of each unary call, and how long a stream waits for the connection.
  absl::Duration timeout = absl::Seconds(10);
  // Appended to the "cannot reach" message, e.g. how to point the program at a controller.
  std::string unreachable_hint;
};

// Per-call overrides.
struct CallOptions {
  // Unary calls: replaces ClientOptions::timeout. Streams: a deadline for the whole stream (none
  // by default, as `watch` and `logs -f` run until the work ends).
  std::optional<absl::Duration> timeout;
};

// What the conversion of a failed call needs to know to explain it.
struct CallFailure {
  // The controller's address, for messages.
  std::string target;
  // The deadline the call had (InfiniteDuration for none).
  absl::Duration timeout = absl::InfiniteDuration();
  // False when the channel never got a connection: the controller was not reached at all.
  bool reached = true;
  std::string unreachable_hint;
};

// The one conversion of grpc::Status to absl::Status. Codes are kept (the enums share values).
// Transport failures get a message that names the controller and the cause:
//   UNAVAILABLE
//     "cannot reach evalctl-controller at 127.0.0.1:50051 (connection refused); <hint>"
//   DEADLINE_EXCEEDED
//     "evalctl-controller at 127.0.0.1:50051 did not answer within 10s (deadline exceeded)"
//   UNAUTHENTICATED, UNIMPLEMENTED: the message says which server and what to check.
// Other errors keep the controller's message.
absl::Status StatusFromGrpc(const grpc::Status& status, const CallFailure& failure = {});

// A fresh random request id (UUID version 4) for SubmitInvocation.
std::string NewRequestId();

// Reads a server stream. Next() blocks for the next message and returns false at its end; then
// Finish() gives the stream's status (OK when the server ended it normally, CANCELLED after
// Cancel()).
template <typename Response>
class StreamReader {
 public:
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;
  ~StreamReader() {
    if (!finished_) {
      context_->TryCancel();
      (void)reader_->Finish();
    }
  }

  bool Next(Response* response) { return !finished_ && reader_->Read(response); }

  absl::Status Finish() {
    if (finished_) return absl::FailedPreconditionError("stream already finished");
    finished_ = true;
    grpc::Status status = reader_->Finish();
    failure_.reached = channel_->GetState(false) == GRPC_CHANNEL_READY;
    return StatusFromGrpc(status, failure_);
  }

  // Stops the stream: a blocked Next() returns false. Safe from any thread, e.g. a signal thread.
  void Cancel() { context_->TryCancel(); }

 private:
  friend class Client;
  StreamReader(std::shared_ptr<grpc::Channel> channel, std::unique_ptr<grpc::ClientContext> context,
               std::unique_ptr<grpc::ClientReaderInterface<Response>> reader, CallFailure failure)
      : channel_(std::move(channel)),
        context_(std::move(context)),
        reader_(std::move(reader)),
        failure_(std::move(failure)) {}

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReaderInterface<Response>> reader_;
  CallFailure failure_;
  bool finished_ = false;
};

using WatchStream = StreamReader<v1::WatchInvocationResponse>;
using LogStream = StreamReader<v1::StreamLogsResponse>;

class Client {
 public:
  // Checks the options and reads the TLS files; does not dial (the first call does).
  // INVALID_ARGUMENT for an empty target or half a client key pair, NOT_FOUND or
  // PERMISSION_DENIED for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }

  absl::StatusOr<v1::PlanInvocationResponse> PlanInvocation(
      const v1::PlanInvocationRequest& request, const CallOptions& call = {});
  // Fills request_id with NewRequestId() when it is empty.
  absl::StatusOr<v1::SubmitInvocationResponse> SubmitInvocation(v1::SubmitInvocationRequest request,
                                                                const CallOptions& call = {});
  absl::StatusOr<v1::Invocation> GetInvocation(const v1::GetInvocationRequest& request,
                                               const CallOptions& call = {});
  absl::StatusOr<v1::Task> GetTask(const v1::GetTaskRequest& request, const CallOptions& call = {});
  absl::StatusOr<v1::ListInvocationsResponse> ListInvocations(
      const v1::ListInvocationsRequest& request, const CallOptions& call = {});
  absl::StatusOr<v1::CancelInvocationResponse> CancelInvocation(
      const v1::CancelInvocationRequest& request, const CallOptions& call = {});
  absl::StatusOr<v1::ResumeInvocationResponse> ResumeInvocation(
      const v1::ResumeInvocationRequest& request, const CallOptions& call = {});
  absl::StatusOr<v1::GetResultsResponse> GetResults(const v1::GetResultsRequest& request,
                                                    const CallOptions& call = {});
  absl::StatusOr<v1::ListClustersResponse> ListClusters(const v1::ListClustersRequest& request = {},
                                                        const CallOptions& call = {});

  // AdminService: bearer tokens and agent enrollment tokens (the secret is in the response only).
  absl::StatusOr<v1::CreateTokenResponse> CreateToken(const v1::CreateTokenRequest& request,
                                                      const CallOptions& call = {});
  absl::StatusOr<v1::RevokeTokenResponse> RevokeToken(const v1::RevokeTokenRequest& request,
                                                      const CallOptions& call = {});
  absl::StatusOr<v1::ListTokensResponse> ListTokens(const v1::ListTokensRequest& request = {},
                                                    const CallOptions& call = {});
  absl::StatusOr<v1::CreateEnrollmentTokenResponse> CreateEnrollmentToken(
      const v1::CreateEnrollmentTokenRequest& request, const CallOptions& call = {});
  absl::StatusOr<v1::RunAsGrant> GrantRunAs(const v1::GrantRunAsRequest& request,
                                            const CallOptions& call = {});
  absl::StatusOr<v1::RunAsGrant> RevokeRunAs(const v1::RevokeRunAsRequest& request,
                                             const CallOptions& call = {});
  absl::StatusOr<v1::ListRunAsGrantsResponse> ListRunAsGrants(
      const v1::ListRunAsGrantsRequest& request = {}, const CallOptions& call = {});

  // Server streams. The connection is established first (within ClientOptions::timeout), so an
  // unreachable controller fails here rather than in Next().
  absl::StatusOr<std::unique_ptr<WatchStream>> WatchInvocation(
      const v1::WatchInvocationRequest& request, const CallOptions& call = {});
  absl::StatusOr<std::unique_ptr<LogStream>> StreamLogs(const v1::StreamLogsRequest& request,
                                                        const CallOptions& call = {});

 private:
  Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel);

  // A context with the token and, when `timeout` is finite, a deadline.
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout) const;
  absl::Duration UnaryTimeout(const CallOptions& call) const;
  // Converts a failed call, telling apart a controller that was never reached.
  absl::Status Failed(const grpc::Status& status, absl::Duration timeout) const;
  // Waits until the channel is connected, at most ClientOptions::timeout.
  absl::Status WaitForConnection() const;

  template <typename Stub, typename Request, typename Response>
  absl::StatusOr<Response> Unary(Stub& stub,
                                 grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                                              Response*),
                                 const Request& request, const CallOptions& call);

  template <typename Request, typename Response, typename Method>
  absl::StatusOr<std::unique_ptr<StreamReader<Response>>> ServerStream(Method method,
                                                                       const Request& request,
                                                                       const CallOptions& call);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::EvalService::Stub> stub_;
  std::unique_ptr<v1::AdminService::Stub> admin_stub_;
};

}  // namespace evalctl::client

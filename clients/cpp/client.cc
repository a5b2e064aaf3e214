#include "clients/cpp/client.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace evalctl::client {
namespace {

// Keepalive pings find a dead connection under a long `watch` or `logs -f`. gRPC servers refuse
// pings more frequent than every 5 minutes by default (GOAWAY "too_many_pings"), so stay above.
constexpr int kKeepaliveTimeMs = 330'000;
constexpr int kKeepaliveTimeoutMs = 20'000;
constexpr int kMaxMessageBytes = 64 << 20;

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(what, " ", path, ": no such file"));
  }
  std::ifstream f(path, std::ios::binary);
  std::stringstream buffer;
  buffer << f.rdbuf();
  if (!f) return absl::PermissionDeniedError(absl::StrCat(what, " ", path, ": cannot read"));
  return buffer.str();
}

// The cause of a connection failure in a few words, from gRPC's message, e.g. "failed to connect
// to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host:
// Connection refused".
std::string ConnectFailureCause(absl::string_view message) {
  const std::string lower = absl::AsciiStrToLower(message);
  if (absl::StrContains(lower, "connection refused")) return "connection refused";
  if (absl::StrContains(lower, "dns resolution failed") ||
      absl::StrContains(lower, "domain name not found")) {
    return "cannot resolve the host name";
  }
  if (absl::StrContains(lower, "handshake")) {
    std::string detail;
    // OpenSSL 3 says "certificate verify failed", BoringSSL CERTIFICATE_VERIFY_FAILED.
    if (absl::StrContains(lower, "certificate verify failed") ||
        absl::StrContains(lower, "certificate_verify_failed")) {
      detail = ": the controller's certificate is not signed by the given CA";
    } else if (absl::StrContains(lower, "wrong version number") ||
               absl::StrContains(lower, "wrong_version_number") ||
               absl::StrContains(lower, "packet length too long") ||
               absl::StrContains(lower, "packet_length_too_long")) {
      detail = ": the controller does not speak TLS";
    }
    return absl::StrCat("TLS handshake failed", detail);
  }
  if (absl::StrContains(lower, "no route to host")) return "no route to host";
  if (absl::StrContains(lower, "network is unreachable")) return "network is unreachable";
  if (absl::StrContains(lower, "connection reset") || absl::StrContains(lower, "socket closed") ||
      absl::StrContains(lower, "connection closed")) {
    return "the connection was closed during setup; the controller may expect TLS";
  }
  if (absl::StrContains(lower, "timed out") || absl::StrContains(lower, "deadline")) {
    return "connection timed out";
  }
  // Keep what follows gRPC's generic preamble.
  constexpr absl::string_view kLast = "last error: ";
  if (size_t pos = message.rfind(kLast); pos != absl::string_view::npos) {
    return std::string(message.substr(pos + kLast.size()));
  }
  return std::string(message);
}

std::string Unreachable(const CallFailure& failure, absl::string_view cause) {
  std::string out =
      absl::StrCat("cannot reach evalctl-controller at ", failure.target, " (", cause, ")");
  if (!failure.unreachable_hint.empty()) absl::StrAppend(&out, "; ", failure.unreachable_hint);
  return out;
}

}  // namespace

absl::Status StatusFromGrpc(const grpc::Status& status, const CallFailure& failure) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  const std::string& message = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (!failure.reached) {
        return absl::UnavailableError(Unreachable(failure, ConnectFailureCause(message)));
      }
      // The controller's own UNAVAILABLE (no agent for a cluster) explains itself.
      return absl::UnavailableError(message);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (!failure.reached) {
        return absl::DeadlineExceededError(Unreachable(
            failure, absl::StrCat("no answer within ", absl::FormatDuration(failure.timeout))));
      }
      if (failure.timeout != absl::InfiniteDuration()) {
        return absl::DeadlineExceededError(
            absl::StrCat("evalctl-controller at ", failure.target, " did not answer within ",
                         absl::FormatDuration(failure.timeout), " (deadline exceeded)"));
      }
      return absl::DeadlineExceededError(message);
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::UnimplementedError(
          absl::StrCat("the server at ", failure.target, " does not implement this call (", message,
                       "); is it evalctl-controller, and as new as this client?"));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError(absl::StrCat(
          "evalctl-controller at ", failure.target,
          " rejected the credentials: ", message.empty() ? "no or invalid token" : message));
    default:
      return absl::Status(code, message.empty() ? absl::StrCat("RPC failed with code ",
                                                               absl::StatusCodeToString(code))
                                                : message);
  }
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t hi, lo;
  {
    absl::MutexLock lock(&mu);
    hi = absl::Uniform<uint64_t>(*gen);
    lo = absl::Uniform<uint64_t>(*gen);
  }
  hi = (hi & ~uint64_t{0xf000}) | uint64_t{0x4000};            // version 4
  lo = (lo & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);  // variant 10xx
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff,
                         lo >> 48, lo & 0xffffffffffffULL);
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ClientOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("no evalctl-controller address given");
  }
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("the call timeout must be positive, not ",
                                                   absl::FormatDuration(options.timeout)));
  }
  const TlsOptions& tls = options.tls;
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs its key and a key needs its certificate; give both or neither");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (tls.ca_file.empty() && tls.cert_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!tls.ca_file.empty()) {
      absl::StatusOr<std::string> ca = ReadPemFile(tls.ca_file, "CA certificate");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *std::move(ca);
    }
    if (!tls.cert_file.empty()) {
      absl::StatusOr<std::string> cert = ReadPemFile(tls.cert_file, "client certificate");
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = ReadPemFile(tls.key_file, "client key");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *std::move(cert);
      ssl.pem_private_key = *std::move(key);
    }
    credentials = grpc::SslCredentials(ssl);
  }

  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("evalctl-client/0.1.0");
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.target, credentials, args);
  return std::unique_ptr<Client>(new Client(options, std::move(channel)));
}

Client::Client(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::EvalService::NewStub(channel_)),
      admin_stub_(v1::AdminService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Client::NewContext(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  if (timeout != absl::InfiniteDuration()) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  if (!options_.token.empty()) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  } else {
    // Without a token, a loopback-only insecure controller takes the caller's name from here.
    static const std::string* user = [] {
      const passwd* pw = ::getpwuid(::getuid());
      return new std::string(pw != nullptr && pw->pw_name != nullptr ? pw->pw_name : "anonymous");
    }();
    context->AddMetadata("x-evalctl-user", *user);
  }
  return context;
}

absl::Duration Client::UnaryTimeout(const CallOptions& call) const {
  return call.timeout.value_or(options_.timeout);
}

absl::Status Client::Failed(const grpc::Status& status, absl::Duration timeout) const {
  CallFailure failure{.target = options_.target,
                      .timeout = timeout,
                      .reached = channel_->GetState(false) == GRPC_CHANNEL_READY,
                      .unreachable_hint = options_.unreachable_hint};
  return StatusFromGrpc(status, failure);
}

absl::Status Client::WaitForConnection() const {
  const absl::Time deadline = absl::Now() + options_.timeout;
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  // TRANSIENT_FAILURE: the call that follows fails at once and carries gRPC's reason.
  while (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_TRANSIENT_FAILURE &&
         state != GRPC_CHANNEL_SHUTDOWN) {
    if (!channel_->WaitForStateChange(state, absl::ToChronoTime(deadline))) {
      return absl::UnavailableError(Unreachable(
          {.target = options_.target, .unreachable_hint = options_.unreachable_hint},
          absl::StrCat("no connection within ", absl::FormatDuration(options_.timeout))));
    }
    state = channel_->GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> Client::Unary(Stub& stub,
                                       grpc::Status (Stub::*method)(grpc::ClientContext*,
                                                                    const Request&, Response*),
                                       const Request& request, const CallOptions& call) {
  const absl::Duration timeout = UnaryTimeout(call);
  std::unique_ptr<grpc::ClientContext> context = NewContext(timeout);
  Response response;
  grpc::Status status = (stub.*method)(context.get(), request, &response);
  if (!status.ok()) return Failed(status, timeout);
  return response;
}

template <typename Request, typename Response, typename Method>
absl::StatusOr<std::unique_ptr<StreamReader<Response>>> Client::ServerStream(
    Method method, const Request& request, const CallOptions& call) {
  if (absl::Status s = WaitForConnection(); !s.ok()) return s;
  const absl::Duration timeout = call.timeout.value_or(absl::InfiniteDuration());
  std::unique_ptr<grpc::ClientContext> context = NewContext(timeout);
  std::unique_ptr<grpc::ClientReaderInterface<Response>> reader =
      (stub_.get()->*method)(context.get(), request);
  CallFailure failure{
      .target = options_.target, .timeout = timeout, .unreachable_hint = options_.unreachable_hint};
  return std::unique_ptr<StreamReader<Response>>(new StreamReader<Response>(
      channel_, std::move(context), std::move(reader), std::move(failure)));
}

absl::StatusOr<v1::PlanInvocationResponse> Client::PlanInvocation(
    const v1::PlanInvocationRequest& request, const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::PlanInvocation, request, call);
}

absl::StatusOr<v1::SubmitInvocationResponse> Client::SubmitInvocation(
    v1::SubmitInvocationRequest request, const CallOptions& call) {
  if (request.request_id().empty()) request.set_request_id(NewRequestId());
  return Unary(*stub_, &v1::EvalService::Stub::SubmitInvocation, request, call);
}

absl::StatusOr<v1::Invocation> Client::GetInvocation(const v1::GetInvocationRequest& request,
                                                     const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::GetInvocation,
                                                         request, call);
}

absl::StatusOr<v1::Task> Client::GetTask(const v1::GetTaskRequest& request,
                                         const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::GetTask, request, call);
}

absl::StatusOr<v1::ListInvocationsResponse> Client::ListInvocations(
    const v1::ListInvocationsRequest& request, const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::ListInvocations, request, call);
}

absl::StatusOr<v1::CancelInvocationResponse> Client::CancelInvocation(
    const v1::CancelInvocationRequest& request, const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::CancelInvocation, request, call);
}

absl::StatusOr<v1::ResumeInvocationResponse> Client::ResumeInvocation(
    const v1::ResumeInvocationRequest& request, const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::ResumeInvocation, request, call);
}

absl::StatusOr<v1::GetResultsResponse> Client::GetResults(const v1::GetResultsRequest& request,
                                                          const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::GetResults,
                                                              request, call);
}

absl::StatusOr<v1::ListClustersResponse> Client::ListClusters(
    const v1::ListClustersRequest& request, const CallOptions& call) {
  return Unary(*stub_, &v1::EvalService::Stub::ListClusters, request, call);
}

absl::StatusOr<std::unique_ptr<WatchStream>> Client::WatchInvocation(
    const v1::WatchInvocationRequest& request, const CallOptions& call) {
  return ServerStream<v1::WatchInvocationRequest, v1::WatchInvocationResponse>(
      &v1::EvalService::Stub::WatchInvocation, request, call);
}

absl::StatusOr<std::unique_ptr<LogStream>> Client::StreamLogs(const v1::StreamLogsRequest& request,
                                                              const CallOptions& call) {
  return ServerStream<v1::StreamLogsRequest, v1::StreamLogsResponse>(
      &v1::EvalService::Stub::StreamLogs, request, call);
}

absl::StatusOr<v1::CreateTokenResponse> Client::CreateToken(const v1::CreateTokenRequest& request,
                                                            const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::CreateToken, request, call);
}

absl::StatusOr<v1::RevokeTokenResponse> Client::RevokeToken(const v1::RevokeTokenRequest& request,
                                                            const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::RevokeToken, request, call);
}

absl::StatusOr<v1::ListTokensResponse> Client::ListTokens(const v1::ListTokensRequest& request,
                                                          const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::ListTokens, request, call);
}

absl::StatusOr<v1::CreateEnrollmentTokenResponse> Client::CreateEnrollmentToken(
    const v1::CreateEnrollmentTokenRequest& request, const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::CreateEnrollmentToken, request, call);
}

absl::StatusOr<v1::RunAsGrant> Client::GrantRunAs(const v1::GrantRunAsRequest& request,
                                                  const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::GrantRunAs, request, call);
}

absl::StatusOr<v1::RunAsGrant> Client::RevokeRunAs(const v1::RevokeRunAsRequest& request,
                                                   const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::RevokeRunAs, request, call);
}

absl::StatusOr<v1::ListRunAsGrantsResponse> Client::ListRunAsGrants(
    const v1::ListRunAsGrantsRequest& request, const CallOptions& call) {
  return Unary(*admin_stub_, &v1::AdminService::Stub::ListRunAsGrants, request, call);
}

}  // namespace evalctl::client

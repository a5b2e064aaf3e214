// Component tests of evalctl::client::Client against the in-process fake EvalService.
#include "clients/cpp/client.h"

#include <regex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "clients/cpp/testing/fake_eval_service.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace evalctl::client {
namespace {

using ::testing::ElementsAre;
using testing::FakeEvalServer;
using ::testing::HasSubstr;
using testing::MakeInvocation;
using testing::MakeTask;

constexpr char kInv[] = "3f2a9c01d4e5b677";

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.service().AddInvocation(
        MakeInvocation(kInv, absl::FromUnixSeconds(1'800'000'000),
                       {MakeTask(kInv, 0, "hellaswag", v1::TASK_STATE_RUNNING)}));
  }

  std::unique_ptr<Client> Connect(ClientOptions options = {}) {
    if (options.target.empty()) options.target = server_.address();
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  FakeEvalServer server_;
};

TEST_F(ClientTest, UnaryCallPassesThePrefixAndTheToken) {
  std::unique_ptr<Client> client = Connect({.token = "s3cret"});
  v1::GetInvocationRequest request;
  request.set_id("3F2A");
  absl::StatusOr<v1::Invocation> inv = client->GetInvocation(request);
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->id(), kInv);
  EXPECT_THAT(server_.service().received_ids(), ElementsAre("3F2A"));
  EXPECT_THAT(server_.service().authorizations(), ElementsAre("Bearer s3cret"));
}

TEST_F(ClientTest, NoTokenSendsNoAuthorization) {
  std::unique_ptr<Client> client = Connect();
  ASSERT_TRUE(client->ListClusters().ok());
  EXPECT_THAT(server_.service().authorizations(), ElementsAre(""));
}

TEST_F(ClientTest, ControllerErrorsKeepCodeAndMessage) {
  std::unique_ptr<Client> client = Connect();
  v1::GetTaskRequest request;
  request.set_id("ffff.0");
  absl::StatusOr<v1::Task> task = client->GetTask(request);
  EXPECT_EQ(task.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(task.status().message(), "no invocation matches \"ffff.0\"");
}

TEST_F(ClientTest, UnreachableControllerFailsFastWithAClearMessage) {
  const std::string target = absl::StrCat("127.0.0.1:", testing::ClosedLoopbackPort());
  std::unique_ptr<Client> client =
      Connect({.target = target, .timeout = absl::Seconds(5), .unreachable_hint = "start it"});
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::ListClustersResponse> response = client->ListClusters();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(response.status().message(), absl::StrCat("cannot reach evalctl-controller at ", target,
                                                      " (connection refused); start it"));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(ClientTest, UnreachableControllerFailsAStreamToo) {
  const std::string target = absl::StrCat("127.0.0.1:", testing::ClosedLoopbackPort());
  std::unique_ptr<Client> client = Connect({.target = target, .timeout = absl::Seconds(5)});
  const absl::Time start = absl::Now();
  v1::WatchInvocationRequest request;
  request.set_id(kInv);
  absl::StatusOr<std::unique_ptr<WatchStream>> stream = client->WatchInvocation(request);
  absl::Status status = stream.status();
  if (stream.ok()) {
    v1::WatchInvocationResponse response;
    EXPECT_FALSE((*stream)->Next(&response));
    status = (*stream)->Finish();
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("cannot reach evalctl-controller at ",
                                                       target, " (connection refused)")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(ClientTest, ExpiredDeadlineSaysHowLongItWaited) {
  server_.service().SetUnaryDelay(absl::Seconds(5));
  std::unique_ptr<Client> client = Connect({.timeout = absl::Milliseconds(300)});
  v1::GetInvocationRequest request;
  request.set_id("3f2a");
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::Invocation> inv = client->GetInvocation(request);
  EXPECT_EQ(inv.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(inv.status().message(),
            absl::StrCat("evalctl-controller at ", server_.address(),
                         " did not answer within 300ms (deadline exceeded)"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(ClientTest, PerCallTimeoutOverridesTheDefault) {
  server_.service().SetUnaryDelay(absl::Seconds(5));
  std::unique_ptr<Client> client = Connect({.timeout = absl::Seconds(30)});
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::ListClustersResponse> r =
      client->ListClusters({}, {.timeout = absl::Milliseconds(200)});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(ClientTest, SubmitFillsARequestIdAndIsIdempotent) {
  server_.service().SetNextSubmission(
      MakeInvocation("aaaabbbbccccdddd", absl::FromUnixSeconds(1'800'000'100),
                     {MakeTask("aaaabbbbccccdddd", 0, "gsm8k", v1::TASK_STATE_PENDING)}),
      {});
  std::unique_ptr<Client> client = Connect();
  absl::StatusOr<v1::SubmitInvocationResponse> first = client->SubmitInvocation({});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->duplicate());
  const std::string id = server_.service().submissions().at(0).request_id();
  EXPECT_TRUE(std::regex_match(
      id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << id;

  v1::SubmitInvocationRequest again;
  again.set_request_id(id);
  absl::StatusOr<v1::SubmitInvocationResponse> second = client->SubmitInvocation(again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->duplicate());
  EXPECT_EQ(second->invocation().id(), "aaaabbbbccccdddd");
}

TEST_F(ClientTest, WatchStreamCanBeCancelledFromAnotherThread) {
  std::unique_ptr<Client> client = Connect();
  v1::WatchInvocationRequest request;
  request.set_id(kInv);  // never finishes: the task stays running
  absl::StatusOr<std::unique_ptr<WatchStream>> stream = client->WatchInvocation(request);
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(200));
    (*stream)->Cancel();
  });
  v1::WatchInvocationResponse response;
  EXPECT_FALSE((*stream)->Next(&response));
  canceller.join();
  EXPECT_EQ((*stream)->Finish().code(), absl::StatusCode::kCancelled);
}

TEST_F(ClientTest, LogStreamDeliversBytesInOrder) {
  server_.service().SetLog(absl::StrCat(kInv, ".0"), v1::LOG_KIND_EVAL,
                           {"one\n", std::string("\0\xff", 2)});
  std::unique_ptr<Client> client = Connect();
  v1::StreamLogsRequest request;
  request.set_id(absl::StrCat(kInv, ".0"));
  request.set_kind(v1::LOG_KIND_EVAL);
  absl::StatusOr<std::unique_ptr<LogStream>> stream = client->StreamLogs(request);
  ASSERT_TRUE(stream.ok()) << stream.status();
  std::string data;
  v1::StreamLogsResponse chunk;
  while ((*stream)->Next(&chunk)) data += chunk.data();
  EXPECT_TRUE((*stream)->Finish().ok());
  EXPECT_EQ(data, std::string("one\n\0\xff", 6));
}

TEST(ClientConnectTest, RejectsUnusableOptions) {
  EXPECT_EQ(Client::Connect({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Client::Connect({.target = "x:1", .tls = {.cert_file = "/c.pem"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status missing =
      Client::Connect({.target = "x:1", .tls = {.ca_file = "/nonexistent/ca.pem"}}).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "CA certificate /nonexistent/ca.pem: no such file");
  EXPECT_EQ(Client::Connect({.target = "x:1", .timeout = absl::ZeroDuration()}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StatusFromGrpcTest, KeepsCodesAndExplainsTransportFailures) {
  EXPECT_TRUE(StatusFromGrpc(grpc::Status::OK).ok());
  absl::Status not_found =
      StatusFromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, "no invocation matches \"ab\""));
  EXPECT_EQ(not_found.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(not_found.message(), "no invocation matches \"ab\"");

  const CallFailure unreached{.target = "ctl:50051",
                              .timeout = absl::Seconds(10),
                              .reached = false,
                              .unreachable_hint = "start it"};
  absl::Status dns = StatusFromGrpc(
      grpc::Status(grpc::StatusCode::UNAVAILABLE,
                   "DNS resolution failed for ctl:50051: C-ares status is not ARES_SUCCESS"),
      unreached);
  EXPECT_EQ(
      dns.message(),
      "cannot reach evalctl-controller at ctl:50051 (cannot resolve the host name); start it");
  absl::Status tls = StatusFromGrpc(
      grpc::Status(grpc::StatusCode::UNAVAILABLE,
                   "failed to connect to all addresses; last error: UNKNOWN: ipv4:1.2.3.4:50051: "
                   "Ssl handshake failed: SSL_ERROR_SSL: error:1000007d:SSL "
                   "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"),
      unreached);
  EXPECT_THAT(tls.message(), HasSubstr("TLS handshake failed: the controller's certificate is not "
                                       "signed by the given CA"));
  // The wording of OpenSSL 3, which Debian's gRPC uses.
  absl::Status plain = StatusFromGrpc(
      grpc::Status(grpc::StatusCode::UNAVAILABLE,
                   "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4: Ssl "
                   "handshake failed: SSL_ERROR_SSL: error:0A00010B:SSL routines::wrong version "
                   "number"),
      unreached);
  EXPECT_EQ(plain.message(),
            "cannot reach evalctl-controller at ctl:50051 (TLS handshake failed: the controller "
            "does not speak TLS); start it");
  absl::Status silent = StatusFromGrpc(
      grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"), unreached);
  EXPECT_EQ(silent.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(silent.message(),
            "cannot reach evalctl-controller at ctl:50051 (no answer within 10s); start it");

  // The controller's own UNAVAILABLE (no agent for a cluster) is kept as it is.
  CallFailure reached = unreached;
  reached.reached = true;
  absl::Status no_agent = StatusFromGrpc(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "no agent serves cluster \"eos\""), reached);
  EXPECT_EQ(no_agent.message(), "no agent serves cluster \"eos\"");
  absl::Status auth =
      StatusFromGrpc(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token"), reached);
  EXPECT_EQ(auth.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth.message(),
            "evalctl-controller at ctl:50051 rejected the credentials: invalid token");
  absl::Status unimplemented =
      StatusFromGrpc(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Method not found!"), reached);
  EXPECT_EQ(unimplemented.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(unimplemented.message(),
            "the server at ctl:50051 does not implement this call (Method not found!); is it "
            "evalctl-controller, and as new as this client?");
}

TEST(NewRequestIdTest, IsAFreshUuid) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewRequestId();
    EXPECT_TRUE(std::regex_match(
        id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
        << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
}  // namespace evalctl::client

// The real evalctl-controller (--insecure on 127.0.0.1, no agent, no Slurm) answers gRPC health
// checks (grpc.health.v1.Health/Check: SERVING for the server and for each of its services, while
// it runs) and server reflection (grpc.reflection.v1alpha: it lists evalctl.v1.EvalService,
// AgentService and AdminService, and serves their descriptors, which is what grpcurl and
// grpc_cli need).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/e2e/harness.h"

namespace evalctl::e2e {
namespace {

using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::grpc::reflection::v1alpha::ServerReflectionRequest;
using ::grpc::reflection::v1alpha::ServerReflectionResponse;
using ::testing::IsSupersetOf;

class HealthReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    E2E_ASSERT_OK(env_.StartController());
    channel_ = grpc::CreateChannel(env_.controller_address(), grpc::InsecureChannelCredentials());
    ASSERT_TRUE(
        channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
  }

  grpc::Status Check(const std::string& service, HealthCheckResponse* out) {
    auto stub = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    HealthCheckRequest req;
    req.set_service(service);
    return stub->Check(&ctx, req, out);
  }

  // One request on a reflection stream, and its answer.
  ServerReflectionResponse Reflect(const ServerReflectionRequest& request) {
    auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->ServerReflectionInfo(&ctx);
    ServerReflectionResponse response;
    EXPECT_TRUE(stream->Write(request));
    EXPECT_TRUE(stream->WritesDone());
    EXPECT_TRUE(stream->Read(&response));
    grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  E2eEnv env_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(HealthReflectionTest, HealthCheckAnswersServingForTheServerAndEachService) {
  for (const std::string service :
       {"", "evalctl.v1.EvalService", "evalctl.v1.AgentService", "evalctl.v1.AdminService"}) {
    HealthCheckResponse response;
    grpc::Status status = Check(service, &response);
    ASSERT_TRUE(status.ok()) << "\"" << service << "\": " << status.error_message();
    EXPECT_EQ(response.status(), HealthCheckResponse::SERVING) << "\"" << service << "\"";
  }
  // A service the controller does not have is NOT_FOUND, as the protocol says.
  HealthCheckResponse response;
  EXPECT_EQ(Check("evalctl.v1.NoSuchService", &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(HealthReflectionTest, ReflectionListsTheServicesAndServesTheirDescriptors) {
  ServerReflectionRequest list;
  list.set_list_services("");
  ServerReflectionResponse listed = Reflect(list);
  ASSERT_TRUE(listed.has_list_services_response()) << listed.DebugString();
  std::set<std::string> names;
  for (const auto& s : listed.list_services_response().service()) names.insert(s.name());
  EXPECT_THAT(names, IsSupersetOf({"evalctl.v1.EvalService", "evalctl.v1.AgentService",
                                   "evalctl.v1.AdminService", "grpc.health.v1.Health"}));

  // The file that defines EvalService, with its methods (what grpcurl describes).
  ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("evalctl.v1.EvalService");
  ServerReflectionResponse described = Reflect(symbol);
  ASSERT_TRUE(described.has_file_descriptor_response()) << described.DebugString();
  bool found = false;
  for (const std::string& bytes : described.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    for (const auto& service : file.service()) {
      if (file.package() != "evalctl.v1" || service.name() != "EvalService") continue;
      found = true;
      std::set<std::string> methods;
      for (const auto& m : service.method()) methods.insert(m.name());
      EXPECT_THAT(methods, IsSupersetOf({"SubmitInvocation", "WatchInvocation", "StreamLogs"}));
    }
  }
  EXPECT_TRUE(found) << "no descriptor of evalctl.v1.EvalService in the answer";
}

}  // namespace
}  // namespace evalctl::e2e

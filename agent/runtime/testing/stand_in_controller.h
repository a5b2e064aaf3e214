// StandInController: the controller's end of the agent stream, for tests and benchmarks that run
// a real AgentRuntime over gRPC without a controller. It registers the agent, sends commands,
// keeps their results, acknowledges events and notes when each task event and heartbeat arrived,
// by its clock (real time unless given one: the agent's FakeClock, in tests on one).
//
//   StandInController controller;
//   builder.RegisterService(&controller);          // a grpc::ServerBuilder on 127.0.0.1:0
//   ... start the agent against it ...
//   controller.WaitConnected(absl::Seconds(30));
//   controller.WaitResults(controller.Send({submit}), absl::Seconds(30), &results);
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "evalctl/v1/agent_service.grpc.pb.h"

namespace evalctl::agent {

class StandInController final : public v1::AgentService::Service {
 public:
  struct Arrival {
    absl::Time at;
    v1::TaskEvent event;
  };

  // `clock` (not owned) stamps the arrivals; null: real time.
  explicit StandInController(Clock* clock = nullptr)
      : clock_(clock != nullptr ? clock : &real_clock_) {}

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) override;

  // Whether an agent is connected within `timeout`.
  bool WaitConnected(absl::Duration timeout);

  // Sends the commands back to back with fresh ids and returns the ids. A command that cannot be
  // written (no agent connected) never gets a result.
  std::vector<uint64_t> Send(const std::vector<v1::Command>& commands);

  // Waits for the results of these commands, in order; false after `timeout`.
  bool WaitResults(const std::vector<uint64_t>& ids, absl::Duration timeout,
                   std::vector<v1::CommandResult>* out);

  // When the last of these tasks was first reported in `state` (InfiniteFuture until all were).
  absl::Time AllReached(const std::vector<std::string>& task_ids, v1::TaskState state);

  // Every task event so far, in order of arrival.
  std::vector<Arrival> arrivals();

  // When each heartbeat arrived.
  std::vector<absl::Time> heartbeats();

 private:
  RealClock real_clock_;
  Clock* const clock_;
  absl::Mutex mu_;
  grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream_ ABSL_GUARDED_BY(mu_) =
      nullptr;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, v1::CommandResult> results_ ABSL_GUARDED_BY(mu_);
  std::vector<Arrival> arrivals_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> heartbeats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace evalctl::agent

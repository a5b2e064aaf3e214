#include "agent/runtime/testing/stand_in_controller.h"

#include <algorithm>

#include "common/testing/wait_for.h"

namespace evalctl::agent {

grpc::Status StandInController::Connect(
    grpc::ServerContext*, grpc::ServerReaderWriter<v1::ControllerMessage, v1::AgentMessage>* stream) {
  v1::AgentMessage in;
  if (!stream->Read(&in) || !in.has_register_()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "Register first");
  }
  {
    absl::MutexLock lock(&mu_);
    v1::ControllerMessage reply;
    reply.mutable_registered()->set_last_applied_sequence(applied_);
    reply.mutable_registered()->set_heartbeat_interval_seconds(15);
    stream->Write(reply);
    stream_ = stream;
  }
  while (stream->Read(&in)) {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&mu_);
    if (in.has_heartbeat()) heartbeats_.push_back(now);
    if (in.has_command_result()) {
      results_[in.command_result().command_id()] = in.command_result();
      continue;
    }
    if (!in.has_events()) continue;
    for (const v1::AgentEvent& e : in.events().events()) {
      if (e.sequence() <= applied_) continue;
      applied_ = e.sequence();
      if (e.has_task()) arrivals_.push_back({now, e.task()});
    }
    v1::ControllerMessage ack;
    ack.mutable_events_ack()->set_sequence(applied_);
    stream->Write(ack);
  }
  absl::MutexLock lock(&mu_);
  stream_ = nullptr;
  return grpc::Status::OK;
}

bool StandInController::WaitConnected(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](StandInController* c) {
            c->mu_.AssertHeld();  // conditions run under the mutex
            return c->stream_ != nullptr;
          },
          this),
      timeout);
}

std::vector<uint64_t> StandInController::Send(const std::vector<v1::Command>& commands) {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> ids;
  for (const v1::Command& command : commands) {
    v1::ControllerMessage msg;
    *msg.mutable_command() = command;
    msg.mutable_command()->set_command_id(++next_id_);
    ids.push_back(next_id_);
    if (stream_ != nullptr) stream_->Write(msg);
  }
  return ids;
}

bool StandInController::WaitResults(const std::vector<uint64_t>& ids, absl::Duration timeout,
                                    std::vector<v1::CommandResult>* out) {
  return testing::WaitFor(
      [&] {
        absl::MutexLock lock(&mu_);
        out->clear();
        for (uint64_t id : ids) {
          auto it = results_.find(id);
          if (it == results_.end()) break;
          out->push_back(it->second);
        }
        return out->size() == ids.size();
      },
      timeout);
}

absl::Time StandInController::AllReached(const std::vector<std::string>& task_ids,
                                         v1::TaskState state) {
  absl::MutexLock lock(&mu_);
  absl::Time last = absl::InfinitePast();
  for (const std::string& id : task_ids) {
    absl::Time first = absl::InfiniteFuture();
    for (const Arrival& a : arrivals_) {
      if (a.event.task_id() == id && a.event.state() == state) {
        first = a.at;
        break;
      }
    }
    last = std::max(last, first);
  }
  return last;
}

std::vector<StandInController::Arrival> StandInController::arrivals() {
  absl::MutexLock lock(&mu_);
  return arrivals_;
}

std::vector<absl::Time> StandInController::heartbeats() {
  absl::MutexLock lock(&mu_);
  return heartbeats_;
}

}  // namespace evalctl::agent

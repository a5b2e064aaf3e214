// EventIngest: applies what agents report to the store. An agent's events come in batches with
// increasing sequence numbers; a batch is applied in one store transaction together with the
// agent's new acknowledged sequence, so a replayed or reordered event is never applied twice.
// Events only ever change a task's status (state, phase, attempts, results), never its job.
//
// Thread-safe: `mu_` serialises batches (one applier at a time) and is taken before the
// registry's lock, never after.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "controller/core/agent_registry.h"
#include "controller/core/core_metrics.h"
#include "controller/core/store.h"
#include "controller/core/watch_hub.h"
#include "evalctl/v1/agent_service.pb.h"

namespace evalctl::controller {

class EventIngest {
 public:
  EventIngest(Store* store, Clock* clock, CoreMetrics* metrics, AgentRegistry* agents,
              WatchHub* watchers)
      : store_(store), clock_(clock), metrics_(metrics), agents_(agents), watchers_(watchers) {}

  // Applies the events the agent has not had applied; returns the sequence to acknowledge.
  // Events about tasks the agent was not given are ignored (and logged).
  absl::StatusOr<uint64_t> Apply(const std::string& agent_id, const v1::Events& events);

 private:
  Store* const store_;
  Clock* const clock_;
  CoreMetrics* const metrics_;
  AgentRegistry* const agents_;
  WatchHub* const watchers_;
  absl::Mutex mu_;
};

// Applies an agent's snapshot event to the stored task (state, phase, progress, attempt, ...).
void ApplyEventToTask(const v1::TaskEvent& event, v1::Task& task);

}  // namespace evalctl::controller

// AgentRuntime: the evalctl-agent process around its core. Three threads:
//   - the core loop owns the TaskManager: it executes the controller's commands in order and runs
//     tracking cycles on an adaptive interval (fast after a change, backing off to max_interval,
//     and brought forward when a job writes its phase file);
//   - the stream dials out to the controller, registers, and reads commands and acknowledgements;
//     it reconnects with jittered exponential backoff (1 s → 60 s) and never stops the core;
//   - the sender replays the journal's outbox from what the controller last applied, then sends
//     new events as they are committed, and heartbeats when idle.
// Log reads (which may wait for a file to grow) run on a small pool of their own. Every
// schedule (tracking interval, phase checks, cancel gathering, heartbeats, reconnect backoff, log
// read waits) is on the injected Clock: tests run the runtime on a FakeClock.
//
//   AgentRuntime runtime(options, &slurm, journal.get(), &clock, &metrics);  // metrics optional
//   runtime.Run(&stop_flag);   // until stop_flag is set
//
// Thread-safe for Run, CheckHealth and RefreshMetrics; everything else is internal.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/core/journal.h"
#include "agent/core/task_manager.h"
#include "agent/runtime/metrics.h"
#include "agent/slurm/slurm_client.h"
#include "common/clock.h"
#include "common/thread_pool.h"
#include "evalctl/v1/agent_service.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace evalctl::agent {

struct AgentOptions {
  std::string controller = "127.0.0.1:50051";
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // A file with a one-time enrollment token. While it exists the agent presents it; once the
  // controller has issued the agent's own credential (kept in the journal's secret store), the
  // file is deleted and the credential is presented from then on.
  std::string token_file;
  std::string cluster;
  std::vector<std::string> aliases;
  std::string unix_user;
  std::string version = "0.1.0";
  std::vector<std::string> capabilities = {"runtime:none", "runtime:pyxis"};
  absl::Duration min_interval = absl::Seconds(1);
  absl::Duration max_interval = absl::Seconds(30);
  // How often, between tracking cycles, the jobs' phase files (up to 1,000 of them, in turn) are
  // checked for a job that started, moved on or finished (TaskManager::PhaseFilesChanged); one
  // brings the next cycle forward. Zero: never (a change then waits for the backed-off interval).
  absl::Duration phase_check_interval = absl::Seconds(1);
  absl::Duration min_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(60);
  int events_per_message = 500;
  TaskManagerOptions task_manager;
};

class AgentRuntime {
 public:
  // `metrics` (optional, not owned) gets the runtime's and the TaskManager's metrics.
  AgentRuntime(AgentOptions options, SlurmClient* slurm, Journal* journal, Clock* clock,
               AgentMetrics* metrics = nullptr);
  ~AgentRuntime();

  // Recovers the journal, then serves until `stop` becomes true.
  absl::Status Run(const std::atomic<bool>* stop);

  // Healthy: the stream to the controller is registered and Slurm answered in the last tracking
  // cycle. `reason` says why not, in one line.
  struct Health {
    bool ok = false;
    std::string reason;
  };
  Health CheckHealth();

  // Sets the gauges that are read on demand (outbox, Slurm outage, tasks by state); for scrapes.
  void RefreshMetrics();

 private:
  void CoreLoop(const std::atomic<bool>* stop);
  void StreamLoop(const std::atomic<bool>* stop);
  void SenderLoop(const std::atomic<bool>* stop);
  void Execute(const v1::Command& command);
  // Writes one message on the current stream; false when there is none or it broke.
  bool Write(const v1::AgentMessage& message);
  void Reply(uint64_t command_id, const absl::Status& status, v1::CommandResult result = {});
  void WakeSender();
  // Waits on the clock until `until`; false, at once, when the runtime is stopping.
  bool Pause(absl::Time until);
  // The token to present on the next stream: the enrollment token file's, else the stored
  // credential, else none (the insecure mode). Stream thread only.
  std::string BearerToken();
  void StoreCredential(const std::string& credential);

  AgentOptions options_;
  Journal* journal_;
  Clock* clock_;
  AgentMetrics* metrics_;
  TaskManager tasks_;
  ThreadPool log_pool_{4, "agent-logs"};

  // Commands from the controller, executed by the core loop in order.
  absl::Mutex commands_mu_;
  std::deque<v1::Command> commands_ ABSL_GUARDED_BY(commands_mu_);

  // The current stream: writers hold write_mu_; its context (to cancel it) is under stream_mu_.
  absl::Mutex write_mu_;
  absl::Mutex stream_mu_ ABSL_ACQUIRED_AFTER(write_mu_);
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(stream_mu_);
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::ControllerMessage>> stream_
      ABSL_GUARDED_BY(write_mu_);
  // Stream thread only: whether the last stream presented the token file, and whether to stop
  // doing so (the controller refused it).
  bool presented_token_file_ = false;
  bool skip_token_file_ = false;

  // Set once Run has seen `stop`: ends the waits of Pause.
  absl::Mutex stop_mu_;
  bool stopping_ ABSL_GUARDED_BY(stop_mu_) = false;

  // Sender state.
  absl::Mutex sender_mu_;
  bool connected_ ABSL_GUARDED_BY(sender_mu_) = false;
  uint64_t sent_up_to_ ABSL_GUARDED_BY(sender_mu_) = 0;
  bool wake_ ABSL_GUARDED_BY(sender_mu_) = false;
  int heartbeat_seconds_ ABSL_GUARDED_BY(sender_mu_) = 15;

  std::atomic<int> tracked_jobs_{0};
  bool slurm_reachable_ = true;

  // What the last tracking cycle saw of Slurm, for CheckHealth and the outage gauge.
  absl::Mutex health_mu_;
  absl::Time slurm_down_since_ ABSL_GUARDED_BY(health_mu_) = absl::InfiniteFuture();
  std::string slurm_error_ ABSL_GUARDED_BY(health_mu_);
};

}  // namespace evalctl::agent

#include "clients/ssh/reverse_tunnel.h"

#include <algorithm>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"

namespace evalctl::ssh {

bool IsPermanentSshError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition ||
         status.code() == absl::StatusCode::kPermissionDenied ||
         status.code() == absl::StatusCode::kInvalidArgument;
}

ReverseTunnel::ReverseTunnel(ReverseTunnelOptions options) : options_(std::move(options)) {}

void ReverseTunnel::Event(const std::string& line) const {
  if (options_.on_event) {
    options_.on_event(line);
  } else {
    LOG(INFO) << line;
  }
}

void ReverseTunnel::SleepUnlessStopped(absl::Duration d, const std::atomic<bool>& stop) {
  const absl::Time until = absl::Now() + d;
  while (!stop.load() && absl::Now() < until) {
    absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
  }
}

absl::Status ReverseTunnel::Run(std::unique_ptr<LibsshRemoteHost> connected,
                                const std::atomic<bool>& stop) {
  const std::string where = absl::StrCat(DescribeTarget(options_.ssh), " ",
                                         options_.remote_address, ":", options_.remote_port,
                                         " -> ", options_.target_host, ":", options_.target_port);
  absl::BitGen gen;
  absl::Duration backoff = options_.initial_backoff;
  std::unique_ptr<LibsshRemoteHost> host = std::move(connected);
  while (!stop.load()) {
    absl::Status status;
    if (host == nullptr) {
      absl::StatusOr<std::unique_ptr<LibsshRemoteHost>> h = LibsshRemoteHost::Connect(options_.ssh);
      if (h.ok()) {
        absl::StatusOr<int> port =
            (*h)->ListenForward(options_.remote_address, options_.remote_port);
        if (port.ok()) {
          host = *std::move(h);
        } else {
          status = port.status();
        }
      } else {
        status = h.status();
      }
    }
    if (host != nullptr) {
      established_.fetch_add(1);
      up_.store(true);
      backoff = options_.initial_backoff;
      Event(absl::StrCat("tunnel up: ", where));
      status = host->ServeForwards(options_.target_host, options_.target_port, stop);
      up_.store(false);
      host.reset();
      if (status.ok()) break;  // stopped
    }
    if (IsPermanentSshError(status)) return status;
    // Jitter keeps many tunnels from reconnecting in lockstep after a shared outage.
    const absl::Duration wait = backoff * absl::Uniform(gen, 0.5, 1.0);
    Event(absl::StrCat("tunnel down: ", status.message(), "; reconnecting in ",
                       absl::FormatDuration(absl::Trunc(wait, absl::Milliseconds(100)))));
    SleepUnlessStopped(wait, stop);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  return absl::OkStatus();
}

}  // namespace evalctl::ssh

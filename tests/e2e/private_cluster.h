// A private instance of the local Slurm cluster (deploy/dev/cluster.sh) for tests that disturb
// the cluster itself (slurmdbd stopped, nodes set down), so that the tests running in parallel on
// the shared cluster never see it.
//
//   PrivateCluster cluster(1);            // slot 1: its own state directory and ports
//   E2E_ASSERT_OK(cluster.Start());       // fresh state; SLURM_CONF of this process points at it
//   ... start the controller and the agent (they inherit SLURM_CONF) ...
//   E2E_ASSERT_OK(cluster.Run("stop-slurmdbd"));
//
// Each slot has its state directory /var/tmp/evalctl-e2e-cluster-<slot> and a port range of its
// own; a test holds its slot's lock file for its whole life, so two processes never share one
// (another run of the same test waits). The destructor stops the cluster and checks that no
// daemon is left. Should the test process die before that (a ctest timeout kills it), a guard
// process started with the cluster notices and stops it.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace evalctl::e2e {

class PrivateCluster {
 public:
  // `slot` (1-9) chooses the state directory and ports; `min_job_age` is slurmctld's MinJobAge.
  explicit PrivateCluster(int slot, int min_job_age = 30);
  ~PrivateCluster();
  PrivateCluster(const PrivateCluster&) = delete;
  PrivateCluster& operator=(const PrivateCluster&) = delete;

  // Takes the slot, starts the cluster from a fresh state and points SLURM_CONF at it.
  absl::Status Start();
  // Stops every daemon and restores SLURM_CONF; an error if a daemon is left.
  absl::Status Stop();
  // Runs `cluster.sh <command>` on this instance (e.g. "stop-slurmdbd", "start-slurmdbd").
  absl::Status Run(const std::string& command);

  const std::string& state_dir() const { return state_dir_; }
  std::string slurm_conf() const { return state_dir_ + "/etc/slurm.conf"; }

 private:
  absl::Status TakeSlot();
  absl::Status StartGuard();

  std::string state_dir_;
  std::vector<std::pair<std::string, std::string>> env_;
  int lock_fd_ = -1;
  bool started_ = false;
  bool had_slurm_conf_ = false;
  std::string old_slurm_conf_;
};

}  // namespace evalctl::e2e

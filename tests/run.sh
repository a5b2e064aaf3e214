#!/usr/bin/env bash
# Runs every test of evalctl: installs what is missing, builds, starts the local Slurm cluster,
# runs all ctest tiers (unit, component, slurm, e2e) and stops the cluster again, also on failure.
# Exits non-zero when anything fails.
#
#   ./tests/run.sh                 # everything
#   ./tests/run.sh -L unit         # extra arguments go to ctest
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${EVALCTL_BUILD_DIR:-$root/build}

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
./deploy/install-deps.sh

step "build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j2

step "local Slurm cluster"
started_cluster=0
if ! ./deploy/dev/cluster.sh status >/dev/null 2>&1; then
  started_cluster=1
fi
cleanup() {
  if [ "$started_cluster" = 1 ]; then
    step "stopping the local Slurm cluster"
    ./deploy/dev/cluster.sh stop || true
  fi
}
trap cleanup EXIT
./deploy/dev/cluster.sh start
eval "$(./deploy/dev/cluster.sh env)"

step "tests"
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j4 "$@"

#!/usr/bin/env bash
# Runs every test of evalctl: installs what is missing, builds, starts the local Slurm cluster,
# runs all ctest tiers (unit, component, slurm, e2e) and stops the cluster again, also on failure;
# then builds the libFuzzer targets with clang in <build dir>-fuzz and runs each for 20 s
# (tests/fuzz/run.sh). Exits non-zero when anything fails.
#
#   ./tests/run.sh                 # everything
#   ./tests/run.sh -L unit         # extra arguments go to ctest (and the fuzzers are not run)
#   EVALCTL_FUZZ_SECONDS=0 ./tests/run.sh   # everything but the fuzzers
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${EVALCTL_BUILD_DIR:-$root/build}

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
./deploy/install-deps.sh

step "build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVALCTL_WERROR=ON >/dev/null
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
ctest_log=$build_dir/ctest-output.log
ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j4 "$@" 2>&1 | tee "$ctest_log"

fuzz_seconds=${EVALCTL_FUZZ_SECONDS:-20}
if [ $# -eq 0 ] && [ "$fuzz_seconds" != 0 ]; then
  step "fuzz targets"
  ./tests/fuzz/run.sh "${EVALCTL_FUZZ_BUILD_DIR:-$build_dir-fuzz}" "$fuzz_seconds"
  # ctest's summary again, so that the run ends with it.
  step "ctest summary"
  sed -n '/tests passed, [0-9]* tests failed out of/,$p' "$ctest_log"
fi

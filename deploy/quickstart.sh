#!/usr/bin/env bash
# The quick start: on a fresh Debian 12 machine, as root, installs what evalctl needs, builds it,
# and starts the local Slurm cluster that evaluations run on.
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
./deploy/dev/cluster.sh start
./deploy/dev/cluster.sh status

cat <<TXT

The local Slurm cluster is up. Use its tools with:
  eval "\$(./deploy/dev/cluster.sh env)"; sinfo
Stop it with:
  ./deploy/dev/cluster.sh stop
TXT

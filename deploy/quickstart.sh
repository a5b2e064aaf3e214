#!/usr/bin/env bash
# The quick start: on a fresh Debian 12 machine, as root, installs what evalctl needs, builds it,
# starts the local Slurm cluster, evalctl-controller and one evalctl-agent (insecure mode, loopback
# only), and runs a real evaluation on the cluster:
#
#   ./deploy/quickstart.sh          # install, build, start, run deploy/examples/quickstart.yaml
#   ./deploy/quickstart.sh stop     # stop the agent, the controller and the cluster
#   ./deploy/quickstart.sh stop-services   # stop the agent and the controller only
#
# Running it again reuses what is already running.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build_dir=${EVALCTL_BUILD_DIR:-$root/build}
state=${EVALCTL_QUICKSTART_DIR:-/var/tmp/evalctl-quickstart}
port=${EVALCTL_QUICKSTART_PORT:-50051}
controller="127.0.0.1:${port}"

step() { printf '\n== %s\n' "$*"; }

# stop_pid FILE: TERM the process in FILE (if it is ours and alive), wait up to 10 s, then KILL.
stop_pid() {
  local file=$1 pid
  [[ -f "$file" ]] || return 0
  pid=$(cat "$file")
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

case "${1:-}" in
  stop | stop-services)
    stop_pid "$state/agent.pid"
    stop_pid "$state/controller.pid"
    if [[ "$1" == stop ]]; then ./deploy/dev/cluster.sh stop; fi
    exit 0
    ;;
  "") ;;
  *)
    echo "usage: $0 [stop|stop-services]" >&2
    exit 2
    ;;
esac

step "dependencies"
./deploy/install-deps.sh

step "build ($build_dir)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j2 --target evalctl evalctl-controller evalctl-agent evalctl-runner \
  evalctl-standin
bin_cli="$build_dir/clients/cli/evalctl"
bin_controller="$build_dir/controller/service/evalctl-controller"
bin_agent="$build_dir/agent/runtime/evalctl-agent"
runner_dir="$build_dir/runner"

step "local Slurm cluster"
./deploy/dev/cluster.sh start
eval "$(./deploy/dev/cluster.sh env)"

step "evalctl-controller and evalctl-agent"
mkdir -p "$state"
if alive "$state/controller.pid"; then
  echo "evalctl-controller is running (pid $(cat "$state/controller.pid"))"
else
  setsid "$bin_controller" --insecure --listen "$controller" --state-dir "$state/controller" \
    >>"$state/controller.log" 2>&1 </dev/null &
  echo $! >"$state/controller.pid"
  echo "evalctl-controller started on $controller (log: $state/controller.log)"
fi
if alive "$state/agent.pid"; then
  echo "evalctl-agent is running (pid $(cat "$state/agent.pid"))"
else
  # The jobs inherit the agent's environment (sbatch --export=ALL): evalctl-runner and
  # evalctl-standin must be on their PATH.
  PATH="$runner_dir:$PATH" setsid "$bin_agent" --insecure --controller "$controller" \
    --state-dir "$state/agent" --min-interval 0.5 --max-interval 5 \
    >>"$state/agent.log" 2>&1 </dev/null &
  echo $! >"$state/agent.pid"
  echo "evalctl-agent started (log: $state/agent.log)"
fi
export EVALCTL_CONTROLLER="$controller"
# Wait for the agent's stream (second column of `cluster ls` is the connection state).
agent_up=0
for _ in $(seq 300); do
  if "$bin_cli" cluster ls 2>/dev/null | awk '$2 == "connected" { found = 1 } END { exit !found }'; then
    agent_up=1
    break
  fi
  sleep 0.1
done
"$bin_cli" cluster ls
if [ "$agent_up" != 1 ]; then
  echo "quickstart: evalctl-agent did not connect within 30 s; the end of $state/agent.log:" >&2
  tail -n 20 "$state/agent.log" >&2
  exit 1
fi

step "evalctl run --config deploy/examples/quickstart.yaml --wait"
rc=0
"$bin_cli" run --config deploy/examples/quickstart.yaml --wait || rc=$?

cat <<TXT

Look around (the evalctl binary is $bin_cli):
  export EVALCTL_CONTROLLER=$controller
  evalctl ls runs                      # invocations
  evalctl status <invocation>          # tasks, attempts, Slurm job ids
  evalctl logs <invocation>.0 --which eval
  evalctl results <invocation> --csv
  evalctl info <invocation>            # run directories and log paths
Stop everything:
  ./deploy/quickstart.sh stop
TXT
exit "$rc"

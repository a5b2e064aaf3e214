#!/usr/bin/env bash
# Runs every benchmark in tests/bench and prints one table (Markdown), after the machine it ran on:
# evalctl beside raw Slurm commands and beside a launcher that opens an SSH connection per command.
#
#   tests/bench/run.sh [--quick] [--all] [BUILD_DIR]   (about 16 minutes; --quick about 6)
#
# BUILD_DIR defaults to $EVALCTL_BUILD_DIR, else build-bench, else build; the benchmarks must be
# built there (ninja -C BUILD_DIR benchmarks). Everything but controller_bench needs the local
# Slurm cluster (deploy/dev/cluster.sh start); SLURM_CONF is taken from it when unset.
# --quick: smaller sizes (1 controller invocation, 100 jobs to submit, fewer latency samples),
# and no tracking_cycle_bench --scale (the agent at 10,000 and 100,000 tasks, 1.5-3.5 minutes).
# --all: also event_latency_bench (the agent alone against a stand-in controller, ~3 minutes;
# launcher_bench measures the same path end to end, to `evalctl watch`).
# EVALCTL_BENCH_BASELINE_CLI=PATH: an older `evalctl` whose `status` is timed beside this build's.
# Each benchmark's full output is kept in $EVALCTL_BENCH_OUT (default /var/tmp/evalctl-bench-out).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
quick=0
all=0
build=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --all) all=1 ;;
    -h | --help)
      sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) build=$arg ;;
  esac
done
if [[ -z "$build" ]]; then
  build=${EVALCTL_BUILD_DIR:-}
  [[ -n "$build" ]] || { [[ -d "$root/build-bench" ]] && build=$root/build-bench; } || build=$root/build
fi
bench=$build/tests/bench
for b in tracking_cycle_bench submit_bench event_latency_bench controller_bench launcher_bench; do
  if [[ ! -x "$bench/$b" ]]; then
    echo "run.sh: $bench/$b is missing; build it: ninja -C $build benchmarks" >&2
    exit 2
  fi
done
if [[ -z "${SLURM_CONF:-}" ]] && "$root/deploy/dev/cluster.sh" status >/dev/null 2>&1; then
  eval "$("$root/deploy/dev/cluster.sh" env)"
fi

out=${EVALCTL_BENCH_OUT:-/var/tmp/evalctl-bench-out}
mkdir -p "$out"
rows=$out/rows.tsv
: >"$rows"

# shellcheck disable=SC2054  # the commas are inside the values (--sizes=10,100,1000)
if ((quick)); then
  args_cycle=(--slurm --sizes=10,100,1000)
  args_submit=(--jobs=100 --rounds=1)
  args_latency=(--jobs=6)
  args_controller=(--invocations=1)
  args_launcher=(--sizes=1,10,100 --tracked=200 --quiet-seconds=40 --latency-jobs=4)
else
  args_cycle=(--slurm)
  args_submit=(--rounds=1)
  args_latency=(--jobs=10)
  args_controller=()
  args_launcher=()
fi

# run NAME ARGS...: the output goes to $out/NAME$log_suffix.log.
run() {
  local name=$1
  shift
  local log=$out/$name${log_suffix:-}.log
  echo "--- $name $*" >&2
  local rc=0
  "$bench/$name" "$@" >"$log" 2>&1 || rc=$?
  grep -v '^ROW' "$log" >&2 || true
  grep '^ROW' "$log" | cut -f2- >>"$rows" || true
  if ((rc != 0)); then
    echo "    ($name exited with status $rc; see $log)" >&2
  fi
}

if [[ -n "${EVALCTL_BENCH_BASELINE_CLI:-}" ]]; then
  args_controller+=("--baseline-cli=$EVALCTL_BENCH_BASELINE_CLI")
fi

# controller_bench first: launcher_bench puts its `evalctl status` of 10,000 tasks (a simulated
# agent: the local cluster cannot hold 10,000 jobs) beside the SSH baseline.
run controller_bench "${args_controller[@]}"
status_ms=$(awk -F'\t' '$1 == "ROW" && $3 ~ /^`evalctl status <id>`, 10000 tasks/ {print $4}' "$out/controller_bench.log" | head -1)
if [[ -n "$status_ms" && "$status_ms" != "-" ]]; then
  args_launcher+=("--evalctl-status-10000-ms=$status_ms")
fi
run launcher_bench "${args_launcher[@]}"
run tracking_cycle_bench "${args_cycle[@]}"
run submit_bench "${args_submit[@]}"
if ((all)); then
  run event_latency_bench "${args_latency[@]}"
fi
# The agent's memory and CPU at 10,000 and 100,000 tasks (FakeSlurm, no cluster). Last, because
# it deletes 110,000 run directories at its end, which slows inode creation on ext4 for minutes.
if ((!quick)); then
  log_suffix=-scale run tracking_cycle_bench --scale
fi

mem_gib=$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "Machine: $(nproc) CPUs ($cpu), ${mem_gib} GiB RAM; load average $(cut -d' ' -f1-3 /proc/loadavg);" \
  "$(date -u +%Y-%m-%dT%H:%MZ); evalctl $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
  "$(git -C "$root" diff --quiet 2>/dev/null || echo '(with local changes)')"
echo
echo "| benchmark | figure | evalctl | baseline | ratio | note |"
echo "|---|---|---|---|---|---|"
awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$rows"

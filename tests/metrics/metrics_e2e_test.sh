#!/usr/bin/env bash
# End to end, the monitoring of evalctl: the real evalctl-controller and evalctl-agent with
# --metrics-listen on free loopback ports, two invocations on the real local Slurm cluster
# (deploy/dev/cluster.sh): a small one, and one whose task runs past its one-minute walltime, is
# resumed after Slurm's TIMEOUT and then succeeds (submitted first; it runs while the rest of the
# test does, about 90 s). Then:
#   - both /metrics pass `promtool check metrics`, and their counters moved (submissions by
#     reason, outcomes by reason, tasks by state, queue wait and run time, store commits, Slurm
#     commands, RPCs); the agent's /healthz answers 200;
#   - a real Prometheus scrapes both every second with deploy/prometheus/alerts.yml loaded: its
#     HTTP API answers the expected values, every alert rule evaluates without error, and every
#     query of deploy/grafana/evalctl.json is valid;
#   - after the resume, resumes_total{reason="timeout"} of both binaries is at least 1, in the
#     scrapes and through PromQL, and the controller's tasks-by-state gauge went through running
#     and back to 0;
#   - with the controller gone, the agent's /healthz answers 503 with the reason and its stream
#     gauge drops to 0.
# Everything started here is killed at the end, also on failure; the Slurm jobs of this run (by
# job-name prefix) are cancelled. Fails, never skips, when the cluster is not up.
#
#   tests/metrics/metrics_e2e_test.sh CONTROLLER_BIN AGENT_BIN CLI_BIN
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 CONTROLLER_BIN AGENT_BIN CLI_BIN" >&2
  exit 2
fi
controller_bin=$1
agent_bin=$2
cli_bin=$3
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
promtool=${PROMTOOL:-/usr/bin/promtool}
prometheus=${PROMETHEUS:-/usr/bin/prometheus}

root=$(mktemp -d "${TMPDIR:-/tmp}/evalctl-metrics-e2e.XXXXXX")
mkdir -p "$root/logs"
cluster="metrics-e2e-$$"
account=e2e
subproject="metrics$$"
job_prefix="$account-$subproject."
pids=()
grpc_port='' controller_metrics_port='' agent_metrics_port='' prom_port=''

step() { printf '\n== %s\n' "$*"; }
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # TERM, then KILL after 5 s; `wait` reaps each (our children).
  for pid in "${pids[@]}"; do
    (sleep 5 && kill -KILL "$pid") >/dev/null 2>&1 &
    local watchdog=$!
    wait "$pid" 2>/dev/null || true
    kill "$watchdog" 2>/dev/null || true
  done
  if command -v squeue >/dev/null && [[ -n "${SLURM_CONF:-}" ]]; then
    squeue -h -o '%i %j' 2>/dev/null | awk -v p="$job_prefix" 'index($2, p) == 1 {print $1}' |
      xargs -r scancel 2>/dev/null || true
  fi
  if [[ $rc -eq 0 ]]; then
    rm -rf "$root"
    echo "PASS"
  else
    for log in "$root"/logs/*.log; do
      [[ -f "$log" ]] || continue
      echo "---- last lines of $log" >&2
      tail -n 30 "$log" >&2
    done
    echo "kept $root for a look" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nothing listens on now, not handed out before in this run (in 20000-31999, below the
# kernel's ephemeral range). Sets the variable named $1.
declare -A taken_ports
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    [[ -z "${taken_ports[$p]:-}" ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken_ports[$p]=1
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  fail "no free loopback port found"
}

# wait_until SECONDS WHAT COMMAND...: runs COMMAND every 200 ms until it succeeds.
wait_until() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout}s: $what"
    sleep 0.2
  done
}

# value FILE SERIES: the value of SERIES (exactly as exposed, labels sorted) in a scrape.
value() {
  awk -v s="$2" '$1 == s {print $2; found = 1; exit} END {if (!found) exit 1}' "$1" ||
    fail "$2 is not in $1"
}
# expect FILE SERIES OP NUMBER, e.g. expect agent.prom evalctl_agent_submissions_total -ge 1
expect() {
  local v
  v=$(value "$1" "$2")
  awk -v v="$v" -v op="$3" -v n="$4" 'BEGIN {
    ok = (op == "-ge" && v + 0 >= n) || (op == "-eq" && v + 0 == n)
    exit !ok }' || fail "$(basename "$1"): $2 is $v, expected $3 $4"
  echo "  $2 = $v"
}

http_ok() { curl -sf -o /dev/null "$1"; }

# promql QUERY: the first result's value of an instant query (empty when there is none); fails
# unless Prometheus accepts the query.
promql() {
  local out
  out=$(curl -sf -G --data-urlencode "query=$1" "http://127.0.0.1:$prom_port/api/v1/query") ||
    fail "Prometheus refused the query: $1"
  jq -e '.status == "success"' >/dev/null <<<"$out" || fail "query failed: $1: $out"
  jq -r '.data.result[0].value[1] // empty' <<<"$out"
}
promql_at_least() {
  local v
  v=$(promql "$1")
  [[ -n "$v" ]] && awk -v v="$v" -v n="$2" 'BEGIN {exit !(v + 0 >= n)}'
}

step "local Slurm cluster"
if [[ -z "${SLURM_CONF:-}" ]]; then
  eval "$("$src/deploy/dev/cluster.sh" env)"
fi
ping=$(scontrol ping 2>&1) || true
[[ "$ping" == *UP* ]] ||
  fail "slurmctld does not answer (SLURM_CONF=$SLURM_CONF): $ping. Start the local cluster with deploy/dev/cluster.sh start"
echo "$ping"

step "evalctl-controller and evalctl-agent with --metrics-listen"
free_port grpc_port
free_port controller_metrics_port
free_port agent_metrics_port
free_port prom_port
controller="127.0.0.1:$grpc_port"
"$controller_bin" --insecure --listen "$controller" --state-dir "$root/controller" \
  --metrics-listen "127.0.0.1:$controller_metrics_port" >"$root/logs/controller.log" 2>&1 &
pids+=($!)
wait_until 20 "controller /metrics on 127.0.0.1:$controller_metrics_port" \
  http_ok "http://127.0.0.1:$controller_metrics_port/metrics"
"$agent_bin" --insecure --controller "$controller" --state-dir "$root/agent" \
  --cluster "$cluster" --min-interval 0.5 --max-interval 5 \
  --metrics-listen "127.0.0.1:$agent_metrics_port" >"$root/logs/agent.log" 2>&1 &
pids+=($!)
# 200 means: registered with the controller, and Slurm answered in the last cycle.
wait_until 30 "agent /healthz answering 200" http_ok "http://127.0.0.1:$agent_metrics_port/healthz"
echo "agent /healthz: $(curl -s "http://127.0.0.1:$agent_metrics_port/healthz")"

# run.yaml WALLTIME TASK_NAME COMMAND_FILE: an invocation of one task on the local cluster.
write_config() {
  local out=$1 walltime=$2 name=$3 command=$4
  cat >"$out" <<YAML
defaults:
  - execution: slurm/default
  - deployment: none
  - _self_
execution:
  hostname: "$cluster"
  username: "$(id -un)"
  account: $account
  subproject: "$subproject"
  output_dir: "$root/runs"
  partition: debug
  walltime: "$walltime"
  container_runtime: none
  gres: null
  sbatch_extra_flags:
    exclusive: false
target:
  api_endpoint:
    url: http://127.0.0.1:9/v1/chat/completions
    model_id: metrics-e2e
evaluation:
  tasks:
    - name: $name
      command: |
$(sed 's/^/        /' "$command")
YAML
}
results_line() {
  printf '%s\n' "printf '%s\\n' 'results: {tasks: {$1: {metrics: {accuracy: {scores: {acc: {value: 0.9}}}}}}}' > \"\$EVALCTL_RESULTS_DIR/results.yml\""
}

step "a task that runs past its walltime (resumed after TIMEOUT), alongside the rest"
# The first attempt leaves a marker in the artifacts directory (kept across attempts) and runs
# past its one-minute limit (USR1, sent at once to a one-minute job, is only noted); Slurm ends it
# TIMEOUT after 70-90 s and the agent resumes it; the second attempt finds the marker and ends.
{
  echo 'if [ -e "$EVALCTL_RESULTS_DIR/first_attempt_started" ]; then'
  echo '  echo 1 > "$EVALCTL_RESULTS_DIR/progress"'
  echo "  $(results_line metrics-e2e-timeout)"
  echo '  exit 0'
  echo 'fi'
  echo 'touch "$EVALCTL_RESULTS_DIR/first_attempt_started"'
  echo "trap 'echo \"metrics-e2e: got USR1\"' USR1"
  echo 'while (( SECONDS < 300 )); do sleep 1; done'
  echo 'exit 1'
} >"$root/slow.sh"
write_config "$root/slow.yaml" "00:01:00" metrics-e2e-timeout "$root/slow.sh"
"$cli_bin" --controller "$controller" run --config "$root/slow.yaml" >"$root/logs/cli-slow.log" 2>&1 ||
  fail "evalctl run (the walltime task) failed: $(cat "$root/logs/cli-slow.log")"
slow_id=$(sed -n 's/^Submitted invocation \([0-9a-f]*\):.*/\1/p' "$root/logs/cli-slow.log")
[[ -n "$slow_id" ]] || fail "no invocation id in: $(cat "$root/logs/cli-slow.log")"
echo "invocation $slow_id: one task with walltime 00:01:00"

step "a small invocation on the local cluster"
{
  echo 'echo 1 > "$EVALCTL_RESULTS_DIR/progress"'
  results_line metrics-e2e
} >"$root/quick.sh"
write_config "$root/run.yaml" "00:05:00" metrics-e2e "$root/quick.sh"
timeout 240 "$cli_bin" --controller "$controller" run --config "$root/run.yaml" --wait \
  >"$root/logs/cli.log" 2>&1 || fail "evalctl run --wait failed: $(cat "$root/logs/cli.log")"
tail -n 5 "$root/logs/cli.log"

step "scrapes pass promtool check metrics; counters moved"
# The server records a stream when it is done with it, which may be just after the client saw
# its end: scrape once the watch of `run --wait` is closed.
watch_closed() {
  curl -sf "http://127.0.0.1:$controller_metrics_port/metrics" >"$root/controller.prom" &&
    grep -qx 'evalctl_controller_watchers_open 0' "$root/controller.prom"
}
wait_until 10 "the watch stream of run --wait closed" watch_closed
# The cycle that saw the small task end still counted its job; the next one (0.5 s later) only
# the walltime task's.
agent_tracks_one_job() {
  curl -sf "http://127.0.0.1:$agent_metrics_port/metrics" >"$root/agent.prom" &&
    [[ $(awk '/^evalctl_agent_tracked_jobs\{/ {n += $2} END {print n + 0}' "$root/agent.prom") == 1 ]]
}
wait_until 10 "the agent tracking one job (the walltime task's)" agent_tracks_one_job
for scrape in controller agent; do
  "$promtool" check metrics <"$root/$scrape.prom" ||
    fail "promtool check metrics rejects the $scrape's /metrics ($root/$scrape.prom)"
  echo "$scrape: $(grep -c '^# TYPE' "$root/$scrape.prom") families pass promtool check metrics"
done
c=$root/controller.prom
a=$root/agent.prom
expect "$c" 'evalctl_controller_build_info{version="0.1.0"}' -eq 1
expect "$c" evalctl_controller_invocations_submitted_total -ge 1
expect "$c" evalctl_controller_tasks_submitted_total -ge 1
expect "$c" 'evalctl_controller_tasks_finished_total{reason="completed",state="succeeded"}' -ge 1
expect "$c" 'evalctl_controller_tasks{state="succeeded"}' -ge 1
expect "$c" 'evalctl_controller_tasks{state="failed"}' -eq 0
expect "$c" "evalctl_controller_attempt_queue_wait_seconds_count{cluster=\"$cluster\"}" -ge 1
expect "$c" "evalctl_controller_attempt_run_seconds_count{cluster=\"$cluster\"}" -ge 1
expect "$c" 'evalctl_controller_store_commit_duration_seconds_count{operation="create_invocation"}' -eq 2
expect "$c" 'evalctl_controller_store_commit_duration_seconds_count{operation="apply_agent_events"}' -ge 1
expect "$c" 'evalctl_controller_store_commit_duration_seconds_count{operation="upsert_agent"}' -ge 1
expect "$c" evalctl_controller_watcher_max_lag_events -eq 0
expect "$c" "evalctl_controller_agents_connected{cluster=\"$cluster\"}" -eq 1
expect "$c" evalctl_controller_events_applied_total -ge 3
expect "$c" evalctl_controller_event_apply_duration_seconds_count -ge 1
expect "$c" 'grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitInvocation",grpc_service="evalctl.v1.EvalService"}' -eq 2
expect "$c" 'grpc_server_handled_total{grpc_code="OK",grpc_method="WatchInvocation",grpc_service="evalctl.v1.EvalService"}' -ge 1
expect "$c" 'grpc_server_handling_seconds_count{grpc_method="SubmitInvocation",grpc_service="evalctl.v1.EvalService"}' -eq 2
expect "$c" evalctl_controller_watchers_open -eq 0
expect "$a" 'evalctl_agent_build_info{version="0.1.0"}' -eq 1
expect "$a" 'evalctl_agent_submissions_total{reason="first_attempt"}' -eq 2
expect "$a" 'evalctl_agent_tasks_finished_total{state="succeeded"}' -ge 1
expect "$a" 'evalctl_agent_slurm_commands_total{command="sbatch",outcome="ok"}' -ge 1
expect "$a" 'evalctl_agent_slurm_commands_total{command="squeue",outcome="ok"}' -ge 1
expect "$a" 'evalctl_agent_slurm_command_duration_seconds_count{command="sbatch"}' -ge 1
expect "$a" evalctl_agent_cycle_duration_seconds_count -ge 1
expect "$a" evalctl_agent_stream_connected -eq 1
expect "$a" evalctl_agent_slurm_unreachable_seconds -eq 0
# The walltime task is queued or running: one tracked job (above), in one of four states.
[[ $(grep -c '^evalctl_agent_tracked_jobs{state="\(queued\|running\|ended\|unknown\)"}' "$a") == 4 ]] ||
  fail "evalctl_agent_tracked_jobs has not one series per state: $(grep '^evalctl_agent_tracked_jobs' "$a")"
echo "  evalctl_agent_tracked_jobs: $(grep '^evalctl_agent_tracked_jobs{' "$a" | tr '\n' ' ')"

step "a real Prometheus scrapes both every second"
cat >"$root/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $src/deploy/prometheus/alerts.yml
scrape_configs:
  - job_name: evalctl-controller
    static_configs:
      - targets: ["127.0.0.1:$controller_metrics_port"]
  - job_name: evalctl-agent
    static_configs:
      - targets: ["127.0.0.1:$agent_metrics_port"]
        labels:
          cluster: "$cluster"
YAML
"$promtool" check config "$root/prometheus.yml" >/dev/null
"$prometheus" --config.file="$root/prometheus.yml" --storage.tsdb.path="$root/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" >"$root/logs/prometheus.log" 2>&1 &
pids+=($!)
wait_until 30 "Prometheus ready on 127.0.0.1:$prom_port" http_ok "http://127.0.0.1:$prom_port/-/ready"
wait_until 30 "both targets up" promql_at_least 'count(up == 1)' 2
wait_until 15 "evalctl_controller_tasks_submitted_total >= 1 in Prometheus" \
  promql_at_least 'evalctl_controller_tasks_submitted_total' 1
wait_until 15 "evalctl_agent_stream_connected == 1 in Prometheus" \
  promql_at_least "evalctl_agent_stream_connected{cluster=\"$cluster\"} == 1" 1
wait_until 15 "evalctl_agent_submissions_total >= 2 in Prometheus" \
  promql_at_least 'sum(evalctl_agent_submissions_total)' 2
wait_until 15 "a succeeded outcome in Prometheus" \
  promql_at_least 'sum(evalctl_controller_tasks_finished_total{state="succeeded",reason="completed"})' 1
wait_until 15 "tasks by state in Prometheus" \
  promql_at_least 'evalctl_controller_tasks{state="succeeded"}' 1
wait_until 15 "queue waits in Prometheus" \
  promql_at_least 'sum(evalctl_controller_attempt_queue_wait_seconds_count)' 1
wait_until 15 "store commits in Prometheus" \
  promql_at_least 'sum(evalctl_controller_store_commit_duration_seconds_count)' 1
echo "Prometheus: tasks submitted $(promql 'evalctl_controller_tasks_submitted_total'), agent" \
  "stream connected $(promql 'evalctl_agent_stream_connected'), agent submissions" \
  "$(promql 'sum(evalctl_agent_submissions_total)'), store commits" \
  "$(promql 'sum(evalctl_controller_store_commit_duration_seconds_count)')"

# Every alert rule has been evaluated against the live series, without error.
rules_evaluated() {
  local rules
  rules=$(curl -sf "http://127.0.0.1:$prom_port/api/v1/rules") || return 1
  if jq -e '[.data.groups[].rules[] | select(.health == "err")] | length > 0' >/dev/null <<<"$rules"; then
    fail "alert rules fail to evaluate: $(jq -c '[.data.groups[].rules[] | select(.health == "err") | {name, lastError}]' <<<"$rules")"
  fi
  jq -e '[.data.groups[].rules[]] | length > 0 and all(.health == "ok")' >/dev/null <<<"$rules"
}
wait_until 15 "every alert rule evaluated" rules_evaluated
firing=$(curl -sf "http://127.0.0.1:$prom_port/api/v1/alerts" |
  jq -r '[.data.alerts[] | select(.state == "firing") | .labels.alertname] | join(", ")')
[[ -z "$firing" ]] || fail "alerts fire on a healthy system: $firing"
echo "alert rules: $(curl -sf "http://127.0.0.1:$prom_port/api/v1/rules" |
  jq '[.data.groups[].rules[]] | length') evaluated, none firing"

# The dashboard's queries, with its variables set to match everything.
n=0
while IFS= read -r expr; do
  expr=${expr//\$__rate_interval/15s}
  expr=${expr//\$__range/5m}
  expr=${expr//\$controller_job/.*}
  expr=${expr//\$agent_job/.*}
  expr=${expr//\$agent/.*}
  promql "$expr" >/dev/null
  n=$((n + 1))
done < <(jq -r '.panels[].targets[]?.expr' "$src/deploy/grafana/evalctl.json")
echo "deploy/grafana/evalctl.json: $n queries valid"

step "the walltime task: TIMEOUT, resume, success"
slow_finished() {
  local j
  j=$("$cli_bin" --controller "$controller" status "$slow_id" --json 2>/dev/null) || return 1
  jq -e '.invocations[0].finished' >/dev/null <<<"$j"
}
wait_until 240 "invocation $slow_id finished" slow_finished
"$cli_bin" --controller "$controller" status "$slow_id" --json >"$root/slow-status.json"
jq -e '.invocations[0].tasks[0].state | ascii_downcase | test("succeeded")' "$root/slow-status.json" >/dev/null ||
  fail "the walltime task did not succeed: $(jq -c '.invocations[0].tasks[0] | {state, reason}' "$root/slow-status.json")"
jq -e '.invocations[0].tasks[0].attempts | length == 2' "$root/slow-status.json" >/dev/null ||
  fail "the walltime task does not have two attempts: $(jq -c '.invocations[0].tasks[0].attempts' "$root/slow-status.json")"
echo "$slow_id: succeeded in 2 attempts (the first one ended $(jq -r '.invocations[0].tasks[0].attempts[0].slurm_state' "$root/slow-status.json"))"
curl -sf "http://127.0.0.1:$controller_metrics_port/metrics" >"$root/controller-end.prom"
curl -sf "http://127.0.0.1:$agent_metrics_port/metrics" >"$root/agent-end.prom"
for scrape in controller-end agent-end; do
  "$promtool" check metrics <"$root/$scrape.prom" ||
    fail "promtool check metrics rejects $root/$scrape.prom"
done
c=$root/controller-end.prom
a=$root/agent-end.prom
expect "$a" 'evalctl_agent_resumes_total{reason="timeout"}' -ge 1
expect "$a" 'evalctl_agent_submissions_total{reason="timeout"}' -ge 1
expect "$a" 'evalctl_agent_submissions_total{reason="first_attempt"}' -eq 2
expect "$c" 'evalctl_controller_resumes_total{reason="timeout"}' -ge 1
expect "$c" 'evalctl_controller_tasks_finished_total{reason="completed",state="succeeded"}' -eq 2
expect "$c" 'evalctl_controller_tasks{state="succeeded"}' -eq 2
for state in pending queued running resuming failed cancelled budget_exhausted; do
  expect "$c" "evalctl_controller_tasks{state=\"$state\"}" -eq 0
done
# Three attempts ran: the small task's, and the walltime task's two.
expect "$c" "evalctl_controller_attempt_queue_wait_seconds_count{cluster=\"$cluster\"}" -ge 3
expect "$c" "evalctl_controller_attempt_run_seconds_count{cluster=\"$cluster\"}" -ge 3
# The first attempt ran into its one-minute limit.
run_sum=$(value "$c" "evalctl_controller_attempt_run_seconds_sum{cluster=\"$cluster\"}")
awk -v s="$run_sum" 'BEGIN {exit !(s >= 60)}' || fail "the attempts ran ${run_sum}s in all, expected >= 60"
echo "  evalctl_controller_attempt_run_seconds_sum = $run_sum"

wait_until 20 "resumes_total{reason=\"timeout\"} of the agent in Prometheus" \
  promql_at_least 'sum(evalctl_agent_resumes_total{reason="timeout"})' 1
wait_until 20 "resumes_total{reason=\"timeout\"} of the controller in Prometheus" \
  promql_at_least 'sum(evalctl_controller_resumes_total{reason="timeout"})' 1
wait_until 20 "two succeeded tasks in Prometheus" \
  promql_at_least 'evalctl_controller_tasks{state="succeeded"}' 2
wait_until 20 "three queue waits in Prometheus" \
  promql_at_least 'sum(evalctl_controller_attempt_queue_wait_seconds_count)' 3
# The gauge moved: the walltime task was running for a minute while Prometheus scraped every
# second, and nothing runs now.
promql_at_least 'max_over_time(evalctl_controller_tasks{state="running"}[10m])' 1 ||
  fail "evalctl_controller_tasks{state=\"running\"} never reached 1 in Prometheus"
[[ "$(promql 'evalctl_controller_tasks{state="running"}')" == 0 ]] ||
  fail "evalctl_controller_tasks{state=\"running\"} is $(promql 'evalctl_controller_tasks{state="running"}') in Prometheus, expected 0"
echo "Prometheus: resumes (timeout) agent $(promql 'sum(evalctl_agent_resumes_total{reason="timeout"})')," \
  "controller $(promql 'sum(evalctl_controller_resumes_total{reason="timeout"})'); running tasks" \
  "at most $(promql 'max_over_time(evalctl_controller_tasks{state="running"}[10m])'), now" \
  "$(promql 'evalctl_controller_tasks{state="running"}')"
firing=$(curl -sf "http://127.0.0.1:$prom_port/api/v1/alerts" |
  jq -r '[.data.alerts[] | select(.state == "firing") | .labels.alertname] | join(", ")')
[[ -z "$firing" ]] || fail "alerts fire after a resume: $firing"

step "the agent without its controller: /healthz 503"
kill -KILL "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true
healthz_down() {
  local code
  code=$(curl -s -o "$root/healthz.txt" -w '%{http_code}' "http://127.0.0.1:$agent_metrics_port/healthz")
  [[ "$code" == 503 ]]
}
wait_until 30 "agent /healthz answering 503" healthz_down
grep -q "not connected to the controller at $controller" "$root/healthz.txt" ||
  fail "unexpected /healthz reason: $(cat "$root/healthz.txt")"
echo "agent /healthz: 503 $(cat "$root/healthz.txt")"
curl -sf "http://127.0.0.1:$agent_metrics_port/metrics" >"$root/agent-after.prom"
expect "$root/agent-after.prom" evalctl_agent_stream_connected -eq 0

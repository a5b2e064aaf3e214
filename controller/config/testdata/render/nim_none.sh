#!/bin/bash
#SBATCH --time=02:30:00
#SBATCH --account=llm_eval
#SBATCH --partition=batch
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --comment="{\"owner\": \"alice\", \"note\": \"nightly #3\"}"
#SBATCH --exclusive
#SBATCH --mem=0
#SBATCH --output=/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/slurm-%j.log
#SBATCH --open-mode=append
#SBATCH --no-requeue
#SBATCH --signal=B:USR1@120
#SBATCH --chdir=/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond
#
# evalctl job of invocation 3f2a9c01d4e5b677: deployment nim, container runtime none
# Task 0: gpqa_diamond
#
# Rendered by evalctl; its agent submits it with sbatch (adding --job-name and, for a resumed
# attempt, --dependency). This script holds no secret value: secrets arrive in the job's
# environment as EVALCTL_SECRET_<GROUP>_<NAME> and are exported under their own names only inside
# the step that uses them. Never turn on xtrace (set -x) here.
#
# Exit codes: 0-119 are the evaluation's own; 120 setup failed; 121 a server (or the proxy) died
# before it was ready; 122 the endpoint was not ready in time; 123 interrupted; 125 the
# evaluation exited with 120 or more (its raw code is in .evalctl/eval_exit_code).
# See controller/config/render.h.
#
# Single-quoted strings below are data, expanded by the shells they are given to (SC2016);
# functions that only traps call look unreachable to shellcheck (SC2317); each step's exports
# are meant to stay in its subshell (SC2030, SC2031).
# shellcheck disable=SC2016,SC2317,SC2030,SC2031

# No `set -e`: every failure is handled where it happens, so that the script always tears down and
# reports the evaluation's exit code.
set -uo pipefail

RUN_DIR='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond'
export EVALCTL_INVOCATION_ID='3f2a9c01d4e5b677'
export NEL_INVOCATION_ID="${EVALCTL_INVOCATION_ID}"
export EVALCTL_RUN_DIR="${RUN_DIR}"
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
  EVALCTL_IN_SLURM=1
else
  EVALCTL_IN_SLURM=0
fi
EVALCTL_JOB_ID=${SLURM_JOB_ID:-local}
EVALCTL_SRUN=srun
export EVALCTL_SERVER_PORT=8000
EVALCTL_TASK_DIRS=()
EVALCTL_TASK_DONE=()
EVALCTL_NODES=()
EVALCTL_SERVER_PIDS=()
EVALCTL_SERVER_NAMES=()
EVALCTL_SERVER_LOGS=()
EVALCTL_SECRET_VARS=(EVALCTL_SECRET_DEP_NGC_API_KEY EVALCTL_SECRET_EVAL_HF_TOKEN)
EVALCTL_EVAL_PID=''
EVALCTL_STEP_RC=0
EVALCTL_TASK_CODE=0
EVALCTL_MARKER_BEFORE=absent
EVALCTL_TERMINATED=0
EVALCTL_WARNED=0
EVALCTL_TORN_DOWN=0
EVALCTL_JOB_EXIT=0
EVALCTL_SERVER_DRIVER='evalctl_pre=$1
evalctl_cmd=$2
set --
export PROC_ID="${SLURM_PROCID:-0}"
if [[ -n "${evalctl_pre}" ]]; then
  eval "${evalctl_pre}" || {
    evalctl_rc=$?
    echo "evalctl: deployment.pre_cmd failed with exit code ${evalctl_rc}" >&2
    exit "${evalctl_rc}"
  }
fi
eval "${evalctl_cmd}"'
EVALCTL_EVAL_DRIVER='evalctl_pre=$1
evalctl_cmd=$2
evalctl_post=$3
set --
evalctl_status() {
  return "$1"
}
evalctl_finish() {
  evalctl_rc=$?
  trap - EXIT
  if [[ -n "${evalctl_post}" ]]; then
    evalctl_status "${evalctl_rc}"  # post_cmd sees the exit code in $?
    eval "${evalctl_post}"
  fi
  exit "${evalctl_rc}"
}
trap evalctl_finish EXIT
trap : USR1 TERM
if [[ -n "${evalctl_pre}" ]]; then
  eval "${evalctl_pre}" || {
    evalctl_rc=$?
    echo "evalctl: pre_cmd failed with exit code ${evalctl_rc}" >&2
    exit "${evalctl_rc}"
  }
fi
eval "${evalctl_cmd}"'

# ---- Helpers

evalctl_log() {
  printf '%(%Y-%m-%dT%H:%M:%S%z)T evalctl: %s\n' -1 "$*" >&2
}

# evalctl_write_file FILE TEXT: writes TEXT and a newline atomically (temporary file, then rename):
# the agent may read FILE at any time.
evalctl_write_file() {
  printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"
}

# evalctl_phase WORD DIR...: records the job's phase in each run directory.
evalctl_phase() {
  local word=$1 dir
  shift
  for dir in "$@"; do
    evalctl_write_file "${dir}/.evalctl/phase" "${word}" || evalctl_log "cannot write ${dir}/.evalctl/phase"
  done
}

# evalctl_job_phase WORD: the phase of the job's run directory and, in a shared job, of the tasks
# whose evaluation has not ended yet.
evalctl_job_phase() {
  local dirs=("${RUN_DIR}") i
  for i in "${!EVALCTL_TASK_DIRS[@]}"; do
    if (( ! EVALCTL_TASK_DONE[i] )); then
      dirs+=("${EVALCTL_TASK_DIRS[i]}")
    fi
  done
  evalctl_phase "$1" "${dirs[@]}"
}

# evalctl_srun SRUN-OPTION... COMMAND...: replaces the calling subshell with one job step, so that
# $! of the subshell is the step. In a Slurm allocation that is srun. Outside one (a local run of
# this script, as in evalctl's tests) the command runs on this host in its own process group, its
# output appended to the --output file; the other options are ignored, container steps refused.
evalctl_srun() {
  if (( EVALCTL_IN_SLURM )); then
    exec "${EVALCTL_SRUN}" "$@"
  fi
  local out=/dev/null arg
  while (( $# > 0 )) && [[ "$1" == --* ]]; do
    arg=$1
    shift
    case "${arg}" in
      --output=*) out=${arg#--output=} ;;
      --container-image=*)
        evalctl_log "not in a Slurm allocation: cannot run a container step"
        exit 120
        ;;
    esac
  done
  out=${out//"%j"/${EVALCTL_JOB_ID}}
  out=${out//"%t"/0}
  exec setsid "$@" >>"${out}" 2>&1 </dev/null
}

# evalctl_signal_step SIGNAL PID: srun forwards a signal to every process of its step; outside
# Slurm the step's process group gets it. Signal 0 tells whether the step still runs.
evalctl_signal_step() {
  if (( EVALCTL_IN_SLURM )); then
    kill -s "$1" "$2" 2>/dev/null
  else
    kill -s "$1" -- "-$2" 2>/dev/null
  fi
}

# evalctl_wait_step PID: waits until the step ends and sets EVALCTL_STEP_RC to its exit code.
# `wait` returns early (128+N) when a trapped signal arrives; the step may still run then.
evalctl_wait_step() {
  local rc again
  while :; do
    wait "$1"
    rc=$?
    if (( rc > 128 )); then
      if evalctl_signal_step 0 "$1"; then
        continue
      fi
      wait "$1" 2>/dev/null
      again=$?
      if (( again != 127 )); then
        rc=${again}
      fi
    fi
    break
  done
  EVALCTL_STEP_RC=${rc}
}

# evalctl_stop_steps PID...: TERM, up to 30 s to exit, then KILL.
evalctl_stop_steps() {
  local pid waited=0 alive
  for pid in "$@"; do
    evalctl_signal_step TERM "${pid}" || true
  done
  while (( waited < 30 )); do
    alive=0
    for pid in "$@"; do
      if evalctl_signal_step 0 "${pid}"; then
        alive=1
      fi
    done
    if (( ! alive )); then
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  for pid in "$@"; do
    evalctl_signal_step KILL "${pid}" || true
    wait "${pid}" 2>/dev/null || true
  done
}

# evalctl_marker DIR: identifies the interrupted marker nemo-evaluator leaves in artifacts/ by inode
# and modification time (a time alone can be equal within a clock tick), or says `absent`.
evalctl_marker() {
  stat -c '%i %y' "$1/artifacts/.nemo_evaluator_interrupted" 2>/dev/null || echo absent
}

# evalctl_task_code DIR RC: sets EVALCTL_TASK_CODE, the job exit code for an evaluation that ended
# with RC: 123 when it was interrupted (a termination signal, a non-zero exit after
# the pre-timeout warning — the harness saved its state and stopped —, or an interrupted marker
# written during this evaluation), 125 for RC >= 120 (sacct shows exit codes
# modulo 128), RC otherwise. The agent resumes a job that ends with 123.
evalctl_task_code() {
  local marker
  marker=$(evalctl_marker "$1")
  if (( EVALCTL_TERMINATED )) || (( EVALCTL_WARNED && $2 != 0 )); then
    EVALCTL_TASK_CODE=123
  elif [[ "${marker}" != absent && "${marker}" != "${EVALCTL_MARKER_BEFORE}" ]]; then
    EVALCTL_TASK_CODE=123
  elif (( $2 >= 120 )); then
    EVALCTL_TASK_CODE=125
  else
    EVALCTL_TASK_CODE=$2
  fi
}

evalctl_teardown() {
  if (( EVALCTL_TORN_DOWN )); then
    return 0
  fi
  EVALCTL_TORN_DOWN=1
  evalctl_job_phase finishing
  if [[ -n "${EVALCTL_EVAL_PID}" ]]; then
    evalctl_stop_steps "${EVALCTL_EVAL_PID}"
  fi
  if (( ${#EVALCTL_SERVER_PIDS[@]} > 0 )); then
    evalctl_log "stopping the deployment"
    evalctl_stop_steps "${EVALCTL_SERVER_PIDS[@]}"
  fi
  evalctl_job_phase finished
}

evalctl_on_exit() {
  local rc=$?
  trap - EXIT
  evalctl_teardown
  evalctl_log "job exits with code ${rc}"
  exit "${rc}"
}

# Slurm sends USR1 (--signal=B:USR1@N) to this shell only: the evaluation step gets it from here,
# so that the harness can save its state before the time limit.
evalctl_on_usr1() {
  EVALCTL_WARNED=1
  if [[ -n "${EVALCTL_EVAL_PID}" ]]; then
    evalctl_log "got USR1 (the time limit is near): forwarding it to the evaluation step"
    evalctl_signal_step USR1 "${EVALCTL_EVAL_PID}" || true
  else
    evalctl_log "got USR1 (the time limit is near); no evaluation is running"
  fi
}

# evalctl_forward_term: Slurm sends TERM to every step itself when it ends a job, and a TERM to
# srun would make it kill its step at once; so only a local run forwards TERM to the evaluation.
evalctl_forward_term() {
  if (( ! EVALCTL_IN_SLURM )) && [[ -n "${EVALCTL_EVAL_PID}" ]]; then
    evalctl_signal_step TERM "${EVALCTL_EVAL_PID}" || true
  fi
}

# TERM: cancelled, preempted or out of time. The evaluation gets its chance to stop; the main flow
# then records its exit code and tears down.
evalctl_on_term() {
  if (( EVALCTL_TERMINATED )); then
    return 0
  fi
  EVALCTL_TERMINATED=1
  evalctl_log "got a termination signal (cancelled, preempted or out of time): stopping"
  evalctl_forward_term
}

# evalctl_wait_ready URL...: polls each URL until it answers with an HTTP success, every 2 s.
# Returns 0; 121 when a server step ended first; 122 at the readiness deadline;
# 123 when the job is being terminated.
evalctl_wait_ready() {
  local url i
  for url in "$@"; do
    evalctl_log "waiting for ${url}"
    until curl -sf -o /dev/null --max-time 5 --noproxy '*' "${url}"; do
      for i in "${!EVALCTL_SERVER_PIDS[@]}"; do
        if ! evalctl_signal_step 0 "${EVALCTL_SERVER_PIDS[i]}"; then
          evalctl_log "${EVALCTL_SERVER_NAMES[i]} exited before ${url} was ready; see its log ${EVALCTL_SERVER_LOGS[i]}"
          return 121
        fi
      done
      if (( EVALCTL_TERMINATED )); then
        return 123
      fi
      if (( SECONDS >= EVALCTL_READY_DEADLINE )); then
        evalctl_log "${url} was not ready after ${EVALCTL_READY_TIMEOUT} s (execution.endpoint_readiness_timeout); see the server logs in ${RUN_DIR}/logs"
        return 122
      fi
      sleep 2
    done
  done
  evalctl_log "ready: $*"
}

# evalctl_select_instance G NODES: sets EVALCTL_NODELIST, EVALCTL_INSTANCE_HEAD, EVALCTL_INSTANCE_IP
# and EVALCTL_INSTANCE_IPS for deployment instance G of NODES nodes.
evalctl_select_instance() {
  local nodes=("${EVALCTL_NODES[@]:$1*$2:$2}") node ip ips=()
  for node in "${nodes[@]}"; do
    ip=''
    read -r ip _ < <(getent ahostsv4 "${node}" 2>/dev/null)
    ips+=("${ip:-${node}}")
  done
  EVALCTL_NODELIST=$(IFS=,; printf '%s' "${nodes[*]}")
  EVALCTL_INSTANCE_HEAD=${nodes[0]}
  EVALCTL_INSTANCE_IP=${ips[0]}
  EVALCTL_INSTANCE_IPS=$(IFS=,; printf '%s' "${ips[*]}")
}

# ---- Setup

trap evalctl_on_exit EXIT
trap evalctl_on_usr1 USR1
trap evalctl_on_term TERM INT HUP

for evalctl_dir in "${RUN_DIR}" "${EVALCTL_TASK_DIRS[@]}"; do
  if ! mkdir -p "${evalctl_dir}/logs" "${evalctl_dir}/artifacts" "${evalctl_dir}/.evalctl"; then
    evalctl_log "cannot create the run directory ${evalctl_dir}"
    exit 120
  fi
done
rm -f "${RUN_DIR}/.evalctl/eval_exit_code"
evalctl_job_phase starting
evalctl_log "invocation ${EVALCTL_INVOCATION_ID}, job ${EVALCTL_JOB_ID}, run directory ${RUN_DIR}"

for evalctl_var in "${EVALCTL_SECRET_VARS[@]}"; do
  if [[ ! -v ${evalctl_var} ]]; then
    evalctl_log "the job environment lacks ${evalctl_var}: submitted without its secrets?"
    exit 120
  fi
done

if (( EVALCTL_IN_SLURM )); then
  if ! EVALCTL_SRUN=$(command -v srun); then
    evalctl_log "srun not found"
    exit 120
  fi
  mapfile -t EVALCTL_NODES < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-}")
  if (( ${#EVALCTL_NODES[@]} < 1 )); then
    evalctl_log "the allocation has ${#EVALCTL_NODES[@]} node(s) (${SLURM_JOB_NODELIST:-}); this job needs 1"
    exit 120
  fi
else
  evalctl_log "not in a Slurm allocation: the steps run on this host"
  for ((evalctl_i = 0; evalctl_i < 1; evalctl_i++)); do
    EVALCTL_NODES+=(localhost)
  done
fi

# ---- Deployment: nim, 1 instance(s) of 1 node(s) and 1 task(s) each

evalctl_job_phase deploying
if ! command -v curl >/dev/null; then
  evalctl_log "curl is not installed on ${HOSTNAME}: cannot check the endpoint"
  exit 120
fi
EVALCTL_INSTANCE_HEADS=()
for ((evalctl_g = 0; evalctl_g < 1; evalctl_g++)); do
  evalctl_select_instance "${evalctl_g}" 1
  EVALCTL_INSTANCE_HEADS+=("${EVALCTL_INSTANCE_HEAD}")
  (
    export NGC_API_KEY="${EVALCTL_SECRET_DEP_NGC_API_KEY}"
    export NIM_SERVED_MODEL_NAME='llama-3.1-8b-instruct'
    export EVALCTL_INSTANCE="${evalctl_g}"
    export EVALCTL_MASTER_NODE="${EVALCTL_INSTANCE_HEAD}"
    export NODES_PER_INSTANCE=1
    export EVALCTL_SERVER_PORT="${EVALCTL_SERVER_PORT}"
    export MASTER_IP="${EVALCTL_INSTANCE_IP}"
    export ALL_NODE_IPS="${EVALCTL_INSTANCE_IPS}"
    export EVALCTL_RESULTS_DIR='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/artifacts'
    export EVALCTL_CACHE_DIR='/lustre/nim_cache'
    unset EVALCTL_SECRET_DEP_NGC_API_KEY EVALCTL_SECRET_EVAL_HF_TOKEN
    evalctl_srun \
      --overlap \
      --kill-on-bad-exit=1 \
      --nodes=1 \
      --ntasks=1 \
      --nodelist="${EVALCTL_NODELIST}" \
      --output='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/server-'"${evalctl_g}"'-%j-%t.log' \
      bash -c "${EVALCTL_SERVER_DRIVER}" evalctl-server \
      '' \
      '/opt/nvidia/nvidia_entrypoint.sh /opt/nim/start_server.sh'
  ) &
  EVALCTL_SERVER_PIDS+=("$!")
  EVALCTL_SERVER_NAMES+=("deployment instance ${evalctl_g}")
  EVALCTL_SERVER_LOGS+=('/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/server-'"${evalctl_g}-${EVALCTL_JOB_ID}"'-*.log')
  evalctl_log "deployment instance ${evalctl_g} started on ${EVALCTL_NODELIST}"
done

evalctl_job_phase waiting_for_endpoint
EVALCTL_READY_TIMEOUT=9000
EVALCTL_READY_DEADLINE=$((SECONDS + EVALCTL_READY_TIMEOUT))
evalctl_wait_ready "http://127.0.0.1:${EVALCTL_SERVER_PORT}"'/v1/health/ready' || exit

# ---- Evaluation 0: task 0 (gpqa_diamond)

evalctl_eval_0() {
  local dir='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond'
  evalctl_phase evaluating "${dir}"
  EVALCTL_MARKER_BEFORE=$(evalctl_marker "${dir}")
  evalctl_log "task 0: evaluation starting; its log is ${dir}/logs/client-${EVALCTL_JOB_ID}.log"
  evalctl_write_file "${dir}/artifacts/nemo_evaluator_config.yaml" 'config:
  params:
    limit_samples: 10
' || {
    evalctl_log "cannot write ${dir}/artifacts/nemo_evaluator_config.yaml"
    exit 120
  }
  (
    export HF_DATASETS_OFFLINE='1'
    export HF_TOKEN="${EVALCTL_SECRET_EVAL_HF_TOKEN}"
    export JOB_USER="${USER?evalctl: runtime variable USER (for JOB_USER) is not set}"
    export EVALCTL_TASK_ID='3f2a9c01d4e5b677.0'
    export EVALCTL_TASK_INDEX='0'
    export EVALCTL_TASK_NAME='gpqa_diamond'
    export EVALCTL_RUN_DIR='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond'
    export EVALCTL_ENDPOINT_URL="http://127.0.0.1:${EVALCTL_SERVER_PORT}"'/v1/chat/completions'
    export EVALCTL_ENDPOINT_TYPE='chat'
    export EVALCTL_MODEL_ID='llama-3.1-8b-instruct'
    export EVALCTL_RESULTS_DIR='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/artifacts'
    export NVIDIA_VISIBLE_DEVICES='all'
    export EVALCTL_RUN_CONFIG='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/artifacts/nemo_evaluator_config.yaml'
    unset EVALCTL_SECRET_DEP_NGC_API_KEY EVALCTL_SECRET_EVAL_HF_TOKEN
    evalctl_srun \
      --overlap \
      --nodes=1 \
      --ntasks=1 \
      --nodelist="${EVALCTL_NODES[0]}" \
      --output='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/client-%j.log' \
      bash -c "${EVALCTL_EVAL_DRIVER}" evalctl-eval \
      '' \
      'nemo-evaluator run_eval --eval_type gpqa_diamond --model_url "$EVALCTL_ENDPOINT_URL" --model_id "$EVALCTL_MODEL_ID" --output_dir "$EVALCTL_RESULTS_DIR"' \
      ''
  ) &
  EVALCTL_EVAL_PID=$!
  if (( EVALCTL_TERMINATED )); then  # TERM came before $! was known
    evalctl_forward_term
  fi
  evalctl_wait_step "${EVALCTL_EVAL_PID}"
  EVALCTL_EVAL_PID=''
  evalctl_write_file "${dir}/.evalctl/eval_exit_code" "${EVALCTL_STEP_RC}"
  evalctl_task_code "${dir}" "${EVALCTL_STEP_RC}"
  evalctl_log "task 0: evaluation exited with code ${EVALCTL_STEP_RC}"
}

# ---- Run the evaluation(s); the EXIT trap tears down

evalctl_eval_0
EVALCTL_JOB_EXIT=${EVALCTL_TASK_CODE}
exit "${EVALCTL_JOB_EXIT}"

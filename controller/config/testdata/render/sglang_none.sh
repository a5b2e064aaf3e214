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
# evalctl job of invocation 3f2a9c01d4e5b677: deployment sglang, container runtime none
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
EVALCTL_SECRET_VARS=(EVALCTL_SECRET_DEP_HF_TOKEN EVALCTL_SECRET_EVAL_HF_TOKEN)
EVALCTL_EVAL_PID=''
EVALCTL_STEP_RC=0
EVALCTL_TASK_CODE=0
EVALCTL_MARKER_BEFORE=absent
EVALCTL_TERMINATED=0
EVALCTL_WARNED=0
EVALCTL_TORN_DOWN=0
EVALCTL_JOB_EXIT=0
# <the job's fixed shell code: controller/config/job/*.sh, with deploy_lib.sh>

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

# ---- Deployment: sglang, 1 instance(s) of 1 node(s) and 1 task(s) each

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
    export HF_TOKEN="${EVALCTL_SECRET_DEP_HF_TOKEN}"
    export EVALCTL_INSTANCE="${evalctl_g}"
    export EVALCTL_MASTER_NODE="${EVALCTL_INSTANCE_HEAD}"
    export NODES_PER_INSTANCE=1
    export EVALCTL_SERVER_PORT="${EVALCTL_SERVER_PORT}"
    export MASTER_IP="${EVALCTL_INSTANCE_IP}"
    export ALL_NODE_IPS="${EVALCTL_INSTANCE_IPS}"
    export EVALCTL_RESULTS_DIR='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/artifacts'
    unset EVALCTL_SECRET_DEP_HF_TOKEN EVALCTL_SECRET_EVAL_HF_TOKEN
    evalctl_srun \
      --overlap \
      --kill-on-bad-exit=1 \
      --nodes=1 \
      --ntasks=1 \
      --nodelist="${EVALCTL_NODELIST}" \
      --output='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/server-'"${evalctl_g}"'-%j-%t.log' \
      bash -c "${EVALCTL_SERVER_DRIVER}" evalctl-server \
      '' \
      'python3 -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 --port 8000 --served-model-name llama-3.1-8b-instruct --tp-size 8'
  ) &
  EVALCTL_SERVER_PIDS+=("$!")
  EVALCTL_SERVER_NAMES+=("deployment instance ${evalctl_g}")
  EVALCTL_SERVER_LOGS+=('/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/logs/server-'"${evalctl_g}-${EVALCTL_JOB_ID}"'-*.log')
  evalctl_log "deployment instance ${evalctl_g} started on ${EVALCTL_NODELIST}"
done

evalctl_job_phase waiting_for_endpoint
EVALCTL_READY_TIMEOUT=9000
EVALCTL_READY_DEADLINE=$((SECONDS + EVALCTL_READY_TIMEOUT))
evalctl_wait_ready "http://127.0.0.1:${EVALCTL_SERVER_PORT}"'/health' || exit

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
    export EVALCTL_RUN_CONFIG='/lustre/evals/20261126_130405-3f2a9c01d4e5b677/gpqa_diamond/artifacts/nemo_evaluator_config.yaml'
    unset EVALCTL_SECRET_DEP_HF_TOKEN EVALCTL_SECRET_EVAL_HF_TOKEN
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

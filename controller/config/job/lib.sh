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
    evalctl_write_file "${dir}/@PHASE_FILE@" "${word}" || evalctl_log "cannot write ${dir}/@PHASE_FILE@"
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
        exit @EXIT_SETUP@
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
# with RC: @EXIT_INTERRUPTED@ when it was interrupted (a termination signal, a non-zero exit after
# the pre-timeout warning — the harness saved its state and stopped —, or an interrupted marker
# written during this evaluation), @EXIT_OUT_OF_RANGE@ for RC >= 120 (sacct shows exit codes
# modulo 128), RC otherwise. The agent resumes a job that ends with @EXIT_INTERRUPTED@.
evalctl_task_code() {
  local marker
  marker=$(evalctl_marker "$1")
  if (( EVALCTL_TERMINATED )) || (( EVALCTL_WARNED && $2 != 0 )); then
    EVALCTL_TASK_CODE=@EXIT_INTERRUPTED@
  elif [[ "${marker}" != absent && "${marker}" != "${EVALCTL_MARKER_BEFORE}" ]]; then
    EVALCTL_TASK_CODE=@EXIT_INTERRUPTED@
  elif (( $2 >= 120 )); then
    EVALCTL_TASK_CODE=@EXIT_OUT_OF_RANGE@
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

# evalctl_wait_ready URL...: polls each URL until it answers with an HTTP success, every 2 s.
# Returns 0; @EXIT_SERVER_DIED@ when a server step ended first; @EXIT_TIMEOUT@ at the readiness deadline;
# @EXIT_INTERRUPTED@ when the job is being terminated.
evalctl_wait_ready() {
  local url i
  for url in "$@"; do
    evalctl_log "waiting for ${url}"
    until curl -sf -o /dev/null --max-time 5 --noproxy '*' "${url}"; do
      for i in "${!EVALCTL_SERVER_PIDS[@]}"; do
        if ! evalctl_signal_step 0 "${EVALCTL_SERVER_PIDS[i]}"; then
          evalctl_log "${EVALCTL_SERVER_NAMES[i]} exited before ${url} was ready; see its log ${EVALCTL_SERVER_LOGS[i]}"
          return @EXIT_SERVER_DIED@
        fi
      done
      if (( EVALCTL_TERMINATED )); then
        return @EXIT_INTERRUPTED@
      fi
      if (( SECONDS >= EVALCTL_READY_DEADLINE )); then
        evalctl_log "${url} was not ready after ${EVALCTL_READY_TIMEOUT} s (execution.endpoint_readiness_timeout); see the server logs in ${RUN_DIR}/logs"
        return @EXIT_TIMEOUT@
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

evalctl_pre=$1
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
eval "${evalctl_cmd}"

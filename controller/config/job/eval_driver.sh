evalctl_pre=$1
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
eval "${evalctl_cmd}"

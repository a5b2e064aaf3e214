#!/usr/bin/env bash
# deploy/dev/cluster.sh - a real, private Slurm cluster on localhost for development and tests.
#
#   deploy/dev/cluster.sh start    bring the cluster up (idempotent), wait until it is usable
#   deploy/dev/cluster.sh stop     stop every daemon this script started (idempotent)
#   deploy/dev/cluster.sh status   show daemons, nodes and partitions; exit 0 only if all is up
#   deploy/dev/cluster.sh env      print `export SLURM_CONF=...` for Slurm clients:
#                                    eval "$(deploy/dev/cluster.sh env)"
#   deploy/dev/cluster.sh stop-slurmdbd / start-slurmdbd
#                                  an accounting outage for tests: stop slurmdbd alone, and
#                                  start it again with the jobs and accounting data kept
#
# Daemons: munged, mariadbd, slurmdbd, slurmctld and four slurmd (node1..node4, 8 virtual CPUs each),
# all from the Debian 12 packages (slurm-wlm 22.05, slurmdbd, munge, mariadb-server), all run as root
# except munged (user munge) and mariadbd (user mysql). Everything lives in one state directory;
# /etc/slurm, /etc/munge, /run/munge and the system MariaDB datadir are never touched.
#
# Each (re)start of the Slurm daemons begins from a FRESH state: slurmctld runs with -c and the
# accounting database is recreated, so job IDs start again at 1 and sacct never shows jobs from an
# earlier run. EVALCTL_CLUSTER_KEEP_STATE=1 keeps the controller state and the accounting data.
# See deploy/dev/README.md for the partitions, ports and environment variables.
set -euo pipefail

PROG=${0##*/}

# ---------------------------------------------------------------------------------------------
# Settings (environment variables)
# ---------------------------------------------------------------------------------------------
STATE_DIR=${EVALCTL_CLUSTER_DIR:-/var/tmp/evalctl-dev-cluster}
CTLD_PORT=${EVALCTL_SLURMCTLD_PORT:-6817}
SLURMD_PORT_BASE=${EVALCTL_SLURMD_PORT_BASE:-17001}
DBD_PORT=${EVALCTL_SLURMDBD_PORT:-6819}
MYSQL_PORT=${EVALCTL_MYSQL_PORT:-3307}
MIN_JOB_AGE=${EVALCTL_MIN_JOB_AGE:-30}
GRACE_TIME=${EVALCTL_PREEMPT_GRACE_TIME:-0}
KEEP_STATE=${EVALCTL_CLUSTER_KEEP_STATE:-0}
START_TIMEOUT=${EVALCTL_CLUSTER_START_TIMEOUT:-60}

CLUSTER_NAME=evalctl
NODES=(node1 node2 node3 node4)
NODE_CPUS=8
NODE_MEMORY=1000
# Every daemon started here carries this variable in its environment; it is how `stop` and
# `status` recognise "our" processes without pkill-by-name.
MARK_VAR=EVALCTL_DEV_CLUSTER_OWNER
DAEMON_PATH=/usr/sbin:/usr/bin:/sbin:/bin

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
msg() { printf '%s: %s\n' "$PROG" "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 1
}

usage() {
  cat <<EOF
usage: $PROG start|stop|status|env|stop-slurmdbd|start-slurmdbd

  start   start munged, mariadbd, slurmdbd, slurmctld and slurmd node1..node4 (idempotent)
  stop    stop them all (idempotent)
  status  show the daemons, nodes and partitions (exit 0 all up, 1 partly up, 3 stopped)
  env     print 'export SLURM_CONF=...'; use: eval "\$($PROG env)"
  stop-slurmdbd   stop slurmdbd alone (an accounting outage; jobs keep running)
  start-slurmdbd  start it again on the same database and wait until sacct works

state directory: $STATE_DIR (EVALCTL_CLUSTER_DIR)
EOF
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

validate_settings() {
  local v
  for v in CTLD_PORT SLURMD_PORT_BASE DBD_PORT MYSQL_PORT MIN_JOB_AGE GRACE_TIME START_TIMEOUT; do
    is_uint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
  done
  ((MIN_JOB_AGE >= 2)) || die "EVALCTL_MIN_JOB_AGE must be at least 2"
  [[ $KEEP_STATE == 0 || $KEEP_STATE == 1 ]] || die "EVALCTL_CLUSTER_KEEP_STATE must be 0 or 1"
}

init_paths() {
  [[ -n $STATE_DIR ]] || die "EVALCTL_CLUSTER_DIR is empty"
  STATE_DIR=$(realpath -m -- "$STATE_DIR")
  [[ $STATE_DIR != / ]] || die "EVALCTL_CLUSTER_DIR must not be /"
  ETC_DIR=$STATE_DIR/etc
  LOG_DIR=$STATE_DIR/log
  RUN_DIR=$STATE_DIR/run
  SPOOL_DIR=$STATE_DIR/spool
  MUNGE_DIR=$STATE_DIR/munge
  MYSQL_DIR=$STATE_DIR/mysql
  SLURM_CONF_FILE=$ETC_DIR/slurm.conf
  SLURMDBD_CONF_FILE=$ETC_DIR/slurmdbd.conf
  DB_PASS_FILE=$ETC_DIR/db-password
  MUNGE_KEY=$MUNGE_DIR/munge.key
  MUNGE_SOCKET=$MUNGE_DIR/munge.socket.2
  MYSQL_DATA=$MYSQL_DIR/data
  MYSQL_SOCKET=$MYSQL_DIR/run/mysqld.sock
  MYSQL_PIDFILE=$MYSQL_DIR/run/mysqld.pid
}

now() { printf '%s' "$EPOCHREALTIME"; }
# elapsed START -> seconds with two decimals
elapsed() {
  local s=${1/./} e=${EPOCHREALTIME/./}
  local d=$(((e - s) / 10000))
  printf '%d.%02d' $((d / 100)) $((d % 100))
}

# Run a Slurm client against this cluster's configuration, with a time limit.
sl() { SLURM_CONF=$SLURM_CONF_FILE timeout 10 "$@"; }

# Is PID a live (non-zombie) process?
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Fill OWNED (pid -> "comm" or "slurmd:nodeN") with every live process started by this script for
# this state directory: one of our daemon names, with our marker in its environment.
declare -A OWNED=()
scan_owned() {
  OWNED=()
  local d pid comm i
  local -a args
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    { read -r comm <"$d/comm"; } 2>/dev/null || continue
    case $comm in
      slurmctld | slurmscriptd | slurmd | slurmdbd | slurmstepd | munged | mariadbd) ;;
      *) continue ;;
    esac
    grep -qzxF -- "$MARK_VAR=$STATE_DIR" "$d/environ" 2>/dev/null || continue
    alive "$pid" || continue
    if [[ $comm == slurmd ]]; then
      mapfile -d '' args <"$d/cmdline" 2>/dev/null || continue
      for ((i = 0; i < ${#args[@]} - 1; i++)); do
        if [[ ${args[i]} == -N ]]; then comm=slurmd:${args[i + 1]}; fi
      done
    fi
    OWNED[$pid]=$comm
  done
}

# pids_of NAME -> the pids (from the last scan) of daemon NAME ("slurmd:node1", "munged", ...)
pids_of() {
  local pid
  for pid in "${!OWNED[@]}"; do
    if [[ ${OWNED[$pid]} == "$1" ]]; then printf '%s\n' "$pid"; fi
  done
}
running() { [[ -n $(pids_of "$1") ]]; }

ALL_DAEMONS=(munged mariadbd slurmdbd slurmctld)
for _n in "${NODES[@]}"; do ALL_DAEMONS+=("slurmd:$_n"); done
unset _n

# Is something (anything) listening on 127.0.0.1:PORT?
port_busy() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start a daemon in its own session, detached from our stdin/stdout and from the lock fd.
# launch NAME OUTFILE CMD...   (OUTFILE receives the daemon's stdout and stderr)
launch() {
  local name=$1 log=$2
  shift 2
  local -a envv=("PATH=$DAEMON_PATH" "HOME=/root" "LANG=C" "SLURM_CONF=$SLURM_CONF_FILE" "$MARK_VAR=$STATE_DIR")
  if [[ -n ${TZ:-} ]]; then envv+=("TZ=$TZ"); fi
  printf '==== %s: started by %s at %(%F %T)T\n' "$name" "$PROG" -1 >>"$log"
  env -i "${envv[@]}" setsid "$@" </dev/null >>"$log" 2>&1 9>&- &
  printf '%s\n' "$!" >"$RUN_DIR/$name.launched"
}

show_log_tail() {
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      printf -- '---- last lines of %s\n' "$f" >&2
      tail -n 15 "$f" >&2
    fi
  done
}

# Fail the start, showing the relevant logs.
start_failed() {
  local what=$1
  shift
  printf '%s: error: %s\n' "$PROG" "$what" >&2
  show_log_tail "$@"
  printf '%s: the cluster is partly up; run "%s stop" (or "%s start" again) after fixing the cause\n' \
    "$PROG" "$0" "$0" >&2
  exit 1
}

# wait_until DEADLINE_DESC TIMEOUT_S CHECK_FN [ARGS...] -> 0 when CHECK_FN succeeds in time
wait_until() {
  local timeout=$1
  shift
  local limit=$((${EPOCHREALTIME/./} + timeout * 1000000))
  while true; do
    if "$@"; then return 0; fi
    ((${EPOCHREALTIME/./} < limit)) || return 1
    sleep 0.05
  done
}

# ---------------------------------------------------------------------------------------------
# Configuration files
# ---------------------------------------------------------------------------------------------
render_slurm_conf() {
  local last=$((SLURMD_PORT_BASE + ${#NODES[@]} - 1))
  cat <<EOF
# Generated by deploy/dev/cluster.sh - do not edit (rewritten on every fresh start).
ClusterName=$CLUSTER_NAME
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after 11 s instead of 121 s.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
MailProg=/bin/true
StateSaveLocation=$SPOOL_DIR/ctld
SlurmdSpoolDir=$SPOOL_DIR/d/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
# 8 virtual CPUs per node on a 2-core machine.
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=1
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# Finished jobs stay visible to scontrol/squeue for MinJobAge seconds; sacct keeps them for ever.
MinJobAge=$MIN_JOB_AGE
KillWait=2
OverTimeLimit=0
Waittime=0
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# Connections to slurmdbd authenticate with the munge socket named here, not with AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
# Without job_comment, sacct's Comment column stays empty.
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
NodeName=node[1-${#NODES[@]}] NodeHostname=localhost Port=$SLURMD_PORT_BASE-$last CPUs=$NODE_CPUS Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEMORY State=UNKNOWN
PartitionName=debug     Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP
PartitionName=low       Nodes=node3     MaxTime=INFINITE PriorityTier=1  PreemptMode=REQUEUE GraceTime=$GRACE_TIME State=UP
PartitionName=lowcancel Nodes=node4     MaxTime=INFINITE PriorityTier=1  PreemptMode=CANCEL  GraceTime=$GRACE_TIME State=UP
PartitionName=high      Nodes=node[3-4] MaxTime=INFINITE PriorityTier=10 PreemptMode=OFF State=UP
EOF
}

render_slurmdbd_conf() {
  cat <<EOF
# Generated by deploy/dev/cluster.sh - do not edit (rewritten on every fresh start). Mode 600.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$(cat "$DB_PASS_FILE")
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
EOF
}

# Does the configuration on disk differ from what the current settings would generate?
config_changed() {
  [[ -f $SLURM_CONF_FILE && -f $SLURMDBD_CONF_FILE && -f $DB_PASS_FILE ]] || return 0
  [[ "$(render_slurm_conf)" != "$(cat "$SLURM_CONF_FILE")" ]] && return 0
  [[ "$(render_slurmdbd_conf)" != "$(cat "$SLURMDBD_CONF_FILE")" ]] && return 0
  return 1
}

write_configs() {
  render_slurm_conf >"$SLURM_CONF_FILE.tmp"
  chmod 644 "$SLURM_CONF_FILE.tmp"
  mv -f "$SLURM_CONF_FILE.tmp" "$SLURM_CONF_FILE"
  (umask 077 && render_slurmdbd_conf >"$SLURMDBD_CONF_FILE.tmp")
  chmod 600 "$SLURMDBD_CONF_FILE.tmp" # slurmdbd refuses to run otherwise
  mv -f "$SLURMDBD_CONF_FILE.tmp" "$SLURMDBD_CONF_FILE"
}

# ---------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------
check_prerequisites() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (the Slurm daemons run as root here)"
  local b missing=()
  for b in munged munge unmunge mungekey mariadbd mariadb mariadb-admin mariadb-install-db \
    slurmdbd slurmctld slurmd scontrol sinfo sacct sacctmgr setpriv setsid flock timeout ps; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
  ((${#missing[@]} == 0)) || die "missing programs: ${missing[*]} (run deploy/install-deps.sh)"
  id munge >/dev/null 2>&1 || die "user 'munge' does not exist (is the munge package installed?)"
  id mysql >/dev/null 2>&1 || die "user 'mysql' does not exist (is mariadb-server installed?)"
}

# Can USER reach (search + write) DIR?
user_can_write() {
  setpriv --reuid="$1" --regid="$1" --init-groups test -w "$2" -a -x "$2" 2>/dev/null
}

prepare_dirs() {
  mkdir -p "$STATE_DIR" "$ETC_DIR" "$LOG_DIR" "$RUN_DIR" "$SPOOL_DIR/ctld" "$MUNGE_DIR" "$MYSQL_DIR/run"
  chmod 755 "$STATE_DIR" "$ETC_DIR" "$LOG_DIR" "$RUN_DIR"
  local n
  for n in "${NODES[@]}"; do mkdir -p "$SPOOL_DIR/d/$n"; done
  # munged runs as munge: it needs its own directory (socket, pid, seed). 755 so that non-root
  # clients can reach the socket; the key itself is 600.
  chown munge:munge "$MUNGE_DIR"
  chmod 755 "$MUNGE_DIR"
  # mariadbd runs as mysql: datadir, socket and pid file must be in directories it owns.
  chown mysql:mysql "$MYSQL_DIR" "$MYSQL_DIR/run"
  chmod 750 "$MYSQL_DIR"
  chmod 755 "$MYSQL_DIR/run"
  user_can_write munge "$MUNGE_DIR" ||
    die "user munge cannot write $MUNGE_DIR (is a parent of $STATE_DIR closed to other users?)"
  user_can_write mysql "$MYSQL_DIR/run" ||
    die "user mysql cannot write $MYSQL_DIR/run (is a parent of $STATE_DIR closed to other users?)"
  if [[ ! -s $MUNGE_KEY ]]; then
    setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$MUNGE_KEY" ||
      die "could not create the munge key $MUNGE_KEY"
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 600 "$MUNGE_KEY"
  if [[ ! -s $DB_PASS_FILE ]]; then
    (umask 077 && od -An -tx1 -N12 /dev/urandom | tr -d ' \n' >"$DB_PASS_FILE")
  fi
  chmod 600 "$DB_PASS_FILE"
}

# ---------------------------------------------------------------------------------------------
# munge
# ---------------------------------------------------------------------------------------------
munge_ok() {
  local cred
  cred=$(munge -S "$MUNGE_SOCKET" -n </dev/null 2>/dev/null) || return 1
  unmunge -S "$MUNGE_SOCKET" <<<"$cred" >/dev/null 2>&1
}

start_munge() {
  port_free_or_die_socket
  launch munged "$LOG_DIR/munged.log" \
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground --force \
    --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" --pid-file="$MUNGE_DIR/munged.pid" \
    --seed-file="$MUNGE_DIR/munged.seed"
  wait_until 10 munge_ok || start_failed "munged did not answer on $MUNGE_SOCKET" "$LOG_DIR/munged.log"
}

# A stale socket file is fine (--force); just make sure no foreign munged uses it.
port_free_or_die_socket() {
  if [[ -S $MUNGE_SOCKET ]] && munge_ok; then
    die "a munged that this script did not start is answering on $MUNGE_SOCKET"
  fi
}

# ---------------------------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------------------------
mysql_ok() {
  mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" --connect-timeout=2 ping >/dev/null 2>&1
}

start_mariadb() {
  if [[ ! -f $MYSQL_DIR/.installed ]]; then
    msg "initialising the MariaDB datadir $MYSQL_DATA"
    rm -rf "$MYSQL_DATA"
    mariadb-install-db --no-defaults --datadir="$MYSQL_DATA" --user=mysql \
      --auth-root-authentication-method=socket --skip-test-db --skip-name-resolve \
      >"$LOG_DIR/mariadb-install.log" 2>&1 ||
      start_failed "mariadb-install-db failed" "$LOG_DIR/mariadb-install.log"
    touch "$MYSQL_DIR/.installed"
  fi
  port_busy "$MYSQL_PORT" && die "port $MYSQL_PORT (EVALCTL_MYSQL_PORT) is already in use by another program"
  # No --log-error: mariadbd (running as mysql) logs to stderr, which we redirect.
  launch mariadbd "$LOG_DIR/mariadb.log" \
    /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$MYSQL_DATA" \
    --socket="$MYSQL_SOCKET" --pid-file="$MYSQL_PIDFILE" --port="$MYSQL_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --skip-log-bin --innodb-lock-wait-timeout=900
  wait_until 30 mysql_ok || start_failed "mariadbd did not come up" "$LOG_DIR/mariadb.log"
}

# Create the slurm DB user and (unless keeping state) a fresh, empty accounting database.
setup_database() {
  local pw drop=""
  pw=$(cat "$DB_PASS_FILE")
  if [[ $KEEP_STATE == 0 ]]; then drop="DROP DATABASE IF EXISTS slurm_acct_db;"; fi
  mariadb --no-defaults --socket="$MYSQL_SOCKET" --user=root --batch <<EOF || start_failed "could not set up the accounting database" "$LOG_DIR/mariadb.log"
CREATE OR REPLACE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
CREATE OR REPLACE USER 'slurm'@'localhost' IDENTIFIED BY '$pw';
$drop
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

# ---------------------------------------------------------------------------------------------
# Slurm
# ---------------------------------------------------------------------------------------------
dbd_ok() { sl sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }

ctld_ok() {
  local out
  out=$(sl scontrol ping 2>/dev/null) || return 1
  [[ $out == *"is UP"* ]]
}

# slurmctld has registered itself with slurmdbd (so job records reach sacct) and sacct answers.
accounting_ok() {
  local out
  out=$(sl sacctmgr -n -P show cluster format=cluster,controlport 2>/dev/null) || return 1
  [[ $out == *"$CLUSTER_NAME|$CTLD_PORT"* ]] || return 1
  sl sacct -n -X -a -j 1 >/dev/null 2>&1
}

# Prints "node state" lines from slurmctld.
node_states() {
  sl scontrol -o show nodes 2>/dev/null | sed -n 's/^NodeName=\([^ ]*\) .* State=\([^ ]*\) .*/\1 \2/p'
}

# All nodes usable? Resumes nodes that registered but are DOWN/DRAINED (e.g. saved state).
declare -A RESUMED=()
nodes_ok() {
  local states node state bad=0
  states=$(node_states) || return 1
  [[ -n $states ]] || return 1
  while read -r node state; do
    case $state in
      *NOT_RESPONDING* | UNKNOWN* | *POWER*)
        bad=1
        ;;
      DOWN* | *DRAIN* | *FAIL*)
        bad=1
        if [[ -z ${RESUMED[$node]:-} ]]; then
          RESUMED[$node]=1
          msg "resuming $node (state $state)"
          sl scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
        fi
        ;;
      IDLE* | MIXED* | ALLOCATED* | COMPLETING*) ;;
      *) bad=1 ;;
    esac
  done <<<"$states"
  ((bad == 0))
}

# Before starting anything: every port of a daemon that is not running yet must be free.
preflight_ports() {
  local i n
  if ! running mariadbd && port_busy "$MYSQL_PORT"; then
    die "port $MYSQL_PORT (EVALCTL_MYSQL_PORT) is already in use by another program"
  fi
  if ! running slurmdbd && port_busy "$DBD_PORT"; then
    die "port $DBD_PORT (EVALCTL_SLURMDBD_PORT) is already in use by another program"
  fi
  if ! running slurmctld && port_busy "$CTLD_PORT"; then
    die "port $CTLD_PORT (EVALCTL_SLURMCTLD_PORT) is already in use by another program"
  fi
  for i in "${!NODES[@]}"; do
    n=${NODES[i]}
    if ! running "slurmd:$n" && port_busy $((SLURMD_PORT_BASE + i)); then
      die "port $((SLURMD_PORT_BASE + i)) for slurmd $n (EVALCTL_SLURMD_PORT_BASE) is already in use by another program"
    fi
  done
  return 0
}

slurm_ports_free_or_die() {
  local p n i=0
  for p in "$DBD_PORT:slurmdbd (EVALCTL_SLURMDBD_PORT)" "$CTLD_PORT:slurmctld (EVALCTL_SLURMCTLD_PORT)"; do
    port_busy "${p%%:*}" && die "port ${p%%:*} for ${p#*:} is already in use by another program"
  done
  for n in "${NODES[@]}"; do
    port_busy $((SLURMD_PORT_BASE + i)) &&
      die "port $((SLURMD_PORT_BASE + i)) for slurmd $n (EVALCTL_SLURMD_PORT_BASE) is already in use"
    i=$((i + 1))
  done
  return 0
}

rotate_logs() {
  local f
  for f in "$LOG_DIR"/slurm*.log "$LOG_DIR"/slurm*.stderr; do
    if [[ -f $f ]]; then mv -f "$f" "$f.1"; fi
  done
}

start_slurmd() {
  launch "slurmd-$1" "$LOG_DIR/slurmd-$1.stderr" /usr/sbin/slurmd -D -N "$1"
}

# Start slurmdbd, slurmctld and every slurmd from scratch (none of them may be running).
start_slurm_fresh() {
  slurm_ports_free_or_die
  write_configs
  rotate_logs
  local -a ctld_args=(-D)
  if [[ $KEEP_STATE == 0 ]]; then
    # Fresh state: no saved jobs, node drains or job-ID counter; the DB is recreated too.
    find "$SPOOL_DIR/ctld" "$SPOOL_DIR/d" -mindepth 1 -delete
    ctld_args+=(-c)
  fi
  local n
  for n in "${NODES[@]}"; do mkdir -p "$SPOOL_DIR/d/$n"; done
  setup_database
  launch slurmdbd "$LOG_DIR/slurmdbd.stderr" /usr/sbin/slurmdbd -D
  wait_until 30 dbd_ok || start_failed "slurmdbd did not come up" "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmdbd.stderr"
  launch slurmctld "$LOG_DIR/slurmctld.stderr" /usr/sbin/slurmctld "${ctld_args[@]}"
  # slurmd may start right away: it retries its registration until slurmctld answers.
  for n in "${NODES[@]}"; do start_slurmd "$n"; done
  wait_until 30 ctld_ok ||
    start_failed "slurmctld did not come up" "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmctld.stderr"
}

# ---------------------------------------------------------------------------------------------
# Stopping
# ---------------------------------------------------------------------------------------------
# wait_gone TIMEOUT PID... -> 0 when all are gone
wait_gone() {
  local timeout=$1 p
  shift
  local limit=$((${EPOCHREALTIME/./} + timeout * 1000000))
  while true; do
    local left=0
    for p in "$@"; do if alive "$p"; then left=1; fi; done
    ((left == 0)) && return 0
    ((${EPOCHREALTIME/./} < limit)) || return 1
    sleep 0.05
  done
}

# terminate TIMEOUT PID...: TERM, wait, then KILL what is left.
terminate() {
  local timeout=$1 p
  shift
  (($# > 0)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  wait_gone "$timeout" "$@" && return 0
  local -a left=()
  for p in "$@"; do if alive "$p"; then left+=("$p"); fi; done
  warn "still running after ${timeout}s, sending KILL: ${left[*]}"
  kill -KILL "${left[@]}" 2>/dev/null || true
  wait_gone 5 "${left[@]}" || warn "could not kill: ${left[*]}"
}

# PIDs of the given processes and all their descendants.
with_descendants() {
  ps -e -o pid= -o ppid= | awk -v roots="$*" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) mark[r[i]] = 1 }
    { parent[$1] = $2 }
    END {
      do { changed = 0
           for (p in parent) if (!(p in mark) && (parent[p] in mark)) { mark[p] = 1; changed = 1 } } while (changed)
      for (p in mark) print p
    }'
}

# Stop slurmctld, every slurmd, slurmdbd and any job step left behind by them.
stop_slurm() {
  local -a pids=() steps=()
  local name p
  scan_owned
  for name in slurmctld "${NODES[@]/#/slurmd:}"; do
    mapfile -t -O "${#pids[@]}" pids < <(pids_of "$name")
  done
  if ((${#pids[@]} > 0)); then
    # `scontrol shutdown` stops slurmctld and every registered slurmd; TERM whatever it missed
    # (or everything, when slurmctld is not there to ask).
    if ! running slurmctld || ! sl scontrol shutdown >/dev/null 2>&1 || ! wait_gone 10 "${pids[@]}"; then
      terminate 10 "${pids[@]}"
    fi
  fi
  mapfile -t pids < <(pids_of slurmdbd)
  if ((${#pids[@]} > 0)); then terminate 15 "${pids[@]}"; fi
  # Job steps outlive slurmd; kill them together with the job processes under them.
  scan_owned
  mapfile -t steps < <(pids_of slurmstepd)
  if ((${#steps[@]} > 0)); then
    mapfile -t pids < <(with_descendants "${steps[@]}")
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait_gone 5 "${pids[@]}" || warn "job processes still running: ${pids[*]}"
  fi
}

stop_all() {
  local -a pids=()
  stop_slurm
  scan_owned
  # slurmdbd is gone, so MariaDB and munge can go together.
  mapfile -t pids < <(pids_of mariadbd)
  mapfile -t -O "${#pids[@]}" pids < <(pids_of munged)
  if ((${#pids[@]} > 0)); then terminate 20 "${pids[@]}"; fi
  # Anything else still carrying our marker (should not happen).
  scan_owned
  if ((${#OWNED[@]} > 0)); then
    warn "left-over processes: $(for p in "${!OWNED[@]}"; do printf '%s(%s) ' "${OWNED[$p]}" "$p"; done)"
    terminate 5 "${!OWNED[@]}"
    scan_owned
  fi
  if [[ -d $RUN_DIR ]]; then rm -f "$RUN_DIR"/*.pid "$RUN_DIR"/*.launched; fi
  ((${#OWNED[@]} == 0))
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
take_lock() {
  mkdir -p "$STATE_DIR"
  exec 9>>"$STATE_DIR/.lock"
  flock -w 120 9 || die "another $PROG is still running on $STATE_DIR (lock $STATE_DIR/.lock)"
}

all_daemons_running() {
  local d
  for d in "${ALL_DAEMONS[@]}"; do running "$d" || return 1; done
}

any_daemon_running() { ((${#OWNED[@]} > 0)); }

cluster_healthy() {
  all_daemons_running && munge_ok && mysql_ok && ctld_ok && nodes_ok && accounting_ok
}

cmd_start() {
  check_prerequisites
  local t0
  t0=$(now)
  take_lock
  prepare_dirs
  scan_owned

  if any_daemon_running && config_changed; then
    msg "the settings changed since the cluster was started; restarting it"
    stop_all || die "could not stop the running cluster"
    scan_owned
  elif all_daemons_running && cluster_healthy; then
    msg "already running and healthy (checked in $(elapsed "$t0") s)"
    print_status
    return 0
  fi

  local fresh_slurm=0 n
  local -a pids=()
  preflight_ports
  if ! running munged || ! munge_ok; then
    if running munged; then
      msg "munged is not answering; restarting it"
      mapfile -t pids < <(pids_of munged)
      terminate 10 "${pids[@]}"
    fi
    start_munge
  fi
  if ! running mariadbd || ! mysql_ok; then
    # slurmdbd keeps a connection to the database: restart the Slurm side as well.
    fresh_slurm=1
    mapfile -t pids < <(pids_of mariadbd)
    if ((${#pids[@]} > 0)); then
      msg "mariadbd is not answering; restarting it"
      stop_slurm
      terminate 20 "${pids[@]}"
    fi
    start_mariadb
  fi
  scan_owned
  if ((fresh_slurm == 0)) && { ! running slurmdbd || ! running slurmctld || ! dbd_ok || ! ctld_ok; }; then
    fresh_slurm=1
  fi
  if ((fresh_slurm == 1)); then
    if running slurmctld || running slurmdbd || [[ -n $(pids_of slurmstepd) ]] ||
      [[ -n $(for n in "${NODES[@]}"; do pids_of "slurmd:$n"; done) ]]; then
      msg "some Slurm daemons are missing or unhealthy; restarting all of them"
      stop_slurm
    fi
    msg "starting slurmdbd, slurmctld and slurmd ${NODES[*]}$([[ $KEEP_STATE == 0 ]] && echo ' (fresh state)')"
    start_slurm_fresh
  else
    for n in "${NODES[@]}"; do
      if ! running "slurmd:$n"; then
        msg "starting the missing slurmd $n"
        start_slurmd "$n"
      fi
    done
  fi

  local nodes_logs=()
  for n in "${NODES[@]}"; do nodes_logs+=("$LOG_DIR/slurmd-$n.log"); done
  wait_until "$START_TIMEOUT" nodes_ok ||
    start_failed "the nodes did not become idle: $(node_states | tr '\n' ' ')" "$LOG_DIR/slurmctld.log" "${nodes_logs[@]}"
  wait_until "$START_TIMEOUT" accounting_ok ||
    start_failed "slurmctld did not register with slurmdbd (sacct not usable)" "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmctld.log"
  scan_owned
  all_daemons_running || start_failed "a daemon exited during start-up" "$LOG_DIR"/*.log
  msg "cluster '$CLUSTER_NAME' is up in $(elapsed "$t0") s (state: $STATE_DIR)"
  msg "clients need: export SLURM_CONF=$SLURM_CONF_FILE   (eval \"\$($0 env)\")"
}

cmd_stop() {
  if [[ ! -d $STATE_DIR ]]; then
    scan_owned
    if ((${#OWNED[@]} == 0)); then
      msg "not running (no state directory $STATE_DIR)"
      return 0
    fi
  else
    take_lock
    scan_owned
  fi
  if ((${#OWNED[@]} == 0)); then
    msg "not running"
    return 0
  fi
  local t0
  t0=$(now)
  msg "stopping (${#OWNED[@]} processes)"
  stop_all || die "some processes could not be stopped"
  msg "stopped in $(elapsed "$t0") s"
}

print_status() {
  local d pid all=1 none=1
  printf 'state dir: %s\n' "$STATE_DIR"
  printf 'SLURM_CONF=%s\n' "$SLURM_CONF_FILE"
  for d in "${ALL_DAEMONS[@]}"; do
    pid=$(pids_of "$d" | tr '\n' ' ')
    if [[ -n $pid ]]; then
      printf '  %-14s up    pid %s\n' "$d" "${pid% }"
      none=0
    else
      printf '  %-14s DOWN\n' "$d"
      all=0
    fi
  done
  STATUS_ALL=$all
  STATUS_NONE=$none
  if running slurmctld && [[ -f $SLURM_CONF_FILE ]]; then
    if ctld_ok; then
      echo "slurmctld: UP (ping)"
    else
      echo "slurmctld: NOT RESPONDING to scontrol ping"
      STATUS_ALL=0
    fi
    echo "partitions:"
    sl sinfo -o '  %12P %.5a %.10l %.6D %.8t %N' 2>&1 || true
    echo "nodes:"
    sl sinfo -N -o '  %8N %12P %.10T %.5c %.8m %E' 2>&1 || true
  fi
}

cmd_status() {
  scan_owned
  STATUS_ALL=0
  STATUS_NONE=1
  print_status
  if ((STATUS_ALL == 1)); then
    echo "status: running"
    return 0
  elif ((STATUS_NONE == 1)); then
    echo "status: stopped"
    return 3
  fi
  echo "status: PARTLY running"
  return 1
}

# An accounting outage: slurmdbd alone goes away; slurmctld queues its records meanwhile.
cmd_stop_slurmdbd() {
  take_lock
  scan_owned
  local -a pids=()
  mapfile -t pids < <(pids_of slurmdbd)
  if ((${#pids[@]} == 0)); then
    msg "slurmdbd is not running"
    return 0
  fi
  terminate 15 "${pids[@]}"
  msg "slurmdbd stopped (sacct fails until '$PROG start-slurmdbd')"
}

# The end of the outage: the same database (nothing is dropped), slurmctld reconnects and sends
# what it queued. Unlike `start`, this never restarts the other daemons.
cmd_start_slurmdbd() {
  check_prerequisites
  take_lock
  scan_owned
  if running slurmdbd; then
    msg "slurmdbd is already running"
    return 0
  fi
  running slurmctld && running mariadbd && [[ -f $SLURMDBD_CONF_FILE ]] ||
    die "the cluster is not running: use '$PROG start'"
  port_busy "$DBD_PORT" && die "port $DBD_PORT (EVALCTL_SLURMDBD_PORT) is already in use by another program"
  local t0
  t0=$(now)
  launch slurmdbd "$LOG_DIR/slurmdbd.stderr" /usr/sbin/slurmdbd -D
  wait_until 30 dbd_ok || start_failed "slurmdbd did not come up" "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmdbd.stderr"
  wait_until "$START_TIMEOUT" accounting_ok ||
    start_failed "slurmctld did not register with slurmdbd again" "$LOG_DIR/slurmdbd.log" "$LOG_DIR/slurmctld.log"
  msg "slurmdbd is up again in $(elapsed "$t0") s"
}

cmd_env() {
  printf 'export SLURM_CONF=%q\n' "$SLURM_CONF_FILE"
}

main() {
  (($# == 1)) || {
    usage >&2
    exit 2
  }
  validate_settings
  init_paths
  case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    stop-slurmdbd) cmd_stop_slurmdbd ;;
    start-slurmdbd) cmd_start_slurmdbd ;;
    -h | --help | help) usage ;;
    *)
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"

#!/bin/sh
# agentctl: starts, stops and reports the evalctl-agent installed in this directory by
# `evalctl cluster install`. Usage: agentctl start|stop|status|run
#
# Files next to it: bin/evalctl-agent, agent.args (one argument per line), agent.env (sourced
# by the agent's shell only, never put on a command line), state/ (the agent's journal),
# agent.log, unit (the systemd user unit when systemd supervises the agent), agent.pid (the
# supervisor loop) and agent.child.pid (the agent).
set -u
dir=$(cd "$(dirname "$0")" && pwd -P)
unit=$(cat "$dir/unit" 2>/dev/null || true)
pidfile=$dir/agent.pid
childfile=$dir/agent.child.pid

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
# ours PID WORD: PID is alive and its command line names WORD in this directory.
ours() {
  alive "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$dir/$2"
}

run() {
  echo $$ >"$pidfile"
  stop=
  child=
  sleeper=
  trap 'stop=1; alive "$child" && kill -TERM "$child"; alive "$sleeper" && kill "$sleeper"' TERM INT HUP
  delay=1
  while [ -z "$stop" ]; do
    set --
    while IFS= read -r a || [ -n "$a" ]; do set -- "$@" "$a"; done <"$dir/agent.args"
    (
      # shellcheck source=/dev/null
      if [ -f "$dir/agent.env" ]; then . "$dir/agent.env"; fi
      exec "$dir/bin/evalctl-agent" "$@"
    ) &
    child=$!
    echo "$child" >"$childfile"
    started=$(date +%s)
    rc=0
    wait "$child" || rc=$?
    # A trapped signal ends `wait` early: wait again until the agent has exited.
    while alive "$child"; do wait "$child" || rc=$?; done
    rm -f "$childfile"
    [ -n "$stop" ] && break
    [ $(($(date +%s) - started)) -ge 60 ] && delay=1
    echo "agentctl: evalctl-agent exited with status $rc; restarting in ${delay}s" >&2
    sleep "$delay" &
    sleeper=$!
    wait "$sleeper" || true
    delay=$((delay * 2))
    [ "$delay" -gt 60 ] && delay=60
  done
  rm -f "$pidfile"
}

start() {
  if [ -n "$unit" ]; then
    systemctl --user daemon-reload && systemctl --user enable "$unit" >/dev/null 2>&1 &&
      systemctl --user restart "$unit"
    return
  fi
  if ours "$(cat "$pidfile" 2>/dev/null)" agentctl; then
    echo "agentctl: the agent is running already" >&2
    return 0
  fi
  cd "$dir" || exit 1
  setsid nohup /bin/sh "$dir/agentctl" run >>"$dir/agent.log" 2>&1 </dev/null &
  i=0
  while [ $i -lt 50 ] && ! ours "$(cat "$pidfile" 2>/dev/null)" agentctl; do
    sleep 0.1
    i=$((i + 1))
  done
  if ! ours "$(cat "$pidfile" 2>/dev/null)" agentctl; then
    echo "agentctl: the supervisor did not start; see $dir/agent.log" >&2
    exit 1
  fi
}

stop() {
  if [ -n "$unit" ]; then systemctl --user stop "$unit" 2>/dev/null || true; fi
  sup=$(cat "$pidfile" 2>/dev/null || true)
  child=$(cat "$childfile" 2>/dev/null || true)
  ours "$sup" agentctl && kill -TERM "$sup"
  ours "$child" bin/evalctl-agent && kill -TERM "$child"
  i=0
  while [ $i -lt 100 ] && { ours "$sup" agentctl || ours "$child" bin/evalctl-agent; }; do
    sleep 0.1
    i=$((i + 1))
  done
  ours "$sup" agentctl && kill -KILL "$sup"
  ours "$child" bin/evalctl-agent && kill -KILL "$child"
  rm -f "$pidfile" "$childfile"
}

status() {
  sup=$(cat "$pidfile" 2>/dev/null || true)
  child=$(cat "$childfile" 2>/dev/null || true)
  if ours "$child" bin/evalctl-agent; then
    echo "running supervisor=${sup:-none} agent=$child"
  elif ours "$sup" agentctl; then
    echo "restarting supervisor=$sup"
  else
    echo "stopped"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  run) run ;;
  *)
    echo "usage: $0 start|stop|status|run" >&2
    exit 2
    ;;
esac

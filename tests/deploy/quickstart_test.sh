#!/usr/bin/env bash
# The README's first command, end to end, twice: deploy/quickstart.sh (with its own state
# directory and port; it reuses the build and the running local cluster) must run the three
# quick-start tasks to success, print the results and the way to look around and stop, and a
# second run must reuse the running services and succeed again. Its services are stopped at the
# end, also on failure.
#
#   quickstart_test.sh            # EVALCTL_BUILD_DIR, EVALCTL_QUICKSTART_DIR/_PORT from ctest
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${EVALCTL_QUICKSTART_DIR:?}
out=$(mktemp -d)
trap '"$root/deploy/quickstart.sh" stop-services >/dev/null 2>&1; rm -rf "$out"' EXIT

fail() {
  echo "quickstart_test: $*" >&2
  exit 1
}

# expect FILE TEXT: FILE holds TEXT.
expect() {
  grep -qF -- "$2" "$1" || {
    echo "---- $1" >&2
    tail -n 60 "$1" >&2
    fail "no \"$2\" in the output above"
  }
}

for round in 1 2; do
  "$root/deploy/quickstart.sh" >"$out/run$round.txt" 2>&1 || {
    tail -n 60 "$out/run$round.txt" >&2
    fail "run $round exited with $?"
  }
  for task in evalctl.arithmetic evalctl.unit_conversion evalctl.arithmetic_mc; do
    expect "$out/run$round.txt" "$task"
  done
  expect "$out/run$round.txt" "Look around"
  expect "$out/run$round.txt" "./deploy/quickstart.sh stop"
done
expect "$out/run2.txt" "evalctl-controller is running (pid $(cat "$state/controller.pid"))"
expect "$out/run2.txt" "evalctl-agent is running (pid $(cat "$state/agent.pid"))"

# Both runs are invocations whose three tasks succeeded.
export EVALCTL_CONTROLLER=127.0.0.1:${EVALCTL_QUICKSTART_PORT:?}
cli=${EVALCTL_BUILD_DIR:?}/clients/cli/evalctl
"$cli" ls runs --json >"$out/runs.json" || fail "evalctl ls runs failed"
/usr/bin/python3 - "$out/runs.json" <<'PY' || fail "the quick start's invocations did not all succeed"
import json, sys
runs = json.load(open(sys.argv[1]))
assert len(runs) >= 2, f"{len(runs)} invocation(s), expected 2 or more"
for inv in runs[:2]:
    counts = inv.get("counts", {})
    assert counts.get("succeeded") == 3, f"invocation {inv.get('id')}: {counts}"
PY

"$root/deploy/quickstart.sh" stop-services || fail "stop-services failed"
for name in controller agent; do
  [[ -f "$state/$name.pid" ]] && fail "$name.pid is left after stop-services"
done
echo "quickstart_test: two quick starts succeeded; services stopped"

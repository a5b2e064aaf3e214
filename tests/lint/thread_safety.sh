#!/usr/bin/env bash
# Clang's thread-safety analysis over evalctl's own sources (tests and benchmarks included):
# every file of BUILD_DIR/compile_commands.json outside the build tree is compiled by clang++
# with -fsyntax-only -Wthread-safety -Werror, two at a time. Exits non-zero on any warning.
#
#   tests/lint/thread_safety.sh BUILD_DIR
set -euo pipefail
build_dir=${1:?usage: thread_safety.sh BUILD_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
db=$build_dir/compile_commands.json
[ -f "$db" ] || { echo "thread_safety.sh: $db is missing (configure with CMAKE_EXPORT_COMPILE_COMMANDS=ON)" >&2; exit 1; }
command -v clang++ >/dev/null || { echo "thread_safety.sh: clang++ is missing (deploy/install-deps.sh installs clang)" >&2; exit 1; }

# One shell command per source file: the compiler's own flags with clang++ in front.
/usr/bin/python3 - "$db" "$root" "$build_dir" <<'PY' > "$build_dir/thread_safety.cmds"
import json, os, re, shlex, sys
db, root, build = sys.argv[1], os.path.realpath(sys.argv[2]), os.path.realpath(sys.argv[3])
for c in json.load(open(db)):
    f = os.path.realpath(c["file"])
    if not f.startswith(root + "/") or f.startswith(build + "/"):
        continue
    args = shlex.split(c["command"])
    out, skip = ["clang++"], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            continue
        if a in ("-MD", "-c") or a == c["file"]:
            continue
        out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety", "-Werror", f]
    print("cd " + shlex.quote(c["directory"]) + " && " + " ".join(shlex.quote(a) for a in out))
PY
count=$(wc -l < "$build_dir/thread_safety.cmds")
if ! tr '\n' '\0' < "$build_dir/thread_safety.cmds" | xargs -0 -P2 -n1 bash -c; then
  echo "thread_safety.sh: clang's thread-safety analysis found problems (above)" >&2
  exit 1
fi
echo "thread_safety.sh: $count files clean under -Wthread-safety -Werror"

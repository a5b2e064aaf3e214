#!/usr/bin/env bash
# Builds evalctl's libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in BUILD_DIR and runs
# each for SECONDS (default 20) on a copy of its seed corpus (tests/fuzz/corpus/<target>/).
# Exits non-zero when a target crashes, leaks, trips a sanitizer or an invariant, or hangs on an
# input; the report and the input (crash-*, leak-*, timeout-*, oom-*) are in
# BUILD_DIR/fuzz-run/<target>/. New inputs found are left there too; the corpus in git is not
# changed.
#
#   tests/fuzz/run.sh build-fuzz          # as tests/run.sh does
#   tests/fuzz/run.sh build-fuzz 300      # a longer run
#   build-fuzz/tests/fuzz/slurm_parse_fuzzer CRASH-FILE   # replay one input
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 BUILD_DIR [SECONDS]" >&2
  exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build_dir=$(mkdir -p "$1" && cd "$1" && pwd)
seconds=${2:-20}

# Longest input per target: the configs a user writes and the Slurm output and results.yml the
# agent reads are a few KB; the config corpus holds a 40 KB input that once crashed the loader.
declare -A max_len=(
  [config_loader_fuzzer]=49152
  [slurm_parse_fuzzer]=8192
  [results_fuzzer]=8192
  [agent_events_fuzzer]=4096
)
targets=(config_loader_fuzzer slurm_parse_fuzzer results_fuzzer agent_events_fuzzer)

start=$SECONDS
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DEVALCTL_FUZZ=ON -DEVALCTL_SANITIZE=ON >/dev/null
elif ! grep -q '^EVALCTL_FUZZ:BOOL=ON$' "$build_dir/CMakeCache.txt"; then
  echo "fuzz: $build_dir is a build directory without EVALCTL_FUZZ=ON; use another one" >&2
  exit 2
fi
cmake --build "$build_dir" -j2 --target evalctl_fuzzers
echo "fuzz: built in $((SECONDS - start)) s"

# UBSan aborts on its first report (-fno-sanitize-recover); LeakSanitizer is on with ASan.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

work=$build_dir/fuzz-run
rm -rf "$work"
failed=()
for t in "${targets[@]}"; do
  dir=$work/$t
  mkdir -p "$dir"
  cp -r "$root/tests/fuzz/corpus/$t" "$dir/corpus"
  seeds=$(find "$dir/corpus" -type f | wc -l)
  rc=0
  "$build_dir/tests/fuzz/$t" "$dir/corpus" \
    -max_total_time="$seconds" -max_len="${max_len[$t]}" -timeout=30 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix="$dir/" >"$dir/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
  found=$(find "$dir/corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    echo "fuzz: $t ok: ${runs:-?} inputs in ${seconds} s, corpus $seeds -> $found"
  else
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); log $dir/log; input:" \
      "$(find "$dir" -maxdepth 1 -regex '.*/\(crash\|leak\|timeout\|oom\|slow-unit\)-.*')"
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' "$dir/log" | tail -100
  fi
done

echo "fuzz: ${#targets[@]} targets in $((SECONDS - start)) s (build included)"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi

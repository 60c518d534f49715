#!/usr/bin/env bash
# Sets everything up and runs the whole test suite: the release build, then the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer. Prints one summary line at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

passed=0; failed=0
run_suite() {  # build dir, label
  echo "== $2: building"
  ninja -C "$1" || { failed=$((failed + 1)); return; }
  echo "== $2: testing"
  local log; log=$(mktemp)
  meson test -C "$1" --print-errorlogs --num-processes 1 2>&1 | tee "$log"
  local ok fail
  ok=$(awk '/^Ok:/ {print $2}' "$log"); fail=$(awk '/^Fail:/ {print $2}' "$log")
  local timeout; timeout=$(awk '/^Timeout:/ {print $2}' "$log")
  passed=$((passed + ${ok:-0})); failed=$((failed + ${fail:-1} + ${timeout:-0}))
  rm -f "$log"
}
run_suite build release
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  run_suite build-asan "address+undefined sanitizers"

# The checks that need a GPU: they say SKIPPED and count for nothing where there is none.
echo "== GPU checks (tests/gpu/all.sh)"
gpu_log=$(mktemp)
bash tests/gpu/all.sh build 2>&1 | tee "$gpu_log"
gpu_status=${PIPESTATUS[0]}
if [ "$gpu_status" -ne 0 ]; then
  failed=$((failed + 1))
elif ! grep -q SKIPPED "$gpu_log"; then
  passed=$((passed + 1))
fi
rm -f "$gpu_log"

echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

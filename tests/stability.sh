#!/usr/bin/env bash
# Runs the whole test suite several times in a row, one test at a time, and says per test how many
# runs failed and how long its slowest run took, next to the meson timeout it runs under. The
# figures are what the timeouts in tests/**/meson.build are set from (at least 3x the slowest run
# seen with --load), and 0 failures over many runs is what "the suite never fails by chance" means.
#
#   tests/stability.sh [--runs=N] [--build=DIR] [--load]
#     --runs=N     how many times to run the suite (default 5)
#     --build=DIR  the build directory (default build; build-asan runs with the sanitizer options
#                  that scripts/test.sh sets)
#     --load       one CPU hog (yes >/dev/null) per core while the suite runs
#
# Each run's meson log and testlog.json are kept in DIR/meson-logs/stability/. Exits 1 when any
# run of any test failed.
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: tests/stability.sh [--runs=N] [--build=DIR] [--load]"
runs=5
build=build
load=false
for arg in "$@"; do
  case "$arg" in
    --runs=*) runs=${arg#--runs=} ;;
    --build=*) build=${arg#--build=} ;;
    --load) load=true ;;
    -h | --help) echo "$usage"; exit 0 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }
[ -f "$build/build.ninja" ] || { echo "stability: $build is not a configured build directory (scripts/setup.sh)" >&2; exit 2; }

# The sanitizer build runs as scripts/test.sh runs it.
sanitize=$(meson introspect --buildoptions "$build" |
  python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
if [ "$sanitize" != "none" ]; then
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fi

hogs=()
stop_hogs() {
  local pid
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${hogs[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT

echo "stability: building $build"
ninja -C "$build" >/dev/null

results="$build/meson-logs/stability"
rm -rf "$results"
mkdir -p "$results"
meson introspect --tests "$build" >"$results/tests.json"

if $load; then
  for ((core = 0; core < $(nproc); ++core)); do
    yes >/dev/null &
    hogs+=($!)
  done
  echo "stability: load: ${#hogs[@]} CPU hogs (yes >/dev/null), one per core"
fi

label="$build (b_sanitize=$sanitize)"
if $load; then label+=", under load"; fi
for ((run = 1; run <= runs; ++run)); do
  started=$SECONDS
  status=0
  meson test -C "$build" --num-processes 1 --no-rebuild --print-errorlogs >"$results/run-$run.txt" 2>&1 || status=$?
  cp "$build/meson-logs/testlog.json" "$results/run-$run.json"
  summary=$(grep -E '^(Ok|Fail|Timeout|Skipped):' "$results/run-$run.txt" | tr -s ' \n' ' ')
  echo "stability: run $run/$runs of $label: exit $status, $((SECONDS - started)) s; ${summary:-no summary}"
  if [ "$status" -ne 0 ]; then
    grep -E '^ *[0-9]+/[0-9]+ .* (FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS|INTERRUPT) ' "$results/run-$run.txt" |
      sed 's/^/stability:   /' || true
    echo "stability:   log: $results/run-$run.txt"
  fi
done

python3 - "$results" "$runs" <<'EOF'
import glob, json, os, sys

results, runs = sys.argv[1], int(sys.argv[2])
timeouts = {t["name"]: t["timeout"] for t in json.load(open(os.path.join(results, "tests.json")))}
failing = {"FAIL", "TIMEOUT", "ERROR", "UNEXPECTEDPASS", "INTERRUPT"}
tests = {}  # name -> [runs, failed, slowest, results seen]
for path in sorted(glob.glob(os.path.join(results, "run-*.json"))):
    for line in open(path):
        if not line.strip():
            continue
        entry = json.loads(line)
        # testlog.json names a test "project[:suite] / name"; meson introspect names it "name".
        row = tests.setdefault(entry["name"].split(" / ", 1)[-1], [0, 0, 0.0, set()])
        row[0] += 1
        row[1] += entry["result"] in failing
        row[2] = max(row[2], float(entry["duration"]))
        row[3].add(entry["result"])
width = max([len(n) for n in tests] + [4])
print("%-*s %5s %7s %12s %10s %8s  %s" % (width, "test", "runs", "failed", "slowest (s)", "timeout", "margin", "results"))
for name in sorted(tests):
    count, failed, slowest, seen = tests[name]
    timeout = timeouts.get(name)
    margin = "%.1fx" % (timeout / slowest) if timeout and slowest > 0 else "-"
    print("%-*s %5d %7d %12.1f %10s %8s  %s" % (width, name, count, failed, slowest,
          "%d s" % timeout if timeout else "-", margin, ",".join(sorted(seen))))
failures = sum(row[1] for row in tests.values())
print("stability: %d tests, %d failures over %d runs" % (len(tests), failures, runs))
sys.exit(1 if failures else 0)
EOF

#!/usr/bin/env bash
# llama.cpp's prebuilt CUDA 12 build (the real-runner fixture of tests/runners/), native against
# brokered on a GPU host (issue 14): the larger seeded model with every layer offloaded, the same
# wheel, NVIDIA's CUDA 12 libraries from PyPI (native) against the shims and a gpu-broker on the
# real driver (brokered), alternating rounds; medians of prompt processing and decode tokens per
# second, time to first token and process start to first token, with CUDA graphs on (ggml's
# default) and off (GGML_CUDA_DISABLE_GRAPHS=1); then four runners at once each way. Greedy tokens
# must be identical between native and brokered (exit 1 otherwise, or when a run fails); the
# speed targets are printed as met or not.
#
#   tests/gpu/runners.sh [build-dir]
# Needs the fixture with NVIDIA's libraries (tests/runners/setup_venv.sh VENV --native, which
# needs PyPI) in $GPUBROKER_RUNNER_VENV (default build/runners-venv). Skips, saying so, where
# there is no GPU or no fixture.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
name=tests/gpu/runners
source tests/gpu/require_gpu.sh

venv=${GPUBROKER_RUNNER_VENV:-$build/runners-venv}
python=$venv/bin/python
if [ ! -x "$python" ]; then
  echo "$name: SKIPPED: no runner fixture in $venv (tests/runners/setup_venv.sh $venv --native installs it from PyPI)"
  exit 0
fi
native_libs=$("$python" - <<'PY'
import importlib.util, os
dirs = []
for package in ("nvidia.cuda_runtime", "nvidia.cublas"):
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise SystemExit(1)
    dirs.append(os.path.join(list(spec.submodule_search_locations)[0], "lib"))
print(":".join(dirs))
PY
) || { echo "$name: SKIPPED: no NVIDIA CUDA 12 libraries in $venv (setup_venv.sh --native)"; exit 0; }
if [ -z "${GPUBROKER_PREBUILT:-}" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null || exit 1
  ninja -C "$build" >/dev/null || exit 1
fi
model=${GPUBROKER_RUNNER_MODEL:-$build/runners-large.gguf}
[ -f "$model" ] || "$python" tests/runners/make_model.py "$model" --size=large || exit 1

work=$(mktemp -d /tmp/gpubroker-gpu-runners-XXXXXX)
broker_pid=
trap '[ -n "$broker_pid" ] && kill $broker_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
socket="$work/broker.sock"
"$build/broker/gpu-broker" --driver=cuda --socket="$socket" --log-level=warning 2> "$work/broker.log" &
broker_pid=$!
for _ in $(seq 1000); do [ -S "$socket" ] && break; sleep 0.01; done
[ -S "$socket" ] || { echo "$name: FAILED: the broker did not start:"; cat "$work/broker.log"; exit 1; }

prompt=${GPUBROKER_RUNNER_PROMPT:-512} generate=${GPUBROKER_RUNNER_GENERATE:-128}
bench=("$python" tests/runners/runner.py bench "$model" 99 "$prompt" "$generate")
native() { env LD_LIBRARY_PATH="$native_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
brokered() { "$build/tools/gpu-broker-run/gpu-broker-run" --socket="$socket" -- "$@"; }
one() {  # one MODE GRAPHS: one run's JSON line, or exit 1
  local graphs_env=() out
  [ "$2" = off ] && graphs_env=(GGML_CUDA_DISABLE_GRAPHS=1)
  out=$("$1" env "${graphs_env[@]}" GGML_NO_BACKTRACE=1 "${bench[@]}" 2> "$work/$1.err" | tail -n 1)
  if [ -z "$out" ]; then
    echo "$name: FAILED: a $1 run (graphs $2):" >&2
    grep -E 'error|not supported|cannot open' "$work/$1.err" | head -n 20 >&2
    return 1
  fi
  echo "{\"mode\": \"$1\", \"graphs\": \"$2\", \"runners\": 1, \"report\": $out}"
}
rounds=${GPUBROKER_BENCH_ROUNDS:-3}
: > "$work/runs.jsonl"
for graphs in on off; do
  for round in $(seq "$rounds"); do
    one native "$graphs" >> "$work/runs.jsonl" || exit 1
    one brokered "$graphs" >> "$work/runs.jsonl" || exit 1
  done
done
for mode in native brokered; do  # four at once, graphs on
  pids=()
  for i in 1 2 3 4; do
    ( "$mode" env GGML_NO_BACKTRACE=1 "${bench[@]}" 2> "$work/$mode-four-$i.err" | tail -n 1 > "$work/$mode-four-$i.json" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  for i in 1 2 3 4; do
    [ -s "$work/$mode-four-$i.json" ] || { echo "$name: FAILED: $mode runner $i of four"; exit 1; }
    echo "{\"mode\": \"$mode\", \"graphs\": \"on\", \"runners\": 4, \"report\": $(cat "$work/$mode-four-$i.json")}" >> "$work/runs.jsonl"
  done
done
kill -TERM $broker_pid && wait $broker_pid
broker_status=$?
broker_pid=
[ $broker_status -eq 0 ] || { echo "$name: FAILED: the broker exited with $broker_status"; exit 1; }

python3 - "$work/runs.jsonl" "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)" "$prompt" "$generate" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
print("%s: machine %s, prompt %s tokens, %s generated, medians of %d rounds" % (
    "tests/gpu/runners", sys.argv[2], sys.argv[3], sys.argv[4],
    len([r for r in runs if r["mode"] == "native" and r["graphs"] == "on" and r["runners"] == 1])))
metrics = [("prompt_tokens_per_second", "prompt tok/s", 1), ("decode_tokens_per_second", "decode tok/s", 1),
           ("time_to_first_token_seconds", "first token s", -1), ("start_to_first_token_seconds", "start to first token s", -1)]
def median(mode, graphs, runners, key):
    return statistics.median(r["report"][key] for r in runs if (r["mode"], r["graphs"], r["runners"]) == (mode, graphs, runners))
verdicts = []
for graphs, runners in (("on", 1), ("off", 1), ("on", 4)):
    print("graphs %s, %d runner%s:" % (graphs, runners, "s" if runners > 1 else ""))
    for key, label, _ in metrics:
        n, b = median("native", graphs, runners, key), median("brokered", graphs, runners, key)
        print("  %-24s native %10.3f  brokered %10.3f  ratio %.3f" % (label, n, b, b / n))
targets = [("decode, graphs on", "on", 1, "decode_tokens_per_second", 0.97), ("decode, graphs off", "off", 1, "decode_tokens_per_second", 0.95),
           ("prompt, graphs on", "on", 1, "prompt_tokens_per_second", 0.97)]
for label, graphs, runners, key, target in targets:
    ratio = median("brokered", graphs, runners, key) / median("native", graphs, runners, key)
    print("target %-20s brokered/native %.3f >= %.2f: %s" % (label, ratio, target, "met" if ratio >= target else "NOT MET"))
ratio = median("brokered", "on", 1, "start_to_first_token_seconds") / median("native", "on", 1, "start_to_first_token_seconds")
print("target start to first token  brokered/native %.3f <= 1.00: %s" % (ratio, "met" if ratio <= 1.0 else "NOT MET"))
reference = runs[0]["report"]["tokens"]
different = [r for r in runs if r["report"]["tokens"] != reference]
print("greedy tokens identical across all %d runs: %s" % (len(runs), "yes" if not different else "NO"))
sys.exit(1 if different else 0)
PY
status=$?
[ $status -eq 0 ] && echo "$name: passed" || echo "$name: FAILED"
exit $status

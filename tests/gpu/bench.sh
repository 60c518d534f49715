#!/usr/bin/env bash
# Native against brokered on a GPU host (issue 9): one nvcc-built program (bench_native.cu),
# run against the real libcudart from /usr/local/cuda and against the libcudart shim and a
# gpu-broker on the real driver, alternately, printed side by side with ratios and the issue's targets
# (brokered launch rate >= 0.9x native, pinned bandwidth >= 0.95x native).
# Skips (exit 0, saying so) where there is no GPU or no nvcc; exits 1 when a run fails.
# Usage: tests/gpu/bench.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cuda=${CUDA_HOME:-/usr/local/cuda}

name=tests/gpu/bench
source tests/gpu/require_gpu.sh
nvidia-smi -L 2>/dev/null || true

if [ -z "${GPUBROKER_PREBUILT:-}" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null || exit 1
  ninja -C "$build" broker/gpu-broker shim/runtime/13/libcudart.so.13 >/dev/null || exit 1
fi
work=$(mktemp -d /tmp/gpubroker-gpu-bench-XXXXXX)
broker_pid=
trap '[ -n "$broker_pid" ] && kill $broker_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# Native SASS for the H100/H200 (sm_90) plus PTX, so that a newer GPU still runs it.
"$cuda/bin/nvcc" -O2 -cudart shared -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
  -o "$work/bench_native" tests/gpu/bench_native.cu || exit 1

"$cuda/bin/nvcc" -O2 -cudart shared -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
  -o "$work/pinned_pages" tests/gpu/pinned_pages.cu || exit 1
# Where a pinned-bandwidth gap comes from: the broker pins a shared memfd mapping (the session's
# host arena) with cuMemHostRegister, where a native program has cudaMallocHost's memory.
echo "tests/gpu/bench: native pinned GB/s by kind of memory (tests/gpu/pinned_pages.cu)"
echo "  $(LD_LIBRARY_PATH="$cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/pinned_pages" || echo FAILED)"
echo "  transparent huge pages for shared memory: $(cat /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null || echo unknown)"
"$build/broker/gpu-broker" --driver=cuda --socket="$work/broker.sock" --log-level=warning &
broker_pid=$!
for _ in $(seq 500); do [ -S "$work/broker.sock" ] && break; sleep 0.01; done
[ -S "$work/broker.sock" ] || { echo "tests/gpu/bench: FAILED: the broker did not start"; exit 1; }
# Native and brokered alternate, GPUBROKER_BENCH_ROUNDS times (default 3): one run of each varies
# by 10-15% from the next on the same machine, more than the margins the targets leave.
rounds=${GPUBROKER_BENCH_ROUNDS:-3}
natives=() brokereds=()
for round in $(seq "$rounds"); do
  native=$(LD_LIBRARY_PATH="$cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/bench_native") ||
    { echo "tests/gpu/bench: FAILED: the native run"; exit 1; }
  echo "tests/gpu/bench: round $round native (the real libcudart from $cuda/lib64): $native"
  brokered=$(GPUBROKER_SOCKET="$work/broker.sock" LD_LIBRARY_PATH="$PWD/$build/shim/runtime/13${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$work/bench_native") ||
    { echo "tests/gpu/bench: FAILED: the brokered run"; exit 1; }
  echo "tests/gpu/bench: round $round brokered (the libcudart shim and gpu-broker --driver=cuda): $brokered"
  natives+=("$native") brokereds+=("$brokered")
done
kill -TERM $broker_pid && wait $broker_pid
broker_status=$?
broker_pid=
[ $broker_status -eq 0 ] || { echo "tests/gpu/bench: FAILED: the broker exited with $broker_status"; exit 1; }

python3 - "$rounds" "${natives[@]}" "${brokereds[@]}" <<'PY'
import json, statistics, sys
rounds = int(sys.argv[1])
native = [json.loads(a) for a in sys.argv[2:2 + rounds]]
brokered = [json.loads(a) for a in sys.argv[2 + rounds:]]
# The ratio is brokered speed over native speed: for times (lower is better) native / brokered.
rows = [("launches_per_s", "kernel launches/s", 0.9), ("pinned_h2d_gbps", "pinned H2D GB/s", 0.95),
        ("pinned_d2h_gbps", "pinned D2H GB/s", 0.95), ("pipeline_per_s", "copy-kernel-copy steps/s", None),
        ("pageable_h2d_4k_us", "pageable H2D 4 KiB, us", None), ("pageable_d2h_4k_us", "pageable D2H 4 KiB, us", None),
        ("pageable_d2h_512k_us", "pageable D2H 512 KiB, us", None)]
def ratio(key, n, b):
    return n / b if key.endswith("_us") else b / n
print(f"medians of {rounds} alternating rounds; the ratio of the medians, and each round's ratio")
print(f"{'figure':<26} {'native':>12} {'brokered':>12} {'ratio':>7}  {'rounds':<22} target")
for key, label, target in rows:
    n = statistics.median(r[key] for r in native)
    b = statistics.median(r[key] for r in brokered)
    each = " ".join(f"{ratio(key, x[key], y[key]):.2f}" for x, y in zip(native, brokered))
    r = ratio(key, n, b)
    verdict = "" if target is None else f">= {target}x: {'met' if r >= target else 'MISSED'}"
    print(f"{label:<26} {n:>12.4g} {b:>12.4g} {r:>6.3f}x  {each:<22} {verdict}")
PY

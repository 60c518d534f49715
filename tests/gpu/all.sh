#!/usr/bin/env bash
# Every GPU check in one pass, for a short lease on a GPU host: the real CUDA programs through the
# shims and a broker on the real driver, the broker scenarios (run.sh), native against brokered
# (bench.sh), and gpubroker-bench's runtime, first-call, discovery and copies scenarios against a
# broker on the real driver. Prints a summary line per step; exits 1 when any step failed.
# Skips (exit 0, saying so) where there is no GPU.
#
#   tests/gpu/all.sh [build-dir]
# With GPUBROKER_PREBUILT=1 nothing is built: the build directory was built on another machine
# and carried here (its lib/ folder may hold Debian libraries the host lacks).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
cuda=${CUDA_HOME:-/usr/local/cuda}

echo "== host: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "tests/gpu/all: SKIPPED: nvidia-smi sees no usable GPU"
  exit 0
fi
if [ -z "${GPUBROKER_PREBUILT:-}" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null || exit 1
  ninja -C "$build" >/dev/null || exit 1
fi
[ -d "$build/lib" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$PWD/$build/lib"
# The broker finds NVIDIA's libcublas here when the loader's cache does not list it.
broker_library_path="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$cuda/lib64"
[ -d /usr/local/nvidia/lib64 ] && broker_library_path="$broker_library_path:/usr/local/nvidia/lib64"
missing=$(ldd "$build/broker/gpu-broker" "$build/shim/runtime/13/libcudart.so.13" | grep 'not found' | sort -u)
[ -z "$missing" ] || { echo "tests/gpu/all: FAILED: libraries not found: $missing"; exit 1; }

work=$(mktemp -d /tmp/gpubroker-gpu-all-XXXXXX)
broker_pid=
trap '[ -n "$broker_pid" ] && kill $broker_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
failed=()
step() {  # step NAME SECONDS COMMAND...: runs one check, bounded, and records its verdict
  local name=$1 seconds=$2; shift 2
  echo "== $name"
  local t0=$SECONDS
  timeout --kill-after=5 "$seconds" "$@" 2>&1 | tee "$work/step.log"
  local status=${PIPESTATUS[0]}
  # On a GPU host a check that skips has not passed.
  grep -q SKIPPED "$work/step.log" && status=77
  echo "-- $name: $([ $status -eq 0 ] && echo passed || echo "FAILED (status $status)") in $((SECONDS - t0)) s"
  [ $status -eq 0 ] || failed+=("$name")
}

socket="$work/broker.sock"
LD_LIBRARY_PATH="$broker_library_path" "$build/broker/gpu-broker" --driver=cuda --socket="$socket" \
  --log-level=info > "$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1000); do [ -S "$socket" ] && break; sleep 0.01; done
if [ ! -S "$socket" ]; then
  echo "tests/gpu/all: FAILED: the broker on the real driver did not start:"
  cat "$work/broker.log"
  exit 1
fi
head -n 20 "$work/broker.log"

run=("$build/tools/gpu-broker-run/gpu-broker-run" --socket="$socket" --)
for program in discovery runtime_basics_13 kernels_13 loader_pattern_13 runtime_basics_12 kernels_12 free_beside_busy_13; do
  [ -x "$build/tests/programs/$program" ] && step "program $program" 30 "${run[@]}" "$build/tests/programs/$program"
done
# The device timeline on the real driver (docs/trace.md): the kernel program traced; the broker's
# timing events, anchored to the host clock, give each kernel a device time. The broker writes a
# session's device work when the session ends, so the check waits for its "session end".
if [ -x "$build/tests/programs/kernels_13" ]; then
  step "trace: kernels timed on the device" 40 bash -c '
    run=$1 socket=$2 trace=$3/trace program=$4 tool=$5
    "$run" --socket="$socket" --trace="$trace" -- "$program" > /dev/null || exit 1
    for _ in $(seq 50); do "$tool" "$trace" | grep -q "session end" && break; sleep 0.1; done
    "$tool" "$trace" | grep "device:kernel" | head -n 3
    "$tool" --summary "$trace" | grep -A 4 "device work"
    timed=$("$tool" "$trace" | grep -c "device:kernel"); echo "kernels timed on the device: $timed"
    [ "$timed" -ge 5 ]' _ "$build/tools/gpu-broker-run/gpu-broker-run" "$socket" "$work" \
    "$build/tests/programs/kernels_13" "$build/tools/gpu-broker-trace/gpu-broker-trace"
fi
# The driver API as NVIDIA's samples use it, beside the runtime, with kernels from cubin, fatbin,
# PTX and NVRTC; and a statically linked runtime, told why it sees no device.
[ -x "$build/tests/programs/driver_program_13" ] &&
  LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" step "program driver_program_13" 30 \
    "${run[@]}" "$build/tests/programs/driver_program_13" "$build/tests/programs/driver_kernels.cubin" \
    "$build/tests/programs/driver_kernels.fatbin" "$build/tests/programs/driver_kernels.ptx"
[ -x "$build/tests/programs/static_runtime_13" ] &&
  step "program static_runtime_13" 30 "${run[@]}" "$build/tests/programs/static_runtime_13"
# Contexts per user on the real driver: nobody's kernel pointed at root's buffer must fault in
# nobody's context only (a broker of its own per mode; needs root for the second user).
[ -x "$build/tests/programs/isolation_probe_13" ] &&
  LD_LIBRARY_PATH="$broker_library_path" step "isolation: one user's kernel against another's memory" 60 \
    bash tests/programs/isolation_test.sh "$build/broker/gpu-broker" "$PWD/$build/shim/runtime/13" \
    "$build/tests/programs/isolation_probe_13" --driver=cuda
# A second broker of its own, beside this one: the GPU takes both contexts.
LD_LIBRARY_PATH="$broker_library_path" step "native against brokered (tests/gpu/bench.sh)" 120 \
  bash tests/gpu/bench.sh "$build"
bench=("$build/tools/bench/gpubroker-bench")
step "bench runtime" 60 "${bench[@]}" runtime --socket="$socket"
step "bench first-call" 30 "${bench[@]}" first-call --socket="$socket"
# The first call by part, the shim against NVIDIA's runtime, three fresh processes each.
if cc -O2 -o "$work/first_call_probe" tests/gpu/first_call_probe.c -ldl; then
  step "first call by part, shim" 30 env GPUBROKER_SOCKET="$socket" \
    LD_LIBRARY_PATH="$PWD/$build/shim/runtime/13${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    bash -c 'for _ in 1 2 3; do "$0" || exit 1; done' "$work/first_call_probe"
  step "first call by part, native" 60 env LD_LIBRARY_PATH="$cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    bash -c 'for _ in 1 2 3; do "$0" || exit 1; done' "$work/first_call_probe"
else
  failed+=("first_call_probe build")
fi
step "bench discovery" 30 "${bench[@]}" discovery --socket="$socket"
step "bench copies" 60 "${bench[@]}" copies --socket="$socket" --max-size=256M
step "bench scaling" 60 "${bench[@]}" scaling --socket="$socket" --seconds=1
kill -TERM $broker_pid; wait $broker_pid
broker_status=$?
broker_pid=
# GPUBROKER_LOG_DIR=DIR keeps the broker's log.
[ -n "${GPUBROKER_LOG_DIR:-}" ] && cp "$work/broker.log" "$GPUBROKER_LOG_DIR/broker.log"
echo "-- broker on the real driver exited with $broker_status; its warnings and errors:"
grep -iE 'warn|error|unsupported' "$work/broker.log" | head -n 40
[ $broker_status -eq 0 ] || failed+=("broker exit")

# llama.cpp's prebuilt CUDA 12 build, native against brokered. Its fixture comes from PyPI
# (setup_venv.sh --native); a lent GPU host that cannot reach PyPI says so instead.
if [ -x "${GPUBROKER_RUNNER_VENV:-$build/runners-venv}/bin/python" ]; then
  LD_LIBRARY_PATH="$broker_library_path" step "real runner, native against brokered (tests/gpu/runners.sh)" 300 \
    bash tests/gpu/runners.sh "$build"
else
  echo "== real runner, native against brokered: not run: no fixture in ${GPUBROKER_RUNNER_VENV:-$build/runners-venv}" \
       "(tests/runners/setup_venv.sh DIR --native, which needs PyPI)"
fi
LD_LIBRARY_PATH="$broker_library_path" GPUBROKER_KILL_ITERATIONS=${GPUBROKER_KILL_ITERATIONS:-50} \
  step "broker scenarios (tests/gpu/run.sh)" 150 bash tests/gpu/run.sh "$build"

if [ ${#failed[@]} -eq 0 ]; then
  echo "tests/gpu/all: passed"
else
  echo "tests/gpu/all: FAILED: ${failed[*]}"
  exit 1
fi

#!/usr/bin/env bash
# Sets everything up and runs the main job: a gpu-broker (the real driver on a GPU host, the sim
# driver elsewhere) serving real CUDA programs, built by nvcc with -cudart shared, through
# gpu-broker-run (the shims preloaded in front of the real libraries); broker-top's one-screen
# view of the broker while a client works; then the runtime benchmark against the same broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ninja -C build >/dev/null

dir=$(mktemp -d /tmp/gpubroker-run-XXXXXX)
socket="$dir/broker.sock"
# On the sim driver, the kernel program's kernels run as the host implementations of this plugin.
GPUBROKER_SIM_KERNELS="$PWD/build/tests/programs/libkernels_plugin.so" \
  ./build/broker/gpu-broker --driver=auto --socket="$socket" --log-level=info &
broker=$!
trap 'kill -TERM $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 500); do [ -S "$socket" ] && break; sleep 0.01; done

run=(./build/tools/gpu-broker-run/gpu-broker-run --socket="$socket" --)
# First, while no other session changes the device's free memory (it compares what each library
# reports).
if [ -x build/tests/programs/discovery ]; then
  echo "== Ollama's bootstrap discovery through libcudart, libcuda and NVML"
  "${run[@]}" build/tests/programs/discovery
fi
for program in runtime_basics_13 kernels_13; do
  if [ -x "build/tests/programs/$program" ]; then
    echo "== gpu-broker-run build/tests/programs/$program (nvcc -cudart shared)"
    "${run[@]}" "build/tests/programs/$program"
  else
    echo "== nvcc not found: build/tests/programs/$program was not built"
  fi
done

echo "== broker-top --once while gpubroker-bench runtime works against the same broker"
./build/tools/bench/gpubroker-bench runtime --socket="$socket" "$@" > "$dir/bench.txt" &
bench=$!
sleep 2
./build/tools/broker-top/broker-top --socket="$socket" --once
wait $bench
echo "== gpubroker-bench runtime"
cat "$dir/bench.txt"

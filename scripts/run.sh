#!/usr/bin/env bash
# Sets everything up and runs the main job: a gpu-broker (the real driver on a GPU host, the sim
# driver elsewhere) serving a real CUDA program, built by nvcc with -cudart shared, through the
# libcudart shim; then the runtime benchmark against the same broker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ninja -C build >/dev/null

dir=$(mktemp -d /tmp/gpubroker-run-XXXXXX)
./build/broker/gpu-broker --driver=auto --socket="$dir/broker.sock" --log-level=info &
broker=$!
trap 'kill -TERM $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 500); do [ -S "$dir/broker.sock" ] && break; sleep 0.01; done

program=build/tests/programs/runtime_basics_13
if [ -x "$program" ]; then
  echo "== a CUDA 13 program (nvcc -cudart shared) through libcudart.so.13 -> gpu-broker"
  GPUBROKER_SOCKET="$dir/broker.sock" LD_LIBRARY_PATH="$PWD/build/shim/runtime/13" "$program"
else
  echo "== nvcc not found: no CUDA program to serve; running the benchmark only"
fi
echo "== gpubroker-bench runtime against the same broker"
./build/tools/bench/gpubroker-bench runtime --socket="$dir/broker.sock" "$@"

#!/usr/bin/env bash
# Sets everything up and runs the main job. Until the broker serves CUDA programs (issues 3-5),
# the main job is the transport benchmark: the shared-memory rings against sockets and memcpy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ninja -C build >/dev/null
exec ./build/tools/bench/gpubroker-bench ipc "$@"

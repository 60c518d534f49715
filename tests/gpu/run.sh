#!/usr/bin/env bash
# The broker scenarios of tests/broker/*_test.cc on the real driver, for a host with an NVIDIA GPU.
# Skips (exit 0, saying so) where there is none. Usage: tests/gpu/run.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}
areas="session memory streams modules blas vmm graphs host_funcs"  # as tests/meson.build lists them

name=tests/gpu
source tests/gpu/require_gpu.sh
nvidia-smi -L 2>/dev/null || true

# GPUBROKER_PREBUILT=1: the build directory was built elsewhere and carried here (tests/gpu/all.sh).
if [ -z "${GPUBROKER_PREBUILT:-}" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null || exit 1
  ninja -C "$build" $(printf 'tests/broker_%s_test ' $areas) broker/gpu-broker >/dev/null || exit 1
fi

export GPUBROKER_BROKER="$PWD/$build/broker/gpu-broker"
export GPUBROKER_TEST_DRIVER=cuda
export GPUBROKER_KILL_ITERATIONS=${GPUBROKER_KILL_ITERATIONS:-200}
echo "tests/gpu: broker scenarios on the real driver"
status=0
for area in $areas; do
  "$build/tests/broker_${area}_test" --reporter compact || status=1
done
echo "tests/gpu: $( [ $status -eq 0 ] && echo passed || echo FAILED )"
exit $status

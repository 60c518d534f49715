#!/usr/bin/env bash
# The broker scenarios of tests/broker_test.cc on the real driver, for a host with an NVIDIA GPU.
# Skips (exit 0, saying so) where there is none. Usage: tests/gpu/run.sh [build-dir]
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build}

# The driver is found through the loader's cache, or on LD_LIBRARY_PATH (tests/gpu/all.sh).
has_driver() {
  ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1' && return 0
  local dir
  local IFS=": "
  for dir in ${LD_LIBRARY_PATH:-} /usr/lib/x86_64-linux-gnu /usr/local/nvidia/lib64; do
    [ -e "$dir/libcuda.so.1" ] && [ "$dir" != "${PWD}/${build}/shim/driver" ] && return 0
  done
  return 1
}
if ! has_driver; then
  echo "tests/gpu: SKIPPED: no NVIDIA driver (libcuda.so.1) on this host"
  exit 0
fi
if command -v nvidia-smi >/dev/null && ! nvidia-smi -L >/dev/null 2>&1; then
  echo "tests/gpu: SKIPPED: nvidia-smi sees no usable GPU"
  exit 0
fi
nvidia-smi -L 2>/dev/null || true

# GPUBROKER_PREBUILT=1: the build directory was built elsewhere and carried here (tests/gpu/all.sh).
if [ -z "${GPUBROKER_PREBUILT:-}" ]; then
  [ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null || exit 1
  ninja -C "$build" tests/broker_test broker/gpu-broker >/dev/null || exit 1
fi

export GPUBROKER_BROKER="$PWD/$build/broker/gpu-broker"
export GPUBROKER_TEST_DRIVER=cuda
export GPUBROKER_KILL_ITERATIONS=${GPUBROKER_KILL_ITERATIONS:-200}
echo "tests/gpu: broker scenarios on the real driver"
"$build/tests/broker_test" --reporter compact
status=$?
echo "tests/gpu: $( [ $status -eq 0 ] && echo passed || echo FAILED )"
exit $status

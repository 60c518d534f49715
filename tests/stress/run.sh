#!/usr/bin/env bash
# Runs the reliability scenarios of RELIABILITY.md against a build's broker, sim and shims:
#   tests/stress/run.sh [--build=DIR] --profile=short|long [--scenario=storm,broker-kill,hostile,targeted,isolation,resources,load]
# The short profile (about a minute on 2 cores) is also the meson test 'stress short profile'.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
args=()
for a in "$@"; do
  case $a in
    --build=*) build=$(cd "${a#--build=}" && pwd) ;;
    *) args+=("$a") ;;
  esac
done
ninja -C "$build" broker/gpu-broker sim/libgpubroker-sim.so tests/stress/stress_client \
  tests/stress/stress_driver tests/stress/libstress_kernels.so >/dev/null
export GPUBROKER_BROKER=$build/broker/gpu-broker
export GPUBROKER_SIM_LIBRARY=$build/sim/libgpubroker-sim.so
export GPUBROKER_STRESS_CLIENT=$build/tests/stress/stress_client
export GPUBROKER_SIM_KERNELS=$build/tests/stress/libstress_kernels.so
export GPUBROKER_FATBIN_DIR=$root/tests/data/fatbin
exec "$build/tests/stress/stress_driver" "${args[@]}"

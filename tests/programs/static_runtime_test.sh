#!/usr/bin/env bash
# A statically linked CUDA runtime against gpubroker's libcuda.so.1 and a sim broker:
#   static_runtime_test.sh RUN_WITH_BROKER BROKER SIM_LIBRARY SHIM_DIR DRIVER_DIR PROGRAM
# The program must report no CUDA device, and the one line on stderr must say why and what to do.
set -uo pipefail
run_with_broker=$1 broker=$2 sim=$3 shim_dir=$4 driver_dir=$5 program=$6
output=$(LD_LIBRARY_PATH="$driver_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$run_with_broker" "$broker" "$sim" "$shim_dir" "$program" 2>&1)
status=$?
echo "$output"
[ $status -eq 0 ] || { echo "FAILED: the program did not see cudaErrorNoDevice (exit $status)"; exit 1; }
lines=$(grep -c "links the CUDA runtime statically" <<<"$output")
[ "$lines" -eq 1 ] || { echo "FAILED: the static-runtime line appeared $lines times, not once"; exit 1; }
grep -q -- "-cudart shared" <<<"$output" || { echo "FAILED: the line does not say to build with -cudart shared"; exit 1; }
echo "PASSED: a statically linked runtime sees no device and is told why, once"

#!/usr/bin/env bash
# Runs a CUDA program against the runtime shim and a fresh sim broker:
#   run_with_broker.sh BROKER SIM_LIBRARY SHIM_DIR PROGRAM [ARGS...]
# The program loads libcudart from SHIM_DIR (first in LD_LIBRARY_PATH), exactly as a runner
# would under gpu-broker-run. Exits with the program's status; the broker must stop cleanly too.
set -uo pipefail
broker=$1 sim=$2 shim_dir=$3; shift 3
dir=$(mktemp -d /tmp/gpubroker-program-XXXXXX)
trap 'kill $broker_pid 2>/dev/null; wait $broker_pid 2>/dev/null; rm -rf "$dir"' EXIT
"$broker" --driver=sim --sim-library="$sim" --socket="$dir/broker.sock" --arena-bytes=1G --log-level=warning &
broker_pid=$!
# The socket appears once the broker listens; 30 s is a deadline for a loaded machine, not a figure.
started=$SECONDS
until [ -S "$dir/broker.sock" ]; do
  kill -0 $broker_pid 2>/dev/null || { echo "the broker exited before it listened"; exit 1; }
  ((SECONDS - started < 30)) || { echo "the broker did not listen within 30 s"; exit 1; }
  sleep 0.01
done
echo "the broker listened after $((SECONDS - started)) s"
# In a sanitizer build the shim needs the sanitizer runtimes loaded first, and the program
# (built by nvcc) has none of its own: preload them.
preload=$(ldd "$shim_dir"/libcudart.so.* 2>/dev/null | awk '/lib(asan|ubsan)\.so/ {print $3}' | sort -u | tr '\n' ':')
GPUBROKER_SOCKET="$dir/broker.sock" LD_LIBRARY_PATH="$shim_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  LD_PRELOAD="${preload%:}" "$@"
status=$?
kill -TERM $broker_pid && wait $broker_pid
broker_status=$?
[ $broker_status -eq 0 ] || { echo "broker exited with $broker_status"; exit 1; }
exit $status

#!/usr/bin/env bash
# One user's kernel against another user's device memory, with real processes of two users:
#   isolation_test.sh BROKER SHIM_DIR PROGRAM [BROKER_OPTION...]
# PROGRAM is isolation_probe. The owner runs as root; probes run as nobody (another user) and as
# root (the owner's user, which shares its contexts). With --isolation=uid (the default) nobody's
# kernel faults in nobody's context and root's reads; with --isolation=none both read. The
# owner's buffer must come through intact and its kernels must still run either way.
# Exits 77 (SKIP) where no second user can be run: that needs root and setpriv.
set -uo pipefail
broker=$1 shim_dir=$2 program=$3; shift 3
[ "$(id -u)" = 0 ] || { echo "SKIPPED: running a second user (nobody) needs root"; exit 77; }
command -v setpriv >/dev/null || { echo "SKIPPED: setpriv (util-linux) not found"; exit 77; }
dir=$(mktemp -d /tmp/gpubroker-isolation-XXXXXX)
chmod 755 "$dir"  # nobody reaches the socket through it
broker_pid= owner_pid=
trap '[ -n "$owner_pid" ] && kill $owner_pid 2>/dev/null; [ -n "$broker_pid" ] && kill $broker_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
# In a sanitizer build the shim needs the sanitizer runtimes loaded first (run_with_broker.sh).
preload=$(ldd "$shim_dir"/libcudart.so.* 2>/dev/null | awk '/lib(asan|ubsan)\.so/ {print $3}' | sort -u | tr '\n' ':')
client_env=(env LD_LIBRARY_PATH="$shim_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="${preload%:}")
as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
failures=0

one_mode() {  # one_mode ISOLATION NOBODY_EXPECTS ROOT_EXPECTS
  local isolation=$1 nobody_expects=$2 root_expects=$3 socket="$dir/$1.sock"
  echo "== --isolation=$isolation"
  "$broker" --socket="$socket" --socket-mode=0666 --isolation="$isolation" --log-level=warning "${broker_options[@]}" &
  broker_pid=$!
  local started=$SECONDS
  until [ -S "$socket" ]; do  # a deadline for a loaded machine, not a figure
    kill -0 $broker_pid 2>/dev/null || { echo "FAIL: the broker exited before it listened"; exit 1; }
    ((SECONDS - started < 30)) || { echo "FAIL: the broker did not listen within 30 s"; exit 1; }
    sleep 0.01
  done
  coproc OWNER { GPUBROKER_SOCKET="$socket" "${client_env[@]}" "$program" owner; }
  owner_pid=$OWNER_PID
  local address=
  read -r -t 60 address <&"${OWNER[0]}" || { echo "FAIL: the owner printed no address"; exit 1; }
  echo "the owner (root) holds a secret at $address"
  echo "-- a kernel of nobody (another user):"
  GPUBROKER_SOCKET="$socket" "${as_nobody[@]}" "${client_env[@]}" "$program" probe "$address" "$nobody_expects" ||
    failures=$((failures + 1))
  echo "-- a kernel of root (the owner's user):"
  GPUBROKER_SOCKET="$socket" "${client_env[@]}" "$program" probe "$address" "$root_expects" || failures=$((failures + 1))
  echo go >&"${OWNER[1]}"
  local verdict=
  read -r -t 60 verdict <&"${OWNER[0]}"
  echo "$verdict"
  wait $owner_pid || failures=$((failures + 1))
  owner_pid=
  kill -TERM $broker_pid && wait $broker_pid || { echo "FAIL: the broker did not stop cleanly"; failures=$((failures + 1)); }
  broker_pid=
}

broker_options=("$@")
set --
one_mode uid fault read
one_mode none read read
[ $failures -eq 0 ] || { echo "FAIL: $failures check(s) failed"; exit 1; }
echo "PASS"

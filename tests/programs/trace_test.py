#!/usr/bin/env python3
"""The call trace (GPUBROKER_TRACE, gpu-broker-run --trace) of real programs, read by gpu-broker-trace.

  trace_test.py RUN_WITH_BROKER BROKER SIM SHIM_DIR TRACE_TOOL PROGRAM

1. PROGRAM (runtime_basics, which prints each call it makes through OK when
   GPUBROKER_TEST_ECHO_CALLS is set) runs against a sim broker with tracing on: the process writes
   one FILE.<pid>, and the calls it printed appear in the trace in the same order, each with
   result 0; every line of the text output is well formed.
2. A process that calls an unsupported runtime function (cudaArrayGetInfo, a generated stub)
   after a served one: the summary names it first, marked UNSUPPORTED.
3. --chrome output parses as JSON and every event has the fields its phase requires.
"""
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile

LINE = re.compile(r"^\[(\d+) (\d+)\] \+[0-9.]+ms (  -> )?(?:(\w+):)?(\w+)\((.*)\) = (-?\d+) <(local|broker|unsupported) [0-9.]+(?:us|ms)>$")


# cuda_runtime.h's C++ overloads that forward to another runtime function: the library sees the
# function they call (cudaMallocHost(T**, size, flags) is cudaHostAlloc).
HEADER_FORWARDS = {"cudaMallocHost": {"cudaMallocHost", "cudaHostAlloc"},
                   "cudaEventCreate": {"cudaEventCreate", "cudaEventCreateWithFlags"}}


def fail(message):
    print("FAILED:", message)
    sys.exit(1)


def traced_calls(tool, trace):
    text = subprocess.run([tool, trace], check=True, capture_output=True, text=True).stdout
    calls = []
    for line in text.splitlines():
        match = LINE.match(line)
        if not match:
            fail(f"malformed trace line: {line!r}")
        if match.group(3) is None:  # an entry point, not a request under it
            calls.append((match.group(5), int(match.group(7)), match.group(8)))
    return calls


def check_program(run_with_broker, broker, sim, shim_dir, tool, program, work):
    prefix = os.path.join(work, "program")
    env = dict(os.environ, GPUBROKER_TRACE=prefix, GPUBROKER_TEST_ECHO_CALLS="1")
    run = subprocess.run([run_with_broker, broker, sim, shim_dir, program], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"{program} exited with {run.returncode}:\n{run.stdout}\n{run.stderr}")
    echoed = [line[len("call: "):] for line in run.stdout.splitlines() if line.startswith("call: ")]
    if len(echoed) < 50:
        fail(f"the program printed only {len(echoed)} calls")
    files = [f for f in os.listdir(work) if f.startswith("program.")]
    if len(files) != 1:
        fail(f"expected one trace file for one process, found {files}")
    calls = traced_calls(tool, prefix)
    # The printed calls, in order, each matched to a later record of the same function with result
    # 0 (OK checked it); the program's other calls (those expected to fail, unprinted) may lie
    # between. A call missing, out of order or recorded with another result runs off the end.
    position = 0
    for name in echoed:
        names = HEADER_FORWARDS.get(name, {name})
        while position < len(calls) and not (calls[position][0] in names and calls[position][1] == 0):
            position += 1
        if position == len(calls):
            fail(f"{name} (printed by the program) is not in the trace in order with result 0")
        position += 1
    if not any(c[2] == "broker" for c in calls) or not any(c[2] == "local" for c in calls):
        fail("the trace should hold calls answered by the broker and in the process")
    print(f"{len(echoed)} calls the program printed appear in order among {len(calls)} traced calls")
    return prefix


def check_unsupported(shim_dir, tool, work):
    prefix = os.path.join(work, "stub")
    code = ("import ctypes, sys\n"
            "cudart = ctypes.CDLL(sys.argv[1])\n"
            "count = ctypes.c_int(0)\n"
            "cudart.cudaGetDeviceCount(ctypes.byref(count))\n"
            "sys.exit(0 if cudart.cudaArrayGetInfo(None, None, None, None) == 801 else 1)\n")
    library = os.path.join(shim_dir, "libcudart.so.13")
    env = dict(os.environ, GPUBROKER_TRACE=prefix, GPUBROKER_SOCKET=os.path.join(work, "no-broker.sock"))
    # A sanitizer build's shim needs its sanitizer runtimes first in the process, and Python has none.
    linked = subprocess.run(["ldd", library], capture_output=True, text=True).stdout
    sanitizers = sorted(set(re.findall(r"=> (\S*lib(?:asan|ubsan)\.so\S*)", linked)))
    if sanitizers:
        env["LD_PRELOAD"] = ":".join(sanitizers)
        env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "detect_leaks=0"]))
    run = subprocess.run([sys.executable, "-c", code, library], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"the stub call did not return 801: {run.stdout}{run.stderr}")
    summary = subprocess.run([tool, "--summary", prefix], check=True, capture_output=True, text=True).stdout.splitlines()
    if len(summary) < 3 or not summary[1].startswith("cudart:cudaArrayGetInfo") or "UNSUPPORTED" not in summary[1]:
        fail("the summary does not name the unsupported function first:\n" + "\n".join(summary))
    if not any(line.startswith("cudart:cudaGetDeviceCount") for line in summary[2:]):
        fail("the served call before it is missing from the summary")
    print("summary names the unsupported function first:", summary[1].split()[0])


def check_chrome(tool, prefix):
    text = subprocess.run([tool, "--chrome", prefix], check=True, capture_output=True, text=True).stdout
    events = json.loads(text)["traceEvents"]
    required = {"X": {"name", "ph", "ts", "dur", "pid", "tid"}, "M": {"name", "ph", "pid", "tid", "args"},
                "i": {"name", "ph", "ts", "pid", "tid", "s"}}
    phases = {}
    for event in events:
        fields = required.get(event.get("ph"))
        if fields is None or not fields <= event.keys():
            fail(f"event without the fields its phase requires: {event}")
        phases[event["ph"]] = phases.get(event["ph"], 0) + 1
    markers = {e["name"].split(":")[0] for e in events if e["ph"] == "i"}
    if not {"process start", "first call"} <= markers or phases.get("X", 0) < 50:
        fail(f"markers {markers}, phases {phases}")
    print(f"chrome JSON: {phases}")


def main(argv):
    run_with_broker, broker, sim, shim_dir, tool, program = argv[1:7]
    with tempfile.TemporaryDirectory(prefix="gpubroker-trace-") as work:
        prefix = check_program(run_with_broker, broker, sim, shim_dir, tool, program, work)
        check_unsupported(shim_dir, tool, work)
        check_chrome(tool, prefix)
    print("PASSED")


if __name__ == "__main__":
    main(sys.argv)

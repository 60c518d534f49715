#!/usr/bin/env python3
"""The call trace (GPUBROKER_TRACE, gpu-broker-run --trace) of real programs, read by gpu-broker-trace.

  trace_test.py RUN_WITH_BROKER BROKER SIM SHIM_DIR TRACE_TOOL PROGRAM KERNEL_PROGRAM CUBLAS_PROGRAM CUBLAS_DIR NVML

1. PROGRAM (runtime_basics, which prints each call it makes through OK when
   GPUBROKER_TEST_ECHO_CALLS is set) runs against a sim broker with tracing on: the process writes
   one FILE.<pid>, and the calls it printed appear in the trace in the same order, each with
   result 0; every line of the text output is well formed.
2. A process that calls an unsupported runtime function (cudaArrayGetInfo, a generated stub)
   after a served one: the summary names it first, marked UNSUPPORTED. The same process calls
   NVML with no broker to reach: nvmlInit_v2 is recorded with the status it returned
   (NVML_ERROR_DRIVER_NOT_LOADED).
3. KERNEL_PROGRAM (the kernel launch test, GPUBROKER_SIM_KERNELS in the environment) traced: the
   broker appends the device work it ran to the process's file. Every kernel the device ran is one
   the program launched, in launch order, with the same name, grid and block, starting no earlier
   than the launch call; the work on one stream never overlaps; the file ends with the broker's
   "session end".
4. CUBLAS_PROGRAM (NVIDIA-style cuBLAS calls, linked with -lcublas) traced: its cuBLAS calls are
   recorded by name with result 0, and the broker timed its GEMMs on the device.
5. --chrome output parses as JSON and every event has the fields its phase requires, with a
   track per stream for the device work; --svg output parses as XML and draws boxes.
"""
import ctypes
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

LINE = re.compile(r"^\[(\d+) (\d+)\] \+([0-9.]+)ms (  -> )?(?:(\w+):)?(\w+)\((.*)\) = (-?\d+) <(local|broker|unsupported) [0-9.]+(?:us|ms)>$")
DEVICE = re.compile(r"^\[(\d+) dev\] \+(-?[0-9.]+)ms (?:device:(kernel|memcpy \w+|memset|graph|gemm|host function) (.*) on (default stream|stream \d+) = (-?\d+) <([0-9.]+)(us|ms)>|session end)$")
LAUNCH = re.compile(r"^(?:LaunchKernel|LaunchKernelStaged): (.*<<<.*>>>)$")


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
        if DEVICE.match(line):
            continue
        match = LINE.match(line)
        if not match:
            fail(f"malformed trace line: {line!r}")
        if match.group(4) is None:  # an entry point, not a request under it
            calls.append((match.group(6), int(match.group(8)), match.group(9)))
    return calls


def check_device_work(run_with_broker, broker, sim, shim_dir, tool, program, work):
    prefix = os.path.join(work, "kernels")
    env = dict(os.environ, GPUBROKER_TRACE=prefix)
    run = subprocess.run([run_with_broker, broker, sim, shim_dir, program], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"{program} exited with {run.returncode}:\n{run.stdout}\n{run.stderr}")
    lines = subprocess.run([tool, prefix], check=True, capture_output=True, text=True).stdout.splitlines()
    launches, kernels, by_stream, ended = [], [], {}, False
    for line in lines:
        device = DEVICE.match(line)
        if device:
            if line.endswith("session end"):
                ended = True
                continue
            start_ms = float(device.group(2))
            duration_ms = float(device.group(7)) / (1000.0 if device.group(8) == "us" else 1.0)
            if int(device.group(6)) != 0:
                fail(f"device work failed: {line}")
            by_stream.setdefault(device.group(5), []).append((start_ms, duration_ms, line))
            if device.group(3) == "kernel":
                kernels.append((device.group(4), start_ms))
            continue
        call = LINE.match(line)
        if not call:
            fail(f"malformed trace line: {line!r}")
        # A launch request: the call's own (folded into it) or one printed under it.
        launch = LAUNCH.match(call.group(7)) or (call.group(4) and LAUNCH.match(f"{call.group(6)}: {call.group(7)}"))
        if launch:
            launches.append((launch.group(1), float(call.group(3))))
    if not ended:
        fail("the broker's 'session end' is not in the trace: its device work was not all written")
    if len(kernels) < 5:
        fail(f"only {len(kernels)} kernels on the device among {len(launches)} launches")
    # Each kernel the device ran matches the next launch of that name and shape, in order (a
    # launch into a stream being captured runs later, inside its graph, and has no kernel of its own).
    position = 0
    for name, start_ms in kernels:
        while position < len(launches) and launches[position][0] != name:
            position += 1
        if position == len(launches):
            fail(f"the device ran {name}, which the program did not launch (in that order)")
        if start_ms + 5.0 < launches[position][1]:  # 5 ms: the device clock's anchor is good to microseconds
            fail(f"{name} ran on the device at {start_ms} ms, before its launch at {launches[position][1]} ms")
        position += 1
    for stream, runs in by_stream.items():
        runs.sort()
        for (a_start, a_duration, a_line), (b_start, _, b_line) in zip(runs, runs[1:]):
            if a_start + a_duration > b_start + 0.002:  # the printed times' rounding
                fail(f"work on {stream} overlaps:\n{a_line}\n{b_line}")
    print(f"{len(kernels)} kernels on the device match the program's {len(launches)} launches; "
          f"{sum(len(r) for r in by_stream.values())} pieces of device work on {len(by_stream)} streams")
    return prefix


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


def check_unsupported(shim_dir, tool, nvml, work):
    prefix = os.path.join(work, "stub")
    code = ("import ctypes, sys\n"
            "cudart = ctypes.CDLL(sys.argv[1])\n"
            "count = ctypes.c_int(0)\n"
            "cudart.cudaGetDeviceCount(ctypes.byref(count))\n"
            "unsupported = cudart.cudaArrayGetInfo(None, None, None, None)\n"
            "nvml_status = ctypes.CDLL(sys.argv[2]).nvmlInit_v2()\n"
            "sys.exit(0 if unsupported == 801 and nvml_status == 9 else 1)\n")
    library = os.path.join(shim_dir, "libcudart.so.13")
    env = dict(os.environ, GPUBROKER_TRACE=prefix, GPUBROKER_SOCKET=os.path.join(work, "no-broker.sock"))
    # A sanitizer build's shim needs its sanitizer runtimes first in the process, and Python has none.
    linked = subprocess.run(["ldd", library], capture_output=True, text=True).stdout
    sanitizers = sorted(set(re.findall(r"=> (\S*lib(?:asan|ubsan)\.so\S*)", linked)))
    if sanitizers:
        env["LD_PRELOAD"] = ":".join(sanitizers)
        env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "detect_leaks=0"]))
    run = subprocess.run([sys.executable, "-c", code, library, nvml], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"the stub call did not return 801: {run.stdout}{run.stderr}")
    summary = subprocess.run([tool, "--summary", prefix], check=True, capture_output=True, text=True).stdout.splitlines()
    if len(summary) < 3 or not summary[1].startswith("cudart:cudaArrayGetInfo") or "UNSUPPORTED" not in summary[1]:
        fail("the summary does not name the unsupported function first:\n" + "\n".join(summary))
    if not any(line.startswith("cudart:cudaGetDeviceCount") for line in summary[2:]):
        fail("the served call before it is missing from the summary")
    print("summary names the unsupported function first:", summary[1].split()[0])
    calls = traced_calls(tool, prefix)
    if ("nvmlInit_v2", 9, "local") not in calls:
        fail(f"nvmlInit_v2 is not recorded with the status it returned (9): {calls}")


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


def check_cublas(run_with_broker, broker, sim, shim_dir, tool, program, cublas_dir, work):
    prefix = os.path.join(work, "cublas")
    env = dict(os.environ, GPUBROKER_TRACE=prefix,
               LD_LIBRARY_PATH=":".join(filter(None, [cublas_dir, os.environ.get("LD_LIBRARY_PATH", "")])))
    run = subprocess.run([run_with_broker, broker, sim, shim_dir, program], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"{program} exited with {run.returncode}:\n{run.stdout}\n{run.stderr}")
    text = subprocess.run([tool, prefix], check=True, capture_output=True, text=True).stdout
    cublas = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match and match.group(5) == "cublas" and match.group(4) is None:
            cublas.setdefault(match.group(6), set()).add(int(match.group(8)))
    wanted = {"cublasCreate_v2", "cublasSetMatrix", "cublasGetMatrix", "cublasDgemm_v2", "cublasDgemv_v2",
              "cublasDgetrfBatched", "cublasDestroy_v2"}
    missing = [name for name in sorted(wanted) if 0 not in cublas.get(name, set())]
    if missing:
        fail(f"cuBLAS calls not recorded with result 0: {missing}; recorded: {sorted(cublas)}")
    gemms = sum(1 for line in text.splitlines() if " dev] " in line and "device:gemm " in line)
    if gemms == 0:
        fail("the broker timed no GEMM of the cuBLAS program on the device")
    print(f"cuBLAS: {len(cublas)} functions recorded; {gemms} GEMMs timed on the device")


def check_device_views(tool, prefix):
    events = json.loads(subprocess.run([tool, "--chrome", prefix], check=True, capture_output=True, text=True).stdout)["traceEvents"]
    streams = {e["tid"] for e in events if e["ph"] == "M" and e["args"]["name"].startswith("device: ")}
    device = [e for e in events if e["ph"] == "X" and e.get("cat") == "device"]
    if not streams or not device or any(e["tid"] not in streams for e in device):
        fail(f"device work is not on the stream tracks: {len(streams)} tracks, {len(device)} events")
    if "first kernel on the device" not in {e["name"] for e in events if e["ph"] == "i"}:
        fail("no marker for the first kernel on the device")
    svg = ElementTree.fromstring(subprocess.run([tool, "--svg", prefix], check=True, capture_output=True, text=True).stdout)
    boxes = svg.findall("{http://www.w3.org/2000/svg}rect")
    if len(boxes) < 20:
        fail(f"the SVG timeline draws {len(boxes)} boxes")
    summary = subprocess.run([tool, "--summary", prefix], check=True, capture_output=True, text=True).stdout
    if "device work" not in summary or "kernel vector_add" not in summary:
        fail("the summary has no device work table:\n" + summary)
    print(f"chrome JSON: {len(device)} device events on {len(streams)} stream tracks; SVG: {len(boxes)} boxes")


def main(argv):
    run_with_broker, broker, sim, shim_dir, tool, program, kernel_program, cublas_program, cublas_dir, nvml = argv[1:11]
    with tempfile.TemporaryDirectory(prefix="gpubroker-trace-") as work:
        prefix = check_program(run_with_broker, broker, sim, shim_dir, tool, program, work)
        check_unsupported(shim_dir, tool, nvml, work)
        check_chrome(tool, prefix)
        kernels = check_device_work(run_with_broker, broker, sim, shim_dir, tool, kernel_program, work)
        check_device_views(tool, kernels)
        check_cublas(run_with_broker, broker, sim, shim_dir, tool, cublas_program, cublas_dir, work)
    print("PASSED")


if __name__ == "__main__":
    main(sys.argv)

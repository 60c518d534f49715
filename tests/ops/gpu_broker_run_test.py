"""gpu-broker-run: an nvcc-built program through a running broker with no other setup; a fast,
helpful failure without a broker; the shims it finds; and Ollama's way of starting runners."""
import os
import re
import subprocess
import tempfile
import time

from opslib import BUSY, SETTLE, Broker, Client, RUN, SKIP, check, run_cases, top_json, wait_for

REAL_CUDART13 = "/usr/local/cuda/lib64/libcudart.so.13"
HERE = os.path.dirname(os.path.abspath(__file__))


def runs_an_nvcc_built_program():
    with Broker() as broker:
        before = top_json(broker)["broker"]["sessions_total"]
        result = subprocess.run([RUN, "--socket=" + broker.socket, BUSY, "0.5", "8"], capture_output=True, text=True,
                                timeout=SETTLE)
        print(result.stdout, result.stderr)
        check(result.returncode == 0, "the program failed under gpu-broker-run")
        check(re.search(r"^done: [1-9][0-9]* rounds$", result.stdout, re.M), "the program did not finish its copies")
        # The sim device's name comes from the broker: the program's CUDA went through it.
        device = top_json(broker)["devices"][0]["name"]
        check("device: %s" % device in result.stdout, "the program did not see the broker's device %r" % device)
        log = broker.log_text()
        check(re.search(r"session \d+ opened: pid \d+ uid \d+ program 'busy_client' abi 13", log),
              "the broker never saw the program:\n" + log)
        # Counted just after the handshake, which the program could outrun only if it made no call.
        wait_for(lambda: top_json(broker)["broker"]["sessions_total"] >= before + 1, SETTLE, "the session to be counted")
        broker.stop()


def fails_fast_without_a_broker():
    directory = tempfile.mkdtemp(prefix="gpubroker-ops-")
    cases = {"no socket": os.path.join(directory, "none.sock")}
    # A socket left behind by a broker killed with SIGKILL: the file is there, nobody listens.
    with Broker() as broker:
        broker.kill()
        cases["stale socket"] = broker.socket
        for what, path in cases.items():
            # Fast: what finding no broker adds to gpu-broker-run's own start (--print-env, which
            # looks for no broker), both measured here, so that a slow machine slows both.
            started = time.monotonic()
            subprocess.run([RUN, "--print-env", "--socket=" + path], capture_output=True, timeout=SETTLE)
            baseline = time.monotonic() - started
            started = time.monotonic()
            result = subprocess.run([RUN, "--socket=" + path, "sh", "-c", "echo RAN"], capture_output=True, text=True,
                                    timeout=SETTLE)
            elapsed = time.monotonic() - started
            print("%s: %.3f s (%.3f s to start and print its environment), status %d\n%s" %
                  (what, elapsed, baseline, result.returncode, result.stderr))
            check(elapsed < baseline + 1.0, "%s: took %.2f s, %.2f s more than its start" % (what, elapsed, elapsed - baseline))
            check(result.returncode == 69, "%s: status %d" % (what, result.returncode))
            check("RAN" not in result.stdout, "%s: the command ran anyway" % what)
            check("no gpu-broker answers at %s" % path in result.stderr, "%s: message does not name the socket" % what)
            check("systemctl start gpu-broker" in result.stderr and "gpu-broker --driver=sim" in result.stderr,
                  "%s: message does not say what to start" % what)


def preloads_every_shim_it_finds():
    directory = tempfile.mkdtemp(prefix="gpubroker-shims-")
    for name in ["libcudart.so.13", "libcudart.so.12", "libcublas.so.12", "libnvidia-ml.so.1", "libcuda.so.1",
                 "libgpubroker-client.so", "libgpubroker-client.so.1", "bench_kernels_plugin.so", "README"]:
        open(os.path.join(directory, name), "w").close()
    os.symlink("libcudart.so.13", os.path.join(directory, "libcudart.so"))
    os.symlink("libcuda.so.1", os.path.join(directory, "libcuda.so.7"))  # a link, not a soname file
    os.mkdir(os.path.join(directory, "libskip.so.2"))
    environment = dict(os.environ, LD_PRELOAD="/opt/user.so", LD_LIBRARY_PATH="/opt/lib")
    result = subprocess.run([RUN, "--print-env", "--shim-dir=" + directory, "--socket=relative.sock"],
                            capture_output=True, text=True, env=environment, timeout=10)
    check(result.returncode == 0, "--print-env failed: " + result.stderr)
    values = dict(re.findall(r"^(\w+)='(.*)'$", result.stdout, re.M))
    print(values)
    preload = [p for p in values["LD_PRELOAD"].split(":") if "san.so" not in p]  # sanitizer builds add theirs
    expected = [os.path.join(directory, n) for n in
                ["libcublas.so.12", "libcuda.so.1", "libcudart.so.12", "libcudart.so.13", "libnvidia-ml.so.1"]]
    check(preload == expected + ["/opt/user.so"], "LD_PRELOAD %s" % preload)
    check(values["LD_LIBRARY_PATH"] == directory + ":/opt/lib", "LD_LIBRARY_PATH %s" % values["LD_LIBRARY_PATH"])
    check(values["GPUBROKER_SOCKET"] == os.path.join(os.getcwd(), "relative.sock"), "socket not made absolute")
    # Without --shim-dir, from the build tree: the real shims, by absolute path.
    result = subprocess.run([RUN, "--print-env"], capture_output=True, text=True, timeout=10,
                            env={k: v for k, v in os.environ.items() if k != "GPUBROKER_SHIM_DIR"})
    names = [os.path.basename(p) for p in dict(re.findall(r"^(\w+)='(.*)'$", result.stdout, re.M))["LD_PRELOAD"].split(":")]
    check("libcudart.so.13" in names and "libcudart.so.12" in names, "build-tree shims not found: %s" % names)


def ollama_like_parent_cannot_shadow_the_shim():
    """Ollama starts each runner with its own library directory, which holds the real CUDA
    runtime, prepended to LD_LIBRARY_PATH. The mimic: a parent that does exactly that and execs
    an nvcc-built child. Proof from the broker's side: while the child runs, the broker has a
    session with the child's pid and the child has our shim mapped, not the real runtime."""
    if not os.path.exists(REAL_CUDART13):
        print("no real CUDA 13 runtime at " + REAL_CUDART13)
        return SKIP
    parent = os.path.join(HERE, "ollama_like_parent.sh")
    with Broker() as broker:
        # In a sanitizer build gpu-broker-run preloads the sanitizer runtimes into the parent's shell
        # tools too, which are not built to be leak-checked.
        quiet = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        child = Client(broker, 3, 24, via=[RUN, "--socket=" + broker.socket, parent, REAL_CUDART13], env=quiet).started()
        # The parent execs the child: the pid is the child's.
        report = top_json(broker)
        sessions = [s for s in report["sessions"] if s["pid"] == child.pid]
        check(len(sessions) == 1, "the broker has no session of the child (pid %d): %s" % (child.pid, report["sessions"]))
        check(sessions[0]["program"] == "busy_client" and sessions[0]["device_bytes_used"] == 24 << 20,
              "child's session: %s" % sessions[0])
        with open("/proc/%d/maps" % child.pid) as f:
            maps = f.read()
        runtimes = {line.split()[-1] for line in maps.splitlines() if "/libcudart.so" in line}
        ours = os.path.realpath(REAL_CUDART13)
        check(ours not in runtimes, "the real runtime was loaded into the child: %s" % runtimes)
        check(runtimes and all(re.search(r"/(shim/runtime/1[23]|gpubroker)/libcudart\.so\.1[23]$", r) for r in runtimes),
              "the child's runtimes are not our shims: %s" % runtimes)
        environment = open("/proc/%d/environ" % child.pid, "rb").read().split(b"\0")
        check(any(e.startswith(b"LD_LIBRARY_PATH=") and b"real-runtime" in e.split(b":")[0] for e in environment),
              "the parent did not put the real runtime's directory first")
        check(child.finish() == 0, "the child failed: %s" % child.lines)

        check(any(line.startswith("runtime: ") and re.search(r"/(shim/runtime/13|gpubroker)/libcudart\.so\.13$", line)
                  for line in child.lines), "the child is not bound to our runtime: %s" % child.lines)

        # The control: the same parent with the shims only in the library path (no preload) loses
        # the child to the real runtime.
        printed = subprocess.run([RUN, "--print-env"], capture_output=True, text=True, env=dict(os.environ,
                                 LD_LIBRARY_PATH="")).stdout
        shim_path = dict(re.findall(r"^(\w+)='(.*)'$", printed, re.M))["LD_LIBRARY_PATH"]
        environment = dict(os.environ, GPUBROKER_SOCKET=broker.socket, LD_LIBRARY_PATH=shim_path)
        control = subprocess.run([parent, REAL_CUDART13, BUSY, "0.5", "8"], capture_output=True, text=True,
                                 env=environment, timeout=30)
        print("control (library path only): status %d\n%s" % (control.returncode, control.stdout))
        check(re.search(r"^runtime: .*/real-runtime/libcudart\.so\.13$", control.stdout, re.M),
              "the control child was not bound to the real runtime: the parent's library path did not shadow the "
              "shims, so the test above proves nothing")
        broker.stop()


def ollama_like_parent_with_a_cuda12_runner():
    """The same for a CUDA 12 runner, Ollama's cuda_v12 layout: the parent prepends a directory
    holding the real libcudart.so.12 and execs a program built against CUDA 12.9. The broker's log
    names a session of that very pid, speaking ABI 12, and the program passes on the sim device."""
    real = os.environ.get("GPUBROKER_REAL_CUDART12", "")
    program = os.environ.get("GPUBROKER_CUDA12_PROGRAM", "")
    if not (os.path.exists(real) and os.path.exists(program)):
        print("no CUDA 12 runtime or program")
        return SKIP
    parent = os.path.join(HERE, "ollama_like_parent.sh")
    quiet = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    with Broker() as broker:
        runner = subprocess.Popen([RUN, "--socket=" + broker.socket, parent, real, program], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, env=quiet)
        output, _ = runner.communicate(timeout=60)
        print(output[-2000:])
        check(runner.returncode == 0 and "PASSED: 0 failure(s)" in output, "the CUDA 12 program failed")
        log = broker.log_text()
        check(re.search(r"session \d+ opened: pid %d uid \d+ program 'runtime_basics_' abi 12" % runner.pid, log),
              "the broker has no session of the runner's pid %d:\n%s" % (runner.pid, log))
        broker.stop()


run_cases({
    "program": runs_an_nvcc_built_program,
    "no-broker": fails_fast_without_a_broker,
    "discovery": preloads_every_shim_it_finds,
    "ollama": ollama_like_parent_cannot_shadow_the_shim,
    "ollama-cuda12": ollama_like_parent_with_a_cuda12_runner,
})

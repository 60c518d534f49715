#!/usr/bin/env python3
"""The real-runner suite: llama.cpp's prebuilt CUDA 12 build (the PyPI wheel cyllama-cuda12, which
links libcudart.so.12, libcublas.so.12, libcublasLt.so.12 and libcuda.so.1 as Ollama's cuda_v12
runner does) run through gpu-broker-run against a sim broker, with nothing of a CUDA installation
on the library path. Each case is one meson test:

  discovery       the wheel's libraries load; ggml finds the device, and its name, PCI id and memory
                  are the ones libcudart, libcuda and NVML report
  load            the tiny model with every layer offloaded: weights, KV cache and compute buffers on
                  the device, graphs reserved
  generate        no layer offloaded: greedy tokens equal those of the same wheel with CUDA hidden
  kernel-failure  every layer offloaded: the first kernel (no sim implementation) fails with a CUDA
                  error that names it, the process ends, the broker reclaims it and serves the next
  four-runners    four runners hold the model at once; broker-top shows each with its memory; after
                  they exit the device is back to its baseline
  ollama-layout   a library directory with CUDA 12 libraries of its own, prepended to
                  LD_LIBRARY_PATH as Ollama does, still gets the shims

Lines "figure: NAME VALUE" are single measurements; `runner_test.py figures` (not a test) prints
p50/p99 over rounds, brokered against CUDA hidden, for BENCHMARKS.md. Whatever a runner's stderr
says about a function the shims do not serve, or a library that did not load, is printed by name
(diagnose()), so that a new runner is diagnosed without a change to the broker.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ops"))
import opslib  # noqa: E402
from opslib import SETTLE, Broker, check, fail, run_cases, top_json, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("GPUBROKER_RUNNER_VENV", "")
PYTHON = os.path.join(VENV, "bin", "python")
RUNNER = os.path.join(HERE, "runner.py")


def fixture_missing():
    """True (the case is skipped) where the fixture could not be installed; in CI, whose setup
    must install it, its absence fails the case instead of hiding a broken setup."""
    if os.path.isfile(PYTHON):
        return False
    if os.environ.get("CI") == "true":
        fail("no runner fixture in %s: scripts/setup.sh should have installed it from PyPI" % VENV)
    print("skipped: no runner fixture in %s (scripts/setup.sh installs it from PyPI)" % VENV, flush=True)
    return True


def runner_env(**extra):
    """What a runner host has: no CUDA library path of its own; gpu-broker-run adds the shims."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "CUDA_VISIBLE_DEVICES", "GPUBROKER_SOCKET")}
    env["GGML_NO_BACKTRACE"] = "1"  # ggml's abort would otherwise attach gdb for a backtrace
    # A sanitizer build preloads its runtimes into Python too; Python's own allocations are not ours.
    env["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "detect_leaks=0"]))
    env.update(extra)
    return env


def diagnose(stderr):
    """The first unsupported function and every library that did not load, by name."""
    said = []
    unsupported = [line for line in stderr.splitlines() if "is not supported by the gpubroker" in line]
    if unsupported:
        said.append("first unsupported function: " + unsupported[0])
    for library in sorted(set(re.findall(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", stderr))):
        said.append("library not found: " + library)
    for line in said:
        print("diagnosis: " + line, flush=True)
    return said


def run_runner(broker, args, timeout=120, env=None, via=None):
    command = (via or [opslib.RUN, "--socket=" + broker.socket, "--"]) + [PYTHON, RUNNER] + args
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env or runner_env())
    except subprocess.TimeoutExpired as expired:
        diagnose(expired.stderr.decode() if isinstance(expired.stderr, bytes) else (expired.stderr or ""))
        fail("%s did not finish within %d s (a hang)" % (" ".join(args), timeout))
    diagnose(result.stderr)
    return result


def preloaded_shims(broker):
    """The shim libraries gpu-broker-run preloads, by the paths it gives."""
    result = subprocess.run([opslib.RUN, "--socket=" + broker.socket, "--print-env"], capture_output=True, text=True,
                            timeout=30)
    check(result.returncode == 0, "gpu-broker-run --print-env: " + result.stderr)
    m = re.search(r"^LD_PRELOAD='?([^'\n]*)'?$", result.stdout, re.M)
    check(m is not None, "gpu-broker-run --print-env names LD_PRELOAD:\n" + result.stdout)
    return [os.path.realpath(p) for p in re.split("[: ]", m.group(1)) if p]


def report_of(result, what):
    if result.returncode != 0:
        fail("%s exited %d:\n%s" % (what, result.returncode, result.stderr[-4000:]))
    return json.loads(result.stdout.strip().splitlines()[-1])


def tiny_model(directory):
    path = os.path.join(directory, "tiny.gguf")
    subprocess.run([PYTHON, os.path.join(HERE, "make_model.py"), path, "--size=tiny"], check=True)
    return path


def figure(name, value):
    print("figure: %s %s" % (name, value), flush=True)


def runner_case(needs_model=True):
    """A case run against a fresh sim broker (stopped at the end, which must exit 0), with the tiny
    model in a scratch directory; skipped where the fixture is not installed."""
    def wrap(body):
        def case():
            if fixture_missing():
                return opslib.SKIP
            with Broker() as broker, tempfile.TemporaryDirectory() as work:
                body(broker, tiny_model(work) if needs_model else None, work)
                broker.stop()
        return case
    return wrap


def pci_key(text):
    """0000:18:00.0 and 00000000:18:00.0 name the same device."""
    domain, bus, rest = text.lower().split(":")
    device, function = rest.split(".")
    return int(domain, 16), int(bus, 16), int(device, 16), int(function, 16)


@runner_case(needs_model=False)
def case_discovery(broker, _model, _work):
    d = report_of(run_runner(broker, ["discover"]), "runner.py discover")
    shims = preloaded_shims(broker)
    check(d["libcudart"] in shims, "libcudart.so.12 is the shim, not %s" % d["libcudart"])
    check(d["libcublasLt"] in shims, "libcublasLt.so.12 (NEEDed by the wheel) is the shim, not %s" % d["libcublasLt"])
    gpus = [x for x in d["devices"] if x["type"] == "GPU"]
    check(len(gpus) == 1 and gpus[0]["name"] == "CUDA0", "ggml lists one CUDA device: %s" % d["devices"])
    logged = [line for line in d["log"] if "Device 0:" in line]
    check(logged, "ggml_cuda_init described device 0:\n" + "".join(d["log"]))
    m = re.search(r"Device 0: (.+), compute capability (\d+)\.(\d+), VMM: (\w+), VRAM: (\d+) MiB", logged[0])
    check(m is not None, "ggml's device line parses: " + logged[0])
    name, vram_mib = m.group(1), int(m.group(5))
    ident = d["identity"]
    check(ident["cuda"]["name"] == name and ident["nvml"]["name"] == name,
          "one name everywhere: ggml %r, libcuda %r, NVML %r" % (name, ident["cuda"]["name"], ident["nvml"]["name"]))
    check(gpus[0]["description"] == name, "ggml's device description %r" % gpus[0]["description"])
    totals = {lib: ident[lib]["total"] for lib in ("cudart", "cuda", "nvml")}
    check(len(set(totals.values())) == 1 and vram_mib == totals["cuda"] // (1 << 20),
          "one memory total everywhere: ggml %d MiB, %s" % (vram_mib, totals))
    pcis = {lib: pci_key(ident[lib]["pci"]) for lib in ("cudart", "cuda", "nvml")}
    check(len(set(pcis.values())) == 1, "one PCI id everywhere: %s" % {k: ident[k]["pci"] for k in pcis})
    check(m.group(4) == "yes", "ggml sees VMM support (its memory pool)")
    figure("discovery.first_cuda_call_to_usable_backend_ms", "%.1f" % (d["backend_seconds"] * 1000))
    print("ggml: %s, compute capability %s.%s, %d MiB, PCI %s" % (name, m.group(2), m.group(3), vram_mib,
                                                                 ident["cudart"]["pci"]), flush=True)


@runner_case()
def case_load(broker, model, _work):
    result = run_runner(broker, ["load", model, "99"])
    r = report_of(result, "runner.py load (every layer offloaded)")
    for needle in ("offloaded 3/3 layers to GPU", "CUDA0 model buffer size", "CUDA0 KV buffer size",
                   "CUDA0 compute buffer size", "graph_reserve"):
        check(needle in result.stderr, "llama.cpp's log says %r:\n%s" % (needle, result.stderr[-3000:]))
    figure("load.backend_ms", "%.1f" % (r["backend_seconds"] * 1000))
    figure("load.model_load_ms", "%.1f" % (r["model_seconds"] * 1000))
    figure("load.context_ms", "%.1f" % (r["context_seconds"] * 1000))
    figure("load.process_start_to_context_ms", "%.1f" % (r["since_start_seconds"] * 1000))


@runner_case()
def case_generate(broker, model, _work):
    brokered = run_runner(broker, ["generate", model, "0", "24"])
    b = report_of(brokered, "runner.py generate through the broker")
    hidden = report_of(run_runner(broker, ["generate", model, "0", "24"], env=runner_env(CUDA_VISIBLE_DEVICES="")),
                       "runner.py generate with CUDA hidden")
    check([x for x in b["devices"] if x["type"] == "GPU"], "the brokered runner saw the device")
    check(not [x for x in hidden["devices"] if x["type"] == "GPU"], "with CUDA hidden there is no device")
    check("CUDA_Host compute buffer size" in brokered.stderr, "the brokered runner computes in pinned host buffers")
    check(len(b["tokens"]) == 24, "24 tokens generated: %s" % b["tokens"])
    check(b["tokens"] == hidden["tokens"], "the same tokens:\n  brokered %s\n  hidden   %s" % (b["tokens"], hidden["tokens"]))
    print("tokens: %s" % b["tokens"], flush=True)
    figure("generate.cpu_decode_24_tokens_ms", "%.1f" % (b["decode_seconds"] * 1000))


@runner_case()
def case_kernel_failure(broker, model, _work):
    started = time.monotonic()
    failed = run_runner(broker, ["generate", model, "99", "4"], timeout=60)
    seconds = time.monotonic() - started
    check(failed.returncode != 0, "the runner does not go on after its first kernel failed")
    check("CUDA error 719" in failed.stderr and "in kernel void rms_norm_f32<256, true, false>" in failed.stderr,
          "the error names the kernel:\n" + failed.stderr[-3000:])
    wait_for(lambda: (lambda top: top["sessions"] == [] and top["devices"][0]["device_bytes_used"] == 0)(top_json(broker)),
             SETTLE, "the failed runner's session to be reclaimed, with all its device memory")
    after = report_of(run_runner(broker, ["generate", model, "0", "4"]), "the next runner")
    check(len(after["tokens"]) == 4, "the next runner is served")
    figure("kernel_failure.seconds_to_exit", "%.2f" % seconds)


@runner_case()
def case_four_runners(broker, model, _work):
    baseline = top_json(broker)["devices"][0]["device_bytes_used"]
    command = [opslib.RUN, "--socket=" + broker.socket, "--", PYTHON, RUNNER, "load", model, "99", "--hold"]
    runners = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=runner_env()) for _ in range(4)]
    try:
        for runner in runners:
            line = runner.stdout.readline()
            check(line.startswith("{"), "a runner loaded the model (exit %s): %s" % (runner.poll(), line))
        pids = {runner.pid for runner in runners}
        sessions = wait_for(lambda: [s for s in top_json(broker)["sessions"] if s["pid"] in pids and
                                     s["device_bytes_used"] > 0] if len(top_json(broker)["sessions"]) >= 4 else None,
                            SETTLE, "broker-top to show the four runners")
        check(len(sessions) == 4, "broker-top shows each runner with its memory: %s" % sessions)
        for s in sessions:
            print("runner pid %d (%s): %d bytes of device memory" % (s["pid"], s["program"], s["device_bytes_used"]),
                  flush=True)
    finally:
        for runner in runners:
            runner.stdin.close()
        statuses = [runner.wait(timeout=60) for runner in runners]
    check(statuses == [0, 0, 0, 0], "the runners exit cleanly: %s" % statuses)
    wait_for(lambda: top_json(broker)["sessions"] == [] and
             top_json(broker)["devices"][0]["device_bytes_used"] == baseline, SETTLE, "the device to return to its baseline")


@runner_case(needs_model=False)
def case_ollama_layout(broker, _model, libraries):
    # Ollama gives each runner its own library directory, holding NVIDIA's libraries, first on
    # LD_LIBRARY_PATH. These are not loadable at all: loading any of them would fail the runner.
    for soname in ("libcudart.so.12", "libcublas.so.12", "libcublasLt.so.12"):
        with open(os.path.join(libraries, soname), "w") as f:
            f.write("not a library: the shim must win\n")
    env = runner_env(LD_LIBRARY_PATH=libraries)
    via = [opslib.RUN, "--socket=" + broker.socket, "--", "env", "LD_LIBRARY_PATH=" + libraries]
    d = report_of(run_runner(broker, ["discover"], env=env, via=via), "runner.py discover in Ollama's layout")
    shims = preloaded_shims(broker)
    check(d["libcudart"] in shims and d["libcublasLt"] in shims,
          "the shims, not the runner's own libraries: %s, %s" % (d["libcudart"], d["libcublasLt"]))
    check([x for x in d["devices"] if x["type"] == "GPU"], "the device is found")


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def case_figures():
    """Not a test (meson does not run it): the suite's figures over ROUNDS rounds (default 10),
    p50 and p99, brokered against the same wheel with CUDA hidden in the same run."""
    if fixture_missing():
        return opslib.SKIP
    rounds = int(os.environ.get("ROUNDS", "10"))
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    print("machine: %s, %d cores; sim driver; %d rounds, alternating" % (cpu, os.cpu_count(), rounds), flush=True)
    with Broker() as broker, tempfile.TemporaryDirectory() as work:
        model = tiny_model(work)
        samples = {"brokered": [], "hidden": []}
        for _ in range(rounds):
            samples["brokered"].append(report_of(run_runner(broker, ["load", model, "99"]), "brokered load"))
            samples["hidden"].append(report_of(run_runner(broker, ["load", model, "99"],
                                                          env=runner_env(CUDA_VISIBLE_DEVICES="")), "hidden load"))
        print("%-34s %21s %21s %8s" % ("ms (p50 / p99)", "brokered (ngl 99)", "CUDA hidden (CPU)", "p50 x"))
        for key, label in (("backend_seconds", "first CUDA call to usable backend"), ("model_seconds", "model load"),
                           ("context_seconds", "context (KV cache, graphs)"),
                           ("since_start_seconds", "process start to context")):
            b = [r[key] * 1000 for r in samples["brokered"]]
            h = [r[key] * 1000 for r in samples["hidden"]]
            print("%-34s %10.2f / %8.2f %10.2f / %8.2f %8.2f" % (label, percentile(b, 0.5), percentile(b, 0.99),
                                                            percentile(h, 0.5), percentile(h, 0.99),
                                                            percentile(b, 0.5) / percentile(h, 0.5)), flush=True)
        broker.stop()


CASES = {
    "discovery": case_discovery,
    "load": case_load,
    "generate": case_generate,
    "kernel-failure": case_kernel_failure,
    "four-runners": case_four_runners,
    "ollama-layout": case_ollama_layout,
}

if __name__ == "__main__":
    if sys.argv[1:] == ["figures"]:
        run_cases({"figures": case_figures})
    else:
        run_cases(CASES)

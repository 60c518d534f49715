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
  offload         every layer offloaded, the sim running ggml's kernels (sim/ggml/): 64 greedy tokens
                  after fixed prompts of 3 and 40 tokens, compared with the same wheel's CPU backend
                  (compare_to_cpu says how), with ggml's CUDA graphs on (its default)
  offload-no-graphs      the same with GGML_CUDA_DISABLE_GRAPHS=1
  offload-four-runners   four such runners at once: each output identical, and compared with the CPU's
  kernel-discovery      the sim's discovery mode (--sim-discover): without the sim's kernels the run goes
                  on through no-op kernels and the record lists each kernel it launched once, none
                  implemented; with them, the same kernels, all implemented
  kernel-failure  every layer offloaded on a broker without the sim's kernels (--sim-kernels=none): the
                  first kernel fails with a CUDA error that names it, the process ends, the broker
                  reclaims it and serves the next
  four-runners    four runners hold the model at once; broker-top shows each with its memory; after
                  they exit the device is back to its baseline
  ollama-layout   a library directory with CUDA 12 libraries of its own, prepended to
                  LD_LIBRARY_PATH as Ollama does, still gets the shims
  trace           gpu-broker-run --trace of an offloaded runner (CUDA graphs off, so that every
                  kernel is a launch of its own): its trace holds one launch per kernel the sim ran,
                  and the broker timed each of them on the device, by the same kernel names; the
                  summary, Chrome JSON and SVG timeline are well formed

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


def runner_case(needs_model=True, broker_args=()):
    """A case run against a fresh sim broker (stopped at the end, which must exit 0), with the tiny
    model in a scratch directory; skipped where the fixture is not installed. The broker's sim writes
    its counters to sim_counters(work) when the broker exits."""
    def wrap(body):
        def case():
            if fixture_missing():
                return opslib.SKIP
            with tempfile.TemporaryDirectory() as work, \
                    Broker(*broker_args, env={"GPUBROKER_SIM_COUNTERS": os.path.join(work, "sim-counters.json")}) as broker:
                body(broker, tiny_model(work) if needs_model else None, work)
                broker.stop()
        return case
    return wrap


def sim_counters(work):
    """What the sim of the case's broker did (GpubrokerSimCounters), once the broker has stopped."""
    path = os.path.join(work, "sim-counters.json")
    check(os.path.exists(path), "the sim wrote its counters at exit (GPUBROKER_SIM_COUNTERS)")
    with open(path) as f:
        return json.load(f)


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
    # With contexts per user (the default) the broker serves no VMM, whose mappings every context
    # of its process could reach; ggml then allocates through its legacy pool.
    check(m.group(4) == "no", "ggml sees no VMM under --isolation=uid")
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


# The offloaded runs: fixed prompts of 3 and 40 tokens (one batch each: the 40-token one goes through
# the batched matrix products, cuBLAS's and the conversions feeding them), then 64 greedy tokens.
PROMPTS = (3, 40)
GENERATED = 64

# How far the sim's logits may be from the CPU backend's at any step. Both compute in float from
# the same F16 weights, but not alike: the CPU rounds activations to F16 and sums its dot products
# in its own order; ggml's CUDA kernels, which the sim runs as the device does, sum in half or in
# float as each instance says, in the device's order, with cuBLAS for the batched products. So
# they differ in rounding, never in what is computed: on the tiny model's logits (about 0.5 in
# magnitude) the difference seen is at most 6e-4, and a wrong kernel moves them by far more.
LOGIT_TOLERANCE = 2e-3


def decode(broker, model, prompt_tokens, env, follow=None):
    """runner.py generate with every layer offloaded: the report, with each step's logits, and the
    runner's stderr. With `follow`, the steps decode those tokens (another run's) as their inputs."""
    args = ["generate", model, "99", str(GENERATED), "--prompt-tokens=%d" % prompt_tokens, "--logits"]
    if follow:
        args.append("--follow=" + ",".join(str(t) for t in follow))
    result = run_runner(broker, args, env=env)
    report = report_of(result, "runner.py generate (prompt %d tokens)" % prompt_tokens)
    check(report["prompt_tokens"] == prompt_tokens, "the prompt has %d tokens: %s" % (prompt_tokens, report["prompt_tokens"]))
    check(len(report["tokens"]) == GENERATED and len(report["logits"]) == GENERATED,
          "%d steps decoded: %d" % (GENERATED, len(report["tokens"])))
    return report, result.stderr


def cpu_reference(broker, model, prompt_tokens):
    """The same wheel with CUDA hidden: its CPU backend's greedy tokens and logits."""
    report, _ = decode(broker, model, prompt_tokens, runner_env(CUDA_VISIBLE_DEVICES=""))
    check(not [d for d in report["devices"] if d["type"] == "GPU"], "with CUDA hidden there is no device")
    return report


def offloaded(broker, model, prompt_tokens, cpu, env):
    """Every layer on the sim device, each step decoding the CPU run's token: so that every step of
    the two runs starts from the same context, and each step's choice is the sim's own."""
    report, stderr = decode(broker, model, prompt_tokens, env, follow=cpu["tokens"])
    check("offloaded 3/3 layers to GPU" in stderr, "every layer is offloaded:\n" + stderr[-3000:])
    return report


def compare_to_cpu(sim, cpu, label):
    """Identical greedy tokens, or the logits of every step within LOGIT_TOLERANCE; prints which."""
    worst, worst_step = 0.0, 0
    for step, (ours, theirs) in enumerate(zip(sim["logits"], cpu["logits"])):
        difference = max(abs(a - b) for a, b in zip(ours, theirs))
        if difference > worst:
            worst, worst_step = difference, step
    check(worst <= LOGIT_TOLERANCE, "%s: step %d's logits differ from the CPU's by %.2e (tolerance %.0e)"
          % (label, worst_step, worst, LOGIT_TOLERANCE))
    differing = [step for step, (ours, theirs) in enumerate(zip(sim["tokens"], cpu["tokens"])) if ours != theirs]
    if not differing:
        print("%s: comparison made: identical tokens: the sim's %d greedy tokens are the CPU backend's "
              "(logits within %.1e of the CPU's at every step)" % (label, GENERATED, worst), flush=True)
        return
    for step in differing:  # a different choice is only a tie broken by rounding
        logits = cpu["logits"][step]
        gap = logits[cpu["tokens"][step]] - logits[sim["tokens"][step]]
        check(gap <= LOGIT_TOLERANCE, "%s: at step %d the sim chose token %d, whose CPU logit is %.2e below the "
              "CPU's choice %d" % (label, step, sim["tokens"][step], gap, cpu["tokens"][step]))
    print("%s: comparison made: logits of every step within %.0e of the CPU backend's (worst %.1e, step %d), "
          "each step decoding the CPU's token; greedy tokens identical but at steps %s, where the CPU's top two "
          "logits are within the tolerance (a tie broken by rounding), so a free run follows the CPU's "
          "tokens up to step %d" % (label, LOGIT_TOLERANCE, worst, worst_step, differing, differing[0]), flush=True)


def offload_case(broker, model, work, graphs):
    env = runner_env() if graphs else runner_env(GGML_CUDA_DISABLE_GRAPHS="1")
    for prompt_tokens in PROMPTS:
        cpu = cpu_reference(broker, model, prompt_tokens)
        started = time.monotonic()
        sim = offloaded(broker, model, prompt_tokens, cpu, env)
        compare_to_cpu(sim, cpu, "prompt of %d tokens, CUDA graphs %s" % (prompt_tokens, "on" if graphs else "off"))
        figure("offload.prompt_%d.graphs_%s.seconds" % (prompt_tokens, "on" if graphs else "off"),
               "%.2f" % (time.monotonic() - started))
    broker.stop()
    counters = sim_counters(work)
    print("sim: %d kernels run, %d graph launches, %d GEMMs" % (counters["kernels_launched"],
                                                                 counters["graphs_launched"], counters["gemms_run"]))
    check(counters["kernels_launched"] > 0, "the sim ran the kernels")
    if graphs:
        check(counters["graphs_launched"] > 0, "ggml replayed its CUDA graphs on the sim")
    else:
        check(counters["graphs_launched"] == 0, "with GGML_CUDA_DISABLE_GRAPHS=1 no graph was launched")


@runner_case()
def case_offload(broker, model, work):
    offload_case(broker, model, work, graphs=True)


# One context for all (trusted runners): the broker serves VMM, and ggml's memory pool is its VMM
# pool, as on a GPU without a broker.
@runner_case(broker_args=("--isolation=none",))
def case_offload_no_graphs(broker, model, work):
    offload_case(broker, model, work, graphs=False)


@runner_case()
def case_offload_four_runners(broker, model, _work):
    for prompt_tokens in PROMPTS:
        cpu = cpu_reference(broker, model, prompt_tokens)
        command = [opslib.RUN, "--socket=" + broker.socket, "--", PYTHON, RUNNER, "generate", model, "99",
                   str(GENERATED), "--prompt-tokens=%d" % prompt_tokens, "--logits",
                   "--follow=" + ",".join(str(t) for t in cpu["tokens"])]
        runners = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=runner_env())
                   for _ in range(4)]
        outputs = []
        for runner in runners:
            try:
                out, err = runner.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                for other in runners:
                    other.kill()
                fail("a runner of four did not finish within 240 s (a hang)")
            diagnose(err)
            check(runner.returncode == 0, "runner pid %d exited %d:\n%s" % (runner.pid, runner.returncode, err[-3000:]))
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        for other in outputs[1:]:
            check(other["tokens"] == outputs[0]["tokens"] and other["logits"] == outputs[0]["logits"],
                  "the four runners' outputs are identical, tokens and logits (prompt of %d tokens)" % prompt_tokens)
        compare_to_cpu(outputs[0], cpu, "four runners at once, prompt of %d tokens" % prompt_tokens)


def without_parameters(name):
    """A demangled kernel name without its return type and parameter list."""
    depth = 0
    for i, c in enumerate(name):
        depth += {"<": 1, ">": -1}.get(c, 0)
        if c == "(" and depth == 0:
            name = name[:i]
            break
    return re.sub(r"^void ", "", re.sub(r"_INTERNAL_[0-9a-f]+_\d+_\w+?_cu_[0-9a-f]+::", "", name))


def discovered(record):
    """The discovery record's lines (sim/kernel_discovery.h), by mangled name."""
    kernels = {}
    with open(record) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            check(len(fields) == 8 and fields[0] == "kernel", "a record line has 8 fields: %r" % line)
            check(fields[1] not in kernels, "each kernel is recorded once: %s" % fields[1])
            kernels[fields[1]] = dict(f.split("=", 1) for f in fields[2:7])
            kernels[fields[1]]["name"] = fields[7]
    return kernels


def case_kernel_discovery():
    if fixture_missing():
        return opslib.SKIP
    with tempfile.TemporaryDirectory() as work:
        model = tiny_model(work)
        records = {}
        for plugins in ("none", "default"):
            record = os.path.join(work, "kernels-%s.tsv" % plugins)
            args = ["--sim-discover=" + record] + (["--sim-kernels=none"] if plugins == "none" else [])
            with Broker(*args) as broker:
                # Three prompt tokens: no batched product, whose pointers a no-op kernel would leave unset.
                result = run_runner(broker, ["generate", model, "99", "8", "--prompt-tokens=3"])
                check(result.returncode == 0, "the run goes on to its end (%s):\n%s" % (plugins, result.stderr[-3000:]))
                broker.stop()
            records[plugins] = discovered(record)
        without, with_plugin = records["none"], records["default"]
        # No-op kernels leave the logits as they were, so that run may end early (at an end-of-text
        # token): it launches some of the kernels the real run does, and no other.
        check(len(without) >= 10 and set(without) <= set(with_plugin), "the no-op run launches the real run's kernels: "
              "%d of them, and %s besides" % (len(without), sorted(set(without) - set(with_plugin))))
        check(all(k["implemented"] == "no" for k in without.values()), "without plugins no kernel is implemented")
        check(all(k["implemented"] == "yes" for k in with_plugin.values()), "the ggml plugin implements every one: %s"
              % [k["name"] for k in with_plugin.values() if k["implemented"] != "yes"])
        rms = "_Z12rms_norm_f32ILi256ELb1ELb0EEvPKfPfilllfS1_lll5uint3S3_S3_S3_S1_lllS3_S3_S3_S3_"
        check(rms in without and without[rms]["block"] == "256,1,1" and
              without[rms]["params"] == "8,8,4,8,8,8,4,8,8,8,8,12,12,12,12,8,8,8,8,12,12,12,12" and
              without[rms]["name"].startswith("void rms_norm_f32<256, true, false>("),
              "rms_norm_f32<256, true, false> with its block and parameter sizes: %s" % without.get(rms))
        for kernel in sorted(with_plugin.values(), key=lambda k: k["name"]):
            print("%-10s %-12s %-4s %s" % (kernel["grid"], kernel["block"], kernel["implemented"],
                                          without_parameters(kernel["name"])), flush=True)
        print("%d distinct kernels" % len(with_plugin), flush=True)


@runner_case(broker_args=("--sim-kernels=none",))
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


def bench_report(broker, prompt_tokens, generated, model, env, hold=False):
    """runner.py bench with every layer offloaded; with `hold`, the report and the running process
    (whose session lives until its stdin closes)."""
    args = ["bench", model, "99", str(prompt_tokens), str(generated)]
    if not hold:
        return report_of(run_runner(broker, args, env=env), "runner.py bench")
    command = [opslib.RUN, "--socket=" + broker.socket, "--", PYTHON, RUNNER] + args + ["--hold"]
    runner = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    line = runner.stdout.readline()
    check(line.startswith("{"), "runner.py bench --hold reported (exit %s): %s" % (runner.poll(), line))
    return json.loads(line), runner


def work_per_run(prompt_tokens, generated, model, env, work):
    """What one run of `generated` tokens cost the broker: the calls it served the runner's session
    (broker-top) and what its sim ran (kernels, graph launches, GEMMs), on a broker of its own."""
    counters_path = os.path.join(work, "sim-counters.json")
    with Broker(env={"GPUBROKER_SIM_COUNTERS": counters_path}) as broker:
        report, runner = bench_report(broker, prompt_tokens, generated, model, env, hold=True)
        sessions = [s for s in top_json(broker)["sessions"] if s["pid"] == runner.pid]
        runner.stdin.close()
        check(runner.wait(timeout=60) == 0, "runner.py bench --hold exits cleanly")
        broker.stop()
    check(len(sessions) == 1, "broker-top shows the runner's session")
    with open(counters_path) as f:
        counters = json.load(f)
    return {"calls": sessions[0]["calls"], "kernels": counters["kernels_launched"],
            "graphs": counters["graphs_launched"], "gemms": counters["gemms_run"], "tokens": report["tokens"]}


def case_token_figures():
    """Not a test (meson does not run it): the tiny model's token loop through the broker with every
    layer offloaded to the sim, against the same wheel's CPU backend (CUDA hidden) in the same run:
    prompt and decode tokens per second over ROUNDS rounds (default 10), p50 and p99, alternating,
    graphs on and off; then the broker's work per decoded token: calls served, kernels and graph
    launches run by the sim (the difference between runs of 1 and 1 + GENERATED tokens)."""
    if fixture_missing():
        return opslib.SKIP
    rounds = int(os.environ.get("ROUNDS", "10"))
    prompt_tokens = 40
    with open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "unknown")
    print("machine: %s, %d cores; sim driver; tiny model (2 layers, 64 wide, F16); prompt %d tokens, %d generated; "
          "%d rounds, alternating" % (cpu, os.cpu_count(), prompt_tokens, GENERATED, rounds), flush=True)
    modes = {"brokered, graphs on": runner_env(), "brokered, graphs off": runner_env(GGML_CUDA_DISABLE_GRAPHS="1"),
             "CUDA hidden (CPU)": runner_env(CUDA_VISIBLE_DEVICES="")}
    with tempfile.TemporaryDirectory() as work:
        model = tiny_model(work)
        samples = {mode: [] for mode in modes}
        with Broker() as broker:
            for _ in range(rounds):
                for mode, env in modes.items():
                    samples[mode].append(bench_report(broker, prompt_tokens, GENERATED, model, env))
            broker.stop()
        baseline = percentile([r["decode_tokens_per_second"] for r in samples["CUDA hidden (CPU)"]], 0.5)
        print("%-22s %22s %22s %22s %10s" % ("tokens/s (p50 / p99)", "prompt processing", "decode",
                                             "time to first token ms", "decode x"))
        for mode, reports in samples.items():
            prompt = [r["prompt_tokens_per_second"] for r in reports]
            decode = [r["decode_tokens_per_second"] for r in reports]
            first = [r["time_to_first_token_seconds"] * 1000 for r in reports]
            # p99 of a rate is its slow tail: the 1st percentile of the rates.
            print("%-22s %10.0f / %9.0f %10.0f / %9.0f %10.2f / %9.2f %10.2f" % (
                mode, percentile(prompt, 0.5), percentile(prompt, 0.01), percentile(decode, 0.5),
                percentile(decode, 0.01), percentile(first, 0.5), percentile(first, 0.99),
                percentile(decode, 0.5) / baseline), flush=True)
        print("per decoded token (runs of 1 and %d tokens on fresh brokers):" % (GENERATED + 1))
        for mode in ("brokered, graphs on", "brokered, graphs off"):
            short = work_per_run(prompt_tokens, 1, model, modes[mode], work)
            long = work_per_run(prompt_tokens, GENERATED + 1, model, modes[mode], work)
            per_token = {key: (long[key] - short[key]) / GENERATED for key in ("calls", "kernels", "graphs", "gemms")}
            print("  %-20s %6.1f calls served, %6.1f kernels run, %4.2f graph launches, %4.2f GEMMs" % (
                mode, per_token["calls"], per_token["kernels"], per_token["graphs"], per_token["gemms"]), flush=True)


LAUNCH = re.compile(r"(?:^|\(|  -> )(LaunchKernel|LaunchKernelStaged)(?:: |\()(.+)<<<")


@runner_case()
def case_trace(broker, model, work):
    prefix = os.path.join(work, "runner-trace")
    via = [opslib.RUN, "--socket=" + broker.socket, "--trace=" + prefix, "--"]
    result = run_runner(broker, ["generate", model, "99", "8", "--prompt-tokens=3"],
                        env=runner_env(GGML_CUDA_DISABLE_GRAPHS="1"), via=via)
    report_of(result, "runner.py generate, traced")
    broker.stop()  # a session's device work is all in its file once the broker has let the session go
    counters = sim_counters(work)
    tool = os.environ["GPUBROKER_TRACE_TOOL"]
    lines = subprocess.run([tool, prefix], check=True, capture_output=True, text=True).stdout.splitlines()
    launched = [m.group(2) for m in (LAUNCH.search(line.split(") = ")[0]) for line in lines if " dev] " not in line) if m]
    on_device = [line for line in lines if " dev] " in line and "device:kernel " in line]
    calls = [line for line in lines if " dev] " not in line and "  -> " not in line]
    check(any(line.endswith("session end") for line in lines), "the broker ended the trace with 'session end'")
    print("trace: %d calls, %d kernel launches, %d kernels timed on the device; the sim ran %d kernels"
          % (len(calls), len(launched), len(on_device), counters["kernels_launched"]), flush=True)
    check(counters["kernels_launched"] > 100, "the runner ran its kernels on the sim")
    check(len(launched) == counters["kernels_launched"], "one launch in the trace per kernel the sim ran")
    check(len(on_device) == counters["kernels_launched"], "each kernel the sim ran is timed on the device")
    names = {name for name in launched}
    check(all(any(name in line for name in names) for line in on_device[:50]), "device kernels carry launched names")
    summary = subprocess.run([tool, "--summary", prefix], check=True, capture_output=True, text=True).stdout
    rows = summary.splitlines()
    print("\n".join(["summary's first rows:"] + rows[:6]), flush=True)
    check(any(row.startswith("cudart:") and "Launch" in row for row in rows), "the summary counts the launches")
    check(counters["gemms_run"] == 0 or any(row.startswith("cublas") for row in rows), "the summary has cuBLAS's calls")
    check(any("device work" in row for row in rows), "the summary has the device work")
    events = json.loads(subprocess.run([tool, "--chrome", prefix], check=True, capture_output=True, text=True).stdout)
    check(sum(1 for e in events["traceEvents"] if e.get("cat") == "device") >= len(on_device), "Chrome JSON has the device work")
    svg = subprocess.run([tool, "--svg", prefix], check=True, capture_output=True, text=True).stdout
    check(svg.startswith("<svg") and svg.rstrip().endswith("</svg>"), "an SVG timeline")
    picture = os.environ.get("GPUBROKER_TRACE_PICTURE")  # docs/timeline.svg is made this way
    if picture:
        with open(picture, "w") as f:
            f.write(svg)


CASES = {
    "discovery": case_discovery,
    "load": case_load,
    "generate": case_generate,
    "offload": case_offload,
    "offload-no-graphs": case_offload_no_graphs,
    "offload-four-runners": case_offload_four_runners,
    "kernel-discovery": case_kernel_discovery,
    "kernel-failure": case_kernel_failure,
    "four-runners": case_four_runners,
    "ollama-layout": case_ollama_layout,
    "trace": case_trace,
}

if __name__ == "__main__":
    if sys.argv[1:] == ["figures"]:
        run_cases({"figures": case_figures})
    elif sys.argv[1:] == ["token-figures"]:
        run_cases({"token-figures": case_token_figures})
    else:
        run_cases(CASES)

#!/usr/bin/env python3
"""A llama.cpp runner for the real-runner tests: the prebuilt CUDA 12 llama.cpp of the PyPI wheel
cyllama-cuda12 (llama.cpp b9190, ggml 0.12.0), driven through its Python binding exactly as a
runner process uses the library: load the backends, load a model with N layers offloaded, create
a context (KV cache, compute buffers, graph reservation), decode greedily. Run with the venv's
python, normally through gpu-broker-run. Prints one JSON object on stdout; llama.cpp's log lines
go to stderr.

  runner.py discover                       devices as ggml, libcudart, libcuda and NVML see them
  runner.py load MODEL NGL [--hold]        load and create a context; --hold: print the JSON,
                                           then wait until stdin closes before exiting
  runner.py generate MODEL NGL TOKENS [--prompt-tokens=N] [--logits] [--follow=T1,T2,...]
                                           greedy decoding of a fixed prompt: the token ids;
                                           --prompt-tokens: a fixed prompt of N tokens instead of
                                           PROMPT's; --logits: each step's logits too; --follow:
                                           decode these tokens as the steps' inputs (another run's
                                           choices) instead of its own, so that two runs compute
                                           every step from the same context
  runner.py bench MODEL NGL PROMPT GEN [--hold]
                                           a PROMPT-token prompt in one batch, then GEN greedy
                                           tokens: prompt and decode tokens per second, time to
                                           first token, process start to first token, the tokens;
                                           --hold: print the JSON, then wait until stdin closes

Times are wall-clock seconds from time.monotonic(). The first CUDA call of the process is made by
ggml_backend_load_all() (the CUDA backend's registration counts and describes the devices), so
"backend_seconds" is the time from just before the first CUDA call to a usable backend.
"""

import ctypes
import json
import os
import sys
import time

START = time.monotonic()
PROMPT = "hello world the model runs on the broker"

LOG = []


def log_line(level, text):
    LOG.append(text)
    sys.stderr.write(text)


def mapped_library(soname):
    """The file that backs `soname` in this process (it is a shim when gpu-broker-run did its job)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if os.path.basename(path) == soname:
                return path
    return None


def backends():
    import cyllama.llama.llama_cpp as cy

    cy.set_log_callback(log_line)
    t0 = time.monotonic()
    cy.ggml_backend_load_all()
    devices = cy.ggml_backend_dev_info()
    return cy, devices, time.monotonic() - t0


def identity():
    """Device 0 as each CUDA library of the process describes it."""
    out = {}
    cudart = ctypes.CDLL("libcudart.so.12")
    count = ctypes.c_int(0)
    out["cudart_count_status"] = cudart.cudaGetDeviceCount(ctypes.byref(count))
    out["cudart_count"] = count.value
    if count.value == 0:
        return out
    bus = ctypes.create_string_buffer(64)
    cudart.cudaDeviceGetPCIBusId(bus, 64, 0)
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total))
    out["cudart"] = {"pci": bus.value.decode(), "total": total.value}

    cuda = ctypes.CDLL("libcuda.so.1")
    cuda.cuInit(0)
    device = ctypes.c_int(0)
    cuda.cuDeviceGet(ctypes.byref(device), 0)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, device)
    cuda.cuDeviceGetPCIBusId(bus, 64, device)
    total_mem = ctypes.c_size_t(0)
    cuda.cuDeviceTotalMem_v2(ctypes.byref(total_mem), device)
    out["cuda"] = {"name": name.value.decode(), "pci": bus.value.decode(), "total": total_mem.value}

    nvml = ctypes.CDLL("libnvidia-ml.so.1")
    nvml.nvmlInit_v2()
    handle = ctypes.c_void_p()
    nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle))
    nvml.nvmlDeviceGetName(handle, name, 256)

    class PciInfo(ctypes.Structure):  # nvmlPciInfo_t
        _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                    ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                    ("busId", ctypes.c_char * 32)]

    class Memory(ctypes.Structure):  # nvmlMemory_t
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]

    pci, memory = PciInfo(), Memory()
    nvml.nvmlDeviceGetPciInfo_v3(handle, ctypes.byref(pci))
    nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory))
    out["nvml"] = {"name": name.value.decode(), "pci": pci.busId.decode(), "total": memory.total}
    return out


def discover():
    _, devices, seconds = backends()
    return {"devices": devices, "backend_seconds": seconds, "identity": identity(), "log": LOG,
            "libcudart": mapped_library("libcudart.so.12"), "libcublasLt": mapped_library("libcublasLt.so.12")}


def load(model_path, n_gpu_layers, n_ctx=256, n_batch=64):
    cy, devices, backend_seconds = backends()

    class Model(cy.LlamaModel):
        # The binding's LlamaContext.get_logits_ith asks its model for n_vocab, which LlamaModel
        # 0.2.18 lacks (its vocabulary has it).
        @property
        def n_vocab(self):
            return self.get_vocab().n_vocab

    t0 = time.monotonic()
    params = cy.LlamaModelParams()
    params.n_gpu_layers = n_gpu_layers
    model = Model(model_path, params)
    t1 = time.monotonic()
    ctx_params = cy.LlamaContextParams()
    ctx_params.n_ctx = n_ctx
    ctx_params.n_batch = n_batch
    ctx_params.n_ubatch = n_batch
    context = cy.LlamaContext(model, ctx_params)
    t2 = time.monotonic()
    return cy, model, context, {"devices": devices, "backend_seconds": backend_seconds, "model_seconds": t1 - t0,
                                "context_seconds": t2 - t1, "since_start_seconds": t2 - START}


def fixed_prompt(vocab, n_tokens):
    """BOS, then PROMPT's words over and over: exactly n_tokens tokens, the same every run."""
    words = vocab.tokenize(PROMPT, add_special=False, parse_special=False)
    return (vocab.tokenize("", add_special=True, parse_special=False) + words * (n_tokens // len(words) + 1))[:n_tokens]


def generate(model_path, n_gpu_layers, n_tokens, n_prompt=None, logits=False, follow=None):
    cy, model, context, report = load(model_path, n_gpu_layers)
    vocab = model.get_vocab()
    prompt = (vocab.tokenize(PROMPT, add_special=True, parse_special=True) if n_prompt is None
              else fixed_prompt(vocab, n_prompt))
    sampler = cy.LlamaSampler(cy.LlamaSamplerChainParams())
    sampler.add_greedy()
    t0 = time.monotonic()
    batch = cy.llama_batch_get_one(prompt)
    tokens, position, steps = [], len(prompt), []
    first_token_seconds = None
    for _ in range(n_tokens):
        context.decode(batch)
        if logits:
            steps.append([float(v) for v in context.get_logits_ith(-1)])
        token = sampler.sample(context, -1)
        if first_token_seconds is None:
            first_token_seconds = time.monotonic() - START
        tokens.append(token)
        if follow is not None:
            if len(tokens) >= len(follow):
                break
            token = follow[len(tokens) - 1]
        if vocab.is_eog(token):
            break
        batch = cy.llama_batch_get_one([token], position)
        position += 1
    report.update({"prompt_tokens": len(prompt), "tokens": tokens, "decode_seconds": time.monotonic() - t0,
                   "first_token_since_start_seconds": first_token_seconds})
    if logits:
        report["logits"] = steps
    return report


def bench(model_path, n_gpu_layers, n_prompt, n_generate):
    cy, model, context, report = load(model_path, n_gpu_layers, n_ctx=n_prompt + n_generate + 8, n_batch=n_prompt)
    vocab = model.get_vocab()
    prompt = fixed_prompt(vocab, n_prompt)
    sampler = cy.LlamaSampler(cy.LlamaSamplerChainParams())
    sampler.add_greedy()
    t0 = time.monotonic()
    context.decode(cy.llama_batch_get_one(prompt))
    token = sampler.sample(context, -1)  # reads the logits: the prompt's work is done
    t1 = time.monotonic()
    tokens = [token]
    for position in range(n_prompt, n_prompt + n_generate - 1):
        context.decode(cy.llama_batch_get_one([token], position))
        token = sampler.sample(context, -1)
        tokens.append(token)
    t2 = time.monotonic()
    report.update({"prompt_tokens": n_prompt, "prompt_tokens_per_second": n_prompt / (t1 - t0),
                   "decode_tokens_per_second": (len(tokens) - 1) / (t2 - t1), "time_to_first_token_seconds": t1 - t0,
                   "start_to_first_token_seconds": t1 - START, "tokens": tokens})
    return report


def main(argv):
    if len(argv) >= 2 and argv[1] == "discover":
        result = discover()
    elif len(argv) >= 4 and argv[1] == "load":
        *_, result = load(argv[2], int(argv[3]))
    elif len(argv) >= 5 and argv[1] == "generate":
        options = dict(a[2:].partition("=")[::2] for a in argv[5:])
        follow = options.get("follow")
        result = generate(argv[2], int(argv[3]), int(argv[4]),
                          int(options["prompt-tokens"]) if "prompt-tokens" in options else None, "logits" in options,
                          [int(t) for t in follow.split(",")] if follow else None)
    elif len(argv) in (6, 7) and argv[1] == "bench":
        result = bench(argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
    else:
        sys.stderr.write(__doc__)
        return 2
    print(json.dumps(result), flush=True)
    if "--hold" in argv:  # the process, its CUDA session included, lives on until stdin closes
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

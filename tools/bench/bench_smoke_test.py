#!/usr/bin/env python3
"""Runs each gpubroker-bench scenario of issue 9 with --quick --json against a sim broker the
bench starts itself, and checks that the JSON it prints has the keys that BENCHMARKS.md and the
plots read (the values are measurements and are not checked, beyond being numbers).

Usage: bench_smoke_test.py PATH/TO/gpubroker-bench
"""
import json
import subprocess
import sys

LATENCY = ("p50", "p99", "p999")
CLIENTS = (1, 2, 4, 8, 16)
POLICIES = ("spin", "adaptive", "sleep")

# scenario -> (extra arguments, latency keys, number keys)
SCENARIOS = {
    "graph": ([], [], ["graph_nodes", "graph_launches_per_s", "graph_kernels_per_s", "kernel_launches_per_s",
                       "graph_kernels_over_launches"]),
    "copies": ([], [], [f"copy_{size}_{what}" for size in ("4KiB", "16KiB", "64KiB", "256KiB", "1MiB")
                        for what in ("h2d_pageable_gbps", "d2h_pageable_gbps", "h2d_pinned_gbps", "d2h_pinned_gbps",
                                     "memcpy_gbps", "h2d_pageable_over_memcpy", "d2h_pageable_over_memcpy")]
               + ["max_size_bytes", "pinned_cpu_bytes_copied"]),
    "first-call": ([], ["first_call_us"], ["first_call_ms", "process_start_ms", "first_call_minus_process_start_ms"]),
    "discovery": ([], ["discovery_us"], ["discovery_ms", "process_start_ms", "discovery_minus_process_start_ms"]),
    "scaling": ([], ["ring_round_trip_ns", "unix_socket_round_trip_ns"] + [f"clients{n}_sync_ns" for n in CLIENTS],
                [f"clients{n}_{what}" for n in CLIENTS for what in ("calls_per_s", "broker_cpu_ns_per_call")]),
    "wait-policies": ([], [f"{p}_clients{n}_sync_ns" for p in POLICIES for n in (1, 16)],
                      [f"{p}_{what}" for p in POLICIES for what in (
                          "clients1_broker_cpu_ns_per_call", "clients1_idle_broker_cpu", "clients16_calls_per_s",
                          "clients16_broker_cpu_ns_per_call", "clients16_idle_broker_cpu")]),
    "broker-cpu": ([], ["sync_call_ns"], ["calls", "broker_cpu_ns_per_call", "broker_cpu_over_latency", "idle_broker_cpu"]),
    "runtime": ([], ["sync_call_ns"], ["first_call_ms", "clients16_sync_p99_ns", "pinned_cpu_bytes_copied"]),
}


def check(bench, scenario, extra, latencies, numbers):
    command = [bench, scenario, "--quick", "--json", *extra]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        return [f"{' '.join(command)} exited with {run.returncode}: {run.stderr.strip()}"]
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError as error:
        return [f"{scenario}: not one JSON object ({error}): {run.stdout[:200]!r}"]
    problems = []
    if not isinstance(report.get("machine"), str):
        problems.append(f"{scenario}: no machine name")
    results = report.get("results", {})
    for key in latencies:
        value = results.get(key)
        if not isinstance(value, dict) or any(not isinstance(value.get(p), (int, float)) for p in LATENCY):
            problems.append(f"{scenario}: results.{key} is not a p50/p99/p999 object: {value!r}")
    for key in numbers:
        if not isinstance(results.get(key), (int, float)):
            problems.append(f"{scenario}: results.{key} missing or not a number: {results.get(key)!r}")
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    problems = []
    for scenario, (extra, latencies, numbers) in SCENARIOS.items():
        found = check(sys.argv[1], scenario, extra, latencies, numbers)
        print(f"{scenario}: {'ok' if not found else 'FAILED'}", flush=True)
        problems += found
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

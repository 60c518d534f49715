#!/usr/bin/env python3
"""Draws BENCHMARKS.md's plots with gnuplot (Debian's gnuplot-nox; scripts/setup.sh installs it)
from what gpubroker-bench printed with --json:

    gpubroker-bench copies --json --max-size=1G > copies.json
    gpubroker-bench scaling --json --wait-policy=sleep > sleep.json
    gpubroker-bench scaling --json --wait-policy=adaptive > adaptive.json
    tools/bench/plot.py copies.json docs/plots sleep.json=sleep adaptive.json=adaptive

writes OUTDIR/latency_vs_clients.png (sync call p50/p99 against the number
of client processes, one pair of lines per scaling run given as FILE[=LABEL], with the first
run's raw ring round trip as the baseline) and OUTDIR/bandwidth_vs_size.png
(cudaMemcpy GB/s by size, pageable and pinned, both directions, against memcpy of the same size).
"""
import json
import os
import re
import subprocess
import sys
import tempfile


def load(path):
    with open(path) as f:
        report = json.load(f)
    return report["machine"], report["results"]


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def latency_plot(runs, out, tmp):
    """runs: [(label, machine, results)], one line pair (p50, p99) per scaling run."""
    plots = []
    for i, (label, machine, results) in enumerate(runs):
        clients = sorted(int(m.group(1)) for k in results if (m := re.fullmatch(r"clients(\d+)_sync_ns", k)))
        data = os.path.join(tmp, f"latency{i}.dat")
        with open(data, "w") as f:
            for n in clients:
                sync = results[f"clients{n}_sync_ns"]
                f.write(f"{n} {sync['p50'] / 1e3} {sync['p99'] / 1e3} {results[f'clients{n}_calls_per_s'] / 1e6}\n")
        plots += [f"'{data}' using 1:2 with linespoints title '{label}: p50'",
                  f"'{data}' using 1:3 with linespoints title '{label}: p99'"]
    ring = runs[0][2]["ring_round_trip_ns"]["p50"] / 1e3
    plots.append(f"{ring} with lines dashtype 2 title 'raw ring round trip p50, 1 client ({runs[0][0]} run)'")
    gnuplot(f"""set terminal png size 1000,600
set output '{out}'
set title "Synchronous runtime call (cudaStreamQuery) through the shim, sim broker\\n{runs[0][1]}" noenhanced
set xlabel 'client processes'
set ylabel 'latency (µs)'
set logscale x 2
set logscale y
set key top left noenhanced
set grid
plot {", ".join(plots)}
""")


def bandwidth_plot(machine, results, out, data):
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    sizes = sorted({(int(m.group(1)) * units[m.group(2)], m.group(1) + m.group(2))
                    for k in results if (m := re.fullmatch(r"copy_(\d+)(KiB|MiB|GiB)_memcpy_gbps", k))})
    with open(data, "w") as f:
        for size, label in sizes:
            key = f"copy_{label}"
            f.write(f"{size} {results[key + '_h2d_pageable_gbps']} {results[key + '_d2h_pageable_gbps']} "
                    f"{results[key + '_h2d_pinned_gbps']} {results[key + '_d2h_pinned_gbps']} "
                    f"{results[key + '_memcpy_gbps']} {label}\n")
    gnuplot(f"""set terminal png size 900,560
set output '{out}'
set title "cudaMemcpy through the shim by size, sim broker (device memory is host memory)\\n{machine}" noenhanced
set xlabel 'copy size'
set ylabel 'GB/s'
set logscale x 4
set xrange [3000:1.5e9]
set key top right
set grid
plot '{data}' using 1:2:xtic(7) with linespoints title 'pageable H2D', \\
     '{data}' using 1:3 with linespoints title 'pageable D2H', \\
     '{data}' using 1:4 with linespoints title 'pinned H2D', \\
     '{data}' using 1:5 with linespoints title 'pinned D2H', \\
     '{data}' using 1:6 with linespoints dashtype 2 title 'memcpy, one thread (baseline)'
""")


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    copies, outdir, scalings = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(outdir, exist_ok=True)
    runs = []
    for spec in scalings:
        path, _, label = spec.partition("=")
        runs.append((label or os.path.basename(path), *load(path)))
    with tempfile.TemporaryDirectory() as tmp:
        latency_plot(runs, os.path.join(outdir, "latency_vs_clients.png"), tmp)
        bandwidth_plot(*load(copies), os.path.join(outdir, "bandwidth_vs_size.png"), os.path.join(tmp, "bandwidth.dat"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

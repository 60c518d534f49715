#!/usr/bin/env python3
"""Draws BENCHMARKS.md's plots with gnuplot (Debian's gnuplot-nox; scripts/setup.sh installs it)
from what gpubroker-bench printed with --json:

    gpubroker-bench scaling --json > scaling.json
    gpubroker-bench copies --json --max-size=1G > copies.json
    tools/bench/plot.py scaling.json copies.json docs/plots

writes OUTDIR/latency_vs_clients.png (sync call p50/p99 and aggregate calls/s against the number
of client processes, with the raw ring round trip as the baseline) and OUTDIR/bandwidth_vs_size.png
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


def latency_plot(machine, results, out, data):
    clients = sorted(int(m.group(1)) for k in results if (m := re.fullmatch(r"clients(\d+)_sync_ns", k)))
    with open(data, "w") as f:
        for n in clients:
            sync = results[f"clients{n}_sync_ns"]
            f.write(f"{n} {sync['p50'] / 1e3} {sync['p99'] / 1e3} {results[f'clients{n}_calls_per_s'] / 1e6}\n")
    ring = results["ring_round_trip_ns"]["p50"] / 1e3
    gnuplot(f"""set terminal png size 900,560
set output '{out}'
set title "Synchronous runtime call (cudaStreamQuery) through the shim, sim broker\\n{machine}" noenhanced
set xlabel 'client processes'
set ylabel 'latency (µs)'
set y2label 'all clients together (M calls/s)'
set logscale x 2
set logscale y
set ytics nomirror
set y2tics
set key top left
set grid
plot '{data}' using 1:2 with linespoints title 'p50', \\
     '{data}' using 1:3 with linespoints title 'p99', \\
     {ring} with lines dashtype 2 title 'raw ring round trip p50 (1 client, baseline)', \\
     '{data}' using 1:4 axes x1y2 with linespoints title 'aggregate M calls/s (right axis)'
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
set key top left
set grid
plot '{data}' using 1:2:xtic(7) with linespoints title 'pageable H2D', \\
     '{data}' using 1:3 with linespoints title 'pageable D2H', \\
     '{data}' using 1:4 with linespoints title 'pinned H2D', \\
     '{data}' using 1:5 with linespoints title 'pinned D2H', \\
     '{data}' using 1:6 with linespoints dashtype 2 title 'memcpy, one thread (baseline)'
""")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    scaling, copies, outdir = sys.argv[1:]
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        latency_plot(*load(scaling), os.path.join(outdir, "latency_vs_clients.png"), os.path.join(tmp, "latency.dat"))
        bandwidth_plot(*load(copies), os.path.join(outdir, "bandwidth_vs_size.png"), os.path.join(tmp, "bandwidth.dat"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

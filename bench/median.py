"""Medians over rounds of `larder-bench compare` (its compare.csv files): per point
(mix, processes, transport), memcached's and larderd's listener's throughput and p99 of all
requests, and the ratios larder-mc ÷ memcached. Usage: median.py round-*/compare.csv"""

import csv
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)  # (read_pct, procs, system) -> [(ops_per_s, all_p99_ns)]
for path in sys.argv[1:]:
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[(int(r["read_pct"]), int(r["procs"]), r["system"])].append(
                (float(r["ops_per_s"]), float(r["all_p99_ns"] or "nan")))

rounds = len(sys.argv) - 1
print(f"Medians of {rounds} interleaved rounds; ratio = larder-mc ÷ memcached.\n")
print("| mix | connections | transport | memcached ops/s | larder-mc ops/s | ops ratio "
      "| memcached p99 | larder-mc p99 | p99 ratio |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
points = sorted({(m, p) for (m, p, _) in rows}, key=lambda x: (-x[0], x[1]))
for transport in ("unix", "tcp"):
    for mix, procs in points:
        mc = rows.get((mix, procs, f"memcached/{transport}"))
        ld = rows.get((mix, procs, f"larder-mc/{transport}"))
        if not mc or not ld:
            continue
        med = lambda xs, i: statistics.median(x[i] for x in xs)
        mo, lo = med(mc, 0), med(ld, 0)
        mp, lp = med(mc, 1) / 1000, med(ld, 1) / 1000
        print(f"| {mix}/{100 - mix} | {procs} | {transport} | {mo / 1000:.1f} k | {lo / 1000:.1f} k "
              f"| {lo / mo:.2f} | {mp:.1f} µs | {lp:.1f} µs | {lp / mp:.2f} |")

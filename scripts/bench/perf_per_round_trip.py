#!/usr/bin/env python3
"""Per round trip figures from a bench-e2e.sh --perf-stat run of the rtt metric.

    scripts/bench/perf_per_round_trip.py OUT_DIR

For every udpring variant and round: the perf events counted in both
daemons (raw/perf-VARIANT-rROUND-rtt.csv) divided by the round trips the
daemons carried in that measurement (their tun_rx_packets, from
results.json), then the median over rounds. A round trip crosses the daemons
four times, two in each; the last column is the CPU per crossing.
"""
import collections
import json
import statistics
import sys


def read_perf(path):
    """{event: count summed over threads}, and the threads that ran."""
    total = collections.defaultdict(float)
    threads = set()
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            if line.startswith("#") or len(fields) < 4:
                continue
            try:
                value = float(fields[1])
            except ValueError:  # <not counted>, <not supported>
                continue
            total[fields[3]] += value
            if fields[3] == "task-clock" and value > 100:  # ms: a worker that carried traffic
                threads.add(fields[0])
    return total, threads


def main(out):
    with open(f"{out}/results.json") as f:
        results = json.load(f)
    rows = collections.defaultdict(lambda: collections.defaultdict(list))
    for s in results["samples"]:
        if s.get("metric") != "rtt_p50_us" or s.get("mode") != "udpring" or s.get("error"):
            continue
        counters = s["daemon_counters"]
        trips = (counters["n1"]["tun_rx_packets"] + counters["n2"]["tun_rx_packets"]) / 2
        events, busy = read_perf(f"{out}/raw/perf-{s['variant']}-r{s['round']}-rtt.csv")
        row = rows[(s["variant"], " ".join(s.get("flags") or []) or "(default flags)")]
        row["p50 us"].append(s["value"])
        row["busy threads"].append(len(busy))
        for event, count in events.items():
            scale = 1000.0 if event == "task-clock" else 1.0  # ms -> us
            row[f"{event} per RTT"].append(count * scale / trips)
        row["CPU us per crossing"].append(events["task-clock"] * 1000.0 / trips / 4)
    for (variant, flags), row in rows.items():
        print(f"{variant}: {flags}, {len(row['p50 us'])} round(s), medians")
        for name, values in row.items():
            print(f"  {name:40s} {statistics.median(values):10.2f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

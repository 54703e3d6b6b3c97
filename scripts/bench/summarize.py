#!/usr/bin/env python3
"""summarize.py -- results.json and summary.txt of a bench-e2e.sh run.

    scripts/bench/summarize.py OUT_DIR SAMPLES.jsonl CONFIG.json

Reads the samples (one JSON object per line) and the run's configuration
that bench-e2e.sh wrote, computes medians, CPU figures and ratios, writes
OUT_DIR/results.json and OUT_DIR/summary.txt, and prints the summary.
"""
import json, os, statistics, sys

out, samples_path, config_path = sys.argv[1:4]
samples = [json.loads(l) for l in open(samples_path) if l.strip()]
config = json.load(open(config_path))

vinfo = {v["name"]: v for v in config["variants"]}
variants = [v["name"] for v in config["variants"]]
metrics = config["metrics"]
meta = config["metric_meta"]
sweep = config["flags_sweep"] is not None

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def ok(metric, variant):
    return [s for s in samples
            if s["metric"] == metric and s["variant"] == variant and s["value"] is not None]

ours = [v for v in variants if vinfo[v]["mode"] == "udpring"]
refs = [v for v in ("vxlan", "routing") if v in variants]

# ---- numbers -------------------------------------------------------------
summary = {}
for m in metrics:
    summary[m] = {}
    grp = meta[m]["group"]
    for v in variants:
        good = ok(m, v)
        vals = [s["value"] for s in good]
        n_all = len([s for s in samples if s["metric"] == m and s["variant"] == v])
        st = {
            "n": len(vals), "failed": n_all - len(vals),
            "median": med(vals),
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
        }
        cpu = [s for s in good if s.get("cpu_s")]
        if cpu:
            tot = lambda s: s["cpu_s"]["total"]
            st["cpu_s_median"] = {k: med(s["cpu_s"][k] for s in cpu) for k in ("total", "n1", "n2")}
            # share of one core over the whole measurement (tool setup included)
            st["cpu_pct_of_core_median"] = med(100.0 * tot(s) / s["wall_s"]
                                               for s in cpu if s.get("wall_s"))
            if grp in ("tcp1", "tcpN"):
                st["cpu_s_per_gb_median"] = med(tot(s) / (s["bytes"] / 1e9)
                                                for s in cpu if s.get("bytes"))
            elif grp == "udp64":
                st["cpu_us_per_packet_median"] = med(1e6 * tot(s) / s["received_packets"]
                                                     for s in cpu if s.get("received_packets"))
            elif grp == "rtt":
                st["cpu_us_per_round_trip_median"] = med(1e6 * tot(s) / s["round_trips"]
                                                         for s in cpu if s.get("round_trips"))
        summary[m][v] = st
    for v in ours:
        st = summary[m][v]
        st["ratios"] = {}
        for r in refs:
            x, y = st["median"], summary[m][r]["median"]
            st["ratios"][r] = (x / y) if x is not None and y else None

# ---- table ---------------------------------------------------------------
def label(m):
    l = "%s (%s)" % (meta[m]["label"], meta[m]["unit"])
    return l + (" lower=better" if meta[m]["better"] == "lower" else "")

def num(m, x):
    return meta[m]["fmt"] % x

def cell(m, st):
    if st["median"] is None:
        return "FAILED"
    c = "%s [%s..%s]" % (num(m, st["median"]), num(m, st["min"]), num(m, st["max"]))
    if st["failed"]:
        c += " (%d failed)" % st["failed"]
    return c

def first_of_group(m):
    grp = meta[m]["group"]
    return next(x for x in metrics if meta[x]["group"] == grp) == m

def cpu_cells(m, v):
    # CPU belongs to a run; show it once per run (the group's first metric).
    st = summary[m][v]
    if not first_of_group(m) or "cpu_s_median" not in st:
        return ["", "", ""]
    eff = ""
    if st.get("cpu_s_per_gb_median") is not None:
        eff = "%.2f s/GB" % st["cpu_s_per_gb_median"]
    elif st.get("cpu_us_per_packet_median") is not None:
        eff = "%.2f us/pkt" % st["cpu_us_per_packet_median"]
    elif st.get("cpu_us_per_round_trip_median") is not None:
        eff = "%.1f us/rtt" % st["cpu_us_per_round_trip_median"]
    pct = st.get("cpu_pct_of_core_median")
    return ["%.2f" % st["cpu_s_median"]["total"],
            "%.0f%%" % pct if pct is not None else "", eff]

def ratio_cell(x):
    return "%.2f" % x if x is not None else "n/a"

cpu_hdr = ["CPU-s/run", "%core", "CPU cost"]
blocks = []   # (title or None, rows)
if not sweep:
    header = ["metric"] + variants + ["%s/%s" % (a, b) for a in ours for b in refs]
    if ours:
        header += cpu_hdr
    rows = []
    for m in metrics:
        row = [label(m)] + [cell(m, summary[m][v]) for v in variants]
        for a in ours:
            row += [ratio_cell(summary[m][a]["ratios"][b]) for b in refs]
        for a in ours:
            row += cpu_cells(m, a)
        rows.append(row)
    blocks.append((None, rows))
else:
    header = ["metric", "udpring"] + refs + ["udpring/%s" % b for b in refs] + cpu_hdr
    for a in ours:
        rows = []
        for m in metrics:
            row = [label(m), cell(m, summary[m][a])] + [cell(m, summary[m][b]) for b in refs]
            row += [ratio_cell(summary[m][a]["ratios"][b]) for b in refs]
            row += cpu_cells(m, a)
            rows.append(row)
        # The label names the binary of a bin= set ("[PATH] flags"), which
        # the flags alone would not tell apart from the default one.
        title = vinfo[a].get("label") or " ".join(vinfo[a]["flags"]) or "(default flags)"
        blocks.append(("%s: udpringd %s" % (a, title), rows))

all_rows = [header] + [r for _, rs in blocks for r in rs]
widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

lines = []
what = ("flags sweep (%d flag set(s) + %s)" % (len(ours), ",".join(refs)) if sweep
        else "modes " + ",".join(variants))
lines.append("udpring end-to-end benchmark: %d round(s), %d s per run, %s"
             % (config["rounds"], config["time_s"], what))
lines.append("kernel %s, git %s, underlay offloads %s; values: median [min..max] over rounds"
             % (config["kernel"], config["git_rev"], config.get("underlay_offload", "no-uso")))
if config["udpringd_args"]:
    lines.append("udpringd extra args (every udpring run): %s" % " ".join(config["udpringd_args"]))
lines.append("")
lines.append(fmt(header))
lines.append(fmt(["-" * w for w in widths]))
for title, rows in blocks:
    if title:
        lines.append(title)
    lines += [fmt(r) for r in rows]
notes = []
if ours and refs:
    notes.append("ratios: udpring median / reference median; > 1 is better for "
                 "throughput rows, < 1 is better for rows marked lower=better.")
if ours:
    notes.append("CPU: utime+stime of both udpringd, median per run (shown once per run: "
                 "the UDP loss and RTT p99 rows share the run above them); %core = share of "
                 "one core over the run's wall time; cost = CPU-s per GB (1e9 bytes) "
                 "received (TCP), "
                 "CPU-us per packet received (UDP), CPU-us per round trip (RTT).")
if notes:
    lines.append("")
    lines += notes

# CPU split per daemon (n1 sends pod1's traffic, n2 delivers it to pod2)
cpu_lines = []
vw = max([len(v) for v in ours] + [1])
lw = max(len(label(m)) for m in metrics)
for v in ours:
    for m in metrics:
        st = summary[m][v]
        if not first_of_group(m) or "cpu_s_median" not in st:
            continue
        c = st["cpu_s_median"]
        cpu_lines.append("  %s  %s  %.2f s = n1 %.2f + n2 %.2f per %d s run"
                         % (v.ljust(vw), label(m).ljust(lw), c["total"], c["n1"], c["n2"],
                            config["time_s"]))
if cpu_lines:
    lines.append("")
    lines.append("udpringd CPU time per daemon (median over rounds):")
    lines += cpu_lines

# Peak resident memory per daemon (VmHWM, each variant's daemons start anew
# every round): the largest after any metric group of the round, median over
# rounds.
rss_lines = []
for v in ours:
    per_round = {}
    for s in samples:
        r = s.get("peak_rss_kib")
        if s["variant"] == v and r and r.get("n1") is not None and r.get("n2") is not None:
            per_round[s["round"]] = max(per_round.get(s["round"], 0), r["n1"], r["n2"])
    if per_round:
        st = med(list(per_round.values()))
        rss_lines.append("  %s  %.1f MiB (max %.1f MiB over %d rounds)"
                         % (v.ljust(vw), st / 1024, max(per_round.values()) / 1024, len(per_round)))
if rss_lines:
    lines.append("")
    lines.append("udpringd peak RSS, the larger daemon (VmHWM, median over rounds):")
    lines += rss_lines

# Host steal time: how much CPU the hypervisor withheld during each run, as
# a share of the machine's CPUs over the run; a run with a high share was hit
# by a neighbour and explains an outlier.
ncpu = os.cpu_count() or 1
steal_lines = []
for v in variants:
    sh = [100.0 * s["steal_s"] / (s["wall_s"] * ncpu) for s in samples
          if s["variant"] == v and s.get("steal_s") is not None and s.get("wall_s")
          and first_of_group(s["metric"])]
    if sh:
        worst = max((s for s in samples if s["variant"] == v and s.get("steal_s") is not None
                     and s.get("wall_s") and first_of_group(s["metric"])),
                    key=lambda s: s["steal_s"] / s["wall_s"])
        steal_lines.append("  %s  median %.1f %%, max %.1f %% (round %d, %s)"
                           % (v.ljust(max(len(x) for x in variants)), med(sh), max(sh),
                              worst["round"], meta[worst["metric"]]["label"]))
if steal_lines:
    lines.append("")
    lines.append("host steal time during the runs (share of all %d CPUs; /proc/stat):" % ncpu)
    lines += steal_lines

# Where UDP 64 B packets went (daemon counters, pod1 -> pod2 direction)
if "udp64_kpps" in metrics:
    path_lines = []
    for v in ours:
        good = [s for s in ok("udp64_kpps", v) if s.get("daemon_counters")
                and s["daemon_counters"].get("n1") is not None
                and s["daemon_counters"].get("n2") is not None]
        if not good:
            continue
        c = lambda s, n, k: s["daemon_counters"][n].get(k, 0)
        drops = lambda s, n: sum(x for k, x in s["daemon_counters"][n].items()
                                 if k.startswith("drop_"))
        f = lambda vals: "%.0f" % med(vals)
        path_lines.append(
            "  %s  pod1 sent %s; n1 read %s from TUN, sent %s datagrams; "
            "n2 received %s, wrote %s into TUN; pod2 got %s; daemon drops %s"
            % (v.ljust(vw), f([s["sent_packets"] for s in good]),
               f([c(s, "n1", "tun_rx_packets") for s in good]),
               f([c(s, "n1", "udp_tx_packets") for s in good]),
               f([c(s, "n2", "udp_rx_packets") for s in good]),
               f([c(s, "n2", "tun_tx_packets") for s in good]),
               f([s["received_packets"] for s in good]),
               f([drops(s, "n1") + drops(s, "n2") for s in good])))
    if path_lines:
        lines.append("")
        lines.append("UDP 64 B packet path, pod1 -> pod2 (daemon counters, medians per run; "
                     "'pod1 sent' minus 'n1 read' was dropped before udpringd (pod link, TUN "
                     "queue), 'wrote into TUN' minus 'pod2 got' after it (pod2's link and "
                     "socket buffer); n1 also reads iperf3's TCP control packets):")
        lines += path_lines

failed = [s for s in samples if s["value"] is None]
if failed:
    lines.append("")
    lines.append("%d failed measurement(s):" % len(failed))
    for s in failed:
        lines.append("  round %d %s %s: %s" % (s["round"], s["variant"], s["metric"], s["error"]))

text = "\n".join(lines) + "\n"
open(out + "/summary.txt", "w").write(text)
json.dump({"config": config, "samples": samples, "summary": summary},
          open(out + "/results.json", "w"), indent=2)
sys.stdout.write(text)

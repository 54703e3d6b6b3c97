#!/usr/bin/env python3
"""parse.py -- the figures of one bench-e2e.sh measurement, from its raw file.

    scripts/bench/parse.py tcp RAW.json    iperf3 TCP:  "GBIT_S RETRANSMITS BYTES"
    scripts/bench/parse.py udp RAW.json    iperf3 UDP:  "KPPS LOSS_PCT SENT RECEIVED SECONDS"
    scripts/bench/parse.py rtt RAW.txt     sockperf:    "P50_US P99_US EXTRA" where EXTRA
                                           is a comma-separated list of JSON members

Prints one line on stdout for bench-e2e.sh to read; exits non-zero (with a
message on stderr) if the file does not hold the figures.
"""
import json
import re
import sys


def tcp(path):
    d = json.load(open(path))
    end = d["end"]
    # sum_received: what the receiving iperf3 in pod2 got, i.e. what was forwarded.
    print("%.6f %d %d" % (end["sum_received"]["bits_per_second"] / 1e9,
                          end.get("sum_sent", {}).get("retransmits", -1),
                          end["sum_received"]["bytes"]))


def udp(path):
    # The receiver's own accounting; see group_udp64 in bench-e2e.sh.
    d = json.load(open(path))
    end = d["end"]
    rx = end.get("sum_received") or end["sum"]   # old iperf3: only "sum"
    seen = int(rx["packets"])
    lost = max(int(rx["lost_packets"]), 0)
    received = seen - lost
    sent = max(int(end.get("sum_sent", {}).get("packets", 0)), seen)
    secs = float(rx["seconds"])
    if secs <= 0 or sent <= 0:
        sys.exit("no packets")
    print("%.3f %.4f %d %d %.6f" % (received / secs / 1e3, 100.0 * (sent - received) / sent,
                                    sent, received, secs))


def rtt(path):
    t = re.sub(r"\x1b\[[0-9;]*m", "", open(path, errors="replace").read())

    def num(pat, conv=float):
        m = re.search(pat, t)
        return conv(m.group(1)) if m else None
    p50 = num(r"percentile 50\.000 =\s*([0-9.]+)")
    p99 = num(r"percentile 99\.000 =\s*([0-9.]+)")
    if p50 is None or p99 is None:
        sys.exit("no percentile lines")
    extra = {
        "rtt_avg_us": num(r"avg-(?:rtt|latency)=([0-9.]+)"),
        "rtt_min_us": num(r"<MIN> observation =\s*([0-9.]+)"),
        "rtt_max_us": num(r"<MAX> observation =\s*([0-9.]+)"),
        "rtt_p999_us": num(r"percentile 99\.900 =\s*([0-9.]+)"),
        "observations": num(r"Total (\d+) observations", int),
        # all replies of the run including warm-up: the CPU window covers it all
        "round_trips": num(r"\[Total Run\].*ReceivedMessages=(\d+)", int),
        "dropped_messages": num(r"# dropped messages = (\d+)", int),
    }
    print("%.3f %.3f %s" % (p50, p99, ",".join(
        '"%s":%s' % (k, "null" if v is None else v) for k, v in extra.items())))


KINDS = {"tcp": tcp, "udp": udp, "rtt": rtt}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS:
        sys.exit("usage: parse.py tcp|udp|rtt FILE")
    KINDS[sys.argv[1]](sys.argv[2])

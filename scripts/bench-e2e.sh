#!/usr/bin/env bash
# bench-e2e.sh -- end-to-end pod-to-pod throughput: udpring vs the kernel.
#
#   scripts/bench-e2e.sh [OPTIONS] [-- UDPRINGD_ARGS...]
#
# One invocation builds the scripts/netns.sh topology once, then runs
# --rounds rounds; each round runs every mode in turn (round 1: udpring,
# vxlan, routing; round 2: the same ...), so slow drifts of the machine hit
# all modes alike.  Per mode and round, every metric is measured once:
#   tcp1   iperf3 TCP, 1 stream,  pod1 -> pod2          (Gbit/s)
#   tcpN   iperf3 TCP, -P N streams (N = --parallel)    (Gbit/s)
# For udpring, the CPU time (utime+stime from /proc/PID/stat) both daemons
# spent during each measurement is recorded too.
#
# Options:
#   --rounds N      rounds (default 3)
#   --time S        seconds per iperf3 run (default 5)
#   --parallel N    streams of the multi-stream metric (default 4)
#   --modes LIST    comma-separated subset of udpring,vxlan,routing
#                   (default: all three, in that order)
#   --out DIR       output directory (default out/bench-<timestamp>)
#   --no-build      skip install-deps and building udpringd
#   -- ARGS         extra arguments for both udpringd instances
#
# Output (in --out): results.json (config + every sample + summary),
#   summary.txt (the table printed at the end), raw/ (iperf3 JSON of every
#   run), logs/ (udpringd logs per round).
# Exit status: non-zero if any measurement failed (results are still written).
#
# Adding a metric: write metric_NAME (see metric_tcp1), which sets MET_VALUE,
# MET_UNIT, MET_BETTER (higher|lower), MET_EXTRA (JSON members) or MET_ERROR,
# then add NAME to METRICS, a label to METRIC_LABEL and its unit to METRIC_UNIT.  Adding a daemon
# variant (e.g. a --flags-sweep): add_variant NAME udpring "ARGS...".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/netns.sh
source "$ROOT/scripts/netns.sh"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------
rounds=3
duration=5
parallel=4
modes_csv="udpring,vxlan,routing"
out=""
do_build=1
daemon_args=()

need_int() {  # need_int OPTION VALUE
  [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer (got '${2:-}')"
}
while (($#)); do
  case "$1" in
    --rounds) need_int "$1" "${2:-}"; rounds=$2; shift 2 ;;
    --time) need_int "$1" "${2:-}"; duration=$2; shift 2 ;;
    --parallel) need_int "$1" "${2:-}"; parallel=$2; shift 2 ;;
    --modes) [[ -n "${2:-}" ]] || die "--modes needs a list"; modes_csv=$2; shift 2 ;;
    --out) [[ -n "${2:-}" ]] || die "--out needs a directory"; out=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --) shift; daemon_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done

((EUID == 0)) || die "must run as root (it creates network namespaces)"

PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
command -v "$PY" >/dev/null 2>&1 || die "python3 not found (scripts/install-deps.sh installs it)"
command -v iperf3 >/dev/null 2>&1 || die "iperf3 not found (run scripts/install-deps.sh)"

# ---------------------------------------------------------------------------
# variants: what is compared.  A variant is an overlay mode plus, for
# udpring, extra daemon arguments.
# ---------------------------------------------------------------------------
VARIANTS=()
declare -A VARIANT_MODE=() VARIANT_ARGS=()
add_variant() {  # add_variant NAME MODE [ARGS-STRING]
  VARIANTS+=("$1")
  VARIANT_MODE[$1]=$2
  VARIANT_ARGS[$1]=${3:-}
}

IFS=, read -r -a modes <<<"$modes_csv"
((${#modes[@]})) || die "--modes is empty"
declare -A seen=()
for m in "${modes[@]}"; do
  ur_valid_mode "$m" 2>/dev/null || die "unknown mode '$m' in --modes (valid: ${UR_MODES[*]})"
  [[ -z "${seen[$m]:-}" ]] || die "mode '$m' given twice in --modes"
  seen[$m]=1
  add_variant "$m" "$m"
done

uses_udpring=0
for v in "${VARIANTS[@]}"; do
  [[ "${VARIANT_MODE[$v]}" != udpring ]] || uses_udpring=1
done

# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------
METRICS=(tcp1 tcpN)
declare -A METRIC_LABEL=(
  [tcp1]="TCP 1 stream"
  [tcpN]="TCP $parallel streams"
)
declare -A METRIC_UNIT=(
  [tcp1]="Gbit/s"
  [tcpN]="Gbit/s"
)

# Result of the last metric run (set by metric_* functions).
MET_VALUE="" MET_UNIT="" MET_BETTER="" MET_EXTRA="" MET_ERROR=""
met_reset() { MET_VALUE="" MET_UNIT="" MET_BETTER=higher MET_EXTRA="" MET_ERROR=""; }

# iperf3_tcp VARIANT ROUND METRIC STREAMS
iperf3_tcp() {
  local variant=$1 round=$2 metric=$3 streams=$4
  local raw="raw/r${round}-${variant}-${metric}.json"
  MET_UNIT="Gbit/s"
  MET_EXTRA="\"raw\":\"$raw\",\"streams\":$streams"
  UR_LAST_ERROR=""
  if ! pod_iperf3 "$P" "$OUT/$raw" -t "$duration" -P "$streams"; then
    MET_ERROR=${UR_LAST_ERROR:-iperf3 failed}
    return 0
  fi
  local srvlog="$OUT/${raw%.json}.server.log"
  [[ -s "$srvlog" ]] || rm -f -- "$srvlog"
  local parsed
  if ! parsed=$("$PY" - "$OUT/$raw" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
end = d["end"]
print("%.6f %d" % (end["sum_received"]["bits_per_second"] / 1e9,
                   end.get("sum_sent", {}).get("retransmits", -1)))
PYEOF
  ); then
    MET_ERROR="cannot parse $raw"
    return 0
  fi
  local gbps retr
  read -r gbps retr <<<"$parsed"
  MET_VALUE=$gbps
  MET_EXTRA+=",\"retransmits\":$retr"
}

metric_tcp1() { iperf3_tcp "$1" "$2" tcp1 1; }
metric_tcpN() { iperf3_tcp "$1" "$2" tcpN "$parallel"; }

# ---------------------------------------------------------------------------
# sample recording
# ---------------------------------------------------------------------------
json_str() {  # minimal JSON string escaping for messages/args
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/ }
  s=${s//$'\t'/ }
  printf '"%s"' "$s"
}

# record_sample VARIANT ROUND METRIC CPU_JSON
record_sample() {
  local variant=$1 round=$2 metric=$3 cpu=$4
  local value=${MET_VALUE:-null} err=null
  [[ -z "$MET_ERROR" ]] || { err=$(json_str "$MET_ERROR"); value=null; }
  printf '{"round":%d,"variant":%s,"mode":%s,"metric":%s,"label":%s,"value":%s,"unit":%s,"better":%s,"duration_s":%d,"cpu_s":%s,"error":%s%s}\n' \
    "$round" "$(json_str "$variant")" "$(json_str "${VARIANT_MODE[$variant]}")" \
    "$(json_str "$metric")" "$(json_str "${METRIC_LABEL[$metric]}")" \
    "$value" "$(json_str "${MET_UNIT:-${METRIC_UNIT[$metric]:-}}")" "$(json_str "${MET_BETTER:-higher}")" \
    "$duration" "$cpu" "$err" "${MET_EXTRA:+,$MET_EXTRA}" >>"$SAMPLES"
}

# measure VARIANT ROUND METRIC: run one metric, with daemon CPU accounting.
measure() {
  local variant=$1 round=$2 metric=$3
  local mode=${VARIANT_MODE[$variant]} pid1="" pid2="" c1a c2a c1b c2b cpu=null
  met_reset
  if [[ "$mode" == udpring ]]; then
    read -r pid1 pid2 <<<"$(udpring_pids "$P")"
    c1a=$(proc_cpu_seconds "$pid1"); c2a=$(proc_cpu_seconds "$pid2")
  fi
  local t0 t1
  t0=$(ur_now_ms)
  "metric_$metric" "$variant" "$round"
  t1=$(ur_now_ms)
  MET_EXTRA+="${MET_EXTRA:+,}\"wall_s\":$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1000 }')"
  if [[ "$mode" == udpring ]]; then
    c1b=$(proc_cpu_seconds "$pid1"); c2b=$(proc_cpu_seconds "$pid2")
    if ur_daemon_alive "$pid1" && ur_daemon_alive "$pid2"; then
      cpu=$(awk -v a1="$c1a" -v b1="$c1b" -v a2="$c2a" -v b2="$c2b" 'BEGIN {
        printf "{\"n1\":%.3f,\"n2\":%.3f,\"total\":%.3f}", b1 - a1, b2 - a2, b1 - a1 + b2 - a2 }')
    else
      [[ -n "$MET_ERROR" ]] || MET_ERROR="udpringd died during the measurement"
    fi
  fi
  record_sample "$variant" "$round" "$metric" "$cpu"

  local msg="r$round $variant ${METRIC_LABEL[$metric]}: "
  if [[ -n "$MET_ERROR" ]]; then
    msg+="FAILED ($MET_ERROR)"
    nfail=$((nfail + 1))
  else
    msg+="$(printf '%.2f' "$MET_VALUE") $MET_UNIT"
    [[ "$cpu" == null ]] || msg+=", udpringd CPU $(awk -v j="$cpu" 'BEGIN {
      n = split(j, a, /[:,}]/); printf "%s s (n1 %s + n2 %s)", a[6], a[2], a[4] }')"
  fi
  log "$msg"
}

# Record a failure for every metric of VARIANT in ROUND (mode did not come up).
fail_all_metrics() {
  local variant=$1 round=$2 why=$3 metric
  for metric in "${METRICS[@]}"; do
    met_reset
    MET_ERROR=$why
    record_sample "$variant" "$round" "$metric" null
    nfail=$((nfail + 1))
  done
  log "r$round $variant: FAILED ($why)"
}

variant_up() {  # variant_up VARIANT ROUND
  local variant=$1 round=$2 mode=${VARIANT_MODE[$1]} extra=()
  if [[ "$mode" == udpring ]]; then
    read -r -a extra <<<"${VARIANT_ARGS[$variant]}"
    LOGDIR="$OUT/logs/r${round}-${variant}" mode_up "$P" udpring \
      "${extra[@]}" "${daemon_args[@]}"
  else
    mode_up "$P" "$mode"
  fi
}

# ---------------------------------------------------------------------------
# summary (python3): results.json + summary.txt
# ---------------------------------------------------------------------------
write_summary() {
  "$PY" - "$OUT" "$SAMPLES" "$CONFIG_JSON" <<'PYEOF'
import json, statistics, sys

out, samples_path, config_path = sys.argv[1:4]
samples = [json.loads(l) for l in open(samples_path) if l.strip()]
config = json.load(open(config_path))

variants = []
metrics = []
for s in samples:
    if s["variant"] not in variants:
        variants.append(s["variant"])
    if s["metric"] not in metrics:
        metrics.append(s["metric"])

def ok(metric, variant):
    return [s for s in samples
            if s["metric"] == metric and s["variant"] == variant and s["value"] is not None]

summary = {}
for m in metrics:
    summary[m] = {}
    for v in variants:
        vals = [s["value"] for s in ok(m, v)]
        n_all = len([s for s in samples if s["metric"] == m and s["variant"] == v])
        summary[m][v] = {
            "n": len(vals), "failed": n_all - len(vals),
            "median": statistics.median(vals) if vals else None,
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
        }

def label(m):
    s = next(s for s in samples if s["metric"] == m)
    return "%s (%s)" % (s["label"], s["unit"])

def cell(st):
    if st["median"] is None:
        return "FAILED"
    c = "%.2f [%.2f..%.2f]" % (st["median"], st["min"], st["max"])
    if st["failed"]:
        c += " (%d failed)" % st["failed"]
    return c

ours = [v for v in variants if v.startswith("udpring")]
refs = [v for v in ("vxlan", "routing") if v in variants]
ratio_cols = [(a, b) for a in ours for b in refs]

header = ["metric"] + variants + ["%s/%s" % rc for rc in ratio_cols]
rows = []
for m in metrics:
    row = [label(m)] + [cell(summary[m][v]) for v in variants]
    for a, b in ratio_cols:
        x, y = summary[m][a]["median"], summary[m][b]["median"]
        row.append("%.2f" % (x / y) if x is not None and y else "n/a")
    rows.append(row)

widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
lines = []
lines.append("udpring end-to-end benchmark: %d round(s), %d s per run, modes %s"
             % (config["rounds"], config["time_s"], ",".join(variants)))
lines.append("kernel %s; values: median [min..max] over rounds" % config["kernel"])
lines.append("")
lines.append(fmt(header))
lines.append(fmt(["-" * w for w in widths]))
lines += [fmt(r) for r in rows]

cpu_lines = []
vw = max([len(v) for v in ours] + [1])
lw = max(len(label(m)) for m in metrics)
for v in ours:
    for m in metrics:
        good = [s for s in ok(m, v) if s.get("cpu_s")]
        if not good:
            continue
        c = [s["cpu_s"] for s in good]
        # share of one core over the whole measurement (iperf3 setup included)
        pct = statistics.median(100.0 * s["cpu_s"]["total"] / s["wall_s"]
                                for s in good if s.get("wall_s"))
        tot = statistics.median(x["total"] for x in c)
        n1 = statistics.median(x["n1"] for x in c)
        n2 = statistics.median(x["n2"] for x in c)
        dur = config["time_s"]
        summary[m][v]["cpu_s_median"] = {"total": tot, "n1": n1, "n2": n2}
        gb = summary[m][v]["median"]
        per = (", %.2f CPU-s per Gbit moved" % (tot / (gb * dur))) if gb else ""
        summary[m][v]["cpu_pct_of_core_median"] = pct
        cpu_lines.append("  %s  %s  %.2f s (n1 %.2f + n2 %.2f) per %d s run, "
                         "%.0f%% of one core%s"
                         % (v.ljust(vw), label(m).ljust(lw), tot, n1, n2, dur,
                            pct, per))
if cpu_lines:
    lines.append("")
    lines.append("udpringd CPU time (utime+stime of both daemons, median over rounds; % of one core over each measurement's wall time):")
    lines += cpu_lines

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
PYEOF
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
OUT=${out:-out/bench-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw" "$OUT/logs" || die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
SAMPLES="$OUT/samples.jsonl"
CONFIG_JSON="$OUT/config.json"
: >"$SAMPLES"
nfail=0

P=""
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  local pid
  for pid in "${UR_BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  [[ -z "$P" ]] || ur_teardown_all "$P"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

if ((do_build)); then
  log "installing dependencies"
  bash scripts/install-deps.sh </dev/null || die "install-deps failed"
  if ((uses_udpring)); then
    log "building udpringd"
    BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh --target udpringd </dev/null ||
      die "build failed"
    [[ -n "${UDPRINGD:-}" ]] || export UDPRINGD="${BUILD_DIR:-build}/udpringd"
  fi
fi
if ((uses_udpring)); then
  [[ -x "$(ur_daemon_path)" ]] ||
    die "daemon $(ur_daemon_path) not found (build it, drop --no-build, or use --modes vxlan,routing)"
fi

daemon_args_json=$(for a in "${daemon_args[@]}"; do json_str "$a"; printf ','; done)
cat >"$CONFIG_JSON" <<EOF
{"rounds":$rounds,"time_s":$duration,"parallel":$parallel,
 "variants":[$(for v in "${VARIANTS[@]}"; do json_str "$v"; printf ','; done | sed 's/,$//')],
 "metrics":[$(for m in "${METRICS[@]}"; do json_str "$m"; printf ','; done | sed 's/,$//')],
 "udpringd":$( ((uses_udpring)) && json_str "$(ur_daemon_path)" || printf null),
 "udpringd_args":[${daemon_args_json%,}],
 "kernel":$(json_str "$(uname -r)"),"date":$(json_str "$(date -Iseconds)"),
 "git_rev":$(json_str "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)")}
EOF

P=$(ur_new_prefix)
log "output: $OUT"
log "topology up (namespaces ${P}n1 ${P}n2 ${P}p1 ${P}p2)"
topo_up "$P" || die "could not create the topology"

for ((round = 1; round <= rounds; round++)); do
  for variant in "${VARIANTS[@]}"; do
    log "=== round $round/$rounds: $variant"
    if ! variant_up "$variant" "$round"; then
      fail_all_metrics "$variant" "$round" "mode did not come up"
      mode_down "$P" "${VARIANT_MODE[$variant]}" || true
      continue
    fi
    if ! pod_ping "$P" 1 2 3 >"$OUT/logs/ping-r${round}-${variant}.txt" 2>&1; then
      fail_all_metrics "$variant" "$round" "pod1 -> pod2 ping failed"
      mode_down "$P" "${VARIANT_MODE[$variant]}" || true
      continue
    fi
    for metric in "${METRICS[@]}"; do
      measure "$variant" "$round" "$metric"
      sleep 1
    done
    mode_down "$P" "${VARIANT_MODE[$variant]}"
  done
done

echo
write_summary || die "could not write the summary"
rm -f "$CONFIG_JSON"
log "results: $OUT/results.json, $OUT/summary.txt"
((nfail == 0)) || die "$nfail measurement(s) failed"

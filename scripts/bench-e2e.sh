#!/usr/bin/env bash
# bench-e2e.sh -- end-to-end pod-to-pod benchmark: udpring vs the kernel.
#
#   scripts/bench-e2e.sh [OPTIONS] [-- UDPRINGD_ARGS...]
#
# One invocation builds the scripts/netns.sh topology once, then runs
# --rounds rounds; each round runs every variant in turn (round 1: udpring,
# vxlan, routing; round 2: the same ...), so slow drifts of the machine hit
# all variants alike.  Per variant and round, every selected metric group is
# measured once.  Traffic always goes from pod1 (10.50.1.2) to pod2
# (10.50.2.2), between namespaces this script creates and deletes.
#
#   --metrics  metric in results.json  what (higher/lower is better)
#   tcp1       tcp1            iperf3 TCP, 1 stream: Gbit/s received (higher)
#   tcp4       tcpN            iperf3 TCP, -P N streams, N = --parallel
#                              (4 by default; "tcpK" in --metrics sets N = K):
#                              Gbit/s received (higher)
#   udp64      udp64_kpps      iperf3 UDP, 64-byte payloads (-l 64, i.e.
#                              92-byte IP packets) at -b --udp-rate (default
#                              0 = as fast as pod1 can send): thousands of
#                              packets per second that reached the receiving
#                              iperf3 in pod2 (higher)
#              udp64_loss_pct  share of the packets pod1 sent that never
#                              reached pod2's iperf3, in % (lower)
#   rtt        rtt_p50_us      sockperf ping-pong, 64-byte UDP messages, one
#                              in flight, --full-rtt: median round trip in
#                              microseconds (lower)
#              rtt_p99_us      99th percentile of the same run (lower)
#
# For udpring, each measurement also records the CPU time (utime+stime from
# /proc/PID/stat) both daemons spent, and the change of their counters (the
# "stats (SIGUSR1)" line each daemon logs on SIGUSR1).  The summary shows the
# CPU seconds per run, the share of one core, and the CPU cost per unit of
# work: CPU seconds per GB (1e9 bytes) received (TCP), CPU microseconds per
# packet received (udp64), CPU microseconds per round trip (rtt).  The kernel
# modes have no process whose CPU time could be measured.
#
# Every run also records the host's steal time (/proc/stat), and the summary
# shows its share per variant: a noisy neighbour on a shared VM shows up there.
#
# Ratios: each metric's udpring median divided by the vxlan (and routing)
# median.  For higher-is-better metrics a ratio > 1 means udpring is ahead;
# for lower-is-better ones (latency, loss; marked "lower=better") a ratio < 1
# means udpring is ahead.
#
# Options:
#   --rounds N            rounds (default 3)
#   --time S              seconds per iperf3 / sockperf run (default 5)
#   --parallel N          streams of the multi-stream TCP metric (default 4)
#   --metrics LIST        comma-separated metric groups, run in the order
#                         given: any of tcp1,tcp4,udp64,rtt (default: all
#                         four, in that order); tcpN is the multi-stream one
#                         with N = --parallel
#   --modes LIST          comma-separated subset of udpring,vxlan,routing
#                         (default: all three, in that order)
#   --flags-sweep SETS    compare udpringd flag sets instead of modes: SETS is
#                         "SET1;SET2;...", each SET a space-separated list of
#                         udpringd flags (no quoting; an empty SET means the
#                         default flags), e.g.
#                           --flags-sweep "--workers=1;--workers=2;--workers=1 --no-coalesce"
#                         Each round runs udpring once per SET, then vxlan
#                         once as the reference.  Cannot be combined with
#                         --modes.  The summary has one block per SET.
#                         A SET may start with bin=PATH to run another
#                         udpringd binary, for an A/B of two builds in one
#                         run (each SET's own flags follow), e.g.
#                           --flags-sweep "bin=/tmp/old/udpringd;bin=build/udpringd"
#   --underlay PROFILE    segmentation offloads of the underlay link u0:
#                         uso (default: UDP and UDP-tunnel segmentation on,
#                         like veth and current NICs, so udpring's GSO sends
#                         and VXLAN's TSO packets both cross it whole),
#                         no-uso (only VXLAN's UDP-tunnel segmentation on:
#                         udpring's GSO sends are segmented in software),
#                         none (both segmented in software).  Recorded in
#                         results.json; see scripts/lib/netns.sh ur_nic_offloads
#   --udp-rate RATE       iperf3 -b for udp64 (default 0 = unlimited; e.g. 2G)
#   --out DIR             output directory (default out/bench-<timestamp>)
#   --no-build            skip install-deps and building udpringd
#   --no-chart            do not draw chart.png
#   --perf-stat EVENTS    count perf events (comma-separated, as perf stat
#                         -e takes them, e.g. "task-clock,context-switches,
#                         raw_syscalls:sys_enter") in both udpringd
#                         processes during each udpring measurement, per
#                         thread: raw/perf-VARIANT-rROUND-GROUP.csv (perf
#                         stat -x, output). How docs/performance.md
#                         counts wake-ups and syscalls per crossing
#   -- ARGS               extra arguments for every udpringd instance (after
#                         a sweep SET's flags)
#
# Output (in --out): results.json (config, every sample with the udpringd
#   flags it ran with, summary with medians, CPU figures and ratios),
#   summary.txt (the tables printed at the end), chart.png (bar chart of the
#   medians with min..max bars, one panel per metric; drawn by
#   scripts/bench/plot.py with gnuplot, skipped with a warning if gnuplot is
#   missing; chart.gp is its gnuplot script), raw/ (iperf3 JSON and sockperf
#   output of every run), logs/ (udpringd logs per round and variant, ping
#   checks), samples.jsonl (the samples, one JSON object per line).
# Exit status: non-zero if any measurement failed (results are still written).
#
# Adding a metric group: write group_NAME VARIANT ROUND, which calls
# met_set METRIC VALUE for each of its metrics (or sets MET_ERROR) and may add
# JSON members to MET_EXTRA; then register it with def_group and def_metric.
# Adding a daemon variant: add_variant NAME udpring "ARGS...".
set -euo pipefail
# Over 500 lines: the options, the variants, one function per metric group
# and the measurement loop belong to one command; the Python that parses
# and summarises lives in scripts/bench/, the topology in scripts/lib/.
UR_TAG=bench
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"
# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"

# ---------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------
rounds=3
duration=5
parallel=4
parallel_given=0
metrics_csv="tcp1,tcpN,udp64,rtt"
modes_csv="udpring,vxlan,routing"
modes_given=0
sweep=""
sweep_given=0
udp_rate=0
out=""
do_build=1
do_chart=1
perf_events=""
daemon_args=()

need_int() {  # need_int OPTION VALUE
  [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive integer (got '${2:-}')"
}
while (($#)); do
  case "$1" in
    --rounds) need_int "$1" "${2:-}"; rounds=$2; shift 2 ;;
    --time) need_int "$1" "${2:-}"; duration=$2; shift 2 ;;
    --parallel) need_int "$1" "${2:-}"; parallel=$2; parallel_given=1; shift 2 ;;
    --metrics) [[ -n "${2:-}" ]] || die "--metrics needs a list"; metrics_csv=$2; shift 2 ;;
    --modes) [[ -n "${2:-}" ]] || die "--modes needs a list"; modes_csv=$2; modes_given=1; shift 2 ;;
    --flags-sweep) (($# >= 2)) || die "--flags-sweep needs \"SET1;SET2;...\""
      sweep=$2; sweep_given=1; shift 2 ;;
    --udp-rate) [[ "${2:-}" =~ ^[0-9]+(\.[0-9]+)?[KMGkmg]?$ ]] ||
      die "--udp-rate needs an iperf3 rate such as 0, 500M or 2G (got '${2:-}')"
      udp_rate=$2; shift 2 ;;
    --underlay) ur_underlay_offload_valid "${2:-}" ||
      die "--underlay needs uso, no-uso or none (got '${2:-}')"
      export UR_UNDERLAY_OFFLOAD=$2; shift 2 ;;
    --out) [[ -n "${2:-}" ]] || die "--out needs a directory"; out=$2; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --no-chart) do_chart=0; shift ;;
    --perf-stat) [[ -n "${2:-}" ]] || die "--perf-stat needs a list of perf events"
      command -v perf >/dev/null 2>&1 || die "--perf-stat needs perf (apt-get install linux-perf)"
      perf_events=$2; shift 2 ;;
    --) shift; daemon_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done

((EUID == 0)) || die "must run as root (it creates network namespaces)"

PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
command -v "$PY" >/dev/null 2>&1 || die "python3 not found (scripts/install-deps.sh installs it)"

# ---------------------------------------------------------------------------
# metrics: groups (what --metrics selects; one measurement run each) and the
# metrics each group reports.
# ---------------------------------------------------------------------------
declare -A GROUP_LABEL=() GROUP_METRICS=() GROUP_TOOL=()
declare -A METRIC_LABEL=() METRIC_UNIT=() METRIC_BETTER=() METRIC_SHORT=() METRIC_FMT=()
def_group() {  # def_group NAME LABEL TOOL METRIC...
  GROUP_LABEL[$1]=$2
  GROUP_TOOL[$1]=$3
  GROUP_METRICS[$1]="${*:4}"
}
def_metric() {  # def_metric NAME LABEL UNIT higher|lower SHORT PRINTF-FORMAT
  METRIC_LABEL[$1]=$2
  METRIC_UNIT[$1]=$3
  METRIC_BETTER[$1]=$4
  METRIC_SHORT[$1]=$5
  METRIC_FMT[$1]=$6
}

# Resolve --metrics (tcpK picks the multi-stream group with K streams).
GROUPS_SEL=()
IFS=, read -r -a _groups <<<"$metrics_csv"
declare -A _seen_group=()
for g in "${_groups[@]}"; do
  case "$g" in
    tcp1|udp64|rtt) ;;
    tcpN) g=tcpN ;;
    tcp[0-9]*)
      [[ "$g" =~ ^tcp([1-9][0-9]*)$ ]] || die "unknown metric '$g' in --metrics"
      k=${BASH_REMATCH[1]}
      if ((parallel_given)) && ((k != parallel)); then
        die "--metrics $g contradicts --parallel $parallel"
      fi
      parallel=$k
      g=tcpN ;;
    *) die "unknown metric '$g' in --metrics (valid: tcp1,tcp$parallel,udp64,rtt)" ;;
  esac
  [[ -z "${_seen_group[$g]:-}" ]] || die "metric '$g' given twice in --metrics"
  _seen_group[$g]=1
  GROUPS_SEL+=("$g")
done
((${#GROUPS_SEL[@]})) || die "--metrics is empty"

def_group tcp1 "TCP 1 stream" iperf3 tcp1
def_group tcpN "TCP $parallel streams" iperf3 tcpN
def_group udp64 "UDP 64 B" iperf3 udp64_kpps udp64_loss_pct
def_group rtt "RTT" sockperf rtt_p50_us rtt_p99_us
def_metric tcp1 "TCP 1 stream" "Gbit/s" higher "" "%.2f"
def_metric tcpN "TCP $parallel streams" "Gbit/s" higher "" "%.2f"
def_metric udp64_kpps "UDP 64 B rx" "kpps" higher "" "%.1f"
def_metric udp64_loss_pct "UDP 64 B loss" "%" lower "loss" "%.2f"
def_metric rtt_p50_us "RTT p50" "us" lower "p50" "%.1f"
def_metric rtt_p99_us "RTT p99" "us" lower "p99" "%.1f"

METRICS=()  # every metric name, in output order
for g in "${GROUPS_SEL[@]}"; do
  read -r -a _ms <<<"${GROUP_METRICS[$g]}"
  METRICS+=("${_ms[@]}")
  command -v "${GROUP_TOOL[$g]}" >/dev/null 2>&1 ||
    die "${GROUP_TOOL[$g]} not found (needed by metric $g; run scripts/install-deps.sh)"
done

# ---------------------------------------------------------------------------
# variants: what is compared.  A variant is an overlay mode plus, for
# udpring, extra daemon arguments (a --flags-sweep set).
# ---------------------------------------------------------------------------
VARIANTS=()
declare -A VARIANT_MODE=() VARIANT_ARGS=() VARIANT_LABEL=() VARIANT_BIN=()
add_variant() {  # add_variant NAME MODE [ARGS-STRING [LABEL]]
  VARIANTS+=("$1")
  VARIANT_MODE[$1]=$2
  VARIANT_ARGS[$1]=${3:-}
  VARIANT_LABEL[$1]=${4:-$1}
}

if ((sweep_given)); then
  ((modes_given == 0)) || die "--flags-sweep cannot be combined with --modes (it runs udpring per SET plus vxlan)"
  # Split on ';' by hand: `read` would drop a trailing empty SET.
  _rest=$sweep
  _sets=()
  while :; do
    _sets+=("${_rest%%;*}")
    [[ "$_rest" == *";"* ]] || break
    _rest=${_rest#*;}
  done
  _i=0
  for _set in "${_sets[@]}"; do
    _i=$((_i + 1))
    read -r -a _words <<<"$_set"   # normalise blanks; no globbing
    _label=""
    if [[ "${_words[0]:-}" == bin=* ]]; then
      _bin=${_words[0]#bin=}
      [[ -x "$_bin" ]] || die "--flags-sweep: bin=$_bin is not an executable"
      VARIANT_BIN["udpring-f$_i"]=$(cd "$(dirname "$_bin")" && pwd)/$(basename "$_bin")
      _label="[$_bin] "
      _words=("${_words[@]:1}")
    fi
    add_variant "udpring-f$_i" udpring "${_words[*]}" "$_label${_words[*]:-(default flags)}"
  done
  add_variant vxlan vxlan
else
  IFS=, read -r -a modes <<<"$modes_csv"
  ((${#modes[@]})) || die "--modes is empty"
  declare -A seen=()
  for m in "${modes[@]}"; do
    ur_valid_mode "$m" 2>/dev/null || die "unknown mode '$m' in --modes (valid: ${UR_MODES[*]})"
    [[ -z "${seen[$m]:-}" ]] || die "mode '$m' given twice in --modes"
    seen[$m]=1
    add_variant "$m" "$m"
  done
fi

uses_udpring=0
for v in "${VARIANTS[@]}"; do
  [[ "${VARIANT_MODE[$v]}" != udpring ]] || uses_udpring=1
done

# The udpringd arguments of VARIANT, one per line (nothing for kernel modes).
variant_flags() {
  local v=$1 extra=()
  [[ "${VARIANT_MODE[$v]}" == udpring ]] || return 0
  read -r -a extra <<<"${VARIANT_ARGS[$v]}"
  extra+=("${daemon_args[@]}")
  ((${#extra[@]} == 0)) || printf '%s\n' "${extra[@]}"
}

# ---------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------
json_str() {  # minimal JSON string escaping for messages/args
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/ }
  s=${s//$'\t'/ }
  s=${s//$'\r'/ }
  printf '"%s"' "$s"
}
json_arr() {  # json_arr ITEM...: a JSON array of strings
  local first=1 a
  printf '['
  for a in "$@"; do
    ((first)) || printf ','
    first=0
    json_str "$a"
  done
  printf ']'
}

# ---------------------------------------------------------------------------
# metric groups
# ---------------------------------------------------------------------------
# Result of the last group run (set by group_* functions).
declare -A MET_VAL=()
MET_EXTRA="" MET_ERROR=""
met_reset() { MET_VAL=(); MET_EXTRA="" MET_ERROR=""; }
met_set() { MET_VAL[$1]=$2; }
met_extra() { MET_EXTRA+="${MET_EXTRA:+,}$1"; }

# run_iperf3 RAW CLIENT-ARGS...: one iperf3 run; on failure sets MET_ERROR.
run_iperf3() {
  local raw=$1
  shift
  met_extra "\"raw\":\"$raw\""
  UR_LAST_ERROR=""
  if ! pod_iperf3 "$P" "$OUT/$raw" -t "$duration" "$@"; then
    MET_ERROR=${UR_LAST_ERROR:-iperf3 failed}
    return 1
  fi
  local srvlog="$OUT/${raw%.json}.server.log"
  [[ -s "$srvlog" ]] || rm -f -- "$srvlog"
}

# iperf3_tcp VARIANT ROUND GROUP STREAMS
iperf3_tcp() {
  local variant=$1 round=$2 group=$3 streams=$4
  local raw="raw/r${round}-${variant}-${group}.json"
  met_extra "\"streams\":$streams"
  run_iperf3 "$raw" -P "$streams" || return 0
  local parsed
  if ! parsed=$("$PY" "$ROOT/scripts/bench/parse.py" tcp "$OUT/$raw"); then
    MET_ERROR="cannot parse $raw"
    return 0
  fi
  local gbps retr bytes
  read -r gbps retr bytes <<<"$parsed"
  met_set "$group" "$gbps"
  met_extra "\"retransmits\":$retr,\"bytes\":$bytes"
}

group_tcp1() { iperf3_tcp "$1" "$2" tcp1 1; }
group_tcpN() { iperf3_tcp "$1" "$2" tcpN "$parallel"; }

# UDP with 64-byte payloads, pod1 -> pod2.  The figure is taken on the
# RECEIVER side: iperf3's end.sum_received is the server's (pod2's) own
# accounting, sent back to the client at the end of the test.  Its "packets"
# is the highest sequence number pod2 saw and "lost_packets" the gaps below
# it, so packets - lost_packets is what pod2's iperf3 actually read from its
# socket, and dividing by the receiver's "seconds" gives the delivered rate.
# The sender's own count (sum_sent.packets) can be a little higher when the
# tail of the run was lost; loss % is taken against the larger of the two.
# Drops anywhere on the path (pod1's veth, the TUN queue, udpringd, the
# underlay, pod2's socket buffer) all count as loss: this is the rate a
# pod-to-pod UDP application would see.
group_udp64() {
  local variant=$1 round=$2
  local raw="raw/r${round}-${variant}-udp64.json"
  met_extra "\"udp_rate\":$(json_str "$udp_rate")"
  run_iperf3 "$raw" -u -l 64 -b "$udp_rate" || return 0
  local parsed
  if ! parsed=$("$PY" "$ROOT/scripts/bench/parse.py" udp "$OUT/$raw"); then
    MET_ERROR="cannot parse $raw"
    return 0
  fi
  local kpps loss sent received secs
  read -r kpps loss sent received secs <<<"$parsed"
  met_set udp64_kpps "$kpps"
  met_set udp64_loss_pct "$loss"
  met_extra "\"sent_packets\":$sent,\"received_packets\":$received,\"rx_seconds\":$secs"
}

# Round trips with sockperf: a server in pod2, ping-pong client in pod1 with
# one 64-byte message in flight; --full-rtt makes sockperf report the whole
# round trip instead of half of it.  Percentiles are sockperf's own lines
# ("---> percentile 50.000 = 133.809", in usec) over the run minus warm-up.
RTT_PORT=11111
group_rtt() {
  local variant=$1 round=$2
  local raw="raw/r${round}-${variant}-rtt.txt"
  local srvlog="raw/r${round}-${variant}-rtt.server.log"
  met_extra "\"raw\":\"$raw\""
  ip netns exec "${P}p2" timeout $((duration + 30)) \
    sockperf server -i "$UR_POD2" -p "$RTT_PORT" </dev/null >"$OUT/$srvlog" 2>&1 &
  local spid=$! i rc=0
  UR_BG_PIDS+=("$spid")
  for ((i = 0; i < 50; i++)); do
    ip netns exec "${P}p2" ss -Hlun "sport = :$RTT_PORT" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  # Like ur_bg_wait, but with the redirection on the client only (so that
  # the messages of an interrupt trap do not end up in the raw file).
  ip netns exec "${P}p1" timeout $((duration + 20)) \
    sockperf ping-pong -i "$UR_POD2" -p "$RTT_PORT" -t "$duration" -m 64 --full-rtt \
    </dev/null >"$OUT/$raw" 2>&1 &
  local cpid=$!
  UR_BG_PIDS+=("$cpid")
  wait "$cpid" || rc=$?
  # The server never exits by itself: stop it (timeout passes SIGTERM on).
  kill -TERM "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  if ((rc != 0)); then
    MET_ERROR="sockperf ping-pong failed (rc=$rc): $(tail -n 1 "$OUT/$raw" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g')"
    return 0
  fi
  local parsed
  if ! parsed=$("$PY" "$ROOT/scripts/bench/parse.py" rtt "$OUT/$raw"); then
    MET_ERROR="cannot parse $raw (sockperf printed no percentiles)"
    return 0
  fi
  local p50 p99 extra
  read -r p50 p99 extra <<<"$parsed"
  met_set rtt_p50_us "$p50"
  met_set rtt_p99_us "$p99"
  met_extra "$extra"
}

# ---------------------------------------------------------------------------
# udpringd counters (SIGUSR1 -> one "stats (SIGUSR1): k=v ..." log line)
# ---------------------------------------------------------------------------
# daemon_counters: print the current counters of n1 and n2, one line each
# ("k=v k=v ..."; an empty line if a daemon did not answer within 2 s).
daemon_counters() {
  local sd i pid logf before n line t
  sd=$(ur_state_dir "$P")
  for i in 1 2; do
    line=""
    pid=$(cat "$sd/n$i.pid" 2>/dev/null || true)
    logf=$(cat "$sd/n$i.logpath" 2>/dev/null || true)
    if [[ -n "$pid" && -f "$logf" ]] && ur_daemon_alive "$pid"; then
      before=$(grep -c 'stats (SIGUSR1): ' "$logf" || true)
      kill -USR1 "$pid" 2>/dev/null || true
      for ((t = 0; t < 200; t++)); do
        n=$(grep -c 'stats (SIGUSR1): ' "$logf" || true)
        ((n > before)) && break
        sleep 0.01
      done
      if ((n > before)); then
        line=$(grep 'stats (SIGUSR1): ' "$logf" | tail -n 1)
        line=${line#*stats (SIGUSR1): }
      fi
    fi
    printf '%s\n' "$line"
  done
}

# counters_delta BEFORE AFTER: JSON object of the counters that changed.
counters_delta() {
  [[ -n "$1" && -n "$2" ]] || { printf 'null'; return 0; }
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " ")
    for (i = 1; i <= n; i++) { split(x[i], kv, "="); A[kv[1]] = kv[2] }
    m = split(b, y, " "); o = ""
    for (i = 1; i <= m; i++) {
      split(y[i], kv, "="); d = kv[2] - A[kv[1]]
      if (d != 0) o = o (o == "" ? "" : ",") "\"" kv[1] "\":" sprintf("%.0f", d)
    }
    printf "{%s}", o }'
}

# ---------------------------------------------------------------------------
# sample recording
# ---------------------------------------------------------------------------
# record_sample VARIANT ROUND GROUP METRIC CPU_JSON
record_sample() {
  local variant=$1 round=$2 group=$3 metric=$4 cpu=$5
  local value=null err=null flags=null
  if [[ -n "$MET_ERROR" ]]; then
    err=$(json_str "$MET_ERROR")
  elif [[ -n "${MET_VAL[$metric]:-}" ]]; then
    value=${MET_VAL[$metric]}
  else
    err=$(json_str "no value for $metric")
  fi
  if [[ "${VARIANT_MODE[$variant]}" == udpring ]]; then
    local fl=()
    mapfile -t fl < <(variant_flags "$variant")
    flags=$(json_arr "${fl[@]}")
  fi
  printf '{"round":%d,"variant":%s,"mode":%s,"flags":%s,"group":%s,"metric":%s,"label":%s,"value":%s,"unit":%s,"better":%s,"duration_s":%d,"cpu_s":%s,"error":%s%s}\n' \
    "$round" "$(json_str "$variant")" "$(json_str "${VARIANT_MODE[$variant]}")" "$flags" \
    "$(json_str "$group")" "$(json_str "$metric")" "$(json_str "${METRIC_LABEL[$metric]}")" \
    "$value" "$(json_str "${METRIC_UNIT[$metric]}")" "$(json_str "${METRIC_BETTER[$metric]}")" \
    "$duration" "$cpu" "$err" "${MET_EXTRA:+,$MET_EXTRA}" >>"$SAMPLES"
  [[ "$err" == null ]] || nfail=$((nfail + 1))
}

# CPU time the hypervisor gave to other guests while we wanted it (all CPUs,
# seconds): the "steal" column of /proc/stat. It shows which runs a noisy
# neighbour hit.
steal_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" { printf "%.2f", $9 / hz; exit }' /proc/stat
}

# measure VARIANT ROUND GROUP: run one metric group, with daemon CPU and
# counter accounting for udpring.
measure() {
  local variant=$1 round=$2 group=$3
  local mode=${VARIANT_MODE[$variant]} pid1="" pid2="" c1a c2a c1b c2b cpu=null
  local cnt_a=() cnt_b=()
  met_reset
  if [[ "$mode" == udpring ]]; then
    read -r pid1 pid2 <<<"$(udpring_pids "$P")"
    mapfile -t cnt_a < <(daemon_counters)
    c1a=$(proc_cpu_seconds "$pid1"); c2a=$(proc_cpu_seconds "$pid2")
  fi
  local t0 t1 st0 st1 perf_pid=""
  if [[ "$mode" == udpring && -n "$perf_events" ]]; then
    perf stat -x, --per-thread -e "$perf_events" -p "$pid1,$pid2" \
      -o "$OUT/raw/perf-$variant-r$round-$group.csv" </dev/null >/dev/null 2>&1 &
    perf_pid=$!
  fi
  st0=$(steal_seconds)
  t0=$(ur_now_ms)
  "group_$group" "$variant" "$round"
  t1=$(ur_now_ms)
  st1=$(steal_seconds)
  if [[ -n "$perf_pid" ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  met_extra "\"wall_s\":$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1000 }')"
  met_extra "\"steal_s\":$(awk -v a="$st0" -v b="$st1" 'BEGIN { printf "%.2f", b - a }')"
  if [[ "$mode" == udpring ]]; then
    c1b=$(proc_cpu_seconds "$pid1"); c2b=$(proc_cpu_seconds "$pid2")
    if ur_daemon_alive "$pid1" && ur_daemon_alive "$pid2"; then
      cpu=$(awk -v a1="$c1a" -v b1="$c1b" -v a2="$c2a" -v b2="$c2b" 'BEGIN {
        printf "{\"n1\":%.3f,\"n2\":%.3f,\"total\":%.3f}", b1 - a1, b2 - a2, b1 - a1 + b2 - a2 }')
      mapfile -t cnt_b < <(daemon_counters)
      met_extra "\"peak_rss_kib\":{\"n1\":$(proc_peak_rss_kib "$pid1"),\"n2\":$(proc_peak_rss_kib "$pid2")}"
      met_extra "\"daemon_counters\":{\"n1\":$(counters_delta "${cnt_a[0]:-}" "${cnt_b[0]:-}"),\"n2\":$(counters_delta "${cnt_a[1]:-}" "${cnt_b[1]:-}")}"
    else
      [[ -n "$MET_ERROR" ]] || MET_ERROR="udpringd died during the measurement"
    fi
  fi
  local metric
  for metric in ${GROUP_METRICS[$group]}; do
    record_sample "$variant" "$round" "$group" "$metric" "$cpu"
  done

  local msg="r$round $variant ${GROUP_LABEL[$group]}: " parts=()
  if [[ -n "$MET_ERROR" ]]; then
    msg+="FAILED ($MET_ERROR)"
  else
    for metric in ${GROUP_METRICS[$group]}; do
      # shellcheck disable=SC2059  # the format comes from def_metric
      parts+=("${METRIC_SHORT[$metric]:+${METRIC_SHORT[$metric]} }$(printf "${METRIC_FMT[$metric]}" "${MET_VAL[$metric]:-nan}") ${METRIC_UNIT[$metric]}")
    done
    local joined="" part
    for part in "${parts[@]}"; do joined+="${joined:+, }$part"; done
    msg+=$joined
    [[ "$cpu" == null ]] || msg+=", udpringd CPU $(awk -v j="$cpu" 'BEGIN {
      n = split(j, a, /[:,}]/); printf "%s s (n1 %s + n2 %s)", a[6], a[2], a[4] }')"
  fi
  log "$msg"
}

# Record a failure for every metric of VARIANT in ROUND (mode did not come up).
fail_all_metrics() {
  local variant=$1 round=$2 why=$3 group metric
  for group in "${GROUPS_SEL[@]}"; do
    met_reset
    MET_ERROR=$why
    for metric in ${GROUP_METRICS[$group]}; do
      record_sample "$variant" "$round" "$group" "$metric" null
    done
  done
  log "r$round $variant: FAILED ($why)"
}

variant_up() {  # variant_up VARIANT ROUND
  local variant=$1 round=$2 mode=${VARIANT_MODE[$1]} flags=()
  if [[ "$mode" == udpring ]]; then
    mapfile -t flags < <(variant_flags "$variant")
    UDPRINGD=${VARIANT_BIN[$variant]:-$UDPRINGD} LOGDIR="$OUT/logs/r${round}-${variant}" \
      mode_up "$P" udpring "${flags[@]}"
  else
    mode_up "$P" "$mode"
  fi
}

# ---------------------------------------------------------------------------
# summary (python3, scripts/bench/summarize.py): results.json + summary.txt
# ---------------------------------------------------------------------------
write_summary() {
  "$PY" "$ROOT/scripts/bench/summarize.py" "$OUT" "$SAMPLES" "$CONFIG_JSON"
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
# The original stdout/stderr: a trap can fire while a function runs with its
# output redirected (pod_iperf3 > raw file), and its messages belong here.
ur_keep_stdio
cleanup() {
  local pid
  for pid in "${UR_BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  [[ -z "$P" ]] || ur_teardown_all "$P"
}
ur_cleanup_trap cleanup

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
  # A sweep SET without bin= runs this one.
  UDPRINGD=$(ur_daemon_path)
  export UDPRINGD
fi

{
  printf '{"rounds":%d,"time_s":%d,"parallel":%d,"udp_rate":%s,\n' \
    "$rounds" "$duration" "$parallel" "$(json_str "$udp_rate")"
  printf ' "flags_sweep":%s,\n' "$( ((sweep_given)) && json_str "$sweep" || printf null)"
  printf ' "variants":['
  _first=1
  for v in "${VARIANTS[@]}"; do
    ((_first)) || printf ','
    _first=0
    mapfile -t _fl < <(variant_flags "$v")
    printf '\n  {"name":%s,"mode":%s,"label":%s,"flags":%s}' "$(json_str "$v")" \
      "$(json_str "${VARIANT_MODE[$v]}")" "$(json_str "${VARIANT_LABEL[$v]}")" \
      "$( [[ "${VARIANT_MODE[$v]}" == udpring ]] && json_arr "${_fl[@]}" || printf null)"
  done
  printf '],\n "metric_groups":%s,\n "metrics":%s,\n "metric_meta":{' \
    "$(json_arr "${GROUPS_SEL[@]}")" "$(json_arr "${METRICS[@]}")"
  _first=1
  for g in "${GROUPS_SEL[@]}"; do
    for m in ${GROUP_METRICS[$g]}; do
      ((_first)) || printf ','
      _first=0
      printf '\n  %s:{"group":%s,"label":%s,"unit":%s,"better":%s,"fmt":%s}' "$(json_str "$m")" \
        "$(json_str "$g")" "$(json_str "${METRIC_LABEL[$m]}")" "$(json_str "${METRIC_UNIT[$m]}")" \
        "$(json_str "${METRIC_BETTER[$m]}")" "$(json_str "${METRIC_FMT[$m]}")"
    done
  done
  printf '},\n "udpringd":%s,\n "udpringd_args":%s,\n' \
    "$( ((uses_udpring)) && json_str "$(ur_daemon_path)" || printf null)" \
    "$(json_arr "${daemon_args[@]}")"
  printf ' "underlay_offload":%s,\n' "$(json_str "${UR_UNDERLAY_OFFLOAD:-uso}")"
  printf ' "kernel":%s,"date":%s,"git_rev":%s}\n' "$(json_str "$(uname -r)")" \
    "$(json_str "$(date -Iseconds)")" \
    "$(json_str "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)")"
} >"$CONFIG_JSON"
"$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$CONFIG_JSON" ||
  die "internal error: $CONFIG_JSON is not valid JSON"

P=$(ur_new_prefix)
log "output: $OUT"
log "topology up (namespaces ${P}n1 ${P}n2 ${P}p1 ${P}p2)"
topo_up "$P" || die "could not create the topology"

for ((round = 1; round <= rounds; round++)); do
  for variant in "${VARIANTS[@]}"; do
    vdesc=$variant
    [[ "${VARIANT_LABEL[$variant]}" == "$variant" ]] || vdesc+=" (${VARIANT_LABEL[$variant]})"
    log "=== round $round/$rounds: $vdesc"
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
    for group in "${GROUPS_SEL[@]}"; do
      measure "$variant" "$round" "$group"
      sleep 1
    done
    mode_down "$P" "${VARIANT_MODE[$variant]}"
  done
done

# Measurements are over: tear the namespaces down before the (slow) summary.
ur_teardown_all "$P" || true
P=""

echo
write_summary || die "could not write the summary"
rm -f "$CONFIG_JSON"
log "results: $OUT/results.json, $OUT/summary.txt"

if ((do_chart)); then
  if ! command -v gnuplot >/dev/null 2>&1; then
    warn "gnuplot not found: no chart (install gnuplot-nox, see scripts/install-deps.sh)"
  elif "$PY" "$ROOT/scripts/bench/plot.py" "$OUT/results.json" "$OUT/chart.png"; then
    log "chart: $OUT/chart.png"
  else
    warn "could not draw $OUT/chart.png (results are unaffected)"
  fi
fi
((nfail == 0)) || die "$nfail measurement(s) failed"

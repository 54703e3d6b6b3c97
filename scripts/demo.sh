#!/usr/bin/env bash
# demo.sh -- see udpring carry pod-to-pod traffic between two "nodes".
#
#   scripts/demo.sh [--no-build] [--time S] [-- UDPRINGD_ARGS...]
#
#   1. installs missing Debian packages, builds build/udpringd (Release)
#   2. creates the two-node topology of scripts/netns.sh in fresh, uniquely
#      named network namespaces, and starts udpringd in each node with the
#      embedded file lease store: the two daemons allocate distinct subnets
#      from one lease directory and route to each other (no server, no
#      static peers); each pod is addressed from its node's subnet.env
#   3. ping -c 3 pod1 -> pod2 and pod2 -> pod1
#   4. one iperf3 TCP run pod1 -> pod2 (default 5 s) and prints
#      "pod-to-pod TCP: X.XX Gbit/s"
#   5. SIGUSR1 to each daemon, prints its latest "stats (SIGUSR1):" log line
#   6. tears everything down (also on failure or Ctrl-C)
#
# Options:
#   --no-build   skip install-deps and the build (use an existing daemon)
#   --time S     iperf3 duration in seconds (default 5)
#   -- ARGS      extra arguments passed to both udpringd instances
# Environment: UDPRINGD (daemon binary, default build/udpringd),
#              UR_LEASES (file, the default here, or static),
#              BUILD_DIR (default build), LOGDIR (default: a new temp dir,
#              kept after the run so the daemon logs can be read).
# Exit status: non-zero if the daemons do not come up, ping fails or iperf3
# fails.  Must run as root.
set -euo pipefail
UR_TAG=demo
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"
# shellcheck source=scripts/lib/netns.sh
source "$ROOT/scripts/lib/netns.sh"

do_build=1
duration=5
daemon_args=()
while (($#)); do
  case "$1" in
    --no-build) do_build=0; shift ;;
    --time)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--time needs a positive integer"
      duration=$2; shift 2 ;;
    --) shift; daemon_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done

((EUID == 0)) || die "must run as root (it creates network namespaces)"

P=""
cleanup() {
  local pid
  for pid in "${UR_BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  if [[ -n "$P" ]]; then
    log "tearing down namespaces ${P}*"
    ur_teardown_all "$P"
  fi
  [[ -z "${LOGDIR:-}" ]] || log "logs kept in $LOGDIR"
}
ur_cleanup_trap cleanup

if ((do_build)); then
  log "installing dependencies"
  bash scripts/install-deps.sh </dev/null || die "install-deps failed"
  log "building udpringd"
  BUILD_DIR=${BUILD_DIR:-build} bash scripts/build.sh --target udpringd </dev/null ||
    die "build failed"
  [[ -n "${UDPRINGD:-}" ]] || export UDPRINGD="${BUILD_DIR:-build}/udpringd"
fi
[[ -x "$(ur_daemon_path)" ]] || die "daemon $(ur_daemon_path) not found; run without --no-build"

LOGDIR=${LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/udpring-demo.XXXXXX")}
export LOGDIR
mkdir -p "$LOGDIR"

P=$(ur_new_prefix)
log "topology up (namespaces ${P}n1 ${P}n2 ${P}p1 ${P}p2)"
topo_up "$P" || die "could not create the topology"
export UR_LEASES=${UR_LEASES:-file}
mode_udpring_up "$P" "${daemon_args[@]}" || die "udpring mode failed to start"
if [[ "$UR_LEASES" == file ]]; then
  echo
  echo "== leases (file store, written by the daemons themselves)"
  for f in "$(ur_state_dir "$P")"/leases/subnets/*; do
    printf '%s: %s\n' "${f##*/}" "$(cat "$f")"
  done
  for n in 1 2; do
    grep -h 'route .* -> ' "$LOGDIR/n$n.log" | sed "s/^/node$n: /" || true
  done
fi

failed=0
echo
echo "== ping pod1 ($UR_POD1) -> pod2 ($UR_POD2)"
if pod_ping "$P" 1 2 3 >"$LOGDIR/ping-1to2.txt" 2>&1; then :; else failed=1; fi
grep -E 'packets transmitted|rtt|error|unreachable' "$LOGDIR/ping-1to2.txt" || cat "$LOGDIR/ping-1to2.txt"
echo "== ping pod2 ($UR_POD2) -> pod1 ($UR_POD1)"
if pod_ping "$P" 2 1 3 >"$LOGDIR/ping-2to1.txt" 2>&1; then :; else failed=1; fi
grep -E 'packets transmitted|rtt|error|unreachable' "$LOGDIR/ping-2to1.txt" || cat "$LOGDIR/ping-2to1.txt"
((failed == 0)) || log "ping FAILED"

echo
echo "== iperf3 TCP pod1 -> pod2, ${duration} s"
iperf_ok=0
if ((failed == 0)); then
  if pod_iperf3 "$P" "$LOGDIR/iperf3.json" -t "$duration" &&
     bps=$(iperf3_received_bps "$LOGDIR/iperf3.json"); then
    awk -v b="$bps" 'BEGIN { printf "pod-to-pod TCP: %.2f Gbit/s\n", b / 1e9 }'
    iperf_ok=1
  else
    log "iperf3 FAILED (see $LOGDIR/iperf3.json)"
  fi
else
  log "skipping iperf3 because ping failed"
fi

echo
echo "== daemon stats (SIGUSR1)"
# The daemon logs e.g. "stats (SIGUSR1): tun_rx_packets=... ..."
STATS_RE='stats( \([^)]*\))?:'
stats_count() {
  local c
  c=$(grep -cE "$STATS_RE" "$1" 2>/dev/null || true)
  echo "${c:-0}"
}
if daemon_pids=$(udpring_pids "$P"); then
  read -r -a dpid <<<"$daemon_pids"
  before=()
  for n in 1 2; do
    before+=("$(stats_count "$LOGDIR/n$n.log")")
    kill -USR1 "${dpid[n-1]}" 2>/dev/null ||
      log "could not signal udpringd in node$n (pid ${dpid[n-1]})"
  done
  # Wait (<= 2 s) for the new stats lines to reach the logs.
  for ((t = 0; t < 20; t++)); do
    (($(stats_count "$LOGDIR/n1.log") > before[0] &&
      $(stats_count "$LOGDIR/n2.log") > before[1])) && break
    sleep 0.1
  done
  for n in 1 2; do
    line=$(grep -E "$STATS_RE" "$LOGDIR/n$n.log" | tail -n 1 || true)
    echo "node$n: ${line:-(no \"stats (SIGUSR1):\" line in $LOGDIR/n$n.log)}"
  done
fi

if ((failed)); then
  for n in 1 2; do
    log "last lines of $LOGDIR/n$n.log:"
    tail -n 20 "$LOGDIR/n$n.log" >&2 || true
  done
  die "pod-to-pod ping failed"
fi
((iperf_ok)) || die "iperf3 failed"
echo
log "demo OK"

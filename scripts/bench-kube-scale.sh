#!/usr/bin/env bash
# bench-kube-scale.sh -- the kube lease store against a large cluster.
#
#   scripts/bench-kube-scale.sh [--nodes N] [--events E] [--rounds R] [--out FILE]
#
# Starts udpringd (--kube-subnet-mgr, one worker) in a network namespace of
# its own against the project's API server stand-in
# (tests/support/kube_api_server.py, over TLS in a second namespace) holding
# N Nodes shaped like kubelet-registered ones (~9 KB of JSON each), and
# measures, per round, against N nodes and against 2:
#   - ready after the node list began: from the log line before the paged
#     list to "udpringd ready" (target <= 2 s for 5,000 nodes);
#   - RSS when ready, and its excess over the 2-node run (target <= 32 MiB);
#   - CPU time (utime+stime) per 1,000 watch events: E peers move to new
#     public IPs at once, one MODIFIED event each, until every route moved;
#   - re-lists during those events (target 0: never a re-list per event).
# Prints the medians of R rounds; --out writes every run as JSON.
#
#   --nodes N    default 5000          --events E   default 1000
#   --rounds R   default 3             --out FILE   also write JSON there
#   --binary B   default build/udpringd (BUILD_DIR)
#
# Needs root, python3, curl, openssl. Creates and deletes its own
# namespaces and a temporary directory.
set -euo pipefail
UR_TAG="bench-kube-scale"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

binary="${BUILD_DIR:-build}/udpringd"
args=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --nodes|--events|--rounds|--out)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      args+=("$1" "$2"); shift 2 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[[ $EUID -eq 0 ]] || die "needs root (network namespaces)"
[[ -x "$binary" ]] || die "$binary not found: build first (scripts/build.sh) or pass --binary"
for tool in python3 curl openssl ip; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh)"
done
exec python3 scripts/bench/kube_scale.py --binary "$(realpath "$binary")" "${args[@]}"

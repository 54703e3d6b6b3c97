#!/usr/bin/env bash
# netns.sh -- the CLI over scripts/lib/netns.sh (the two-node topology in
# network namespaces): `scripts/netns.sh help` prints the library's
# description, its functions and these commands.
#
#   scripts/netns.sh up P [udpring|vxlan|routing] [-- DAEMON_ARGS...]
#   scripts/netns.sh down P | mode P MODE [-- DAEMON_ARGS...] | prefix | gc
# shellcheck source=scripts/lib/netns.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/netns.sh"

ur_netns_main() {
  set -euo pipefail
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    up)
      local P=${1:-} mode=${2:-}
      shift 2 2>/dev/null || shift $#
      [[ "${1:-}" == -- ]] && shift
      ur_check_prefix "$P"
      if ! topo_up "$P"; then topo_down "$P" || true; exit 1; fi
      if [[ -n "$mode" ]]; then
        mode_up "$P" "$mode" "$@" || { ur_teardown_all "$P"; exit 1; }
      fi
      ur_log "up. try: ip netns exec ${P}p1 ping 10.50.2.2 ; tear down: $0 down $P"
      ;;
    mode)
      local P=${1:-} mode=${2:-} m
      shift 2 2>/dev/null || shift $#
      [[ "${1:-}" == -- ]] && shift
      ur_check_prefix "$P"
      ur_valid_mode "$mode"
      for m in "${UR_MODES[@]}"; do mode_down "$P" "$m"; done
      mode_up "$P" "$mode" "$@"
      ;;
    down)
      ur_check_prefix "${1:-}"
      ur_teardown_all "$1"
      ;;
    prefix) printf 'urm%s\n' "$((RANDOM % 100000))" ;;  # not touched by gc
    gc) ur_gc ;;
    -h|--help|help|"")
      sed -n '2,/^$/p' "$UR_NETNS_LIB" | sed 's/^# \{0,1\}//'
      [[ -n "$cmd" ]] || exit 1
      ;;
    *) ur_err "unknown command '$cmd' (up|down|mode|prefix|gc|help)"; exit 1 ;;
  esac
}

ur_netns_main "$@"

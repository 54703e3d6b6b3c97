# shellcheck shell=bash
# netns.sh -- two-node flannel-like test topology in network namespaces.
# Over 500 lines: one library for the whole topology (namespaces, links,
# each mode's set-up and tear-down, the daemon's start and stop, checks),
# which the demo, the benchmark and the CLI all source.
#
# scripts/lib/netns.sh is the library, sourced by demo.sh / bench-e2e.sh;
# scripts/netns.sh is its CLI for use by hand (see "CLI" below).
# Nothing is ever configured in the root network namespace: every link is
# created directly inside the namespaces, and all traffic stays inside them.
#
#   P = unique prefix (ur_new_prefix prints one, e.g. "ur4711r1234")
#
#   +------------- ${P}p1 -----------+          +------------- ${P}p2 -----------+
#   | pod1                           |          | pod2                           |
#   | eth0 10.50.1.2/24              |          | eth0 10.50.2.2/24              |
#   | default via 10.50.1.1          |          | default via 10.50.2.1          |
#   +------|-------------------------+          +------|-------------------------+
#          | veth (pod MTU: per mode)                  | veth (pod MTU: per mode)
#   +------|------- ${P}n1 ----------+          +------|------- ${P}n2 ----------+
#   | vp 10.50.1.1/24                |          | vp 10.50.2.1/24                |
#   | node1, lease 10.50.1.0/24      |          | node2, lease 10.50.2.0/24      |
#   |                                |          |                                |
#   |  overlay (one mode at a time): |          |  overlay (one mode at a time): |
#   |   udpring: flannel0 (TUN,      |          |   udpring: flannel0 (TUN,      |
#   |            udpringd, UDP 8285) |          |            udpringd, UDP 8285) |
#   |   vxlan:   vx0 10.50.1.0/32    |          |   vxlan:   vx0 10.50.2.0/32    |
#   |            (VNI 1, UDP 4789)   |          |            (VNI 1, UDP 4789)   |
#   |   routing: 10.50.2.0/24 via    |          |   routing: 10.50.1.0/24 via    |
#   |            192.168.77.2        |          |            192.168.77.1        |
#   |                                |          |                                |
#   | u0 192.168.77.1/24  mtu 1500 ==========veth========= u0 192.168.77.2/24  |
#   +--------------------------------+ underlay +--------------------------------+
#
#   overlay network 10.50.0.0/16; ip_forward=1 and rp_filter=0 in the nodes.
#   u0 is configured like a real NIC: GRO and UDP GRO forwarding on, and the
#   segmentation offloads UR_UNDERLAY_OFFLOAD selects (see ur_nic_offloads;
#   default "uso": UDP and UDP-tunnel segmentation both on)
#
#   mode     pod MTU  how
#   udpring  1472     udpringd in each node, TUN flannel0; leases from
#                     --subnet-mgr=static (the drawing's, default) or, with
#                     UR_LEASES=file, from the embedded file store: the daemons
#                     allocate their subnets and the pods are re-addressed
#                     from each node's subnet.env, as flannel's CNI does
#   vxlan    1450     kernel vxlan vx0, static route + permanent neighbour
#   routing  1500     plain routes over the underlay (no encapsulation)
#
# Library functions (all return non-zero with a message on stderr on failure):
#   ur_new_prefix                  print a fresh unique prefix
#   topo_up P / topo_down P        create / destroy the 4 namespaces (down is
#                                  idempotent and kills every process in them)
#   set_pod_mtu P MTU              MTU of both ends of both pod links
#   mode_udpring_up P [ARGS...]    start udpringd in n1 and n2 (ARGS go to it)
#   mode_udpring_down P
#   mode_vxlan_up P / mode_vxlan_down P
#   mode_routing_up P / mode_routing_down P
#   mode_up P MODE [ARGS...] / mode_down P MODE
#   ur_teardown_all P              all mode downs + topo_down (for traps)
#   udpring_pids P                 print the daemons' PIDs ("n1pid n2pid")
#   proc_cpu_seconds PID           utime+stime of PID in seconds
#   pod_ping P FROM TO COUNT       ping pod TO (1|2) from pod FROM, bounded
#   pod_iperf3 P JSONOUT [ARGS...] iperf3 server in p2 (-1), client in p1
#                                  (--json into JSONOUT), extra client ARGS
#                                  (on failure, UR_LAST_ERROR says why)
#   iperf3_received_bps JSONFILE   print end.sum_received.bits_per_second
#
# Environment:
#   UDPRINGD   daemon binary (default build/udpringd, relative to the repo root)
#   LOGDIR     where udpring mode writes n1.log / n2.log (default: state dir)
#   UR_STATE_BASE  base of the per-prefix state dirs (default ${TMPDIR:-/tmp})
#   UR_UNDERLAY_OFFLOAD  uso (default) | no-uso | none: segmentation offloads
#                  of the underlay veth u0 (see ur_nic_offloads)
#
# CLI (for manual work):
#   scripts/netns.sh up P [udpring|vxlan|routing] [-- DAEMON_ARGS...]
#   scripts/netns.sh down P           stop daemons, delete the namespaces
#   scripts/netns.sh mode P MODE [-- DAEMON_ARGS...]   switch overlay mode
#   scripts/netns.sh prefix           print a prefix for manual use (urm<n>)
#   scripts/netns.sh gc               delete leftover ur<pid>r<n>* namespaces
#                                     whose creating process is gone
#   Then e.g.: ip netns exec ${P}p1 ping 10.50.2.2

# ---------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------
UR_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck disable=SC2034  # the CLI (scripts/netns.sh) prints its header
UR_NETNS_LIB="$UR_REPO_ROOT/scripts/lib/netns.sh"

UR_NETWORK=10.50.0.0/16
UR_LEASE1=10.50.1.0/24
UR_LEASE2=10.50.2.0/24
UR_UNDERLAY1=192.168.77.1
UR_UNDERLAY2=192.168.77.2
UR_POD1=10.50.1.2
UR_POD2=10.50.2.2
UR_UDP_PORT=8285
UR_VX_MAC1=02:00:00:00:01:00
UR_VX_MAC2=02:00:00:00:02:00
UR_MODES=(udpring vxlan routing)

ur_log()  { printf '[netns] %s\n' "$*" >&2; }
ur_warn() { printf '[netns] WARNING: %s\n' "$*" >&2; }
ur_err()  { printf '[netns] ERROR: %s\n' "$*" >&2; return 1; }

# Run a command, and on failure report which one failed (set -e friendly).
ur_run() {
  "$@" || ur_err "command failed (rc=$?): $*"
}

ur_need_root() {
  ((EUID == 0)) || ur_err "must run as root (network namespaces)"
}

ur_check_prefix() {
  local p=${1:-}
  [[ -n "$p" ]] || ur_err "missing namespace prefix" || return 1
  [[ "$p" =~ ^[A-Za-z0-9_-]{1,32}$ ]] ||
    ur_err "bad prefix '$p' (use 1-32 chars of [A-Za-z0-9_-])"
}

# Unique prefix: "ur" + PID of the calling script + random number.  The PID
# lets `netns.sh gc` recognise namespaces whose creator is gone.
ur_new_prefix() {
  local p existing
  existing=$(ip netns list 2>/dev/null || true)
  while :; do
    p="ur${$}r$((RANDOM % 10000))"
    [[ $'\n'"$existing" == *$'\n'"$p"* ]] || break
  done
  printf '%s\n' "$p"
}

ur_state_dir() {
  printf '%s/udpring-netns-%s\n' "${UR_STATE_BASE:-${TMPDIR:-/tmp}}" "$1"
}

ur_now_ms() {  # monotonic enough for timeouts: wall clock in ms
  local t=${EPOCHREALTIME/[.,]/}
  printf '%s\n' "$((t / 1000))"
}

ur_ns_exists() {
  [[ -e "/run/netns/$1" ]]
}

ur_nsexec() {  # ur_nsexec NS CMD...
  local ns=$1; shift
  ip netns exec "$ns" "$@"
}

# ---------------------------------------------------------------------------
# topology
# ---------------------------------------------------------------------------
topo_up() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  ur_need_root || return 1
  local ns
  for ns in "${P}n1" "${P}n2" "${P}p1" "${P}p2"; do
    ! ur_ns_exists "$ns" || ur_err "namespace $ns already exists" || return 1
  done
  mkdir -p "$(ur_state_dir "$P")" || return 1

  ur_log "topology up: ${P}{n1,n2,p1,p2}"
  for ns in "${P}n1" "${P}n2" "${P}p1" "${P}p2"; do
    ur_run ip netns add "$ns" || return 1
    ur_run ip -n "$ns" link set lo up || return 1
  done

  # Node sysctls first, so that links created afterwards inherit "default".
  local n
  for n in n1 n2; do
    ur_run ip netns exec "${P}$n" sysctl -qw \
      net.ipv4.ip_forward=1 \
      net.ipv4.conf.all.rp_filter=0 \
      net.ipv4.conf.default.rp_filter=0 || return 1
  done

  # Underlay: created inside n1, peer moved straight into n2.
  ur_run ip -n "${P}n1" link add u0 mtu 1500 type veth peer name u0 mtu 1500 netns "${P}n2" || return 1
  ur_run ip -n "${P}n1" addr add "$UR_UNDERLAY1/24" dev u0 || return 1
  ur_run ip -n "${P}n2" addr add "$UR_UNDERLAY2/24" dev u0 || return 1
  for n in n1 n2; do
    ur_run ip -n "${P}$n" link set u0 up || return 1
    ur_nic_offloads "${P}$n" u0 || return 1
  done

  # Pod links: eth0 in the pod, vp in its node.
  local i
  for i in 1 2; do
    ur_run ip -n "${P}p$i" link add eth0 type veth peer name vp netns "${P}n$i" || return 1
    ur_run ip -n "${P}p$i" addr add "10.50.$i.2/24" dev eth0 || return 1
    ur_run ip -n "${P}n$i" addr add "10.50.$i.1/24" dev vp || return 1
    ur_run ip -n "${P}p$i" link set eth0 up || return 1
    ur_run ip -n "${P}n$i" link set vp up || return 1
    ur_run ip -n "${P}p$i" route add default via "10.50.$i.1" || return 1
  done
}

# Segmentation offloads of the underlay NIC (UR_UNDERLAY_OFFLOAD, checked by
# ur_underlay_offload_valid), always with GRO and UDP GRO forwarding on rx:
#   uso     (default) UDP segmentation (USO) and UDP-tunnel segmentation both
#           on, as on veth by default and on current NICs (mlx5, ice,
#           virtio-net with host USO): udpring's UDP GSO sends and VXLAN's
#           encapsulated TSO packets both cross the link unsegmented
#   no-uso  USO off, UDP-tunnel segmentation on: the kernel segments
#           udpring's GSO sends in software while VXLAN keeps its offload
#           (a NIC with VXLAN TSO but no USO; the profile of the benchmarks
#           before 2026-11-27 noon)
#   none    both off: both tunnels are segmented in software
ur_underlay_offload_valid() {
  case "${1:-}" in uso|no-uso|none) return 0 ;; *) return 1 ;; esac
}
ur_nic_offloads() {
  local ns=$1 dev=$2 profile=${UR_UNDERLAY_OFFLOAD:-uso} uso tnl
  case "$profile" in
    uso) uso=on tnl=on ;;
    no-uso) uso=off tnl=on ;;
    none) uso=off tnl=off ;;
    *) ur_err "UR_UNDERLAY_OFFLOAD must be uso, no-uso or none (got '$profile')"; return 1 ;;
  esac
  local feats=("tx-udp-segmentation $uso" "tx-udp_tnl-segmentation $tnl"
               "tx-udp_tnl-csum-segmentation $tnl" "gro on" "rx-udp-gro-forwarding on")
  local f
  for f in "${feats[@]}"; do
    # shellcheck disable=SC2086  # $f is two words on purpose
    ip netns exec "$ns" ethtool -K "$dev" $f >/dev/null 2>&1 ||
      ur_warn "ethtool -K $dev $f in $ns failed (ignored)"
  done
  # The segmentation offloads define the profile a benchmark reports: read
  # them back, so a kernel that refuses one cannot mislabel the results.
  local shown want
  shown=$(ip netns exec "$ns" ethtool -k "$dev" 2>/dev/null) ||
    { ur_err "ethtool -k $dev in $ns failed"; return 1; }
  for want in "tx-udp-segmentation: $uso" "tx-udp_tnl-segmentation: $tnl"; do
    grep -q "^$want" <<<"$shown" ||
      { ur_err "$dev in $ns: wanted '$want' for underlay profile $profile, got '$(grep "^${want%%:*}:" <<<"$shown")'"; return 1; }
  done
}

# Kill every process still living in namespace $1 (only our own namespaces
# reach here, so these are processes this script family started).
ur_kill_ns_pids() {
  local ns=$1 pids pid i
  ur_ns_exists "$ns" || return 0
  pids=$(ip netns pids "$ns" 2>/dev/null) || return 0
  [[ -n "$pids" ]] || return 0
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 20; i++)); do
    pids=$(ip netns pids "$ns" 2>/dev/null) || return 0
    [[ -n "$pids" ]] || return 0
    sleep 0.1
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
}

topo_down() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  local ns rc=0
  for ns in "${P}p1" "${P}p2" "${P}n1" "${P}n2"; do
    ur_kill_ns_pids "$ns"
  done
  for ns in "${P}p1" "${P}p2" "${P}n1" "${P}n2"; do
    if ur_ns_exists "$ns"; then
      ip netns del "$ns" || { ur_warn "could not delete namespace $ns"; rc=1; }
    fi
  done
  local sd
  sd=$(ur_state_dir "$P")
  [[ ! -d "$sd" ]] || rm -rf -- "$sd"
  return "$rc"
}

set_pod_mtu() {
  local P=${1:-} mtu=${2:-}
  ur_check_prefix "$P" || return 1
  [[ "$mtu" =~ ^[0-9]+$ ]] || ur_err "set_pod_mtu: bad MTU '$mtu'" || return 1
  local i
  for i in 1 2; do
    ur_run ip -n "${P}p$i" link set eth0 mtu "$mtu" || return 1
    ur_run ip -n "${P}n$i" link set vp mtu "$mtu" || return 1
  done
}

# ---------------------------------------------------------------------------
# mode: udpring
# ---------------------------------------------------------------------------
ur_daemon_path() {
  local bin=${UDPRINGD:-build/udpringd}
  if [[ "$bin" != /* && ! -e "$bin" ]]; then
    bin="$UR_REPO_ROOT/$bin"
  fi
  printf '%s\n' "$bin"
}

# True if PID exists and is not a zombie.
ur_pid_running() {
  local pid=$1 stat
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat%% *}" != Z ]]
}

# True if PID is running and is one of our daemons: a child of this shell
# (possibly not yet exec'd) or a process started with --subnet-mgr=static|file
# (guards against signalling a recycled PID from a stale pid file).
ur_daemon_alive() {
  local pid=$1 stat fields
  ur_pid_running "$pid" || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  read -r -a fields <<<"${stat##*) }"   # fields[1] is the parent pid
  [[ "${fields[1]}" == "$$" ]] && return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- '--subnet-mgr=(static|file)'
}

# ur_pods_from_subnet_env P DIR -- give pod i (and its node's side of the pod
# link) addresses in the lease of DIR/subnet-n<i>.env: node S+1, pod S+2,
# default route via S+1. Sets UR_POD1/UR_POD2.
ur_pods_from_subnet_env() {
  local P=$1 dir=$2 i sub gw len pod
  for i in 1 2; do
    sub=$(sed -n 's/^FLANNEL_SUBNET=//p' "$dir/subnet-n$i.env" 2>/dev/null)
    [[ "$sub" =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.([0-9]+)/([0-9]+)$ ]] ||
      ur_err "no FLANNEL_SUBNET in $dir/subnet-n$i.env" || return 1
    gw="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}" len=${BASH_REMATCH[3]}
    pod="${BASH_REMATCH[1]}.$((BASH_REMATCH[2] + 1))"
    ur_run ip -n "${P}n$i" addr flush dev vp || return 1
    ur_run ip -n "${P}n$i" addr add "$gw/$len" dev vp || return 1
    ur_run ip -n "${P}p$i" addr flush dev eth0 || return 1
    ur_run ip -n "${P}p$i" addr add "$pod/$len" dev eth0 || return 1
    ur_run ip -n "${P}p$i" route replace default via "$gw" || return 1
    if ((i == 1)); then UR_POD1=$pod; else UR_POD2=$pod; fi
  done
}

ur_link_is_up() {  # ur_link_is_up NS DEV
  local out
  out=$(ip -n "$1" link show "$2" 2>/dev/null) || return 1
  [[ "$out" =~ \<([^>]*,)?UP(,[^>]*)?\> ]]
}

mode_udpring_up() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  shift
  local bin sd logdir conf
  bin=$(ur_daemon_path)
  [[ -x "$bin" ]] ||
    ur_err "udpring daemon not found or not executable: $bin (build it with scripts/build.sh, or set UDPRINGD)" ||
    return 1
  sd=$(ur_state_dir "$P")
  logdir=${LOGDIR:-$sd}
  mkdir -p "$sd" "$logdir" || return 1
  conf="$sd/net-conf.json"
  printf '{"Network":"%s","Backend":{"Type":"udp","Port":%d}}\n' \
    "$UR_NETWORK" "$UR_UDP_PORT" >"$conf" || return 1

  set_pod_mtu "$P" 1472 || return 1

  local leases=${UR_LEASES:-static} lease_args=()
  case "$leases" in
    static|file) ;;
    *) ur_err "UR_LEASES=$leases: expected static or file"; return 1 ;;
  esac
  if [[ "$leases" == file ]]; then
    rm -rf -- "$sd/leases" "$logdir/subnet-n1.env" "$logdir/subnet-n2.env"
    mkdir -p "$sd/leases" && cp "$conf" "$sd/leases/config" || return 1
  fi
  local i self peer peer_ip pid pids=()
  for i in 1 2; do
    if ((i == 1)); then self=$UR_LEASE1 peer=$UR_LEASE2 peer_ip=$UR_UNDERLAY2
    else self=$UR_LEASE2 peer=$UR_LEASE1 peer_ip=$UR_UNDERLAY1; fi
    if [[ "$leases" == file ]]; then
      lease_args=(--subnet-mgr=file --lease-dir "$sd/leases")
    else
      lease_args=(--subnet-mgr=static --net-config-path "$conf" --static-subnet "$self"
                  --static-peer "$peer=$peer_ip")
    fi
    ip netns exec "${P}n$i" "$bin" \
      "${lease_args[@]}" \
      --iface u0 \
      --subnet-file "$logdir/subnet-n$i.env" \
      "$@" </dev/null >"$logdir/n$i.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    printf '%s\n' "$pid" >"$sd/n$i.pid"
    printf '%s\n' "$logdir/n$i.log" >"$sd/n$i.logpath"
  done
  ur_log "udpringd started: n1 pid ${pids[0]}, n2 pid ${pids[1]} (logs in $logdir)"

  # Wait (<= 10 s) for flannel0 to exist and be UP in both nodes.
  local ok=0 deadline
  deadline=$(ur_now_ms); deadline=$((deadline + 10000))
  while :; do
    ok=1
    for i in 1 2; do
      if ! ur_pid_running "${pids[i-1]}"; then
        local rc=0
        wait "${pids[i-1]}" 2>/dev/null || rc=$?
        ur_log "udpringd in ${P}n$i exited (rc=$rc); last log lines:"
        tail -n 30 "$logdir/n$i.log" >&2 || true
        mode_udpring_down "$P"
        ur_err "udpringd in ${P}n$i died during startup"
        return 1
      fi
      ur_link_is_up "${P}n$i" flannel0 || ok=0
      [[ -s "$logdir/subnet-n$i.env" ]] || ok=0
    done
    ((ok)) && break
    (($(ur_now_ms) < deadline)) || break
    sleep 0.1
  done
  if ! ((ok)); then
    for i in 1 2; do
      ur_log "${P}n$i: $(ip -n "${P}n$i" -br link show flannel0 2>&1); last log lines:"
      tail -n 15 "$logdir/n$i.log" >&2 || true
    done
    mode_udpring_down "$P"
    ur_err "flannel0 not UP in both nodes after 10 s"
    return 1
  fi
  if [[ "$leases" == file ]]; then
    ur_pods_from_subnet_env "$P" "$logdir" || { mode_udpring_down "$P"; return 1; }
    ur_log "file leases in $sd/leases: node1 $(sed -n 's/^FLANNEL_SUBNET=//p' "$logdir/subnet-n1.env"), node2 $(sed -n 's/^FLANNEL_SUBNET=//p' "$logdir/subnet-n2.env"); pods $UR_POD1 and $UR_POD2"
  fi
  ur_log "udpring mode up (flannel0 UP in both nodes, pod MTU 1472)"
}

udpring_pids() {
  local P=${1:-} sd i res=()
  sd=$(ur_state_dir "$P")
  for i in 1 2; do
    [[ -s "$sd/n$i.pid" ]] || ur_err "no udpringd pid recorded for ${P}n$i" || return 1
    res+=("$(<"$sd/n$i.pid")")
  done
  printf '%s %s\n' "${res[@]}"
}

mode_udpring_down() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  local sd i pid t pids=()
  sd=$(ur_state_dir "$P")
  for i in 1 2; do
    [[ -s "$sd/n$i.pid" ]] || continue
    pid=$(<"$sd/n$i.pid")
    if ur_daemon_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for ((t = 0; t < 20 && ${#pids[@]}; t++)); do
    local still=()
    for pid in "${pids[@]}"; do
      ur_daemon_alive "$pid" && still+=("$pid")
    done
    pids=("${still[@]}")
    ((${#pids[@]})) && sleep 0.1
  done
  for pid in "${pids[@]}"; do
    ur_warn "udpringd pid $pid ignored SIGTERM for 2 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
  for i in 1 2; do
    if [[ -s "$sd/n$i.pid" ]]; then
      pid=$(<"$sd/n$i.pid")
      wait "$pid" 2>/dev/null || true   # reap if it is our child
      rm -f -- "$sd/n$i.pid"
    fi
  done
  return 0
}

# ---------------------------------------------------------------------------
# mode: vxlan (kernel reference, flannel's vxlan backend done by hand)
# ---------------------------------------------------------------------------
mode_vxlan_up() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  local i ns local_ip remote_ip mac peer_mac self_gw peer_gw peer_lease
  for i in 1 2; do
    ns="${P}n$i"
    if ((i == 1)); then
      local_ip=$UR_UNDERLAY1 remote_ip=$UR_UNDERLAY2 mac=$UR_VX_MAC1 peer_mac=$UR_VX_MAC2
      self_gw=10.50.1.0 peer_gw=10.50.2.0 peer_lease=$UR_LEASE2
    else
      local_ip=$UR_UNDERLAY2 remote_ip=$UR_UNDERLAY1 mac=$UR_VX_MAC2 peer_mac=$UR_VX_MAC1
      self_gw=10.50.2.0 peer_gw=10.50.1.0 peer_lease=$UR_LEASE1
    fi
    ur_run ip -n "$ns" link add vx0 type vxlan id 1 local "$local_ip" \
      remote "$remote_ip" dstport 4789 dev u0 || return 1
    ur_run ip -n "$ns" link set vx0 address "$mac" mtu 1450 || return 1
    ur_run ip -n "$ns" addr add "$self_gw/32" dev vx0 || return 1
    ur_run ip -n "$ns" link set vx0 up || return 1
    ur_run ip -n "$ns" route add "$peer_lease" via "$peer_gw" dev vx0 onlink || return 1
    ur_run ip -n "$ns" neigh replace "$peer_gw" lladdr "$peer_mac" dev vx0 nud permanent || return 1
  done
  set_pod_mtu "$P" 1450 || return 1
  ur_log "vxlan mode up (vx0 VNI 1, pod MTU 1450)"
}

mode_vxlan_down() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  local i
  for i in 1 2; do
    if ur_ns_exists "${P}n$i" && ip -n "${P}n$i" link show vx0 >/dev/null 2>&1; then
      ip -n "${P}n$i" link del vx0 || ur_warn "could not delete vx0 in ${P}n$i"
    fi
  done
  return 0
}

# ---------------------------------------------------------------------------
# mode: routing (no encapsulation)
# ---------------------------------------------------------------------------
mode_routing_up() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  ur_run ip -n "${P}n1" route add "$UR_LEASE2" via "$UR_UNDERLAY2" || return 1
  ur_run ip -n "${P}n2" route add "$UR_LEASE1" via "$UR_UNDERLAY1" || return 1
  set_pod_mtu "$P" 1500 || return 1
  ur_log "routing mode up (pod MTU 1500)"
}

mode_routing_down() {
  local P=${1:-}
  ur_check_prefix "$P" || return 1
  if ur_ns_exists "${P}n1"; then
    ip -n "${P}n1" route del "$UR_LEASE2" via "$UR_UNDERLAY2" 2>/dev/null || true
  fi
  if ur_ns_exists "${P}n2"; then
    ip -n "${P}n2" route del "$UR_LEASE1" via "$UR_UNDERLAY1" 2>/dev/null || true
  fi
  return 0
}

# ---------------------------------------------------------------------------
# generic helpers
# ---------------------------------------------------------------------------
ur_valid_mode() {
  local m
  for m in "${UR_MODES[@]}"; do [[ "$1" == "$m" ]] && return 0; done
  ur_err "unknown mode '$1' (modes: ${UR_MODES[*]})"
}

mode_up() {  # mode_up P MODE [DAEMON_ARGS...]
  local P=${1:-} mode=${2:-}
  ur_valid_mode "$mode" || return 1
  shift 2
  if [[ "$mode" == udpring ]]; then
    mode_udpring_up "$P" "$@"
  else
    "mode_${mode}_up" "$P"
  fi
}

mode_down() {  # mode_down P MODE
  local mode=${2:-}
  ur_valid_mode "$mode" || return 1
  "mode_${mode}_down" "$1"
}

# Everything down, never fails: meant for EXIT traps.
ur_teardown_all() {
  local P=${1:-} m
  [[ -n "$P" ]] || return 0
  for m in "${UR_MODES[@]}"; do
    "mode_${m}_down" "$P" || true
  done
  topo_down "$P" || true
  local ns left=()
  for ns in "${P}n1" "${P}n2" "${P}p1" "${P}p2"; do
    ! ur_ns_exists "$ns" || left+=("$ns")
  done
  if ((${#left[@]})); then
    ur_warn "namespaces left behind: ${left[*]}"
    return 1
  fi
  ur_log "torn down ${P}*"
}

# utime+stime of a process, in seconds (3 decimals). Prints "nan" if gone.
# proc_peak_rss_kib PID: the most resident memory the process has had (VmHWM),
# in KiB; "null" when it is gone.
proc_peak_rss_kib() {
  awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print "null" }' "/proc/$1/status" 2>/dev/null ||
    echo null
}

proc_cpu_seconds() {
  local pid=$1 stat fields hz
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo nan; return 0; }
  stat=${stat##*) }                 # drop "pid (comm) " (comm may hold spaces)
  read -r -a fields <<<"$stat"      # fields[0] is field 3 (state)
  hz=$(getconf CLK_TCK)
  awk -v u="${fields[11]}" -v s="${fields[12]}" -v hz="$hz" 'BEGIN { printf "%.3f\n", (u + s) / hz }'
}

# Run a command in the background and wait for it, so that signal traps of
# the calling script fire immediately instead of after the command ends.
ur_bg_wait() {
  "$@" &
  local pid=$!
  UR_BG_PIDS+=("$pid")
  wait "$pid"
}
UR_BG_PIDS=()
UR_LAST_ERROR=""   # message of the last pod_iperf3 failure

# pod_ping P FROM TO COUNT -- e.g. pod_ping "$P" 1 2 3 pings 10.50.2.2 from p1.
pod_ping() {
  local P=$1 from=$2 to=$3 count=${4:-3} dst=$UR_POD2
  [[ "$to" != 1 ]] || dst=$UR_POD1
  ur_bg_wait ip netns exec "${P}p$from" \
    timeout $((count * 2 + 10)) ping -n -c "$count" -i 0.2 -W 2 "$dst" </dev/null
}

# pod_iperf3 P JSONOUT [CLIENT_ARGS...]: one iperf3 run from pod1 to pod2.
# CLIENT_ARGS default to nothing (TCP, 10 s); e.g. -t 5 -P 4.
pod_iperf3() {
  local P=$1 out=$2
  shift 2
  local t=10 a prev=""
  for a in "$@"; do [[ "$prev" == -t ]] && t=$a; prev=$a; done
  local srvlog="${out%.json}.server.log"
  ip netns exec "${P}p2" timeout $((t + 40)) \
    iperf3 -s -1 -B "$UR_POD2" </dev/null >"$srvlog" 2>&1 &
  local spid=$!
  UR_BG_PIDS+=("$spid")
  local i
  for ((i = 0; i < 50; i++)); do
    ip netns exec "${P}p2" ss -Hltn "sport = :5201" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  local rc=0
  ur_bg_wait ip netns exec "${P}p1" timeout $((t + 30)) \
    iperf3 -c "$UR_POD2" --json --connect-timeout 3000 "$@" </dev/null >"$out" || rc=$?
  if ((rc != 0)); then
    kill -TERM "$spid" 2>/dev/null || true
  fi
  wait "$spid" 2>/dev/null || true
  if ((rc != 0)); then
    local msg
    msg=$(iperf3_error "$out")
    UR_LAST_ERROR="iperf3 client failed (rc=$rc)${msg:+: $msg}"
    ur_err "$UR_LAST_ERROR"
    return 1
  fi
}

iperf3_error() {
  [[ -s "$1" ]] || return 0
  awk -F'"' '/"error"[[:space:]]*:/ { print $4; exit }' "$1"
}

# Print end.sum_received.bits_per_second of an iperf3 --json file.
# Uses python3 when present, else a small awk scanner (no jq needed).
iperf3_received_bps() {
  local f=$1
  [[ -s "$f" ]] || ur_err "empty iperf3 output: $f" || return 1
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"])' "$f" 2>/dev/null && return 0
  fi
  awk '
    /"end"[[:space:]]*:/          { in_end = 1 }
    in_end && /"sum_received"[[:space:]]*:/ { in_sum = 1 }
    in_sum && /"bits_per_second"[[:space:]]*:/ {
      v = $0; sub(/.*"bits_per_second"[[:space:]]*:[[:space:]]*/, "", v); sub(/[,}].*/, "", v)
      print v; found = 1; exit
    }
    END { exit !found }' "$f" || ur_err "no end.sum_received.bits_per_second in $f"
}

# ---------------------------------------------------------------------------
# gc: remove namespaces left by crashed runs (prefix ur<pid>r<n>, pid dead)
# ---------------------------------------------------------------------------
ur_gc() {
  local ns pid re='^(ur([0-9]+)r[0-9]+)(n1|n2|p1|p2)$' removed=0
  while read -r ns _; do
    [[ "$ns" =~ $re ]] || continue
    pid=${BASH_REMATCH[2]}
    if kill -0 "$pid" 2>/dev/null; then
      ur_log "keeping $ns (pid $pid alive)"
      continue
    fi
    ur_kill_ns_pids "$ns"
    ip netns del "$ns" && removed=$((removed + 1))
    rm -rf -- "$(ur_state_dir "${BASH_REMATCH[1]}")"
  done < <(ip netns list 2>/dev/null)
  ur_log "gc: removed $removed namespace(s)"
}

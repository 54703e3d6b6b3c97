#!/usr/bin/env bash
# deploy/udpringd.service is a unit systemd accepts, of the type and restart
# policy the daemon is built for, and every setting deploy/udpringd.default
# documents is one udpringd takes.
#
#   tests/deploy/systemd_unit_test.sh UDPRINGD_BINARY
#
# Exit 0 pass, 1 fail, 77 skip (no systemd-analyze; a failure under CI=true).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$(realpath "${1:?usage: systemd_unit_test.sh UDPRINGD_BINARY}")
UNIT=$ROOT/deploy/udpringd.service
DEFAULTS=$ROOT/deploy/udpringd.default
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null 2>&1; then
  [[ "${CI:-}" == true ]] && fail "systemd-analyze not found (apt-get install systemd)"
  echo "SKIP: systemd-analyze not found"; exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. systemd-analyze verify, with ExecStart pointing at the built binary
#    (verify checks that it exists). It exits 0 on bad values and only says
#    so, so any output is a failure.
sed "s|/usr/sbin/udpringd|$BIN|g" "$UNIT" >"$tmp/udpringd.service"
out=$(systemd-analyze verify "$tmp/udpringd.service" 2>&1) || fail "verify failed: $out"
[[ -z "$out" ]] || fail "systemd-analyze verify complains: $out"

# 2. What the daemon relies on.
want() { grep -qxF "$1" "$UNIT" || fail "$UNIT lacks '$1'"; }
want "Type=notify"                     # READY=1 after setup (io/control/systemd_notify.cc)
want "Restart=on-failure"              # exit 1 on setup errors and revoked leases
want "ExecStart=/usr/sbin/udpringd \$UDPRINGD_ARGS"
want "EnvironmentFile=-/etc/default/udpringd"
want "TimeoutStartSec=infinity"        # waiting for etcd is not a failed start
want "RuntimeDirectory=flannel"        # /run/flannel/subnet.env

# 3. Every FLANNELD_ setting the defaults file shows, uncommented, is taken:
#    udpringd --print-config exits non-zero on a bad value (checked below
#    with one), and prints what the plain ones became.
mapfile -t settings < <(sed -n 's/^#\(FLANNELD_[A-Z_]*=.*\)$/\1/p' "$DEFAULTS")
((${#settings[@]} >= 5)) || fail "$DEFAULTS shows only ${#settings[@]} settings"
config=$(env "${settings[@]}" "$BIN" --print-config 2>&1) ||
  fail "udpringd refuses the settings of $DEFAULTS: $config"
for key in ETCD_ENDPOINTS ETCD_PREFIX IFACE HEALTHZ_PORT; do
  s=$(printf '%s\n' "${settings[@]}" | grep "^FLANNELD_$key=") || fail "$DEFAULTS lacks FLANNELD_$key"
  grep -qF -- "${s#*=}" <<<"$config" || fail "$s does not show in --print-config:
$config"
done
if env FLANNELD_IP_MASQ=maybe "$BIN" --print-config >/dev/null 2>&1; then
  fail "a bad FLANNELD_ value was accepted: this check cannot fail"
fi
echo "PASS: $UNIT verified; ${#settings[@]} settings of $DEFAULTS taken"

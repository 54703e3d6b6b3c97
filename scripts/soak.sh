#!/usr/bin/env bash
# soak.sh -- the soak: two nodes on the file store carry verified TCP both
# ways and a ping every 20 ms while a third party changes leases 1,200
# times a second and garbage floods one node at 20,000 datagrams a second
# (tests/soak/soak_test.cc). It fails if a ping or a TCP byte is lost, if a
# daemon's RSS grows (by 1 MiB over its idle start in a Release build; under
# ASan, whose quarantine holds freed memory, by 8 MiB from the first half of
# the run to the second) or its open files do not come back to where they
# were, if the churn does not show in the routes or does not settle, or if
# any process, the daemons included, writes a sanitizer report (leaks are
# checked at every exit).
#
#   scripts/soak.sh [--release] [DURATION]
#
# DURATION is in seconds (default 120; CI runs 120). By default soak_test
# and udpringd are built under AddressSanitizer and UndefinedBehaviorSanitizer
# in build-asan/ (ASAN_BUILD_DIR), only those two targets unless the suite's
# build is there already (scripts/test-sanitizers.sh; the same clang build,
# about 3 minutes for the two from scratch here); --release runs the Release build in build/ (BUILD_DIR)
# instead, without the sanitizers.
set -euo pipefail
UR_TAG="soak"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

sanitize=1
duration=120
while (($#)); do
  case "$1" in
    --release) sanitize=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *)
      [[ "$1" =~ ^[0-9]+$ && "$1" -ge 10 ]] || die "DURATION must be a number of seconds, at least 10 (got '$1')"
      duration=$1; shift ;;
  esac
done

bash scripts/install-deps.sh </dev/null || die "install-deps failed"
if ((sanitize)); then
  dir=${ASAN_BUILD_DIR:-build-asan}
  log "ASan+UBSan build of soak_test and udpringd in $dir/"
  ur_asan_build "$dir" --target soak_test --target udpringd || die "build failed"
else
  dir=${BUILD_DIR:-build}
  log "Release build of soak_test and udpringd in $dir/"
  BUILD_DIR=$dir BUILD_TYPE=Release bash scripts/build.sh --target soak_test --target udpringd \
    </dev/null || die "build failed"
fi

reports=$(mktemp -d "${TMPDIR:-/tmp}/udpring-soak.XXXXXX")
# shellcheck disable=SC2317  # called by the trap
cleanup() { rm -rf "$reports"; }
ur_cleanup_trap cleanup
log "soak for $duration s"
rc=0
ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
UDPRING_SOAK_SECONDS=$duration "$dir/tests/soak/soak_test" </dev/null || rc=$?
if compgen -G "$reports/*" >/dev/null; then
  for r in "$reports"/*; do
    log "sanitizer report $r:"
    cat "$r" >&2
  done
  die "sanitizer reports (above)"
fi
((rc == 0)) || die "the soak failed (exit $rc)"
((sanitize)) && log "no sanitizer reports"
log "soak passed"

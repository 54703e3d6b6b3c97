#!/usr/bin/env bash
# test-sanitizers.sh -- the whole suite under AddressSanitizer and
# UndefinedBehaviorSanitizer (scripts/test.sh's step 2 and 3).
#
#   scripts/test-sanitizers.sh [--build-only | --no-build] [CTEST_ARGS...]
#
# Builds everything with clang, -DUDPRING_SANITIZE=address,undefined and
# the fuzz targets beside it (-O1 -g1, -Werror) in build-asan/
# (ASAN_BUILD_DIR), then runs ctest there: the unit tests two at a time,
# then the rest one at a time (integration tests create network namespaces
# and time traffic), with any extra arguments (e.g. -R KubeLeases). Every
# udpringd an integration test starts is that sanitized build too. Each
# process that finds something writes a report to a directory of this run's
# own (ASAN_OPTIONS and UBSAN_OPTIONS log_path: a daemon's stderr is a log
# file its test may not print); a report from any process fails the run even
# if its test passed. Leaks are checked at every exit; UBSan stops at the
# first report (-fno-sanitize-recover=all).
#
# Left out, because they measure the build rather than the code: the RSS
# budgets (ASan's shadow memory and quarantine take an idle udpringd from
# 16 MiB to 71) and the container image, which packs the binary as shipped.
# scripts/test.sh runs those on its Release build.
#
# --build-only stops after the build; --no-build runs the tests on the build
# there is. On this machine (2 vCPUs): 7 minutes to build from scratch, 10
# to run.
set -euo pipefail
UR_TAG="test-sanitizers"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

build=1 run=1
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --build-only) run=0; shift ;;
  --no-build) build=0; shift ;;
esac

ASAN_DIR=${ASAN_BUILD_DIR:-build-asan}

if ((build)); then
  log "install-deps"
  bash scripts/install-deps.sh </dev/null || die "install-deps failed"
  log "ASan+UBSan build in $ASAN_DIR/"
  ur_asan_build "$ASAN_DIR" || die "build failed"
fi
((run)) || exit 0
[[ -f "$ASAN_DIR/CTestTestfile.cmake" ]] || die "no build in $ASAN_DIR/: run without --no-build"

LEFT_OUT='^(Footprint\.(DefaultFlagsStayUnder64MiBUnderLoad|EachWorkerBeyondTheFirstCostsAtMost16MiB)|Deploy\.Image)$'

failed=()
reports=$(mktemp -d "${TMPDIR:-/tmp}/udpring-sanitizer-XXXXXX")
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
log "ctest under ASan+UBSan: unit tests two at a time, then the rest one at a time (reports go to $reports/)"
if ! ctest --test-dir "$ASAN_DIR" --output-on-failure -L unit -j2 -E "$LEFT_OUT" "$@" </dev/null; then
  failed+=("ctest-unit")
fi
if ! ctest --test-dir "$ASAN_DIR" --output-on-failure -LE unit -j1 -E "$LEFT_OUT" "$@" </dev/null; then
  failed+=("ctest")
fi
if compgen -G "$reports/*" >/dev/null; then
  for r in "$reports"/*; do
    log "sanitizer report $r:"
    cat "$r" >&2
  done
  failed+=("sanitizer-reports")
else
  log "no sanitizer reports"
fi
rm -rf "$reports"

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all tests passed under ASan+UBSan, no sanitizer reports"

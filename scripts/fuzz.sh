#!/usr/bin/env bash
# fuzz.sh -- build the libFuzzer targets (tests/fuzz/) and run them.
#
#   scripts/fuzz.sh [--seconds N] [--build-only] [TARGET...]
#
# Builds build-fuzz/ with clang (-DUDPRING_FUZZ=ON: ASan, UBSan, coverage;
# only core, encap and the leases library), then runs every target, or the
# ones named (udp_decap, etcd, ...: tests/fuzz/TARGET_fuzz.cc), for N
# seconds each (default 300), two at a time (the machine has 2 cores). Each
# runs on a copy of its seeds (tests/fuzz/corpus/TARGET/) in a temporary
# directory, so the repository is never written to, with its dictionary
# when it has one. Per target it prints the executions run, exec/s and the
# corpus size at the end.
#
# Exits non-zero if a target crashes, fails an invariant, leaks, takes
# longer than FUZZ_TIMEOUT seconds on one input or runs out of memory: the
# input is kept in the temporary directory, whose path is printed with the
# command that reproduces it. Copy it to tests/fuzz/corpus/TARGET/ once
# the bug is fixed, so it is tried on every run from then on.
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_TIMEOUT (seconds
# per input, default 10), FUZZ_RSS_MB (memory per target, default 2048),
# FUZZ_PARALLEL (targets at once, default 2), BUILD_JOBS (default 2),
# FUZZ_KEEP=1 (keep the temporary directory after a clean run too).
set -euo pipefail
UR_TAG="fuzz"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

seconds=300
build_only=0
wanted=()
while (($#)); do
  case "$1" in
    --seconds)
      (($# >= 2)) || die "--seconds needs a number"
      seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#--seconds=}; shift ;;
    --build-only) build_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (try --help)" ;;
    *) wanted+=("$1"); shift ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || die "--seconds wants a positive whole number, not '$seconds'"

DIR=${FUZZ_BUILD_DIR:-build-fuzz}
TIMEOUT=${FUZZ_TIMEOUT:-10}
RSS_MB=${FUZZ_RSS_MB:-2048}
PARALLEL=${FUZZ_PARALLEL:-2}
JOBS=${BUILD_JOBS:-2}

# Every tests/fuzz/NAME_fuzz.cc is a target.
all=()
for src in tests/fuzz/*_fuzz.cc; do
  name=${src##*/}
  all+=("${name%_fuzz.cc}")
done
targets=()
if ((${#wanted[@]})); then
  for t in "${wanted[@]}"; do
    [[ -f "tests/fuzz/${t}_fuzz.cc" ]] || die "no fuzz target '$t' (there are: ${all[*]})"
    targets+=("$t")
  done
else
  targets=("${all[@]}")
fi

command -v clang++ >/dev/null 2>&1 || die "clang++ not found; run scripts/install-deps.sh"
build_start=$SECONDS
log "configure $DIR/ (clang, UDPRING_FUZZ=ON)"
CC=clang CXX=clang++ cmake -S . -B "$DIR" -DUDPRING_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  </dev/null >/dev/null || die "cmake configure of $DIR/ failed"
log "build ${#targets[@]} target(s) with -j$JOBS"
env -u MAKEFLAGS -u CMAKE_BUILD_PARALLEL_LEVEL \
  cmake --build "$DIR" --parallel "$JOBS" --target "${targets[@]/%/_fuzz}" </dev/null ||
  die "fuzz build failed (build dir: $DIR)"
log "built in $((SECONDS - build_start)) s"
((build_only)) && exit 0

work=$(mktemp -d /tmp/udpring-fuzz-XXXXXX)
failed=()
cleanup() {
  if ((${#failed[@]} == 0)) && [[ "${FUZZ_KEEP:-0}" != 1 ]]; then
    rm -rf "$work"
  else
    log "inputs, corpora and logs kept in $work/"
  fi
}
ur_cleanup_trap cleanup

# One target for $seconds on a copy of its seeds; its exit code in $work/T/rc.
run_one() {
  local t=$1 bin dir="$work/$1"
  bin="$DIR/tests/fuzz/${t}_fuzz"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if [[ -d "tests/fuzz/corpus/$t" ]]; then
    cp -R "tests/fuzz/corpus/$t/." "$dir/corpus/"
  fi
  find "$dir/corpus" -type f | wc -l >"$dir/seeds"
  local args=(-max_total_time="$seconds" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB"
              -print_final_stats=1 -artifact_prefix="$dir/artifacts/")
  [[ -f "$bin.dict" ]] && args+=(-dict="$bin.dict")
  local rc=0
  UBSAN_OPTIONS="print_stacktrace=1 ${UBSAN_OPTIONS:-}" \
    "$bin" "${args[@]}" "$dir/corpus" </dev/null >"$dir/log" 2>&1 || rc=$?
  echo "$rc" >"$dir/rc"
}

stat_of() { sed -n "s/^stat::$2: *//p" "$work/$1/log" | tail -n 1; }

report() {
  local t=$1 dir="$work/$1" rc runs rate files bytes
  rc=$(cat "$dir/rc" 2>/dev/null || echo "unknown: the run did not finish")
  runs=$(stat_of "$t" number_of_executed_units)
  rate=$(stat_of "$t" average_exec_per_sec)
  files=$(find "$dir/corpus" -type f | wc -l)
  bytes=$(( $(du -sb "$dir/corpus" | cut -f1) / 1024 ))
  if [[ "$rc" == 0 ]]; then
    log "$t: ok: ${runs:-?} runs, ${rate:-?} exec/s, corpus $(cat "$dir/seeds") -> $files inputs (${bytes} KiB)"
    return
  fi
  failed+=("$t")
  log "$t: FAILED (exit $rc) after ${runs:-?} runs; log: $dir/log"
  grep -E 'ERROR: |invariant broken|runtime error|SUMMARY|terminate called|what\(\)' "$dir/log" |
    head -n 8 | sed 's/^/    /' >&2
  local input
  for input in "$dir"/artifacts/*; do
    [[ -f "$input" ]] || continue
    log "  input kept: $input"
    log "  reproduce:  $DIR/tests/fuzz/${t}_fuzz $input"
    log "  once fixed: cp $input tests/fuzz/corpus/$t/"
  done
}

log "running ${#targets[@]} target(s) for $seconds s each, $PARALLEL at a time, in $work/"
run_start=$SECONDS
running=0
for t in "${targets[@]}"; do
  if ((running >= PARALLEL)); then
    wait -n || true
    running=$((running - 1))
  fi
  run_one "$t" &
  running=$((running + 1))
done
wait || true
for t in "${targets[@]}"; do report "$t"; done
log "ran in $((SECONDS - run_start)) s"

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all ${#targets[@]} target(s) passed"

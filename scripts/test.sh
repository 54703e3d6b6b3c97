#!/usr/bin/env bash
# Full test run (this is what CI executes via .ci/run):
#   1. install missing Debian packages, the arm64 cross build's too
#      (scripts/install-deps.sh --arm64)
#   2. Release build in build/ (scripts/build.sh)
#   3. ctest --test-dir build --output-on-failure: the unit tests (label
#      unit) with -j2, then the rest with -j1 (integration tests time
#      traffic and rates, which a second test beside them would skew).
#      Meanwhile, in the background under SCHED_IDLE (chrt --idle), the
#      trees of steps 5 to 7 are built and then step 7's arm64 image is
#      made and checked (tests/deploy/image_test.sh, mostly mmdebstrap; none
#      of its checks under qemu is timed): the integration tests spend most
#      of their time waiting (on etcd, on timeouts, on a daemon's restart),
#      and an idle-class process gets a CPU only when no test wants it, so
#      the tests' timing is what it is without it. Its logs are printed in
#      the steps that need it.
#   4. the soak for 120 s on the Release build (scripts/soak.sh --release
#      120): traffic both ways, 1,200 lease changes a second and a garbage
#      flood; the background work goes on beside it, at idle priority. Its
#      ASan+UBSan form (scripts/soak.sh 120) builds the daemon anew, about
#      10 CPU-minutes here, which CI's 30 minutes do not hold.
#   5. ThreadSanitizer build in build-tsan/ of the tests of what threads
#      share (qsbr_test, route_table_test, worker_test), and run them
#   6. the libFuzzer targets: clang build in build-fuzz/, each target run
#      FUZZ_SECONDS (default 30) on its seeds, two at a time (scripts/fuzz.sh)
#   7. arm64: cross-build in build-arm64/ and the unit tests under qemu
#      (scripts/test-arm64.sh --no-image), at normal priority since some
#      unit tests are timed; then the background's arm64 image check
# Steps 3 to 7 all run even if one fails; exits non-zero if any step failed.
# The whole suite under ASan+UBSan is scripts/test-sanitizers.sh: about 28
# minutes on its own here, which CI's 30 cannot hold beside these steps.
# Environment: BUILD_DIR (default build), TSAN_BUILD_DIR (default build-tsan),
# FUZZ_BUILD_DIR (default build-fuzz), FUZZ_SECONDS (default 30), FUZZ_SKIP
# (fuzz targets to leave out, default none), BUILD_DIR_ARM64 (default
# build-arm64).
set -euo pipefail
UR_TAG="test"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

MAIN_DIR=${BUILD_DIR:-build}
TSAN_DIR=${TSAN_BUILD_DIR:-build-tsan}

log "step 1/7: install-deps --arm64"
bash scripts/install-deps.sh --arm64 </dev/null || die "install-deps failed"

log "step 2/7: Release build in $MAIN_DIR/ ($SECONDS s)"
BUILD_DIR=$MAIN_DIR BUILD_TYPE=Release bash scripts/build.sh </dev/null || die "build failed"

failed=()

tsan_tests=(qsbr_test route_table_test worker_test)
tsan_targets=()
for t in "${tsan_tests[@]}"; do tsan_targets+=(--target "$t"); done
build_tsan() {
  BUILD_DIR=$TSAN_DIR BUILD_TYPE=RelWithDebInfo bash scripts/build.sh \
    "${tsan_targets[@]}" -DUDPRING_SANITIZE=thread </dev/null
}
# FUZZ_SKIP: targets to leave out of this run (none by default).
fuzz_targets=()
for f in tests/fuzz/*_fuzz.cc; do
  t=$(basename "$f" _fuzz.cc)
  [[ " ${FUZZ_SKIP-} " == *" $t "* ]] || fuzz_targets+=("$t")
done

# Step 7's arm64 image (scripts/test-arm64.sh step 4), run in the background.
check_arm64_image() {
  bash tests/deploy/image_test.sh "${BUILD_DIR_ARM64:-build-arm64}/udpringd" arm64 </dev/null
}

bg_dir=$(mktemp -d "${TMPDIR:-/tmp}/udpring-test.XXXXXX")
bg_pid=""
# shellcheck disable=SC2317  # called by the trap
stop_background() {
  # the builds are their own process group (set -m below): stop all of it
  [[ -z "$bg_pid" ]] || { kill -- "-$bg_pid" 2>/dev/null; wait "$bg_pid" 2>/dev/null; }
  rm -rf "$bg_dir"
}
ur_cleanup_trap stop_background
log "building steps 5 to 7, then the arm64 image, in the background (SCHED_IDLE, nice 19)"
set -m
(
  # This shell and all it starts: idle class (nice 19 where chrt cannot).
  chrt --idle -p 0 "$BASHPID" >/dev/null 2>&1 || true
  renice -n 19 -p "$BASHPID" >/dev/null
  # Each build's failure is left to its step, which builds again and says.
  build_tsan || true
  bash scripts/fuzz.sh --build-only "${fuzz_targets[@]}" || true
  bash scripts/test-arm64.sh --build-only || true
  touch "$bg_dir/built"
  rc=0
  check_arm64_image >"$bg_dir/arm64-image.log" 2>&1 || rc=$?
  echo "$rc" >"$bg_dir/arm64-image.rc"
) </dev/null >"$bg_dir/log" 2>&1 &
bg_pid=$!
set +m

log "step 3/7: ctest: unit tests two at a time, then the rest one at a time ($SECONDS s)"
if ! ctest --test-dir "$MAIN_DIR" --output-on-failure -L unit -j2 </dev/null; then
  failed+=("ctest-unit")
fi
if ! ctest --test-dir "$MAIN_DIR" --output-on-failure -LE unit -j1 </dev/null; then
  failed+=("ctest")
fi

log "step 4/7: soak, 120 s, Release build ($SECONDS s)"
if ! bash scripts/soak.sh --release 120 </dev/null; then
  failed+=("soak")
fi

log "waiting for the background builds ($SECONDS s)"
while [[ ! -e "$bg_dir/built" ]] && kill -0 "$bg_pid" 2>/dev/null; do sleep 1; done
cat "$bg_dir/log"
log "background builds done ($SECONDS s)"

log "step 5/7: ThreadSanitizer ${tsan_tests[*]} in $TSAN_DIR/ ($SECONDS s)"
if build_tsan; then
  # TSan cannot cope with every ASLR layout the kernel may pick
  # ("unexpected memory mapping"); run with randomization disabled.
  runner=()
  if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R true 2>/dev/null; then
    runner=(setarch "$(uname -m)" -R)
  fi
  for t in "${tsan_tests[@]}"; do
    bin=$(find "$TSAN_DIR" -type f -name "$t" -perm -u+x -print -quit)
    if [[ -z "$bin" ]]; then
      log "$t binary not found under $TSAN_DIR"
      failed+=("tsan-$t(missing)")
      continue
    fi
    log "running ${runner[*]} $bin"
    if ! TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
         "${runner[@]}" "$bin" </dev/null; then
      failed+=("tsan-$t")
    fi
  done
else
  failed+=("tsan-build")
fi

log "step 6/7: fuzz targets (${fuzz_targets[*]}), ${FUZZ_SECONDS:-30} s each, in ${FUZZ_BUILD_DIR:-build-fuzz}/ ($SECONDS s)"
if ! bash scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-30}" "${fuzz_targets[@]}" </dev/null; then
  failed+=("fuzz")
fi

log "step 7/7: arm64 cross-build and unit tests under qemu ($SECONDS s)"
if ! bash scripts/test-arm64.sh --no-image </dev/null; then
  failed+=("arm64")
fi
log "arm64 image (tests/deploy/image_test.sh): waiting for the background ($SECONDS s)"
wait "$bg_pid" || true
bg_pid=""
if [[ -f "$bg_dir/arm64-image.rc" ]]; then
  cat "$bg_dir/arm64-image.log"
  image_rc=$(<"$bg_dir/arm64-image.rc")
else
  log "the background ended before the arm64 image was checked: checking it here"
  image_rc=0
  check_arm64_image || image_rc=$?
fi
((image_rc == 0)) || failed+=("arm64-image")

if ((${#failed[@]})); then
  log "FAILED: ${failed[*]} ($SECONDS s)"
  exit 1
fi
log "all steps passed ($SECONDS s)"

#!/usr/bin/env bash
# Full test run (this is what CI executes via .ci/run):
#   1. install missing Debian packages, the arm64 cross build's too
#      (scripts/install-deps.sh --arm64)
#   2. the ASan+UBSan build of everything, with the fuzz targets beside it,
#      in build-asan/ (scripts/test-sanitizers.sh --build-only: clang, -O1)
#   3. the whole suite under ASan+UBSan there (scripts/test-sanitizers.sh
#      --no-build): the unit tests (label unit) two at a time, then the rest
#      one at a time (integration tests time traffic and rates, which a
#      second test beside them would skew); a sanitizer report from any
#      process, every udpringd included, fails the step. Meanwhile, in the
#      background under SCHED_IDLE (chrt --idle): the arm64 cross-build,
#      then step 8's arm64 image check (tests/deploy/image_test.sh, mostly
#      mmdebstrap; none of its checks under qemu is timed) beside the Release
#      build of step 5 and the ThreadSanitizer build of step 6. The
#      integration tests spend most of their time waiting (on etcd, on
#      timeouts, on a daemon's restart), and an idle-class process gets a
#      CPU only when no test wants it, so the tests' timing is what it is
#      without it. Its logs are printed in the steps that need it.
#   4. the soak for 120 s on the ASan+UBSan build (scripts/soak.sh 120):
#      traffic both ways, 1,200 lease changes a second and a garbage flood;
#      the background work goes on beside it, at idle priority
#   5. what measures the binary as shipped, on a Release build of udpringd
#      and footprint_test in build/: the RSS budgets (Footprint.*) and the
#      container image (Deploy.Image)
#   6. ThreadSanitizer build in build-tsan/ of the tests of what threads
#      share (qsbr_test, route_table_test, worker_test), and run them
#   7. the libFuzzer targets of step 2's build, each run FUZZ_SECONDS
#      (default 15) on its seeds, two at a time (scripts/fuzz.sh)
#   8. arm64: the unit tests of the cross-build in build-arm64/ under qemu
#      (scripts/test-arm64.sh --no-image), at normal priority since some
#      unit tests are timed; then the background's arm64 image check
# Steps 3 to 8 all run even if one fails; exits non-zero if any step failed.
# On this machine (2 vCPUs) the whole run takes 26 to 29 minutes.
# Environment: ASAN_BUILD_DIR (default build-asan), BUILD_DIR (default
# build), TSAN_BUILD_DIR (default build-tsan), FUZZ_SECONDS (default 15),
# FUZZ_SKIP (fuzz targets to leave out, default none), BUILD_DIR_ARM64
# (default build-arm64).
set -euo pipefail
UR_TAG="test"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

export ASAN_BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
MAIN_DIR=${BUILD_DIR:-build}
TSAN_DIR=${TSAN_BUILD_DIR:-build-tsan}

log "step 1/8: install-deps --arm64"
bash scripts/install-deps.sh --arm64 </dev/null || die "install-deps failed"

log "step 2/8: ASan+UBSan build with the fuzz targets in $ASAN_BUILD_DIR/ ($SECONDS s)"
bash scripts/test-sanitizers.sh --build-only </dev/null || die "build failed"

failed=()

release_targets=(--target udpringd --target footprint_test)
build_release() {
  BUILD_DIR=$MAIN_DIR BUILD_TYPE=Release bash scripts/build.sh "${release_targets[@]}" </dev/null
}
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

# Step 8's arm64 image (scripts/test-arm64.sh step 4), run in the background.
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
log "building for steps 5, 6 and 8 and checking the arm64 image in the background (SCHED_IDLE, nice 19)"
set -m
(
  # This shell and all it starts: idle class (nice 19 where chrt cannot).
  chrt --idle -p 0 "$BASHPID" >/dev/null 2>&1 || true
  renice -n 19 -p "$BASHPID" >/dev/null
  # Each build's failure is left to its step, which builds again and says.
  # The arm64 image check is the longest of this work and mostly waits on
  # mmdebstrap, so it starts first and runs beside the other builds.
  bash scripts/test-arm64.sh --build-only || true
  (
    rc=0
    check_arm64_image >"$bg_dir/arm64-image.log" 2>&1 || rc=$?
    echo "$rc" >"$bg_dir/arm64-image.rc"
  ) &
  build_release || true
  build_tsan || true
  touch "$bg_dir/built"
  wait
) </dev/null >"$bg_dir/log" 2>&1 &
bg_pid=$!
set +m

log "step 3/8: the whole suite under ASan+UBSan ($SECONDS s)"
if ! bash scripts/test-sanitizers.sh --no-build </dev/null; then
  failed+=("ctest-asan")
fi

log "step 4/8: soak, 120 s, ASan+UBSan build ($SECONDS s)"
if ! bash scripts/soak.sh 120 </dev/null; then
  failed+=("soak")
fi

log "waiting for the background builds ($SECONDS s)"
while [[ ! -e "$bg_dir/built" ]] && kill -0 "$bg_pid" 2>/dev/null; do sleep 1; done
cat "$bg_dir/log"
log "background builds done ($SECONDS s)"

log "step 5/8: the RSS budgets and the container image on the Release build in $MAIN_DIR/ ($SECONDS s)"
if build_release; then
  if ! ctest --test-dir "$MAIN_DIR" --output-on-failure -j1 -R '^(Footprint\.|Deploy\.Image$)' </dev/null; then
    failed+=("ctest-release")
  fi
else
  failed+=("release-build")
fi

log "step 6/8: ThreadSanitizer ${tsan_tests[*]} in $TSAN_DIR/ ($SECONDS s)"
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

log "step 7/8: fuzz targets (${fuzz_targets[*]}), ${FUZZ_SECONDS:-15} s each, in $ASAN_BUILD_DIR/ ($SECONDS s)"
if ! FUZZ_BUILD_DIR=$ASAN_BUILD_DIR bash scripts/fuzz.sh --seconds "${FUZZ_SECONDS:-15}" "${fuzz_targets[@]}" </dev/null; then
  failed+=("fuzz")
fi

log "step 8/8: arm64 unit tests under qemu ($SECONDS s)"
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

#!/usr/bin/env bash
# test-arm64.sh -- cross-build udpringd for arm64 and run its unit tests there.
#
#   scripts/test-arm64.sh [--build-only | --no-image]
#
# flannel's udp backend never had arm64 (its cgo build is amd64-only);
# udpringd builds for it with Debian's cross toolchain and the multiarch
# :arm64 -dev packages (scripts/install-deps.sh --arm64 installs both,
# with qemu-user-static). Then, in build-arm64/ (BUILD_DIR_ARM64):
#   1. configure with scripts/cmake/aarch64-linux-gnu.cmake, no benchmarks and no
#      integration tests (they need root and namespaces: the host's run
#      covers them), and build with -j2;
#   2. check that udpringd is an AArch64 ELF and that it runs under
#      qemu-aarch64-static (--version, --help);
#   3. run the unit tests (ctest -L unit) under qemu-aarch64-static, except
#      those labelled io_uring: qemu-user has no io_uring system calls, so
#      a real ring cannot be set up there. They are named in the log;
#   4. build the arm64 image (scripts/build-image.sh --arch arm64) and check
#      it with tests/deploy/image_test.sh under qemu (all but the daemon
#      coming up, which needs io_uring).
# --build-only stops after step 1 (scripts/test.sh builds while other
# tests run, then calls this again: the second build has nothing to do).
# --no-image stops after step 3 (scripts/test.sh runs step 4's
# tests/deploy/image_test.sh itself, in the background).
set -euo pipefail
UR_TAG="test-arm64"
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"
build_only=0
no_image=0
case "${1:-}" in
  "") ;;
  --build-only) build_only=1 ;;
  --no-image) no_image=1 ;;
  -h|--help) usage; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
esac

DIR=${BUILD_DIR_ARM64:-build-arm64}

log "install-deps --arm64"
bash scripts/install-deps.sh --arm64 </dev/null || die "install-deps --arm64 failed"

log "configure and build in $DIR/"
cmake -S . -B "$DIR" -DCMAKE_TOOLCHAIN_FILE=scripts/cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_BUILD_TYPE=Release -DUDPRING_BUILD_BENCH=OFF -DUDPRING_BUILD_INTEGRATION_TESTS=OFF \
  </dev/null >/dev/null || die "cmake configure for arm64 failed"
cmake --build "$DIR" -j2 </dev/null || die "arm64 build failed"
((build_only)) && exit 0

machine=$(readelf -h "$DIR/udpringd" | sed -n 's/^ *Machine: *//p')
[[ "$machine" == AArch64 ]] || die "$DIR/udpringd is built for '$machine', not AArch64"
version=$(qemu-aarch64-static "$DIR/udpringd" --version </dev/null) ||
  die "$DIR/udpringd does not run under qemu-aarch64-static"
log "$DIR/udpringd: AArch64, runs under qemu: $version"
help=$(qemu-aarch64-static "$DIR/udpringd" --help </dev/null) || die "$DIR/udpringd --help failed under qemu"
grep -q -- '--kube-subnet-mgr' <<<"$help" || die "$DIR/udpringd --help under qemu lacks --kube-subnet-mgr"

left_out=$(ctest --test-dir "$DIR" -N -L io_uring </dev/null | sed -n 's/^ *Test *#[0-9]*: //p')
log "left out under qemu-user (label io_uring, no io_uring emulation): $(echo "$left_out" | tr '\n' ' ')"
ctest --test-dir "$DIR" -L unit -LE io_uring -j2 --output-on-failure </dev/null ||
  die "arm64 unit tests failed"
log "arm64 unit tests passed"
((no_image)) && exit 0

log "arm64 image"
bash tests/deploy/image_test.sh "$DIR/udpringd" arm64 </dev/null || die "arm64 image test failed"

#!/usr/bin/env bash
# Configure and build udpring with CMake.
#
#   scripts/build.sh [--target NAME]... [CMAKE_CONFIGURE_ARGS...]
#
# Environment:
#   BUILD_DIR   build directory (default: build), relative to the repo root
#   BUILD_TYPE  CMAKE_BUILD_TYPE (default: Release)
#
# Examples:
#   scripts/build.sh
#   BUILD_DIR=build-asan scripts/build.sh -DUDPRING_SANITIZE=address,undefined
#   BUILD_DIR=build-tsan scripts/build.sh --target qsbr_test -DUDPRING_SANITIZE=thread
#
# Always builds with 2 jobs: the machine has 2 shared cores.
set -euo pipefail
UR_TAG=build
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=2

targets=()
cmake_args=()
while (($#)); do
  case "$1" in
    --target)
      (($# >= 2)) || die "--target needs a target name"
      targets+=("$2"); shift 2 ;;
    --target=*) targets+=("${1#--target=}"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) cmake_args+=("$1"); shift ;;
  esac
done

command -v cmake >/dev/null 2>&1 || die "cmake not found; run scripts/install-deps.sh"
[[ -f CMakeLists.txt ]] || die "no CMakeLists.txt in $ROOT"

log "configure: $BUILD_DIR ($BUILD_TYPE) ${cmake_args[*]}"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" "${cmake_args[@]}" </dev/null ||
  die "cmake configure failed (build dir: $BUILD_DIR)"

build_cmd=(cmake --build "$BUILD_DIR" --parallel "$JOBS")
if ((${#targets[@]})); then
  build_cmd+=(--target "${targets[@]}")
fi
log "build: ${targets[*]:-all} with -j$JOBS"
# An inherited MAKEFLAGS/CMAKE_BUILD_PARALLEL_LEVEL must not raise the job count.
env -u MAKEFLAGS -u CMAKE_BUILD_PARALLEL_LEVEL "${build_cmd[@]}" </dev/null ||
  die "build failed (build dir: $BUILD_DIR)"
log "ok: $BUILD_DIR"

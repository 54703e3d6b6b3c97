# shellcheck shell=bash
# scripts/lib/common.sh -- what every script of scripts/ starts with.
#
#   set -euo pipefail
#   UR_TAG=demo   # the [tag] of the script's messages
#   # shellcheck source=scripts/lib/common.sh
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#   cd "$ROOT"
#
# Defines:
#   ROOT                    the repository root
#   log MSG / warn MSG      "[tag] MSG" / "[tag] WARNING: MSG" on stderr
#   die MSG                 "[tag] ERROR: MSG" on stderr, exit 1
#   usage                   print the script's header comment: line 2 down
#                           to the line before `set -euo pipefail`
#   ur_keep_stdio           remember stdout and stderr as they are now: the
#                           cleanup and the INT/TERM messages go there even
#                           if a trap fires while output is redirected
#   ur_cleanup_trap FN      on exit (normal, die, Ctrl-C, SIGTERM) run FN
#                           once, with errexit off, then exit with the
#                           status the script had; Ctrl-C logs "interrupted"
#                           and exits 130, SIGTERM "terminated" and 143
#   ur_asan_build DIR [--target T]...
#                           the ASan+UBSan build in DIR (scripts/build.sh):
#                           clang, -O1 -g1, -Werror, with the fuzz targets

# shellcheck disable=SC2034  # used by the scripts that source this file
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
UR_TAG=${UR_TAG:-${0##*/}}

log() { printf '[%s] %s\n' "$UR_TAG" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$UR_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$UR_TAG" "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

UR_OUT_FD="" UR_ERR_FD=""
ur_keep_stdio() {
  exec {UR_OUT_FD}>&1 {UR_ERR_FD}>&2
}

UR_CLEANUP_FN=""
ur_cleanup_trap() {
  UR_CLEANUP_FN=$1
  trap ur_run_cleanup EXIT
  trap 'log "interrupted" 2>&"${UR_ERR_FD:-2}"; exit 130' INT
  trap 'log "terminated" 2>&"${UR_ERR_FD:-2}"; exit 143' TERM
}

ur_run_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -z "$UR_OUT_FD" ]] || exec 1>&"$UR_OUT_FD" 2>&"$UR_ERR_FD"
  "$UR_CLEANUP_FN"
  exit "$rc"
}

# One build for the suite under the sanitizers, the soak and the fuzzers:
# clang, whose libFuzzer the fuzz targets need, and which builds the tree in
# 7 minutes here where GCC at -O2 -g took 16; -O1 -g1 keeps the line numbers
# a report needs. A DIR that GCC configured (an older checkout's) is made anew.
ur_asan_build() {
  local dir=$1; shift
  if [[ -f "$dir/CMakeCache.txt" ]] && ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' "$dir/CMakeCache.txt"; then
    log "$dir/ was configured with another compiler: making it anew with clang"
    rm -rf "$dir"
  fi
  CC=clang CXX=clang++ BUILD_DIR=$dir BUILD_TYPE=RelWithDebInfo bash "$ROOT/scripts/build.sh" "$@" \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DUDPRING_SANITIZE=address,undefined \
    -DUDPRING_FUZZ=ON -DUDPRING_WERROR=ON </dev/null
}

#!/usr/bin/env bash
# Install the Debian packages udpring needs to build, test and benchmark.
#
#   scripts/install-deps.sh            # install whatever is missing
#   scripts/install-deps.sh --check    # only report; exit 1 if something is missing
#   scripts/install-deps.sh --arm64    # also the arm64 cross build (scripts/test-arm64.sh):
#                                      # Debian's cross toolchain, the :arm64 -dev
#                                      # packages (multiarch) and qemu-user-static
#
# Idempotent: when every package is already installed, apt is not touched at
# all, so repeated runs (CI, demo.sh, test.sh) take well under a second.
# Needs root (or sudo) only when something has to be installed.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config
  # libraries
  liburing-dev libnl-3-dev libnl-route-3-dev libspdlog-dev libfmt-dev
  nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcurl4-openssl-dev libyaml-dev libmicrohttpd-dev
  # deploy/kube-udpring.yml's test (host only: no arm64 build of it can be
  # installed beside the amd64 one)
  libyaml-cpp-dev
  # the TUN steering program: clang's BPF target, the kernel's UAPI headers,
  # libbpf to load it and bpftool to build it in as a skeleton
  clang linux-libc-dev libbpf-dev bpftool
  # scripts/fuzz.sh: clang's libFuzzer and sanitizer runtimes (host only)
  libclang-rt-dev
  # test / benchmark tools
  iproute2 iptables iputils-ping iperf3 sockperf tcpdump ethtool traceroute
  etcd-server etcd-client openssl gnuplot-nox procps curl
  # systemd-analyze verify for deploy/udpringd.service
  systemd
  # bench-e2e.sh does its JSON and statistics with Debian's python3, and
  # the kube-mode tests run their API server stand-in with it (curl drives it)
  python3
  # build-image.sh: the image's root filesystem from the Debian archive, and
  # podman with runc to import and (tests/deploy/image_test.sh) run it
  mmdebstrap podman runc
)

log() { printf '[install-deps] %s\n' "$*" >&2; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

# The arm64 cross build: the libraries udpringd and its unit tests link,
# for arm64, beside the amd64 ones (Debian multiarch; same versions).
ARM64_PACKAGES=(
  crossbuild-essential-arm64 qemu-user-static
  # the arm64 image: mmdebstrap runs its maintainer scripts through binfmt_misc
  binfmt-support arch-test
  liburing-dev:arm64 libnl-3-dev:arm64 libnl-route-3-dev:arm64 libspdlog-dev:arm64
  libfmt-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64 libcurl4-openssl-dev:arm64
  libyaml-dev:arm64 libbpf-dev:arm64 libmicrohttpd-dev:arm64
)

check_only=0
for arg in "$@"; do
  case "$arg" in
    --check) check_only=1 ;;
    --arm64) PACKAGES+=("${ARM64_PACKAGES[@]}") ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

command -v dpkg-query >/dev/null 2>&1 ||
  die "dpkg-query not found: this script supports Debian/Ubuntu only"

# Prints the packages that are not fully installed, one per line.
# A name without an architecture means the host's one (or "all"): with a
# foreign architecture added, a plain name would match both instances.
missing_packages() {
  local pkg status native
  native=$(dpkg --print-architecture)
  for pkg in "${PACKAGES[@]}"; do
    if [[ "$pkg" == *:* ]]; then
      status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    else
      status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg:$native" 2>/dev/null ||
               dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    fi
    [[ "$status" == installed ]] || printf '%s\n' "$pkg"
  done
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]} == 0)); then
  log "all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
log "missing: ${missing[*]}"
((check_only)) && exit 1

SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available"
  SUDO=(sudo -n)
fi
export DEBIAN_FRONTEND=noninteractive

if grep -q ':arm64$' <<<"$(printf '%s\n' "${missing[@]}")" &&
   ! dpkg --print-foreign-architectures | grep -qx arm64; then
  log "dpkg --add-architecture arm64"
  "${SUDO[@]}" dpkg --add-architecture arm64 || die "dpkg --add-architecture arm64 failed"
fi

log "apt-get update"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null ||
  die "apt-get update failed"

log "apt-get install ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${missing[@]}" </dev/null ||
  die "apt-get install failed"

mapfile -t still < <(missing_packages)
((${#still[@]} == 0)) || die "still missing after install: ${still[*]}"
log "done"

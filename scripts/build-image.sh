#!/usr/bin/env bash
# build-image.sh -- an OCI image of udpringd, built from Debian packages only.
#
#   scripts/build-image.sh [OPTIONS] [-- MMDEBSTRAP_ARGS...]
#
# No image registry is needed: the root filesystem is Debian bookworm, made
# by mmdebstrap (--variant=essential: dpkg, coreutils, bash ... but no apt)
# from the Debian archive, plus
#   - the runtime library packages of the binary, found from the binary
#     itself (ldd, or readelf's NEEDED list for a foreign --arch, each
#     library mapped to its package with dpkg -S); the script prints them
#   - iptables (iptables, iptables-save, iptables-restore; the nft and the
#     legacy variants, chosen by update-alternatives as on a Debian host)
#   - udpringd as /usr/bin/udpringd and /opt/bin/flanneld -> /usr/bin/udpringd,
#     so kube-flannel's "/opt/bin/flanneld --ip-masq --kube-subnet-mgr ..."
#     and its install-cni init container's "cp -f ..." work unchanged
# and is imported with podman import (ENTRYPOINT ["/opt/bin/flanneld"], as
# in flannel's own image).
#
# Options:
#   --arch ARCH        amd64 or arm64 (default: the host's, dpkg
#                      --print-architecture); the binary's ELF machine must
#                      match it
#   --binary PATH      the udpringd to put in (default: build it with
#                      scripts/build.sh --target udpringd in $BUILD_DIR and
#                      use $BUILD_DIR/udpringd; only for the host's --arch)
#   --tag NAME         image name (default: localhost/udpring:COMMIT-ARCH,
#                      COMMIT the short git commit of this tree)
#   --out FILE         also write the image as an OCI archive (podman save
#                      --format oci-archive), e.g. for ctr images import
#   --root DIR         podman's storage directory (podman --root; default:
#                      $PODMAN_ROOT, else podman's own default)
#   --runroot DIR      podman's state directory (podman --runroot; default:
#                      $PODMAN_RUNROOT, else DIR/run of --root when --root is
#                      given, else podman's own default); use the same
#                      --root and --runroot with podman to run the image
#   --iptables MODE    nft or legacy: the iptables alternative the image
#                      starts with (default nft, Debian's default); both
#                      variants are installed either way
#   --include PKGS     extra Debian packages, comma-separated (e.g. iproute2)
#   --mirror MIRROR    passed to mmdebstrap as its MIRROR (a URL or a
#                      sources.list line; repeatable); default: mmdebstrap's
#                      own, the Debian archive with bookworm-updates and
#                      bookworm-security
#   -- ARGS            further arguments for mmdebstrap (e.g. --mode=unshare)
#   -h, --help         this text
#
# Environment: BUILD_DIR (default build), PODMAN_ROOT, PODMAN_RUNROOT.
#
# Needs: mmdebstrap, podman (and its runtime), readelf (binutils), dpkg;
# scripts/install-deps.sh installs them.  As root mmdebstrap runs in its
# root mode; otherwise it picks unshare, which needs subuids (/etc/subuid).
#
# arm64 on an amd64 host (not covered by the test suite): give an arm64
# binary (--binary, e.g. from an arm64 machine or a cross build).  Its
# libraries are looked up with dpkg -S among the host's arm64 packages, so
# install them first (dpkg --add-architecture arm64; apt-get install
# liburing2:arm64 ...).  mmdebstrap --arch=arm64 then runs the packages'
# maintainer scripts under qemu: apt-get install qemu-user-static
# binfmt-support arch-test, with binfmt_misc registered on the host.
# --iptables legacy and the in-chroot ldd check need that too.
#
# Exit status: 0 built; 1 error; 3 the Debian archive could not be reached.
set -euo pipefail
UR_TAG=build-image
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$ROOT"

SUITE=bookworm
host_arch=$(dpkg --print-architecture 2>/dev/null) || die "dpkg not found: this script needs a Debian host"
arch=$host_arch
binary=""
tag=""
out=""
proot=${PODMAN_ROOT:-}
prunroot=${PODMAN_RUNROOT:-}
iptables_mode=nft
extra=""
mirrors=()
mm_args=()
while (($#)); do
  case "$1" in
    --arch|--binary|--tag|--out|--root|--runroot|--iptables|--include|--mirror)
      [[ -n "${2:-}" ]] || die "$1 needs a value (try --help)" ;;&
    --arch) arch=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --root) proot=$2; shift 2 ;;
    --runroot) prunroot=$2; shift 2 ;;
    --iptables) iptables_mode=$2; shift 2 ;;
    --include) extra=$2; shift 2 ;;
    --mirror) mirrors+=("$2"); shift 2 ;;
    --) shift; mm_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done

case "$arch" in
  amd64) triplet=x86_64-linux-gnu elf_machine="Advanced Micro Devices X86-64" ;;
  arm64) triplet=aarch64-linux-gnu elf_machine="AArch64" ;;
  *) die "--arch $arch is not supported: use amd64 or arm64" ;;
esac
case "$iptables_mode" in
  nft|legacy) ;;
  *) die "--iptables $iptables_mode: use nft or legacy" ;;
esac
[[ -z "$extra" || "$extra" =~ ^[a-z0-9][a-z0-9.+-]*(,[a-z0-9][a-z0-9.+-]*)*$ ]] ||
  die "--include '$extra' is not a comma-separated list of package names"
native=0
[[ "$arch" == "$host_arch" ]] && native=1

for tool in mmdebstrap podman readelf dpkg-query; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found; run scripts/install-deps.sh"
done

# podman's storage: the same --root/--runroot pair for every podman call.
podman=(podman)
if [[ -n "$proot" ]]; then
  [[ -n "$prunroot" ]] || prunroot=$proot/run
  mkdir -p "$proot" "$prunroot" || die "cannot create podman's storage $proot / $prunroot"
  proot=$(realpath "$proot") prunroot=$(realpath "$prunroot")
  podman+=(--root "$proot" --runroot "$prunroot")
elif [[ -n "$prunroot" ]]; then
  die "--runroot $prunroot needs --root as well (podman's storage and state go together)"
fi

# 1. The binary.
if [[ -z "$binary" ]]; then
  ((native)) || die "--arch $arch is not the host's ($host_arch): give an $arch udpringd with --binary"
  BUILD_DIR=${BUILD_DIR:-build}
  log "building udpringd in $BUILD_DIR (give --binary PATH to use an existing one)"
  BUILD_DIR=$BUILD_DIR bash scripts/build.sh --target udpringd </dev/null ||
    die "the build failed; fix it, or give a built binary with --binary PATH"
  binary=$BUILD_DIR/udpringd
fi
[[ -f "$binary" && -x "$binary" ]] || die "--binary $binary is not an executable file"
binary=$(realpath "$binary")
[[ "$binary" != *"'"* ]] || die "--binary $binary: a path with a quote (') cannot be handed to mmdebstrap's upload hook; copy the binary elsewhere"
header=$(LC_ALL=C readelf -h "$binary" 2>/dev/null) || die "--binary $binary is not an ELF file"
machine=$(sed -n 's/^ *Machine: *//p' <<<"$header")
[[ "$machine" == "$elf_machine" ]] ||
  die "--binary $binary is built for '$machine', but --arch $arch needs '$elf_machine': build udpringd for $arch, or pass the --arch that matches it"
interp=$(LC_ALL=C readelf -l "$binary" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p')
[[ -n "$interp" ]] || die "--binary $binary has no program interpreter (a static binary?); this script packs a dynamically linked udpringd"

if [[ -z "$tag" ]]; then
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || commit=dev
  tag=localhost/udpring:$commit-$arch
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/udpring-image.XXXXXX")
cleanup() { rm -rf "$tmp"; }
ur_cleanup_trap cleanup

# 2. The runtime library packages, from the binary itself.  Natively, ldd
#    gives every library it loads (with the dependencies of the
#    dependencies); for a foreign --arch, readelf's NEEDED entries are looked
#    up among the host's packages of that architecture (apt brings the rest
#    as their dependencies).
owner_of() {  # PATH -> the package that ships it, or nothing
  local f=$1 cand line
  for cand in "$f" "$(realpath -m "$f")" "${f#/usr}" "/usr$f"; do
    line=$(dpkg-query -S "$cand" 2>/dev/null | grep -v '^diversion by' | head -n1) || continue
    [[ -n "$line" ]] || continue
    line=${line%%: *}
    line=${line%%,*}
    printf '%s\n' "${line%%:*}"
    return 0
  done
  return 1
}
declare -A pkg_of=()
libs=()
if ((native)); then
  lddout=$(ldd "$binary" 2>&1) || die "ldd $binary failed: $lddout"
  if grep -q 'not found' <<<"$lddout"; then
    die "ldd $binary: $(grep 'not found' <<<"$lddout" | tr -s ' \t' ' ' | paste -sd ';') -- install the library packages it was built with"
  fi
  mapfile -t libs < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$lddout")
else
  mapfile -t sonames < <(LC_ALL=C readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  libs=("$interp")
  for so in "${sonames[@]}"; do
    hit=$(dpkg-query -S "*/$triplet/$so" 2>/dev/null | head -n1) ||
      die "no installed $arch package ships $so: dpkg --add-architecture $arch, apt-get update, and install the $arch library packages udpringd was built with (see --help)"
    libs+=("${hit##*: }")
  done
fi
((${#libs[@]})) || die "found no libraries of $binary (ldd/readelf gave nothing)"
for lib in "${libs[@]}"; do
  pkg=$(owner_of "$lib") ||
    die "no Debian package ships $lib (needed by $binary): build udpringd against Debian's packages (scripts/install-deps.sh), not a library of /usr/local or elsewhere"
  pkg_of[$pkg]+="${pkg_of[$pkg]:+ }${lib##*/}"
done
mapfile -t packages < <(printf '%s\n' "${!pkg_of[@]}" | sort)
log "runtime libraries of ${binary##*/} ($arch), by package:"
for pkg in "${packages[@]}"; do
  ver=$(dpkg-query -W -f='${Version}' "$pkg:$arch" 2>/dev/null || true)
  log "  $pkg ${ver:+($ver here) }: ${pkg_of[$pkg]}"
done

includes=$(IFS=,; printf '%s' "${packages[*]},iptables${extra:+,$extra}")

# 3. The root filesystem.  The hooks run with $1 = the root being built.
# shellcheck disable=SC2016  # $1 is the hook's, not ours
hooks=(
  --customize-hook="upload '$binary' /usr/bin/udpringd"
  --customize-hook='chmod 0755 "$1/usr/bin/udpringd"'
  --customize-hook='mkdir -p "$1/opt/bin" "$1/run/flannel" "$1/etc/kube-flannel" && ln -sf /usr/bin/udpringd "$1/opt/bin/flanneld"'
)
if ((native)) || [[ "$iptables_mode" == legacy ]]; then
  # Needs to run $arch code: natively always, foreign only under qemu.
  # shellcheck disable=SC2016
  hooks+=(--customize-hook='missing=$(chroot "$1" ldd /usr/bin/udpringd | grep "not found") || exit 0; echo "in the image: $missing" >&2; exit 1')
fi
if [[ "$iptables_mode" == legacy ]]; then
  # shellcheck disable=SC2016
  hooks+=(--customize-hook='chroot "$1" update-alternatives --set iptables /usr/sbin/iptables-legacy && chroot "$1" update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy')
fi
rootfs=$tmp/rootfs.tar
log "mmdebstrap $SUITE ($arch, variant essential) with: ${includes//,/ }"
started=$SECONDS
if ! mmdebstrap --variant=essential --arch="$arch" --include="$includes" \
    --format=tar --dpkgopt=force-unsafe-io \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "${hooks[@]}" "${mm_args[@]}" \
    "$SUITE" "$rootfs" "${mirrors[@]}" </dev/null >"$tmp/mmdebstrap.log" 2>&1; then
  tail -n 25 "$tmp/mmdebstrap.log" >&2
  if grep -qE 'Could not resolve|Could not connect|Failed to fetch|Temporary failure resolving|Unable to connect|Connection timed out|Network is unreachable|Release file .* is not valid|does not have a Release file' "$tmp/mmdebstrap.log"; then
    log "ERROR: the Debian archive could not be reached (mmdebstrap's log above): check the network and apt proxy, or give a reachable mirror with --mirror"
    exit 3
  fi
  die "mmdebstrap failed (its log above): see the error it names"
fi
log "root filesystem: $(du -h "$rootfs" | cut -f1) in $((SECONDS - started)) s"

# 4. The image.
commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
changes=(
  --change 'ENTRYPOINT ["/opt/bin/flanneld"]'
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'WORKDIR /'
  --change "LABEL org.opencontainers.image.title=udpring"
  --change "LABEL org.opencontainers.image.description=\"udpringd, a drop-in replacement for flanneld's udp backend; /opt/bin/flanneld points at it\""
  --change "LABEL org.opencontainers.image.revision=$commit"
  --change "LABEL org.opencontainers.image.base.name=debian:$SUITE"
)
"${podman[@]}" import --quiet --arch "$arch" --os linux "${changes[@]}" \
    --message "udpringd on Debian $SUITE ($arch)" "$rootfs" "$tag" >"$tmp/import.log" 2>&1 ||
  die "podman import failed: $(cat "$tmp/import.log")"
log "image $tag ($("${podman[@]}" image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) bytes)"
if [[ -n "$out" ]]; then
  mkdir -p "$(dirname "$out")" || die "--out $out: cannot create its directory"
  rm -f "$out"
  "${podman[@]}" save --quiet --format oci-archive -o "$out" "$tag" ||
    die "podman save to --out $out failed"
  log "OCI archive $out ($(du -h "$out" | cut -f1)); load it with: ctr -n k8s.io images import $out"
fi
if [[ -n "$proot" ]]; then
  log "run it with: podman --root $proot --runroot $prunroot run --runtime runc ... $tag"
fi
printf '%s\n' "$tag"

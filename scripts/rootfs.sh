#!/usr/bin/env bash
# rootfs.sh — build an ext4 root disk image for govmm's guests.
#
# Usage: scripts/rootfs.sh [--extra DIR]... [--size MiB] [--init PATH] [OUT.img]
#
#   OUT.img       the image to write. Without it: build/guests/rootfs/rootfs.img,
#                 cached (rebuilt only when this script or lib.sh changes or
#                 Debian publishes a new busybox-static).
#   --extra DIR   copy the tree DIR into the image's root (repeatable, in
#                 order; later trees win). The benchmark adds its tool this way.
#   --size MiB    size of the image (default 64).
#   --init PATH   use PATH as /sbin/init instead of the guest init.
#
# The image holds Debian's static busybox (an applet link per command in
# /bin), /etc/passwd and /etc/group, an empty /govmm-tests, and as /sbin/init
# the same guest init as the initramfs images of scripts/guest-assets.sh
# (write_guest_init in lib.sh). So a guest booted with it as root prints the
# same markers (GOVMM_INIT_OK, GOVMM_KERNEL=, GOVMM_CPUS=, GOVMM_ROOTFS=ext4, the
# friendly line, GOVMM_ACTION=) and obeys govmm.action= and govmm.run=NAME,
# which runs /govmm-tests/NAME before the action and prints
# GOVMM_RUN_STATUS=<n>. Boot it as /dev/vda:
#   govmm boot --kernel build/guests/minimal/bzImage --disk rootfs.img \
#     --append 'console=ttyS0 reboot=k panic=-1 govmm.action=reboot'
# or with a Debian kernel through its initramfs, which mounts root= and
# switch_roots into the disk's init.
#
# mkfs.ext4 -d fills the new file system from a directory tree: no loop
# device, no mount and no root privileges are needed (as non-root the files
# are owned by the caller; the guest runs as root either way). Only the files
# named above go in; nothing of the host's own file system is copied.
set -euo pipefail

# shellcheck disable=SC2034 # read by log() and die() in lib.sh
LOG_PREFIX=rootfs
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEFAULT_OUT="$GOVMM_BUILD/guests/rootfs/rootfs.img"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

extras=() size=64 init='' out=''
while [[ $# -gt 0 ]]; do
  case "$1" in
    --extra) extras+=("${2:?--extra needs a directory}"); shift 2 ;;
    --extra=*) extras+=("${1#*=}"); shift ;;
    --size) size=${2:?--size needs a value in MiB}; shift 2 ;;
    --size=*) size=${1#*=}; shift ;;
    --init) init=${2:?--init needs a path}; shift 2 ;;
    --init=*) init=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [[ -z "$out" ]] || die "more than one output image given ('$out', '$1')"; out=$1; shift ;;
  esac
done
[[ "$size" =~ ^[0-9]+$ && "$size" -ge 8 ]] || die "bad --size '$size' (MiB, at least 8)"
for d in ${extras[@]+"${extras[@]}"}; do
  [[ -d "$d" ]] || die "--extra $d is not a directory"
  # The point of the image is a small, known root; a whole host tree in it
  # is a mistake, not a feature.
  [[ "$(cd "$d" && pwd -P)" != / ]] || die "--extra / would copy the host's root file system"
done
[[ -z "$init" || -f "$init" ]] || die "--init $init is not a file"

cached=
if [[ -z "$out" ]]; then
  out=$DEFAULT_OUT
  [[ ${#extras[@]} -eq 0 && -z "$init" && "$size" == 64 ]] && cached=1
fi

"$GOVMM_ROOT/scripts/install-deps.sh" guests
command -v mkfs.ext4 >/dev/null || PATH=$PATH:/sbin:/usr/sbin
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (Debian package e2fsprogs)"

build() {
  local bbdeb stamp tree d
  # The busybox package the image is made from: a new one means a rebuild.
  bbdeb=$(basename "$(deb_download busybox-static)")
  stamp="$out.busybox"
  if [[ -n "$cached" && "$(cat "$stamp" 2>/dev/null)" == "$bbdeb" ]] &&
     newer_than "$out" "$GOVMM_ROOT/scripts/rootfs.sh" "$GOVMM_ROOT/scripts/lib.sh"; then
    return 0
  fi
  log "building ${out#"$GOVMM_ROOT"/} (${size} MiB, busybox from $bbdeb)"
  mkdir -p "$(dirname "$out")"
  tree=$(mktemp -d "$GOVMM_BUILD/.rootfs.$$.XXXXXX")
  # shellcheck disable=SC2064 # expand $tree now: it is local
  trap "rm -rf '$tree' '$out.tmp'" EXIT
  install_busybox "$tree"
  write_etc "$tree"
  mkdir -p "$tree/govmm-tests" "$tree/var" "$tree/home"
  if [[ -n "$init" ]]; then
    install -m 755 "$init" "$tree/sbin/init"
  else
    write_guest_init "$tree" sbin/init
  fi
  for d in ${extras[@]+"${extras[@]}"}; do
    cp -a "$d/." "$tree/"
  done
  rm -f "$out.tmp"
  truncate -s "${size}M" "$out.tmp"
  # -b 4096: mke2fs.conf would pick 1 KiB blocks for a "small" file system;
  # 4 KiB matches the page size and what real root file systems use.
  # root_owner: / owned by root even when built by another user.
  mkfs.ext4 -q -F -L govmm-root -b 4096 -E root_owner=0:0 -d "$tree" "$out.tmp" ||
    die "mkfs.ext4 failed (is ${size} MiB enough for the tree? $(du -sm "$tree" | cut -f1) MiB)"
  mv "$out.tmp" "$out"
  rm -rf "$tree"
  trap - EXIT
  if [[ -n "$cached" ]]; then echo "$bbdeb" >"$stamp"; else rm -f "$stamp"; fi
}

# Several runs may build the default image at once (make -j, parallel tests).
if [[ -n "$cached" ]]; then with_lock rootfs build; else build; fi
echo "$out"

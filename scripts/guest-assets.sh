#!/usr/bin/env bash
# guest-assets.sh — build the Linux guests govmm boots in its tests.
#
# Usage: scripts/guest-assets.sh [generic|cloud|minimal|testbed|all]...
#                                                  (no argument: all)
#   generic  build/guests/debian-generic/{vmlinuz,initramfs.cpio.gz,kernel-release}
#            Debian's stock kernel (linux-image-amd64). virtio is modular, so
#            the initramfs loads virtio-pci/blk/net and ext4.
#   cloud    build/guests/debian-cloud/{vmlinuz,initramfs.cpio.gz,kernel-release}
#            Debian's cloud kernel (linux-image-cloud-amd64): needs ACPI to see
#            more than one CPU (no MP table support), ext4 built in.
#   minimal  build/guests/minimal/{bzImage,initramfs.cpio.gz,kernel-release}
#            A tiny kernel from Debian's linux-source-6.1: tinyconfig plus
#            testdata/minimal-kernel.config. No ACPI, no modules. Takes a few
#            minutes to build the first time.
#   testbed  build/testbed/{vmlinuz,initramfs.cpio.gz,kernel-release}
#            The L1 kernel for scripts/nested-run.sh: Debian's generic kernel
#            with kvm_amd, tun and 9p loaded by a test-runner /init.
#
# The guest /init (all three guest kinds; write_guest_init in lib.sh) mounts
# /proc, /sys, /dev, loads the modules, prints
#     GOVMM_INIT_OK
#     GOVMM_KERNEL=<uname -r>
#     GOVMM_CPUS=<online CPUs>
#     GOVMM_ROOTFS=<file system type of />
# and a friendly line, runs govmm.run=NAME (/govmm-tests/NAME) if given and
# prints GOVMM_RUN_STATUS=<n>, then obeys govmm.action= on the kernel command line:
#     poweroff (default)  sync, print GOVMM_ACTION=poweroff, poweroff -f
#     reboot              sync, print GOVMM_ACTION=reboot,   reboot -f
#     shell               a shell on the console; powers off when it exits
# Without ACPI (the minimal kernel) poweroff cannot switch the machine off;
# use reboot with a VMM that exits on reset.
# With root=/dev/vdX on the command line the init first mounts that disk (the
# Debian initramfs images load virtio-blk and ext4 for it) and switch_roots
# into its /sbin/init: a disk made by scripts/rootfs.sh holds this same init.
# If that fails it prints GOVMM_ROOT_FAILED=<reason> and powers off.
#
# Outputs are cached: Debian packages are downloaded once (build/cache), the
# kernel is rebuilt only when the config fragment changes, and an initramfs is
# repacked only when these scripts change or Debian publishes a new kernel.
set -euo pipefail

# shellcheck disable=SC2034 # read by log() and die() in lib.sh
LOG_PREFIX=guest-assets
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GUESTS="$GOVMM_BUILD/guests"
TESTBED="$GOVMM_BUILD/testbed"
FRAGMENT="$GOVMM_ROOT/testdata/minimal-kernel.config"
KSRC_PKG=linux-source-6.1
KSRC_DIR="$GOVMM_BUILD/kernel-src"
# Files whose change means the initramfs images must be repacked.
SCRIPTS=("$GOVMM_ROOT/scripts/guest-assets.sh" "$GOVMM_ROOT/scripts/lib.sh")
# Scratch trees for initramfs images; removed however we exit. ($$ is the
# same in the subshells with_lock starts.)
trap 'rm -rf "$GOVMM_BUILD"/.initramfs.$$.*' EXIT

# The virtio drivers of Debian's kernels, in no particular order (the load
# order comes from modules.dep). failover/net_failover are virtio_net's deps;
# virtio_rng gives the guest /dev/hwrng from a virtio entropy device;
# virtio_mmio binds the LNRO0005 devices of --virtio-transport mmio.
VIRTIO_MODULES=(virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev
                virtio_pci virtio_mmio virtio_blk failover net_failover virtio_net
                virtio_rng)

# The guest /init (write_guest_init) and /etc (write_etc) live in lib.sh:
# scripts/rootfs.sh installs the very same init as the disk image's
# /sbin/init.

# --- Debian kernels ------------------------------------------------------------

# build_debian OUTDIR METAPACKAGE INIT_WRITER MODULE...
build_debian() {
  local out=$1 meta=$2 writer=$3; shift 3
  local pkg kdir rel tree
  install_deps guests
  pkg=$(resolve_kernel_pkg "$meta")
  if [[ "$(cat "$out/kernel-package" 2>/dev/null)" == "$pkg" ]] &&
     newer_than "$out/initramfs.cpio.gz" "${SCRIPTS[@]}" && [[ -s "$out/vmlinuz" ]]; then
    return 0
  fi
  log "building ${out#"$GOVMM_ROOT"/} from $pkg"
  kdir=$(kernel_unpack "$meta")
  rel=$(cat "$kdir/kernel-release")
  tree=$(mktemp -d "$GOVMM_BUILD/.initramfs.$$.XXXXXX")
  install_busybox "$tree"
  write_etc "$tree"
  install_modules "$kdir" "$rel" "$tree" "$@"
  "$writer" "$tree"
  mkdir -p "$out"
  pack_initramfs "$tree" "$out/initramfs.cpio.gz"
  rm -rf "$tree"
  cp "$kdir/boot/vmlinuz-$rel" "$out/vmlinuz.tmp" && mv "$out/vmlinuz.tmp" "$out/vmlinuz"
  echo "$rel" >"$out/kernel-release"
  echo "$pkg" >"$out/kernel-package"
}

# ext4 (and jbd2) need a crc32c implementation at mount time. That is only a
# soft dependency ("softdep ext4 pre: crypto-crc32c"), which modules.dep does
# not list and busybox insmod would not follow, so name crc32c_generic
# explicitly, before ext4.
EXT4_MODULES=(crc32c_generic ext4)

build_generic() {
  build_debian "$GUESTS/debian-generic" linux-image-amd64 write_guest_init \
    "${VIRTIO_MODULES[@]}" "${EXT4_MODULES[@]}"
}

build_cloud() {
  # ext4 and crc32c are built into the cloud kernel; module_closure skips
  # built-ins, so the same list works.
  build_debian "$GUESTS/debian-cloud" linux-image-cloud-amd64 write_guest_init \
    "${VIRTIO_MODULES[@]}" "${EXT4_MODULES[@]}"
}

# --- the minimal kernel --------------------------------------------------------

# check_fragment CONFIG — fail unless every option of the fragment has the
# requested value in CONFIG. Kconfig silently drops options whose dependencies
# are missing, so this is what keeps the fragment honest.
check_fragment() {
  local config=$1 line opt bad=0
  while IFS= read -r line; do
    if [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      opt=${BASH_REMATCH[1]}
      if grep -q "^$opt=" "$config"; then
        echo "  wanted '$line', got '$(grep "^$opt=" "$config")'" >&2; bad=1
      fi
    elif [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)= ]]; then
      opt=${BASH_REMATCH[1]}
      if ! grep -qxF "$line" "$config"; then
        echo "  wanted '$line', got '$(grep "^$opt=" "$config" || echo "# $opt is not set")'" >&2; bad=1
      fi
    fi
  done <"$FRAGMENT"
  [[ $bad -eq 0 ]] || die "the minimal kernel config does not match $FRAGMENT (see above)"
}

build_minimal_kernel() {
  local ver src="$KSRC_DIR/linux-source-6.1" obj="$KSRC_DIR/minimal" klog
  install_deps kernel-build
  ver=$(dpkg-query -W -f='${Version}' "$KSRC_PKG")

  # Cached: bzImage newer than the fragment, from the same source version.
  if [[ "$(cat "$obj/.govmm-source-version" 2>/dev/null)" == "$ver" ]] &&
     newer_than "$obj/arch/x86/boot/bzImage" "$FRAGMENT"; then
    return 0
  fi

  if [[ "$(cat "$src/.govmm-source-version" 2>/dev/null)" != "$ver" ]]; then
    log "unpacking $KSRC_PKG $ver"
    rm -rf "$src" "$obj"
    mkdir -p "$KSRC_DIR"
    tar -xJf "/usr/src/$KSRC_PKG.tar.xz" -C "$KSRC_DIR"
    [[ -d "$src" ]] || die "/usr/src/$KSRC_PKG.tar.xz did not contain linux-source-6.1/"
    echo "$ver" >"$src/.govmm-source-version"
  fi

  log "building the minimal kernel (tinyconfig + ${FRAGMENT#"$GOVMM_ROOT"/}, make -j$(nproc); a few minutes)"
  mkdir -p "$obj"
  klog="$KSRC_DIR/minimal-build.log"
  rm -f "$obj/.govmm-source-version"
  {
    make -C "$src" O="$obj" tinyconfig &&
    "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$FRAGMENT" &&
    make -C "$src" O="$obj" olddefconfig
  } >"$klog" 2>&1 || { tail -n 30 "$klog" >&2; die "configuring the minimal kernel failed (log: $klog)"; }
  check_fragment "$obj/.config"
  make -C "$src" O="$obj" -j"$(nproc)" bzImage >>"$klog" 2>&1 ||
    { tail -n 30 "$klog" >&2; die "building the minimal kernel failed (log: $klog)"; }
  echo "$ver" >"$obj/.govmm-source-version"
}

build_minimal() {
  local out="$GUESTS/minimal" obj="$KSRC_DIR/minimal" tree
  with_lock kernel-build build_minimal_kernel
  if newer_than "$out/bzImage" "$obj/arch/x86/boot/bzImage" &&
     newer_than "$out/initramfs.cpio.gz" "${SCRIPTS[@]}"; then
    return 0
  fi
  install_deps guests
  mkdir -p "$out"
  cp "$obj/arch/x86/boot/bzImage" "$out/bzImage.tmp" && mv "$out/bzImage.tmp" "$out/bzImage"
  make -s -C "$KSRC_DIR/linux-source-6.1" O="$obj" kernelrelease >"$out/kernel-release"
  tree=$(mktemp -d "$GOVMM_BUILD/.initramfs.$$.XXXXXX")
  install_busybox "$tree"
  write_etc "$tree"
  write_guest_init "$tree"
  pack_initramfs "$tree" "$out/initramfs.cpio.gz"
  rm -rf "$tree"
}

# --- the L1 test bed (scripts/nested-run.sh) --------------------------------

# The L1 init: set up a small root environment, load KVM, mount the
# repository over 9p at its host path, run the command nested-run.sh wrote
# into the run directory, and leave its exit status there.
#
# Kernel parameters (set by nested-run.sh):
#   govmm.repo=<absolute repository path on the host (and now in L1)>
#   govmm.run=<run directory, relative to the repository>
#   govmm.hostroot=1 (with nested-run.sh --host-root): the host's root file
#     system is shared read-only as 9p tag 'hostroot'; the command then runs
#     chrooted into it, with L1's /dev, /proc, /sys, a fresh /tmp and the
#     writable repository mounted over it, so every host tool (QEMU,
#     bash, coreutils) is there.
# The kernel's console is ttyS1 (a log file on the host); ttyS0 carries the
# command's output to nested-run.sh's stdout.
write_testbed_init() {
  cat >"$1/init" <<'EOF'
#!/bin/sh
# govmm L1 test-bed init (generated by scripts/guest-assets.sh).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/null >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
hostname govmm-l1
ip link set lo up 2>/dev/null

repo= run= hostroot=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    govmm.repo=*) repo=${arg#govmm.repo=} ;;
    govmm.run=*)  run=${arg#govmm.run=} ;;
    govmm.hostroot=1) hostroot=1 ;;
  esac
done

# Report a test-bed failure: the host turns status 125 + this reason into
# its one-line error. Without the 9p mount it can only log to the console.
fail() {
  echo "nested-run-init: $*"
  if [ -n "$rundir" ] && [ -d "$rundir" ]; then
    echo "$*" >"$rundir/error"
    echo 125 >"$rundir/status"
  fi
  sync
  poweroff -f
  # Only if poweroff could not run: init exiting panics the kernel, and
  # panic=-1 with QEMU's -no-reboot ends the VM. (No sleep loop: if applets
  # can't be run, a loop of them would spin forever.)
  exit 1
}
rundir=

while read -r m; do
  err=$(insmod "$m" 2>&1) || echo "nested-run-init: warning: cannot load ${m##*/}: $err"
done </lib/modules/load-order

[ -n "$repo" ] && [ -n "$run" ] || fail "govmm.repo= or govmm.run= missing from the kernel command line"
mkdir -p "$repo"
# msize: the largest the 6.1 virtio transport accepts (bigger is clamped).
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none repo "$repo" ||
  fail "cannot mount the repository (9p tag 'repo') at $repo"
rundir="$repo/$run"
[ -d "$rundir" ] || fail "run directory $rundir not visible over 9p"

[ -c /dev/kvm ] || fail "/dev/kvm is missing inside L1 (kvm_amd did not load: $(dmesg | grep -i -m1 -e kvm -e svm))"
[ -c /dev/net/tun ] || echo "nested-run-init: warning: /dev/net/tun is missing"
mkdir -p /root

# The host's userspace, read-only, as the command's root (--host-root).
# cache=loose is safe for a read-only share and makes loading binaries and
# libraries over 9p much faster.
root=/
if [ -n "$hostroot" ]; then
  root=/host
  mkdir -p /host
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /host ||
    fail "cannot mount the host's root file system (9p tag 'hostroot')"
  mount -o rbind /dev /host/dev || fail "cannot bind /dev into the host root"
  mount -t proc proc /host/proc && mount -t sysfs sysfs /host/sys &&
    mount -t tmpfs -o mode=1777 tmpfs /host/tmp || fail "cannot mount /proc, /sys, /tmp in the host root"
  # The repository's path may not exist in the host root as L1 sees it:
  # under /tmp, now a fresh tmpfs, or on another file system, which the
  # read-only 9p share of / does not cross into. Make the mount point, on a
  # tmpfs over its deepest existing ancestor if the share is in the way.
  if ! mkdir -p "/host$repo" 2>/dev/null; then
    a=$repo
    while [ ! -d "/host$a" ]; do a=${a%/*}; done
    mount -t tmpfs tmpfs "/host${a:-/}" && mkdir -p "/host$repo" ||
      fail "cannot make a mount point for the repository in the host root"
  fi
  mount -o bind "$repo" "/host$repo" || fail "cannot bind the repository into the host root"
fi

# The command's output goes to ttyS0 unchanged: no "\n" -> "\r\n" mapping.
stty -F /dev/ttyS0 115200 -opost -echo 2>/dev/null
echo ready >"$rundir/started"
cd "$repo" || fail "cannot cd to $repo"
# A clean environment; cmd.sh adds the passed-through variables and execs
# the command.
if [ -n "$hostroot" ]; then
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TERM=dumb \
    chroot /host sh -c 'cd "$1" && exec sh "$2"' sh "$repo" "$rundir/cmd.sh" </dev/null >/dev/ttyS0 2>&1
else
  env -i PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb \
    sh "$rundir/cmd.sh" </dev/null >/dev/ttyS0 2>&1
fi
status=$?
echo "$status" >"$rundir/status.tmp" && mv "$rundir/status.tmp" "$rundir/status"
sync
poweroff -f
exit 1
EOF
  chmod 755 "$1/init"
}

# L1 modules: hardware-assisted KVM (kvm_amd pulls kvm, ccp, irqbypass), tap
# and vhost devices for VMM networking tests, the 9p client over virtio-pci
# for the repository share (9p pulls netfs and fscache).
TESTBED_MODULES=(kvm_amd tun vhost_net vhost_vsock
                 virtio_pci 9pnet_virtio 9p)

build_testbed() {
  install_deps testbed
  build_debian "$TESTBED" linux-image-amd64 write_testbed_init "${TESTBED_MODULES[@]}"
}

# --- main ------------------------------------------------------------------

install_deps() {
  "$GOVMM_ROOT/scripts/install-deps.sh" "$@"
}

targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(all)
for t in "${targets[@]}"; do
  case "$t" in
    generic) with_lock debian-generic build_generic ;;
    cloud)   with_lock debian-cloud build_cloud ;;
    minimal) with_lock minimal build_minimal ;;
    testbed) with_lock testbed build_testbed ;;
    all)
      with_lock debian-generic build_generic
      with_lock debian-cloud build_cloud
      with_lock testbed build_testbed
      with_lock minimal build_minimal
      ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown target '$t' (generic, cloud, minimal, testbed, all)" ;;
  esac
done

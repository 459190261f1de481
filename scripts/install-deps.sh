#!/usr/bin/env bash
# install-deps.sh — install the host packages the govmm scripts need.
#
# Usage: scripts/install-deps.sh [GROUP...]
#   testbed       QEMU (TCG emulates AMD SVM+NPT, so the L1 test bed gets real
#                 hardware-assisted KVM) and the tools to pack initramfs images.
#   guests        what scripts/guest-assets.sh and scripts/rootfs.sh need to turn
#                 Debian kernel and busybox packages into guest images (no
#                 package is installed to the host for that: they are
#                 downloaded and unpacked), e2fsprogs for the ext4 root disk.
#   kernel-build  a compiler toolchain and Debian's linux-source-6.1, for the
#                 minimal guest kernel.
#   tests         tools the tests use when present: acpica-tools (iasl and
#                 acpiexec check the generated ACPI tables), binutils (as and ld
#                 assemble the lesson guests), gdb (the GDB stub's tests drive
#                 the real debugger).
#   bench         perf, for scripts/bench-io.sh TRACE=... (linux-perf).
#   all           everything above (the default when no GROUP is given).
#
# Idempotent and quiet: only packages that are missing are installed
# (--no-install-recommends), `apt-get update` runs at most once and only when
# needed, and apt's output is shown only if something fails.
set -euo pipefail

pkgs_testbed=(qemu-system-x86 cpio gzip xz-utils kmod)
# kmod: depmod, because Debian's kernel .debs ship no modules.dep.
# e2fsprogs: mkfs.ext4 -d builds the root disk image (scripts/rootfs.sh);
# the end-to-end tests read images back with debugfs.
pkgs_guests=(cpio gzip xz-utils zstd kmod e2fsprogs)
# libelf-dev: objtool (x86-64 builds use it for the ORC unwinder / stack
# validation). libssl-dev: scripts/sign-file and certs/ are built by the kernel
# build even when module signing is off in some configurations.
pkgs_kernel_build=(gcc make libc6-dev bc bison flex libelf-dev libssl-dev
                   xz-utils linux-source-6.1)

pkgs_tests=(acpica-tools binutils gdb)
pkgs_bench=(linux-perf)
groups=("$@")
[[ ${#groups[@]} -eq 0 ]] && groups=(all)

want=()
for g in "${groups[@]}"; do
  case "$g" in
    testbed)      want+=("${pkgs_testbed[@]}") ;;
    guests)       want+=("${pkgs_guests[@]}") ;;
    kernel-build) want+=("${pkgs_kernel_build[@]}") ;;
    tests)        want+=("${pkgs_tests[@]}") ;;
    bench)        want+=("${pkgs_bench[@]}") ;;
    all)          want+=("${pkgs_testbed[@]}" "${pkgs_guests[@]}" "${pkgs_kernel_build[@]}" "${pkgs_tests[@]}" "${pkgs_bench[@]}") ;;
    -h|--help)    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: unknown group '$g' (testbed, guests, kernel-build, tests, bench, all)" >&2; exit 2 ;;
  esac
done

installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for p in "${want[@]}"; do
  installed "$p" && continue
  # de-duplicate (groups overlap)
  [[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

log=$(mktemp /tmp/install-deps.XXXXXX.log)
trap 'rm -f "$log"' EXIT
export DEBIAN_FRONTEND=noninteractive

apt_install() {
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1
}

echo "install-deps: installing ${missing[*]}" >&2
# Try without refreshing the package lists first (fast path, and the lists may
# be fresh already); on failure refresh them once and retry.
if ! apt_install; then
  if ! apt-get update -q >>"$log" 2>&1 || ! apt_install; then
    cat "$log" >&2
    echo "install-deps: apt-get install failed for: ${missing[*]}" >&2
    exit 1
  fi
fi

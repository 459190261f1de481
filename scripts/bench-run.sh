#!/usr/bin/env bash
# Latency benchmark of `govmm run`: the wall time of running one command in
# a throwaway VM, from launch to the VMM's exit, median of RUNS (default 5),
# next to QEMU booting the same kernel to a busybox init that prints a line
# and powers off, interleaved in one run (scripts/bootbench):
#   minimal  govmm run --kernel <minimal> --initrd <busybox> -- echo ...
#            QEMU -M microvm, the same kernel and initramfs
#   generic  govmm run --kernel <Debian generic> --modules DIR --rootfs / -- echo ...
#            QEMU -M pc, the same kernel with the initramfs that loads the
#            virtio modules (it mounts no 9p root and opens no console
#            port, so QEMU does less work than govmm here)
# The "init marker" column is the command's output line arriving.
#
# On a VMX/SVM host it runs directly; elsewhere inside the nested test bed
# with --host-root (the host's userland is the guest root there too).
# Needs bin/govmm and the guest assets (make bench-run builds both).
# Timings are reported, never asserted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX=bench-run
# shellcheck source=lib.sh
source scripts/lib.sh

runs=${RUNS:-5}
bench_enter scripts/bench-run.sh "$@"
# Of the generic kernel's modules, only those govmm run loads are staged
# too, with the index files.
bench_stage
rel=$(cat "$g/debian-generic/kernel-release")
src=$(echo build/cache/unpacked/linux-image-"$rel"_*/lib/modules/"$rel")
[[ -f "$src/modules.dep" ]] || die "no modules for $rel under build/cache/unpacked (make guests)"
mods=$work/modules/$rel
mkdir -p "$mods"
cp "$src"/modules.dep "$src"/modules.builtin "$mods/"
for d in drivers/virtio drivers/char drivers/misc/pvpanic fs/9p fs/netfs fs/fscache net/9p; do
  mkdir -p "$mods/kernel/$d"
  cp -r "$src/kernel/$d/." "$mods/kernel/$d/"
done

append="console=ttyS0 reboot=k panic=-1 quiet govmm.action=poweroff"
marker=GOVMM_INIT_OK
"$work/bootbench" -runs "$runs" -baseline qemu -exit-grace 20s -marker "$marker" \
  -case "minimal/govmm run=$govmm run --kernel $g/minimal/bzImage --initrd $g/minimal/initramfs.cpio.gz --mem 256M -- echo $marker" \
  -case "minimal/qemu=$qemu -M microvm -m 256M -kernel $g/minimal/bzImage -initrd $g/minimal/initramfs.cpio.gz -append '$append'" \
  -case "generic/govmm run=$govmm run --kernel $g/debian-generic/vmlinuz --modules $mods --rootfs / --mem 512M -- echo $marker" \
  -case "generic/qemu=$qemu -M pc -m 512M -kernel $g/debian-generic/vmlinuz -initrd $g/debian-generic/initramfs.cpio.gz -append '$append'"

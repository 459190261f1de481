#!/usr/bin/env bash
# Boot-time benchmark: govmm against QEMU on the same kernels and
# initramfs images, in one test-bed run, interleaved (scripts/bootbench).
#
# For each guest it prints the median time from launching the VMM to the
# guest init's first line (GOVMM_INIT_OK), the median time to the VMM's
# exit after the guest powers off, and govmm/QEMU ratios:
#   minimal  the minimal kernel (no ACPI)      QEMU -M microvm
#   cloud    Debian's stock cloud kernel       QEMU -M pc
#   generic  Debian's stock generic kernel     QEMU -M pc
# Both VMMs get the same RAM, one vCPU, the same command line and -cpu host
# (govmm passes the host's CPUID through KVM_GET_SUPPORTED_CPUID likewise).
#
# On a VMX/SVM host it runs directly; elsewhere inside the nested test bed
# with --host-root, so that QEMU runs there too. RUNS (default 5) sets the
# number of runs of each case. Needs bin/govmm and the guest assets (make
# bench builds both). Timings are reported, never asserted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX=bench-boot
# shellcheck source=lib.sh
source scripts/lib.sh

runs=${RUNS:-5}
bench_enter scripts/bench-boot.sh "$@"
bench_stage
append="console=ttyS0 reboot=k panic=-1 quiet govmm.action=poweroff"
"$work/bootbench" -runs "$runs" -baseline qemu -exit-grace 10s \
  -case "minimal/govmm=$govmm boot --kernel $g/minimal/bzImage --initrd $g/minimal/initramfs.cpio.gz --mem 256M --cpus 1 --append '$append'" \
  -case "minimal/qemu=$qemu -M microvm -m 256M -kernel $g/minimal/bzImage -initrd $g/minimal/initramfs.cpio.gz -append '$append'" \
  -case "cloud/govmm=$govmm boot --kernel $g/debian-cloud/vmlinuz --initrd $g/debian-cloud/initramfs.cpio.gz --mem 512M --cpus 1 --append '$append'" \
  -case "cloud/qemu=$qemu -M pc -m 512M -kernel $g/debian-cloud/vmlinuz -initrd $g/debian-cloud/initramfs.cpio.gz -append '$append'" \
  -case "generic/govmm=$govmm boot --kernel $g/debian-generic/vmlinuz --initrd $g/debian-generic/initramfs.cpio.gz --mem 512M --cpus 1 --append '$append'" \
  -case "generic/qemu=$qemu -M pc -m 512M -kernel $g/debian-generic/vmlinuz -initrd $g/debian-generic/initramfs.cpio.gz -append '$append'"

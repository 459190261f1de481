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
if [[ "${1:-}" != --inside ]]; then
  CGO_ENABLED=0 go build -o build/bootbench ./scripts/bootbench
  if host_kvm_is_hardware; then
    exec "$0" --inside
  fi
  echo "bench-boot: running inside the nested test bed (QEMU TCG, AMD SVM); $runs runs per case" >&2
  exec scripts/nested-run.sh --host-root --cpus 3 --timeout 3600 --env RUNS="$runs" -- scripts/bench-boot.sh --inside
fi

command -v qemu-system-x86_64 >/dev/null || { echo "bench-boot: qemu-system-x86_64 is missing (scripts/install-deps.sh testbed)" >&2; exit 1; }
[[ -c /dev/kvm ]] || { echo "bench-boot: no /dev/kvm here" >&2; exit 1; }

# Stage what both VMMs read -- govmm's binary, the kernels and initramfs
# images -- in tmpfs. In the test bed the repository is a 9p share without
# caching, while QEMU and its libraries come from the cached host-root
# share; timing file-system round trips of the test bed is not the point.
work=$(mktemp -d /tmp/bench-boot.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp bin/govmm build/bootbench "$work/"
cp -r build/guests "$work/guests"
govmm=$work/govmm
append="console=ttyS0 reboot=k panic=-1 quiet govmm.action=poweroff"
g=$work/guests
qemu="qemu-system-x86_64 -accel kvm -cpu host -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot"

echo "bench-boot: $(uname -r) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) CPUs; $("$govmm" version); $(qemu-system-x86_64 --version | head -1)" >&2
"$work/bootbench" -runs "$runs" -baseline qemu -exit-grace 10s \
  -case "minimal/govmm=$govmm boot --kernel $g/minimal/bzImage --initrd $g/minimal/initramfs.cpio.gz --mem 256M --cpus 1 --append '$append'" \
  -case "minimal/qemu=$qemu -M microvm -m 256M -kernel $g/minimal/bzImage -initrd $g/minimal/initramfs.cpio.gz -append '$append'" \
  -case "cloud/govmm=$govmm boot --kernel $g/debian-cloud/vmlinuz --initrd $g/debian-cloud/initramfs.cpio.gz --mem 512M --cpus 1 --append '$append'" \
  -case "cloud/qemu=$qemu -M pc -m 512M -kernel $g/debian-cloud/vmlinuz -initrd $g/debian-cloud/initramfs.cpio.gz -append '$append'" \
  -case "generic/govmm=$govmm boot --kernel $g/debian-generic/vmlinuz --initrd $g/debian-generic/initramfs.cpio.gz --mem 512M --cpus 1 --append '$append'" \
  -case "generic/qemu=$qemu -M pc -m 512M -kernel $g/debian-generic/vmlinuz -initrd $g/debian-generic/initramfs.cpio.gz -append '$append'"

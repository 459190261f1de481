#!/usr/bin/env bash
# The README's demo: boot Debian's stock cloud kernel with govmm on two
# vCPUs, through its initramfs to userspace, which prints a greeting and
# powers the VM off.
#
# On a host whose /dev/kvm is hardware-assisted (VMX/SVM) govmm runs
# directly. Elsewhere (software KVM such as kvm_pvm, or no KVM at all) it
# runs inside the nested test bed, scripts/nested-run.sh.
#
# Needs bin/govmm (make build). Downloads the kernel and busybox from
# Debian on first use, into build/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX=demo
# shellcheck source=lib.sh
source scripts/lib.sh

scripts/guest-assets.sh cloud
guest=build/guests/debian-cloud
args=(boot --kernel "$guest/vmlinuz" --initrd "$guest/initramfs.cpio.gz"
      --cpus 2 --mem 512M
      --append "console=ttyS0 reboot=k panic=-1 quiet govmm.action=${DEMO_ACTION:-poweroff}")

echo "demo: govmm ${args[*]}" >&2
if host_kvm_is_hardware; then
  exec bin/govmm "${args[@]}"
fi
echo "demo: this host's KVM is not hardware-assisted; running govmm inside the nested test bed (QEMU TCG with AMD SVM)" >&2
exec scripts/nested-run.sh --timeout 600 -- bin/govmm "${args[@]}"

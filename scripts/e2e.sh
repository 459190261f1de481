#!/usr/bin/env bash
# Runs govmm's end-to-end tests (package e2e): real Linux kernels booted by
# govmm to their initramfs and powered off or rebooted.
#
# Where this host's /dev/kvm is hardware-assisted (VMX/SVM) the tests run
# directly. Otherwise, as on PVM hosts, they run inside the nested test bed
# (scripts/nested-run.sh), whose L1 VM has hardware-assisted KVM under QEMU.
#
# Needs bin/govmm and the guest assets (make build guests), and e2fsprogs
# (debugfs, e2fsck) for the virtio tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LOG_PREFIX=e2e
# shellcheck source=lib.sh
source scripts/lib.sh

timeout=${E2E_TIMEOUT:-1800}
# The test bed's L1 VM gets one CPU more than the largest guest uses. Under
# QEMU's TCG an L1 CPU that enters a nested guest (the emulated VMRUN) may
# not get control back for a long time; with every L1 CPU inside a guest,
# L1 itself starves (soft lockups) and even the tests' own timeouts cannot
# fire. A spare CPU keeps L1 responsive.
bed_cpus=${E2E_BED_CPUS:-3}
# A test run that prints nothing for this long inside the test bed is a
# frozen L1 (every test logs each boot as it ends, and a hung boot is
# killed after 4 minutes and then says so): the test bed is stopped and
# counted as failed.
idle=${E2E_IDLE_TIMEOUT:-420}
# The test binary must be static: the test bed's L1 userspace is busybox.
CGO_ENABLED=0 go test -c -o build/e2e.test ./e2e

if host_kvm_is_hardware; then
  echo "e2e: hardware-assisted KVM here; running the end-to-end tests directly" >&2
  GOVMM_E2E=1 build/e2e.test -test.v -test.timeout "${timeout}s"
else
  echo "e2e: no hardware-assisted KVM here; running the end-to-end tests in the nested test bed" >&2
  # --host-root: the virtio tests read and write ext4 images with e2fsprogs'
  # debugfs and e2fsck, which L1's busybox userland lacks; chrooted into the
  # host's root file system they find them (govmm and the test binary are
  # static and run the same there).
  #
  # The test bed itself sometimes dies: QEMU TCG's emulation of SVM has been
  # seen to corrupt L1's GS base at a VM exit (L1's kernel then faults
  # recursively in exc_page_fault and panics), and L1 has frozen under
  # heavy nested I/O (then nothing is printed, and --idle-timeout ends the
  # run). nested-run.sh then exits with 125, not with the tests' status.
  # Such a run is reported, with the end of L1's kernel log, and started
  # again, up to three runs in all; a failing test (status 1) is never
  # retried.
  for attempt in 1 2 3; do
    status=0
    GOVMM_E2E=1 scripts/nested-run.sh --host-root --cpus "$bed_cpus" --timeout "$timeout" --idle-timeout "$idle" -- build/e2e.test -test.v -test.timeout "$((timeout - 120))s" || status=$?
    [[ $status -eq 125 && $attempt -lt 3 ]] || exit "$status"
    l1log=$(ls -td build/testbed/runs/*/ 2>/dev/null | head -n 1)console.log
    echo "e2e: the test bed failed (status 125), not a test; the end of L1's kernel log ($l1log):" >&2
    tail -n 40 "$l1log" >&2 2>/dev/null || true
    echo "e2e: running the end-to-end tests once more" >&2
  done
fi

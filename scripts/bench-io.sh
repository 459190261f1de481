#!/usr/bin/env bash
# I/O benchmark: govmm's virtio-blk and virtio-net against QEMU's, measured
# from inside the same guest, in one test-bed run, interleaved
# (scripts/guestbench).
#
# The guest: the minimal kernel (build/guests/minimal), the root disk of
# scripts/rootfs.sh with the guestbench tool added (--extra), a 512 MiB
# scratch disk as /dev/vdb (in tmpfs: the benchmark is about the VMMs' device
# paths, not a host disk), a virtio-net NIC on a tap with the host at
# 192.0.2.1 and the guest at 192.0.2.2, 1 vCPU, 512 MiB. Its init runs
# /govmm-tests/bench, which starts `guestbench guest`; `guestbench host`
# launches the VMMs, serves the guest and prints the table: sequential
# read/write MB/s, 4 KiB random-read IOPS, TCP MB/s both ways, and the VM
# exits each request costs, counted by KVM itself (debugfs; the same for
# every VMM).
#
# What each VMM is given, to keep it fair:
#   - one vCPU each: the minimal kernel has no ACPI and finds its CPUs in the
#     MP table only, and SeaBIOS's MP table under QEMU -M pc lists just the
#     boot CPU whatever -smp says; so QEMU's guest would see one CPU anyway.
#   - govmm: --disk and --net as its command line offers them. govmm serves a
#     disk with buffered pread/pwrite on the image file (the host page cache).
#   - QEMU: -M pc -accel kvm -cpu host, the same kernel, command line, RAM and
#     vCPUs; disks as virtio-blk-pci with cache=writeback (QEMU's default, the
#     host page cache, like govmm; cache=none would mean O_DIRECT, which tmpfs
#     refuses anyway), aio=threads, and num-queues=1 (both VMMs give
#     virtio-blk a queue per vCPU: one here, pinned so it stays so); virtio-net-pci
#     on the tap with vhost=off (vhost would move the data path into the
#     kernel, which govmm does not use); virtio-rng-pci as govmm has one.
#
# On a VMX/SVM host it runs directly (as root: it creates a tap); elsewhere
# inside the nested test bed with --host-root, so that QEMU runs there too.
# Environment:
#   RUNS     runs of each VMM (default 3)
#   SECONDS_PER_PHASE  length of each workload (default 5)
#   VMMS     which VMMs to run (default "govmm qemu"); VMMS=qemu runs the QEMU
#            half alone, e.g. while govmm has no --disk/--net yet
#   DETAIL   if set, also print every KVM counter that moved in each phase,
#            per request (guestbench host -detail)
#   PHASES   the workloads to run, comma-separated (default all:
#            seq-write,seq-read,rand-read,tcp-tx,tcp-rx)
#   TRACE    workloads to trace, comma-separated (e.g. TRACE=tcp-tx): in the
#            middle of each run's phase, perf records the scheduler's and
#            KVM's tracepoints for a few seconds, and the run prints why its
#            vCPU exited and who preempted it (guestbench host -trace;
#            perf comes from scripts/install-deps.sh bench)
#   GOVMM_B  a second govmm binary to compare with bin/govmm: it runs as the
#            case "govmm-b", interleaved with the others, with the same
#            command line (an A/B test of a change; VMMS must include govmm)
# Needs bin/govmm, the minimal guest and busybox (make bench-io builds them).
# Results are reported, never asserted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck disable=SC2034 # read by log() and die() in lib.sh
LOG_PREFIX=bench-io
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

runs=${RUNS:-3}
phase_s=${SECONDS_PER_PHASE:-5}
vmms=${VMMS:-govmm qemu}
phases=${PHASES:-}
govmm_b=${GOVMM_B:-}
trace=${TRACE:-}
work_rel=build/bench-io
tap=gbench0
mac=52:54:00:00:02:02

has_vmm() { [[ " $vmms " == *" $1 "* ]]; }

if [[ "${1:-}" != --inside ]]; then
  for v in $vmms; do
    [[ "$v" == govmm || "$v" == qemu ]] || die "unknown VMM '$v' in VMMS (govmm, qemu)"
  done
  if has_vmm govmm; then
    [[ -x bin/govmm ]] || die "bin/govmm is missing (make build)"
    # govmm's virtio devices are new; say so plainly instead of failing
    # later with a usage error inside the test bed.
    help=$(bin/govmm boot --help 2>&1 || true)
    if ! grep -q -- '--disk' <<<"$help" || ! grep -q -- '--net' <<<"$help"; then
      die "bin/govmm has no --disk/--net options yet, so its half cannot run; VMMS=qemu runs the QEMU half alone"
    fi
  fi
  # perf must be on this host: the test bed runs its root file system.
  [[ -n "$trace" ]] && { scripts/install-deps.sh bench || die "TRACE needs perf (scripts/install-deps.sh bench, as root)"; }
  if [[ -n "$govmm_b" ]]; then
    has_vmm govmm || die "GOVMM_B needs govmm in VMMS"
    [[ -x "$govmm_b" ]] || die "GOVMM_B: $govmm_b is not an executable file"
    # The test bed sees the repository at the same path; the binary is
    # copied from there into L1's tmpfs.
    [[ "$(realpath "$govmm_b")" == "$PWD"/* ]] || die "GOVMM_B: $govmm_b must lie inside the repository ($PWD)"
    govmm_b=$(realpath --relative-to=. "$govmm_b")
  fi
  [[ -s build/guests/minimal/bzImage ]] || die "build/guests/minimal/bzImage is missing (scripts/guest-assets.sh minimal)"

  # The benchmark's root disk: the standard image plus the tool and the
  # script the guest's init runs (govmm.run=bench).
  CGO_ENABLED=0 go build -trimpath -o "$work_rel/guestbench" ./scripts/guestbench
  extra="$work_rel/extra"
  rm -rf "$extra"
  mkdir -p "$extra/usr/bin" "$extra/govmm-tests"
  cp "$work_rel/guestbench" "$extra/usr/bin/guestbench"
  cat >"$extra/govmm-tests/bench" <<'EOF'
#!/bin/sh
# Written by scripts/bench-io.sh: bring the NIC up, run the guest half.
ip link set lo up
ip addr add 192.0.2.2/24 dev eth0 && ip link set eth0 up || exit 1
exec /usr/bin/guestbench guest -server 192.0.2.1:5200 -disk /dev/vdb
EOF
  scripts/rootfs.sh --extra "$extra" "$work_rel/rootfs.img" >/dev/null

  if host_kvm_is_hardware; then
    [[ $(id -u) -eq 0 ]] || die "run as root: the benchmark creates a tap device"
    exec "$0" --inside
  fi
  echo "bench-io: running inside the nested test bed (QEMU TCG, AMD SVM); $runs runs per VMM" >&2
  # L1 gets CPUs to spare beyond the guest's one: the VMM's I/O threads and
  # the host half of the benchmark run beside the vCPU (see scripts/e2e.sh
  # on why a busy L1 needs a spare CPU). An L1 that freezes (shared/notes)
  # ends the run after seven silent minutes instead of an hour.
  exec scripts/nested-run.sh --host-root --cpus 3 --mem 3072 --timeout 3600 --idle-timeout 420 \
    --env RUNS="$runs" --env SECONDS_PER_PHASE="$phase_s" --env VMMS="$vmms" \
    --env DETAIL="${DETAIL:-}" --env PHASES="$phases" --env GOVMM_B="$govmm_b" --env TRACE="$trace" -- scripts/bench-io.sh --inside
fi

# --- inside: L1 (or a hardware-KVM host) --------------------------------------
[[ -c /dev/kvm ]] || die "no /dev/kvm here"
if has_vmm qemu; then
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (scripts/install-deps.sh testbed)"
fi
command -v ip >/dev/null || die "the ip tool (iproute2) is missing"

# Everything the VMMs read or write lives in tmpfs: in the test bed the
# repository is an uncached 9p share, and timing 9p is not the point.
work=$(mktemp -d /tmp/bench-io.XXXXXX)
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  ip link del "$tap" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cp "$work_rel/guestbench" "$work_rel/rootfs.img" build/guests/minimal/bzImage "$work/"
has_vmm govmm && cp bin/govmm "$work/"
[[ -n "$govmm_b" ]] && cp "$govmm_b" "$work/govmm-b"
# A scratch disk of real pages (fallocate on tmpfs allocates them), so that
# every read is served from memory alike, written or not.
fallocate -l 512M "$work/scratch.img"

# KVM's exit counters live in debugfs.
if [[ ! -e /sys/kernel/debug/kvm/exits ]]; then
  mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
fi

# One persistent tap for both VMMs: each attaches to it in turn (TUNSETIFF
# on an existing tap), so the host address stays put between runs.
ip link del "$tap" 2>/dev/null || true
ip tuntap add dev "$tap" mode tap
ip addr add 192.0.2.1/24 dev "$tap"
ip link set "$tap" up

# loglevel=5: a quiet boot, but the guest's warnings reach the console
# (a stuck transmit queue, NETDEV WATCHDOG, is one), so a run that fails
# says why in build/bench-io/logs.
append="console=ttyS0 reboot=k panic=-1 loglevel=5 root=/dev/vda rw govmm.run=bench govmm.action=reboot"
cases=()
if has_vmm govmm; then
  govmm_args="boot --kernel $work/bzImage --mem 512M --cpus 1 --disk $work/rootfs.img --disk $work/scratch.img --net tap=$tap,mac=$mac --append '$append'"
  cases+=(-case "govmm=$work/govmm $govmm_args")
  [[ -n "$govmm_b" ]] && cases+=(-case "govmm-b=$work/govmm-b $govmm_args")
fi
if has_vmm qemu; then
  cases+=(-case "qemu=qemu-system-x86_64 -M pc -accel kvm -cpu host -smp 1 -m 512M -nodefaults -no-user-config -display none -serial stdio -no-reboot -kernel $work/bzImage -append '$append' -drive file=$work/rootfs.img,if=none,id=d0,format=raw,cache=writeback,aio=threads -device virtio-blk-pci,drive=d0,num-queues=1 -drive file=$work/scratch.img,if=none,id=d1,format=raw,cache=writeback,aio=threads -device virtio-blk-pci,drive=d1,num-queues=1 -netdev tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=off -device virtio-net-pci,netdev=n0,mac=$mac -device virtio-rng-pci")
fi

versions="$(uname -r) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) CPUs"
has_vmm govmm && versions+="; $("$work/govmm" version 2>&1 | head -1)"
[[ -n "$govmm_b" ]] && versions+="; govmm-b: $("$work/govmm-b" version 2>&1 | head -1)"
has_vmm qemu && versions+="; $(qemu-system-x86_64 --version | head -1)"
echo "bench-io: $versions" >&2
# Every run's console (and, for a run that failed, what the host found
# when its guest stopped answering) goes straight to the repository, where
# it outlives a test bed that dies: a run can fail while the others succeed
# and the table still prints.
rm -rf "$work_rel/logs"
mkdir -p "$work_rel/logs"
# Ratios are to QEMU; without it, to bin/govmm (for a GOVMM_B A/B test).
baseline=qemu
has_vmm qemu || baseline=govmm
rc=0
"$work/guestbench" host -runs "$runs" -seconds "$phase_s" -threads 4 \
  -listen 192.0.2.1 -port 5200 -baseline "$baseline" -logs "$work_rel/logs" ${DETAIL:+-detail} ${phases:+-phases "$phases"} \
  ${trace:+-trace "$trace" -trace-dir "$work"} "${cases[@]}" || rc=$?
echo "bench-io: each run's console is in $work_rel/logs/" >&2
exit "$rc"

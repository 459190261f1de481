#!/usr/bin/env bash
# nested-run.sh — run a command inside a throwaway VM that has hardware-assisted KVM.
#
# Usage: scripts/nested-run.sh [OPTIONS] -- COMMAND [ARGS...]
#
#   --timeout SECONDS  kill the VM after this long (default 900); exit 125
#   --idle-timeout SECONDS
#                      kill the VM when COMMAND has printed nothing for this
#                      long (default: no limit); exit 125. Under QEMU's TCG
#                      the L1 VM now and then freezes for good (see
#                      shared/notes); this ends such a run early.
#   --mem SIZE         memory of the VM, as QEMU's -m takes it (default 3072 = MiB)
#   --cpus N           virtual CPUs of the VM (default 2)
#   --env NAME=VALUE   set NAME in COMMAND's environment (repeatable)
#   --host-root        run COMMAND chrooted into this host's root file system,
#                      shared read-only (with L1's /dev, /proc, /sys, a fresh
#                      /tmp and the writable repository over it), so that any
#                      host tool works inside, QEMU included; HOME is /tmp
#   -h, --help         show this text
#
# Why: govmm needs /dev/kvm with hardware virtualization to boot Linux. Many CI
# machines (and this project's own) have none: no nested virtualization, or a
# software-only KVM. QEMU's TCG emulator, though, emulates AMD SVM with nested
# paging (-cpu max), so a Linux booted under it can load kvm_amd and offer a
# real /dev/kvm. This script boots such a VM ("L1": Debian's stock kernel, a
# busybox userland, no disk), and runs COMMAND in it; govmm started by COMMAND
# then runs its own guests ("L2") on that /dev/kvm. It is slow (everything is
# emulated) but faithful; CI users without nested virtualization can run govmm
# under it.
#
# Inside the VM:
#   - the repository is mounted over 9p at the same absolute path as on the
#     host, and COMMAND starts in the repository root, as root; files it
#     writes there appear on the host;
#   - the userland is busybox (from Debian's busybox-static): run static
#     binaries (e.g. `CGO_ENABLED=0 go test -c`) built on the host;
#   - environment: PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb,
#     every host variable named GOVMM_*, and the --env ones;
#   - /dev/kvm, /dev/net/tun, /dev/vhost-net, /dev/vhost-vsock, /proc, /sys,
#     /tmp (tmpfs), loopback up; no network to the outside.
#
# Output and exit status:
#   - COMMAND's stdout and stderr both stream to this script's stdout as they
#     are produced (over the VM's first serial port; the VM's kernel logs to a
#     file instead, so they never mix). COMMAND's stdin is /dev/null.
#   - The exit status is COMMAND's. 125 means the test bed itself failed
#     (QEMU missing or failing, no /dev/kvm inside, timeout, ...); a line
#     starting with "nested-run:" on stderr then says what happened.
#
# Examples:
#   scripts/nested-run.sh -- sh -c 'ls -l /dev/kvm; uname -r'
#   CGO_ENABLED=0 go test -c -o build/kvm.test ./kvm &&
#     scripts/nested-run.sh --timeout 600 -- ./build/kvm.test -test.v
#
# The first run installs QEMU (scripts/install-deps.sh testbed) and builds the
# L1 kernel and initramfs (scripts/guest-assets.sh testbed) into build/; later
# runs reuse them. Several runs may go on at once: each has its own run
# directory, build/testbed/runs/<id>/, removed afterwards unless the test bed
# failed (then it holds console.log and qemu.log for diagnosis).
set -euo pipefail

# shellcheck disable=SC2034 # read by log() and die() in lib.sh
LOG_PREFIX=nested-run
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TESTBED="$GOVMM_BUILD/testbed"

# A test-bed failure: one line on stderr, status 125.
bed_fail() {
  echo "nested-run: $*" >&2
  exit 125
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

timeout_s=900 idle_s=0 mem=3072 cpus=2 hostroot=
envs=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    --idle-timeout) idle_s=${2:?--idle-timeout needs a value}; shift 2 ;;
    --idle-timeout=*) idle_s=${1#*=}; shift ;;
    --mem) mem=${2:?--mem needs a value}; shift 2 ;;
    --mem=*) mem=${1#*=}; shift ;;
    --cpus) cpus=${2:?--cpus needs a value}; shift 2 ;;
    --cpus=*) cpus=${1#*=}; shift ;;
    --env) envs+=("${2:?--env needs NAME=VALUE}"); shift 2 ;;
    --env=*) envs+=("${1#*=}"); shift ;;
    --host-root) hostroot=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "nested-run: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ $# -eq 0 ]]; then
  echo "nested-run: no command given; usage: $0 [OPTIONS] -- COMMAND [ARGS...]" >&2
  exit 2
fi
[[ "$timeout_s" =~ ^[0-9]+$ && "$timeout_s" -gt 0 ]] || { echo "nested-run: bad --timeout '$timeout_s'" >&2; exit 2; }
[[ "$idle_s" =~ ^[0-9]+$ ]] || { echo "nested-run: bad --idle-timeout '$idle_s'" >&2; exit 2; }
[[ "$cpus" =~ ^[0-9]+$ && "$cpus" -gt 0 ]] || { echo "nested-run: bad --cpus '$cpus'" >&2; exit 2; }
for kv in ${envs[@]+"${envs[@]}"}; do
  [[ "$kv" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "nested-run: bad --env '$kv' (want NAME=VALUE)" >&2; exit 2; }
done

# The repository travels on the kernel command line, which splits at spaces.
[[ "$GOVMM_ROOT" =~ [[:space:]] ]] && bed_fail "the repository path must not contain white space: $GOVMM_ROOT"

# --- make sure QEMU and the L1 images exist (cached) ------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
  "$GOVMM_ROOT/scripts/install-deps.sh" testbed >&2 || true
  command -v qemu-system-x86_64 >/dev/null || bed_fail "qemu-system-x86_64 is missing and could not be installed"
fi
if ! newer_than "$TESTBED/initramfs.cpio.gz" "$GOVMM_ROOT/scripts/guest-assets.sh" "$GOVMM_ROOT/scripts/lib.sh" ||
   [[ ! -s "$TESTBED/vmlinuz" ]]; then
  log "preparing the test bed: L1 kernel and initramfs (cached in build/testbed)"
  "$GOVMM_ROOT/scripts/guest-assets.sh" testbed >&2 || bed_fail "building the test bed's kernel and initramfs failed"
fi

# --- the run directory: the command in, the status out ----------------------
runs="$TESTBED/runs"
mkdir -p "$runs"
# Leftovers of runs that were killed hard (or kept for diagnosis) a day ago.
find "$runs" -mindepth 1 -maxdepth 1 -type d -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
run=$(mktemp -d "$runs/XXXXXXXX")
run_rel=${run#"$GOVMM_ROOT"/}

# Single-quote a string for a POSIX shell (busybox sh runs cmd.sh): every
# byte is literal between single quotes, and ' becomes '\''.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

{
  echo "# written by scripts/nested-run.sh; runs in the L1 VM"
  # Host variables named GOVMM_*, then --env (which wins).
  while IFS= read -r name; do
    [[ "$name" == GOVMM_* ]] || continue
    echo "export $name=$(shquote "${!name}")"
  done < <(compgen -e)
  for kv in ${envs[@]+"${envs[@]}"}; do
    echo "export ${kv%%=*}=$(shquote "${kv#*=}")"
  done
  printf 'exec'
  for a in "$@"; do printf ' %s' "$(shquote "$a")"; done
  echo
} >"$run/cmd.sh"

hostroot_args=() hostroot_param=
if [[ -n "$hostroot" ]]; then
  # multidevs=remap: / spans several file systems; remap their inode
  # numbers so 9p clients never see two files with the same one.
  hostroot_args=(-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap,id=hostroot)
  hostroot_param=" govmm.hostroot=1"
fi

qpid= wpid=
# shellcheck disable=SC2317 # called from the traps below
cleanup() {
  [[ -n "$qpid" ]] && kill "$qpid" 2>/dev/null
  [[ -n "$wpid" ]] && kill "$wpid" 2>/dev/null
  rm -rf "$run"
}
# Ctrl-C / kill: stop QEMU, remove the run directory.
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# --- boot L1 ---------------------------------------------------------------
# ttyS0: COMMAND's output -> our stdout. QEMU's stdin is /dev/null so it never
#        touches a terminal's settings (signal=off: no ^C handling either).
# ttyS1: L1's kernel console and init messages -> console.log.
# `timeout --foreground` keeps QEMU in our process group (no SIGTTOU when
# writing to a terminal) and SIGKILLs it if it ignores SIGTERM.
# The output file exists before QEMU starts, so that tail (started below
# while the shell may still be setting up QEMU's redirections) can open it.
: >"$run/out"
# tsc=reliable: L1's TSC check (check_tsc_sync_source) sees TCG's vCPU
# threads read the TSC at different moments and calls the TSCs
# unsynchronized, although every vCPU derives its TSC from the one host
# clock (QEMU cpu_get_tsc). Left alone, L1 falls back to the HPET: every
# clock_gettime becomes a system call with an emulated HPET read, which a
# Go runtime, whose scheduler reads the clock constantly, pays for
# dearly, and L1's KVM cannot offer its guests a stable kvm-clock
# (Documentation/virt/kvm/x86/timekeeping.rst).
tsc_param="tsc=reliable"
timeout --foreground -k 10 "$timeout_s" \
  qemu-system-x86_64 \
    -nodefaults -nic none \
    -accel tcg,thread=multi -M q35 -cpu max \
    -smp "$cpus" -m "$mem" \
    -display none -no-reboot \
    -chardev stdio,id=out,signal=off -serial chardev:out \
    -chardev file,id=log,path="$run/console.log" -serial chardev:log \
    -virtfs local,path="$GOVMM_ROOT",mount_tag=repo,security_model=none,id=repo \
    ${hostroot_args[@]+"${hostroot_args[@]}"} \
    -kernel "$TESTBED/vmlinuz" -initrd "$TESTBED/initramfs.cpio.gz" \
    -append "console=ttyS1 panic=-1 quiet loglevel=3 $tsc_param govmm.repo=$GOVMM_ROOT govmm.run=$run_rel$hostroot_param" \
    </dev/null 2>"$run/qemu.log" >>"$run/out" &
qpid=$!
# COMMAND's output reaches our stdout through a file that tail follows
# until QEMU is gone (--pid), so the idle watch below can see it grow.
tail -n +1 -f --pid="$qpid" "$run/out" &
tpid=$!
if [[ $idle_s -gt 0 ]]; then
  (
    last=-1 quiet=0
    while kill -0 "$qpid" 2>/dev/null; do
      sleep 5
      size=$(stat -c %s "$run/out" 2>/dev/null || echo 0)
      if [[ $size -ne $last ]]; then last=$size quiet=0; else quiet=$((quiet + 5)); fi
      if [[ $quiet -ge $idle_s ]]; then
        touch "$run/idle"
        kill "$qpid" 2>/dev/null
        break
      fi
    done
  ) &
  wpid=$!
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=
wait "$tpid" || true
if [[ -n "$wpid" ]]; then
  kill "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  wpid=
fi

# --- the verdict -------------------------------------------------------------
keep_fail() {
  # Keep the run directory (logs) and report where it is.
  bed_fail "$* (logs: ${run_rel}/console.log, qemu.log)"
}
if [[ -e "$run/idle" ]]; then
  keep_fail "no output for ${idle_s}s; the VM was killed (a frozen L1?)"
fi
if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
  keep_fail "timed out after ${timeout_s}s; the VM was killed"
fi
if [[ -s "$run/status" ]]; then
  rc=$(<"$run/status")
  if [[ -s "$run/error" ]]; then
    keep_fail "$(head -n1 "$run/error")"
  fi
  [[ "$rc" =~ ^[0-9]+$ ]] || keep_fail "garbled exit status '$rc' from the VM"
  rm -rf "$run"
  exit "$rc"
fi
if [[ $qrc -ne 0 ]]; then
  keep_fail "QEMU failed (exit $qrc): $(grep -m1 . "$run/qemu.log" || echo 'no message')"
fi
if [[ ! -e "$run/started" ]]; then
  keep_fail "the VM stopped before running the command: $(grep 'nested-run-init:' "$run/console.log" | grep -v warning | tail -n1 | grep . || echo 'no message from its init (kernel panic?)')"
fi
keep_fail "no exit status came back from the VM (it stopped while the command ran)"

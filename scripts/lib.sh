# shellcheck shell=bash
# lib.sh — helpers shared by govmm's shell scripts. Source it; don't run it.
#
# Everything downloaded or built lands in ignored folders under build/:
#   build/cache/debs/       .deb files fetched with `apt-get download`
#   build/cache/unpacked/   those .debs unpacked with `dpkg -x` (one dir each)
# Nothing here installs a package on the host: Debian kernels and busybox are
# only downloaded and unpacked.

# The repository root: this file lives in <root>/scripts. Resolved physically
# (-P) because nested-run.sh mounts it inside L1 at the very same path.
GOVMM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
GOVMM_BUILD="$GOVMM_ROOT/build"
DEB_CACHE="$GOVMM_BUILD/cache/debs"
UNPACK_CACHE="$GOVMM_BUILD/cache/unpacked"

log() { echo "${LOG_PREFIX:-govmm}: $*" >&2; }
die() { echo "${LOG_PREFIX:-govmm}: error: $*" >&2; exit 1; }

# with_lock NAME CMD... — run CMD holding an exclusive lock, so concurrent
# invocations (e.g. several nested-run.sh at once) don't build the same thing
# twice or read half-written files.
with_lock() {
  local name=$1; shift
  mkdir -p "$GOVMM_BUILD/locks"
  (
    flock 9
    "$@"
  ) 9>"$GOVMM_BUILD/locks/$name.lock"
}

# apt_candidate PKG — print the version apt would download, refreshing the
# package lists once if apt doesn't know the package (fresh machines).
_apt_updated=
apt_candidate() {
  local v
  v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z "$v" || "$v" == "(none)" ]] && [[ -z "$_apt_updated" ]]; then
    log "refreshing apt package lists"
    apt-get update -q >/dev/null 2>&1 || true
    _apt_updated=1
    v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  fi
  [[ -n "$v" && "$v" != "(none)" ]] || die "apt knows no package '$1'"
  echo "$v"
}

# resolve_kernel_pkg META — the real kernel package behind a metapackage
# (linux-image-amd64 -> linux-image-6.1.0-NN-amd64). The ABI number changes
# with Debian security updates, so it is never hard-coded.
resolve_kernel_pkg() {
  local meta=$1 real
  apt_candidate "$meta" >/dev/null
  real=$(apt-cache depends "$meta" 2>/dev/null |
         awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
  [[ -n "$real" ]] || die "cannot resolve the kernel package behind $meta"
  echo "$real"
}

# deb_download PKG — download PKG's candidate .deb into the cache (once) and
# print its path.
deb_download() {
  local pkg=$1 ver file tmp
  ver=$(apt_candidate "$pkg")
  mkdir -p "$DEB_CACHE"
  # apt-get download names files pkg_version_arch.deb, with ':' as %3a.
  file=$(compgen -G "$DEB_CACHE/${pkg}_${ver//:/%3a}_*.deb" | head -n1 || true)
  if [[ -z "$file" ]]; then
    log "downloading $pkg $ver"
    tmp=$(mktemp -d "$DEB_CACHE/.dl.XXXXXX")
    # As root apt warns that it can't drop privileges to _apt for a folder
    # _apt can't write; harmless, so the output is only shown on failure.
    if ! out=$(cd "$tmp" && apt-get download -q "$pkg=$ver" 2>&1); then
      rm -rf "$tmp"
      echo "$out" >&2
      die "apt-get download $pkg=$ver failed"
    fi
    file="$DEB_CACHE/$(basename "$(ls "$tmp"/*.deb)")"
    mv "$tmp"/*.deb "$file"   # atomic within the same file system
    rm -rf "$tmp"
  fi
  echo "$file"
}

# deb_unpack PKG — download and `dpkg -x` PKG (once); print the directory.
# Serialized with a lock: two scripts may want the same package at once.
deb_unpack() { with_lock debs _deb_unpack "$1"; }
_deb_unpack() {
  local deb dir tmp
  deb=$(deb_download "$1")
  dir="$UNPACK_CACHE/$(basename "$deb" .deb)"
  if [[ ! -e "$dir/.unpacked" ]]; then
    mkdir -p "$UNPACK_CACHE"
    tmp=$(mktemp -d "$UNPACK_CACHE/.x.XXXXXX")
    dpkg -x "$deb" "$tmp"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    touch "$dir/.unpacked"
  fi
  echo "$dir"
}

# kernel_unpack META — unpack the kernel behind metapackage META and make its
# module tree usable: Debian's .deb ships no modules.dep (the postinst runs
# depmod), so run depmod on the unpacked tree. Prints the directory; the
# release is in "$dir/kernel-release".
kernel_unpack() { with_lock debs _kernel_unpack "$1"; }
_kernel_unpack() {
  local pkg dir rel
  pkg=$(resolve_kernel_pkg "$1")
  dir=$(_deb_unpack "$pkg")
  if [[ ! -s "$dir/kernel-release" ]]; then
    rel=$(ls "$dir/lib/modules")
    [[ $(wc -w <<<"$rel") -eq 1 ]] || die "expected one module tree in $dir/lib/modules, got: $rel"
    depmod -b "$dir" "$rel" || die "depmod failed for $pkg"
    echo "$rel" >"$dir/kernel-release"
  fi
  echo "$dir"
}

# Module names: `modprobe` treats '-' and '_' alike (kvm-amd.ko is kvm_amd).
_modname() {
  local b=${1##*/}
  b=${b%%.ko*}
  echo "${b//-/_}"
}

# module_closure ROOT REL NAME... — print, in load order (dependencies first),
# the paths (relative to lib/modules/REL) of the modules NAME... and of all
# they depend on, from ROOT/lib/modules/REL/modules.dep. Names that are built
# into the kernel (modules.builtin) are skipped silently; unknown names are an
# error.
module_closure() {
  local root=$1 rel=$2; shift 2
  local mdir="$root/lib/modules/$rel"
  [[ -s "$mdir/modules.dep" ]] || die "no modules.dep in $mdir"
  local -A dep_of=() path_of=() seen=()
  local line mod deps name
  while IFS= read -r line; do
    mod=${line%%:*}
    deps=${line#*:}
    name=$(_modname "$mod")
    path_of[$name]=$mod
    dep_of[$name]=$deps
  done <"$mdir/modules.dep"
  local -A builtin=()
  if [[ -f "$mdir/modules.builtin" ]]; then
    while IFS= read -r line; do builtin[$(_modname "$line")]=1; done <"$mdir/modules.builtin"
  fi
  _visit() {
    local n=$1 d
    [[ -n "${seen[$n]-}" ]] && return 0
    seen[$n]=1
    if [[ -z "${path_of[$n]-}" ]]; then
      [[ -n "${builtin[$n]-}" ]] && return 0
      die "module '$n' is neither in modules.dep nor built into $rel"
    fi
    # modules.dep lists the full transitive closure; visiting each
    # dependency first yields a valid load order.
    for d in ${dep_of[$n]}; do _visit "$(_modname "$d")"; done
    echo "${path_of[$n]}"
  }
  for name in "$@"; do _visit "${name//-/_}"; done
}

# install_modules ROOT REL DEST NAME... — copy the closure of modules NAME...
# from the unpacked kernel ROOT into the initramfs tree DEST, decompressing
# them if the kernel ships .ko.xz/.ko.zst/.ko.gz (busybox insmod may lack the
# decompressor), and write DEST/lib/modules/load-order: one absolute path per
# line, in the order /init must insmod them.
install_modules() {
  local root=$1 rel=$2 dest=$3; shift 3
  local src="$root/lib/modules/$rel" ddir="$dest/lib/modules/$rel" p out list
  local order=()
  mkdir -p "$ddir"
  list=$(module_closure "$root" "$rel" "$@") || exit 1
  while IFS= read -r p; do
    [[ -n "$p" ]] || continue
    out="$ddir/${p%.ko*}.ko"
    mkdir -p "$(dirname "$out")"
    case "$p" in
      *.ko)     cp "$src/$p" "$out" ;;
      *.ko.xz)  xz -dc "$src/$p" >"$out" ;;
      *.ko.zst) zstd -qdc "$src/$p" >"$out" ;;
      *.ko.gz)  gzip -dc "$src/$p" >"$out" ;;
      *) die "unexpected module file $p" ;;
    esac
    order+=("/lib/modules/$rel/${p%.ko*}.ko")
  done <<<"$list"
  printf '%s\n' ${order[@]+"${order[@]}"} >"$dest/lib/modules/load-order"
}

# install_busybox DEST — put Debian's static busybox into the initramfs tree
# DEST with a symlink per applet, and the directories init expects.
install_busybox() {
  local dest=$1 bb applet
  bb=$(deb_unpack busybox-static)/bin/busybox
  mkdir -p "$dest"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc,run,mnt}
  cp "$bb" "$dest/bin/busybox"
  # The binary is static, so the host can ask it for its applet list.
  for applet in $("$bb" --list); do
    [[ "$applet" == busybox ]] && continue
    ln -sf busybox "$dest/bin/$applet"
  done
  # The kernel opens /dev/console for init before anything is mounted; make
  # the node when we can (we are normally root). /init remounts /dev anyway.
  mknod -m 600 "$dest/dev/console" c 5 1 2>/dev/null || true
  mknod -m 666 "$dest/dev/null" c 1 3 2>/dev/null || true
}

# pack_initramfs DIR OUT — pack DIR as a gzip-compressed newc cpio archive,
# owned by root, with sorted names and no timestamps in the gzip header so the
# same tree gives the same bytes.
pack_initramfs() {
  local dir=$1 out=$2
  (cd "$dir" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
     cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) |
    gzip -n -6 >"$out.tmp"
  mv "$out.tmp" "$out"
}

# newer_than TARGET FILE... — true if TARGET exists and is newer than every FILE.
newer_than() {
  local t=$1 f; shift
  [[ -e "$t" ]] || return 1
  for f in "$@"; do [[ "$t" -nt "$f" ]] || return 1; done
}

# host_kvm_is_hardware — true when this host's /dev/kvm is hardware-assisted
# (VMX/SVM), as `govmm probe` judges it; needs bin/govmm. Scripts use it to
# run govmm directly or inside the nested test bed.
host_kvm_is_hardware() {
  "$GOVMM_ROOT/bin/govmm" probe 2>/dev/null | grep -q '^verdict: *hardware-assisted'
}

# --- VMM benchmarks (bench-boot.sh, bench-run.sh) ------------------------------

# bench_enter SCRIPT ARGS... — the start of a benchmark script. Called with
# ARGS not starting with --inside, it builds scripts/bootbench and runs
# SCRIPT --inside: here on a VMX/SVM host, in the nested test bed (with the
# host's root, so QEMU runs there too) elsewhere; it does not return. With
# --inside it checks that QEMU and /dev/kvm are there and returns.
bench_enter() {
  local script=$1
  shift
  if [[ "${1:-}" != --inside ]]; then
    CGO_ENABLED=0 go build -o build/bootbench ./scripts/bootbench
    if host_kvm_is_hardware; then
      exec "$script" --inside
    fi
    log "running inside the nested test bed (QEMU TCG, AMD SVM); ${RUNS:-5} runs per case"
    # --idle-timeout: a frozen L1 (shared/notes) ends the run after seven
    # silent minutes instead of an hour.
    exec scripts/nested-run.sh --host-root --cpus 3 --timeout 3600 --idle-timeout 420 --env RUNS="${RUNS:-5}" -- "$script" --inside
  fi
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing (scripts/install-deps.sh testbed)"
  [[ -c /dev/kvm ]] || die "no /dev/kvm here"
}

# bench_stage — copies what the VMMs read (govmm, bootbench, the guests) to
# a new tmpfs directory, $work (removed on exit), and sets work, g (the
# guests there), govmm and qemu (the QEMU command line both benchmarks
# share), then prints the versions. In the test bed the repository is an
# uncached 9p share, while QEMU and its libraries come from the cached
# host-root share; timing the test bed's file-system round trips is not
# the point.
bench_stage() {
  work=$(mktemp -d "/tmp/$LOG_PREFIX.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf '$work'" EXIT
  cp bin/govmm build/bootbench "$work/"
  cp -r build/guests "$work/guests"
  # shellcheck disable=SC2034 # g, govmm and qemu are for the caller
  g=$work/guests govmm=$work/govmm qemu="qemu-system-x86_64 -accel kvm -cpu host -smp 1 -nodefaults -no-user-config -display none -serial stdio -no-reboot"
  log "$(uname -r) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) CPUs; $("$govmm" version); $(qemu-system-x86_64 --version | head -1)"
}

# --- the guest init -------------------------------------------------------------

# write_guest_init DIR [PATH] — write the guest init to DIR/PATH: "init" (the
# default) in an initramfs tree, "sbin/init" in a root disk image
# (scripts/rootfs.sh). It is one script for both, so every guest prints the
# same markers:
#     GOVMM_INIT_OK
#     GOVMM_KERNEL=<uname -r>
#     GOVMM_CPUS=<online CPUs>
#     GOVMM_ROOTFS=<type of />  (rootfs for an initramfs, ext4 for a disk)
#     Hello from the guest's userspace: ...
#     GOVMM_RUN_STATUS=<n>      (only with govmm.run=)
#     GOVMM_ACTION=<action>
# Command line keys:
#   govmm.action=poweroff|reboot|shell   what to do at the end (default poweroff)
#   govmm.run=NAME   run /govmm-tests/NAME with sh before the action, stdin
#                    /dev/null, and print its exit status. An absolute NAME is
#                    a path; if it is a block device (a raw disk holding a
#                    script, zero-padded) its bytes less the NULs are run.
#   root=/dev/XXX [rootfstype=ext4] [rootflags=...] [ro|rw] [init=/sbin/init]
#                    honoured by the initramfs's init: the kernel ignores root=
#                    when an initramfs has /init, so this init waits for the
#                    device, mounts it and switch_roots into its init (the
#                    disk's copy of this script). On failure it prints
#                    GOVMM_ROOT_FAILED=<reason> and powers off (reboots with
#                    govmm.action=reboot). Without root= nothing changes.
# Runs under busybox sh: kept POSIX, busybox ash is not bash.
write_guest_init() {
  local file="$1/${2:-init}"
  mkdir -p "$(dirname "$file")"
  cat >"$file" <<'EOF'
#!/bin/sh
# govmm guest init (generated by scripts/lib.sh, write_guest_init). The same
# script is an initramfs's /init and a root disk's /sbin/init.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=linux

# /dev first: the console node lives there. On a disk root the kernel has
# mounted devtmpfs already, and after switch_root it was moved here: then
# this mount fails, quietly.
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null

# Modules listed by the image builder in dependency order. A failure is
# reported but not fatal: the guest may still be useful without the driver.
if [ -s /lib/modules/load-order ]; then
  while read -r m; do
    err=$(insmod "$m" 2>&1) || echo "govmm-init: warning: cannot load ${m##*/}: $err"
  done </lib/modules/load-order
fi

action=poweroff run= root= rootfstype=ext4 rootflags= rootmode=rw newinit=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    govmm.action=*) action=${arg#govmm.action=} ;;
    govmm.run=*)    run=${arg#govmm.run=} ;;
    root=*)         root=${arg#root=} ;;
    rootfstype=*)   rootfstype=${arg#rootfstype=} ;;
    rootflags=*)    rootflags=${arg#rootflags=} ;;
    ro|rw)          rootmode=$arg ;;
    init=*)         newinit=${arg#init=} ;;
  esac
done
case "$action" in
  poweroff|reboot|shell) ;;
  *)
    echo "govmm-init: unknown govmm.action=$action, powering off"
    action=poweroff
    ;;
esac

# The file system type of /: "rootfs" while running from an initramfs.
root_type() { awk '$2 == "/" {t = $3} END {print t}' /proc/mounts; }

# The end of a run without a usable root: say why and stop the machine the
# way the caller asked (a kernel without ACPI cannot power off; reboot works
# everywhere).
root_failed() {
  echo "GOVMM_ROOT_FAILED=$*"
  sync
  if [ "$action" = reboot ]; then reboot -f; else poweroff -f; fi
  exit 1
}

if [ -n "$root" ] && [ "$(root_type)" = rootfs ]; then
  case "$root" in
    /dev/*) ;;
    *) root_failed "root=$root: this init only mounts /dev/ paths" ;;
  esac
  # The driver finds the disk while its module loads, but the node appears
  # only once devtmpfs has handled the device's event: wait up to 10 s.
  i=0
  while [ ! -b "$root" ]; do
    [ "$i" -lt 100 ] || root_failed "no block device $root after 10 s"
    i=$((i + 1))
    sleep 0.1
  done
  mkdir -p /newroot
  opts=$rootmode${rootflags:+,$rootflags}
  err=$(mount -t "$rootfstype" -o "$opts" "$root" /newroot 2>&1) ||
    root_failed "cannot mount $root (type $rootfstype, options $opts): $err"
  if [ ! -x "/newroot$newinit" ]; then
    umount /newroot
    root_failed "$root has no executable $newinit"
  fi
  # Hand /dev over (the console is open on it); the new init mounts the
  # rest afresh. switch_root empties this initramfs, chroots and execs.
  umount /dev/pts /tmp /sys /proc 2>/dev/null
  mount --move /dev /newroot/dev 2>/dev/null
  exec switch_root /newroot "$newinit"
fi

# Online CPUs, e.g. "0-3" or "0,2-5".
cpus=0
if [ -r /sys/devices/system/cpu/online ]; then
  for r in $(tr ',' ' ' </sys/devices/system/cpu/online); do
    case "$r" in
      *-*) cpus=$((cpus + ${r#*-} - ${r%-*} + 1)) ;;
      *)   cpus=$((cpus + 1)) ;;
    esac
  done
fi
[ "$cpus" -gt 0 ] || cpus=$(nproc)
release=$(uname -r)
mem=$(awk '/^MemTotal:/ {printf "%d MiB", $2 / 1024}' /proc/meminfo)
rtype=$(root_type)

echo "GOVMM_INIT_OK"
echo "GOVMM_KERNEL=$release"
echo "GOVMM_CPUS=$cpus"
echo "GOVMM_ROOTFS=$rtype"
plural=""; [ "$cpus" -eq 1 ] || plural="s"
echo "Hello from the guest's userspace: Linux $release, $cpus CPU$plural, $mem of memory"

# govmm.run: what tests and benchmarks run inside the guest.
if [ -n "$run" ]; then
  case "$run" in
    /*) script=$run ;;
    *)  script=/govmm-tests/$run ;;
  esac
  if [ -b "$script" ]; then
    tr -d '\000' <"$script" >/tmp/govmm-run.sh
    script=/tmp/govmm-run.sh
  fi
  if [ -f "$script" ]; then
    (cd / && sh "$script" </dev/null)
    status=$?
  else
    echo "govmm-init: govmm.run=$run: no script $script"
    status=127
  fi
  echo "GOVMM_RUN_STATUS=$status"
fi

if [ "$action" = shell ]; then
  # setsid + cttyhack give the shell a controlling tty, so job control
  # and ^C work.
  setsid cttyhack sh
  action=poweroff
fi
sync
# A disk root goes read-only first: that writes back everything and leaves
# the file system clean, so the host can read the image right away (debugfs
# does not replay a journal).
[ "$rtype" = rootfs ] || mount -o remount,ro / 2>/dev/null
echo "GOVMM_ACTION=$action"
"$action" -f
# Not reached unless running the applet failed. Exiting makes the kernel
# panic, which with panic=-1 resets the machine: the VMM notices either way.
exit 1
EOF
  chmod 755 "$file"
}

# write_etc DIR — minimal identity files: some programs (and Go's os/user)
# look them up.
write_etc() {
  mkdir -p "$1/etc"
  echo 'root:x:0:0:root:/root:/bin/sh' >"$1/etc/passwd"
  echo 'root:x:0:' >"$1/etc/group"
}

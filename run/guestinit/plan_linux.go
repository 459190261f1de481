//go:build linux

package guestinit

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// newRootDir is where the init mounts the command's root before
// switching to it. Any empty directory of the initramfs would do; the
// name is the one the kernel's documentation uses
// (Documentation/filesystems/ramfs-rootfs-initramfs.rst).
const newRootDir = "/newroot"

// ninePOptions are the mount options of every 9p file system
// (Documentation/filesystems/9p.rst):
//
//   - trans=virtio: reach the server over a virtio-9p device, the one
//     whose mount tag is the mount's source;
//   - version=9p2000.L: the Linux dialect, with Linux's file modes, owners,
//     symlinks and device nodes — what govmm's 9p server speaks;
//   - msize=512000: up to 500 KiB per message, the most the virtio
//     transport takes (PAGE_SIZE * (VIRTQUEUE_NUM - 3) in
//     net/9p/trans_virtio.c); the default of 8 KiB makes big reads slow;
//   - cache=loose: cache data and metadata in the guest. The document
//     says it is "intended for exclusive, read-only mounts": the host
//     must not change the files while the VM runs, which holds for a
//     CI job;
//   - access=client: the guest checks permissions itself, with its own
//     user ids, as on a local disk.
const ninePOptions = "trans=virtio,version=9p2000.L,msize=512000,cache=loose,access=client"

// tmpfsOptions gives a tmpfs the mode of /tmp (tmpfs(5)): anyone may
// create files (0777), only a file's owner may delete it (the sticky
// bit, 01000).
const tmpfsOptions = "mode=1777"

// devptsOptions make pseudo-terminals usable by anyone: new terminals
// get mode 0620, and the pts/ptmx multiplexer mode 0666, which
// Documentation/filesystems/devpts.rst asks for when /dev/ptmx may be a
// link to it. (systemd also passes gid=5, the tty group, which a guest
// root may not have.)
const devptsOptions = "mode=0620,ptmxmode=0666"

// onMissingDir says what happens when a mount point does not exist and
// cannot be created (typically because it would be in a read-only root).
type onMissingDir int

const (
	// failIfNoDir makes it an init error.
	failIfNoDir onMissingDir = iota
	// skipIfNoDir logs it and skips the mount.
	skipIfNoDir
)

// mountStep is one mount(2) of the init's plan.
type mountStep struct {
	what   string  // names the mount in messages: `the root`, `share "src"`
	path   string  // the mount point as the command will see it
	source string  // mount(2)'s source: a device, a 9p tag, or a mount to move
	target string  // the mount point in the init's root (under newRootDir)
	fstype string  // "" for a move
	flags  uintptr // MS_* flags
	data   string  // file system options

	// onMissing says what happens when target cannot be created.
	onMissing onMissingDir
	// optional mounts are nice to have: a failure is logged and the
	// init goes on.
	optional bool
	// waitSource polls for source, a device node, before mounting.
	waitSource bool
	// retryNoEnt retries the mount while it fails with ENOENT: a 9p
	// mount does when no virtio-9p device has the tag yet.
	retryNoEnt bool
}

// earlyMounts are the kernel's own file systems, mounted first in the
// initramfs. devtmpfs is a /dev that the kernel fills with a node for
// every device it knows (drivers/base/Kconfig, DEVTMPFS): the init needs
// it to open the ports and the root disk, with no udev to make nodes.
// /proc is procfs (Documentation/filesystems/proc.rst) and /sys is sysfs
// (Documentation/filesystems/sysfs.rst), which holds the port names. The
// flags are the usual ones: no set-user-ID programs, and no device nodes
// or programs where none belong.
func earlyMounts() []mountStep {
	return []mountStep{
		{what: "devtmpfs", path: "/dev", source: "devtmpfs", target: "/dev", fstype: "devtmpfs",
			flags: unix.MS_NOSUID},
		{what: "proc", path: "/proc", source: "proc", target: "/proc", fstype: "proc",
			flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{what: "sysfs", path: "/sys", source: "sysfs", target: "/sys", fstype: "sysfs",
			flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	}
}

// planMounts returns the mounts that give the command its file system,
// in order, and the directory to switch root to ("" to stay in the
// initramfs):
//
//  1. the root (cfg.Root) on newRootDir;
//  2. /dev, /proc and /sys moved from the initramfs into the new root
//     (MS_MOVE, as switch_root does), so the command sees the same
//     devices and kernel views the init set up;
//  3. devpts on /dev/pts and a tmpfs on /dev/shm, optional;
//  4. the tmpfs directories and the shares, a parent before anything
//     under it (shallower paths first) and otherwise tmpfs before shares
//     in the config's order, so no mount hides another: a share at
//     /tmp/x goes on top of the tmpfs at /tmp, not under it.
func planMounts(cfg *wire.Config) (steps []mountStep, newRoot string) {
	if r := cfg.Root; r != nil {
		newRoot = newRootDir
		root := mountStep{what: "the root", path: "/", target: newRootDir, source: r.Source}
		switch r.Kind {
		case wire.Root9P:
			root.fstype = "9p"
			root.data = ninePOptions
			root.retryNoEnt = true
		case wire.RootBlock:
			root.fstype = r.FSType
			if root.fstype == "" {
				root.fstype = wire.DefaultBlockFSType
			}
			root.waitSource = true
		}
		if r.ReadOnly {
			root.flags |= unix.MS_RDONLY
		}
		steps = append(steps, root)
		for _, m := range earlyMounts() {
			// A root without the directory (and read-only, so
			// it cannot be made) still works for many commands;
			// skip the move with a log line.
			steps = append(steps, mountStep{what: m.path, path: m.path, source: m.target,
				target: newRootDir + m.path, flags: unix.MS_MOVE, onMissing: skipIfNoDir})
		}
	}
	steps = append(steps,
		mountStep{what: "devpts", path: "/dev/pts", source: "devpts", target: newRoot + "/dev/pts",
			fstype: "devpts", flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: devptsOptions, optional: true},
		mountStep{what: "/dev/shm", path: "/dev/shm", source: "tmpfs", target: newRoot + "/dev/shm",
			fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: tmpfsOptions, optional: true},
	)

	var user []mountStep
	for _, p := range cfg.Tmpfs {
		// A tmpfs dir missing from a read-only root is skipped:
		// the command may not need it.
		user = append(user, mountStep{what: "tmpfs " + p, path: p, source: "tmpfs", target: newRoot + p,
			fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: tmpfsOptions, onMissing: skipIfNoDir})
	}
	for _, s := range cfg.Shares {
		// A share the root has no room for is an error: the
		// user asked for the files to be there.
		m := mountStep{what: fmt.Sprintf("the share for %s (tag %q)", s.Path, s.Tag), path: s.Path, source: s.Tag, target: newRoot + s.Path,
			fstype: "9p", data: ninePOptions, onMissing: failIfNoDir, retryNoEnt: true}
		if s.ReadOnly {
			m.flags |= unix.MS_RDONLY
		}
		user = append(user, m)
	}
	// Stable, so that mounts at one depth keep the config's order.
	sort.SliceStable(user, func(i, j int) bool { return depth(user[i].path) < depth(user[j].path) })
	return append(steps, user...), newRoot
}

// depth is the number of components of a clean absolute path: 1 for
// /tmp, 2 for /tmp/x. A mount point's ancestors all have smaller depths.
func depth(p string) int { return strings.Count(p, "/") }

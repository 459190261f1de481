// Package p9 shares a host directory with the guest over virtio-9p: the
// virtio 9P transport (device ID 9) carrying the 9P2000.L file protocol,
// which Linux's v9fs mounts. It is what `govmm run --rootfs /` (the
// host's own userspace as the guest's root, read-only, in the style of
// virtme) and `--share DIR[:ro]` are built on.
//
// # The guest side
//
// Debian's generic kernel has the client as modules (9p, 9pnet,
// 9pnet_virtio), so an initramfs loads them and mounts:
//
//	mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose TAG /mnt
//
// TAG is the device's mount tag (Options.Tag), which Linux reads from the
// configuration space and also shows in /sys/bus/virtio/drivers/9pnet_virtio/
// virtio*/mount_tag. msize=512000 is the largest message Linux's virtio
// transport supports with 4 KiB pages (PAGE_SIZE × (VIRTQUEUE_NUM - 3),
// net/9p/trans_virtio.c); the default of 128 KiB works but makes large
// reads and writes take four times as many requests. cache=loose lets the
// guest cache data and metadata, which is right for a share that only the
// guest changes and for a read-only root; cache=mmap (or none, the
// default) suits a share that the host changes too.
//
// # Messages
//
// The Server speaks 9P2000.L (diod's protocol.md describes it; Linux's
// net/9p/client.c is what a guest sends): Tversion, Tattach, Twalk,
// Tgetattr, Tsetattr, Tlopen, Tlcreate, Tread, Twrite, Treaddir, Tclunk,
// Tremove, Tunlinkat, Tmkdir, Tsymlink, Treadlink, Tlink, Trename,
// Trenameat, Tstatfs, Tfsync, Tmknod (regular files, FIFOs and sockets;
// device nodes are refused), Tlock and Tgetlock (locks stay in the guest,
// as with QEMU), and Tflush. Txattrwalk and Txattrcreate answer
// EOPNOTSUPP: there are no extended attributes, hence no ACLs or security
// labels. Tauth and the 9P2000 and 9P2000.u messages (Topen, Tcreate,
// Tstat, Twstat) answer EOPNOTSUPP too. Errors go back as Rlerror with the
// Linux errno of the failed system call.
//
// Files are read and written with govmm's credentials, whichever guest
// user asks; files the guest creates belong to govmm's user (like QEMU's
// security_model=none).
//
// # Confinement
//
// The guest must never reach a file outside the share, whatever it sends.
// The server holds every file as an O_PATH descriptor (each fid has one),
// and every operation is relative to one, one name at a time:
//
//   - Twalk resolves each name with openat2(2) from the directory's
//     descriptor, with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//     RESOLVE_NO_MAGICLINKS and O_NOFOLLOW, so a symlink yields the symlink
//     itself, which the guest reads with Treadlink and follows in its own
//     namespace; the server never follows one. Without openat2 (Linux
//     before 5.6, or a seccomp filter) the lookup is openat(2) with
//     O_NOFOLLOW of a single name, which cannot leave the directory either.
//   - Names are checked before use: a name in a walk or a creating message
//     with "/" or NUL, or "." or ".." where a new entry is named, is
//     refused with EINVAL. ".." in a walk goes to the parent by resolving
//     the parent's path from the share's root again, and ".." of the root
//     is the root (intro(5)).
//   - Tlopen reopens the fid's own descriptor through /proc/self/fd, so the
//     file opened is the one the walk found even if its name has been
//     replaced since (by a symlink to /etc/shadow, say); only regular files
//     and directories are opened. Tlcreate opens with O_CREAT|O_NOFOLLOW,
//     so it never creates a file through a symlink. Tsetattr works through
//     the descriptor too (fchownat with AT_EMPTY_PATH, chmod and utimensat
//     through /proc/self/fd).
//   - Trename and Tremove, which Linux only uses when Trenameat and
//     Tunlinkat fail, name a file by its fid alone; the server finds its
//     directory by the path it was walked by, and checks that the name
//     there is still the same file.
//   - Kernel pseudo file systems (proc, sysfs, debugfs, cgroup, ...) are
//     opaque: a share of "/" contains the host's /proc, and
//     /proc/<pid>/mem of govmm is guest RAM and more. The guest may walk to
//     such a mount point (it mounts its own proc there) but not into it;
//     its directory reads as empty.
//   - A read-only share refuses every modifying message with EROFS and
//     opens files for reading only.
//   - Guest-provided counts never size an allocation: messages are limited
//     to msize (at most MaxMsize), a walk to MaxWalkElements names, a
//     session to MaxFids fids, and Rread and Rreaddir to the buffers the
//     guest provided.
//
// # Data path
//
// Tread and Twrite move data between the file and the descriptor chain's
// buffers, which are guest RAM, with one preadv(2) or pwritev(2); the
// kernel's copy to or from the page cache is the only one. Linux sends
// large reads and writes as "zero-copy" requests whose data pages are
// separate descriptors (p9_virtio_zc_request), so the data never passes
// through a bounce buffer on either side.
package p9

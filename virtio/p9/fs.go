package p9

import (
	"errors"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// This file is the part of the server that touches the host's file
// system: resolving names inside the share, reopening files, and turning
// stat(2) results into qids. Every path operation is relative to a
// descriptor inside the share, and only ever one name long; see the package
// documentation for why that keeps the guest inside the share.

// node is a file of the share as the server holds it: an O_PATH descriptor
// (open(2): "Obtain a file descriptor that can be used for two purposes: to
// indicate a location in the filesystem tree and to perform operations that
// act purely at the file descriptor level"), which pins the file itself
// rather than a name for it, and what the server needs to know about it.
type node struct {
	fd     int    // O_PATH|O_NOFOLLOW descriptor; owned by whoever holds the node
	path   string // names from the root, joined by "/"; "" for the root
	mode   uint32 // the file type bits of st_mode (S_IFMT), fixed for an inode
	dev    uint64 // st_dev
	ino    uint64 // st_ino
	opaque bool   // on a pseudo file system: see isPseudoFS
}

func (n *node) isDir() bool     { return n.mode == unix.S_IFDIR }
func (n *node) isReg() bool     { return n.mode == unix.S_IFREG }
func (n *node) isSymlink() bool { return n.mode == unix.S_IFLNK }

// pseudoFS are the file systems that govmm never lets a guest into, by
// their statfs(2) f_type (include/uapi/linux/magic.h). They are the
// kernel's windows onto the host itself rather than storage: a share of
// the host's "/" (govmm run --rootfs /) contains the host's /proc, /sys and
// /sys/kernel/debug as mount points, and /proc/<govmm's pid>/mem is
// govmm's own memory, guest RAM included. The guest mounts its own proc and
// sysfs over those directories; it needs only to find the directories.
var pseudoFS = map[int64]string{
	unix.PROC_SUPER_MAGIC:    "proc",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.CGROUP_SUPER_MAGIC:  "cgroup",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2",
	unix.BPF_FS_MAGIC:        "bpf",
	unix.PSTOREFS_MAGIC:      "pstore",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	unix.BINFMTFS_MAGIC:      "binfmt_misc",
	unix.SELINUX_MAGIC:       "selinuxfs",
	unix.SMACK_MAGIC:         "smackfs",
	unix.DEVPTS_SUPER_MAGIC:  "devpts",
	unix.NSFS_MAGIC:          "nsfs",
	configfsMagic:            "configfs",
	fusectlMagic:             "fusectl",
}

// Magic numbers x/sys/unix does not name (include/uapi/linux/magic.h).
const (
	configfsMagic = 0x62656570 // CONFIGFS_MAGIC
	fusectlMagic  = 0x65735543 // FUSE_CTL_SUPER_MAGIC
)

// isPseudoFS reports whether the file fd refers to lies on one of the
// pseudoFS file systems.
func isPseudoFS(fd int) (bool, error) {
	var sf unix.Statfs_t
	if err := unix.Fstatfs(fd, &sf); err != nil {
		return false, err
	}
	_, ok := pseudoFS[int64(sf.Type)]
	return ok, nil
}

// fstat stats the file fd refers to, which may be an O_PATH descriptor of
// a symlink: fstatat(fd, "", AT_EMPTY_PATH|AT_SYMLINK_NOFOLLOW).
func fstat(fd int, st *unix.Stat_t) error {
	return unix.Fstatat(fd, "", st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// pathFlags are the flags of every O_PATH descriptor the server opens: the
// final component is never followed if it is a symlink, so a node for a
// symlink is the symlink itself.
const pathFlags = unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC

// resolveFlags are the openat2(2) resolve flags of every lookup. The
// server looks up one name at a time, which it has checked holds no "/"
// and is not "." or "..", so the lookup cannot leave the directory it
// starts from in any case; RESOLVE_BENEATH ("Do not permit the path
// resolution to succeed if any component of the resolution is not a
// descendant of the directory indicated by dirfd") and RESOLVE_NO_SYMLINKS
// make the kernel enforce it as well, and RESOLVE_NO_MAGICLINKS refuses
// /proc/self/fd-style links (implied by NO_SYMLINKS; named for the reader).
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// lookup opens name in the directory dirfd as an O_PATH descriptor without
// following it. name must be a checked name (checkName).
func (s *Server) lookup(dirfd int, name string) (int, error) {
	if s.openat2 {
		for {
			fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{Flags: pathFlags, Resolve: resolveFlags})
			if err != unix.EINTR && err != unix.EAGAIN {
				// EAGAIN: openat2 with RESOLVE_BENEATH retries a
				// lookup that raced with a rename elsewhere.
				return fd, err
			}
		}
	}
	// Without openat2 (Linux before 5.6, or a seccomp filter that
	// refuses it), the same one-name lookup with O_NOFOLLOW: a single
	// component that is neither "." nor ".." names an entry of dirfd
	// itself, and O_NOFOLLOW keeps it from being followed if it is a
	// symlink.
	for {
		fd, err := unix.Openat(dirfd, name, pathFlags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// probeOpenat2 reports whether openat2(2) works here.
func probeOpenat2(dirfd int) bool {
	fd, err := unix.Openat2(dirfd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveFlags})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// walkOne resolves name from the directory dir and returns the new node,
// which the caller owns, and its qid. ".." goes to the parent by resolving
// the parent's path from the root again (openat2 from dir itself would
// rightly refuse it), and ".." of the root is the root, as walk(5)
// requires: "the name '..' ... represents the parent directory ... The
// name '..' of the root directory is the root itself" (intro(5)).
func (s *Server) walkOne(dir *node, name string) (*node, Qid, error) {
	var n *node
	var err error
	switch {
	case name == ".":
		// Not produced by Linux, but harmless: the directory itself.
		n, err = s.dupNode(dir)
	case name == "..":
		parent, _ := splitPath(dir.path)
		n, err = s.resolve(parent)
	default:
		return s.lookupChild(dir, name)
	}
	if err != nil {
		return nil, Qid{}, err
	}
	q, err := s.nodeQid(n)
	if err != nil {
		unix.Close(n.fd)
		return nil, Qid{}, err
	}
	return n, q, nil
}

// lookupChild opens the entry name of the directory dir.
func (s *Server) lookupChild(dir *node, name string) (*node, Qid, error) {
	if err := checkWalkName(name); err != nil {
		return nil, Qid{}, err
	}
	if !dir.isDir() {
		return nil, Qid{}, unix.ENOTDIR
	}
	if dir.opaque {
		return nil, Qid{}, unix.EACCES
	}
	fd, err := s.lookup(dir.fd, name)
	if err != nil {
		return nil, Qid{}, err
	}
	n := &node{fd: fd, path: joinPath(dir.path, name)}
	q, err := s.fill(n, dir.dev)
	if err != nil {
		unix.Close(fd)
		return nil, Qid{}, err
	}
	return n, q, nil
}

// fill sets n's type and identity from its descriptor, marks it opaque if
// it is on a pseudo file system, and returns its qid. parentDev is the
// device of the directory it was found in: a file on the same device as
// its directory is on the same file system, so only a mount point needs
// the statfs.
func (s *Server) fill(n *node, parentDev uint64) (Qid, error) {
	var st unix.Stat_t
	if err := fstat(n.fd, &st); err != nil {
		return Qid{}, err
	}
	n.mode = st.Mode & unix.S_IFMT
	n.dev = st.Dev
	n.ino = st.Ino
	if st.Dev != parentDev {
		pseudo, err := isPseudoFS(n.fd)
		if err != nil {
			return Qid{}, err
		}
		n.opaque = pseudo
	}
	return s.qid(&st), nil
}

// resolve walks path from the root, one checked name at a time, and
// returns its node, which the caller owns.
func (s *Server) resolve(path string) (*node, error) {
	cur, err := s.dupNode(&s.root)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return cur, nil
	}
	for name := range strings.SplitSeq(path, "/") {
		next, _, err := s.lookupChild(cur, name)
		unix.Close(cur.fd)
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// dupNode returns a copy of n with a descriptor of its own.
func (s *Server) dupNode(n *node) (*node, error) {
	fd, err := unix.FcntlInt(uintptr(n.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	c := *n
	c.fd = fd
	return &c, nil
}

// parentOf opens the directory that holds n under n's name and checks that
// the name still refers to n's file. Trename and Tremove, which name a
// file by its fid alone, use it; the guest may have renamed the file or a
// directory above it since it walked there (the server does not track
// renames), in which case the name is stale and the operation fails with
// ESTALE. The check makes sure the server never renames or removes a file
// the guest did not name; a file replaced by another process between the
// check and the operation is inside the share in any case.
func (s *Server) parentOf(n *node) (*node, string, error) {
	if n.path == "" {
		return nil, "", unix.EBUSY // the root of the share
	}
	dirPath, name := splitPath(n.path)
	dir, err := s.resolve(dirPath)
	if err != nil {
		return nil, "", err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Dev != n.dev || st.Ino != n.ino {
		unix.Close(dir.fd)
		return nil, "", unix.ESTALE
	}
	return dir, name, nil
}

// procName is the name of descriptor fd in /proc/self/fd, which s.procFD
// refers to. Opening /proc/self/fd/N reopens exactly the file descriptor
// N refers to (proc(5): "this is a symbolic link to the actual file"; for
// an O_PATH descriptor, the way to turn it into an open file), so no name
// in the share is looked up again and nothing can be swapped in between.
func procName(fd int) string { return strconv.Itoa(fd) }

// reopen opens the file of n, whose type the caller has checked is a
// regular file or a directory, with flags (O_CLOEXEC is added).
func (s *Server) reopen(n *node, flags int) (int, error) {
	for {
		fd, err := unix.Openat(s.procFD, procName(n.fd), flags|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// qid makes the qid of a file from its stat(2) result.
//
// The path must be unique among all files of the share, which may span
// several file systems (a share of "/" does), each numbering its inodes
// from 1. Files on the share root's own file system use the inode number
// as is; other file systems get a number of their own in the top 16 bits,
// XORed into the inode number. This is the idea of QEMU's "multidevs=remap"
// (hw/9pfs/9p.c, qid_path_prefixmap) in its simplest form: it keeps inodes
// of different file systems apart unless a file system uses inode numbers
// of 48 bits or more.
//
// The version follows QEMU's stat_to_qid (hw/9pfs/9p.c): "qidp->version =
// stbuf->st_mtime ^ (stbuf->st_size << 8)", so it changes when the file is
// written.
func (s *Server) qid(st *unix.Stat_t) Qid {
	return Qid{
		Type:    qidType(st.Mode & unix.S_IFMT),
		Version: uint32(uint64(st.Mtim.Sec) ^ uint64(st.Size)<<8),
		Path:    s.qidPath(st.Dev, st.Ino),
	}
}

// devShift is where qidPath puts the file system's number.
const devShift = 48

// maxDevices bounds the file systems that get a number of their own; more
// share the last number (the guest may then see two files with one inode
// number, never a file outside the share).
const maxDevices = 1<<(64-devShift) - 1

func (s *Server) qidPath(dev, ino uint64) uint64 {
	if dev == s.root.dev {
		return ino
	}
	s.devMu.Lock()
	idx, ok := s.devIndex[dev]
	if !ok {
		idx = uint64(len(s.devIndex)) + 1
		if idx > maxDevices {
			idx = maxDevices
		} else {
			s.devIndex[dev] = idx
		}
	}
	s.devMu.Unlock()
	return ino ^ idx<<devShift
}

// qidType is the qid type of a file of type mode (S_IFMT bits).
func qidType(mode uint32) uint8 {
	switch mode {
	case unix.S_IFDIR:
		return P9_QTDIR
	case unix.S_IFLNK:
		return P9_QTSYMLINK
	}
	return P9_QTFILE
}

// nodeQid stats n and returns its qid.
func (s *Server) nodeQid(n *node) (Qid, error) {
	var st unix.Stat_t
	if err := fstat(n.fd, &st); err != nil {
		return Qid{}, err
	}
	return s.qid(&st), nil
}

// checkName checks a name that a creating message (Tlcreate, Tmkdir,
// Tsymlink, Tmknod, Tlink, Trename, Trenameat) or Tunlinkat gives: one
// path component, which names an entry of the directory fid. "." and ".."
// name the directory itself and its parent, and "/" would make the name a
// path; all are refused, as are the empty name, NUL (which would cut the
// name short in the system call) and names longer than NAME_MAX.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return unix.EINVAL
	case len(name) > maxNameLen:
		return unix.ENAMETOOLONG
	case strings.ContainsAny(name, "/\x00"):
		return unix.EINVAL
	}
	return nil
}

// checkWalkName checks a Twalk name other than "." and "..".
func checkWalkName(name string) error { return checkName(name) }

// splitPath splits a node path into its directory's path and its name.
func splitPath(path string) (dir, name string) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return "", path
	}
	return path[:i], path[i+1:]
}

// joinPath appends name to a node path.
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// errno returns the Linux error number for err, which Rlerror carries
// (9P2000.L: "Rlerror ... ecode is a Linux errno"). The unix package's
// Errno values are Linux's own numbers. Anything else is EIO.
func errno(err error) unix.Errno {
	var e unix.Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	return unix.EIO
}

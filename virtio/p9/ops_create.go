package p9

import (
	"strings"

	"golang.org/x/sys/unix"
)

// The messages that create, rename and remove directory entries. Each
// names the entry by a directory fid and one name, which checkName has
// approved, and works relative to the directory's descriptor: the name
// cannot lead anywhere but into that directory, and a symlink of that
// name is never followed.

// lcreate: size[4] Tlcreate tag[2] fid[4] name[s] flags[4] mode[4] gid[4]
// → size[4] Rlcreate tag[2] qid[13] iounit[4]
//
// Creates and opens a regular file name in the directory fid; fid then
// refers to the new file, open. The file is created with O_NOFOLLOW, so a
// symlink of that name (pointing anywhere) is never followed to create its
// target, and O_NONBLOCK, so that an existing FIFO of that name (without
// O_EXCL) cannot block the server; anything but a regular file is refused
// after the open. The file belongs to govmm's user: gid is ignored.
func (c *call) lcreate() error {
	id := c.d.u32()
	name := c.d.str()
	flags := c.d.u32()
	mode := c.d.u32()
	_ = c.d.u32() // gid
	if c.malformed() {
		return unix.EINVAL
	}
	if err := c.modifies(); err != nil {
		return err
	}
	if err := checkName(name); err != nil {
		return err
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	dir := f.currentNode()
	if err := checkDir(&dir); err != nil {
		return err
	}
	o, err := openFlags(flags)
	if err != nil {
		return err
	}
	o |= unix.O_CREAT | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if flags&P9_DOTL_EXCL != 0 {
		o |= unix.O_EXCL
	}
	fd, err := openat(dir.fd, name, o, mode&0o7777)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return unix.EISDIR
		}
		return unix.EPERM
	}
	// Back to blocking I/O: F_SETFL changes only the status flags.
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err == nil {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	}
	var pathFD int
	if err == nil {
		// The new fid's node: another descriptor of the same open file.
		pathFD, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	}
	if err != nil {
		unix.Close(fd)
		return err
	}
	nf := newFid(&node{
		fd:   pathFD,
		path: joinPath(dir.path, name),
		mode: unix.S_IFREG,
		dev:  st.Dev,
		ino:  st.Ino,
	})
	nf.file = fd
	nf.fileFlags = o &^ (unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC)
	c.s.replaceFid(id, nf)
	c.r.qid(c.s.qid(&st))
	c.r.u32(0) // iounit
	return nil
}

// checkDir checks that n is a directory the guest may create in.
func checkDir(n *node) error {
	switch {
	case !n.isDir():
		return unix.ENOTDIR
	case n.opaque:
		return unix.EACCES
	}
	return nil
}

// dirChild opens fid id, which must be a directory the guest may create
// in, and checks name, for the creating messages. The caller releases
// the fid.
func (c *call) dirChild(id uint32, name string) (*fid, node, error) {
	if err := c.modifies(); err != nil {
		return nil, node{}, err
	}
	if err := checkName(name); err != nil {
		return nil, node{}, err
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return nil, node{}, err
	}
	dir := f.currentNode()
	if err := checkDir(&dir); err != nil {
		f.release()
		return nil, node{}, err
	}
	return f, dir, nil
}

// childQid encodes the qid of name in the directory dir, which the caller
// has just created.
func (c *call) childQid(dir *node, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dir.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	c.r.qid(c.s.qid(&st))
	return nil
}

// mkdir: size[4] Tmkdir tag[2] dfid[4] name[s] mode[4] gid[4]
// → size[4] Rmkdir tag[2] qid[13]
func (c *call) mkdir() error {
	id := c.d.u32()
	name := c.d.str()
	mode := c.d.u32()
	_ = c.d.u32() // gid
	if c.malformed() {
		return unix.EINVAL
	}
	f, dir, err := c.dirChild(id, name)
	if err != nil {
		return err
	}
	defer f.release()
	if err := unix.Mkdirat(dir.fd, name, mode&0o7777); err != nil {
		return err
	}
	return c.childQid(&dir, name)
}

// symlink: size[4] Tsymlink tag[2] fid[4] name[s] symtgt[s] gid[4]
// → size[4] Rsymlink tag[2] qid[13]
//
// The target is stored as given: it may point anywhere, because the
// server never follows a symlink. The guest does, in its own namespace.
func (c *call) symlink() error {
	id := c.d.u32()
	name := c.d.str()
	target := c.d.str()
	_ = c.d.u32() // gid
	if c.malformed() {
		return unix.EINVAL
	}
	switch {
	case target == "":
		return unix.ENOENT // symlink(2) refuses an empty target
	case len(target) > maxSymlinkLen:
		return unix.ENAMETOOLONG
	case strings.IndexByte(target, 0) >= 0:
		return unix.EINVAL
	}
	f, dir, err := c.dirChild(id, name)
	if err != nil {
		return err
	}
	defer f.release()
	if err := unix.Symlinkat(target, dir.fd, name); err != nil {
		return err
	}
	return c.childQid(&dir, name)
}

// mknod: size[4] Tmknod tag[2] dfid[4] name[s] mode[4] major[4] minor[4]
// gid[4] → size[4] Rmknod tag[2] qid[13]
//
// Regular files, FIFOs and sockets may be made: the guest serves FIFOs
// and sockets on a 9p mount itself, and the server never opens them.
// Device nodes are refused with EPERM, as for an unprivileged user: a
// device node made by the guest would give whoever can reach the share on
// the host a way to the device.
func (c *call) mknod() error {
	id := c.d.u32()
	name := c.d.str()
	mode := c.d.u32()
	_ = c.d.u32() // major
	_ = c.d.u32() // minor
	_ = c.d.u32() // gid
	if c.malformed() {
		return unix.EINVAL
	}
	switch mode & unix.S_IFMT {
	case 0: // mknod(2): "Zero file type is equivalent to type S_IFREG"
		mode |= unix.S_IFREG
	case unix.S_IFREG, unix.S_IFIFO, unix.S_IFSOCK:
	default:
		if c.s.readOnly {
			return unix.EROFS
		}
		return unix.EPERM
	}
	f, dir, err := c.dirChild(id, name)
	if err != nil {
		return err
	}
	defer f.release()
	if err := unix.Mknodat(dir.fd, name, mode&(unix.S_IFMT|0o7777), 0); err != nil {
		return err
	}
	return c.childQid(&dir, name)
}

// link: size[4] Tlink tag[2] dfid[4] fid[4] name[s] → size[4] Rlink tag[2]
//
// Makes name in the directory dfid another link to the file fid. The
// link is made from the fid's descriptor through /proc/self/fd
// (linkat(2) with AT_SYMLINK_FOLLOW, as open(2) shows for O_TMPFILE:
// AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH).
func (c *call) link() error {
	dirID := c.d.u32()
	id := c.d.u32()
	name := c.d.str()
	if c.malformed() {
		return unix.EINVAL
	}
	d, dir, err := c.dirChild(dirID, name)
	if err != nil {
		return err
	}
	defer d.release()
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	switch {
	case f.isDir():
		return unix.EPERM // link(2): no hard links to directories
	case f.opaque:
		return unix.EACCES
	}
	return unix.Linkat(c.s.procFD, procName(f.fd), dir.fd, name, unix.AT_SYMLINK_FOLLOW)
}

// rename: size[4] Trename tag[2] fid[4] dfid[4] name[s] → size[4] Rrename tag[2]
//
// Moves the file fid to name in the directory dfid. Linux uses Trenameat
// and falls back to this only if the server lacks it; the file's old name
// comes from the path the fid was walked by (see parentOf).
func (c *call) rename() error {
	id := c.d.u32()
	dirID := c.d.u32()
	name := c.d.str()
	if c.malformed() {
		return unix.EINVAL
	}
	d, dir, err := c.dirChild(dirID, name)
	if err != nil {
		return err
	}
	defer d.release()
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	n := f.currentNode()
	old, oldName, err := c.s.parentOf(&n)
	if err != nil {
		return err
	}
	defer unix.Close(old.fd)
	if old.opaque {
		return unix.EACCES
	}
	if err := unix.Renameat(old.fd, oldName, dir.fd, name); err != nil {
		return err
	}
	f.mu.Lock()
	f.path = joinPath(dir.path, name)
	f.mu.Unlock()
	return nil
}

// renameat: size[4] Trenameat tag[2] olddirfid[4] oldname[s] newdirfid[4]
// newname[s] → size[4] Rrenameat tag[2]
func (c *call) renameat() error {
	oldID := c.d.u32()
	oldName := c.d.str()
	newID := c.d.u32()
	newName := c.d.str()
	if c.malformed() {
		return unix.EINVAL
	}
	o, oldDir, err := c.dirChild(oldID, oldName)
	if err != nil {
		return err
	}
	defer o.release()
	n, newDir, err := c.dirChild(newID, newName)
	if err != nil {
		return err
	}
	defer n.release()
	return unix.Renameat(oldDir.fd, oldName, newDir.fd, newName)
}

// unlinkat: size[4] Tunlinkat tag[2] dirfd[4] name[s] flags[4]
// → size[4] Runlinkat tag[2]
//
// flags may hold P9_DOTL_AT_REMOVEDIR, which removes a directory
// (unlinkat(2)'s AT_REMOVEDIR); other flags are refused, as QEMU does.
func (c *call) unlinkat() error {
	id := c.d.u32()
	name := c.d.str()
	flags := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	f, dir, err := c.dirChild(id, name)
	if err != nil {
		return err
	}
	defer f.release()
	if flags&^P9_DOTL_AT_REMOVEDIR != 0 {
		return unix.EINVAL
	}
	at := 0
	if flags&P9_DOTL_AT_REMOVEDIR != 0 {
		at = unix.AT_REMOVEDIR
	}
	return unix.Unlinkat(dir.fd, name, at)
}

// remove: size[4] Tremove tag[2] fid[4] → size[4] Rremove tag[2]
//
// Removes the file fid and clunks fid, even if the remove fails
// (remove(5)). Linux uses Tunlinkat instead; see rename for how the name
// is found.
func (c *call) remove() error {
	id := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer c.s.removeFid(id)
	defer f.release()
	if err := c.modifies(); err != nil {
		return err
	}
	n := f.currentNode()
	dir, name, err := c.s.parentOf(&n)
	if err != nil {
		return err
	}
	defer unix.Close(dir.fd)
	if dir.opaque {
		return unix.EACCES
	}
	at := 0
	if n.isDir() {
		at = unix.AT_REMOVEDIR
	}
	return unix.Unlinkat(dir.fd, name, at)
}

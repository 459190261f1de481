package p9

import (
	"math"
	"strings"

	"golang.org/x/sys/unix"
)

// The handlers of the T-messages, one per message type. Each decodes its
// fields from c.d, does its work and encodes the R-message's fields into
// c.r, or returns the error that becomes Rlerror. The wire formats are
// given above each handler as diod's protocol.md writes them; the Linux
// client's format strings (net/9p/client.c) say the same thing in the
// notation of net/9p/protocol.c (d = 4 bytes, q = 8, s = string, Q = qid).
var handlers [256]func(*call) error

func init() {
	handlers = [256]func(*call) error{
		Tversion:     (*call).version,
		Tattach:      (*call).attach,
		Tflush:       (*call).flush,
		Twalk:        (*call).walk,
		Tread:        (*call).read,
		Twrite:       (*call).write,
		Tclunk:       (*call).clunk,
		Tremove:      (*call).remove,
		Tstatfs:      (*call).statfs,
		Tlopen:       (*call).lopen,
		Tlcreate:     (*call).lcreate,
		Tsymlink:     (*call).symlink,
		Tmknod:       (*call).mknod,
		Trename:      (*call).rename,
		Treadlink:    (*call).readlink,
		Tgetattr:     (*call).getattr,
		Tsetattr:     (*call).setattr,
		Txattrwalk:   (*call).xattrwalk,
		Txattrcreate: (*call).xattrcreate,
		Treaddir:     (*call).readdir,
		Tfsync:       (*call).fsync,
		Tlock:        (*call).lock,
		Tgetlock:     (*call).getlock,
		Tlink:        (*call).link,
		Tmkdir:       (*call).mkdir,
		Trenameat:    (*call).renameat,
		Tunlinkat:    (*call).unlinkat,
	}
}

// malformed reports a malformed message: fields missing from the body.
func (c *call) malformed() bool { return c.d.err }

// modifies refuses a modifying message on a read-only share.
func (c *call) modifies() error {
	if c.s.readOnly {
		return unix.EROFS
	}
	return nil
}

// version: size[4] Tversion tag[2] msize[4] version[s]
// → size[4] Rversion tag[2] msize[4] version[s]
//
// Tversion starts a new session: every fid of the old one is clunked
// (version(5)). msize is the largest message either side will send; the
// server answers with the client's msize or its own MaxMsize, whichever is
// smaller.
func (c *call) version() error {
	msize := c.d.u32()
	v := c.d.str()
	if c.malformed() {
		return unix.EINVAL
	}
	c.s.ResetSession()
	if msize < MinMsize {
		return unix.EINVAL
	}
	msize = min(msize, MaxMsize)
	c.s.msize.Store(msize)
	// version(5): a version string may carry a suffix after a period,
	// which the server may ignore.
	if v == Version || strings.HasPrefix(v, Version+".") {
		v = Version
	} else {
		v = VersionUnknown
	}
	c.r.u32(msize)
	c.r.str(v)
	return nil
}

// attach: size[4] Tattach tag[2] fid[4] afid[4] uname[s] aname[s] n_uname[4]
// → size[4] Rattach tag[2] qid[13]
//
// fid becomes the root of the share. The server asks for no
// authentication, so afid (NOFID from Linux) is ignored, and it serves one
// tree, so aname is too. uname and n_uname name the guest's user; files
// are accessed with govmm's own credentials whoever the guest user is.
func (c *call) attach() error {
	id := c.d.u32()
	_ = c.d.u32() // afid
	_ = c.d.str() // uname
	_ = c.d.str() // aname
	if c.malformed() {
		return unix.EINVAL
	}
	n, err := c.s.dupNode(&c.s.root)
	if err != nil {
		return err
	}
	q, err := c.s.nodeQid(n)
	if err != nil {
		unix.Close(n.fd)
		return err
	}
	if err := c.s.addFid(id, newFid(n)); err != nil {
		return err
	}
	c.r.qid(q)
	return nil
}

// flush: size[4] Tflush tag[2] oldtag[2] → size[4] Rflush tag[2]
//
// The server cannot interrupt a request in progress (a system call), so
// Rflush says only that the request with oldtag is over. The device makes
// sure the old request's reply reaches the guest before Rflush (see
// Device), which is what flush(5) asks and what Linux's virtio transport
// depends on.
func (c *call) flush() error {
	_ = c.d.u16() // oldtag
	if c.malformed() {
		return unix.EINVAL
	}
	return nil
}

// walk: size[4] Twalk tag[2] fid[4] newfid[4] nwname[2] nwname*(wname[s])
// → size[4] Rwalk tag[2] nwqid[2] nwqid*(wqid[13])
//
// newfid becomes the file reached from fid by the names, one directory
// level each (walk(5)). If the first name fails the reply is Rlerror; if a
// later one fails, Rwalk carries the qids of the names that worked and
// newfid is left alone. nwname 0 clones fid.
func (c *call) walk() error {
	id := c.d.u32()
	newID := c.d.u32()
	nwname := c.d.u16()
	if c.malformed() {
		return unix.EINVAL
	}
	if nwname > MaxWalkElements {
		return unix.EINVAL
	}
	var names [MaxWalkElements]string
	for i := range nwname {
		names[i] = c.d.str()
	}
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	if nwname == 0 && newID == id {
		c.r.u16(0) // fid walked nowhere: itself, unchanged
		return nil
	}

	start := f.currentNode() // borrows f's descriptor
	cur := &start
	var owned *node // the node of the last step, which this walk opened
	var qids [MaxWalkElements]Qid
	walked := 0
	for _, name := range names[:nwname] {
		next, q, err := c.s.walkOne(cur, name)
		if owned != nil {
			unix.Close(owned.fd)
			owned = nil
		}
		if err != nil {
			if walked == 0 {
				return err
			}
			break
		}
		owned, cur = next, next
		qids[walked] = q
		walked++
	}
	if walked == int(nwname) {
		if owned == nil { // nwname 0: a clone
			if owned, err = c.s.dupNode(&start); err != nil {
				return err
			}
		}
		nf := newFid(owned)
		if newID == id {
			c.s.replaceFid(id, nf)
		} else if err := c.s.addFid(newID, nf); err != nil {
			return err
		}
	}
	c.r.u16(uint16(walked))
	for _, q := range qids[:walked] {
		c.r.qid(q)
	}
	return nil
}

// getattr: size[4] Tgetattr tag[2] fid[4] request_mask[8]
// → size[4] Rgetattr tag[2] valid[8] qid[13] mode[4] uid[4] gid[4] nlink[8]
// rdev[8] size[8] blksize[8] blocks[8] atime_sec[8] atime_nsec[8]
// mtime_sec[8] mtime_nsec[8] ctime_sec[8] ctime_nsec[8] btime_sec[8]
// btime_nsec[8] gen[8] data_version[8]
//
// The server fills what stat(2) gives (P9_STATS_BASIC) whatever the mask
// asks; the guest looks at valid.
func (c *call) getattr() error {
	id := c.d.u32()
	_ = c.d.u64() // request_mask
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	var st unix.Stat_t
	if err := fstat(f.fd, &st); err != nil {
		return err
	}
	c.r.u64(P9_STATS_BASIC)
	c.r.qid(c.s.qid(&st))
	c.r.u32(st.Mode)
	c.r.u32(st.Uid)
	c.r.u32(st.Gid)
	c.r.u64(st.Nlink)
	c.r.u64(st.Rdev)
	c.r.u64(uint64(st.Size))
	c.r.u64(uint64(st.Blksize))
	c.r.u64(uint64(st.Blocks))
	c.r.u64(uint64(st.Atim.Sec))
	c.r.u64(uint64(st.Atim.Nsec))
	c.r.u64(uint64(st.Mtim.Sec))
	c.r.u64(uint64(st.Mtim.Nsec))
	c.r.u64(uint64(st.Ctim.Sec))
	c.r.u64(uint64(st.Ctim.Nsec))
	c.r.u64(0) // btime_sec: not in stat(2)
	c.r.u64(0) // btime_nsec
	c.r.u64(0) // gen
	c.r.u64(0) // data_version
	return nil
}

// setattr: size[4] Tsetattr tag[2] fid[4] valid[4] mode[4] uid[4] gid[4]
// size[8] atime_sec[8] atime_nsec[8] mtime_sec[8] mtime_nsec[8]
// → size[4] Rsetattr tag[2]
//
// valid says which of chmod, chown, truncate and utimes to do, in QEMU's
// order (hw/9pfs/9p.c, v9fs_setattr): mode, times, owner, size. Each goes
// through the fid's own descriptor, never through a name.
func (c *call) setattr() error {
	id := c.d.u32()
	valid := c.d.u32()
	mode := c.d.u32()
	uid := c.d.u32()
	gid := c.d.u32()
	size := c.d.u64()
	atime := unix.Timespec{Sec: int64(c.d.u64()), Nsec: int64(c.d.u64())}
	mtime := unix.Timespec{Sec: int64(c.d.u64()), Nsec: int64(c.d.u64())}
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	if valid&^P9_ATTR_CTIME == 0 {
		// Nothing to change: ctime moves by itself with any change.
		return nil
	}
	if err := c.modifies(); err != nil {
		return err
	}
	if f.opaque {
		return unix.EACCES
	}
	// /proc/self/fd/N, relative to s.procFD: the file N refers to, a
	// symlink included (the magic link resolves to the symlink itself,
	// not its target).
	self := procName(f.fd)
	if valid&P9_ATTR_MODE != 0 {
		if err := unix.Fchmodat(c.s.procFD, self, mode&0o7777, 0); err != nil {
			return err
		}
	}
	if valid&(P9_ATTR_ATIME|P9_ATTR_MTIME) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		for i, t := range []struct {
			change, set uint32
			to          unix.Timespec
		}{
			{P9_ATTR_ATIME, P9_ATTR_ATIME_SET, atime},
			{P9_ATTR_MTIME, P9_ATTR_MTIME_SET, mtime},
		} {
			switch {
			case valid&t.change == 0:
			case valid&t.set == 0:
				ts[i] = unix.Timespec{Nsec: unix.UTIME_NOW}
			case t.to.Nsec < 0 || t.to.Nsec >= 1e9:
				return unix.EINVAL
			default:
				ts[i] = t.to
			}
		}
		if err := unix.UtimesNanoAt(c.s.procFD, self, ts, 0); err != nil {
			return err
		}
	}
	if valid&(P9_ATTR_UID|P9_ATTR_GID) != 0 {
		u, g := -1, -1 // chown(2): -1 leaves it as it is
		if valid&P9_ATTR_UID != 0 {
			u = int(uid)
		}
		if valid&P9_ATTR_GID != 0 {
			g = int(gid)
		}
		if err := unix.Fchownat(f.fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	if valid&P9_ATTR_SIZE != 0 {
		return c.truncate(f, size)
	}
	return nil
}

// truncate sets the size of f's file, through its open descriptor if it is
// open for writing, else through one opened for the purpose.
func (c *call) truncate(f *fid, size uint64) error {
	switch {
	case f.isDir():
		return unix.EISDIR
	case !f.isReg():
		return unix.EINVAL
	case size > math.MaxInt64:
		return unix.EFBIG
	}
	if fd, flags, err := f.openFile(); err == nil && flags&unix.O_ACCMODE != unix.O_RDONLY {
		return retryEINTR(func() error { return unix.Ftruncate(fd, int64(size)) })
	}
	fd, err := c.s.reopen(&f.node, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return retryEINTR(func() error { return unix.Ftruncate(fd, int64(size)) })
}

// openFlags translates Tlopen and Tlcreate flags to open(2) flags. The
// server honours the access mode, O_TRUNC, O_APPEND and the O_SYNC family;
// the rest are the guest kernel's business (O_NONBLOCK, O_CLOEXEC,
// O_NOCTTY, O_LARGEFILE, FASYNC), would fail or are unsafe for a server
// (O_NOATIME needs ownership, O_DIRECT needs aligned buffers: QEMU drops
// both, hw/9pfs/9p.c get_dotl_openflags), or are handled by the caller
// (O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW).
func openFlags(flags uint32) (int, error) {
	var o int
	switch flags & p9DotlAccMode {
	case P9_DOTL_RDONLY:
		o = unix.O_RDONLY
	case P9_DOTL_WRONLY:
		o = unix.O_WRONLY
	case P9_DOTL_RDWR:
		o = unix.O_RDWR
	default: // P9_DOTL_NOACCESS
		return 0, unix.EINVAL
	}
	for _, m := range []struct {
		p9   uint32
		unix int
	}{
		{P9_DOTL_TRUNC, unix.O_TRUNC},
		{P9_DOTL_APPEND, unix.O_APPEND},
		{P9_DOTL_DSYNC, unix.O_DSYNC},
		{P9_DOTL_SYNC, unix.O_SYNC},
	} {
		if flags&m.p9 != 0 {
			o |= m.unix
		}
	}
	return o, nil
}

// writes reports whether open(2) flags o may change the file.
func writes(o int) bool {
	return o&unix.O_ACCMODE != unix.O_RDONLY || o&unix.O_TRUNC != 0
}

// lopen: size[4] Tlopen tag[2] fid[4] flags[4]
// → size[4] Rlopen tag[2] qid[13] iounit[4]
//
// Opens the file fid refers to. Only regular files and directories are
// opened: a symlink gives ELOOP (the guest follows symlinks itself, with
// Treadlink), and device nodes, FIFOs and sockets are never opened on the
// host — the guest kernel serves those itself (Linux's v9fs gives them
// init_special_inode), so a Tlopen of one comes from a hostile guest.
// The file is reopened from the fid's O_PATH descriptor through
// /proc/self/fd, so it is exactly the file the walk found.
//
// iounit 0 tells the client to use msize less the I/O header.
func (c *call) lopen() error {
	id := c.d.u32()
	flags := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	o, err := openFlags(flags)
	if err != nil {
		return err
	}
	switch {
	case f.isSymlink():
		return unix.ELOOP
	case f.isDir():
		if o&unix.O_ACCMODE != unix.O_RDONLY {
			return unix.EISDIR
		}
		o |= unix.O_DIRECTORY
	case !f.isReg():
		return unix.EPERM
	case flags&P9_DOTL_DIRECTORY != 0:
		return unix.ENOTDIR
	case f.opaque:
		return unix.EACCES
	}
	if writes(o) {
		if err := c.modifies(); err != nil {
			return err
		}
	}
	fd, err := c.s.reopen(&f.node, o)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != f.dev || st.Ino != f.ino {
		// Cannot happen: the reopen goes through the descriptor.
		unix.Close(fd)
		return unix.ESTALE
	}
	f.mu.Lock()
	if f.file >= 0 {
		f.mu.Unlock()
		unix.Close(fd)
		return unix.EBADF // already open (open(5): fid must not be open)
	}
	f.file, f.fileFlags, f.dirNext = fd, o, 0
	f.mu.Unlock()
	c.r.qid(c.s.qid(&st))
	c.r.u32(0) // iounit
	return nil
}

// readlink: size[4] Treadlink tag[2] fid[4] → size[4] Rreadlink tag[2] target[s]
func (c *call) readlink() error {
	id := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	if !f.isSymlink() {
		return unix.EINVAL // readlink(2) of anything else
	}
	var buf [maxSymlinkLen + 1]byte
	n, err := unix.Readlinkat(f.fd, "", buf[:])
	if err != nil {
		return err
	}
	c.r.str(string(buf[:n]))
	return nil
}

// statfs: size[4] Tstatfs tag[2] fid[4]
// → size[4] Rstatfs tag[2] type[4] bsize[4] blocks[8] bfree[8] bavail[8]
// files[8] ffree[8] fsid[8] namelen[4]
func (c *call) statfs() error {
	id := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	var sf unix.Statfs_t
	if err := unix.Fstatfs(f.fd, &sf); err != nil {
		return err
	}
	c.r.u32(uint32(sf.Type))
	c.r.u32(uint32(sf.Bsize))
	c.r.u64(sf.Blocks)
	c.r.u64(sf.Bfree)
	c.r.u64(sf.Bavail)
	c.r.u64(sf.Files)
	c.r.u64(sf.Ffree)
	c.r.u64(uint64(uint32(sf.Fsid.Val[0])) | uint64(uint32(sf.Fsid.Val[1]))<<32)
	c.r.u32(uint32(sf.Namelen))
	return nil
}

// fsync: size[4] Tfsync tag[2] fid[4] datasync[4] → size[4] Rfsync tag[2]
//
// Linux sends datasync since 3.x (p9_client_fsync: "dd"); the older form
// without it is accepted too.
func (c *call) fsync() error {
	id := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	var datasync uint32
	if len(c.d.b) >= 4 {
		datasync = c.d.u32()
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	fd, _, err := f.openFile()
	if err != nil {
		return err
	}
	if datasync != 0 {
		return retryEINTR(func() error { return unix.Fdatasync(fd) })
	}
	return retryEINTR(func() error { return unix.Fsync(fd) })
}

// lock: size[4] Tlock tag[2] fid[4] type[1] flags[4] start[8] length[8]
// proc_id[4] client_id[s] → size[4] Rlock tag[2] status[1]
//
// POSIX locks are the guest kernel's: the server grants every lock, as
// QEMU does (hw/9pfs/9p.c, v9fs_lock), so locks work between processes
// of the guest and do not reach the host.
func (c *call) lock() error {
	id := c.d.u32()
	_ = c.d.u8()  // type
	_ = c.d.u32() // flags
	_ = c.d.u64() // start
	_ = c.d.u64() // length
	_ = c.d.u32() // proc_id
	_ = c.d.str() // client_id
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	f.release()
	c.r.u8(P9_LOCK_SUCCESS)
	return nil
}

// getlock: size[4] Tgetlock tag[2] fid[4] type[1] start[8] length[8]
// proc_id[4] client_id[s] → size[4] Rgetlock tag[2] type[1] start[8]
// length[8] proc_id[4] client_id[s]
//
// No lock is ever held on the server, so the answer is always "unlocked"
// (P9_LOCK_TYPE_UNLCK), with the rest as asked, as QEMU answers.
func (c *call) getlock() error {
	id := c.d.u32()
	_ = c.d.u8() // type
	start := c.d.u64()
	length := c.d.u64()
	procID := c.d.u32()
	clientID := c.d.str()
	if c.malformed() {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	f.release()
	c.r.u8(P9_LOCK_TYPE_UNLCK)
	c.r.u64(start)
	c.r.u64(length)
	c.r.u32(procID)
	c.r.str(clientID)
	return nil
}

// xattrwalk: size[4] Txattrwalk tag[2] fid[4] newfid[4] name[s]
// → size[4] Rxattrwalk tag[2] size[8]
// xattrcreate: size[4] Txattrcreate tag[2] fid[4] name[s] attr_size[8]
// flags[4] → size[4] Rxattrcreate tag[2]
//
// Extended attributes are not supported: both answer EOPNOTSUPP, which
// Linux passes on from getxattr(2) and friends; ls, cp and tar take it
// to mean the file system has none.
func (c *call) xattrwalk() error   { return unix.EOPNOTSUPP }
func (c *call) xattrcreate() error { return unix.EOPNOTSUPP }

// clunk: size[4] Tclunk tag[2] fid[4] → size[4] Rclunk tag[2]
func (c *call) clunk() error {
	id := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	return c.s.removeFid(id)
}

// openat is openat(2) retried after EINTR.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func retryEINTR(op func() error) error {
	for {
		if err := op(); err != unix.EINTR {
			return err
		}
	}
}

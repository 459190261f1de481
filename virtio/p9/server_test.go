package p9

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestNewServerErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := NewServer(filepath.Join(dir, "missing"), Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)

	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = NewServer(file, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), file)
	assert.Contains(t, err.Error(), "not a directory")

	if isProc(t, "/proc") {
		_, err = NewServer("/proc", Options{})
		require.Error(t, err, "a share of procfs")
		assert.Contains(t, err.Error(), "/proc")
	}
}

func isProc(t *testing.T, path string) bool {
	var sf unix.Statfs_t
	return unix.Statfs(path, &sf) == nil && sf.Type == unix.PROC_SUPER_MAGIC
}

func TestVersion(t *testing.T) {
	sh := newShare(t)
	s := sh.start(t, false)
	c := newClient(t, s)

	// The server takes the smaller msize, and at most MaxMsize.
	d := c.ok(Tversion, uint32(8192), Version)
	assert.EqualValues(t, 8192, d.u32())
	assert.Equal(t, Version, d.str())
	assert.EqualValues(t, 8192, s.Msize())
	d = c.ok(Tversion, uint32(64<<20), Version)
	assert.EqualValues(t, MaxMsize, d.u32())

	// Other versions get "unknown"; a suffix after a period is ignored.
	d = c.ok(Tversion, uint32(8192), "9P2000.u")
	d.u32()
	assert.Equal(t, VersionUnknown, d.str())
	d = c.ok(Tversion, uint32(8192), "9P2000.L.extra")
	d.u32()
	assert.Equal(t, Version, d.str())

	// An msize too small for anything useful is refused.
	assert.Equal(t, unix.EINVAL, c.fail(Tversion, uint32(100), Version))

	// Tversion clunks every fid of the old session.
	c.version(MaxMsize)
	c.attach(0)
	c.mustWalk(0, 1)
	assert.Equal(t, 2, s.Fids())
	c.version(MaxMsize)
	assert.Equal(t, 0, s.Fids())
	assert.Equal(t, unix.EBADF, c.fail(Tgetattr, uint32(0), uint64(P9_STATS_ALL)))
}

func TestAttachAndFids(t *testing.T) {
	sh := newShare(t)
	s := sh.start(t, false)
	c := session(t, s)
	var st unix.Stat_t
	require.NoError(t, unix.Stat(sh.dir, &st))
	a := c.getattr(0)
	assert.Equal(t, uint8(P9_QTDIR), a.qid.Type)
	assert.Equal(t, st.Ino, a.qid.Path)
	assert.Equal(t, unix.EBADF, c.fail(Tattach, uint32(0), uint32(NOFID), "", "", uint32(0)), "fid in use")
	assert.Equal(t, unix.EBADF, c.fail(Tclunk, uint32(99)))
	assert.Equal(t, unix.EBADF, c.fail(Twalk, uint32(99), uint32(100), []string{}))
	c.mustWalk(0, 1)
	assert.Equal(t, unix.EBADF, c.fail(Twalk, uint32(0), uint32(1), []string{}), "newfid in use")

	// The fid limit.
	s.mu.Lock()
	n := len(s.fids)
	s.mu.Unlock()
	assert.LessOrEqual(t, s.maxFids, MaxFids)
	for i := n; i < s.maxFids; i++ {
		s.mu.Lock()
		s.fids[uint32(1000+i)] = &fid{}
		s.mu.Unlock()
	}
	assert.Equal(t, unix.EMFILE, c.fail(Twalk, uint32(0), uint32(2), []string{}))
	s.mu.Lock()
	for i := n; i < s.maxFids; i++ {
		delete(s.fids, uint32(1000+i))
	}
	s.mu.Unlock()
	c.mustWalk(0, 2)
}

func TestReadWriteRoundTrip(t *testing.T) {
	sh := newShare(t)
	s := sh.start(t, false)
	c := session(t, s)

	c.mustWalk(0, 1)
	require.NoError(t, c.lcreate(1, "data", P9_DOTL_RDWR, 0o640))
	a := c.getattr(1)
	assert.Equal(t, uint32(unix.S_IFREG|0o640), a.mode&^uint32(umask()))

	// 300 KB in chunks of up to msize, with odd offsets.
	data := make([]byte, 300_000)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 65_537)
		w := c.write(1, uint64(off), data[off:off+n])
		require.EqualValues(t, n, w)
		off += n
	}
	host, err := os.ReadFile(sh.path("data"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, host), "host file differs")
	c.ok(Tfsync, uint32(1), uint32(0))
	c.ok(Tfsync, uint32(1), uint32(1))
	c.clunk(1)

	c.mustWalk(0, 2, "data")
	require.NoError(t, c.lopen(2, P9_DOTL_RDONLY))
	got := c.readAll(2, 100_000)
	require.True(t, bytes.Equal(data, got), "read back differs")
	c.mustWalk(2, 2) // a walk of fid to itself leaves it as it is: open
	assert.Equal(t, data[:10], c.read(2, 0, 10))
	assert.Empty(t, c.read(2, uint64(len(data)+10), 100), "read past the end")
	// A read is cut to the reply buffer.
	c.respSize = 1000
	assert.Len(t, c.read(2, 0, 1<<20), 1000-ioHeaderSize)
	c.respSize = MaxMsize
	// Not open for writing.
	assert.Equal(t, unix.EBADF, c.fail(Twrite, uint32(2), uint64(0), uint32(1), raw("x")))
	// Twice open.
	assert.Equal(t, unix.EBADF, c.fail(Tlopen, uint32(2), uint32(P9_DOTL_RDONLY)))
	// Reads need an open fid.
	c.mustWalk(0, 3, "data")
	assert.Equal(t, unix.EBADF, c.fail(Tread, uint32(3), uint64(0), uint32(10)))
	assert.Equal(t, unix.EBADF, c.fail(Tfsync, uint32(3), uint32(0)))

	// O_TRUNC and O_APPEND.
	require.NoError(t, c.lopen(3, P9_DOTL_WRONLY|P9_DOTL_TRUNC|P9_DOTL_APPEND))
	c.write(3, 0, []byte("abc"))
	c.write(3, 0, []byte("def"))
	host, err = os.ReadFile(sh.path("data"))
	require.NoError(t, err)
	assert.Equal(t, "abcdef", string(host))

	// Tlcreate with O_EXCL of an existing file.
	c.mustWalk(0, 4)
	assert.Equal(t, unix.EEXIST, errnoOf(c.lcreate(4, "data", P9_DOTL_WRONLY|P9_DOTL_EXCL, 0o600)))
	// Without O_EXCL it opens the existing file.
	require.NoError(t, c.lcreate(4, "data", P9_DOTL_RDONLY, 0o600))
	assert.Equal(t, "abcdef", string(c.read(4, 0, 100)))
}

func umask() int {
	m := unix.Umask(0)
	unix.Umask(m)
	return m
}

func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	return err.(unix.Errno)
}

func TestReaddir(t *testing.T) {
	sh := newShare(t)
	want := []string{".", ".."}
	for i := range 200 {
		name := fmt.Sprintf("file-%03d-%s", i, strings.Repeat("x", i%50))
		require.NoError(t, os.WriteFile(sh.path(name), nil, 0o644))
		want = append(want, name)
	}
	require.NoError(t, os.Mkdir(sh.path("sub"), 0o755))
	require.NoError(t, os.Symlink("file-000-", sh.path("link")))
	want = append(want, "sub", "link")
	sort.Strings(want)
	s := sh.start(t, false)
	c := session(t, s)
	root := c.getattr(0).qid

	c.mustWalk(0, 1)
	require.NoError(t, c.lopen(1, P9_DOTL_RDONLY|P9_DOTL_DIRECTORY))
	for _, count := range []uint32{100, 512, 4096, 1 << 20} {
		es := c.readdirAll(1, count)
		var got []string
		for _, e := range es {
			got = append(got, e.name)
			switch e.name {
			case "..":
				assert.Equal(t, root.Path, e.qid.Path, ".. of the root is the root")
			case "sub":
				assert.Equal(t, uint8(P9_QTDIR), e.qid.Type)
				assert.Equal(t, uint8(unix.DT_DIR), e.typ)
			case "link":
				assert.Equal(t, uint8(P9_QTSYMLINK), e.qid.Type)
				assert.Equal(t, uint8(unix.DT_LNK), e.typ)
			}
		}
		sort.Strings(got)
		assert.Equal(t, want, got, "count %d", count)
	}
	// Starting over at 0 gives the first entries again, and an offset
	// from the middle resumes there.
	first := c.readdir(1, 0, 200)
	require.NotEmpty(t, first)
	again := c.readdir(1, 0, 200)
	assert.Equal(t, first, again)
	rest := c.readdir(1, first[0].off, 200)
	require.NotEmpty(t, rest)
	assert.Equal(t, first[1].name, rest[0].name)

	// Not open, or not a directory.
	c.mustWalk(0, 2)
	assert.Equal(t, unix.EBADF, c.fail(Treaddir, uint32(2), uint64(0), uint32(1000)))
	c.mustWalk(0, 3, "file-001-x")
	require.NoError(t, c.lopen(3, P9_DOTL_RDONLY))
	assert.Equal(t, unix.ENOTDIR, c.fail(Treaddir, uint32(3), uint64(0), uint32(1000)))
	// A directory cannot be opened for writing.
	c.mustWalk(0, 4, "sub")
	assert.Equal(t, unix.EISDIR, errnoOf(c.lopen(4, P9_DOTL_RDWR)))
}

func TestNamespaceOperations(t *testing.T) {
	sh := newShare(t)
	s := sh.start(t, false)
	c := session(t, s)

	// Tmkdir, and a file in it.
	d := c.ok(Tmkdir, uint32(0), "dir", uint32(0o750), uint32(0))
	q := readQid(d)
	assert.Equal(t, uint8(P9_QTDIR), q.Type)
	fi, err := os.Stat(sh.path("dir"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	assert.Equal(t, unix.EEXIST, c.fail(Tmkdir, uint32(0), "dir", uint32(0o750), uint32(0)))
	c.mustWalk(0, 1, "dir")
	require.NoError(t, c.lcreate(1, "f", P9_DOTL_WRONLY, 0o644))
	c.write(1, 0, []byte("hello"))
	c.clunk(1)

	// Tsymlink and Treadlink.
	d = c.ok(Tsymlink, uint32(0), "sl", "dir/f", uint32(0))
	assert.Equal(t, uint8(P9_QTSYMLINK), readQid(d).Type)
	qs := c.mustWalk(0, 2, "sl")
	assert.Equal(t, uint8(P9_QTSYMLINK), qs.Type)
	d = c.ok(Treadlink, uint32(2))
	assert.Equal(t, "dir/f", d.str())
	assert.Equal(t, unix.ELOOP, errnoOf(c.lopen(2, P9_DOTL_RDONLY)), "lopen of a symlink")
	c.mustWalk(0, 3, "dir")
	assert.Equal(t, unix.EINVAL, c.fail(Treadlink, uint32(3)), "readlink of a directory")
	assert.Equal(t, unix.ENOENT, c.fail(Tsymlink, uint32(0), "empty", "", uint32(0)))

	// Tlink.
	c.mustWalk(0, 4, "dir", "f")
	c.ok(Tlink, uint32(0), uint32(4), "hard")
	b, err := os.ReadFile(sh.path("hard"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	assert.Equal(t, uint64(2), c.getattr(4).nlink)
	assert.Equal(t, unix.EPERM, c.fail(Tlink, uint32(0), uint32(3), "dirlink"), "hard link to a directory")
	c.ok(Tlink, uint32(0), uint32(2), "sl2") // a symlink links the symlink
	target, err := os.Readlink(sh.path("sl2"))
	require.NoError(t, err)
	assert.Equal(t, "dir/f", target)

	// Trenameat and Tunlinkat.
	c.ok(Trenameat, uint32(0), "hard", uint32(3), "moved")
	_, err = os.Stat(sh.path("dir/moved"))
	require.NoError(t, err)
	c.ok(Tunlinkat, uint32(3), "moved", uint32(0))
	_, err = os.Stat(sh.path("dir/moved"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, unix.ENOTEMPTY, c.fail(Tunlinkat, uint32(0), "dir", uint32(P9_DOTL_AT_REMOVEDIR)))
	assert.Equal(t, unix.EISDIR, c.fail(Tunlinkat, uint32(0), "dir", uint32(0)))
	assert.Equal(t, unix.EINVAL, c.fail(Tunlinkat, uint32(0), "dir", uint32(0x1)), "unknown flag")

	// Trename moves the fid's file, and the fid follows it.
	c.ok(Trename, uint32(4), uint32(0), "g")
	_, err = os.Stat(sh.path("g"))
	require.NoError(t, err)
	c.ok(Trename, uint32(4), uint32(3), "h")
	_, err = os.Stat(sh.path("dir/h"))
	require.NoError(t, err)
	// A fid whose name has changed under it: ESTALE, nothing renamed.
	c.mustWalk(3, 5, "h")
	require.NoError(t, os.Rename(sh.path("dir/h"), sh.path("dir/i")))
	require.NoError(t, os.WriteFile(sh.path("dir/h"), []byte("other"), 0o644))
	assert.Equal(t, unix.ESTALE, c.fail(Trename, uint32(5), uint32(0), "j"))
	assert.Equal(t, unix.ESTALE, c.fail(Tremove, uint32(5)))
	assert.Equal(t, unix.EBADF, c.fail(Tclunk, uint32(5)), "Tremove clunks even when it fails")
	b, err = os.ReadFile(sh.path("dir/h"))
	require.NoError(t, err)
	assert.Equal(t, "other", string(b))

	// Tremove.
	c.mustWalk(0, 6, "dir", "h")
	c.ok(Tremove, uint32(6))
	_, err = os.Stat(sh.path("dir/h"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, unix.EBUSY, c.fail(Tremove, uint32(0)), "the root")
	c.attach(0)

	// Tmknod: files, FIFOs and sockets; no devices.
	d = c.ok(Tmknod, uint32(0), "fifo", uint32(unix.S_IFIFO|0o644), uint32(0), uint32(0), uint32(0))
	assert.Equal(t, uint8(P9_QTFILE), readQid(d).Type)
	fi, err = os.Lstat(sh.path("fifo"))
	require.NoError(t, err)
	assert.Equal(t, os.ModeNamedPipe, fi.Mode().Type())
	c.ok(Tmknod, uint32(0), "plain", uint32(0o644), uint32(0), uint32(0), uint32(0))
	assert.Equal(t, unix.EPERM, c.fail(Tmknod, uint32(0), "null", uint32(unix.S_IFCHR|0o666), uint32(1), uint32(3), uint32(0)))
	assert.Equal(t, unix.EPERM, c.fail(Tmknod, uint32(0), "sda", uint32(unix.S_IFBLK|0o666), uint32(8), uint32(0), uint32(0)))
	// A FIFO is never opened by the server: lopen refuses it, and
	// Tlcreate of its name does not block on it.
	c.mustWalk(0, 7, "fifo")
	opened := make(chan error, 1)
	go func() { opened <- c.lopen(7, P9_DOTL_RDONLY) }()
	select {
	case err := <-opened:
		assert.Equal(t, unix.EPERM, errnoOf(err))
	case <-time.After(5 * time.Second):
		// The server opened the FIFO and waits for a writer: be one,
		// so that the test can end.
		w, err := os.OpenFile(sh.path("fifo"), os.O_WRONLY|unix.O_NONBLOCK, 0)
		require.NoError(t, err)
		w.Close()
		<-opened
		t.Fatal("Tlopen of a FIFO blocked the server")
	}
	c.mustWalk(0, 8)
	assert.Equal(t, unix.EPERM, errnoOf(c.lcreate(8, "fifo", P9_DOTL_RDONLY, 0o644)))
}

func TestGetattrSetattr(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.WriteFile(sh.path("f"), []byte("0123456789"), 0o644))
	require.NoError(t, os.Symlink("f", sh.path("l")))
	s := sh.start(t, false)
	c := session(t, s)
	c.mustWalk(0, 1, "f")

	var st unix.Stat_t
	require.NoError(t, unix.Stat(sh.path("f"), &st))
	a := c.getattr(1)
	assert.EqualValues(t, P9_STATS_BASIC, a.valid)
	assert.Equal(t, st.Mode, a.mode)
	assert.Equal(t, st.Uid, a.uid)
	assert.Equal(t, st.Gid, a.gid)
	assert.EqualValues(t, 10, a.size)
	assert.Equal(t, st.Ino, a.qid.Path)
	assert.EqualValues(t, st.Mtim.Sec, a.mtimeSec)
	assert.EqualValues(t, st.Mtim.Nsec, a.mtimeNsec)
	assert.Equal(t, uint8(P9_QTFILE), a.qid.Type)

	// chmod, truncate, times, chown to the owner it has.
	require.NoError(t, c.setattr(1, P9_ATTR_MODE, 0o600, 0, 0, 0, unix.Timespec{}, unix.Timespec{}))
	require.NoError(t, c.setattr(1, P9_ATTR_SIZE, 0, 0, 0, 4, unix.Timespec{}, unix.Timespec{}))
	at, mt := unix.Timespec{Sec: 1_000_000, Nsec: 5}, unix.Timespec{Sec: 2_000_000, Nsec: 7}
	require.NoError(t, c.setattr(1, P9_ATTR_ATIME|P9_ATTR_ATIME_SET|P9_ATTR_MTIME|P9_ATTR_MTIME_SET, 0, 0, 0, 0, at, mt))
	require.NoError(t, c.setattr(1, P9_ATTR_UID|P9_ATTR_GID, 0, st.Uid, st.Gid, 0, unix.Timespec{}, unix.Timespec{}))
	require.NoError(t, unix.Stat(sh.path("f"), &st))
	assert.Equal(t, uint32(0o600), st.Mode&0o7777)
	assert.EqualValues(t, 4, st.Size)
	assert.Equal(t, at, st.Atim)
	assert.Equal(t, mt, st.Mtim)
	a = c.getattr(1)
	assert.EqualValues(t, 4, a.size)
	assert.EqualValues(t, 2_000_000, a.mtimeSec)
	// "Now".
	require.NoError(t, c.setattr(1, P9_ATTR_MTIME, 0, 0, 0, 0, unix.Timespec{}, unix.Timespec{}))
	require.NoError(t, unix.Stat(sh.path("f"), &st))
	assert.Greater(t, st.Mtim.Sec, int64(2_000_000))
	// Bad nanoseconds.
	assert.Equal(t, unix.EINVAL, errnoOf(c.setattr(1, P9_ATTR_MTIME|P9_ATTR_MTIME_SET, 0, 0, 0, 0, unix.Timespec{}, unix.Timespec{Nsec: 2e9})))
	// Truncate through an open fid.
	c.mustWalk(0, 2, "f")
	require.NoError(t, c.lopen(2, P9_DOTL_RDWR))
	require.NoError(t, c.setattr(2, P9_ATTR_SIZE, 0, 0, 0, 1, unix.Timespec{}, unix.Timespec{}))
	assert.Equal(t, "0", string(c.read(2, 0, 100)))
	// The times of a symlink are its own, not its target's.
	c.mustWalk(0, 3, "l")
	require.NoError(t, c.setattr(3, P9_ATTR_MTIME|P9_ATTR_MTIME_SET, 0, 0, 0, 0, unix.Timespec{}, unix.Timespec{Sec: 3_000_000}))
	require.NoError(t, unix.Lstat(sh.path("l"), &st))
	assert.EqualValues(t, 3_000_000, st.Mtim.Sec)
	require.NoError(t, unix.Stat(sh.path("f"), &st))
	assert.NotEqualValues(t, 3_000_000, st.Mtim.Sec)
	// Truncating a directory.
	assert.Equal(t, unix.EISDIR, errnoOf(c.setattr(0, P9_ATTR_SIZE, 0, 0, 0, 0, unix.Timespec{}, unix.Timespec{})))

	// Tstatfs.
	var sf unix.Statfs_t
	require.NoError(t, unix.Statfs(sh.dir, &sf))
	d := c.ok(Tstatfs, uint32(0))
	assert.Equal(t, uint32(sf.Type), d.u32())
	assert.Equal(t, uint32(sf.Bsize), d.u32())
	assert.Equal(t, sf.Blocks, d.u64())
	d.u64()
	d.u64()
	d.u64()
	d.u64()
	d.u64()
	assert.Equal(t, uint32(sf.Namelen), d.u32())
	assert.False(t, d.err)
	assert.Empty(t, d.b)

	// Locks are granted; Tgetlock says unlocked.
	d = c.ok(Tlock, uint32(2), uint8(P9_LOCK_TYPE_WRLCK), uint32(0), uint64(0), uint64(10), uint32(42), "guest")
	assert.Equal(t, uint8(P9_LOCK_SUCCESS), d.u8())
	d = c.ok(Tgetlock, uint32(2), uint8(P9_LOCK_TYPE_WRLCK), uint64(5), uint64(10), uint32(42), "guest")
	assert.Equal(t, uint8(P9_LOCK_TYPE_UNLCK), d.u8())
	assert.Equal(t, uint64(5), d.u64())
	assert.Equal(t, uint64(10), d.u64())
	assert.Equal(t, uint32(42), d.u32())
	assert.Equal(t, "guest", d.str())

	// No extended attributes.
	assert.Equal(t, unix.EOPNOTSUPP, c.fail(Txattrwalk, uint32(1), uint32(9), "user.x"))
	assert.Equal(t, unix.EOPNOTSUPP, c.fail(Txattrcreate, uint32(1), "user.x", uint64(1), uint32(0)))
}

func TestReadOnlyShare(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.WriteFile(sh.path("f"), []byte("keep"), 0o644))
	require.NoError(t, os.Mkdir(sh.path("d"), 0o755))
	s := sh.start(t, true)
	assert.True(t, s.ReadOnly())
	c := session(t, s)
	c.mustWalk(0, 1, "f")
	c.mustWalk(0, 2, "d")
	c.mustWalk(0, 3)

	now := unix.Timespec{}
	for name, err := range map[string]error{
		"lopen WRONLY": c.lopen(1, P9_DOTL_WRONLY),
		"lopen RDWR":   c.lopen(1, P9_DOTL_RDWR),
		"lopen TRUNC":  c.lopen(1, P9_DOTL_RDONLY|P9_DOTL_TRUNC),
		"lcreate":      c.lcreate(3, "new", P9_DOTL_WRONLY, 0o644),
		"setattr mode": c.setattr(1, P9_ATTR_MODE, 0o777, 0, 0, 0, now, now),
		"setattr size": c.setattr(1, P9_ATTR_SIZE, 0, 0, 0, 0, now, now),
		"setattr time": c.setattr(1, P9_ATTR_MTIME, 0, 0, 0, 0, now, now),
	} {
		assert.Equal(t, unix.EROFS, errnoOf(err), name)
	}
	for name, m := range map[string][]any{
		"mkdir":    {uint8(Tmkdir), uint32(0), "x", uint32(0o755), uint32(0)},
		"symlink":  {uint8(Tsymlink), uint32(0), "x", "f", uint32(0)},
		"mknod":    {uint8(Tmknod), uint32(0), "x", uint32(unix.S_IFIFO | 0o644), uint32(0), uint32(0), uint32(0)},
		"mknod c":  {uint8(Tmknod), uint32(0), "x", uint32(unix.S_IFCHR | 0o644), uint32(1), uint32(3), uint32(0)},
		"link":     {uint8(Tlink), uint32(0), uint32(1), "x"},
		"renameat": {uint8(Trenameat), uint32(0), "f", uint32(0), "x"},
		"rename":   {uint8(Trename), uint32(1), uint32(0), "x"},
		"unlinkat": {uint8(Tunlinkat), uint32(0), "f", uint32(0)},
		"rmdir":    {uint8(Tunlinkat), uint32(0), "d", uint32(P9_DOTL_AT_REMOVEDIR)},
	} {
		assert.Equal(t, unix.EROFS, c.fail(m[0].(uint8), m[1:]...), name)
	}
	c.mustWalk(0, 4, "f")
	assert.Equal(t, unix.EROFS, c.fail(Tremove, uint32(4)))

	// Reading works; writing through a read-only open fails.
	require.NoError(t, c.lopen(1, P9_DOTL_RDONLY))
	assert.Equal(t, "keep", string(c.read(1, 0, 100)))
	assert.Equal(t, unix.EROFS, c.fail(Twrite, uint32(1), uint64(0), uint32(1), raw("x")))
	require.NoError(t, c.lopen(2, P9_DOTL_RDONLY))
	assert.NotEmpty(t, c.readdirAll(2, 4096))
	c.ok(Tfsync, uint32(1), uint32(0))

	b, err := os.ReadFile(sh.path("f"))
	require.NoError(t, err)
	assert.Equal(t, "keep", string(b))
	es, err := os.ReadDir(sh.dir)
	require.NoError(t, err)
	assert.Len(t, es, 2)
	sh.checkOutside(t)
}

// TestConcurrentRequests runs sessions' worth of requests from several
// goroutines at once, including a clunk racing reads of the same fid, for
// the race detector.
func TestConcurrentRequests(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.WriteFile(sh.path("f"), bytes.Repeat([]byte("z"), 10000), 0o644))
	s := sh.start(t, false)
	c := session(t, s)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gc := newClient(t, s)
			gc.tag = uint16(g * 1000)
			base := uint32(100 + g*10)
			for i := range 50 {
				if _, err := gc.walk(0, base, "f"); err != nil {
					t.Errorf("walk: %v", err)
					return
				}
				if err := gc.lopen(base, P9_DOTL_RDONLY); err != nil {
					t.Errorf("lopen: %v", err)
					return
				}
				var inner sync.WaitGroup
				inner.Add(1)
				go func() {
					defer inner.Done()
					rc := newClient(t, s)
					rc.tag = uint16(30000 + g*1000 + i)
					rc.rpc(Tread, base, uint64(0), uint32(5000)) // may lose to the clunk
				}()
				gc.rpc(Tclunk, base)
				inner.Wait()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 1, s.Fids())
	c.getattr(0)
}

// BenchmarkRead reads 496 KiB at a time from a file in the page cache, as
// Linux does with msize=512000: the cost of a Tread apart from the
// transport.
func BenchmarkRead(b *testing.B) {
	sh := newShare(b)
	const chunk = 496 << 10
	require.NoError(b, os.WriteFile(sh.path("f"), make([]byte, 16*chunk), 0o644))
	s := sh.start(b, true)
	c := session(b, s)
	c.mustWalk(0, 1, "f")
	require.NoError(b, c.lopen(1, P9_DOTL_RDONLY))
	req := make([][]byte, 16)
	for i := range req {
		req[i] = tmsg(Tread, uint16(i), uint32(1), uint64(i*chunk), uint32(chunk))
	}
	out := make([]byte, ioHeaderSize+chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if n := s.Handle(req[i%16], out); n != ioHeaderSize+chunk {
			b.Fatalf("reply of %d bytes", n)
		}
	}
}

// BenchmarkWalkGetattrClunk is the metadata path: what a stat(2) of an
// uncached name costs the server.
func BenchmarkWalkGetattrClunk(b *testing.B) {
	sh := newShare(b)
	require.NoError(b, os.MkdirAll(sh.path("a/b"), 0o755))
	require.NoError(b, os.WriteFile(sh.path("a/b/c"), nil, 0o644))
	s := sh.start(b, true)
	session(b, s)
	walk := tmsg(Twalk, 1, uint32(0), uint32(1), []string{"a", "b", "c"})
	getattr := tmsg(Tgetattr, 2, uint32(1), uint64(P9_STATS_BASIC))
	clunk := tmsg(Tclunk, 3, uint32(1))
	out := make([]byte, 4096)
	for b.Loop() {
		if s.Handle(walk, out) == rlerrorSize || s.Handle(getattr, out) == rlerrorSize || s.Handle(clunk, out) == rlerrorSize {
			b.Fatal("Rlerror")
		}
	}
}

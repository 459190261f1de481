package p9

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The tests in this file try to get out of the share. Each share has a
// sibling directory, outside, with a secret in it; checkOutside makes sure
// it is untouched and nothing new appeared next to it.

// TestWithoutOpenat2 runs the confinement tests with the lookup that
// does without openat2(2).
func TestWithoutOpenat2(t *testing.T) {
	testNoOpenat2 = true
	defer func() { testNoOpenat2 = false }()
	t.Run("dotdot", TestWalkDotDotStaysInside)
	t.Run("symlinks", TestSymlinksAreNotFollowed)
	t.Run("swap", TestSwapAfterWalk)
	t.Run("names", TestCreatingNamesRefused)
}

func TestWalkDotDotStaysInside(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.MkdirAll(sh.path("a/b"), 0o755))
	s := sh.start(t, false)
	c := session(t, s)
	root := c.getattr(0).qid

	assert.Equal(t, root, c.mustWalk(0, 1, ".."), ".. of the root is the root")
	assert.Equal(t, root, c.mustWalk(0, 2, "..", "..", ".."))
	assert.Equal(t, root, c.mustWalk(0, 3, "a", "b", "..", "..", "..", ".."))
	a := c.mustWalk(0, 4, "a", "b", "..")
	assert.Equal(t, c.mustWalk(0, 5, "a"), a)

	// Past the root to the sibling: the ".." stays at the root, and
	// "outside" does not exist there.
	qids, err := c.walk(0, 6, "..", "outside", "secret")
	require.NoError(t, err)
	assert.Len(t, qids, 1, "walk stops at outside")
	assert.Equal(t, unix.EBADF, c.fail(Tgetattr, uint32(6), uint64(0)), "no newfid after a partial walk")
	for _, bad := range []string{"../outside", "a/..", "a/b", "/", "", "x\x00", strings.Repeat("n", 256)} {
		_, err := c.walk(0, 6, bad)
		assert.Error(t, err, "walk %q", bad)
	}
	names := make([]string, MaxWalkElements+1)
	for i := range names {
		names[i] = ".."
	}
	_, err = c.walk(0, 6, names...)
	assert.Equal(t, unix.EINVAL, err, "more than MaxWalkElements")

	// The root reached by ".." lists the share.
	require.NoError(t, c.lopen(2, P9_DOTL_RDONLY))
	var got []string
	for _, e := range c.readdirAll(2, 4096) {
		got = append(got, e.name)
	}
	assert.ElementsMatch(t, []string{".", "..", "a"}, got)
	sh.checkOutside(t)
}

func TestSymlinksAreNotFollowed(t *testing.T) {
	sh := newShare(t)
	links := map[string]string{
		"abs":      filepath.Join(sh.outside, "secret"), // absolute, outside
		"etc":      "/etc",
		"rel":      "../outside/secret",
		"reldir":   "../outside",
		"dangling": "../outside/created",
		"loop":     "loop",
	}
	for name, target := range links {
		require.NoError(t, os.Symlink(target, sh.path(name)))
	}
	require.NoError(t, os.WriteFile(sh.path("file"), []byte("inside"), 0o644))
	s := sh.start(t, false)
	c := session(t, s)

	fid := uint32(10)
	for name, target := range links {
		fid++
		q := c.mustWalk(0, fid, name)
		assert.Equal(t, uint8(P9_QTSYMLINK), q.Type, name)
		assert.Equal(t, unix.ELOOP, errnoOf(c.lopen(fid, P9_DOTL_RDONLY)), name)
		assert.Equal(t, unix.ELOOP, errnoOf(c.lopen(fid, P9_DOTL_RDWR|P9_DOTL_TRUNC)), name)
		assert.Equal(t, target, c.ok(Treadlink, fid).str(), name)
		assert.Equal(t, uint32(unix.S_IFLNK), c.getattr(fid).mode&unix.S_IFMT, name)
		// Walking through the symlink as if it were a directory.
		qids, err := c.walk(0, 99, name, "secret")
		if err == nil {
			assert.Len(t, qids, 1, name)
		}
		// Truncating and chmod-ing the symlink do not reach the target.
		assert.Error(t, c.setattr(fid, P9_ATTR_SIZE, 0, 0, 0, 0, unix.Timespec{}, unix.Timespec{}), name)
		_ = c.setattr(fid, P9_ATTR_MODE, 0o777, 0, 0, 0, unix.Timespec{}, unix.Timespec{})
	}
	_, err := c.walk(0, 99, "etc", "passwd")
	if err == nil {
		assert.Equal(t, unix.EBADF, c.fail(Tgetattr, uint32(99), uint64(0)))
	}

	// Creating through a dangling symlink: never creates its target.
	c.mustWalk(0, 1)
	assert.Equal(t, unix.ELOOP, errnoOf(c.lcreate(1, "dangling", P9_DOTL_WRONLY, 0o644)))
	assert.Equal(t, unix.EEXIST, errnoOf(c.lcreate(1, "dangling", P9_DOTL_WRONLY|P9_DOTL_EXCL, 0o644)))
	assert.Equal(t, unix.EEXIST, c.fail(Tmkdir, uint32(0), "dangling", uint32(0o755), uint32(0)))
	assert.Equal(t, unix.EEXIST, c.fail(Tsymlink, uint32(0), "dangling", "x", uint32(0)))
	assert.Equal(t, unix.EEXIST, c.fail(Tmknod, uint32(0), "dangling", uint32(unix.S_IFREG|0o644), uint32(0), uint32(0), uint32(0)))

	// A symlink to a directory is no directory to create in.
	c.mustWalk(0, 2, "reldir")
	c.mustWalk(0, 3, "file")
	for name, m := range map[string][]any{
		"lcreate":  {uint8(Tlcreate), uint32(2), "new", uint32(P9_DOTL_WRONLY), uint32(0o644), uint32(0)},
		"mkdir":    {uint8(Tmkdir), uint32(2), "new", uint32(0o755), uint32(0)},
		"symlink":  {uint8(Tsymlink), uint32(2), "new", "x", uint32(0)},
		"mknod":    {uint8(Tmknod), uint32(2), "new", uint32(unix.S_IFIFO | 0o644), uint32(0), uint32(0), uint32(0)},
		"link":     {uint8(Tlink), uint32(2), uint32(3), "new"},
		"renameat": {uint8(Trenameat), uint32(0), "file", uint32(2), "new"},
		"rename":   {uint8(Trename), uint32(3), uint32(2), "new"},
		"unlinkat": {uint8(Tunlinkat), uint32(2), "secret", uint32(0)},
	} {
		assert.Equal(t, unix.ENOTDIR, c.fail(m[0].(uint8), m[1:]...), name)
	}

	// Hard-linking and renaming a symlink act on the symlink.
	c.mustWalk(0, 4, "rel")
	c.ok(Tlink, uint32(0), uint32(4), "hard")
	target, err := os.Readlink(sh.path("hard"))
	require.NoError(t, err)
	assert.Equal(t, "../outside/secret", target)
	c.ok(Trename, uint32(4), uint32(0), "rel2")
	target, err = os.Readlink(sh.path("rel2"))
	require.NoError(t, err)
	assert.Equal(t, "../outside/secret", target)
	c.ok(Tunlinkat, uint32(0), "rel2", uint32(0))
	sh.checkOutside(t)
}

// TestSwapAfterWalk replaces files and directories the guest has walked to
// with symlinks to the outside, as another process on the host (or a
// second guest path) could between a walk and its use: the fids keep
// referring to what they were walked to.
func TestSwapAfterWalk(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.Mkdir(sh.path("d"), 0o755))
	require.NoError(t, os.WriteFile(sh.path("d/inner"), []byte("inner"), 0o644))
	require.NoError(t, os.WriteFile(sh.path("f"), []byte("inside"), 0o644))
	s := sh.start(t, false)
	c := session(t, s)
	c.mustWalk(0, 1, "d")
	c.mustWalk(0, 2, "f")
	c.mustWalk(0, 5, "f")

	swap := func(name, target string) {
		require.NoError(t, os.Rename(sh.path(name), sh.path(name+".orig")))
		require.NoError(t, os.Symlink(target, sh.path(name+".tmp")))
		require.NoError(t, os.Rename(sh.path(name+".tmp"), sh.path(name)))
	}
	swap("d", "../outside")
	swap("f", "../outside/secret")

	// The directory fid is the original directory.
	_, err := c.walk(1, 3, "secret")
	assert.Equal(t, unix.ENOENT, err)
	c.mustWalk(1, 3, "inner")
	require.NoError(t, c.lopen(3, P9_DOTL_RDONLY))
	assert.Equal(t, "inner", string(c.read(3, 0, 100)))
	c.ok(Tmkdir, uint32(1), "made", uint32(0o755), uint32(0))
	_, err = os.Stat(sh.path("d.orig/made"))
	require.NoError(t, err, "created in the original directory")
	c.mustWalk(1, 4)
	require.NoError(t, c.lcreate(4, "new", P9_DOTL_WRONLY, 0o644))
	_, err = os.Stat(sh.path("d.orig/new"))
	require.NoError(t, err)

	// The file fid opens the original file, not the symlink's target.
	require.NoError(t, c.lopen(2, P9_DOTL_RDWR))
	assert.Equal(t, "inside", string(c.read(2, 0, 100)))
	c.write(2, 0, []byte("INSIDE"))
	b, err := os.ReadFile(sh.path("f.orig"))
	require.NoError(t, err)
	assert.Equal(t, "INSIDE", string(b))
	require.NoError(t, c.setattr(5, P9_ATTR_SIZE|P9_ATTR_MODE, 0o600, 0, 0, 2, unix.Timespec{}, unix.Timespec{}))
	b, err = os.ReadFile(sh.path("f.orig"))
	require.NoError(t, err)
	assert.Equal(t, "IN", string(b))

	// A fresh walk sees the symlinks.
	qids, err := c.walk(0, 6, "d", "secret")
	require.NoError(t, err)
	assert.Len(t, qids, 1)
	assert.Equal(t, uint8(P9_QTSYMLINK), qids[0].Type)

	// Trename and Tremove by a fid whose name now is a symlink: refused.
	assert.Equal(t, unix.ESTALE, c.fail(Trename, uint32(1), uint32(0), "x"))
	sh.checkOutside(t)

	// The file deleted on the host stays readable through the fid.
	require.NoError(t, os.Remove(sh.path("f.orig")))
	assert.Equal(t, "IN", string(c.read(2, 0, 100)))
	sh.checkOutside(t)
}

func TestCreatingNamesRefused(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.WriteFile(sh.path("file"), nil, 0o644))
	require.NoError(t, os.Mkdir(sh.path("d"), 0o755))
	s := sh.start(t, false)
	c := session(t, s)
	c.mustWalk(0, 1, "file")
	c.mustWalk(0, 2, "d")
	for _, bad := range []string{"", ".", "..", "a/b", "../x", "/etc", "x\x00y", "../outside/secret", strings.Repeat("n", 256)} {
		want := unix.EINVAL
		if len(bad) > maxNameLen {
			want = unix.ENAMETOOLONG
		}
		c.mustWalk(0, 3)
		for name, m := range map[string][]any{
			"lcreate":      {uint8(Tlcreate), uint32(3), bad, uint32(P9_DOTL_WRONLY), uint32(0o644), uint32(0)},
			"mkdir":        {uint8(Tmkdir), uint32(0), bad, uint32(0o755), uint32(0)},
			"symlink":      {uint8(Tsymlink), uint32(0), bad, "x", uint32(0)},
			"mknod":        {uint8(Tmknod), uint32(0), bad, uint32(unix.S_IFREG | 0o644), uint32(0), uint32(0), uint32(0)},
			"link":         {uint8(Tlink), uint32(0), uint32(1), bad},
			"renameat old": {uint8(Trenameat), uint32(0), bad, uint32(2), "x"},
			"renameat new": {uint8(Trenameat), uint32(0), "file", uint32(0), bad},
			"rename":       {uint8(Trename), uint32(1), uint32(0), bad},
			"unlinkat":     {uint8(Tunlinkat), uint32(2), bad, uint32(0)},
			"rmdir":        {uint8(Tunlinkat), uint32(2), bad, uint32(P9_DOTL_AT_REMOVEDIR)},
		} {
			assert.Equal(t, want, c.fail(m[0].(uint8), m[1:]...), "%s %q", name, bad)
		}
		c.clunk(3)
	}
	es, err := os.ReadDir(sh.dir)
	require.NoError(t, err)
	assert.Len(t, es, 2, "nothing created")
	_, err = os.Stat(sh.path("d"))
	require.NoError(t, err, "not removed through \"..\"")
	sh.checkOutside(t)
}

// TestPseudoFilesystemsAreOpaque shares the host's "/", read-only, as
// govmm run --rootfs / does: /proc is a directory the guest can mount on,
// but not enter.
func TestPseudoFilesystemsAreOpaque(t *testing.T) {
	if !isProc(t, "/proc") {
		t.Skip("no procfs at /proc")
	}
	s, err := NewServer("/", Options{ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	c := session(t, s)

	q := c.mustWalk(0, 1, "proc")
	assert.Equal(t, uint8(P9_QTDIR), q.Type)
	c.getattr(1)
	qids, err := c.walk(0, 2, "proc", "self", "mem")
	require.NoError(t, err)
	assert.Len(t, qids, 1, "stopped at /proc")
	_, err = c.walk(1, 2, "self")
	assert.Equal(t, unix.EACCES, err)
	_, err = c.walk(1, 2, "1")
	assert.Equal(t, unix.EACCES, err)
	assert.Equal(t, c.getattr(0).qid, c.mustWalk(1, 3, ".."), "back up is fine")
	require.NoError(t, c.lopen(1, P9_DOTL_RDONLY))
	assert.Empty(t, c.readdir(1, 0, 4096), "reads as empty")

	// A regular directory of "/" is readable as usual.
	c.mustWalk(0, 4, "etc")
	require.NoError(t, c.lopen(4, P9_DOTL_RDONLY))
	assert.NotEmpty(t, c.readdirAll(4, 8192))
}

// TestMalformedMessages sends broken messages: each gets an Rlerror (or
// no reply when there is no tag to answer), never a panic.
func TestMalformedMessages(t *testing.T) {
	sh := newShare(t)
	require.NoError(t, os.WriteFile(sh.path("f"), bytes.Repeat([]byte("a"), 5000), 0o644))
	s := sh.start(t, false)
	c := session(t, s)
	c.mustWalk(0, 1, "f")
	require.NoError(t, c.lopen(1, P9_DOTL_RDWR))

	resp := make([]byte, 8192)
	rlerror := func(req []byte) unix.Errno {
		t.Helper()
		n := s.Handle(req, resp)
		require.Equal(t, rlerrorSize, n, "reply to % x", req[:min(len(req), 16)])
		require.Equal(t, uint8(Rlerror), resp[4])
		require.Equal(t, req[5:7], resp[5:7], "tag")
		return unix.Errno(binary.LittleEndian.Uint32(resp[7:]))
	}

	// Too short for a tag: no reply.
	for k := range headerSize {
		assert.Zero(t, s.Handle(make([]byte, k), resp))
	}
	// The size field lies.
	m := tmsg(Tclunk, 1, uint32(5))
	binary.LittleEndian.PutUint32(m, uint32(len(m)+1))
	assert.Equal(t, unix.EINVAL, rlerror(m))
	binary.LittleEndian.PutUint32(m, 3)
	assert.Equal(t, unix.EINVAL, rlerror(m))
	binary.LittleEndian.PutUint32(m, 0xFFFFFFFF)
	assert.Equal(t, unix.EINVAL, rlerror(m))
	// Types the server does not serve.
	for _, typ := range []uint8{0, 1, Tlerror, Rlerror, Rversion, Tauth, Topen, Tcreate, Tstat, Twstat, Terror, 99, 255} {
		assert.Equal(t, unix.EOPNOTSUPP, rlerror(tmsg(typ, 7)), "type %d", typ)
	}
	// Every handled type, with every truncation of a valid-looking body.
	full := map[uint8][]any{
		Tversion:     {uint32(8192), Version},
		Tattach:      {uint32(50), uint32(NOFID), "u", "a", uint32(0)},
		Tflush:       {uint16(3)},
		Twalk:        {uint32(0), uint32(51), []string{"f"}},
		Tread:        {uint32(1), uint64(0), uint32(10)},
		Twrite:       {uint32(1), uint64(0), uint32(3), raw("abc")},
		Tclunk:       {uint32(1)},
		Tremove:      {uint32(1)},
		Tstatfs:      {uint32(0)},
		Tlopen:       {uint32(1), uint32(0)},
		Tlcreate:     {uint32(0), "n", uint32(0), uint32(0o644), uint32(0)},
		Tsymlink:     {uint32(0), "n", "t", uint32(0)},
		Tmknod:       {uint32(0), "n", uint32(0o644), uint32(0), uint32(0), uint32(0)},
		Trename:      {uint32(1), uint32(0), "n"},
		Treadlink:    {uint32(1)},
		Tgetattr:     {uint32(0), uint64(0)},
		Tsetattr:     {uint32(1), uint32(0), uint32(0), uint32(0), uint32(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0)},
		Txattrwalk:   {uint32(0), uint32(52), "n"},
		Txattrcreate: {uint32(0), "n", uint64(0), uint32(0)},
		Treaddir:     {uint32(0), uint64(0), uint32(100)},
		Tfsync:       {uint32(1), uint32(0)},
		Tlock:        {uint32(1), uint8(0), uint32(0), uint64(0), uint64(0), uint32(0), "c"},
		Tgetlock:     {uint32(1), uint8(0), uint64(0), uint64(0), uint32(0), "c"},
		Tlink:        {uint32(0), uint32(1), "n"},
		Tmkdir:       {uint32(0), "n", uint32(0o755), uint32(0)},
		Trenameat:    {uint32(0), "a", uint32(0), "b"},
		Tunlinkat:    {uint32(0), "n", uint32(0)},
	}
	optionalTail := map[uint8]int{Tfsync: 4, Tattach: 4} // datasync, n_uname
	for typ, fields := range full {
		whole := tmsg(typ, 9, fields...)
		for k := headerSize; k < len(whole)-optionalTail[typ]; k++ {
			m := append([]byte(nil), whole[:k]...)
			binary.LittleEndian.PutUint32(m, uint32(k))
			e := rlerror(m)
			if typ != Txattrwalk && typ != Txattrcreate {
				assert.Equal(t, unix.EINVAL, e, "type %d cut to %d bytes", typ, k)
			}
		}
	}
	c.version(MaxMsize) // the truncated Tversions ended the session
	c.attach(0)
	c.mustWalk(0, 1, "f")
	require.NoError(t, c.lopen(1, P9_DOTL_RDWR))

	// A string whose length runs past the message.
	m = tmsg(Twalk, 5, uint32(0), uint32(2), uint16(1), uint16(100), raw("ab"))
	assert.Equal(t, unix.EINVAL, rlerror(m))
	// nwname beyond MAXWELEM, and beyond the message.
	assert.Equal(t, unix.EINVAL, rlerror(tmsg(Twalk, 5, uint32(0), uint32(2), uint16(0xFFFF))))
	// Twrite that claims more data than it carries.
	assert.Equal(t, unix.EINVAL, rlerror(tmsg(Twrite, 5, uint32(1), uint64(0), uint32(1000), raw("abc"))))
	assert.Equal(t, unix.EINVAL, rlerror(tmsg(Twrite, 5, uint32(1), uint64(1<<63), uint32(3), raw("abc"))))
	assert.Equal(t, unix.EINVAL, rlerror(tmsg(Tread, 5, uint32(1), uint64(1<<63), uint32(3))))
	// Huge counts are cut to the reply buffer.
	n := s.Handle(tmsg(Tread, 5, uint32(1), uint64(0), uint32(0xFFFFFFFF)), resp[:1000])
	assert.Equal(t, 1000, n)
	assert.EqualValues(t, 1000-ioHeaderSize, binary.LittleEndian.Uint32(resp[7:]))
	c.mustWalk(0, 2)
	require.NoError(t, c.lopen(2, P9_DOTL_RDONLY))
	n = s.Handle(tmsg(Treaddir, 5, uint32(2), uint64(0), uint32(0xFFFFFFFF)), resp[:200])
	assert.LessOrEqual(t, n, 200)
	assert.Equal(t, uint8(Rreaddir), resp[4])
	// A reply buffer too small for the reply: Rlerror; too small for that
	// too: no reply.
	assert.Equal(t, rlerrorSize, s.Handle(tmsg(Tgetattr, 5, uint32(0), uint64(0)), resp[:20]))
	assert.Equal(t, uint8(Rlerror), resp[4])
	assert.EqualValues(t, unix.EMSGSIZE, binary.LittleEndian.Uint32(resp[7:]))
	assert.Zero(t, s.Handle(tmsg(Tgetattr, 5, uint32(0), uint64(0)), resp[:10]))
	// Larger than msize.
	c.version(8192)
	c.attach(0)
	assert.Equal(t, unix.EMSGSIZE, rlerror(tmsg(Tsymlink, 5, uint32(0), "n", strings.Repeat("x", 9000), uint32(0))))
	// A reply is never larger than msize, whatever the buffer.
	c.mustWalk(0, 1, "f")
	require.NoError(t, c.lopen(1, P9_DOTL_RDONLY))
	big := make([]byte, 100000)
	n = s.Handle(tmsg(Tread, 5, uint32(1), uint64(0), uint32(100000)), big)
	assert.Equal(t, 5000+ioHeaderSize, n)
	require.NoError(t, os.WriteFile(sh.path("f"), make([]byte, 20000), 0o644))
	n = s.Handle(tmsg(Tread, 5, uint32(1), uint64(0), uint32(100000)), big)
	assert.Equal(t, 8192, n)
	sh.checkOutside(t)
}

// TestScatteredBuffers serves requests whose messages are cut into
// buffers of a few bytes, as a descriptor chain may be: the replies are
// the same as with one buffer each.
func TestScatteredBuffers(t *testing.T) {
	sh := newShare(t)
	s := sh.start(t, false)
	c := session(t, s)
	c.mustWalk(0, 1)
	require.NoError(t, c.lcreate(1, "f", P9_DOTL_RDWR, 0o644))
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i)
	}
	split := func(b []byte, n int) [][]byte {
		var out [][]byte
		for len(b) > 0 {
			k := min(n, len(b))
			out = append(out, b[:k])
			b = b[k:]
		}
		return out
	}
	w := tmsg(Twrite, 3, uint32(1), uint64(0), uint32(len(data)), raw(data))
	out := make([]byte, 64)
	n := s.HandleBuffers(split(w, 5), split(out, 3))
	require.EqualValues(t, headerSize+4, n)
	assert.Equal(t, uint8(Rwrite), out[4])
	assert.EqualValues(t, len(data), binary.LittleEndian.Uint32(out[7:]))

	r := tmsg(Tread, 4, uint32(1), uint64(0), uint32(len(data)))
	out = make([]byte, 4000)
	// Linux's zero-copy layout: the 11-byte header alone, then pages.
	bufs := append([][]byte{out[:ioHeaderSize]}, split(out[ioHeaderSize:], 7)...)
	n = s.HandleBuffers(split(r, 1), bufs)
	require.EqualValues(t, ioHeaderSize+len(data), n)
	assert.Equal(t, uint8(Rread), out[4])
	assert.Equal(t, data, out[ioHeaderSize:n])
}

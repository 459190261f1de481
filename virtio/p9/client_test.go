package p9

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A tiny 9P2000.L client for the tests: it encodes T-messages by hand,
// hands them to Server.Handle and decodes the replies, checking the
// framing of every reply (size field equal to the length returned, the
// request's tag, an R-type one above the T-type or Rlerror).

// raw is a field to put into a message verbatim.
type raw []byte

// tmsg encodes a T-message: size[4] type[1] tag[2] and the fields, which
// are uint8, uint16, uint32, uint64, string (len[2] and bytes), []string
// (a count[2] and the strings) or raw.
func tmsg(typ uint8, tag uint16, fields ...any) []byte {
	e := encoder{max: 1 << 30}
	e.u32(0)
	e.u8(typ)
	e.u16(tag)
	for _, f := range fields {
		switch v := f.(type) {
		case uint8:
			e.u8(v)
		case uint16:
			e.u16(v)
		case uint32:
			e.u32(v)
		case int:
			e.u32(uint32(v))
		case uint64:
			e.u64(v)
		case string:
			e.str(v)
		case []string:
			e.u16(uint16(len(v)))
			for _, s := range v {
				e.str(s)
			}
		case raw:
			e.b = append(e.b, v...)
		default:
			panic(fmt.Sprintf("tmsg: field of type %T", f))
		}
	}
	binary.LittleEndian.PutUint32(e.b, uint32(len(e.b)))
	return e.b
}

type client struct {
	t        testing.TB
	s        *Server
	tag      uint16
	respSize int
}

func newClient(t testing.TB, s *Server) *client {
	return &client{t: t, s: s, respSize: MaxMsize}
}

// rpc sends a T-message and returns the reply's type and body.
func (c *client) rpc(typ uint8, fields ...any) (uint8, *decoder) {
	c.t.Helper()
	c.tag++
	tag := c.tag
	if typ == Tversion {
		tag = NOTAG
	}
	resp := make([]byte, c.respSize)
	n := c.s.Handle(tmsg(typ, tag, fields...), resp)
	require.GreaterOrEqual(c.t, n, headerSize, "no reply")
	require.EqualValues(c.t, n, binary.LittleEndian.Uint32(resp), "size field")
	require.Equal(c.t, tag, binary.LittleEndian.Uint16(resp[5:]), "tag")
	rt := resp[4]
	require.True(c.t, rt == typ+1 || rt == Rlerror, "reply type %d to %d", rt, typ)
	return rt, &decoder{b: resp[headerSize:n]}
}

// ok sends a T-message that must succeed and returns the reply's body.
func (c *client) ok(typ uint8, fields ...any) *decoder {
	c.t.Helper()
	rt, d := c.rpc(typ, fields...)
	if rt == Rlerror {
		c.t.Fatalf("T-message %d: Rlerror %v", typ, unix.Errno(d.u32()))
	}
	return d
}

// fail sends a T-message that must fail and returns its errno.
func (c *client) fail(typ uint8, fields ...any) unix.Errno {
	c.t.Helper()
	rt, d := c.rpc(typ, fields...)
	require.Equal(c.t, uint8(Rlerror), rt, "T-message %d succeeded", typ)
	e := unix.Errno(d.u32())
	require.False(c.t, d.err)
	return e
}

// do sends a T-message and returns nil or the Rlerror's errno.
func (c *client) do(typ uint8, fields ...any) (*decoder, error) {
	c.t.Helper()
	rt, d := c.rpc(typ, fields...)
	if rt == Rlerror {
		return nil, unix.Errno(d.u32())
	}
	return d, nil
}

func (c *client) version(msize uint32) {
	c.t.Helper()
	d := c.ok(Tversion, msize, Version)
	require.Equal(c.t, min(msize, MaxMsize), d.u32())
	require.Equal(c.t, Version, d.str())
}

// attach makes fid the root and returns its qid.
func (c *client) attach(fid uint32) Qid {
	c.t.Helper()
	d := c.ok(Tattach, fid, uint32(NOFID), "root", "", uint32(0))
	return readQid(d)
}

func readQid(d *decoder) Qid {
	return Qid{Type: d.u8(), Version: d.u32(), Path: d.u64()}
}

// walk walks newfid from fid and returns the qids, or the Rlerror.
func (c *client) walk(fid, newfid uint32, names ...string) ([]Qid, error) {
	c.t.Helper()
	d, err := c.do(Twalk, fid, newfid, names)
	if err != nil {
		return nil, err
	}
	n := d.u16()
	qids := make([]Qid, n)
	for i := range qids {
		qids[i] = readQid(d)
	}
	require.False(c.t, d.err)
	return qids, nil
}

// mustWalk walks all names or fails the test.
func (c *client) mustWalk(fid, newfid uint32, names ...string) Qid {
	c.t.Helper()
	qids, err := c.walk(fid, newfid, names...)
	require.NoError(c.t, err, "walk %v", names)
	require.Len(c.t, qids, len(names), "walk %v", names)
	if len(qids) == 0 {
		return Qid{}
	}
	return qids[len(qids)-1]
}

func (c *client) lopen(fid uint32, flags uint32) error {
	c.t.Helper()
	_, err := c.do(Tlopen, fid, flags)
	return err
}

func (c *client) lcreate(fid uint32, name string, flags, mode uint32) error {
	c.t.Helper()
	_, err := c.do(Tlcreate, fid, name, flags, mode, uint32(0))
	return err
}

func (c *client) read(fid uint32, off uint64, count uint32) []byte {
	c.t.Helper()
	d := c.ok(Tread, fid, off, count)
	n := d.u32()
	data := d.take(int(n))
	require.False(c.t, d.err, "Rread count %d beyond the message", n)
	return append([]byte(nil), data...)
}

// readAll reads a whole file in chunks.
func (c *client) readAll(fid uint32, chunk uint32) []byte {
	c.t.Helper()
	var out []byte
	for {
		b := c.read(fid, uint64(len(out)), chunk)
		if len(b) == 0 {
			return out
		}
		out = append(out, b...)
	}
}

func (c *client) write(fid uint32, off uint64, data []byte) uint32 {
	c.t.Helper()
	d := c.ok(Twrite, fid, off, uint32(len(data)), raw(data))
	return d.u32()
}

func (c *client) clunk(fid uint32) {
	c.t.Helper()
	c.ok(Tclunk, fid)
}

type entry struct {
	qid  Qid
	off  uint64
	typ  uint8
	name string
}

// readdir reads one Rreaddir.
func (c *client) readdir(fid uint32, off uint64, count uint32) []entry {
	c.t.Helper()
	d := c.ok(Treaddir, fid, off, count)
	n := d.u32()
	require.LessOrEqual(c.t, n, count)
	data := decoder{b: d.take(int(n))}
	require.False(c.t, d.err)
	var es []entry
	for len(data.b) > 0 {
		e := entry{qid: readQid(&data), off: data.u64(), typ: data.u8(), name: data.str()}
		require.False(c.t, data.err, "malformed entry")
		es = append(es, e)
	}
	return es
}

// readdirAll reads a whole directory, count bytes at a time.
func (c *client) readdirAll(fid uint32, count uint32) []entry {
	c.t.Helper()
	var all []entry
	off := uint64(0)
	for {
		es := c.readdir(fid, off, count)
		if len(es) == 0 {
			return all
		}
		all = append(all, es...)
		off = es[len(es)-1].off
	}
}

type attr struct {
	valid                 uint64
	qid                   Qid
	mode, uid, gid        uint32
	nlink, rdev, size     uint64
	blksize, blocks       uint64
	atimeSec, atimeNsec   uint64
	mtimeSec, mtimeNsec   uint64
	ctimeSec, ctimeNsec   uint64
	btime1, btime2, g, dv uint64
}

func (c *client) getattr(fid uint32) attr {
	c.t.Helper()
	d := c.ok(Tgetattr, fid, uint64(P9_STATS_ALL))
	a := attr{valid: d.u64(), qid: readQid(d), mode: d.u32(), uid: d.u32(), gid: d.u32(),
		nlink: d.u64(), rdev: d.u64(), size: d.u64(), blksize: d.u64(), blocks: d.u64(),
		atimeSec: d.u64(), atimeNsec: d.u64(), mtimeSec: d.u64(), mtimeNsec: d.u64(),
		ctimeSec: d.u64(), ctimeNsec: d.u64(), btime1: d.u64(), btime2: d.u64(), g: d.u64(), dv: d.u64()}
	require.False(c.t, d.err)
	require.Empty(c.t, d.b, "Rgetattr longer than its fields")
	return a
}

// setattr sends Tsetattr.
func (c *client) setattr(fid, valid, mode, uid, gid uint32, size uint64, atime, mtime unix.Timespec) error {
	c.t.Helper()
	_, err := c.do(Tsetattr, fid, valid, mode, uid, gid, size,
		uint64(atime.Sec), uint64(atime.Nsec), uint64(mtime.Sec), uint64(mtime.Nsec))
	return err
}

// share is a share for a test: base/share, next to base/outside, which
// holds a file the guest must never reach.
type share struct {
	base, dir, outside string
	s                  *Server
	secretStat         unix.Stat_t
}

const secret = "the host's secret"

// testNoOpenat2 makes the servers of the tests resolve names without
// openat2(2), as on a kernel without it.
var testNoOpenat2 bool

func newShare(t testing.TB) *share {
	t.Helper()
	return newShareIn(t, t.TempDir())
}

// newShareIn makes a share in the directory base.
func newShareIn(t testing.TB, base string) *share {
	t.Helper()
	sh := &share{base: base, dir: filepath.Join(base, "share"), outside: filepath.Join(base, "outside")}
	require.NoError(t, os.Mkdir(sh.dir, 0o755))
	require.NoError(t, os.Mkdir(sh.outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(sh.outside, "secret"), []byte(secret), 0o644))
	require.NoError(t, unix.Stat(filepath.Join(sh.outside, "secret"), &sh.secretStat))
	return sh
}

func (sh *share) start(t testing.TB, readOnly bool) *Server {
	t.Helper()
	s, err := NewServer(sh.dir, Options{ReadOnly: readOnly})
	require.NoError(t, err)
	if testNoOpenat2 {
		s.openat2 = false
	}
	t.Cleanup(func() { s.Close() })
	sh.s = s
	return s
}

// session returns a client with a negotiated session and the root
// attached as fid 0.
func session(t testing.TB, s *Server) *client {
	t.Helper()
	c := newClient(t, s)
	c.version(MaxMsize)
	c.attach(0)
	return c
}

// path returns the host path of a name in the share.
func (sh *share) path(name string) string { return filepath.Join(sh.dir, name) }

// checkOutside checks that nothing outside the share changed: base holds
// only share and outside, and outside only the secret.
func (sh *share) checkOutside(t testing.TB) {
	t.Helper()
	names := func(dir string) []string {
		es, err := os.ReadDir(dir)
		require.NoError(t, err)
		var ns []string
		for _, e := range es {
			ns = append(ns, e.Name())
		}
		return ns
	}
	require.Equal(t, []string{"outside", "share"}, names(sh.base))
	require.Equal(t, []string{"secret"}, names(sh.outside))
	b, err := os.ReadFile(filepath.Join(sh.outside, "secret"))
	require.NoError(t, err)
	require.Equal(t, secret, string(b))
	var st unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Join(sh.outside, "secret"), &st))
	want := sh.secretStat
	require.Equal(t, []any{want.Mode, want.Uid, want.Gid, want.Nlink, want.Size, want.Mtim},
		[]any{st.Mode, st.Uid, st.Gid, st.Nlink, st.Size, st.Mtim}, "the secret's inode changed")
	var dst unix.Stat_t
	require.NoError(t, unix.Stat(sh.outside, &dst))
	require.Equal(t, uint32(unix.S_IFDIR|0o755), dst.Mode&^uint32(umask()))
}

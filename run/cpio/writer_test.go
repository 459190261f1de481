package cpio

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// want is what one entry of the sample archive must read back as. Modes
// are written out as octal c_mode values, independent of writer.go.
type want struct {
	name       string
	mode       uint32
	nlink      uint32
	data       []byte
	rmaj, rmin uint32
	target     string // symlinks: the data, as a string
}

// bigSize is deliberately not a multiple of 4, so the data needs padding.
const bigSize = 1<<20 + 3

// sampleArchive writes an archive with one entry of each kind, names of
// every length modulo 4 and data of every length modulo 4, and returns it
// with what each entry must read back as, in order.
func sampleArchive(t *testing.T, withDevice bool) ([]byte, []want) {
	t.Helper()
	big := make([]byte, bigSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	initScript := []byte("#!/bin/sh\necho hello\n")

	var buf bytes.Buffer
	w := NewWriter(&buf)
	var ws []want
	require.NoError(t, w.MkdirAll("/dev", 0o755))
	ws = append(ws, want{name: "dev", mode: 0o040755, nlink: 2})
	if withDevice {
		require.NoError(t, w.CharDevice("/dev/console", 0o600, 5, 1))
		ws = append(ws, want{name: "dev/console", mode: 0o020600, nlink: 1, rmaj: 5, rmin: 1})
	}
	require.NoError(t, w.Dir("bin", 0o755))
	ws = append(ws, want{name: "bin", mode: 0o040755, nlink: 2})
	require.NoError(t, w.File("/init", 0o755, initScript))
	ws = append(ws, want{name: "init", mode: 0o100755, nlink: 1, data: initScript})
	require.NoError(t, w.FileFrom("bin/big", 0o555, bigSize, bytes.NewReader(big)))
	ws = append(ws, want{name: "bin/big", mode: 0o100555, nlink: 1, data: big})
	require.NoError(t, w.Symlink("bin/sh", "big"))
	ws = append(ws, want{name: "bin/sh", mode: 0o120777, nlink: 1, target: "big"})
	require.NoError(t, w.Symlink("bin/abs", "/bin/big"))
	ws = append(ws, want{name: "bin/abs", mode: 0o120777, nlink: 1, target: "/bin/big"})
	require.NoError(t, w.File("empty", 0o644, nil))
	ws = append(ws, want{name: "empty", mode: 0o100644, nlink: 1})
	require.NoError(t, w.Dir("tmp", fs.ModeDir|fs.ModeSticky|0o777))
	ws = append(ws, want{name: "tmp", mode: 0o041777, nlink: 2})
	require.NoError(t, w.File("suid", fs.ModeSetuid|fs.ModeSetgid|0o711, []byte("s")))
	ws = append(ws, want{name: "suid", mode: 0o106711, nlink: 1, data: []byte("s")})
	// MkdirAll makes a, a/bb, a/bb/ccc, then the names a/f1 .. a/f1234
	// (lengths 4 to 7) and data lengths 1 to 4 cover every residue.
	require.NoError(t, w.MkdirAll("a/bb/ccc", 0o700))
	for _, d := range []string{"a", "a/bb", "a/bb/ccc"} {
		ws = append(ws, want{name: d, mode: 0o040700, nlink: 2})
	}
	for i, n := range []string{"a/f1", "a/f12", "a/f123", "a/f1234"} {
		data := []byte("xyzw"[:i+1])
		require.NoError(t, w.File(n, 0o600, data))
		ws = append(ws, want{name: n, mode: 0o100600, nlink: 1, data: data})
	}
	// Already there: nothing is written.
	require.NoError(t, w.MkdirAll("a/bb", 0o755))
	require.NoError(t, w.MkdirAll("a/bb/ccc/", 0o755))
	// One new level below existing ones.
	require.NoError(t, w.MkdirAll("a//bb/./ccc/dddd", 0o750))
	ws = append(ws, want{name: "a/bb/ccc/dddd", mode: 0o040750, nlink: 2})
	require.NoError(t, w.Close())
	require.NoError(t, w.Close(), "a second Close is a no-op")
	return buf.Bytes(), ws
}

func TestRoundTrip(t *testing.T) {
	archive, ws := sampleArchive(t, true)
	entries, err := readArchive(archive)
	require.NoError(t, err)
	require.Len(t, entries, len(ws)+1, "the entries and the trailer")
	for i, w := range ws {
		e := entries[i]
		assert.Equal(t, w.name, e.name, "entry %d", i)
		assert.Equal(t, uint32(i+1), e.ino, "%s: inode numbers count from 1", w.name)
		assert.Equalf(t, w.mode, e.mode, "%s: mode %o, want %o", w.name, e.mode, w.mode)
		assert.Equal(t, w.nlink, e.nlink, "%s: nlink", w.name)
		wantData := w.data
		if w.target != "" {
			wantData = []byte(w.target)
		}
		assert.Equal(t, uint32(len(wantData)), e.size, "%s: c_filesize", w.name)
		assert.True(t, bytes.Equal(wantData, e.data), "%s: data differs", w.name)
		assert.Equal(t, [2]uint32{w.rmaj, w.rmin}, [2]uint32{e.rmaj, e.rmin}, "%s: rdev", w.name)
		assert.Zero(t, e.uid, w.name)
		assert.Zero(t, e.gid, w.name)
		assert.Zero(t, e.mtime, w.name)
		assert.Zero(t, e.maj, w.name)
		assert.Zero(t, e.min, w.name)
		assert.Zero(t, e.chk, w.name)
	}
	trailer := entries[len(entries)-1]
	assert.Equal(t, "TRAILER!!!", trailer.name)
	assert.Zero(t, trailer.ino)
	assert.Zero(t, trailer.mode)
	assert.Zero(t, trailer.size)
	assert.Zero(t, len(archive)%4, "the archive ends on a multiple of 4")
}

// TestTrailerBytes pins an empty archive to the exact bytes GNU cpio
// writes for its trailer (before cpio's padding to 512 bytes): 110 header
// bytes, "TRAILER!!!" with its NUL, and 3 NULs up to 124.
func TestTrailerBytes(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, NewWriter(&buf).Close())
	wantHeader := "070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "0000000B" + "00000000"
	assert.Equal(t, wantHeader+"TRAILER!!!\x00\x00\x00\x00", buf.String())
	assert.Equal(t, 124, buf.Len())
}

// TestHeaderBytes pins one file entry byte for byte.
func TestHeaderBytes(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.File("hello", 0o644, []byte("hi!\n!")))
	wantHeader := "070701" +
		"00000001" + // c_ino
		"000081A4" + // c_mode 0100644
		"00000000" + "00000000" + // c_uid, c_gid
		"00000001" + // c_nlink
		"00000000" + // c_mtime
		"00000005" + // c_filesize
		"00000000" + "00000000" + "00000000" + "00000000" + // c_maj, c_min, c_rmaj, c_rmin
		"00000006" + // c_namesize: "hello" and its NUL
		"00000000" // c_chksum
	// 110 + 6 = 116 is aligned; the data's 5 bytes need 3 NULs.
	assert.Equal(t, wantHeader+"hello\x00"+"hi!\n!\x00\x00\x00", buf.String())
}

func TestPadding(t *testing.T) {
	for n, wantLen := range map[int64]int{0: 0, 1: 3, 2: 2, 3: 1, 4: 0, 5: 3, 1<<32 + 2: 2} {
		p := padding(n)
		assert.Len(t, p, wantLen, "padding(%d)", n)
		assert.Zero(t, (n+int64(len(p)))%4)
		assert.Equal(t, make([]byte, wantLen), p, "padding is NULs")
	}
}

// TestRejected checks each argument error, and that the rejected calls
// leave nothing behind: the archive afterwards holds exactly the entries
// that succeeded.
func TestRejected(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Dir("d", 0o755))
	require.NoError(t, w.File("f", 0o644, []byte("x")))

	cases := []struct {
		what string
		err  error
		msg  string
	}{
		{"empty name", w.File("", 0o644, nil), "empty entry name"},
		{"NUL in name", w.File("d/a\x00b", 0o644, nil), "NUL"},
		{"dotdot", w.File("d/../etc/passwd", 0o644, nil), `".."`},
		{"dotdot at end", w.Dir("d/..", 0o755), `".."`},
		{"root", w.Dir("/", 0o755), "root directory"},
		{"dot root", w.Dir("./", 0o755), "root directory"},
		{"too long", w.File(strings.Repeat("n", 4096), 0o644, nil), "PATH_MAX"},
		{"duplicate", w.File("f", 0o644, nil), "already in the archive"},
		{"duplicate dir", w.Dir("/d/", 0o755), "already in the archive"},
		{"no parent", w.File("etc/passwd", 0o644, nil), `directory "etc" of "etc/passwd" is not in the archive`},
		{"parent is file", w.File("f/g", 0o644, nil), "not as a directory"},
		{"mkdirall through file", w.MkdirAll("f/g/h", 0o755), "not a directory"},
		{"file with type bits", w.File("g", fs.ModeSymlink|0o777, nil), "cannot have"},
		{"octal setuid", w.File("g", 0o4755, nil), "use fs.ModeSetuid"},
		{"dir with device bit", w.Dir("g", fs.ModeDir|fs.ModeDevice|0o755), "cannot have"},
		{"device with dir bit", w.CharDevice("g", fs.ModeDir|0o600, 5, 1), "cannot have"},
		{"major too big", w.CharDevice("g", 0o600, 4096, 0), "dev_t"},
		{"minor too big", w.CharDevice("g", 0o600, 1, 1<<20), "dev_t"},
		{"negative size", w.FileFrom("g", 0o644, -1, strings.NewReader("")), "size -1"},
		{"huge size", w.FileFrom("g", 0o644, 1<<32, strings.NewReader("")), "size 4294967296"},
		{"empty target", w.Symlink("g", ""), "empty target"},
		{"NUL in target", w.Symlink("g", "a\x00"), "NUL"},
		{"long target", w.Symlink("g", strings.Repeat("t", 4096)), "PATH_MAX"},
	}
	for _, c := range cases {
		if assert.Error(t, c.err, c.what) {
			assert.Contains(t, c.err.Error(), c.msg, c.what)
		}
	}
	// Limits are inclusive where the kernel allows it.
	require.NoError(t, w.CharDevice("d/maxdev", 0o600, 4095, 1<<20-1))
	require.NoError(t, w.Symlink("d/longlink", strings.Repeat("t", 4095)))
	require.NoError(t, w.File("d/"+strings.Repeat("n", 4093), 0o644, nil), "4095 bytes with the NUL fit")
	require.NoError(t, w.Close())

	entries, err := readArchive(buf.Bytes())
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.name)
	}
	assert.Equal(t, []string{"d", "f", "d/maxdev", "d/longlink", "d/" + strings.Repeat("n", 4093), "TRAILER!!!"}, names)
	assert.Equal(t, [2]uint32{4095, 1<<20 - 1}, [2]uint32{entries[2].rmaj, entries[2].rmin})
	assert.Equal(t, []uint32{1, 2, 3, 4, 5}, []uint32{entries[0].ino, entries[1].ino, entries[2].ino,
		entries[3].ino, entries[4].ino}, "rejected calls use no inode numbers")
}

func TestFileFromWrongLength(t *testing.T) {
	for _, c := range []struct {
		name string
		data string
		size int64
		msg  string
	}{
		{"short", "abc", 4, "ended after 3 bytes, but its size was given as 4"},
		{"long", "abcde", 4, "goes on past the 4 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			err := w.FileFrom("f", 0o644, c.size, strings.NewReader(c.data))
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.msg)
			// The header is out: the archive is damaged for good.
			assert.Equal(t, err, w.Dir("d", 0o755))
			assert.Equal(t, err, w.Close())
		})
	}
}

// failingReader yields some bytes, then an error.
type failingReader struct{ left int }

var errDisk = errors.New("disk on fire")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, errDisk
	}
	n := min(len(p), r.left)
	r.left -= n
	return n, nil
}

func TestFileFromReadError(t *testing.T) {
	w := NewWriter(io.Discard)
	err := w.FileFrom("f", 0o644, 10, &failingReader{left: 4})
	require.ErrorIs(t, err, errDisk)
	assert.Contains(t, err.Error(), `"f" after 4 of 10 bytes`)
	assert.ErrorIs(t, w.Close(), errDisk)

	// An error where EOF should be, once all bytes are in.
	w = NewWriter(io.Discard)
	err = w.FileFrom("f", 0o644, 4, &failingReader{left: 4})
	require.ErrorIs(t, err, errDisk)
	assert.Contains(t, err.Error(), "past its 4 bytes")
}

// limitedWriter accepts n bytes, then fails.
type limitedWriter struct{ n int }

var errFull = errors.New("no space left")

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		k := l.n
		l.n = 0
		return k, errFull
	}
	l.n -= len(p)
	return len(p), nil
}

func TestWriteErrorIsSticky(t *testing.T) {
	w := NewWriter(&limitedWriter{n: 200})
	require.NoError(t, w.Dir("d", 0o755))
	err := w.FileFrom("d/f", 0o644, 1000, bytes.NewReader(make([]byte, 1000)))
	require.ErrorIs(t, err, errFull)
	assert.ErrorIs(t, w.File("g", 0o644, nil), errFull)
	assert.ErrorIs(t, w.Close(), errFull)

	w = NewWriter(&limitedWriter{n: 50})
	require.ErrorIs(t, w.Close(), errFull, "a failed trailer is reported")
}

func TestShortWriteWithoutError(t *testing.T) {
	w := NewWriter(shortWriter{})
	assert.ErrorIs(t, w.Dir("d", 0o755), io.ErrShortWrite)
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestClosed(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Close())
	n := buf.Len()
	assert.ErrorIs(t, w.Dir("d", 0o755), ErrClosed)
	assert.ErrorIs(t, w.File("f", 0o644, nil), ErrClosed)
	assert.ErrorIs(t, w.FileFrom("f", 0o644, 0, strings.NewReader("")), ErrClosed)
	assert.ErrorIs(t, w.Symlink("s", "t"), ErrClosed)
	assert.ErrorIs(t, w.CharDevice("c", 0o600, 5, 1), ErrClosed)
	assert.ErrorIs(t, w.MkdirAll("a/b", 0o755), ErrClosed)
	assert.NoError(t, w.Close())
	assert.Equal(t, n, buf.Len(), "nothing written after Close")
}

// TestExtractWithCpio unpacks the sample archive with GNU cpio, the tool
// initramfs archives are traditionally made and checked with, and compares
// the tree it creates.
func TestExtractWithCpio(t *testing.T) {
	cpioPath, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("the cpio tool is not installed (apt-get install cpio); skipping the cross-check")
	}
	// Only root may create device nodes.
	withDevice := os.Geteuid() == 0
	archive, ws := sampleArchive(t, withDevice)
	dir := t.TempDir()
	cmd := exec.Command(cpioPath, "-idm", "--no-absolute-filenames", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "cpio: %s", out)
	assert.Empty(t, string(out), "cpio has complaints")

	seen := map[string]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			seen[filepath.ToSlash(rel)] = true
		}
		return err
	})
	require.NoError(t, err)
	assert.Len(t, seen, len(ws), "cpio created exactly the archive's entries")

	for _, w := range ws {
		p := filepath.Join(dir, w.name)
		assert.True(t, seen[w.name], "%s not extracted", w.name)
		var st unix.Stat_t
		if !assert.NoError(t, unix.Lstat(p, &st), w.name) {
			continue
		}
		assert.Equalf(t, w.mode, st.Mode, "%s: mode %o, want %o", w.name, st.Mode, w.mode)
		switch w.mode & 0o170000 {
		case 0o100000:
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(w.data, got), "%s: contents differ", w.name)
			assert.Zero(t, st.Mtim.Sec, "%s: mtime", w.name)
		case 0o120000:
			got, err := os.Readlink(p)
			require.NoError(t, err)
			assert.Equal(t, w.target, got, w.name)
		case 0o020000:
			assert.Equal(t, w.rmaj, unix.Major(st.Rdev), w.name)
			assert.Equal(t, w.rmin, unix.Minor(st.Rdev), w.name)
		case 0o040000:
		default:
			t.Errorf("%s: unexpected mode %o", w.name, w.mode)
		}
	}
}

// FuzzWriter: any name either is rejected or reads back cleaned (relative,
// no "." or empty components), in an archive the strict reader accepts.
func FuzzWriter(f *testing.F) {
	for _, s := range []string{"init", "/dev/console", "a//b/./c", "../x", "a\x00b", "", "/", ".", "x/.."} {
		f.Add(s, []byte("data"))
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if parent := path.Dir(path.Clean("/" + name)); parent != "/" {
			_ = w.MkdirAll(parent, 0o755) // may fail on the same bad name
		}
		err := w.File(name, 0o644, data)
		require.NoError(t, w.Close())
		entries, rerr := readArchive(buf.Bytes())
		require.NoError(t, rerr)
		if err != nil {
			return
		}
		last := entries[len(entries)-2]
		assert.True(t, bytes.Equal(data, last.data), "data")
		assert.Equal(t, uint32(len(data)), last.size)
		assert.False(t, strings.HasPrefix(last.name, "/"), "stored name %q is absolute", last.name)
		for elem := range strings.SplitSeq(last.name, "/") {
			assert.NotContains(t, []string{"", ".", ".."}, elem, "stored name %q", last.name)
		}
	})
}

package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requirePathError checks that Open of path fails with an error that wraps
// target and whose message names the path and contains words.
func requirePathError(t *testing.T, path string, opts Options, target error, words string) {
	t.Helper()
	dev, err := Open(path, opts)
	require.Error(t, err)
	require.Nil(t, dev)
	if target != nil {
		require.ErrorIs(t, err, target)
	}
	require.Contains(t, err.Error(), path, "the error names the path")
	require.Contains(t, err.Error(), words)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	requirePathError(t, filepath.Join(dir, "missing.img"), Options{}, fs.ErrNotExist, "no such file")
	requirePathError(t, filepath.Join(dir, "missing.img"), Options{ReadOnly: true}, fs.ErrNotExist, "no such file")
	requirePathError(t, dir, Options{}, ErrNotImage, "is a directory")
	requirePathError(t, dir, Options{ReadOnly: true}, ErrNotImage, "is a directory")

	empty := filepath.Join(dir, "empty.img")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	requirePathError(t, empty, Options{}, ErrEmpty, "is empty")
	small := filepath.Join(dir, "small.img")
	require.NoError(t, os.WriteFile(small, make([]byte, SectorSize-1), 0o644))
	requirePathError(t, small, Options{ReadOnly: true}, ErrEmpty, "511 bytes")

	// A FIFO is refused without blocking in open(2) for a writer.
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, unix.Mkfifo(fifo, 0o644))
	done := make(chan struct{})
	go func() {
		defer close(done)
		requirePathError(t, fifo, Options{ReadOnly: true}, ErrNotImage, "not a regular file")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Open of a FIFO blocked")
	}
	requirePathError(t, "/dev/null", Options{ReadOnly: true}, ErrNotImage, "not a regular file")

	// Options.
	img, _ := newImage(t, "ok.img", SectorSize)
	requirePathError(t, img, Options{NumQueues: -1}, nil, "queues")
	requirePathError(t, img, Options{NumQueues: MaxQueues + 1}, nil, "queues")
	requirePathError(t, img, Options{Serial: strings.Repeat("x", 21)}, nil, "longer than 20")
	requirePathError(t, img, Options{Serial: "tab\there"}, nil, "printable")
	_, err := Open("", Options{})
	require.Error(t, err)

	// The image is not left locked by a failed Open.
	dev, err := Open(img, Options{})
	require.NoError(t, err)
	require.NoError(t, dev.Close())
}

// nobody is the user the permission checks run as when the tests run as
// root, whom permissions do not stop.
const nobody = 65534

// openAsNobody opens path as Open does, with the permission checks of an
// unprivileged user: as root, on a thread whose file system user ID
// (setfsuid(2), per thread) is nobody's, which also drops root's
// capability to override file permissions on that thread.
func openAsNobody(t *testing.T, path string, opts Options) (*Device, error) {
	if os.Geteuid() != 0 {
		return Open(path, opts)
	}
	type result struct {
		dev *Device
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked if the thread cannot be made root again: the
		// runtime then ends the thread with the goroutine.
		prev, err := unix.SetfsuidRetUid(nobody)
		if err != nil || prev != 0 {
			ch <- result{nil, fmt.Errorf("setfsuid: %v (previous %d)", err, prev)}
			return
		}
		dev, err := Open(path, opts)
		if back, _ := unix.SetfsuidRetUid(0); back == nobody {
			runtime.UnlockOSThread()
		}
		ch <- result{dev, err}
	}()
	r := <-ch
	return r.dev, r.err
}

func TestOpenPermissions(t *testing.T) {
	path, _ := newImage(t, "disk.img", SectorSize)
	// Let nobody reach the image through the private temporary folders.
	for dir := filepath.Dir(path); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		require.NoError(t, os.Chmod(dir, 0o755))
	}
	require.NoError(t, os.Chmod(path, 0o444))

	_, err := openAsNobody(t, path, Options{})
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "permission denied (add ,ro for a read-only disk)")
	dev, err := openAsNobody(t, path, Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, dev.Close())

	require.NoError(t, os.Chmod(path, 0))
	_, err = openAsNobody(t, path, Options{ReadOnly: true})
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "permission denied")
}

// flock locks belong to the open file description, so two Opens in one
// process conflict just as two processes do.
func TestLockConflicts(t *testing.T) {
	path, _ := newImage(t, "disk.img", SectorSize)
	rw, err := Open(path, Options{})
	require.NoError(t, err)
	requirePathError(t, path, Options{}, ErrLocked, "another process holds a lock")
	requirePathError(t, path, Options{ReadOnly: true}, ErrLocked, "another process holds a lock")
	require.NoError(t, rw.Close())

	// Read-only users share; a writer excludes them.
	ro1, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	ro2, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	requirePathError(t, path, Options{}, ErrLocked, "another process holds a lock")
	require.NoError(t, ro1.Close())
	requirePathError(t, path, Options{}, ErrLocked, "another process holds a lock")
	require.NoError(t, ro2.Close())

	// The same lock another process would take.
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_SH))
	requirePathError(t, path, Options{}, ErrLocked, "another process holds a lock")
	require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_UN))
	rw, err = Open(path, Options{})
	require.NoError(t, err)
	require.Equal(t, unix.EWOULDBLOCK, unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB))
	require.NoError(t, rw.Close())
}

// The capacity is the size rounded down to whole sectors; the bytes of a
// last partial sector are outside the disk.
func TestCapacity(t *testing.T) {
	for _, tc := range []struct {
		size     int
		capacity uint64
	}{{SectorSize, 1}, {testImageSize, 2048}, {testImageSize + 100, 2048}, {2*SectorSize - 1, 1}} {
		path, want := newImage(t, "disk.img", tc.size)
		e := newEnv(t, path, Options{})
		require.Equal(t, tc.capacity, e.dev.Capacity(), "size %d", tc.size)
		var cfg [8]byte
		e.dev.ReadConfig(cfgCapacity, cfg[:])
		require.Equal(t, tc.capacity, binary.LittleEndian.Uint64(cfg[:]))

		last := tc.capacity - 1
		p := randBytes(SectorSize)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(last, p))
		copy(want[last*SectorSize:], p)
		require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.write(tc.capacity, p))
		_, status := e.read(tc.capacity, SectorSize)
		require.Equal(t, byte(VIRTIO_BLK_S_IOERR), status)
		require.Equal(t, want, fileBytes(t, path), "the tail past the last sector is untouched")
		if tc.size%SectorSize != 0 {
			require.Equal(t, 1, e.log.count(slog.LevelWarn), "the partial sector is logged")
		}
	}
}

func TestConfigSpace(t *testing.T) {
	path, _ := newImage(t, "disk.img", testImageSize)
	dev, err := Open(path, Options{NumQueues: 2})
	require.NoError(t, err)
	defer dev.Close()

	cfg := make([]byte, configSize)
	dev.ReadConfig(0, cfg)
	le := binary.LittleEndian
	assert.Equal(t, uint64(2048), le.Uint64(cfg[cfgCapacity:]))
	assert.Equal(t, uint32(0), le.Uint32(cfg[cfgSizeMax:]))
	assert.Equal(t, uint32(QueueSize-2), le.Uint32(cfg[cfgSegMax:]))
	assert.Equal(t, uint32(512), le.Uint32(cfg[cfgBlkSize:]))
	assert.Equal(t, byte(3), cfg[cfgPhysicalBlockExp])
	assert.Equal(t, byte(0), cfg[cfgAlignmentOffset])
	assert.Equal(t, uint16(8), le.Uint16(cfg[cfgMinIOSize:]))
	assert.Equal(t, byte(0), cfg[cfgWriteback])
	assert.Equal(t, uint16(2), le.Uint16(cfg[cfgNumQueues:]))
	assert.Equal(t, uint32(maxDiscardSectors), le.Uint32(cfg[cfgMaxDiscardSectors:]))
	assert.Equal(t, uint32(256), le.Uint32(cfg[cfgMaxDiscardSeg:]))
	assert.Equal(t, uint32(8), le.Uint32(cfg[cfgDiscardSectorAlignment:]))
	assert.Equal(t, uint32(maxWriteZeroesSectors), le.Uint32(cfg[cfgMaxWriteZeroesSectors:]))
	assert.Equal(t, uint32(1), le.Uint32(cfg[cfgMaxWriteZeroesSeg:]))
	assert.Equal(t, byte(1), cfg[cfgWriteZeroesMayUnmap])
	assert.Equal(t, make([]byte, configSize-cfgMaxSecureEraseSectors), cfg[cfgMaxSecureEraseSectors:])

	// Any offset and length: the same bytes, zeros past the end.
	for _, tc := range []struct {
		off uint64
		n   int
	}{{1, 7}, {3, 1}, {33, 3}, {90, 6}, {95, 4}, {96, 4}, {200, 8}, {math.MaxUint64, 4}, {math.MaxUint64 - 2, 8}, {0, 0}, {0, 300}} {
		got := make([]byte, tc.n)
		for i := range got {
			got[i] = 0xEE
		}
		dev.ReadConfig(tc.off, got)
		want := make([]byte, tc.n)
		if tc.off < configSize {
			copy(want, cfg[tc.off:])
		}
		assert.Equal(t, want, got, "offset %d length %d", tc.off, tc.n)
	}

	// Writes are ignored, writeback included.
	dev.WriteConfig(cfgWriteback, []byte{1})
	dev.WriteConfig(0, make([]byte, configSize))
	dev.WriteConfig(math.MaxUint64, make([]byte, 8))
	after := make([]byte, configSize)
	dev.ReadConfig(0, after)
	require.Equal(t, cfg, after)
}

func TestParseDiskFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		path string
		ro   bool
		err  string
	}{
		{"disk.img", "disk.img", false, ""},
		{"/var/lib/vm.img,ro", "/var/lib/vm.img", true, ""},
		{"disk.img,rw", "disk.img", false, ""},
		{"a,b.img,ro", "a,b.img", true, ""},
		{"a,b.img", "", false, `unknown option "b.img"`},
		{"disk.img,readonly", "", false, `unknown option "readonly"`},
		{"disk.img,", "", false, `unknown option ""`},
		{"", "", false, "empty path"},
		{",ro", "", false, "empty path"},
	} {
		path, ro, err := ParseDiskFlag(tc.in)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.path, path)
		require.Equal(t, tc.ro, ro)
	}
}

// A block device's size comes from BLKGETSIZE64. The test opens the first
// host block device it can, read-only (the lock it takes is shared, and it
// reads nothing), and compares with the size sysfs reports in 512-byte
// sectors.
func TestBlockDevice(t *testing.T) {
	names, _ := filepath.Glob("/sys/block/*")
	tried := 0
	for _, sys := range names {
		dev := "/dev/" + filepath.Base(sys)
		b, err := os.ReadFile(sys + "/size")
		if err != nil {
			continue
		}
		var sectors uint64
		if _, err := fmt.Sscan(string(b), &sectors); err != nil {
			continue
		}
		d, err := Open(dev, Options{ReadOnly: true})
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrLocked) {
			continue
		}
		tried++
		if sectors == 0 {
			// An unbound loop device, say: refused like an empty file.
			require.ErrorIs(t, err, ErrEmpty, dev)
			require.ErrorContains(t, err, dev)
			continue
		}
		require.NoError(t, err, dev)
		require.Equal(t, sectors, d.Capacity(), dev)
		require.NoError(t, d.Close())
		return
	}
	if tried == 0 {
		t.Skip("no block device to open")
	}
}

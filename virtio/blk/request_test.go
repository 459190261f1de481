package blk

import (
	"bytes"
	"crypto/rand"
	"log/slog"
	"math"
	"os"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const testImageSize = 1 << 20 // 2048 sectors

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestReadWriteRoundTrip(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})

	// Reads return the file's contents.
	for _, tc := range []struct {
		sector uint64
		n      uint32
	}{{0, 512}, {1, 4096}, {100, 65536}, {2047, 512}, {0, testImageSize}} {
		got, status := e.read(tc.sector, tc.n)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		off := tc.sector * SectorSize
		require.True(t, bytes.Equal(want[off:off+uint64(tc.n)], got), "read %d bytes at sector %d", tc.n, tc.sector)
	}

	// Writes land in the file, and read back.
	p := randBytes(3 * SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(10, p))
	copy(want[10*SectorSize:], p)
	require.True(t, bytes.Equal(want, fileBytes(t, path)), "file after write")
	got, status := e.read(10, uint32(len(p)))
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, p, got)

	// The last sector, and a zero-length request at the very end.
	last := randBytes(SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(2047, last))
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(2048, nil))
	copy(want[2047*SectorSize:], last)
	require.True(t, bytes.Equal(want, fileBytes(t, path)))
	require.Equal(t, 0, e.log.count(slog.LevelWarn))
}

// The header, the data and the status may be split across descriptors any
// way the driver likes (§2.6.4), directly or in an indirect table.
func TestMultiSegmentChains(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	d := e.drv()
	for _, indirect := range []bool{false, true} {
		// IN: the header in two pieces, data in three uneven pieces, the
		// last of which also holds the status byte.
		h := header(VIRTIO_BLK_T_IN, 7)
		d1, d2, d3 := d.Writable(100), d.Writable(1000), d.Writable(3*SectorSize-1100+1)
		status, used := e.doOn(0, indirect, d.Readable(h[:5]), d.Readable(h[5:]), d1, d2, d3)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		require.Equal(t, uint32(3*SectorSize+1), used)
		got := concat(d.ReadMem(d1.Addr, 100), d.ReadMem(d2.Addr, 1000), d.ReadMem(d3.Addr, uint64(d3.Len-1)))
		require.Equal(t, want[7*SectorSize:10*SectorSize], got, "indirect %v", indirect)

		// OUT: the header and the first data bytes in one buffer, the
		// rest in many small ones.
		p := randBytes(4 * SectorSize)
		first := append(header(VIRTIO_BLK_T_OUT, 20), p[:33]...)
		bufs := []virtiotest.Buf{d.Readable(first)}
		for rest := p[33:]; len(rest) > 0; {
			k := min(len(rest), 77)
			bufs = append(bufs, d.Readable(rest[:k]))
			rest = rest[k:]
		}
		bufs = append(bufs, d.Writable(1))
		status, used = e.doOn(0, indirect, bufs...)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		require.Equal(t, uint32(1), used)
		copy(want[20*SectorSize:], p)
		require.True(t, bytes.Equal(want, fileBytes(t, path)), "indirect %v", indirect)
	}
}

func TestFlush(t *testing.T) {
	path, _ := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(0, randBytes(SectorSize)))
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.simple(VIRTIO_BLK_T_FLUSH, 0))
	// A flush carries no data (§5.2.6).
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.simple(VIRTIO_BLK_T_FLUSH, 0, make([]byte, SectorSize)))
}

// Without VIRTIO_BLK_F_FLUSH negotiated, every write must be stable when it
// completes (§5.2.6.2): the device syncs after each one.
func TestWritethroughWithoutFlushFeature(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	dev, err := Open(path, Options{})
	require.NoError(t, err)
	defer dev.Close()
	e := activate(t, dev, (dev.Features()|transportFeatures)&^(1<<VIRTIO_BLK_F_FLUSH))
	var syncs int
	fdatasyncFn = func(fd int) error { syncs++; return fdatasync(fd) }
	t.Cleanup(func() { fdatasyncFn = fdatasync })
	p := randBytes(SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(3, p))
	copy(want[3*SectorSize:], p)
	require.True(t, bytes.Equal(want, fileBytes(t, path)))
	require.Equal(t, 1, syncs, "the write was synced")
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(0, 1, 0)))
	require.Equal(t, 2, syncs, "so was the write zeroes")
	_, status := e.read(0, SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, 2, syncs, "reads are not synced")
}

// With VIRTIO_BLK_F_FLUSH negotiated, only FLUSH syncs.
func TestWritebackWithFlushFeature(t *testing.T) {
	path, _ := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	var syncs int
	fdatasyncFn = func(fd int) error { syncs++; return fdatasync(fd) }
	t.Cleanup(func() { fdatasyncFn = fdatasync })
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.write(3, randBytes(SectorSize)))
	require.Equal(t, 0, syncs)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.simple(VIRTIO_BLK_T_FLUSH, 0))
	require.Equal(t, 1, syncs)
}

func TestGetID(t *testing.T) {
	getID := func(e *env, n uint32) ([]byte, byte) {
		d := e.drv()
		id := d.Writable(n)
		status, used := e.do(d.Readable(header(VIRTIO_BLK_T_GET_ID, 0)), id, d.Writable(1))
		require.Equal(t, n+1, used)
		return d.ReadMem(id.Addr, uint64(n)), status
	}
	path, _ := newImage(t, "my-disk.img", SectorSize)
	e := newEnv(t, path, Options{})
	id, status := getID(e, VIRTIO_BLK_ID_BYTES)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, append([]byte("my-disk.img"), make([]byte, 9)...), id, "NUL-padded file name")

	// The data must be exactly 20 bytes (§5.2.6.1).
	_, status = getID(e, VIRTIO_BLK_ID_BYTES-1)
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), status)

	// A 20-byte serial has no NUL terminator; a long file name is cut.
	path, _ = newImage(t, "a-rather-long-image-name.img", SectorSize)
	e = newEnv(t, path, Options{Serial: "0123456789abcdefghij"})
	id, _ = getID(e, VIRTIO_BLK_ID_BYTES)
	require.Equal(t, "0123456789abcdefghij", string(id))
	path, _ = newImage(t, "a-rather-long-image-name.img", SectorSize)
	e = newEnv(t, path, Options{})
	id, _ = getID(e, VIRTIO_BLK_ID_BYTES)
	require.Equal(t, "a-rather-long-image-", string(id))
}

// allocatedBytes is the space the file system gave the file.
func allocatedBytes(t *testing.T, path string) int64 {
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	return st.Blocks * 512 // st_blocks counts 512-byte units
}

// isHole reports whether [off, off+n) of the file is one hole.
func isHole(t *testing.T, path string, off, n int64) bool {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	hole, err := unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
	require.NoError(t, err)
	if hole != off {
		return false
	}
	data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	return err == unix.ENXIO || data >= off+n
}

// fsSupports reports whether the file system under path can punch holes
// and zero ranges, as the hole tests need.
func fsSupports(t *testing.T, path string) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 0); err == unix.EOPNOTSUPP {
		t.Skip("the temporary directory's file system cannot punch holes")
	}
}

func TestDiscard(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	fsSupports(t, path)
	e := newEnv(t, path, Options{})
	before := allocatedBytes(t, path)

	// Two segments of 64 KiB each, page aligned.
	status := e.simple(VIRTIO_BLK_T_DISCARD, 0, concat(segment(128, 128, 0), segment(1024, 128, 0)))
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	for _, s := range []int64{128, 1024} {
		assert.True(t, isHole(t, path, s*SectorSize, 128*SectorSize), "sector %d is a hole", s)
		clear(want[s*SectorSize : (s+128)*SectorSize])
	}
	assert.Less(t, allocatedBytes(t, path), before)
	got := fileBytes(t, path)
	require.Len(t, got, testImageSize, "the file keeps its size")
	require.True(t, bytes.Equal(want, got))
	data, status := e.read(128, 128*SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, make([]byte, 128*SectorSize), data)
}

func TestWriteZeroes(t *testing.T) {
	for _, unmap := range []bool{false, true} {
		path, want := newImage(t, "disk.img", testImageSize)
		fsSupports(t, path)
		e := newEnv(t, path, Options{})
		before := allocatedBytes(t, path)
		var flags uint32
		if unmap {
			flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
		}
		// Not page aligned: the ends are zeroed in place.
		status := e.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(3, 300, flags))
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		clear(want[3*SectorSize : 303*SectorSize])
		got := fileBytes(t, path)
		require.Len(t, got, testImageSize)
		require.True(t, bytes.Equal(want, got), "unmap %v", unmap)
		data, status := e.read(0, 400*SectorSize)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		require.True(t, bytes.Equal(want[:400*SectorSize], data))
		if unmap {
			assert.Less(t, allocatedBytes(t, path), before, "UNMAP deallocates")
			assert.True(t, isHole(t, path, 8*SectorSize, 288*SectorSize), "the whole pages inside are a hole")
		} else {
			assert.Equal(t, before, allocatedBytes(t, path), "without UNMAP the space stays allocated")
		}
	}
}

// On a file system without hole punching or FALLOC_FL_ZERO_RANGE, discard
// does nothing and write zeroes writes zeros.
func TestWriteZeroesFallback(t *testing.T) {
	var calls int
	fallocateFn = func(int, uint32, int64, int64) error { calls++; return unix.EOPNOTSUPP }
	t.Cleanup(func() { fallocateFn = fallocate })
	const size = 3 << 20
	path, want := newImage(t, "disk.img", size)
	e := newEnv(t, path, Options{})

	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.simple(VIRTIO_BLK_T_DISCARD, 0, segment(0, 16, 0)))
	require.True(t, bytes.Equal(want, fileBytes(t, path)), "discard may leave the data")

	for _, flags := range []uint32{0, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP} {
		copy(want, randBytes(size))
		require.NoError(t, os.WriteFile(path, want, 0o644))
		// More than twice the 1 MiB zeros buffer, from sector 1.
		const n = 2<<20/SectorSize + 3
		status := e.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(1, n, flags))
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		clear(want[SectorSize : (1+n)*SectorSize])
		require.True(t, bytes.Equal(want, fileBytes(t, path)), "flags %d", flags)
	}
	require.Equal(t, 4, calls) // discard; zero range; punch hole, zero range
}

func TestReadOnly(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	fsSupports(t, path)
	require.NoError(t, os.Chmod(path, 0o444))
	e := newEnv(t, path, Options{ReadOnly: true})
	require.True(t, e.dev.ReadOnly())
	require.True(t, e.dev.Features().Has(VIRTIO_BLK_F_RO))
	require.True(t, e.features.Has(VIRTIO_BLK_F_RO))

	got, status := e.read(0, 4096)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, want[:4096], got)

	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.write(0, make([]byte, 4096)))
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.simple(VIRTIO_BLK_T_DISCARD, 0, segment(0, 8, 0)))
	for _, flags := range []uint32{0, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP} {
		require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(0, 8, flags)))
	}
	require.Equal(t, byte(VIRTIO_BLK_S_OK), e.simple(VIRTIO_BLK_T_FLUSH, 0))
	require.True(t, bytes.Equal(want, fileBytes(t, path)), "the image is unchanged")
	assert.False(t, isHole(t, path, 0, 4096))
	// Refused before any system call: the image is open read-only, so a
	// write would fail too, but as a host I/O error, which is logged.
	require.Equal(t, 0, e.log.count(slog.LevelWarn))

	// Writable devices do not offer F_RO.
	path2, _ := newImage(t, "rw.img", SectorSize)
	dev, err := Open(path2, Options{})
	require.NoError(t, err)
	defer dev.Close()
	require.False(t, dev.Features().Has(VIRTIO_BLK_F_RO))
}

// hostile describes a malformed request and the status it must get.
type hostile struct {
	name   string
	bufs   func(d *virtiotest.Driver) []virtiotest.Buf
	status byte
}

func TestHostileRequests(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	const capacity = testImageSize / SectorSize
	rd := func(d *virtiotest.Driver, p ...[]byte) virtiotest.Buf { return d.Readable(concat(p...)) }
	wr := func(d *virtiotest.Driver, n uint32) virtiotest.Buf {
		b := d.Writable(n)
		d.WriteMem(b.Addr, bytes.Repeat([]byte{0xAA}, int(n))) // must be zeroed on failure
		return b
	}
	in := func(sector uint64, n uint32) func(d *virtiotest.Driver) []virtiotest.Buf {
		return func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{rd(d, header(VIRTIO_BLK_T_IN, sector)), wr(d, n), wr(d, 1)}
		}
	}
	out := func(typ uint32, sector uint64, p []byte) func(d *virtiotest.Driver) []virtiotest.Buf {
		return func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{rd(d, header(typ, sector), p), wr(d, 1)}
		}
	}
	manySegments := func(typ uint32, n int) func(d *virtiotest.Driver) []virtiotest.Buf {
		return func(d *virtiotest.Driver) []virtiotest.Buf {
			bufs := []virtiotest.Buf{rd(d, header(typ, 0))}
			for range n {
				if typ == VIRTIO_BLK_T_IN {
					bufs = append(bufs, wr(d, SectorSize))
				} else {
					bufs = append(bufs, rd(d, make([]byte, SectorSize)))
				}
			}
			return append(bufs, wr(d, 1))
		}
	}
	var seg257 []byte
	for range maxDiscardSeg + 1 {
		seg257 = append(seg257, segment(0, 1, 0)...)
	}
	for _, tc := range []hostile{
		{"header of 15 bytes", func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{rd(d, header(VIRTIO_BLK_T_IN, 0)[:15]), wr(d, SectorSize), wr(d, 1)}
		}, VIRTIO_BLK_S_IOERR},
		{"only a status byte", func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{wr(d, 1)}
		}, VIRTIO_BLK_S_IOERR},
		{"read past the end", in(capacity, SectorSize), VIRTIO_BLK_S_IOERR},
		{"read across the end", in(capacity-1, 2*SectorSize), VIRTIO_BLK_S_IOERR},
		{"read with sector+len overflowing", in(math.MaxUint64, SectorSize), VIRTIO_BLK_S_IOERR},
		{"read at a sector whose offset overflows", in(math.MaxUint64/SectorSize+1, 0), VIRTIO_BLK_S_IOERR},
		{"read of part of a sector", in(0, SectorSize+1), VIRTIO_BLK_S_IOERR},
		{"write past the end", out(VIRTIO_BLK_T_OUT, capacity, make([]byte, SectorSize)), VIRTIO_BLK_S_IOERR},
		{"write with sector+len overflowing", out(VIRTIO_BLK_T_OUT, math.MaxUint64-1, make([]byte, 4*SectorSize)), VIRTIO_BLK_S_IOERR},
		{"write of part of a sector", out(VIRTIO_BLK_T_OUT, 0, make([]byte, 100)), VIRTIO_BLK_S_IOERR},
		{"read with readable data", func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{rd(d, header(VIRTIO_BLK_T_IN, 0), make([]byte, SectorSize)), wr(d, SectorSize), wr(d, 1)}
		}, VIRTIO_BLK_S_IOERR},
		{"write with writable data", func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{rd(d, header(VIRTIO_BLK_T_OUT, 0), make([]byte, SectorSize)), wr(d, SectorSize), wr(d, 1)}
		}, VIRTIO_BLK_S_IOERR},
		{"read of more than seg_max segments", manySegments(VIRTIO_BLK_T_IN, segMax+1), VIRTIO_BLK_S_IOERR},
		{"write of more than seg_max segments", manySegments(VIRTIO_BLK_T_OUT, segMax+1), VIRTIO_BLK_S_IOERR},
		{"read of seg_max segments", manySegments(VIRTIO_BLK_T_IN, segMax), VIRTIO_BLK_S_OK},
		{"unknown type", out(99, 0, nil), VIRTIO_BLK_S_UNSUPP},
		{"type with the high bit", out(1<<31|VIRTIO_BLK_T_IN, 0, nil), VIRTIO_BLK_S_UNSUPP},
		{"GET_LIFETIME", func(d *virtiotest.Driver) []virtiotest.Buf {
			return []virtiotest.Buf{rd(d, header(VIRTIO_BLK_T_GET_LIFETIME, 0)), wr(d, 16), wr(d, 1)}
		}, VIRTIO_BLK_S_UNSUPP},
		{"zone report", func(d *virtiotest.Driver) []virtiotest.Buf {
			const VIRTIO_BLK_T_ZONE_REPORT = 16
			return []virtiotest.Buf{rd(d, header(VIRTIO_BLK_T_ZONE_REPORT, 0)), wr(d, 4096), wr(d, 1)}
		}, VIRTIO_BLK_S_UNSUPP},
		{"discard of 257 segments", out(VIRTIO_BLK_T_DISCARD, 0, seg257), VIRTIO_BLK_S_IOERR},
		{"write zeroes of 2 segments", out(VIRTIO_BLK_T_WRITE_ZEROES, 0, concat(segment(0, 1, 0), segment(1, 1, 0))), VIRTIO_BLK_S_IOERR},
		{"discard without segments", out(VIRTIO_BLK_T_DISCARD, 0, nil), VIRTIO_BLK_S_IOERR},
		{"discard of part of a segment", out(VIRTIO_BLK_T_DISCARD, 0, segment(0, 1, 0)[:15]), VIRTIO_BLK_S_IOERR},
		{"discard with UNMAP", out(VIRTIO_BLK_T_DISCARD, 0, segment(0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP)), VIRTIO_BLK_S_UNSUPP},
		{"discard with an unknown flag", out(VIRTIO_BLK_T_DISCARD, 0, segment(0, 1, 2)), VIRTIO_BLK_S_UNSUPP},
		{"write zeroes with an unknown flag", out(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(0, 1, 1<<31|1)), VIRTIO_BLK_S_UNSUPP},
		{"discard past the end", out(VIRTIO_BLK_T_DISCARD, 0, segment(capacity, 1, 0)), VIRTIO_BLK_S_IOERR},
		{"discard with sector+num overflowing", out(VIRTIO_BLK_T_DISCARD, 0, segment(math.MaxUint64, 2, 0)), VIRTIO_BLK_S_IOERR},
		{"discard of more than max_discard_sectors", out(VIRTIO_BLK_T_DISCARD, 0, segment(0, maxDiscardSectors+1, 0)), VIRTIO_BLK_S_IOERR},
		{"discard with one bad segment of two", out(VIRTIO_BLK_T_DISCARD, 0, concat(segment(0, 8, 0), segment(capacity, 1, 0))), VIRTIO_BLK_S_IOERR},
		{"GET_ID with readable data", out(VIRTIO_BLK_T_GET_ID, 0, make([]byte, 20)), VIRTIO_BLK_S_IOERR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.drv()
			bufs := tc.bufs(d)
			status, used := e.doOn(0, len(bufs) > 8, bufs...)
			require.Equal(t, tc.status, status)
			var writable uint32
			for _, b := range bufs {
				if b.Write {
					writable += b.Len
					if tc.status != VIRTIO_BLK_S_OK && b.Len > 1 {
						require.Equal(t, make([]byte, b.Len), d.ReadMem(b.Addr, uint64(b.Len)), "failed request's data is zeroed")
					}
				}
			}
			require.Equal(t, writable, used, "used length covers the status byte")
		})
	}
	require.True(t, bytes.Equal(want, fileBytes(t, path)), "no malformed request changed the image")
	// The queue still works.
	got, status := e.read(0, SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, want[:SectorSize], got)
	require.Equal(t, 0, e.log.count(slog.LevelWarn), "malformed requests are the guest's business")
}

// Requests whose feature was not negotiated are unsupported.
func TestUnnegotiatedRequests(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	dev, err := Open(path, Options{})
	require.NoError(t, err)
	defer dev.Close()
	f := (dev.Features() | transportFeatures) &^ (1<<VIRTIO_BLK_F_DISCARD | 1<<VIRTIO_BLK_F_WRITE_ZEROES)
	e := activate(t, dev, f)
	require.Equal(t, byte(VIRTIO_BLK_S_UNSUPP), e.simple(VIRTIO_BLK_T_DISCARD, 0, segment(0, 8, 0)))
	require.Equal(t, byte(VIRTIO_BLK_S_UNSUPP), e.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(0, 8, 0)))
	require.True(t, bytes.Equal(want, fileBytes(t, path)))
}

// A chain without a writable byte cannot get a status: it is returned with
// nothing written, the queue goes on, and the host log says so once.
func TestMissingStatus(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	d := e.drv()
	for range 3 {
		head := e.submit(0, false, d.Readable(header(VIRTIO_BLK_T_OUT, 0)), d.Readable(make([]byte, SectorSize)))
		id, used := e.wait(0)
		require.Equal(t, uint32(head), id)
		require.Zero(t, used)
	}
	require.True(t, bytes.Equal(want, fileBytes(t, path)), "nothing written")
	got, status := e.read(1, SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, want[SectorSize:2*SectorSize], got)
	require.Equal(t, 1, e.log.count(slog.LevelWarn), "logged once")
}

func TestManyRequestsInFlight(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	d := e.drv()
	// A full ring of reads, made available at once.
	type req struct {
		sector uint64
		data   virtiotest.Buf
		stat   virtiotest.Buf
	}
	byHead := map[uint16]req{}
	for i := range QueueSize {
		r := req{sector: uint64(i * 8), data: d.Writable(4096), stat: d.Writable(1)}
		head := d.AddIndirectChain(d.Readable(header(VIRTIO_BLK_T_IN, r.sector)), r.data, r.stat)
		byHead[head] = r
	}
	if d.Publish() {
		require.NoError(t, e.queues[0].q.Kick.Signal())
	}
	// The driver looks only once the device has used every chain: with
	// VIRTIO_F_EVENT_IDX a driver that caught up midway and re-enabled
	// interrupts (as e.wait does) would rightly get one more, at the
	// used_event it set. Left alone, it asked for one, and gets one.
	require.Eventually(t, func() bool { return d.UsedIdx() == QueueSize }, 10*time.Second, time.Millisecond)
	for range len(byHead) {
		id, used, ok := d.GetUsed()
		require.True(t, ok)
		r := byHead[uint16(id)]
		require.Equal(t, uint32(4097), used)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), d.ReadMem(r.stat.Addr, 1)[0])
		off := r.sector * SectorSize
		require.Equal(t, want[off:off+4096], d.ReadMem(r.data.Addr, 4096))
		delete(byHead, uint16(id))
	}
	require.Empty(t, byHead)
	require.Equal(t, int64(1), e.queues[0].interrupts.Load(), "one interrupt for the batch")
}

func TestMultiQueue(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{NumQueues: 4})
	require.True(t, e.dev.Features().Has(VIRTIO_BLK_F_MQ))
	require.Len(t, e.dev.QueueMaxSizes(), 4)
	cfg := make([]byte, 2)
	e.dev.ReadConfig(cfgNumQueues, cfg)
	require.Equal(t, []byte{4, 0}, cfg)
	for q := range 4 {
		d := e.queues[q].d
		data := d.Writable(SectorSize)
		status, _ := e.doOn(q, false, d.Readable(header(VIRTIO_BLK_T_IN, uint64(q))), data, d.Writable(1))
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		require.Equal(t, want[q*SectorSize:(q+1)*SectorSize], d.ReadMem(data.Addr, SectorSize))
	}
}

func TestResetAndReactivate(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	dev, err := Open(path, Options{})
	require.NoError(t, err)
	dev.Reset() // before any Activate
	for range 3 {
		e := activate(t, dev, dev.Features()|transportFeatures)
		got, status := e.read(5, SectorSize)
		require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
		require.Equal(t, want[5*SectorSize:6*SectorSize], got)
		dev.Reset()
		dev.Reset()
		// After Reset the worker is gone: a kick is not served.
		d := e.drv()
		e.submit(0, false, d.Readable(header(VIRTIO_BLK_T_IN, 0)), d.Writable(SectorSize), d.Writable(1))
		require.NoError(t, e.queues[0].q.Kick.Signal())
		_, _, ok := d.GetUsed()
		require.False(t, ok)
	}
	// A queue the driver did not enable is nil.
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	require.NoError(t, dev.Activate(&virtio.Activation{Mem: mem, Queues: []*virtio.Queue{nil}}))
	require.NoError(t, dev.Close())
	require.NoError(t, dev.Close())
	require.ErrorIs(t, dev.Activate(&virtio.Activation{Mem: mem}), ErrClosed)
	dev.Reset()
}

func TestFeatures(t *testing.T) {
	path, _ := newImage(t, "disk.img", SectorSize)
	dev, err := Open(path, Options{})
	require.NoError(t, err)
	defer dev.Close()
	require.Equal(t, uint16(virtio.VIRTIO_ID_BLOCK), dev.DeviceID())
	f := dev.Features()
	for _, bit := range []uint{VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH,
		VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES} {
		require.True(t, f.Has(bit), "bit %d", bit)
	}
	for _, bit := range []uint{VIRTIO_BLK_F_RO, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_SIZE_MAX,
		VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_LIFETIME, VIRTIO_BLK_F_SECURE_ERASE, VIRTIO_BLK_F_ZONED} {
		require.False(t, f.Has(bit), "bit %d", bit)
	}
	// Only device-type bits (0-23): the transport adds the others.
	require.Zero(t, uint64(f)&^(1<<24-1))
	require.Equal(t, []uint16{QueueSize}, dev.QueueMaxSizes())
}

// Errors of the host's system calls become VIRTIO_BLK_S_IOERR, and a
// warning in the host's log, at most one per warnInterval.
func TestHostIOErrors(t *testing.T) {
	path, want := newImage(t, "disk.img", testImageSize)
	e := newEnv(t, path, Options{})
	require.Equal(t, path, e.dev.Path())

	// The image shrinks under the device: a read past its new end finds
	// the end of the file.
	require.NoError(t, os.Truncate(path, testImageSize/2))
	data, status := e.read(testImageSize/SectorSize-8, 4096)
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), status)
	require.Equal(t, make([]byte, 4096), data, "zeroed")
	require.Equal(t, 1, e.log.count(slog.LevelWarn))
	require.NoError(t, os.WriteFile(path, want, 0o644))

	fdatasyncFn = func(int) error { return unix.EIO }
	fallocateFn = func(int, uint32, int64, int64) error { return unix.EIO }
	t.Cleanup(func() { fdatasyncFn, fallocateFn = fdatasync, fallocate })
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.simple(VIRTIO_BLK_T_FLUSH, 0))
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.simple(VIRTIO_BLK_T_DISCARD, 0, segment(0, 8, 0)))
	require.Equal(t, byte(VIRTIO_BLK_S_IOERR), e.simple(VIRTIO_BLK_T_WRITE_ZEROES, 0, segment(0, 8, 0)))
	require.Equal(t, 1, e.log.count(slog.LevelWarn), "rate limited")

	got, status := e.read(0, SectorSize)
	require.Equal(t, byte(VIRTIO_BLK_S_OK), status)
	require.Equal(t, want[:SectorSize], got)
}

package blk

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// The fuzz target's guest RAM: small, with guard bytes around it in the
// host allocation that must never change, and its image: 128 sectors and
// a partial sector after them that must never change either.
const (
	fuzzRAMSize    = 64 << 10
	fuzzGuard      = memory.PageSize
	fuzzGuardByte  = 0xA5
	fuzzQueueSize  = 16
	fuzzDataStart  = 4096 // buffers live above the rings
	fuzzMaxBuffers = 8
	fuzzMaxBufLen  = 8 << 10
	fuzzSectors    = 128
	fuzzTail       = 100
	fuzzTailByte   = 0x5A
)

// fuzzEnv is everything a fuzz run reuses from one input to the next.
type fuzzEnv struct {
	ram     []byte // guest RAM
	backing []byte // guest RAM with the guards
	mem     *memory.Guest
	devRW   *Device
	devRO   *Device
	path    string
	pathRO  string
	kick    *eventfd.EventFD
}

func newFuzzEnv(t testing.TB) *fuzzEnv {
	buf := make([]byte, fuzzRAMSize+2*fuzzGuard+memory.PageSize)
	off := (memory.PageSize - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%memory.PageSize) % memory.PageSize
	e := &fuzzEnv{backing: buf[off : off+fuzzRAMSize+2*fuzzGuard]}
	for i := range e.backing {
		e.backing[i] = fuzzGuardByte
	}
	e.ram = e.backing[fuzzGuard : fuzzGuard+fuzzRAMSize : fuzzGuard+fuzzRAMSize]
	e.mem = memory.NewFromBytes(memory.Region{Range: memory.Range{Start: 0, Size: fuzzRAMSize}, Host: e.ram})

	dir := t.TempDir()
	image := append(bytes.Repeat([]byte{0x11}, fuzzSectors*SectorSize), bytes.Repeat([]byte{fuzzTailByte}, fuzzTail)...)
	e.path = filepath.Join(dir, "rw.img")
	e.pathRO = filepath.Join(dir, "ro.img")
	require.NoError(t, os.WriteFile(e.path, image, 0o644))
	require.NoError(t, os.WriteFile(e.pathRO, image, 0o644))
	var err error
	e.devRW, err = Open(e.path, Options{})
	require.NoError(t, err)
	e.devRO, err = Open(e.pathRO, Options{ReadOnly: true})
	require.NoError(t, err)
	e.kick, err = eventfd.New()
	require.NoError(t, err)
	t.Cleanup(func() {
		e.devRW.Close()
		e.devRO.Close()
		e.kick.Close()
	})
	return e
}

// checkImage fails if the image's size or the partial sector after the
// disk changed: the device never does I/O outside the disk.
func (e *fuzzEnv) checkImage(t *testing.T, path string) {
	var st os.FileInfo
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, int64(fuzzSectors*SectorSize+fuzzTail), st.Size(), "image size changed")
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tail := make([]byte, fuzzTail)
	_, err = f.ReadAt(tail, fuzzSectors*SectorSize)
	require.NoError(t, err)
	require.Equal(t, bytes.Repeat([]byte{fuzzTailByte}, fuzzTail), tail, "bytes past the last sector changed")
}

// checkGuards fails if anything wrote outside guest RAM.
func (e *fuzzEnv) checkGuards(t *testing.T) {
	for i, b := range e.backing[:fuzzGuard] {
		if b != fuzzGuardByte {
			t.Fatalf("write below guest RAM at -%d", fuzzGuard-i)
		}
	}
	for i, b := range e.backing[fuzzGuard+fuzzRAMSize:] {
		if b != fuzzGuardByte {
			t.Fatalf("write above guest RAM at +%d", i)
		}
	}
}

// fuzzInput encodes a request for FuzzRequest:
//
//	mode    u8: bit 0 read-only device, bit 1 indirect chain,
//	            bit 2 no VIRTIO_BLK_F_DISCARD/WRITE_ZEROES, bit 3 no FLUSH
//	nbufs   u8: buffers in the chain (mod fuzzMaxBuffers, +1)
//	nbufs × {off u16, len u16, write u8}: each buffer's place in the data
//	            area (buffers may overlap) and length
//	payload:    the data area's contents, repeated to fill it
type fuzzBuf struct {
	off, len uint16
	write    bool
}

func fuzzInput(mode byte, bufs []fuzzBuf, payload []byte) []byte {
	b := []byte{mode, byte(len(bufs) - 1)}
	for _, x := range bufs {
		var w byte
		if x.write {
			w = 1
		}
		b = binary.LittleEndian.AppendUint16(b, x.off)
		b = binary.LittleEndian.AppendUint16(b, x.len)
		b = append(b, w)
	}
	return append(b, payload...)
}

// FuzzRequest feeds chains of any shape and contents to the request
// handler of a read-write and a read-only device: it must never panic,
// write outside guest RAM, change the image's size or touch the bytes
// after its last sector, and must answer every chain that has a writable
// byte with a status and a used length covering all writable bytes.
func FuzzRequest(f *testing.F) {
	hdr := func(typ uint32, sector uint64) []byte { return header(typ, sector) }
	seg := func(sector uint64, num, flags uint32) []byte { return segment(sector, num, flags) }
	// Seeds: a well-formed request of each type, read-write and read-only.
	for _, mode := range []byte{0, 1, 2} {
		f.Add(fuzzInput(mode, []fuzzBuf{{0, 16, false}, {512, 1024, true}, {2048, 1, true}}, hdr(VIRTIO_BLK_T_IN, 3)))
		f.Add(fuzzInput(mode, []fuzzBuf{{0, 16, false}, {16, 512, false}, {2048, 1, true}}, hdr(VIRTIO_BLK_T_OUT, 127)))
		f.Add(fuzzInput(mode, []fuzzBuf{{0, 16, false}, {2048, 1, true}}, hdr(VIRTIO_BLK_T_FLUSH, 0)))
		f.Add(fuzzInput(mode, []fuzzBuf{{0, 16, false}, {512, 20, true}, {2048, 1, true}}, hdr(VIRTIO_BLK_T_GET_ID, 0)))
		f.Add(fuzzInput(mode, []fuzzBuf{{0, 16, false}, {16, 32, false}, {2048, 1, true}},
			concat(hdr(VIRTIO_BLK_T_DISCARD, 0), seg(8, 16, 0), seg(100, 28, 0))))
		f.Add(fuzzInput(mode, []fuzzBuf{{0, 16, false}, {16, 16, false}, {2048, 1, true}},
			concat(hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg(1, 126, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))))
	}
	// Hostile shapes: the status inside the header, data overlapping the
	// header, no writable byte, a read into the buffer it reads from.
	f.Add(fuzzInput(0, []fuzzBuf{{0, 16, false}, {15, 1, true}}, hdr(VIRTIO_BLK_T_FLUSH, 0)))
	f.Add(fuzzInput(0, []fuzzBuf{{0, 528, false}, {0, 1, true}}, hdr(VIRTIO_BLK_T_OUT, 0)))
	f.Add(fuzzInput(0, []fuzzBuf{{0, 16, false}, {0, 513, true}}, hdr(VIRTIO_BLK_T_IN, 1)))
	f.Add(fuzzInput(0, []fuzzBuf{{0, 16, false}}, hdr(VIRTIO_BLK_T_IN, 1)))
	f.Add(fuzzInput(0, []fuzzBuf{{0, 16, false}, {16, 16, false}, {2048, 1, true}},
		concat(hdr(VIRTIO_BLK_T_WRITE_ZEROES, 0), seg(0xFFFFFFFFFFFFFFFF, 2, 0))))

	e := newFuzzEnv(f)
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		mode, nbufs := in[0], int(in[1])%fuzzMaxBuffers+1
		in = in[2:]
		if len(in) < 5*nbufs {
			return
		}
		dataSize := uint64(fuzzRAMSize - fuzzDataStart)
		var bufs []virtiotest.Buf
		for i := range nbufs {
			x := in[5*i:]
			n := uint64(binary.LittleEndian.Uint16(x[2:])) % (fuzzMaxBufLen + 1)
			off := uint64(binary.LittleEndian.Uint16(x)) % (dataSize - n + 1)
			bufs = append(bufs, virtiotest.Buf{Addr: fuzzDataStart + off, Len: uint32(n), Write: x[4]&1 != 0})
		}
		payload := in[5*nbufs:]

		// Fresh rings at the bottom of RAM, the payload above them.
		clear(e.ram)
		if len(payload) > 0 {
			for p := e.ram[fuzzDataStart:]; len(p) > 0; {
				p = p[copy(p, payload):]
			}
		}
		features := transportFeatures.With(VIRTIO_BLK_F_DISCARD).With(VIRTIO_BLK_F_WRITE_ZEROES).With(VIRTIO_BLK_F_FLUSH)
		if mode&4 != 0 {
			features &^= 1<<VIRTIO_BLK_F_DISCARD | 1<<VIRTIO_BLK_F_WRITE_ZEROES
		}
		if mode&8 != 0 {
			features &^= 1 << VIRTIO_BLK_F_FLUSH
		}
		cfg, end := virtiotest.Layout(0, fuzzQueueSize, features)
		if end > fuzzDataStart {
			t.Fatal("rings overlap the data area")
		}
		// The driver only lays out the rings; buffers are placed by hand.
		d := virtiotest.NewDriver(e.mem, cfg, memory.Range{Start: end, Size: fuzzDataStart - end})
		// Descriptors sorted readable first, as Pop requires; the fuzzer
		// still controls which bytes alias which.
		var sorted []virtiotest.Buf
		for _, w := range []bool{false, true} {
			for _, b := range bufs {
				if b.Write == w {
					sorted = append(sorted, b)
				}
			}
		}
		if mode&2 != 0 {
			d.AddIndirectChain(sorted...)
		} else {
			d.AddChain(sorted...)
		}
		d.Publish()
		var vq virtio.Virtqueue
		require.NoError(t, vq.Enable(e.mem, cfg))
		dev, path := e.devRW, e.path
		if mode&1 != 0 {
			dev, path = e.devRO, e.pathRO
		}
		var before []byte
		if mode&1 != 0 {
			before = fileBytes(t, path)
		}

		q := &virtio.Queue{Virtqueue: &vq, Kick: e.kick, Interrupt: func() {}}
		w := newWorker(dev, dev.fd, q, features, log)
		var c virtio.DescChain
		ok, err := vq.Pop(&c)
		require.NoError(t, err)
		require.True(t, ok)
		var hdrCopy [reqHeaderSize]byte
		_, _ = c.ReadAt(hdrCopy[:], 0)
		used, err := w.serveChain(&c)
		require.NoError(t, err)
		require.NoError(t, vq.AddUsed(c.Head, used))

		require.Equal(t, c.WritableLen(), used, "used length is every writable byte")
		if used > 0 {
			var status [1]byte
			bufs := c.WritableBuffers()
			last := bufs[len(bufs)-1]
			status[0] = last[len(last)-1]
			require.LessOrEqual(t, status[0], byte(VIRTIO_BLK_S_UNSUPP), "a status byte")
			typ := binary.LittleEndian.Uint32(hdrCopy[:])
			if mode&1 != 0 && (typ == VIRTIO_BLK_T_OUT || typ == VIRTIO_BLK_T_DISCARD || typ == VIRTIO_BLK_T_WRITE_ZEROES) {
				require.NotEqual(t, byte(VIRTIO_BLK_S_OK), status[0], "a read-only device wrote")
			}
		}
		if mode&1 != 0 {
			require.Equal(t, before, fileBytes(t, path), "the read-only image changed")
		}
		e.checkGuards(t)
		e.checkImage(t, path)
	})
}

package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"unsafe"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// The fuzz targets' guest RAM: small, at address 0 so that fuzzed buffer
// addresses hit it often, and with guard bytes around it in the host
// allocation that must never change.
const (
	fuzzRAMSize  = 64 << 10
	fuzzGuard    = memory.PageSize
	guardPattern = 0xA5
	// fuzzMaxImage bounds how much of the fuzz input is copied into RAM.
	fuzzMaxImage = 16 << 10
)

// fuzzRAM is guest RAM with guards around it.
type fuzzRAM struct {
	mem     *memory.Guest
	ram     []byte
	backing []byte
}

func newFuzzRAM() *fuzzRAM {
	buf := make([]byte, fuzzRAMSize+2*fuzzGuard+memory.PageSize)
	off := (memory.PageSize - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%memory.PageSize) % memory.PageSize
	backing := buf[off : off+fuzzRAMSize+2*fuzzGuard]
	for i := range backing {
		backing[i] = guardPattern
	}
	ram := backing[fuzzGuard : fuzzGuard+fuzzRAMSize : fuzzGuard+fuzzRAMSize]
	clear(ram)
	mem := memory.NewFromBytes(memory.Region{Range: memory.Range{Start: 0, Size: fuzzRAMSize}, Host: ram})
	return &fuzzRAM{mem: mem, ram: ram, backing: backing}
}

// inRAM reports whether b lies inside the guest RAM.
func (r *fuzzRAM) inRAM(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(r.ram)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p-lo <= uintptr(len(r.ram)) && uintptr(cap(b)) <= uintptr(len(r.ram))-(p-lo)
}

// checkGuards fails if anything wrote outside guest RAM.
func (r *fuzzRAM) checkGuards(t *testing.T) {
	for i, b := range r.backing[:fuzzGuard] {
		if b != guardPattern {
			t.Fatalf("write below guest RAM at -%d", fuzzGuard-i)
		}
	}
	for i, b := range r.backing[fuzzGuard+fuzzRAMSize:] {
		if b != guardPattern {
			t.Fatalf("write above guest RAM at +%d", i)
		}
	}
}

// serveChain checks a popped chain's buffers and uses them as a device
// would: reads all readable bytes, fills all writable ones.
func serveChain(t *testing.T, r *fuzzRAM, c *virtio.DescChain) uint32 {
	var rl, wl uint64
	for _, b := range c.ReadableBuffers() {
		require.True(t, r.inRAM(b), "readable buffer outside guest RAM")
		rl += uint64(len(b))
	}
	for _, b := range c.WritableBuffers() {
		require.True(t, r.inRAM(b), "writable buffer outside guest RAM")
		wl += uint64(len(b))
	}
	require.Equal(t, uint64(c.ReadableLen()), rl)
	require.Equal(t, uint64(c.WritableLen()), wl)
	require.LessOrEqual(t, rl+wl, uint64(virtio.MaxChainBytes))
	n, err := io.Copy(io.Discard, c)
	require.NoError(t, err)
	require.Equal(t, rl, uint64(n))
	_, err = c.Write(bytes.Repeat([]byte{0x5A}, int(wl)+1))
	require.ErrorIs(t, err, io.ErrShortWrite)
	require.Equal(t, uint32(wl), c.Written())
	return c.Written()
}

// fuzzQueueLayout places a queue of the given size at the bottom of the
// fuzz RAM, its parts back to back so that a short fuzz input covers the
// descriptor table and the available ring. oddAvail puts the available ring
// 2 bytes off a 4-byte boundary.
func fuzzQueueLayout(size uint16, oddAvail bool, features virtio.Features) virtio.QueueConfig {
	cfg := virtio.QueueConfig{Size: size, Features: features}
	cfg.AvailRing = virtio.DescTableSize(size)
	if oddAvail {
		cfg.AvailRing += virtio.AvailRingAlign
	}
	cfg.UsedRing = (cfg.AvailRing + virtio.AvailRingSize(size) + virtio.UsedRingAlign - 1) &^ (virtio.UsedRingAlign - 1)
	return cfg
}

// Fuzz input header for FuzzVirtqueue.
const (
	fzConfig   = iota // bits 0-2: log2 size; 3: indirect; 4: event idx; 5: odd avail; 6-7: notification games
	fzStartLo         // start index, low byte
	fzStartHi         // start index, high byte
	fzMaxBytes        // 0: default chain byte limit; otherwise 16 × this
	fzHeaderSize
)

// fuzzSeed builds a RAM image with well-formed chains for a queue of the
// given size, as the seed of FuzzVirtqueue.
func fuzzSeed(config byte, start uint16, build func(d *virtiotest.Driver)) []byte {
	r := newFuzzRAM()
	size := uint16(1) << (config & 7)
	var features virtio.Features
	if config&(1<<3) != 0 {
		features = features.With(virtio.VIRTIO_F_INDIRECT_DESC)
	}
	cfg := fuzzQueueLayout(size, config&(1<<5) != 0, features)
	cfg.LastAvailIdx, cfg.UsedIdx = start, start
	dataStart := cfg.UsedRing + virtio.UsedRingSize(size) + virtio.UsedRingAlign
	d := virtiotest.NewDriver(r.mem, cfg, memory.Range{Start: dataStart, Size: 0x400})
	build(d)
	d.Publish()
	seed := []byte{config, byte(start), byte(start >> 8), 0}
	return append(seed, r.ram[:dataStart+0x400]...)
}

// FuzzVirtqueue fills guest RAM with the fuzz input, rings and descriptors
// included, and runs a device over the queue: it must never panic, and
// every buffer it gets must lie in guest RAM.
func FuzzVirtqueue(f *testing.F) {
	f.Add(fuzzSeed(2, 0, func(d *virtiotest.Driver) {
		d.AddChain(d.Readable([]byte("header")), d.Writable(8))
		d.AddChain(d.Writable(3))
	}))
	f.Add(fuzzSeed(3|1<<3, 0xFFFE, func(d *virtiotest.Driver) {
		d.AddIndirectChain(d.Readable([]byte("ab")), d.Readable([]byte("c")), d.Writable(4))
		d.AddChain(d.Readable([]byte("x")))
		d.AddIndirectChain(d.Writable(2))
	}))
	f.Add(fuzzSeed(1|1<<3|1<<4|1<<5, 7, func(d *virtiotest.Driver) {
		d.AddChain(d.Readable([]byte("q")), d.Writable(1))
	}))
	f.Add(fuzzSeed(4|1<<6, 100, func(d *virtiotest.Driver) {
		for range 3 {
			d.AddChain(d.Readable([]byte("1234")), d.Writable(4), d.Writable(4))
		}
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < fzHeaderSize {
			return
		}
		config := data[fzConfig]
		size := uint16(1) << (config & 7)
		var features virtio.Features
		if config&(1<<3) != 0 {
			features = features.With(virtio.VIRTIO_F_INDIRECT_DESC)
		}
		if config&(1<<4) != 0 {
			features = features.With(virtio.VIRTIO_F_EVENT_IDX)
		}
		cfg := fuzzQueueLayout(size, config&(1<<5) != 0, features)
		cfg.LastAvailIdx = binary.LittleEndian.Uint16(data[fzStartLo:])
		cfg.UsedIdx = cfg.LastAvailIdx
		cfg.MaxChainBytes = 16 * uint32(data[fzMaxBytes])

		r := newFuzzRAM()
		copy(r.ram, data[fzHeaderSize:min(len(data), fzHeaderSize+fuzzMaxImage)])
		var q virtio.Virtqueue
		require.NoError(t, q.Enable(r.mem, cfg))

		var c virtio.DescChain
		games := config >> 6
		for i := 0; i < 2*int(size)+2; i++ {
			switch {
			case games == 1 && i%2 == 0:
				q.DisableNotifications()
			case games == 2 && i%3 == 0:
				_, _ = q.EnableNotifications()
			}
			ok, err := q.Pop(&c)
			if err != nil {
				require.ErrorIs(t, q.Err(), err)
				require.False(t, q.Ready())
				break
			}
			if !ok {
				break
			}
			written := serveChain(t, r, &c)
			if games == 3 && i%2 == 0 {
				q.Unpop()
				continue
			}
			_, err = q.Push(c.Head, written)
			require.NoError(t, err)
		}
		r.checkGuards(t)
	})
}

// Fuzz input header for FuzzIndirectTable.
const (
	fiFlags  = iota // flags of the descriptor that refers to the table
	fiPrefix        // bits 0-1: direct descriptors before it; bits 2-4: which are writable
	fiLenAdj        // added to the table length (mod 256, as an int8)
	fiHeaderSize
)

// FuzzIndirectTable makes the fuzz input an indirect descriptor table,
// reached after zero to three direct descriptors, and checks Pop against a
// straightforward model of §2.7.5.3.
func FuzzIndirectTable(f *testing.F) {
	table := func(descs ...virtio.Desc) []byte {
		b := make([]byte, len(descs)*virtio.DescSize)
		for i, d := range descs {
			d.Encode(b[i*virtio.DescSize:])
		}
		return b
	}
	const buf = 0x8000
	f.Add(append([]byte{virtio.VIRTQ_DESC_F_INDIRECT, 0, 0}, table(
		virtio.Desc{Addr: buf, Len: 16, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 2},
		virtio.Desc{Addr: buf + 64, Len: 8, Flags: virtio.VIRTQ_DESC_F_WRITE},
		virtio.Desc{Addr: buf + 32, Len: 4, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1},
	)...))
	f.Add(append([]byte{virtio.VIRTQ_DESC_F_INDIRECT | virtio.VIRTQ_DESC_F_WRITE, 2 | 1<<3, 0}, table(
		virtio.Desc{Addr: buf, Len: 16, Flags: virtio.VIRTQ_DESC_F_WRITE},
	)...))
	f.Add(append([]byte{virtio.VIRTQ_DESC_F_INDIRECT, 1, 0}, table(
		virtio.Desc{Addr: buf, Len: 16, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1},
		virtio.Desc{Addr: buf, Len: 16, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 0},
	)...))
	f.Add(append([]byte{virtio.VIRTQ_DESC_F_INDIRECT, 0, 0}, table(
		virtio.Desc{Addr: 0x100, Len: 16, Flags: virtio.VIRTQ_DESC_F_INDIRECT},
	)...))
	f.Add(append([]byte{virtio.VIRTQ_DESC_F_INDIRECT, 0, 0xF9}, table(
		virtio.Desc{Addr: fuzzRAMSize - 1, Len: 2},
	)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < fiHeaderSize {
			return
		}
		const (
			size      = 8
			tableAddr = 0x1000
			dataAddr  = 0x8000
		)
		tab := data[fiHeaderSize:min(len(data), fiHeaderSize+fuzzMaxImage)]
		r := newFuzzRAM()
		features := virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC)
		cfg, end := virtiotest.Layout(0, size, features)
		require.Less(t, end, uint64(tableAddr))
		d := virtiotest.NewDriver(r.mem, cfg, memory.Range{Start: dataAddr, Size: fuzzRAMSize - dataAddr})
		copy(r.ram[tableAddr:], tab)

		// The direct descriptors before the table: 1 byte each.
		prefix := int(data[fiPrefix] & 3)
		direct := make([]virtio.Desc, 0, prefix+1)
		for i := range prefix {
			desc := virtio.Desc{Addr: d.Alloc(1), Len: 1, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: uint16(i + 1)}
			if data[fiPrefix]&(1<<(2+i)) != 0 {
				desc.Flags |= virtio.VIRTQ_DESC_F_WRITE
			}
			direct = append(direct, desc)
		}
		tableLen := uint32(int64(len(tab)) + int64(int8(data[fiLenAdj])))
		direct = append(direct, virtio.Desc{Addr: tableAddr, Len: tableLen, Flags: uint16(data[fiFlags]), Next: uint16(prefix + 1)})
		for i, desc := range direct {
			d.SetDesc(uint16(i), desc)
		}
		d.PutAvail(0)
		d.Publish()

		var q virtio.Virtqueue
		require.NoError(t, q.Enable(r.mem, cfg))
		var c virtio.DescChain
		ok, err := q.Pop(&c)
		want, wantErr := modelChain(r.ram, direct, size)
		if wantErr != nil {
			require.Error(t, err, "the model says: %v", wantErr)
			require.False(t, ok)
		} else {
			require.NoError(t, err)
			require.True(t, ok)
			got := append(append([][]byte{}, c.ReadableBuffers()...), c.WritableBuffers()...)
			require.Equal(t, len(want), len(got))
			for i := range want {
				require.True(t, r.inRAM(got[i]))
				require.Equal(t, want[i], got[i], "buffer %d", i)
			}
			serveChain(t, r, &c)
		}
		r.checkGuards(t)
	})
}

// modelChain walks a chain of direct descriptors that may end in an
// indirect one, by the rules of §2.7.4.2, §2.7.5 and §2.7.5.3, in guest RAM
// ram at address 0, and returns its non-empty buffers in order. The
// descriptor table holds direct and nothing else; the queue has the given
// size and VIRTIO_F_INDIRECT_DESC.
func modelChain(ram []byte, direct []virtio.Desc, size int) ([][]byte, error) {
	var bufs [][]byte
	var total uint64
	writable := false
	add := func(d virtio.Desc) error {
		w := d.Flags&virtio.VIRTQ_DESC_F_WRITE != 0
		if writable && !w {
			return errors.New("readable after writable")
		}
		writable = writable || w
		total += uint64(d.Len)
		if total > virtio.MaxChainBytes {
			return errors.New("too large")
		}
		if d.Len == 0 {
			return nil
		}
		if d.Addr >= uint64(len(ram)) || uint64(d.Len) > uint64(len(ram))-d.Addr {
			return errors.New("outside RAM")
		}
		bufs = append(bufs, ram[d.Addr:d.Addr+uint64(d.Len)])
		return nil
	}
	for i := 0; i < size; i++ {
		var d virtio.Desc // the rest of the table is zero
		if i < len(direct) {
			d = direct[i]
		}
		if d.Flags&virtio.VIRTQ_DESC_F_INDIRECT != 0 {
			if d.Flags&virtio.VIRTQ_DESC_F_NEXT != 0 || d.Len == 0 || d.Len%virtio.DescSize != 0 {
				return nil, errors.New("bad indirect descriptor")
			}
			if d.Addr >= uint64(len(ram)) || uint64(d.Len) > uint64(len(ram))-d.Addr {
				return nil, errors.New("table outside RAM")
			}
			table := ram[d.Addr : d.Addr+uint64(d.Len)]
			n := len(table) / virtio.DescSize
			visited := make([]bool, n)
			for j := 0; ; {
				if visited[j] {
					return nil, errors.New("loop")
				}
				visited[j] = true
				e := virtio.DecodeDesc(table[j*virtio.DescSize:])
				if e.Flags&virtio.VIRTQ_DESC_F_INDIRECT != 0 {
					return nil, errors.New("nested")
				}
				if err := add(e); err != nil {
					return nil, err
				}
				if e.Flags&virtio.VIRTQ_DESC_F_NEXT == 0 {
					return bufs, nil
				}
				if int(e.Next) >= n {
					return nil, errors.New("next outside the table")
				}
				j = int(e.Next)
			}
		}
		if err := add(d); err != nil {
			return nil, err
		}
		if d.Flags&virtio.VIRTQ_DESC_F_NEXT == 0 {
			return bufs, nil
		}
		if int(d.Next) != i+1 {
			return nil, errors.New("unexpected next")
		}
	}
	return nil, errors.New("too long")
}

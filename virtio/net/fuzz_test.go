package net

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"testing"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// The fuzz targets drive the device's queue logic synchronously, without
// its goroutines: a receiver or transmitter on a virtqueue in fake RAM.

const (
	fuzzQueueSize = 16
	fuzzRAMSize   = 4 << 20
	// fuzzBudget bounds the buffers one input allocates, below the RAM
	// left after the ring.
	fuzzBudget = 3 << 20
	// fuzzMaxInput bounds the inputs worth running: 16 chains of 4
	// buffers need far less (a buffer's contents past the input are
	// zeros), and long inputs make the fuzzer's minimization crawl.
	fuzzMaxInput = 1024
)

// fuzzFeatures picks a negotiated feature set from a byte: each bit drops
// one of the device's features (respecting §5.1.3.1: a TSO bit goes with
// its CSUM bit) or one of the transport's.
func fuzzFeatures(sel uint8) virtio.Features {
	f := allFeatures()
	drop := func(bit uint, bits ...uint) {
		if sel&(1<<bit) != 0 {
			f = without(f, bits...)
		}
	}
	drop(0, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN)
	drop(1, VIRTIO_NET_F_HOST_TSO6)
	drop(2, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_GUEST_ECN)
	drop(3, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN)
	drop(4, VIRTIO_NET_F_GUEST_TSO4)
	drop(5, VIRTIO_NET_F_MRG_RXBUF)
	drop(6, virtio.VIRTIO_F_EVENT_IDX)
	return f
}

// syncQueue is an enabled queue with its driver, for the fuzz targets.
type syncQueue struct {
	q   *virtio.Queue
	d   *virtiotest.Driver
	irq int
}

func newSyncQueue(t testing.TB, mem *memory.Guest, f virtio.Features, size uint16) *syncQueue {
	cfg, end := virtiotest.Layout(0, size, f)
	kick, err := eventfd.New()
	require.NoError(t, err)
	t.Cleanup(func() { kick.Close() })
	s := &syncQueue{d: virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: mem.Size() - end})}
	s.q = &virtio.Queue{Virtqueue: new(virtio.Virtqueue), Kick: kick, Interrupt: func() { s.irq++ }}
	require.NoError(t, s.q.Enable(mem, cfg))
	return s
}

func newSyncDevice(t testing.TB, f virtio.Features) (*Device, *fakeBackend, *activation) {
	be := newFakeBackend()
	d, err := New(Options{TapName: "fuzz0"}, be)
	require.NoError(t, err)
	return d, be, syncActivation(t, f)
}

// syncActivation is the activation of a device whose queue logic a test
// drives itself.
func syncActivation(t testing.TB, f virtio.Features) *activation {
	return &activation{
		act: &virtio.Activation{Features: f, Fail: func(err error) { t.Errorf("Fail(%v)", err) }},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// byteReader hands out the fuzz input, then zeros.
type byteReader []byte

func (r *byteReader) u8() uint8 {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return b
}

func (r *byteReader) u16() uint16 { return uint16(r.u8()) | uint16(r.u8())<<8 }

func (r *byteReader) bytes(n int) []byte {
	out := make([]byte, n)
	k := copy(out, *r)
	*r = (*r)[k:]
	return out
}

// txAccepted is the transmit rules of §5.1.6.2.1 written out again, as
// the oracle for FuzzTX.
func txAccepted(f virtio.Features, h Header, readable int, buffers int) bool {
	if readable < HeaderSize+ethHeaderLen || readable > HeaderSize+MaxPacketLen || buffers > MaxBuffers {
		return false
	}
	csum := h.Flags&VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
	if csum && !f.Has(VIRTIO_NET_F_CSUM) {
		return false
	}
	gso, ecn := h.GSOType&^VIRTIO_NET_HDR_GSO_ECN, h.GSOType&VIRTIO_NET_HDR_GSO_ECN != 0
	switch {
	case gso == VIRTIO_NET_HDR_GSO_NONE:
		return !ecn
	case gso == VIRTIO_NET_HDR_GSO_TCPV4 && f.Has(VIRTIO_NET_F_HOST_TSO4),
		gso == VIRTIO_NET_HDR_GSO_TCPV6 && f.Has(VIRTIO_NET_F_HOST_TSO6):
		return csum && h.GSOSize != 0 && (!ecn || f.Has(VIRTIO_NET_F_HOST_ECN))
	}
	return false
}

// FuzzTX sends transmit chains of fuzzed shapes and contents through the
// device: every chain must complete with a used length of 0, and exactly
// the well-formed packets must reach the backend, intact but for the
// header's ignored fields.
func FuzzTX(f *testing.F) {
	valid := packet(csumHeader, frame(60, 1))
	f.Add(uint8(0), append([]byte{1, 1, byte(len(valid)), 0}, valid...))
	f.Add(uint8(0xff), []byte{3, 2, 5, 0, 7, 0, 100, 0, 1, 1, 2, 3})
	f.Add(uint8(0x10), append([]byte{2, 0x82, 12, 0, 200, 0}, packet(Header{Flags: 1, GSOType: 1, GSOSize: 1448}, frame(200, 0))...))
	mem, _ := virtiotest.NewRAM(0, fuzzRAMSize) // reused: each input lays out fresh rings
	f.Fuzz(func(t *testing.T, sel uint8, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		feat := fuzzFeatures(sel)
		sq := newSyncQueue(t, mem, feat, fuzzQueueSize)
		d, be, run := newSyncDevice(t, feat)
		tx := newTransmitter(d, run, sq.q)

		in := byteReader(data)
		type sent struct {
			packet  []byte
			buffers int
		}
		var chains []sent
		budget := fuzzBudget
		// A chain takes up to four readable buffers and an ignored
		// writable one.
		const maxChainBuffers = 5
		for len(in) > 0 && len(chains) < fuzzQueueSize && sq.d.FreeDescriptors() >= maxChainBuffers {
			shape := in.u8()
			n := int(shape%4) + 1
			indirect := shape&0x80 != 0 && feat.Has(virtio.VIRTIO_F_INDIRECT_DESC)
			var bufs []virtiotest.Buf
			var p []byte
			for range n {
				size := int(in.u16()) % 2048
				if in.u8()&0x7f == 0x7f {
					// Up to around the limit on a packet's size.
					size = max(MaxPacketLen+HeaderSize-len(p)+size%3-1, 0)
				}
				if size+64 > budget {
					size = 0
				}
				budget -= size + 64 // with Alloc's alignment
				part := in.bytes(size)
				p = append(p, part...)
				bufs = append(bufs, sq.d.Readable(part))
			}
			if shape&0x40 != 0 {
				bufs = append(bufs, sq.d.Writable(16)) // ignored
			}
			if indirect {
				sq.d.AddIndirectChain(bufs...)
			} else {
				sq.d.AddChain(bufs...)
			}
			chains = append(chains, sent{p, n})
		}
		sq.d.Publish()
		require.NoError(t, tx.drain())
		require.Equal(t, uint16(len(chains)), sq.d.UsedIdx())
		for range chains {
			_, l, ok := sq.d.GetUsed()
			require.True(t, ok)
			require.Zero(t, l)
		}

		var want [][]byte
		for _, c := range chains {
			if len(c.packet) < HeaderSize {
				continue
			}
			h := DecodeHeader(c.packet)
			// The header's own buffer plus the frame's.
			if !txAccepted(feat, h, len(c.packet), c.buffers+1) {
				continue
			}
			h.Flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM
			h.NumBuffers = 0
			w := append([]byte(nil), c.packet...)
			h.Encode(w)
			want = append(want, w)
		}
		got := be.packets()
		require.Equal(t, len(want), len(got), "packets sent")
		for i := range want {
			require.True(t, bytes.Equal(want[i], got[i]), "packet %d differs", i)
		}
		s := d.Stats()
		require.Equal(t, uint64(len(chains)), s.TXPackets+s.TXErrors)
	})
}

// FuzzRXHeader delivers one packet with a fuzzed header and length into
// receive chains of fuzzed sizes. Whatever the input, a packet the driver
// gets obeys §5.1.6.4.1 for the negotiated features, num_buffers matches
// the chains used, all but the last of them are full, and the bytes are the
// packet's; a packet not delivered used no chain.
func FuzzRXHeader(f *testing.F) {
	hdr := make([]byte, HeaderSize)
	Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV4, GSOSize: 1448}.Encode(hdr)
	f.Add(uint8(0), hdr, uint16(3000), []byte{0, 6, 0, 6, 0, 6, 0, 6})
	f.Add(uint8(0x20), make([]byte, HeaderSize), uint16(1500), []byte{0xee, 5})
	f.Add(uint8(0x08), []byte{3, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9}, uint16(60), []byte{12, 0, 0, 1})
	mem, _ := virtiotest.NewRAM(0, fuzzRAMSize)
	f.Fuzz(func(t *testing.T, sel uint8, header []byte, frameLen uint16, sizes []byte) {
		if len(header) < HeaderSize || len(header) > HeaderSize+1 || len(sizes) > fuzzMaxInput {
			return
		}
		feat := fuzzFeatures(sel)
		sq := newSyncQueue(t, mem, feat, fuzzQueueSize)
		d, be, run := newSyncDevice(t, feat)
		r := newReceiver(d, run, sq.q)

		// Receive chains of one or two writable buffers.
		in := byteReader(sizes)
		type posted struct{ bufs []virtiotest.Buf }
		chains := map[uint16]posted{}
		for len(in) > 0 && sq.d.FreeDescriptors() >= 2 {
			size := uint32(in.u16()) % 8192
			bufs := []virtiotest.Buf{sq.d.Writable(size)}
			if size%3 == 0 {
				bufs = append(bufs, sq.d.Writable(size/3+1))
			}
			chains[sq.d.AddChain(bufs...)] = posted{bufs}
		}
		sq.d.Publish()

		p := append(append([]byte(nil), header[:HeaderSize]...), frame(max(int(frameLen), ethHeaderLen), 7)...)
		p = p[:HeaderSize+int(frameLen)] // runts too
		be.push(p)

		require.NoError(t, r.fill())
		if !r.ready() {
			require.Zero(t, be.reads())
			return
		}
		capacity := r.gather()
		n, err := be.ReadPacket(r.iov, nil)
		require.NoError(t, err)
		require.NoError(t, r.deliver(n, capacity))
		r.publish()

		// Chains too small for a header come back empty, first.
		var used [][]byte
		for {
			id, l, ok := sq.d.GetUsed()
			if !ok {
				break
			}
			c, found := chains[uint16(id)]
			require.True(t, found, "used id %d", id)
			var data []byte
			total := uint32(0)
			for _, b := range c.bufs {
				data = append(data, sq.d.ReadMem(b.Addr, uint64(b.Len))...)
				total += b.Len
			}
			require.LessOrEqual(t, l, total)
			if total < HeaderSize {
				require.Zero(t, l)
				continue
			}
			if len(used) > 0 {
				require.Equal(t, len(used[len(used)-1]), cap(used[len(used)-1]), "a buffer before the last is full")
			}
			used = append(used, data[:l:total])
		}
		if len(used) == 0 {
			require.Equal(t, uint64(1), d.Stats().RXDropped, "a packet not delivered is counted")
			return
		}
		require.Equal(t, uint64(1), d.Stats().RXPackets)
		got := DecodeHeader(used[0])
		require.Equal(t, int(got.NumBuffers), len(used), "num_buffers")
		if !feat.Has(VIRTIO_NET_F_MRG_RXBUF) {
			require.Equal(t, 1, len(used))
		}
		if !feat.Has(VIRTIO_NET_F_GUEST_CSUM) {
			require.Zero(t, got.Flags)
		}
		require.Zero(t, got.Flags&^(VIRTIO_NET_HDR_F_NEEDS_CSUM|VIRTIO_NET_HDR_F_DATA_VALID))
		gso := got.GSOType &^ VIRTIO_NET_HDR_GSO_ECN
		switch gso {
		case VIRTIO_NET_HDR_GSO_NONE:
			require.Zero(t, got.GSOType&VIRTIO_NET_HDR_GSO_ECN)
		case VIRTIO_NET_HDR_GSO_TCPV4:
			require.True(t, feat.Has(VIRTIO_NET_F_GUEST_TSO4))
		case VIRTIO_NET_HDR_GSO_TCPV6:
			require.True(t, feat.Has(VIRTIO_NET_F_GUEST_TSO6))
		default:
			t.Fatalf("gso_type %#x delivered", got.GSOType)
		}
		if got.GSOType&VIRTIO_NET_HDR_GSO_ECN != 0 {
			require.True(t, feat.Has(VIRTIO_NET_F_GUEST_ECN))
		}
		if gso != VIRTIO_NET_HDR_GSO_NONE {
			require.NotZero(t, got.Flags&VIRTIO_NET_HDR_F_NEEDS_CSUM)
		}
		// The fields the device does not touch are the backend's.
		want := DecodeHeader(p)
		require.Equal(t, []uint16{want.HdrLen, want.GSOSize, want.CsumStart, want.CsumOffset},
			[]uint16{got.HdrLen, got.GSOSize, got.CsumStart, got.CsumOffset})
		var all []byte
		for _, u := range used {
			all = append(all, u...)
		}
		require.Equal(t, p[HeaderSize:], all[HeaderSize:])
		require.Equal(t, binary.LittleEndian.Uint16(all[hdrNumBuffersOff:]), uint16(len(used)))
	})
}

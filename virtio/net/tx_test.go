package net

import (
	"errors"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// csumHeader is a header with a partial TCP/IPv4 checksum, as §5.1.6.2's
// example has it.
var csumHeader = Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, CsumStart: 34, CsumOffset: 16}

func TestTXSingleDescriptor(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	p := packet(csumHeader, frame(1514, 1))
	head := h.addTX(p)
	h.kickTX()
	h.waitUsed(h.txd, 1)

	id, n, ok := h.txd.GetUsed()
	require.True(t, ok)
	assert.Equal(t, uint32(head), id)
	assert.Zero(t, n, "the device writes nothing into a transmit chain")
	got := h.be.packets()
	require.Len(t, got, 1)
	assert.Equal(t, p, got[0], "header and frame reach the backend intact")
	assert.Equal(t, Stats{TXPackets: 1, TXBytes: 1514}, h.dev.Stats())
	h.noFail()
}

func TestTXMultiDescriptor(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	tso := Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	p := packet(tso, frame(60000, 7))
	// The header split across descriptors, the frame in uneven pieces.
	parts := [][]byte{p[:5], p[5:12], p[12:100], p[100:4096], p[4096:]}
	h.addTX(parts...)
	// The same packet through an indirect table (§2.7.5.3).
	var bufs []virtiotest.Buf
	for _, part := range [][]byte{p[:12], p[12:30000], p[30000:]} {
		bufs = append(bufs, h.txd.Readable(part))
	}
	h.txd.AddIndirectChain(bufs...)
	h.kickTX()
	h.waitUsed(h.txd, 2)

	got := h.be.packets()
	require.Len(t, got, 2)
	assert.Equal(t, p, got[0])
	assert.Equal(t, p, got[1])
	h.noFail()
}

func TestTXIgnoresUnknownFlagsAndNumBuffers(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	sent := csumHeader
	sent.Flags |= VIRTIO_NET_HDR_F_DATA_VALID | VIRTIO_NET_HDR_F_RSC_INFO | 0x40
	sent.NumBuffers = 9
	f := frame(100, 3)
	h.addTX(packet(sent, f))
	h.kickTX()
	h.waitUsed(h.txd, 1)
	got := h.be.packets()
	require.Len(t, got, 1)
	// §5.1.6.2.2: unknown flag bits are ignored, so they do not reach the
	// tap; num_buffers is zero on transmit.
	assert.Equal(t, packet(csumHeader, f), got[0])
}

func TestTXBatchInterruptsOnce(t *testing.T) {
	for _, tc := range suppressionModes() {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.features)
			h.activate()
			const n = 32
			for i := range n {
				h.addTX(packet(Header{}, frame(200, byte(i))))
			}
			// One avail->idx store makes all of them visible at once, so
			// the worker takes them in one pass.
			h.kickTX()
			h.waitUsed(h.txd, n)
			require.Eventually(t, func() bool { return h.irqs[transmitq1].Load() >= 1 }, waitFor, time.Millisecond)
			time.Sleep(20 * time.Millisecond)
			assert.Equal(t, int64(1), h.irqs[transmitq1].Load(), "%d packets, one interrupt", n)
			got := h.be.packets()
			require.Len(t, got, n)
			for i, p := range got {
				assert.Equal(t, packet(Header{}, frame(200, byte(i))), p, "packet %d", i)
			}
		})
	}
}

func TestTXMalformedChainsAreCompletedAndDropped(t *testing.T) {
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN))
	h.activate()
	ok := packet(Header{}, frame(64, 9))
	bad := []struct {
		name  string
		chain func() uint16
	}{
		{"no readable buffer", func() uint16 { return h.txd.AddChain(h.txd.Writable(100)) }},
		{"shorter than the header", func() uint16 { return h.addTX(make([]byte, HeaderSize-1)) }},
		{"header only", func() uint16 { return h.addTX(make([]byte, HeaderSize)) }},
		{"runt frame", func() uint16 { return h.addTX(make([]byte, HeaderSize+ethHeaderLen-1)) }},
		{"oversize", func() uint16 { return h.addTX(packet(Header{}, frame(MaxPacketLen+1, 0))) }},
		{"too many buffers", func() uint16 {
			var bufs []virtiotest.Buf
			bufs = append(bufs, h.txd.Readable(ok[:HeaderSize+ethHeaderLen]))
			for range MaxBuffers {
				bufs = append(bufs, h.txd.Readable([]byte{0}))
			}
			return h.txd.AddIndirectChain(bufs...)
		}},
		{"TSO without NEEDS_CSUM", func() uint16 {
			return h.addTX(packet(Header{GSOType: VIRTIO_NET_HDR_GSO_TCPV4, GSOSize: 1448}, frame(64, 0)))
		}},
		{"TSO without gso_size", func() uint16 {
			return h.addTX(packet(Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV4}, frame(64, 0)))
		}},
		{"TSO6 not negotiated", func() uint16 {
			return h.addTX(packet(Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV6, GSOSize: 1440}, frame(64, 0)))
		}},
		{"ECN not negotiated", func() uint16 {
			return h.addTX(packet(Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN, GSOSize: 1448}, frame(64, 0)))
		}},
		{"ECN without GSO", func() uint16 { return h.addTX(packet(Header{GSOType: VIRTIO_NET_HDR_GSO_ECN}, frame(64, 0))) }},
		{"UDP fragmentation", func() uint16 {
			return h.addTX(packet(Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_UDP, GSOSize: 1400}, frame(64, 0)))
		}},
		{"UDP segmentation", func() uint16 {
			return h.addTX(packet(Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_UDP_L4, GSOSize: 1400}, frame(64, 0)))
		}},
	}
	heads := map[uint16]string{}
	for _, b := range bad {
		heads[b.chain()] = b.name
	}
	last := h.addTX(ok)
	h.kickTX()
	n := uint16(len(bad) + 1)
	h.waitUsed(h.txd, n)
	for range n {
		id, length, got := h.txd.GetUsed()
		require.True(t, got)
		assert.Zero(t, length, "chain %q", heads[uint16(id)])
		delete(heads, uint16(id))
	}
	assert.Empty(t, heads, "chains not completed")
	got := h.be.packets()
	require.Len(t, got, 1, "only the well-formed packet is sent")
	assert.Equal(t, ok, got[0])
	assert.Equal(t, uint64(len(bad)), h.dev.Stats().TXErrors)
	_ = last
	h.noFail()
}

func TestTXNeedsCsumWithoutCSUMIsDropped(t *testing.T) {
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN))
	h.activate()
	h.addTX(packet(csumHeader, frame(100, 0)))
	h.addTX(packet(Header{}, frame(100, 0)))
	h.kickTX()
	h.waitUsed(h.txd, 2)
	assert.Len(t, h.be.packets(), 1)
	assert.Equal(t, uint64(1), h.dev.Stats().TXErrors)
}

func TestTXBrokenQueueFailsTheDevice(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	h.txd.PutAvail(h.txSize + 5) // a head past the descriptor table
	h.kickTX()
	select {
	case err := <-h.fails:
		assert.True(t, errors.Is(err, virtio.ErrDescIndex), "%v", err)
	case <-time.After(waitFor):
		t.Fatal("no Activation.Fail for a broken transmit queue")
	}
	assert.Zero(t, h.be.writes())
}

func TestTXOtherBackendErrorsAreCountedAndLoggedOnce(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.be.writeErr = errors.New("write: input/output error")
	h.activate()
	for range 5 {
		h.addTX(packet(Header{}, frame(100, 0)))
	}
	h.kickTX()
	h.waitUsed(h.txd, 5)
	assert.Equal(t, uint64(5), h.dev.Stats().TXDropped)
	assert.Equal(t, 1, countLines(h.logs.String(), "refused a packet"), h.logs.String())
	h.noFail()
}

package net

import (
	"strings"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// quiet is how long a test watches for something that must not happen.
const quiet = 50 * time.Millisecond

func countLines(log, substr string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

func TestRXDeliversIntoPostedBuffers(t *testing.T) {
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
	h.activate()
	h.postRX(2048, 2048, 2048)
	tso := Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV6, HdrLen: 86, GSOSize: 1440, CsumStart: 54, CsumOffset: 16}
	sent := []struct {
		h Header
		f []byte
	}{
		{Header{}, frame(60, 1)},
		{Header{Flags: VIRTIO_NET_HDR_F_DATA_VALID}, frame(1514, 2)},
		{tso, frame(2000, 3)},
	}
	for _, s := range sent {
		h.be.push(packet(s.h, s.f))
	}
	h.waitUsed(h.rxd, 3)
	for i, s := range sent {
		used := h.takeRX()
		assert.Equal(t, uint32(HeaderSize+len(s.f)), used.len, "packet %d: used length", i)
		want := s.h
		want.NumBuffers = 1 // §5.1.6.4.1: always 1 without MRG_RXBUF
		assert.Equal(t, want, DecodeHeader(used.data), "packet %d", i)
		assert.Equal(t, s.f, used.data[HeaderSize:], "packet %d", i)
	}
	assert.Equal(t, Stats{RXPackets: 3, RXBytes: 60 + 1514 + 2000}, h.dev.Stats())
	assert.Positive(t, h.irqs[receiveq1].Load())
	h.noFail()
}

func TestRXChainOfSeveralBuffers(t *testing.T) {
	// A driver may split one receive chain into several descriptors, the
	// header in one of its own (the legacy Windows driver does).
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
	h.activate()
	h.postRXChain(HeaderSize, 100, 1500)
	f := frame(1514, 4)
	h.be.push(packet(Header{}, f))
	h.waitUsed(h.rxd, 1)
	hdr, data := h.takeRXPacket()
	assert.Equal(t, uint16(1), hdr.NumBuffers)
	assert.Equal(t, f, data)
}

func TestRXMergeableBuffers(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	const bufSize = 1536
	sizes := make([]uint32, 50) // 76800 bytes: room for the largest packet
	for i := range sizes {
		sizes[i] = bufSize
	}
	h.postRX(sizes...)
	big, small := frame(5000, 5), frame(100, 6)
	h.be.push(packet(Header{}, big), packet(Header{}, small))
	// 12 + 5000 bytes: three full buffers and 404 bytes of a fourth.
	h.waitUsed(h.rxd, 5)
	var lens []uint32
	var data []byte
	for i := range 4 {
		u := h.takeRX()
		lens = append(lens, u.len)
		if i == 0 {
			hdr := DecodeHeader(u.data)
			assert.Equal(t, uint16(4), hdr.NumBuffers, "num_buffers")
			data = append(data, u.data[HeaderSize:]...)
		} else {
			data = append(data, u.data...)
		}
	}
	assert.Equal(t, []uint32{bufSize, bufSize, bufSize, HeaderSize + 5000 - 3*bufSize}, lens,
		"all buffers but the last are used completely (§5.1.6.4.1)")
	assert.Equal(t, big, data)
	hdr, got := h.takeRXPacket()
	assert.Equal(t, uint16(1), hdr.NumBuffers)
	assert.Equal(t, small, got)
	h.noFail()
}

func TestRXLargestPacketInMergeableBuffers(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	sizes := make([]uint32, 17) // 17 pages: Linux's largest mergeable buffers
	for i := range sizes {
		sizes[i] = 4096
	}
	h.postRX(sizes...)
	tso := Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV6, GSOSize: 1440, CsumStart: 54, CsumOffset: 16}
	f := frame(MaxPacketLen, 8)
	h.be.push(packet(tso, f))
	h.waitUsed(h.rxd, 17)
	hdr, got := h.takeRXPacket()
	assert.Equal(t, uint16(17), hdr.NumBuffers)
	assert.Equal(t, f, got)
}

func TestRXDoesNotReadWithoutBuffers(t *testing.T) {
	t.Run("one chain per packet", func(t *testing.T) {
		h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
		f := frame(1000, 1)
		h.be.push(packet(Header{}, f))
		h.activate()
		time.Sleep(quiet)
		assert.Zero(t, h.be.reads(), "the backend was read with no receive buffer posted")
		h.postRX(1526)
		h.waitUsed(h.rxd, 1)
		_, got := h.takeRXPacket()
		assert.Equal(t, f, got)
	})
	t.Run("mergeable", func(t *testing.T) {
		h := newHarness(t, allFeatures())
		f := frame(1000, 2)
		h.be.push(packet(Header{}, f))
		h.activate()
		// 10 buffers of 1536 bytes hold 15360 bytes: not the largest
		// packet, so the device must keep waiting.
		sizes := make([]uint32, 10)
		for i := range sizes {
			sizes[i] = 1536
		}
		h.postRX(sizes...)
		time.Sleep(quiet)
		assert.Zero(t, h.be.reads(), "the backend was read before the buffers could take any packet")
		assert.Zero(t, h.rxd.UsedIdx())
		more := make([]uint32, 40)
		for i := range more {
			more[i] = 1536
		}
		h.postRX(more...)
		h.waitUsed(h.rxd, 1)
		_, got := h.takeRXPacket()
		assert.Equal(t, f, got)
	})
}

func TestRXSmallRingDoesNotDeadlock(t *testing.T) {
	// A ring that cannot hold the largest packet even when full: the
	// device reads once it holds every chain the ring can have.
	h := newHarness(t, allFeatures())
	h.rxSize = 8
	h.activate()
	f := frame(3000, 3)
	h.be.push(packet(Header{}, f))
	h.postRX(1536, 1536, 1536, 1536, 1536, 1536, 1536)
	time.Sleep(quiet)
	assert.Zero(t, h.be.reads())
	h.postRX(1536)
	h.waitUsed(h.rxd, 2)
	hdr, got := h.takeRXPacket()
	assert.Equal(t, uint16(2), hdr.NumBuffers)
	assert.Equal(t, f, got)
}

func TestRXWakesOnKickAfterRunningOut(t *testing.T) {
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
	h.activate()
	for i := range 20 {
		h.be.push(packet(Header{}, frame(100, byte(i))))
	}
	for i := range 20 {
		h.postRX(200)
		h.waitUsed(h.rxd, uint16(i+1))
		_, got := h.takeRXPacket()
		require.Equal(t, frame(100, byte(i)), got, "packet %d", i)
	}
	h.noFail()
}

func TestRXHeaderRules(t *testing.T) {
	t.Run("flags cleared without GUEST_CSUM", func(t *testing.T) {
		f := without(allFeatures(), VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN)
		h := newHarness(t, f)
		h.activate()
		h.postRX(make4K(20)...)
		h.be.push(packet(Header{Flags: VIRTIO_NET_HDR_F_DATA_VALID}, frame(100, 1)))
		h.waitUsed(h.rxd, 1)
		hdr, _ := h.takeRXPacket()
		assert.Zero(t, hdr.Flags, "§5.1.6.4.1: flags MUST be zero without GUEST_CSUM")
	})
	t.Run("RSC_INFO cleared", func(t *testing.T) {
		h := newHarness(t, allFeatures())
		h.activate()
		h.postRX(make4K(20)...)
		h.be.push(packet(Header{Flags: VIRTIO_NET_HDR_F_DATA_VALID | VIRTIO_NET_HDR_F_RSC_INFO}, frame(100, 1)))
		h.waitUsed(h.rxd, 1)
		hdr, _ := h.takeRXPacket()
		assert.Equal(t, uint8(VIRTIO_NET_HDR_F_DATA_VALID), hdr.Flags)
	})
	t.Run("offloads the driver did not accept are dropped", func(t *testing.T) {
		f := without(allFeatures(), VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_ECN)
		h := newHarness(t, f)
		h.activate()
		h.postRX(make4K(20)...)
		tso4 := Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV4, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
		ecn6 := Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN, GSOSize: 1440}
		noCsum6 := Header{GSOType: VIRTIO_NET_HDR_GSO_TCPV6, GSOSize: 1440}
		udp := Header{Flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, GSOType: VIRTIO_NET_HDR_GSO_UDP_L4, GSOSize: 1400}
		good := frame(3000, 9)
		h.be.push(packet(tso4, frame(3000, 1)), packet(ecn6, frame(3000, 2)), packet(noCsum6, frame(3000, 3)),
			packet(udp, frame(3000, 4)), packet(Header{}, good))
		h.waitUsed(h.rxd, 1)
		hdr, got := h.takeRXPacket()
		assert.Equal(t, good, got, "the dropped packets used no buffer")
		assert.Equal(t, uint16(1), hdr.NumBuffers)
		assert.Equal(t, uint64(4), h.dev.Stats().RXDropped)
	})
	t.Run("truncated packets are dropped", func(t *testing.T) {
		h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
		h.activate()
		h.postRX(1526)
		small := frame(1514, 2)
		h.be.push(packet(Header{}, frame(1515, 1)), packet(Header{}, small))
		h.waitUsed(h.rxd, 1)
		_, got := h.takeRXPacket()
		assert.Equal(t, small, got)
		assert.Equal(t, uint64(1), h.dev.Stats().RXDropped)
	})
}

func make4K(n int) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = 4096
	}
	return s
}

func TestRXBufferTooSmallForAHeaderIsReturnedEmpty(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	h.postRX(HeaderSize - 1)
	h.waitUsed(h.rxd, 1)
	u := h.takeRX()
	assert.Zero(t, u.len)
	assert.Zero(t, h.be.reads())
	h.noFail()
}

func TestRXBrokenQueueFailsTheDevice(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	h.rxd.PutAvail(h.rxSize) // a head past the descriptor table
	h.rxd.Publish()
	require.NoError(t, h.kicks[receiveq1].Signal())
	select {
	case err := <-h.fails:
		assert.ErrorIs(t, err, virtio.ErrDescIndex)
	case <-time.After(waitFor):
		t.Fatal("no Activation.Fail for a broken receive queue")
	}
}

func TestRXPublishesBatches(t *testing.T) {
	// With a backend that never runs dry the device must still publish,
	// every rxBatch packets.
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
	h.be.generate = packet(Header{}, frame(64, 0))
	h.activate()
	sizes := make([]uint32, rxBatch)
	for i := range sizes {
		sizes[i] = 128
	}
	h.postRX(sizes...)
	h.waitUsed(h.rxd, rxBatch)
	assert.Equal(t, int64(1), h.irqs[receiveq1].Load())
}

func TestRXPublishesWhenTheBackendRunsDry(t *testing.T) {
	// The driver has buffers to spare; the device must not sit on the
	// packets it delivered while it waits for the next one.
	h := newHarness(t, without(allFeatures(), VIRTIO_NET_F_MRG_RXBUF))
	h.activate()
	h.postRX(make4K(10)...)
	for i := range 3 {
		h.be.push(packet(Header{}, frame(100, byte(i))))
	}
	h.waitUsed(h.rxd, 3)
	assert.Equal(t, int64(1), h.irqs[receiveq1].Load())
	for i := range 3 {
		_, got := h.takeRXPacket()
		assert.Equal(t, frame(100, byte(i)), got)
	}
}

func TestRXNeedsNoKicksWhileItHoldsEnough(t *testing.T) {
	// While the device holds enough buffers and waits for a packet, the
	// driver's refills need no notification (§2.7.10): no VM exit.
	for _, f := range []virtio.Features{allFeatures(), without(allFeatures(), virtio.VIRTIO_F_EVENT_IDX)} {
		h := newHarness(t, f)
		h.activate()
		h.postRX(make4K(20)...)
		require.Eventually(t, func() bool { return h.be.reads() > 0 }, waitFor, time.Millisecond)
		h.rxd.AddChain(h.rxd.Writable(4096))
		assert.False(t, h.rxd.Publish(), "EVENT_IDX %v: the driver is asked to notify", f.Has(virtio.VIRTIO_F_EVENT_IDX))
	}
}

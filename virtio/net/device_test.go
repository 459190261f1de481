package net

import (
	"bytes"
	"encoding/binary"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDeviceIdentity(t *testing.T) {
	d, err := New(Options{TapName: "gv0"}, newFakeBackend())
	require.NoError(t, err)
	assert.Equal(t, uint16(virtio.VIRTIO_ID_NET), d.DeviceID())
	assert.Equal(t, []uint16{QueueSize, QueueSize}, d.QueueMaxSizes())
	assert.Equal(t, MACFromName("gv0"), d.MAC())

	f := d.Features()
	for _, bit := range []uint{VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MAC,
		VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
		VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS} {
		assert.True(t, f.Has(bit), "feature %d offered", bit)
	}
	for _, bit := range []uint{VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MTU,
		VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_UFO, virtio.VIRTIO_F_VERSION_1} {
		assert.False(t, f.Has(bit), "feature %d not offered", bit)
	}
	// §5.1.3.1: the dependencies among the offered bits.
	requires := map[uint][]uint{
		VIRTIO_NET_F_GUEST_TSO4: {VIRTIO_NET_F_GUEST_CSUM},
		VIRTIO_NET_F_GUEST_TSO6: {VIRTIO_NET_F_GUEST_CSUM},
		VIRTIO_NET_F_GUEST_ECN:  {VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6},
		VIRTIO_NET_F_HOST_TSO4:  {VIRTIO_NET_F_CSUM},
		VIRTIO_NET_F_HOST_TSO6:  {VIRTIO_NET_F_CSUM},
		VIRTIO_NET_F_HOST_ECN:   {VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6},
	}
	for bit, anyOf := range requires {
		if !f.Has(bit) {
			continue
		}
		ok := false
		for _, r := range anyOf {
			ok = ok || f.Has(r)
		}
		assert.True(t, ok, "feature %d offered without one of %v", bit, anyOf)
	}
}

func TestNewRejectsBadAddresses(t *testing.T) {
	for _, mac := range []string{"\x01\x02\x03\x04\x05\x06", "\x00\x00\x00\x00\x00\x00", "\x02\x00\x00\x00\x00"} {
		_, err := New(Options{TapName: "gv0", MAC: []byte(mac)}, newFakeBackend())
		assert.Error(t, err, "MAC % x", mac)
	}
	_, err := New(Options{}, newFakeBackend())
	assert.Error(t, err)
	_, err = New(Options{TapName: "gv0"}, nil)
	assert.Error(t, err)
}

// wantConfig is struct virtio_net_config for mac and status.
func wantConfig(mac []byte, status uint16) []byte {
	c := make([]byte, configSize)
	copy(c, mac)
	binary.LittleEndian.PutUint16(c[configStatusOff:], status)
	binary.LittleEndian.PutUint16(c[configMaxVirtqueuePairsOff:], 1)
	return c
}

func TestConfigReadsAtAnyOffsetAndLength(t *testing.T) {
	mac := []byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	d, err := New(Options{TapName: "gv0", MAC: mac}, newFakeBackend())
	require.NoError(t, err)
	want := wantConfig(mac, VIRTIO_NET_S_LINK_UP)
	padded := append(want, make([]byte, 64)...)
	for off := range uint64(40) {
		for n := range 40 {
			data := bytes.Repeat([]byte{0xEE}, n)
			d.ReadConfig(off, data)
			exp := make([]byte, n)
			copy(exp, padded[off:])
			require.Equal(t, exp, data, "offset %d length %d", off, n)
		}
	}
	for _, off := range []uint64{configSize, 1 << 32, math.MaxUint64 - 3, math.MaxUint64} {
		data := []byte{1, 2, 3, 4}
		d.ReadConfig(off, data)
		assert.Equal(t, []byte{0, 0, 0, 0}, data, "offset %#x", off)
	}
	// The driver "MUST NOT write to any of the device configuration
	// fields" (§5.1.4); writes change nothing.
	d.WriteConfig(0, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0})
	d.WriteConfig(math.MaxUint64, []byte{1})
	got := make([]byte, configSize)
	d.ReadConfig(0, got)
	assert.Equal(t, want, got)
}

func TestVanishedBackend(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	h.postRX(make4K(20)...)
	h.addTX(packet(Header{}, frame(100, 0)))
	h.kickTX()
	h.waitUsed(h.txd, 1)
	require.Eventually(t, func() bool { return h.be.reads() > 0 }, waitFor, time.Millisecond,
		"the receive worker is waiting for a packet")

	h.be.vanish()
	for i := range 10 {
		h.addTX(packet(Header{}, frame(100, byte(i))))
		h.kickTX()
	}
	h.waitUsed(h.txd, 11)
	writes := h.be.writes()
	for range 5 {
		h.addTX(packet(Header{}, frame(100, 0)))
	}
	h.kickTX()
	h.waitUsed(h.txd, 16)

	// The receive worker may be the one reporting it, concurrently.
	require.Eventually(t, func() bool { return h.configs.Load() == 1 }, waitFor, time.Millisecond)
	time.Sleep(quiet)
	logs := h.logs.String()
	assert.Equal(t, 1, countLines(logs, "vanished"), "reported once:\n%s", logs)
	assert.Contains(t, logs, "tap=fake0")
	assert.Equal(t, writes, h.be.writes(), "no writes to a vanished backend")
	s := h.dev.Stats()
	assert.Equal(t, uint64(1), s.TXPackets)
	assert.Equal(t, uint64(15), s.TXDropped)

	// The link is down, and the driver was told (§5.1.4 status).
	status := make([]byte, 2)
	h.dev.ReadConfig(configStatusOff, status)
	assert.Zero(t, binary.LittleEndian.Uint16(status), "VIRTIO_NET_S_LINK_UP cleared")
	assert.Equal(t, int64(1), h.configs.Load())

	// Receiving has stopped: new buffers are left alone.
	reads := h.be.reads()
	h.postRX(make4K(20)...)
	time.Sleep(quiet)
	assert.Equal(t, reads, h.be.reads())
	assert.Zero(t, h.rxd.UsedIdx())
	h.noFail()

	// A reset and a new activation keep it so, without a second report.
	h.dev.Reset()
	h.activate()
	h.addTX(packet(Header{}, frame(100, 0)))
	h.kickTX()
	h.waitUsed(h.txd, 1)
	assert.Equal(t, 1, countLines(h.logs.String(), "vanished"))
	h.noFail()
}

func TestVanishedOnReadOnly(t *testing.T) {
	// The interface may go while only the receive side is busy.
	h := newHarness(t, allFeatures())
	h.activate()
	h.postRX(make4K(20)...)
	require.Eventually(t, func() bool { return h.be.reads() > 0 }, waitFor, time.Millisecond)
	h.be.vanish()
	require.Eventually(t, func() bool { return countLines(h.logs.String(), "vanished") == 1 }, waitFor, time.Millisecond)
	h.addTX(packet(Header{}, frame(100, 0)))
	h.kickTX()
	h.waitUsed(h.txd, 1)
	assert.Equal(t, uint64(1), h.dev.Stats().TXDropped)
	assert.Equal(t, 1, countLines(h.logs.String(), "vanished"))
	h.noFail()
}

// TestResetWhileBusy resets the device while both workers are busy, checks
// that nothing touches guest RAM after Reset returns, and activates it
// again. Run it with the race detector.
func TestResetWhileBusy(t *testing.T) {
	for round := range 3 {
		h := newHarness(t, allFeatures())
		h.be.generate = packet(Header{}, frame(1514, byte(round)))
		h.be.discard = true
		h.activate()

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The driver: keeps both queues full.
			for {
				select {
				case <-stop:
					return
				default:
				}
				for {
					if _, ok := h.takeUsedRX(); !ok {
						break
					}
				}
				for h.rxd.FreeDescriptors() > 0 {
					h.rxd.AddChain(h.rxBuf())
				}
				for {
					if _, _, ok := h.txd.GetUsed(); !ok {
						break
					}
				}
				for h.txd.FreeDescriptors() > 0 {
					h.txd.AddChain(h.txBuf())
				}
				h.rxd.Publish()
				h.txd.Publish()
				_ = h.kicks[receiveq1].Signal()
				_ = h.kicks[transmitq1].Signal()
				time.Sleep(100 * time.Microsecond)
			}
		}()
		require.Eventually(t, func() bool {
			s := h.dev.Stats()
			return s.RXPackets > 100 && s.TXPackets > 100
		}, waitFor, time.Millisecond)

		start := time.Now()
		h.dev.Reset()
		assert.Less(t, time.Since(start), time.Second, "Reset is prompt")
		close(stop)
		wg.Wait()

		// Nothing of the device runs any more: guest RAM and the
		// counters stay as they are.
		ram := h.snapshot()
		s := h.dev.Stats()
		time.Sleep(quiet)
		assert.True(t, bytes.Equal(ram, h.snapshot()), "guest RAM changed after Reset")
		assert.Equal(t, s, h.dev.Stats())
		h.noFail()

		// A new activation on fresh rings works.
		h.be.mu.Lock()
		h.be.generate = nil
		h.be.discard = false
		h.be.mu.Unlock()
		h.activate()
		h.postRX(make4K(20)...)
		f := frame(777, 1)
		h.be.push(packet(Header{}, f))
		h.waitUsed(h.rxd, 1)
		_, got := h.takeRXPacket()
		assert.Equal(t, f, got)
		h.addTX(packet(Header{}, f))
		h.kickTX()
		h.waitUsed(h.txd, 1)
		assert.Equal(t, [][]byte{packet(Header{}, f)}, h.be.packets())
		h.noFail()
	}
}

// takeUsedRX takes a used receive chain without looking at it.
func (h *harness) takeUsedRX() (uint32, bool) {
	id, _, ok := h.rxd.GetUsed()
	return id, ok
}

// txBuf returns the one transmit buffer TestResetWhileBusy sends over and
// over.
func (h *harness) txBuf() virtiotest.Buf {
	if h.txPacket.Len == 0 {
		h.txPacket = h.txd.Readable(packet(Header{}, frame(1514, 0)))
	}
	return h.txPacket
}

// rxBuf returns the one receive buffer TestResetWhileBusy posts in every
// chain: the device may fill it over and over, nobody looks.
func (h *harness) rxBuf() virtiotest.Buf {
	if h.rxShared.Len == 0 {
		h.rxShared = h.rxd.Writable(1536)
	}
	return h.rxShared
}

// snapshot copies all of guest RAM.
func (h *harness) snapshot() []byte {
	ram := make([]byte, testRAMSize)
	_, err := h.mem.ReadAt(ram, 0)
	require.NoError(h.t, err)
	return ram
}

func TestActivateRejectsWrongQueueCount(t *testing.T) {
	d, err := New(Options{TapName: "gv0"}, newFakeBackend())
	require.NoError(t, err)
	assert.Error(t, d.Activate(&virtio.Activation{Queues: make([]*virtio.Queue, 3)}))
	d.Reset()
	require.NoError(t, d.Close())
	assert.Error(t, d.Activate(&virtio.Activation{Queues: make([]*virtio.Queue, 2)}))
}

func TestActivateWithoutQueues(t *testing.T) {
	// A driver may leave a queue disabled; the device serves the others.
	be := newFakeBackend()
	d, err := New(Options{TapName: "gv0"}, be)
	require.NoError(t, err)
	require.NoError(t, d.Activate(&virtio.Activation{Queues: make([]*virtio.Queue, numQueues)}))
	d.Reset()
	d.Reset()
	require.NoError(t, d.Close())
	require.NoError(t, d.Close())
	assert.True(t, be.closed)
}

func TestStartGetsTheNegotiatedFeatures(t *testing.T) {
	f := without(allFeatures(), VIRTIO_NET_F_GUEST_TSO6)
	h := newHarness(t, f)
	h.activate()
	h.dev.Reset()
	h.activate()
	assert.Equal(t, []virtio.Features{f, f}, h.be.starts)
}

func TestResetStopsBlockedWorkers(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.activate()
	h.postRX(make4K(20)...)
	// The receive worker holds enough buffers and waits in the backend for
	// a packet; the transmit worker waits for a kick.
	require.Eventually(t, func() bool { return h.be.reads() > 0 }, waitFor, time.Millisecond)
	done := make(chan struct{})
	go func() {
		h.dev.Reset()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Reset did not stop a worker blocked in the backend")
	}
	h.noFail()
}

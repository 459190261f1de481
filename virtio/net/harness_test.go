package net

import (
	"bytes"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// testRAMSize is the fake guest RAM: both rings and, split in two, the
// buffers the two drivers allocate.
const testRAMSize = 32 << 20

// waitFor bounds how long a test waits for the device's goroutines.
const waitFor = 5 * time.Second

// allFeatures is what a Linux guest negotiates: everything the device
// offers and what the transport adds.
func allFeatures() virtio.Features {
	return (&Device{}).Features().
		With(virtio.VIRTIO_F_VERSION_1).
		With(virtio.VIRTIO_F_EVENT_IDX).
		With(virtio.VIRTIO_F_INDIRECT_DESC)
}

// suppressionModes are the two ways a driver suppresses interrupts and
// notifications (§2.7.7, §2.7.10): with VIRTIO_F_EVENT_IDX and with the
// flags.
func suppressionModes() []struct {
	name     string
	features virtio.Features
} {
	return []struct {
		name     string
		features virtio.Features
	}{
		{"event-idx", allFeatures()},
		{"flags", without(allFeatures(), virtio.VIRTIO_F_EVENT_IDX)},
	}
}

// without returns f without the given bits.
func without(f virtio.Features, bits ...uint) virtio.Features {
	for _, b := range bits {
		f &^= 1 << b
	}
	return f
}

// syncBuffer is a log destination safe for the device's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is a device with a fake backend, activated as a transport would:
// two enabled virtqueues on fake guest RAM, driven by virtiotest drivers.
type harness struct {
	t        *testing.T
	mem      *memory.Guest
	features virtio.Features
	rxSize   uint16
	txSize   uint16
	dev      *Device
	be       *fakeBackend

	rxd, txd *virtiotest.Driver
	kicks    [numQueues]*eventfd.EventFD
	irqs     [numQueues]atomic.Int64
	configs  atomic.Int64 // configuration change notifications
	fails    chan error
	logs     *syncBuffer
	// lines, if set before activate, are the queues' interrupt lines
	// (virtio.Queue.InterruptLine); onIRQ, if set, runs at each
	// interrupt of a queue, with the queue's index.
	lines *[numQueues]uint32
	onIRQ func(queue int)

	rxBufs  map[uint16][]virtiotest.Buf // buffers of each posted receive chain
	rxTaken uint16                      // used receive chains taken

	// Buffers that TestResetWhileBusy posts over and over.
	txPacket, rxShared virtiotest.Buf
}

func newHarness(t *testing.T, features virtio.Features) *harness {
	t.Helper()
	be := newFakeBackend()
	h := newHarnessOn(t, features, "fake0", be)
	h.be = be
	return h
}

// newHarnessOn is a harness whose device uses backend, for the tap named.
func newHarnessOn(t *testing.T, features virtio.Features, name string, backend Backend) *harness {
	t.Helper()
	mem, _ := virtiotest.NewRAM(0, testRAMSize)
	dev, err := New(Options{TapName: name}, backend)
	require.NoError(t, err)
	h := &harness{
		t: t, mem: mem, features: features, rxSize: QueueSize, txSize: QueueSize,
		dev:   dev,
		fails: make(chan error, 16),
		logs:  &syncBuffer{},
	}
	for i := range h.kicks {
		h.kicks[i], err = eventfd.New()
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		require.NoError(t, dev.Close())
		for _, k := range h.kicks {
			k.Close()
		}
	})
	return h
}

// activate lays out fresh rings, as a driver does after a reset, and
// activates the device on them.
func (h *harness) activate() {
	h.t.Helper()
	rxCfg, end := virtiotest.Layout(0, h.rxSize, h.features)
	txCfg, end := virtiotest.Layout(end, h.txSize, h.features)
	half := (testRAMSize - end) / 2
	h.rxd = virtiotest.NewDriver(h.mem, rxCfg, memory.Range{Start: end, Size: half})
	h.txd = virtiotest.NewDriver(h.mem, txCfg, memory.Range{Start: end + half, Size: half})
	h.rxBufs = map[uint16][]virtiotest.Buf{}
	h.rxTaken = 0
	h.txPacket, h.rxShared = virtiotest.Buf{}, virtiotest.Buf{}
	queues := make([]*virtio.Queue, numQueues)
	for i, cfg := range []virtio.QueueConfig{rxCfg, txCfg} {
		q := &virtio.Queue{Index: i, Virtqueue: new(virtio.Virtqueue), Kick: h.kicks[i]}
		q.Interrupt = func() {
			if h.onIRQ != nil {
				h.onIRQ(i)
			}
			h.irqs[i].Add(1)
		}
		if h.lines != nil {
			line := h.lines[i]
			q.InterruptLine = func() uint32 { return line }
		}
		require.NoError(h.t, q.Enable(h.mem, cfg))
		queues[i] = q
	}
	require.NoError(h.t, h.dev.Activate(&virtio.Activation{
		Mem:           h.mem,
		Features:      h.features,
		Queues:        queues,
		ConfigChanged: func() { h.configs.Add(1) },
		Fail:          func(err error) { h.fails <- err },
		Log:           slog.New(slog.NewTextHandler(h.logs, nil)),
	}))
}

// postRX posts one receive chain per size (a single writable buffer each)
// and notifies the device.
func (h *harness) postRX(sizes ...uint32) {
	for _, n := range sizes {
		b := h.rxd.Writable(n)
		head := h.rxd.AddChain(b)
		h.rxBufs[head] = []virtiotest.Buf{b}
	}
	h.rxd.Publish()
	require.NoError(h.t, h.kicks[receiveq1].Signal())
}

// postRXChain posts one receive chain of several writable buffers.
func (h *harness) postRXChain(sizes ...uint32) {
	var bufs []virtiotest.Buf
	for _, n := range sizes {
		bufs = append(bufs, h.rxd.Writable(n))
	}
	head := h.rxd.AddChain(bufs...)
	h.rxBufs[head] = bufs
	h.rxd.Publish()
	require.NoError(h.t, h.kicks[receiveq1].Signal())
}

// sendTX makes one transmit chain of readable buffers with the given
// contents available, without notifying the device.
func (h *harness) addTX(parts ...[]byte) uint16 {
	var bufs []virtiotest.Buf
	for _, p := range parts {
		bufs = append(bufs, h.txd.Readable(p))
	}
	return h.txd.AddChain(bufs...)
}

// kickTX publishes the transmit chains added and notifies the device.
func (h *harness) kickTX() {
	h.txd.Publish()
	require.NoError(h.t, h.kicks[transmitq1].Signal())
}

// waitUsed waits until the driver's used->idx reaches n.
func (h *harness) waitUsed(d *virtiotest.Driver, n uint16) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return d.UsedIdx() == n }, waitFor, time.Millisecond,
		"used->idx stays at %d, want %d", d.UsedIdx(), n)
}

// rxUsed is one used receive chain: its head, its used length and what the
// device wrote into it.
type rxUsed struct {
	head uint16
	len  uint32
	data []byte
}

// takeRX takes the next used receive chain.
func (h *harness) takeRX() rxUsed {
	h.t.Helper()
	id, n, ok := h.rxd.GetUsed()
	require.True(h.t, ok, "no used receive chain")
	h.rxTaken++
	bufs, found := h.rxBufs[uint16(id)]
	require.True(h.t, found, "used id %d was not posted", id)
	delete(h.rxBufs, uint16(id))
	var data []byte
	for _, b := range bufs {
		data = append(data, h.rxd.ReadMem(b.Addr, uint64(b.Len))...)
	}
	require.LessOrEqual(h.t, int(n), len(data), "used length past the chain")
	return rxUsed{head: uint16(id), len: n, data: data[:n]}
}

// takeRXPacket takes the used chains of one packet and returns its header
// and frame, checking num_buffers against the chains it took.
func (h *harness) takeRXPacket() (Header, []byte) {
	h.t.Helper()
	first := h.takeRX()
	require.GreaterOrEqual(h.t, len(first.data), HeaderSize)
	hdr := DecodeHeader(first.data)
	require.NotZero(h.t, hdr.NumBuffers)
	data := first.data[HeaderSize:]
	for range int(hdr.NumBuffers) - 1 {
		data = append(data, h.takeRX().data...)
	}
	return hdr, data
}

// nextRXPacket waits for the next received packet and takes it.
func (h *harness) nextRXPacket() (Header, []byte) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.rxd.UsedIdx() != h.rxTaken }, waitFor, time.Millisecond,
		"no packet received")
	return h.takeRXPacket()
}

// noFail checks that the device reported no broken queue.
func (h *harness) noFail() {
	h.t.Helper()
	select {
	case err := <-h.fails:
		h.t.Fatalf("Activation.Fail(%v)", err)
	default:
	}
}

// frame returns an Ethernet frame of n bytes (n >= 14): broadcast
// destination, a locally administered source, EtherType 0x88B5 (IEEE
// 802 local experimental), and a payload pattern starting at seed.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5})
	for i := ethHeaderLen; i < n; i++ {
		f[i] = seed + byte(i)
	}
	return f
}

// packet is a header followed by a frame.
func packet(h Header, f []byte) []byte {
	p := make([]byte, HeaderSize+len(f))
	h.Encode(p)
	copy(p[HeaderSize:], f)
	return p
}

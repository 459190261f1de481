package console_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/console"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// The fake guest below drives the device the way Linux's
// drivers/char/virtio_console.c does: page-sized buffers in the control
// receiveq and in every port's receiveq (fill_queue), one 8-byte chain per
// driver-to-device control message, waited for until the device returns
// it (__send_control_msg), data written in chains of at most 32 KiB
// (port_fops_write), and control messages handled one buffer at a time
// (control_work_handler).
const (
	pageSize    = 4096     // Linux's control and receive buffers
	txChunk     = 32 << 10 // port_fops_write's most per buffer
	txBuffers   = 16       // transmitq buffers the fake guest cycles through
	ringStride  = 8 << 10  // guest RAM per queue for its rings
	dataPerQ    = 1 << 20  // guest RAM per queue for its buffers
	ramStart    = 0x10_0000
	waitTimeout = 20 * time.Second
)

// vq is one virtqueue: the driver's side and the device's.
type vq struct {
	d    *virtiotest.Driver
	q    *virtio.Queue
	irq  chan struct{}
	bufs map[uint32]virtiotest.Buf // buffers of the chains in flight, by head
	free []virtiotest.Buf          // transmitq buffers not in flight
}

// guest is a fake Linux guest with a console device.
type guest struct {
	t        testing.TB
	dev      *console.Device
	features virtio.Features
	mem      *memory.Guest
	nq       int
	qs       []*vq
	kicks    []*eventfd.EventFD
	failed   chan error
	scratch  uint64 // the control transmitq's message buffer
	log      []console.Control
	ports    map[uint32]*guestPort
	maxPorts uint32
}

// guestPort is the driver's state of a port (struct port).
type guestPort struct {
	name          string
	hostConnected bool
	console       bool
}

// newGuest makes the guest RAM and queues for dev and activates it with
// features (by default, VIRTIO_F_EVENT_IDX and the console's own). The
// device is closed when the test ends.
func newGuest(t testing.TB, dev *console.Device, features virtio.Features) *guest {
	t.Helper()
	g := &guest{t: t, dev: dev, features: features, nq: len(dev.QueueMaxSizes()), failed: make(chan error, 16)}
	var cfg [12]byte
	dev.ReadConfig(0, cfg[:])
	g.maxPorts = binary.LittleEndian.Uint32(cfg[4:])
	size := uint64(g.nq)*(ringStride+dataPerQ) + pageSize
	g.mem, _ = virtiotest.NewRAM(ramStart, size)
	for range g.nq {
		k, err := eventfd.New()
		require.NoError(t, err)
		g.kicks = append(g.kicks, k)
	}
	t.Cleanup(func() {
		require.NoError(t, dev.Close())
		for _, k := range g.kicks {
			k.Close()
		}
	})
	g.activate()
	return g
}

// activate sets up fresh rings, as a driver does after a reset, and
// activates the device.
func (g *guest) activate() {
	t := g.t
	t.Helper()
	g.qs = nil
	g.log = nil
	g.ports = map[uint32]*guestPort{}
	sizes := g.dev.QueueMaxSizes()
	multiport := g.features.Has(console.VIRTIO_CONSOLE_F_MULTIPORT)
	queues := make([]*virtio.Queue, g.nq)
	dataBase := ramStart + uint64(g.nq)*ringStride
	for i := range g.nq {
		cfg, _ := virtiotest.Layout(ramStart+uint64(i)*ringStride, sizes[i], g.features)
		d := virtiotest.NewDriver(g.mem, cfg, memory.Range{Start: dataBase + uint64(i)*dataPerQ, Size: dataPerQ})
		v := &vq{d: d, irq: make(chan struct{}, 1), bufs: map[uint32]virtiotest.Buf{}}
		g.qs = append(g.qs, v)
		if !multiport && i > 1 {
			continue // only port 0's pair exists (§5.3.2)
		}
		vqueue := new(virtio.Virtqueue)
		require.NoError(t, vqueue.Enable(g.mem, cfg))
		v.q = &virtio.Queue{Index: i, Virtqueue: vqueue, Kick: g.kicks[i], Interrupt: func() {
			select {
			case v.irq <- struct{}{}:
			default:
			}
		}}
		queues[i] = v.q
		if i%2 == 1 && i != 3 { // a transmitq: its buffers
			for range txBuffers {
				v.free = append(v.free, d.Writable(txChunk))
			}
		}
	}
	g.scratch = g.qs[3].d.Alloc(pageSize)
	require.NoError(t, g.dev.Activate(&virtio.Activation{
		Mem:           g.mem,
		Features:      g.features,
		Queues:        queues,
		ConfigChanged: func() { t.Error("configuration change") },
		Fail: func(err error) {
			select {
			case g.failed <- err:
			default:
			}
		},
		Log: slog.New(slog.DiscardHandler),
	}))
}

// Queue indices (§5.3.2).
func rxq(id uint32) int {
	if id == 0 {
		return 0
	}
	return 4 + 2*int(id-1)
}
func txq(id uint32) int { return rxq(id) + 1 }

const (
	ctlRx = 2
	ctlTx = 3
)

// kick publishes what the driver added and notifies the device if it
// asked for it.
func (g *guest) kick(i int) {
	if g.qs[i].d.Publish() {
		require.NoError(g.t, g.qs[i].q.Kick.Signal())
	}
}

// post adds a writable page-sized buffer to queue i, as add_inbuf does.
func (g *guest) post(i int, b virtiotest.Buf) {
	head := g.qs[i].d.AddChain(b)
	g.qs[i].bufs[uint32(head)] = b
}

// fill fills queue i with page-sized buffers (fill_queue).
func (g *guest) fill(i int) {
	v := g.qs[i]
	for v.d.FreeDescriptors() > 0 {
		g.post(i, v.d.Writable(pageSize))
	}
	g.kick(i)
}

// used takes the next used chain of queue i, if any: its buffer and the
// length the device wrote.
func (g *guest) used(i int) (virtiotest.Buf, uint32, bool) {
	v := g.qs[i]
	id, n, ok := v.d.GetUsed()
	if !ok {
		return virtiotest.Buf{}, 0, false
	}
	b, known := v.bufs[id]
	require.True(g.t, known, "queue %d: used id %d was not in flight", i, id)
	delete(v.bufs, id)
	return b, n, true
}

// waitFor calls cond until it holds, sleeping on queue i's interrupts (or
// a millisecond, in case the device suppressed them rightly).
func (g *guest) waitFor(i int, what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		select {
		case err := <-g.failed:
			g.t.Fatalf("%s: device failed: %v", what, err)
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-g.qs[i].irq:
		case <-time.After(time.Millisecond):
		}
	}
}

// sendRaw sends msg on the control transmitq and spins until the device
// has returned it, as __send_control_msg does.
func (g *guest) sendRaw(msg []byte) {
	g.t.Helper()
	v := g.qs[ctlTx]
	v.d.WriteMem(g.scratch, msg)
	head := v.d.AddChain(virtiotest.Buf{Addr: g.scratch, Len: uint32(len(msg))})
	g.kick(ctlTx)
	g.waitFor(ctlTx, "the device to take a control message", func() bool {
		id, _, ok := v.d.GetUsed()
		if ok {
			require.EqualValues(g.t, head, id)
		}
		return ok
	})
}

func (g *guest) send(id uint32, event, value uint16) {
	g.t.Helper()
	g.sendRaw(console.Control{ID: id, Event: event, Value: value}.Append(nil))
}

// probe does what virtcons_probe does after DRIVER_OK: fill the control
// receiveq, then send DEVICE_READY.
func (g *guest) probe() {
	g.fill(ctlRx)
	g.send(console.VIRTIO_CONSOLE_BAD_ID, console.VIRTIO_CONSOLE_DEVICE_READY, 1)
}

// control handles one control message from the device if there is one,
// as control_work_handler and handle_control_message do, and re-posts its
// buffer.
func (g *guest) control() bool {
	g.t.Helper()
	b, n, ok := g.used(ctlRx)
	if !ok {
		return false
	}
	raw := g.qs[ctlRx].d.ReadMem(b.Addr, uint64(n))
	g.post(ctlRx, b)
	g.kick(ctlRx)
	m, ok := console.DecodeControl(raw)
	require.True(g.t, ok, "control message of %d bytes", len(raw))
	g.log = append(g.log, m)
	p := g.ports[m.ID]
	if p == nil && m.Event != console.VIRTIO_CONSOLE_PORT_ADD {
		g.t.Errorf("control message %s for port %d, which was not added", console.EventName(m.Event), m.ID)
		return true
	}
	switch m.Event {
	case console.VIRTIO_CONSOLE_PORT_ADD:
		if p != nil {
			g.t.Errorf("port %d added twice", m.ID) // §5.3.6.2.1
			g.send(m.ID, console.VIRTIO_CONSOLE_PORT_READY, 1)
			break
		}
		if m.ID >= g.maxPorts {
			g.t.Errorf("port %d added, max_nr_ports is %d", m.ID, g.maxPorts)
			break
		}
		g.ports[m.ID] = &guestPort{}
		g.fill(rxq(m.ID))
		g.send(m.ID, console.VIRTIO_CONSOLE_PORT_READY, 1)
	case console.VIRTIO_CONSOLE_PORT_NAME:
		name := raw[console.ControlSize:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		p.name = string(name)
	case console.VIRTIO_CONSOLE_PORT_OPEN:
		p.hostConnected = m.Value != 0
	case console.VIRTIO_CONSOLE_CONSOLE_PORT:
		p.console = true
		// init_port_console: the port is open on the guest's side.
		g.send(m.ID, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	default:
		g.t.Errorf("unexpected control message %+v", m)
	}
	return true
}

// controlUntil handles control messages until cond holds.
func (g *guest) controlUntil(what string, cond func() bool) {
	g.t.Helper()
	g.waitFor(ctlRx, what, func() bool {
		for g.control() {
		}
		return cond()
	})
}

// handshake probes and waits until every port is added, ready and open
// on the host's side.
func (g *guest) handshake(n int) {
	g.t.Helper()
	g.probe()
	g.controlUntil("the handshake", func() bool {
		if len(g.ports) < n {
			return false
		}
		for _, p := range g.ports {
			if !p.hostConnected {
				return false
			}
		}
		return true
	})
}

// write writes data to port id as port_fops_write does, in chains of at
// most txChunk bytes, waiting for a free buffer when all are in flight.
func (g *guest) write(id uint32, data []byte) {
	g.t.Helper()
	i := txq(id)
	v := g.qs[i]
	for len(data) > 0 {
		g.reclaim(i)
		if len(v.free) == 0 {
			g.waitFor(i, "a transmitq buffer", func() bool { g.reclaim(i); return len(v.free) > 0 })
		}
		b := v.free[len(v.free)-1]
		v.free = v.free[:len(v.free)-1]
		n := min(len(data), txChunk)
		v.d.WriteMem(b.Addr, data[:n])
		head := v.d.AddChain(virtiotest.Buf{Addr: b.Addr, Len: uint32(n)})
		v.bufs[uint32(head)] = b
		g.kick(i)
		data = data[n:]
	}
}

// reclaim takes the transmitq buffers the device has used back
// (reclaim_consumed_buffers).
func (g *guest) reclaim(i int) {
	for {
		b, _, ok := g.used(i)
		if !ok {
			return
		}
		g.qs[i].free = append(g.qs[i].free, b)
	}
}

// drained waits until the device has used every buffer written to port id.
func (g *guest) drained(id uint32) {
	g.t.Helper()
	i := txq(id)
	g.waitFor(i, "the transmitq to drain", func() bool { g.reclaim(i); return len(g.qs[i].bufs) == 0 })
}

// readAll reads port id until end of file, as a program's read loop does
// (port_fops_read): data while there is some, end of file once the host
// end is closed and no data is left. Control messages are handled
// meanwhile, since the close comes that way.
func (g *guest) readAll(id uint32) []byte {
	g.t.Helper()
	var out []byte
	i := rxq(id)
	g.waitFor(i, "end of file", func() bool {
		for g.control() {
		}
		for {
			b, n, ok := g.used(i)
			if !ok {
				break
			}
			out = append(out, g.qs[i].d.ReadMem(b.Addr, uint64(n))...)
			g.post(i, b) // fill_readbuf re-queues a consumed buffer
			g.kick(i)
		}
		// The device publishes data before the PORT_OPEN(0) that
		// follows it, and the messages were handled first: once the
		// host end is closed, the data taken above is all there is.
		return !g.ports[id].hostConnected
	})
	return out
}

// lockedBuffer is a bytes.Buffer for a writer goroutine and a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// countingReader counts the Reads of r.
type countingReader struct {
	mu    sync.Mutex
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.r.Read(p)
}

func (c *countingReader) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// events records GuestConnected reports.
type events struct {
	mu   sync.Mutex
	list []bool
	ch   chan bool
}

func newEvents() *events { return &events{ch: make(chan bool, 64)} }

func (e *events) report(open bool) {
	e.mu.Lock()
	e.list = append(e.list, open)
	e.mu.Unlock()
	e.ch <- open
}

func (e *events) List() []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bool(nil), e.list...)
}

// next waits for the next report.
func (e *events) next(t testing.TB) bool {
	t.Helper()
	select {
	case v := <-e.ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatal("no GuestConnected report")
		return false
	}
}

// defaultFeatures are what Linux negotiates with the device.
var defaultFeatures = virtio.Features(0).
	With(virtio.VIRTIO_F_VERSION_1).
	With(virtio.VIRTIO_F_EVENT_IDX).
	With(virtio.VIRTIO_F_INDIRECT_DESC).
	With(console.VIRTIO_CONSOLE_F_MULTIPORT)

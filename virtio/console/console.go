package console

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/virtio"
)

// MaxPorts is the most ports a Device may have: 31, QEMU's default for a
// virtio-serial device (its max_ports property), far above what govmm
// needs. Linux accepts up to VIRTCONS_MAX_PORTS (0x8000); the PCI
// transport up to virtiopci.MaxQueues queues, 126 ports.
const MaxPorts = 31

// Queue sizes, as QEMU's virtio-serial has them: 128 buffers per data
// queue and 32 per control queue. Linux fills a receiveq with page-sized
// buffers (fill_queue), so a port can hold 512 KiB of host-to-guest data
// in flight, and writes at most 32 KiB per transmitq buffer
// (port_fops_write).
const (
	DataQueueSize    = 128
	ControlQueueSize = 32
)

// MaxNameLen is the longest port name: NAME_MAX, since udev turns the
// name into a file name (/dev/virtio-ports/NAME). Linux takes names up to
// a page minus the message.
const MaxNameLen = 255

// ioChunk is the most bytes moved through In or Out at once: the largest
// buffer Linux's splice path puts in a transmitq chain (16 pages), and more
// than its page-sized receiveq buffers.
const ioChunk = 64 << 10

// Port is one port of the device, numbered by its place in the list given
// to New: the guest sees port i as /dev/vportNp<i>.
type Port struct {
	// Name is sent to the guest with VIRTIO_CONSOLE_PORT_NAME and
	// appears as /sys/class/virtio-ports/vportNpM/name. It may be
	// empty (no name is sent); otherwise it is at most MaxNameLen bytes
	// of ASCII letters, digits, '.', '_' and '-', and unique.
	Name string
	// In is host-to-guest data, read only while the guest has the port
	// open and has posted a buffer for it. When it returns an error (io.EOF
	// or another), the device delivers what it read and then, for a port
	// without Out, closes the host end: the guest's reads then return 0,
	// end of file. A Read that blocks holds only the reader goroutine,
	// never a Reset. Nil: the guest gets no data.
	In io.Reader
	// Out is guest-to-host data, written in order, on a goroutine of its
	// own. A Write that blocks makes the guest's writes block once the
	// transmitq is full. After a Write error the port's data is
	// discarded. Nil: the data is discarded.
	Out io.Writer
	// Console nominates the port as a console (VIRTIO_CONSOLE_CONSOLE_PORT):
	// Linux hooks it to an hvc terminal, /dev/hvcN, with a line discipline,
	// instead of /dev/vportNpM, and spins in put_chars until the device has
	// taken each write, so the Out of a console port should not block.
	Console bool
	// GuestConnected, if not nil, is called with true when a program in
	// the guest opens the port and with false when it closes it or the
	// device is reset while it is open (VIRTIO_CONSOLE_PORT_OPEN from the
	// driver), on the port's writer goroutine and in order with the data
	// written to Out: when it reports false, everything the guest wrote
	// before the close has been written. Repeated states are reported
	// once. It may block, which delays the port's later output.
	GuestConnected func(connected bool)
}

// Device is a multiport virtio console. The zero value is not usable; call
// New. Close releases its goroutines.
type Device struct {
	ports []*port
	sizes []uint16

	mu  sync.Mutex // guards run
	run *run       // the current activation, nil while reset

	// ctl guards the control state of every port (the port fields
	// documented as such).
	ctl sync.Mutex

	closeOnce sync.Once
}

// port is a Port and its state.
type port struct {
	id  int
	cfg Port
	out *outPipe // always there: it also delivers GuestConnected
	in  *inPipe  // nil if cfg.In is nil

	// Control state, guarded by Device.ctl.
	added         bool    // DEVICE_ADD queued or sent since the last reset
	ready         bool    // the driver answered PORT_READY(1)
	pending       uint8   // messages to send: msgAdd, msgConsole, ...
	hostConnected bool    // the host end is open (until In's EOF)
	changes       changes // the driver's PORT_OPENs not yet handed to out

	// guestConnected mirrors the driver's last PORT_OPEN, for the
	// receiveq worker, which reads it without the lock.
	guestConnected atomic.Bool
	// outBroken is set after a Write to Out failed.
	outBroken atomic.Bool
}

// New returns a console device with the given ports, reset. It starts a
// writer goroutine for every port and a reader goroutine for every port
// with In; Close stops them.
func New(ports []Port) (*Device, error) {
	if len(ports) == 0 || len(ports) > MaxPorts {
		return nil, fmt.Errorf("virtio-console: %d ports, want 1 to %d", len(ports), MaxPorts)
	}
	d := &Device{}
	names := map[string]bool{}
	for i, p := range ports {
		if err := checkName(p.Name); err != nil {
			return nil, fmt.Errorf("virtio-console: port %d: %w", i, err)
		}
		if p.Name != "" {
			if names[p.Name] {
				return nil, fmt.Errorf("virtio-console: port %d: name %q is taken", i, p.Name)
			}
			names[p.Name] = true
		}
	}
	for i, p := range ports {
		pt := &port{id: i, cfg: p, hostConnected: true}
		w := p.Out
		if w == nil {
			w = io.Discard
		}
		pt.out = newOutPipe(w, p.GuestConnected)
		if p.In != nil {
			pt.in = newInPipe(p.In)
		}
		d.ports = append(d.ports, pt)
	}
	d.sizes = make([]uint16, numQueues(len(ports)))
	for i := range d.sizes {
		d.sizes[i] = DataQueueSize
	}
	d.sizes[controlReceiveq] = ControlQueueSize
	d.sizes[controlTransmitq] = ControlQueueSize
	return d, nil
}

// checkName checks a port name (see Port.Name).
func checkName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("name of %d bytes, the most is %d", len(name), MaxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("name %q is not a file name", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Errorf("name %q: %q is not a letter, digit, '.', '_' or '-'", name, r)
		}
	}
	return nil
}

// DeviceID returns VIRTIO_ID_CONSOLE (§5.3.1).
func (d *Device) DeviceID() uint16 { return virtio.VIRTIO_ID_CONSOLE }

// Features returns VIRTIO_CONSOLE_F_MULTIPORT.
func (d *Device) Features() virtio.Features {
	return virtio.Features(0).With(VIRTIO_CONSOLE_F_MULTIPORT)
}

// QueueMaxSizes returns the sizes of the (ports + 1) queue pairs (§5.3.2).
func (d *Device) QueueMaxSizes() []uint16 { return d.sizes }

// ReadConfig reads struct virtio_console_config (§5.3.4): cols and rows 0
// (VIRTIO_CONSOLE_F_SIZE is not offered), max_nr_ports the number of
// ports, emerg_wr 0. Bytes past the structure read as zero.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	var cfg [configSize]byte
	binary.LittleEndian.PutUint32(cfg[configMaxNrPorts:], uint32(len(d.ports)))
	for i := range data {
		o := offset + uint64(i)
		if o < configSize && o >= offset { // the second test: no wrap
			data[i] = cfg[o]
		} else {
			data[i] = 0
		}
	}
}

// WriteConfig ignores writes: the only writable field, emerg_wr, exists
// with VIRTIO_CONSOLE_F_EMERG_WRITE, which is not offered.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate starts the device when the driver sets DRIVER_OK: a worker for
// each control queue and for each port's queues. Without
// VIRTIO_CONSOLE_F_MULTIPORT only port 0 exists, as a console that is
// open while the device runs.
func (d *Device) Activate(a *virtio.Activation) error {
	d.Reset() // a second Activate without a Reset: stop the first
	r := &run{d: d, act: a, log: a.Log, multiport: a.Features.Has(VIRTIO_CONSOLE_F_MULTIPORT)}
	if r.log == nil {
		r.log = slog.Default()
	}
	queue := func(i int) *virtio.Queue {
		if i < len(a.Queues) {
			return a.Queues[i]
		}
		return nil
	}
	n := len(d.ports)
	if !r.multiport {
		n = 1
		if len(d.ports) > 1 {
			r.log.Warn("virtio-console: the driver did not negotiate VIRTIO_CONSOLE_F_MULTIPORT; only port 0 works", "ports", len(d.ports))
		}
		d.ports[0].guestConnected.Store(true)
	} else {
		r.ctlRx = queue(controlReceiveq)
		r.ctlTx = queue(controlTransmitq)
	}
	r.rx = make([]*virtio.Queue, len(d.ports))
	r.tx = make([]*virtio.Queue, len(d.ports))
	for id := range n {
		r.rx[id] = queue(receiveq(id))
		r.tx[id] = queue(transmitq(id))
	}
	d.mu.Lock()
	d.run = r
	d.mu.Unlock()
	r.start()
	return nil
}

// Reset stops every worker, returning once none touches guest memory or
// the queues, and forgets the handshake: the next driver starts again
// with DEVICE_READY. A reader blocked in In or a writer blocked in Out goes
// on; what they read or hold is kept. Each port the guest had open is
// reported closed (GuestConnected).
func (d *Device) Reset() {
	d.mu.Lock()
	r := d.run
	d.run = nil
	d.mu.Unlock()
	if r != nil {
		r.stop()
	}
	reports := make([][]bool, len(d.ports))
	d.ctl.Lock()
	for i, p := range d.ports {
		p.added, p.ready, p.pending = false, false, 0
		p.guestConnected.Store(false)
		// The reset closes the port for the guest; its opens and
		// closes not yet reported are reported first.
		p.changes.add(false)
		reports[i] = p.changes.take()
	}
	d.ctl.Unlock()
	for i, p := range d.ports {
		for _, open := range reports[i] {
			p.out.pushEvent(open)
		}
	}
}

// Close resets the device and stops its goroutines. It waits until every
// writer has written what it holds (a blocked Out blocks Close), but not
// for readers: a Read that blocks cannot be interrupted, and its reader
// exits when it returns. The Device must not be used afterwards.
func (d *Device) Close() error {
	d.Reset()
	d.closeOnce.Do(func() {
		for _, p := range d.ports {
			p.out.close()
			if p.in != nil {
				p.in.close()
			}
		}
	})
	for _, p := range d.ports {
		<-p.out.done
	}
	return nil
}

// run is one activation: from Activate to Reset.
type run struct {
	d         *Device
	act       *virtio.Activation
	log       *slog.Logger
	multiport bool

	ctlRx, ctlTx *virtio.Queue   // nil without multiport or if not enabled
	rx, tx       []*virtio.Queue // by port id; nil where not used

	workers virtio.WorkerGroup // the control queues'
	loops   []*loop            // the data queues'

	// Owned by the control queues' workers.
	ctlRxChain, ctlTxChain virtio.DescChain
	msg                    []byte
}

// start starts the workers.
func (r *run) start() {
	if q := r.ctlRx; q != nil {
		r.workers.Add(virtio.StartWorker(q, r.sendControl, r.fail))
	}
	if q := r.ctlTx; q != nil {
		r.workers.Add(virtio.StartWorker(q, func() error {
			return virtio.Drain(q, &r.ctlTxChain, r.serveControl)
		}, r.fail))
	}
	for id, p := range r.d.ports {
		if q := r.tx[id]; q != nil {
			r.startLoop(q, func(l *loop) { r.transmitLoop(l, p, q) })
		}
		if q := r.rx[id]; q != nil && p.in != nil {
			r.startLoop(q, func(l *loop) { r.receiveLoop(l, p, q) })
		}
	}
}

// stop stops every worker and waits for them.
func (r *run) stop() {
	r.workers.Stop()
	for _, l := range r.loops {
		l.stop()
	}
}

// fail reports a broken queue (see virtio.Activation.Fail).
func (r *run) fail(err error) {
	if r.act.Fail != nil {
		r.act.Fail(err)
	}
}

// complete returns a chain to the driver with written bytes and sends a
// used buffer notification if the driver wants one.
func complete(q *virtio.Queue, head uint16, written uint32) error {
	if err := q.AddUsed(head, written); err != nil {
		return err
	}
	if q.Publish() {
		q.Interrupt()
	}
	return nil
}

// errStopped ends a worker's wait when Reset stops it.
var errStopped = errors.New("virtio-console: stopped")

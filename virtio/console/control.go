package console

import (
	"io"
	"math/bits"

	"github.com/govmm/govmm/virtio"
)

// Messages a port may be waiting to send to the driver, as bits of
// port.pending; takeMessage sends a port's messages in this order.
// DEVICE_ADD comes first; the others follow the driver's PORT_READY.
// QEMU (hw/char/virtio-serial-bus.c, handle_control_message) sends
// CONSOLE_PORT, PORT_NAME, PORT_OPEN; here PORT_OPEN comes before
// PORT_NAME. Linux handles the messages one at a time, in order
// (control_work_handler), and only PORT_NAME shows in the guest: it
// creates /sys/class/virtio-ports/vportNpM/name and sends a uevent. So a
// guest program that waits for the name before opening the port finds
// the host end open, and its first read cannot return a false end of file
// (port_fops_read returns 0 while the host end is closed).
const (
	msgAdd     = 1 << iota // VIRTIO_CONSOLE_DEVICE_ADD
	msgConsole             // VIRTIO_CONSOLE_CONSOLE_PORT(1)
	msgOpen                // VIRTIO_CONSOLE_PORT_OPEN(host end's state)
	msgName                // VIRTIO_CONSOLE_PORT_NAME + the name
)

// serveControl serves one chain of the control transmitq: a message from
// the driver (§5.3.6.2). Linux puts each message in a chain of its own and
// spins until the device returns it, so serveControl never waits: it
// updates the ports' state, leaves answers for sendControl and wakes the
// workers concerned. Malformed messages are ignored; the chain goes back
// with nothing written either way.
func (r *run) serveControl(c *virtio.DescChain) (uint32, error) {
	r.receiveControl(c)
	return 0, nil
}

// receiveControl decodes the message at the start of msg and acts on it.
func (r *run) receiveControl(msg io.Reader) {
	var b [ControlSize]byte
	n, _ := io.ReadFull(msg, b[:])
	m, ok := DecodeControl(b[:n])
	if !ok {
		r.log.Debug("virtio-console: short control message ignored", "bytes", n)
		return
	}
	r.handleControl(m)
}

// handleControl acts on a message from the driver. The driver sends three
// kinds (§5.3.6.2): DEVICE_READY, PORT_READY and PORT_OPEN; anything else,
// or a message about a port that does not exist or was not added, is
// ignored.
func (r *run) handleControl(m Control) {
	d := r.d
	switch m.Event {
	case VIRTIO_CONSOLE_DEVICE_READY:
		if m.Value != valueOpen {
			r.log.Warn("virtio-console: the driver failed to set up the device (DEVICE_READY 0)")
			return
		}
		// Announce every port. §5.3.6.2.1: "The device MUST NOT specify
		// a port which exists in a VIRTIO_CONSOLE_DEVICE_ADD message",
		// so a port is added once per reset, even if the driver says
		// DEVICE_READY again.
		d.ctl.Lock()
		for _, p := range d.ports {
			if !p.added {
				p.added = true
				p.pending |= msgAdd
			}
		}
		d.ctl.Unlock()
		r.wakeControl()
		return
	case VIRTIO_CONSOLE_PORT_READY, VIRTIO_CONSOLE_PORT_OPEN:
	default:
		r.log.Debug("virtio-console: control message the driver does not send, ignored",
			"event", EventName(m.Event), "id", m.ID, "value", m.Value)
		return
	}
	if m.ID >= uint32(len(d.ports)) {
		r.log.Debug("virtio-console: control message for no port, ignored",
			"event", EventName(m.Event), "id", m.ID)
		return
	}
	p := d.ports[m.ID]
	d.ctl.Lock()
	if !p.added {
		d.ctl.Unlock()
		r.log.Debug("virtio-console: control message for a port not added, ignored",
			"event", EventName(m.Event), "id", m.ID)
		return
	}
	if m.Event == VIRTIO_CONSOLE_PORT_READY {
		if m.Value != valueOpen {
			d.ctl.Unlock()
			r.log.Warn("virtio-console: the driver failed to add a port (PORT_READY 0)", "port", p.id, "name", p.cfg.Name)
			return
		}
		// The driver has set the port up: tell it the rest. QEMU sends
		// PORT_OPEN only while the host end is open; the driver starts
		// with it closed (add_port), so sending the state either way
		// says the same.
		p.ready = true
		p.pending |= msgOpen
		if p.cfg.Console {
			p.pending |= msgConsole
		}
		if p.cfg.Name != "" {
			p.pending |= msgName
		}
		d.ctl.Unlock()
		r.wakeControl()
		return
	}
	// PORT_OPEN: a program in the guest opened or closed the port.
	open := m.Value != valueClosed
	p.guestConnected.Store(open)
	p.changes.add(open)
	var direct []bool
	if r.tx[p.id] == nil {
		// No transmitq, so no data to order the report after: hand it
		// to the writer now.
		direct = p.changes.take()
	}
	d.ctl.Unlock()
	if r.tx[p.id] == nil {
		for _, s := range direct {
			p.out.pushEvent(s)
		}
	} else {
		// The transmitq worker reports it after the data the guest
		// wrote before it.
		_ = r.tx[p.id].Kick.Signal()
	}
	if q := r.rx[p.id]; q != nil {
		_ = q.Kick.Signal() // the receiveq worker waits for an open port
	}
}

// wakeControl wakes the control receiveq's worker to send what is pending.
func (r *run) wakeControl() {
	if r.ctlRx != nil {
		_ = r.ctlRx.Kick.Signal()
	}
}

// hostClosed closes the host end of p after its In ended, if p has no Out
// (see the package documentation), and tells the driver once the port is
// ready; a port not ready yet learns it after PORT_READY.
func (r *run) hostClosed(p *port) {
	if p.cfg.Out != nil {
		return
	}
	d := r.d
	d.ctl.Lock()
	changed := p.hostConnected
	p.hostConnected = false
	if changed && p.ready {
		p.pending |= msgOpen
	}
	d.ctl.Unlock()
	if changed {
		r.wakeControl()
	}
}

// takeGuestChanges takes the opens and closes the driver reported for p
// that the transmitq worker has not handed to the writer yet.
func (d *Device) takeGuestChanges(p *port) []bool {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	return p.changes.take()
}

// changes records the changes of a port's state (open or closed) not yet
// reported, in a bounded form. The changes alternate, so they are known
// from their number and the final state; and beyond two, each further
// pair is a cycle back to the same state, which is dropped: open, close,
// open after a report of "closed" is recorded as just open. What is kept
// is the final state, and that each open reported is followed by a close.
type changes struct {
	state bool    // the state after the recorded changes
	list  [2]bool // the recorded changes: list[:n]
	n     int
}

// add records a change to state s; the same state again changes nothing.
func (c *changes) add(s bool) {
	if s == c.state {
		return
	}
	c.state = s
	if c.n == len(c.list) {
		// [s, !s] and s: the last two cancel out.
		c.n = 1
		return
	}
	c.list[c.n] = s
	c.n++
}

// take returns the recorded changes, oldest first, and forgets them.
func (c *changes) take() []bool {
	l := append([]bool(nil), c.list[:c.n]...)
	c.n = 0
	return l
}

// sendControl is the control receiveq's work: it puts the pending
// messages, one per chain as Linux expects (control_work_handler takes one
// message from each buffer), into the buffers the driver posted, until
// none is pending or no buffer is left; the driver posts a buffer again
// after handling each message, which wakes the worker.
func (r *run) sendControl() error {
	q := r.ctlRx
	c := &r.ctlRxChain
	for {
		ok, err := q.Pop(c)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		msg, have := r.d.takeMessage(r.msg[:0])
		if !have {
			q.Unpop()
			break
		}
		r.msg = msg
		if _, err := c.Write(msg); err != nil {
			// Linux posts page-sized buffers; a driver that posts
			// smaller ones gets the message cut short.
			r.log.Warn("virtio-console: control receiveq buffer too small, message cut short",
				"bytes", len(msg), "buffer", c.WritableLen())
		}
		if err := q.AddUsed(c.Head, c.Written()); err != nil {
			return err
		}
	}
	if q.Publish() {
		q.Interrupt()
	}
	return nil
}

// takeMessage removes the next pending message, of the lowest-numbered
// port with one, from the ports' state and appends its encoding to buf.
// Messages are built when they are sent, so PORT_OPEN carries the host
// end's state at that moment.
func (d *Device) takeMessage(buf []byte) ([]byte, bool) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	for _, p := range d.ports {
		if p.pending == 0 {
			continue
		}
		bit := uint8(1) << bits.TrailingZeros8(p.pending)
		p.pending &^= bit
		m := Control{ID: uint32(p.id)}
		switch bit {
		case msgAdd:
			// "value is unused"; QEMU sends 1.
			m.Event, m.Value = VIRTIO_CONSOLE_DEVICE_ADD, valueOpen
		case msgConsole:
			m.Event, m.Value = VIRTIO_CONSOLE_CONSOLE_PORT, valueOpen
		case msgName:
			// The name follows the message "without a NUL
			// terminator". QEMU adds one; Linux copies up to the
			// end of the buffer or a NUL, whichever comes first
			// (handle_control_message), so both work.
			m.Event, m.Value = VIRTIO_CONSOLE_PORT_NAME, valueOpen
			return append(m.Append(buf), p.cfg.Name...), true
		case msgOpen:
			m.Event, m.Value = VIRTIO_CONSOLE_PORT_OPEN, valueClosed
			if p.hostConnected {
				m.Value = valueOpen
			}
		}
		return m.Append(buf), true
	}
	return buf, false
}

package console

import "encoding/binary"

// The constants in this file keep the names that virtio 1.2 §5.3 and
// Linux's include/uapi/linux/virtio_console.h give them, so that they can
// be looked up there as they are written here.

// Feature bits of the console device (§5.3.3).
const (
	// VIRTIO_CONSOLE_F_SIZE: cols and rows in the configuration are
	// valid. Not offered: the ports here are byte pipes, not terminals.
	VIRTIO_CONSOLE_F_SIZE = 0
	// VIRTIO_CONSOLE_F_MULTIPORT: the device has several ports;
	// max_nr_ports is valid and the control virtqueues are used. Offered.
	VIRTIO_CONSOLE_F_MULTIPORT = 1
	// VIRTIO_CONSOLE_F_EMERG_WRITE: the driver may write single bytes
	// to emerg_wr. Not offered (Linux does not use it either).
	VIRTIO_CONSOLE_F_EMERG_WRITE = 2
)

// Virtqueues (§5.3.2): port 0's pair, the control pair, then one pair per
// further port. "The port 0 receive and transmit queues always exist:
// other queues only exist if VIRTIO_CONSOLE_F_MULTIPORT is set." The
// receiveqs carry host-to-guest data (the driver posts empty buffers), the
// transmitqs guest-to-host data. Linux's init_vqs names them "input",
// "output", "control-i" and "control-o".
const (
	receiveq0        = 0 // receiveq(port0)
	transmitq0       = 1 // transmitq(port0)
	controlReceiveq  = 2 // control receiveq: device-to-driver messages
	controlTransmitq = 3 // control transmitq: driver-to-device messages
	// firstPortQueues is where port 1's pair starts; port N's receiveq
	// is 2N + 2 and its transmitq 2N + 3.
	firstPortQueues = 4
)

// receiveq returns the index of port id's receiveq (§5.3.2).
func receiveq(id int) int {
	if id == 0 {
		return receiveq0
	}
	return firstPortQueues + 2*(id-1)
}

// transmitq returns the index of port id's transmitq.
func transmitq(id int) int { return receiveq(id) + 1 }

// numQueues returns how many virtqueues a device with ports ports has:
// (ports + 1) pairs, as Linux's init_vqs asks for ((nr_ports + 1) * 2).
func numQueues(ports int) int { return 2 * (ports + 1) }

// Configuration space (§5.3.4), struct virtio_console_config. The spec's
// listing puts rows before cols; Linux and QEMU put cols first. Neither
// matters here, as VIRTIO_CONSOLE_F_SIZE is not offered and both read 0.
const (
	configCols       = 0  // le16 cols
	configRows       = 2  // le16 rows
	configMaxNrPorts = 4  // le32 max_nr_ports
	configEmergWr    = 8  // le32 emerg_wr
	configSize       = 12 // the whole structure
)

// Control message events (§5.3.6.2), the event field of struct
// virtio_console_control. Where Linux's name differs from the spec's, both
// are given.
const (
	// VIRTIO_CONSOLE_DEVICE_READY, driver to device: the driver is ready
	// for control messages (value 1) or failed (value 0). id is unused;
	// Linux sends VIRTIO_CONSOLE_BAD_ID.
	VIRTIO_CONSOLE_DEVICE_READY = 0
	// VIRTIO_CONSOLE_DEVICE_ADD, device to driver: create port id.
	VIRTIO_CONSOLE_DEVICE_ADD = 1
	// VIRTIO_CONSOLE_DEVICE_REMOVE, device to driver: remove port id.
	// Never sent: ports live as long as the device.
	VIRTIO_CONSOLE_DEVICE_REMOVE = 2
	// VIRTIO_CONSOLE_PORT_READY, driver to device, in answer to
	// DEVICE_ADD: the port is set up (value 1) or failed (value 0).
	VIRTIO_CONSOLE_PORT_READY = 3
	// VIRTIO_CONSOLE_CONSOLE_PORT, device to driver: port id is a
	// console (Linux hooks it to an hvc terminal, /dev/hvcN).
	VIRTIO_CONSOLE_CONSOLE_PORT = 4
	// VIRTIO_CONSOLE_RESIZE, device to driver: a console's size changed;
	// struct virtio_console_resize follows. Never sent.
	VIRTIO_CONSOLE_RESIZE = 5
	// VIRTIO_CONSOLE_PORT_OPEN, both ways: the sender's end of port id
	// is open (value 1) or closed (value 0).
	VIRTIO_CONSOLE_PORT_OPEN = 6
	// VIRTIO_CONSOLE_PORT_NAME, device to driver: the port's name
	// follows the message, "UTF-8 ... without a NUL terminator".
	VIRTIO_CONSOLE_PORT_NAME = 7

	// Linux's names for DEVICE_ADD and DEVICE_REMOVE.
	VIRTIO_CONSOLE_PORT_ADD    = VIRTIO_CONSOLE_DEVICE_ADD
	VIRTIO_CONSOLE_PORT_REMOVE = VIRTIO_CONSOLE_DEVICE_REMOVE
)

// VIRTIO_CONSOLE_BAD_ID is the id Linux puts in messages about no port
// (DEVICE_READY).
const VIRTIO_CONSOLE_BAD_ID = ^uint32(0)

// Values of PORT_OPEN, PORT_READY and DEVICE_READY.
const (
	valueClosed = 0 // PORT_OPEN: closed; the READYs: failure
	valueOpen   = 1 // PORT_OPEN: open; the READYs: success
)

// ControlSize is the size of struct virtio_console_control:
//
//	le32 id;    /* Port number */
//	le16 event; /* The kind of control event */
//	le16 value; /* Extra information for the event */
const ControlSize = 8

// Offsets in struct virtio_console_control.
const (
	controlID    = 0
	controlEvent = 4
	controlValue = 6
)

// Control is a control message (§5.3.6.2) without what follows it.
type Control struct {
	ID    uint32
	Event uint16
	Value uint16
}

// DecodeControl decodes the message at the start of b. ok is false if b is
// shorter than ControlSize; bytes after the message are ignored (only
// PORT_NAME and RESIZE, which go from device to driver, carry any).
func DecodeControl(b []byte) (m Control, ok bool) {
	if len(b) < ControlSize {
		return Control{}, false
	}
	return Control{
		ID:    binary.LittleEndian.Uint32(b[controlID:]),
		Event: binary.LittleEndian.Uint16(b[controlEvent:]),
		Value: binary.LittleEndian.Uint16(b[controlValue:]),
	}, true
}

// Append appends the message's encoding to b and returns the result.
func (m Control) Append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, m.ID)
	b = binary.LittleEndian.AppendUint16(b, m.Event)
	return binary.LittleEndian.AppendUint16(b, m.Value)
}

// eventNames names the events for logs.
var eventNames = [...]string{
	VIRTIO_CONSOLE_DEVICE_READY:  "DEVICE_READY",
	VIRTIO_CONSOLE_DEVICE_ADD:    "DEVICE_ADD",
	VIRTIO_CONSOLE_DEVICE_REMOVE: "DEVICE_REMOVE",
	VIRTIO_CONSOLE_PORT_READY:    "PORT_READY",
	VIRTIO_CONSOLE_CONSOLE_PORT:  "CONSOLE_PORT",
	VIRTIO_CONSOLE_RESIZE:        "RESIZE",
	VIRTIO_CONSOLE_PORT_OPEN:     "PORT_OPEN",
	VIRTIO_CONSOLE_PORT_NAME:     "PORT_NAME",
}

// EventName returns the spec's name of a control event, without the
// VIRTIO_CONSOLE_ prefix.
func EventName(event uint16) string {
	if int(event) < len(eventNames) {
		return eventNames[event]
	}
	return "unknown"
}

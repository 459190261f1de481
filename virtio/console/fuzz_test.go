package console

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/govmm/govmm/virtio"
)

// FuzzDecodeControl checks that DecodeControl takes any bytes and that
// Append encodes what it decoded back to the same 8 bytes.
func FuzzDecodeControl(f *testing.F) {
	f.Add([]byte{})
	f.Add(Control{ID: VIRTIO_CONSOLE_BAD_ID, Event: VIRTIO_CONSOLE_DEVICE_READY, Value: 1}.Append(nil))
	f.Add(append(Control{ID: 1, Event: VIRTIO_CONSOLE_PORT_NAME, Value: 1}.Append(nil), "name"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := DecodeControl(b)
		if ok != (len(b) >= ControlSize) {
			t.Fatalf("ok %v for %d bytes", ok, len(b))
		}
		if ok && !bytes.Equal(m.Append(nil), b[:ControlSize]) {
			t.Fatalf("%x decodes to %+v, which encodes differently", b, m)
		}
		_ = EventName(m.Event)
	})
}

// fuzzPorts are the ports of FuzzControl's device: a console, a named
// port and an unnamed one.
var fuzzPorts = []Port{{Name: "con", Console: true}, {Name: "stdout"}, {}}

// FuzzControl feeds the control message handler (what the control transmitq's
// serve function calls, without the ring) any sequence of driver messages and
// device resets, and after each checks what the device answers against
// the handshake's rules (§5.3.6.2): a port is added once per reset and
// only below max_nr_ports; CONSOLE_PORT, PORT_NAME and PORT_OPEN come
// only for a port that is ready, in that order, with the right name. It
// also checks that GuestConnected reports alternate, starting with an
// open.
//
// The input is a list of operations, each a byte op and what follows:
// op%4 == 0 resets the device, op%4 == 1 sends the next op/4%9 bytes as a
// message (short ones included), the rest send the next 8 bytes.
func FuzzControl(f *testing.F) {
	msg := func(id uint32, event, value uint16) []byte {
		return append([]byte{2}, Control{ID: id, Event: event, Value: value}.Append(nil)...)
	}
	var linux []byte
	linux = append(linux, msg(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1)...)
	for id := range uint32(len(fuzzPorts)) {
		linux = append(linux, msg(id, VIRTIO_CONSOLE_PORT_READY, 1)...)
	}
	linux = append(linux, msg(0, VIRTIO_CONSOLE_PORT_OPEN, 1)...)
	linux = append(linux, msg(1, VIRTIO_CONSOLE_PORT_OPEN, 1)...)
	linux = append(linux, msg(1, VIRTIO_CONSOLE_PORT_OPEN, 0)...)
	f.Add(linux)
	f.Add(append(append([]byte{}, linux...), 0, 1<<2|1, 1, 2, 3, 4))
	f.Add(append(append(msg(2, VIRTIO_CONSOLE_PORT_READY, 1), msg(7, 99, 1)...), linux...))

	f.Fuzz(func(t *testing.T, in []byte) {
		var mu sync.Mutex
		reports := make([][]bool, len(fuzzPorts))
		ports := append([]Port(nil), fuzzPorts...)
		for i := range ports {
			ports[i].GuestConnected = func(open bool) {
				mu.Lock()
				reports[i] = append(reports[i], open)
				mu.Unlock()
			}
		}
		d, err := New(ports)
		if err != nil {
			t.Fatal(err)
		}
		n := len(ports)
		r := &run{
			d: d, act: &virtio.Activation{}, log: slog.New(slog.DiscardHandler), multiport: true,
			rx: make([]*virtio.Queue, n), tx: make([]*virtio.Queue, n),
		}
		// The driver's view, as Linux keeps it.
		added := make([]bool, n)
		driverReady := make([]bool, n) // the driver sent PORT_READY(1) since the last reset
		check := func() {
			for {
				b, ok := d.takeMessage(nil)
				if !ok {
					return
				}
				m, ok := DecodeControl(b)
				if !ok {
					t.Fatalf("message of %d bytes", len(b))
				}
				if m.ID >= uint32(n) {
					t.Fatalf("message %s for port %d of %d", EventName(m.Event), m.ID, n)
				}
				switch m.Event {
				case VIRTIO_CONSOLE_DEVICE_ADD:
					if added[m.ID] {
						t.Fatalf("port %d added twice", m.ID)
					}
					added[m.ID] = true
				case VIRTIO_CONSOLE_CONSOLE_PORT, VIRTIO_CONSOLE_PORT_NAME, VIRTIO_CONSOLE_PORT_OPEN:
					if !driverReady[m.ID] {
						t.Fatalf("%s for port %d, which is not ready", EventName(m.Event), m.ID)
					}
					if m.Event == VIRTIO_CONSOLE_CONSOLE_PORT && !ports[m.ID].Console {
						t.Fatalf("port %d is not a console", m.ID)
					}
					if m.Event == VIRTIO_CONSOLE_PORT_NAME && string(b[ControlSize:]) != ports[m.ID].Name {
						t.Fatalf("port %d named %q", m.ID, b[ControlSize:])
					}
					if m.Event != VIRTIO_CONSOLE_PORT_NAME && len(b) != ControlSize {
						t.Fatalf("%s of %d bytes", EventName(m.Event), len(b))
					}
				default:
					t.Fatalf("device sent %s", EventName(m.Event))
				}
			}
		}
		for len(in) > 0 {
			op := in[0]
			in = in[1:]
			var b []byte
			switch op % 4 {
			case 0:
				d.Reset()
				clear(added)
				clear(driverReady)
				check()
				continue
			case 1:
				k := min(int(op/4%9), len(in))
				b, in = in[:k], in[k:]
			default:
				k := min(ControlSize, len(in))
				b, in = in[:k], in[k:]
			}
			if m, ok := DecodeControl(b); ok && m.Event == VIRTIO_CONSOLE_PORT_READY && m.Value == valueOpen &&
				m.ID < uint32(n) && added[m.ID] {
				driverReady[m.ID] = true
			}
			r.receiveControl(bytes.NewReader(b))
			check()
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for i, l := range reports {
			for k, open := range l {
				if open != (k%2 == 0) {
					t.Fatalf("port %d: reports %v do not alternate from open", i, l)
				}
			}
			if len(l)%2 != 0 {
				t.Fatalf("port %d: reports %v: Close (a reset) leaves it open", i, l)
			}
		}
	})
}

package console_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/console"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newDevice(t testing.TB, ports ...console.Port) *console.Device {
	t.Helper()
	d, err := console.New(ports)
	require.NoError(t, err)
	return d
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func TestDeviceDescription(t *testing.T) {
	d := newDevice(t, console.Port{Name: "a"}, console.Port{Name: "b"}, console.Port{})
	defer d.Close()
	assert.EqualValues(t, 3, d.DeviceID(), "VIRTIO_ID_CONSOLE")
	assert.True(t, d.Features().Has(console.VIRTIO_CONSOLE_F_MULTIPORT))
	assert.False(t, d.Features().Has(console.VIRTIO_CONSOLE_F_SIZE))
	assert.False(t, d.Features().Has(console.VIRTIO_CONSOLE_F_EMERG_WRITE))
	sizes := d.QueueMaxSizes()
	require.Len(t, sizes, 8, "(3 ports + 1) pairs")
	for i, s := range sizes {
		assert.True(t, s > 0 && s&(s-1) == 0, "queue %d size %d", i, s)
	}
	assert.EqualValues(t, console.ControlQueueSize, sizes[2])
	assert.EqualValues(t, console.ControlQueueSize, sizes[3])

	cfg := bytes.Repeat([]byte{0xFF}, 16)
	d.ReadConfig(0, cfg)
	assert.Equal(t, []byte{0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, cfg, "cols, rows, max_nr_ports = 3, emerg_wr, then zeros")
	b := []byte{0xFF, 0xFF}
	d.ReadConfig(4, b)
	assert.Equal(t, []byte{3, 0}, b)
	d.ReadConfig(1<<64-1, b) // wraps
	assert.Equal(t, []byte{0, 0}, b)
	d.WriteConfig(0, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	d.ReadConfig(4, b)
	assert.Equal(t, []byte{3, 0}, b, "writes ignored")
	d.Reset() // before any Activate
}

func TestNewRejects(t *testing.T) {
	for name, ports := range map[string][]console.Port{
		"no ports":        nil,
		"too many":        make([]console.Port, console.MaxPorts+1),
		"slash":           {{Name: "a/b"}},
		"space":           {{Name: "a b"}},
		"NUL":             {{Name: "a\x00"}},
		"dot":             {{Name: "."}},
		"dot dot":         {{Name: ".."}},
		"non-ASCII":       {{Name: "é"}},
		"too long":        {{Name: strings.Repeat("x", console.MaxNameLen+1)}},
		"duplicate names": {{Name: "x"}, {Name: "x"}},
	} {
		_, err := console.New(ports)
		assert.Error(t, err, name)
	}
	d, err := console.New([]console.Port{{Name: strings.Repeat("x", console.MaxNameLen)}, {Name: "org.govmm.stdout_1-2"}, {}, {}})
	require.NoError(t, err, "two unnamed ports are fine")
	require.NoError(t, d.Close())
	d, err = console.New(make([]console.Port, console.MaxPorts))
	require.NoError(t, err)
	require.NoError(t, d.Close())
}

// TestHandshake checks the messages and their order: DEVICE_ADD for each
// port after DEVICE_READY, then after PORT_READY, CONSOLE_PORT for a
// console, PORT_OPEN(1), and the name last.
func TestHandshake(t *testing.T) {
	d := newDevice(t,
		console.Port{Name: "org.govmm.stdout"},
		console.Port{Name: "c", Console: true},
		console.Port{}, // unnamed: no PORT_NAME
	)
	g := newGuest(t, d, defaultFeatures)
	g.handshake(3)

	// Per port, the messages in order.
	per := map[uint32][]uint16{}
	for _, m := range g.log {
		per[m.ID] = append(per[m.ID], m.Event)
	}
	const (
		add  = console.VIRTIO_CONSOLE_DEVICE_ADD
		cons = console.VIRTIO_CONSOLE_CONSOLE_PORT
		name = console.VIRTIO_CONSOLE_PORT_NAME
		open = console.VIRTIO_CONSOLE_PORT_OPEN
	)
	assert.Equal(t, []uint16{add, open, name}, per[0])
	assert.Equal(t, []uint16{add, cons, open, name}, per[1])
	assert.Equal(t, []uint16{add, open}, per[2])
	assert.Equal(t, "org.govmm.stdout", g.ports[0].name)
	assert.Equal(t, "c", g.ports[1].name)
	assert.True(t, g.ports[1].console)

	// DEVICE_READY again: no port is added twice (the guest's control
	// handler flags it).
	g.send(console.VIRTIO_CONSOLE_BAD_ID, console.VIRTIO_CONSOLE_DEVICE_READY, 1)
	time.Sleep(20 * time.Millisecond)
	for g.control() {
	}
}

// TestNameHasNoNUL looks at the raw PORT_NAME message.
func TestNameHasNoNUL(t *testing.T) {
	d := newDevice(t, console.Port{Name: "port-name"})
	g := newGuest(t, d, defaultFeatures)
	g.probe()
	var raw [][]byte
	g.waitFor(ctlRx, "PORT_NAME", func() bool {
		for {
			b, n, ok := g.used(ctlRx)
			if !ok {
				break
			}
			msg := g.qs[ctlRx].d.ReadMem(b.Addr, uint64(n))
			raw = append(raw, msg)
			g.post(ctlRx, b)
			g.kick(ctlRx)
			m, _ := console.DecodeControl(msg)
			if m.Event == console.VIRTIO_CONSOLE_PORT_ADD {
				g.fill(rxq(0))
				g.send(0, console.VIRTIO_CONSOLE_PORT_READY, 1)
			}
		}
		return len(raw) >= 3
	})
	assert.Equal(t, console.Control{ID: 0, Event: console.VIRTIO_CONSOLE_PORT_OPEN, Value: 1}.Append(nil), raw[1])
	want := append(console.Control{ID: 0, Event: console.VIRTIO_CONSOLE_PORT_NAME, Value: 1}.Append(nil), "port-name"...)
	assert.Equal(t, want, raw[2], "the name without a NUL terminator")
}

// TestGuestToHost sends every byte value and then megabytes of random
// data through two ports at once and checks they arrive unchanged, in
// order, and that the close is reported after the data.
func TestGuestToHost(t *testing.T) {
	var out1, out2 lockedBuffer
	ev := newEvents()
	var atClose int
	var mu sync.Mutex
	d := newDevice(t,
		console.Port{Name: "out1", Out: &out1, GuestConnected: func(open bool) {
			if !open {
				mu.Lock()
				atClose = out1.Len()
				mu.Unlock()
			}
			ev.report(open)
		}},
		console.Port{Name: "out2", Out: &out2},
	)
	g := newGuest(t, d, defaultFeatures)
	g.handshake(2)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	g.send(1, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	assert.True(t, ev.next(t))

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big1, big2 := randomBytes(3<<20+123), randomBytes(1<<20+7)
	g.write(0, all)
	for off := 0; off < len(big1); off += 100 << 10 {
		// Interleave the two ports.
		g.write(0, big1[off:min(off+100<<10, len(big1))])
		if off < len(big2) {
			g.write(1, big2[off:min(off+100<<10, len(big2))])
		}
	}
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 0) // close, right after the writes
	assert.False(t, ev.next(t))
	mu.Lock()
	assert.Equal(t, len(all)+len(big1), atClose, "the close is reported after all data")
	mu.Unlock()
	g.drained(0)
	g.drained(1)
	assert.True(t, bytes.Equal(append(all, big1...), out1.Bytes()), "port 0 data")
	assert.True(t, bytes.Equal(big2, out2.Bytes()), "port 1 data")
}

// TestOpenCloseWithoutData checks that a quick open and close with nothing
// written is still reported as both.
func TestOpenCloseWithoutData(t *testing.T) {
	ev := newEvents()
	d := newDevice(t, console.Port{Name: "p", Out: io.Discard, GuestConnected: ev.report})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1)
	for range 5 {
		g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
		g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 0)
	}
	assert.True(t, ev.next(t))
	assert.False(t, ev.next(t))
	time.Sleep(20 * time.Millisecond)
	l := ev.List()
	require.NotEmpty(t, l)
	assert.False(t, l[len(l)-1], "ends closed")
	for i, v := range l {
		assert.Equal(t, i%2 == 0, v, "reports alternate: %v", l)
	}
}

// blockingWriter blocks every Write until release is closed.
type blockingWriter struct {
	release chan struct{}
	started chan struct{}
	once    sync.Once
	buf     lockedBuffer
}

func newBlockingWriter() *blockingWriter {
	return &blockingWriter{release: make(chan struct{}), started: make(chan struct{})}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.release
	return w.buf.Write(p)
}

// TestBackpressure checks that a blocked Out holds the guest's buffers
// back, and that they come back once it unblocks.
func TestBackpressure(t *testing.T) {
	w := newBlockingWriter()
	d := newDevice(t, console.Port{Name: "slow", Out: w})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	data := randomBytes(txBuffers * txChunk)
	g.write(0, data) // exactly the guest's buffers
	<-w.started
	time.Sleep(20 * time.Millisecond)
	i := txq(0)
	g.reclaim(i)
	assert.Empty(t, g.qs[i].free, "no buffer comes back while Out blocks")
	close(w.release)
	g.drained(0)
	assert.True(t, bytes.Equal(data, w.buf.Bytes()))
}

// TestResetWhileOutBlocks checks that Reset returns although Out blocks,
// that the writer still writes what it holds, and that the close the
// reset implies is reported after it.
func TestResetWhileOutBlocks(t *testing.T) {
	w := newBlockingWriter()
	ev := newEvents()
	d := newDevice(t, console.Port{Name: "slow", Out: w, GuestConnected: ev.report})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	assert.True(t, ev.next(t))
	g.write(0, []byte("held by the writer"))
	<-w.started

	done := make(chan struct{})
	go func() {
		d.Reset()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Reset waits for Out")
	}
	select {
	case v := <-ev.ch:
		t.Fatalf("report %v before the writer finished", v)
	case <-time.After(10 * time.Millisecond):
	}
	close(w.release)
	assert.False(t, ev.next(t), "the reset closes the port")
	assert.Equal(t, "held by the writer", string(w.buf.Bytes()))

	// A new driver: the handshake starts over and data flows again.
	g.activate()
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	assert.True(t, ev.next(t))
	g.write(0, []byte(", and more"))
	g.drained(0)
	assert.Equal(t, "held by the writer, and more", string(w.buf.Bytes()))
}

// TestHostToGuest checks host-to-guest data: In is not read before the
// guest opens the port, then megabytes arrive in order, and In's end of
// file closes the host end so that the guest's read returns 0.
func TestHostToGuest(t *testing.T) {
	data := randomBytes(2<<20 + 5)
	in := &countingReader{r: bytes.NewReader(data)}
	d := newDevice(t, console.Port{Name: "stdin", In: in})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1) // receiveq buffers posted
	time.Sleep(20 * time.Millisecond)
	assert.Zero(t, in.Reads(), "In is read only once the guest opens the port")
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	got := g.readAll(0)
	assert.True(t, bytes.Equal(data, got), "got %d bytes, want %d", len(got), len(data))
	assert.False(t, g.ports[0].hostConnected)
}

// TestNoReadWithoutBuffers checks that In is not read while the guest has
// no buffer posted.
func TestNoReadWithoutBuffers(t *testing.T) {
	in := &countingReader{r: strings.NewReader("x")}
	d := newDevice(t, console.Port{Name: "stdin", In: in})
	g := newGuest(t, d, defaultFeatures)
	// The handshake by hand, without posting receiveq buffers.
	g.probe()
	g.waitFor(ctlRx, "DEVICE_ADD", func() bool {
		b, _, ok := g.used(ctlRx)
		if ok {
			g.post(ctlRx, b)
			g.kick(ctlRx)
		}
		return ok
	})
	g.ports[0] = &guestPort{}
	g.send(0, console.VIRTIO_CONSOLE_PORT_READY, 1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	time.Sleep(20 * time.Millisecond)
	assert.Zero(t, in.Reads())
	g.fill(rxq(0))
	assert.Equal(t, []byte("x"), g.readAll(0))
	assert.Equal(t, 2, in.Reads(), "the data, then EOF")
}

// TestInEOFWithOut checks that a port with Out stays open on In's EOF:
// Linux would block the guest's writes otherwise.
func TestInEOFWithOut(t *testing.T) {
	var out lockedBuffer
	in := &countingReader{r: strings.NewReader("ping")}
	d := newDevice(t, console.Port{Name: "both", In: in, Out: &out})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	i := rxq(0)
	var got []byte
	g.waitFor(i, "ping", func() bool {
		if b, n, ok := g.used(i); ok {
			got = append(got, g.qs[i].d.ReadMem(b.Addr, uint64(n))...)
		}
		return len(got) == 4
	})
	assert.Equal(t, "ping", string(got))
	g.waitFor(i, "EOF", func() bool { return in.Reads() == 2 })
	time.Sleep(20 * time.Millisecond)
	for g.control() {
	}
	assert.True(t, g.ports[0].hostConnected)
	g.write(0, []byte("pong"))
	g.drained(0)
	assert.Equal(t, "pong", string(out.Bytes()))
}

// TestInputKeptAcrossReset checks that input read while a reset happens is
// delivered to the next driver, not lost.
func TestInputKeptAcrossReset(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	d := newDevice(t, console.Port{Name: "stdin", In: pr})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	time.Sleep(20 * time.Millisecond) // the reader now waits in Read
	d.Reset()                         // returns although the reader is blocked
	go func() {
		_, _ = pw.Write([]byte("typed during the reset"))
		_ = pw.Close()
	}()
	time.Sleep(20 * time.Millisecond)
	g.activate()
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	assert.Equal(t, "typed during the reset", string(g.readAll(0)))
}

// TestHostileControl sends what the driver never sends: short and long
// messages, unknown events, device-to-driver events, bad ids, messages
// about ports before they exist. The device ignores them and still works.
func TestHostileControl(t *testing.T) {
	var out lockedBuffer
	ev := newEvents()
	d := newDevice(t, console.Port{Name: "p", Out: &out, GuestConnected: ev.report})
	g := newGuest(t, d, defaultFeatures)
	g.fill(ctlRx)
	msg := func(id uint32, event, value uint16) []byte {
		return console.Control{ID: id, Event: event, Value: value}.Append(nil)
	}
	for _, m := range [][]byte{
		{},
		{1, 2, 3},
		msg(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)[:7],
		msg(0, console.VIRTIO_CONSOLE_PORT_READY, 1), // before DEVICE_READY
		msg(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1),  // idem
		msg(console.VIRTIO_CONSOLE_BAD_ID, console.VIRTIO_CONSOLE_DEVICE_READY, 0),
		msg(0, 99, 1),
		msg(0, 0xFFFF, 0xFFFF),
		msg(0, console.VIRTIO_CONSOLE_PORT_ADD, 1),
		msg(0, console.VIRTIO_CONSOLE_PORT_REMOVE, 1),
		msg(0, console.VIRTIO_CONSOLE_CONSOLE_PORT, 1),
		msg(0, console.VIRTIO_CONSOLE_RESIZE, 1),
		append(msg(0, console.VIRTIO_CONSOLE_PORT_NAME, 1), "evil/name"...),
		msg(console.VIRTIO_CONSOLE_BAD_ID, console.VIRTIO_CONSOLE_PORT_READY, 1),
		msg(1, console.VIRTIO_CONSOLE_PORT_OPEN, 1),
		msg(1<<31, console.VIRTIO_CONSOLE_PORT_READY, 1),
	} {
		g.sendRaw(m)
	}
	time.Sleep(20 * time.Millisecond)
	assert.False(t, g.control(), "nothing to say before a good DEVICE_READY")

	// A long message: the header counts, the rest is ignored.
	g.sendRaw(append(msg(console.VIRTIO_CONSOLE_BAD_ID, console.VIRTIO_CONSOLE_DEVICE_READY, 1), make([]byte, 100)...))
	g.controlUntil("the handshake", func() bool { return g.ports[0] != nil && g.ports[0].hostConnected })
	g.sendRaw(msg(0, console.VIRTIO_CONSOLE_PORT_READY, 0)) // failure: logged
	g.sendRaw(msg(0, console.VIRTIO_CONSOLE_PORT_OPEN, 7))  // non-zero is open
	assert.True(t, ev.next(t))
	g.write(0, []byte("still works"))
	g.drained(0)
	assert.Equal(t, "still works", string(out.Bytes()))

	// A control transmitq chain with a device-writable buffer after the
	// message: served all the same.
	v := g.qs[ctlTx]
	v.d.WriteMem(g.scratch, msg(0, console.VIRTIO_CONSOLE_PORT_OPEN, 0))
	v.d.AddChain(virtiotest.Buf{Addr: g.scratch, Len: 8}, v.d.Writable(16))
	g.kick(ctlTx)
	assert.False(t, ev.next(t))
	select {
	case err := <-g.failed:
		t.Fatalf("device failed: %v", err)
	default:
	}
}

// TestSmallControlBuffers checks that control receiveq buffers too small
// for a message get what fits.
func TestSmallControlBuffers(t *testing.T) {
	d := newDevice(t, console.Port{Name: "a-long-name"})
	g := newGuest(t, d, defaultFeatures)
	v := g.qs[ctlRx]
	for range 4 {
		g.post(ctlRx, v.d.Writable(10))
	}
	g.kick(ctlRx)
	g.send(console.VIRTIO_CONSOLE_BAD_ID, console.VIRTIO_CONSOLE_DEVICE_READY, 1)
	var add []byte
	g.waitFor(ctlRx, "DEVICE_ADD", func() bool {
		b, n, ok := g.used(ctlRx)
		if ok {
			add = v.d.ReadMem(b.Addr, uint64(n))
		}
		return ok
	})
	assert.Equal(t, console.Control{ID: 0, Event: console.VIRTIO_CONSOLE_PORT_ADD, Value: 1}.Append(nil), add)
	g.send(0, console.VIRTIO_CONSOLE_PORT_READY, 1)
	var msgs [][]byte
	g.waitFor(ctlRx, "PORT_OPEN and PORT_NAME", func() bool {
		b, n, ok := g.used(ctlRx)
		if ok {
			msgs = append(msgs, v.d.ReadMem(b.Addr, uint64(n)))
		}
		return len(msgs) == 2
	})
	assert.Equal(t, console.Control{ID: 0, Event: console.VIRTIO_CONSOLE_PORT_OPEN, Value: 1}.Append(nil), msgs[0])
	want := append(console.Control{ID: 0, Event: console.VIRTIO_CONSOLE_PORT_NAME, Value: 1}.Append(nil), "a-long-name"...)
	assert.Equal(t, want[:10], msgs[1], "cut to the buffer")
}

// TestBrokenQueueFails checks that a driver that breaks a ring gets
// DEVICE_NEEDS_RESET through Fail.
func TestBrokenQueueFails(t *testing.T) {
	d := newDevice(t, console.Port{Name: "p", Out: io.Discard})
	g := newGuest(t, d, defaultFeatures)
	g.qs[ctlTx].d.PutAvail(console.ControlQueueSize + 5) // a head past the table
	g.kick(ctlTx)
	_ = g.qs[ctlTx].q.Kick.Signal()
	select {
	case err := <-g.failed:
		assert.True(t, errors.Is(err, virtio.ErrDescIndex), "%v", err)
	case <-time.After(waitTimeout):
		t.Fatal("Fail not called")
	}
}

// TestWithoutMultiport checks the legacy single-port mode: port 0 only,
// no control queues, data both ways at once.
func TestWithoutMultiport(t *testing.T) {
	var out lockedBuffer
	in := strings.NewReader("to the guest")
	d := newDevice(t, console.Port{Name: "p", In: in, Out: &out}, console.Port{Name: "unused"})
	features := virtio.Features(0).With(virtio.VIRTIO_F_VERSION_1).With(virtio.VIRTIO_F_EVENT_IDX)
	g := newGuest(t, d, features)
	g.fill(rxq(0))
	var got []byte
	g.waitFor(rxq(0), "input", func() bool {
		for {
			b, n, ok := g.used(rxq(0))
			if !ok {
				break
			}
			got = append(got, g.qs[rxq(0)].d.ReadMem(b.Addr, uint64(n))...)
		}
		return len(got) == len("to the guest")
	})
	assert.Equal(t, "to the guest", string(got))
	g.write(0, []byte("to the host"))
	g.drained(0)
	assert.Equal(t, "to the host", string(out.Bytes()))
}

// failingWriter fails every Write.
type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("broken pipe")
}

// TestOutError checks that after a Write error the port's output is
// discarded and the guest is not held back.
func TestOutError(t *testing.T) {
	w := &failingWriter{}
	ev := newEvents()
	d := newDevice(t, console.Port{Name: "p", Out: w, GuestConnected: ev.report})
	g := newGuest(t, d, defaultFeatures)
	g.handshake(1)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 1)
	assert.True(t, ev.next(t))
	g.write(0, randomBytes(txBuffers*txChunk*3))
	g.drained(0)
	g.send(0, console.VIRTIO_CONSOLE_PORT_OPEN, 0)
	assert.False(t, ev.next(t), "closes are still reported")
	require.NoError(t, d.Close())
	assert.Equal(t, 1, w.n, "Out is not written after its error")
}

// TestManyPorts runs the handshake with the most ports.
func TestManyPorts(t *testing.T) {
	ports := make([]console.Port, console.MaxPorts)
	outs := make([]lockedBuffer, console.MaxPorts)
	for i := range ports {
		ports[i] = console.Port{Name: fmt.Sprintf("port%d", i), Out: &outs[i]}
	}
	d := newDevice(t, ports...)
	g := newGuest(t, d, defaultFeatures)
	g.handshake(console.MaxPorts)
	for i := range ports {
		assert.Equal(t, ports[i].Name, g.ports[uint32(i)].name)
		g.send(uint32(i), console.VIRTIO_CONSOLE_PORT_OPEN, 1)
		g.write(uint32(i), []byte(ports[i].Name))
	}
	for i := range ports {
		g.drained(uint32(i))
		assert.Equal(t, ports[i].Name, string(outs[i].Bytes()))
	}
}

package p9

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	ramStart = 0x10000
	ramSize  = 16 << 20
)

// denv is the request queue in fake RAM, activated on a Device the way
// the transport does it.
type denv struct {
	dev        *Device
	sh         *share
	d          *virtiotest.Driver
	q          *virtio.Queue
	failed     chan error
	interrupts chan struct{}
	tag        uint16
}

func newDenv(t *testing.T, queueSize uint16) *denv {
	t.Helper()
	sh := newShare(t)
	dev, err := New(sh.dir, Options{Tag: "share0"})
	require.NoError(t, err)
	features := virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC).With(virtio.VIRTIO_F_EVENT_IDX)
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	cfg, end := virtiotest.Layout(ramStart, queueSize, features)
	d := virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: ramStart + ramSize - end})
	vq := new(virtio.Virtqueue)
	require.NoError(t, vq.Enable(mem, cfg))
	kick, err := eventfd.New()
	require.NoError(t, err)
	e := &denv{
		dev:        dev,
		sh:         sh,
		d:          d,
		failed:     make(chan error, 1),
		interrupts: make(chan struct{}, 10000),
	}
	e.q = &virtio.Queue{Index: 0, Virtqueue: vq, Kick: kick, Interrupt: func() { e.interrupts <- struct{}{} }}
	t.Cleanup(func() {
		dev.Close()
		kick.Close()
	})
	return e
}

func (e *denv) activate(t *testing.T) {
	t.Helper()
	require.NoError(t, e.dev.Activate(&virtio.Activation{
		Features: e.d.Cfg.Features,
		Queues:   []*virtio.Queue{e.q},
		Fail: func(err error) {
			select {
			case e.failed <- err:
			default:
			}
		},
		ConfigChanged: func() { t.Error("config change") },
	}))
}

// post adds a chain with the T-message in one readable buffer (or
// several, for Twrite: the header and then the data) and the given
// writable buffers, and kicks the device if the driver must.
type posted struct {
	head uint16
	out  []virtiotest.Buf
}

func (e *denv) post(t *testing.T, msg []byte, outSizes ...uint32) posted {
	t.Helper()
	var bufs []virtiotest.Buf
	if msg[4] == Twrite && len(msg) > twriteFixedSize {
		bufs = append(bufs, e.d.Readable(msg[:twriteFixedSize]), e.d.Readable(msg[twriteFixedSize:]))
	} else {
		bufs = append(bufs, e.d.Readable(msg))
	}
	var out []virtiotest.Buf
	for _, n := range outSizes {
		out = append(out, e.d.Writable(n))
	}
	p := posted{head: e.d.AddIndirectChain(append(bufs, out...)...), out: out}
	if e.d.Publish() {
		require.NoError(t, e.q.Kick.Signal())
	}
	return p
}

// reply returns the bytes the device wrote into p's writable buffers.
func (e *denv) reply(p posted, n uint32) []byte {
	var b []byte
	for _, o := range p.out {
		k := min(n, o.Len)
		b = append(b, e.d.ReadMem(o.Addr, uint64(k))...)
		n -= k
	}
	return b
}

// waitUsed waits for the next used chain and returns its head and length.
func (e *denv) waitUsed(t *testing.T) (uint16, uint32) {
	t.Helper()
	var id, n uint32
	require.Eventually(t, func() bool {
		var ok bool
		id, n, ok = e.d.GetUsed()
		return ok
	}, 10*time.Second, time.Millisecond, "no used chain")
	return uint16(id), n
}

// rpc posts a T-message with one writable buffer of outSize bytes and
// returns the reply, checking its framing.
func (e *denv) rpc(t *testing.T, typ uint8, outSize uint32, fields ...any) (uint8, *decoder) {
	t.Helper()
	e.tag++
	p := e.post(t, tmsg(typ, e.tag, fields...), outSize)
	head, n := e.waitUsed(t)
	require.Equal(t, p.head, head)
	r := e.reply(p, n)
	require.GreaterOrEqual(t, len(r), headerSize)
	require.EqualValues(t, n, binary.LittleEndian.Uint32(r), "used length is the size field")
	require.Equal(t, e.tag, binary.LittleEndian.Uint16(r[5:]))
	return r[4], &decoder{b: r[headerSize:]}
}

func TestDeviceDescription(t *testing.T) {
	sh := newShare(t)
	d, err := New(sh.dir, Options{Tag: "hostshare"})
	require.NoError(t, err)
	defer d.Close()
	assert.EqualValues(t, 9, d.DeviceID(), "VIRTIO_ID_9P")
	assert.Equal(t, virtio.Features(1), d.Features(), "VIRTIO_9P_MOUNT_TAG only")
	require.Equal(t, []uint16{QueueSize}, d.QueueMaxSizes())
	assert.Equal(t, "hostshare", d.Tag())

	cfg := make([]byte, 16)
	d.ReadConfig(0, cfg)
	assert.Equal(t, append([]byte{9, 0}, []byte("hostshare\x00\x00\x00\x00\x00")...), cfg)
	b := make([]byte, 4)
	d.ReadConfig(2, b)
	assert.Equal(t, []byte("host"), b)
	d.ReadConfig(1<<20, b)
	assert.Equal(t, make([]byte, 4), b)
	d.WriteConfig(0, []byte{1, 2, 3})
	d.ReadConfig(0, b)
	assert.Equal(t, []byte{9, 0, 'h', 'o'}, b, "read-only")
	d.Reset() // before any Activate
}

func TestNewErrors(t *testing.T) {
	sh := newShare(t)
	for _, tag := range []string{"", "has space", "tab\t", strings.Repeat("t", MaxTagLen+1), "é"} {
		_, err := New(sh.dir, Options{Tag: tag})
		assert.Error(t, err, "tag %q", tag)
	}
	d, err := New(sh.dir, Options{Tag: strings.Repeat("t", MaxTagLen)})
	require.NoError(t, err)
	d.Close()
	_, err = New(filepath.Join(sh.base, "nope"), Options{Tag: "x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(sh.base, "nope"))
	_, err = New(filepath.Join(sh.outside, "secret"), Options{Tag: "x"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a directory")
}

// TestDeviceSession runs a session through the virtqueue: the used
// lengths, Linux's zero-copy layouts for Twrite and Tread, and a reply
// buffer split across descriptors.
func TestDeviceSession(t *testing.T) {
	e := newDenv(t, 64)
	require.NoError(t, os.WriteFile(e.sh.path("f"), nil, 0o644))
	e.activate(t)

	rt, d := e.rpc(t, Tversion, 4096, uint32(512000), Version)
	require.Equal(t, uint8(Rversion), rt)
	assert.EqualValues(t, 512000, d.u32())
	rt, _ = e.rpc(t, Tattach, 4096, uint32(0), uint32(NOFID), "root", "", uint32(0))
	require.Equal(t, uint8(Rattach), rt)
	rt, _ = e.rpc(t, Twalk, 4096, uint32(0), uint32(1), []string{"f"})
	require.Equal(t, uint8(Rwalk), rt)
	rt, _ = e.rpc(t, Tlopen, 4096, uint32(1), uint32(P9_DOTL_RDWR))
	require.Equal(t, uint8(Rlopen), rt)

	// Twrite with the data in a descriptor of its own.
	data := make([]byte, 200_000)
	for i := range data {
		data[i] = byte(i * 13)
	}
	rt, d = e.rpc(t, Twrite, 11, uint32(1), uint64(0), uint32(len(data)), raw(data))
	require.Equal(t, uint8(Rwrite), rt)
	assert.EqualValues(t, len(data), d.u32())
	host, err := os.ReadFile(e.sh.path("f"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, host))

	// Tread into an 11-byte header buffer and data pages.
	e.tag++
	p := e.post(t, tmsg(Tread, e.tag, uint32(1), uint64(1000), uint32(3*4096)), ioHeaderSize, 4096, 4096, 4096)
	head, n := e.waitUsed(t)
	require.Equal(t, p.head, head)
	require.EqualValues(t, ioHeaderSize+3*4096, n)
	r := e.reply(p, n)
	assert.Equal(t, uint8(Rread), r[4])
	assert.EqualValues(t, 3*4096, binary.LittleEndian.Uint32(r[7:]))
	assert.True(t, bytes.Equal(data[1000:1000+3*4096], r[ioHeaderSize:]))

	// An error reply.
	rt, d = e.rpc(t, Twalk, 4096, uint32(0), uint32(2), []string{"missing"})
	require.Equal(t, uint8(Rlerror), rt)
	assert.EqualValues(t, unix.ENOENT, d.u32())
	select {
	case <-e.interrupts:
	case <-time.After(10 * time.Second):
		t.Fatal("no used buffer notification")
	}

	// Reset ends the session.
	assert.Equal(t, 2, e.dev.Server().Fids())
	e.dev.Reset()
	assert.Equal(t, 0, e.dev.Server().Fids())
}

// blockingServe wraps a serveFunc so that requests with chosen tags wait
// until released.
type blockingServe struct {
	next    serveFunc
	mu      sync.Mutex
	block   map[uint16]chan struct{}
	started chan uint16
}

// newBlockingServe returns a blockingServe for the test; whatever is held
// when the test ends is released first, so that a failed test does not
// hang in the device's Reset.
func newBlockingServe(t *testing.T, next serveFunc) *blockingServe {
	b := &blockingServe{next: next, block: map[uint16]chan struct{}{}, started: make(chan uint16, 100)}
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for tag, ch := range b.block {
			select {
			case <-ch:
			default:
				close(ch)
			}
			delete(b.block, tag)
		}
	})
	return b
}

func (b *blockingServe) hold(tag uint16) {
	b.mu.Lock()
	b.block[tag] = make(chan struct{})
	b.mu.Unlock()
}

func (b *blockingServe) release(tag uint16) {
	b.mu.Lock()
	close(b.block[tag])
	delete(b.block, tag)
	b.mu.Unlock()
}

func (b *blockingServe) serve(in, out [][]byte) uint32 {
	var hdr [headerSize]byte
	readAt(in, hdr[:], 0)
	tag := binary.LittleEndian.Uint16(hdr[5:])
	b.mu.Lock()
	ch := b.block[tag]
	b.mu.Unlock()
	if ch != nil {
		b.started <- tag
		<-ch
	}
	return b.next(in, out)
}

// TestFlushWaitsForTheRequest checks that Rflush reaches the used ring
// only after the reply to the request it flushes, and that a slow
// request does not hold up others meanwhile.
func TestFlushWaitsForTheRequest(t *testing.T) {
	e := newDenv(t, 64)
	b := newBlockingServe(t, e.dev.srv.HandleBuffers)
	e.dev.serve = b.serve
	e.activate(t)
	rt, _ := e.rpc(t, Tversion, 4096, uint32(65536), Version)
	require.Equal(t, uint8(Rversion), rt)
	rt, _ = e.rpc(t, Tattach, 4096, uint32(0), uint32(NOFID), "root", "", uint32(0))
	require.Equal(t, uint8(Rattach), rt)

	// A slow request, and a Tflush for it.
	b.hold(100)
	slow := e.post(t, tmsg(Tgetattr, 100, uint32(0), uint64(0)), 4096)
	assert.Equal(t, uint16(100), <-b.started)
	flush := e.post(t, tmsg(Tflush, 101, uint16(100)), 64)

	// Others are served meanwhile.
	e.tag = 200
	rt, _ = e.rpc(t, Tgetattr, 4096, uint32(0), uint64(0))
	assert.Equal(t, uint8(Rgetattr), rt)
	// A Tflush of a tag not in flight is answered at once.
	other := e.post(t, tmsg(Tflush, 102, uint16(555)), 64)
	head, n := e.waitUsed(t)
	assert.Equal(t, other.head, head)
	assert.Equal(t, []byte{7, 0, 0, 0, Rflush, 102, 0}, e.reply(other, n))

	time.Sleep(20 * time.Millisecond)
	_, _, ok := e.d.GetUsed()
	require.False(t, ok, "Rflush before the flushed request's reply")

	b.release(100)
	head, n = e.waitUsed(t)
	assert.Equal(t, slow.head, head, "the flushed request first")
	assert.Equal(t, uint8(Rgetattr), e.reply(slow, n)[4])
	head, n = e.waitUsed(t)
	assert.Equal(t, flush.head, head, "then Rflush")
	assert.Equal(t, []byte{7, 0, 0, 0, Rflush, 101, 0}, e.reply(flush, n))
}

// TestInFlightLimit fills the queue with blocked requests: the device
// takes no more than the queue size, and takes the rest once they finish.
func TestInFlightLimit(t *testing.T) {
	const size = 8
	e := newDenv(t, size)
	b := newBlockingServe(t, e.dev.srv.HandleBuffers)
	e.dev.serve = b.serve
	e.activate(t)
	rt, _ := e.rpc(t, Tversion, 4096, uint32(65536), Version)
	require.Equal(t, uint8(Rversion), rt)
	rt, _ = e.rpc(t, Tattach, 4096, uint32(0), uint32(NOFID), "root", "", uint32(0))
	require.Equal(t, uint8(Rattach), rt)

	// The queue's size in blocked requests: more than Workers, so some
	// wait for a worker.
	for tag := range uint16(size) {
		b.hold(tag + 10)
		e.post(t, tmsg(Tgetattr, tag+10, uint32(0), uint64(0)), 4096)
	}
	for range min(size, Workers) {
		<-b.started
	}
	for tag := range uint16(size) {
		b.release(tag + 10)
	}
	for range size {
		e.waitUsed(t)
	}
	// And the device keeps serving.
	e.tag = 1000
	rt, _ = e.rpc(t, Tgetattr, 4096, uint32(0), uint64(0))
	assert.Equal(t, uint8(Rgetattr), rt)
}

// TestResetWaitsForRequests resets the device while a request is being
// served: Reset returns after it finished, and the chain is not returned.
func TestResetWaitsForRequests(t *testing.T) {
	e := newDenv(t, 64)
	b := newBlockingServe(t, e.dev.srv.HandleBuffers)
	e.dev.serve = b.serve
	e.activate(t)
	b.hold(5)
	e.post(t, tmsg(Tversion, 5, uint32(65536), Version), 4096)
	<-b.started
	done := make(chan struct{})
	go func() {
		e.dev.Reset()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("Reset returned while a request was being served")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(5)
	<-done
	_, _, ok := e.d.GetUsed()
	assert.False(t, ok)
	e.dev.Reset()
}

func TestDeviceBrokenQueue(t *testing.T) {
	e := newDenv(t, 8)
	e.d.PutAvail(100) // a head past the table
	e.d.Publish()
	e.activate(t)
	select {
	case err := <-e.failed:
		assert.True(t, errors.Is(err, virtio.ErrDescIndex), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Fail not called")
	}
}

// TestDeviceOddChains sends chains a guest should not: no writable
// buffers, a header split over descriptors, nothing readable.
func TestDeviceOddChains(t *testing.T) {
	e := newDenv(t, 16)
	e.activate(t)
	// No room for a reply: returned with length 0.
	m := tmsg(Tversion, NOTAG, uint32(65536), Version)
	h := e.d.AddChain(e.d.Readable(m))
	e.d.Publish()
	require.NoError(t, e.q.Kick.Signal())
	head, n := e.waitUsed(t)
	assert.Equal(t, h, head)
	assert.Zero(t, n)
	// Only writable buffers.
	out := e.d.Writable(64)
	h = e.d.AddChain(out)
	e.d.Publish()
	require.NoError(t, e.q.Kick.Signal())
	head, n = e.waitUsed(t)
	assert.Equal(t, h, head)
	assert.Zero(t, n)
	// A header in 1-byte descriptors.
	var bufs []virtiotest.Buf
	for i := range m {
		bufs = append(bufs, e.d.Readable(m[i:i+1]))
	}
	out = e.d.Writable(64)
	h = e.d.AddIndirectChain(append(bufs, out)...)
	e.d.Publish()
	require.NoError(t, e.q.Kick.Signal())
	head, n = e.waitUsed(t)
	assert.Equal(t, h, head)
	r := e.d.ReadMem(out.Addr, uint64(n))
	assert.Equal(t, uint8(Rversion), r[4])
	// A Tflush too short to name a tag is answered by the server.
	h = e.d.AddChain(e.d.Readable(tmsg(Tflush, 3)), e.d.Writable(64))
	e.d.Publish()
	require.NoError(t, e.q.Kick.Signal())
	head, n = e.waitUsed(t)
	assert.Equal(t, h, head)
	assert.EqualValues(t, rlerrorSize, n)
}

package blk

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
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

// The fake guest RAM of the tests.
const (
	ramStart = 0x10000
	ramSize  = 16 << 20
)

// transportFeatures are the features every transport adds (virtio.Device).
var transportFeatures = virtio.Features(0).
	With(virtio.VIRTIO_F_VERSION_1).
	With(virtio.VIRTIO_F_INDIRECT_DESC).
	With(virtio.VIRTIO_F_EVENT_IDX)

// newImage writes an image of size random bytes into a fresh temporary
// directory and returns its path and contents.
func newImage(t testing.TB, name string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	_, _ = rand.Read(data)
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path, data
}

// fileBytes returns the image's contents.
func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

// recordHandler is a slog.Handler that keeps the records it gets.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// count returns how many records at level have been logged.
func (h *recordHandler) count(level slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

// queueEnv is one request queue of an activated device, with the fake
// driver on the other side.
type queueEnv struct {
	d          *virtiotest.Driver
	q          *virtio.Queue
	irq        chan struct{}
	interrupts atomic.Int64 // used buffer notifications sent
}

// env is an activated block device in fake guest RAM, the way a
// transport sets it up when the driver sets DRIVER_OK.
type env struct {
	t        testing.TB
	dev      *Device
	mem      *memory.Guest
	features virtio.Features
	queues   []*queueEnv
	fails    chan error
	log      *recordHandler
}

// newEnv opens path with opts and activates the device with features
// negotiated: all it offers unless told otherwise.
func newEnv(t testing.TB, path string, opts Options) *env {
	t.Helper()
	dev, err := Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dev.Close()) })
	return activate(t, dev, dev.Features()|transportFeatures)
}

// activate lays out every queue of dev in fresh fake RAM and activates it.
func activate(t testing.TB, dev *Device, features virtio.Features) *env {
	t.Helper()
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	e := &env{t: t, dev: dev, mem: mem, features: features, fails: make(chan error, 16), log: &recordHandler{}}
	sizes := dev.QueueMaxSizes()
	// Each queue gets an equal share of RAM: its rings, then its buffers.
	share := uint64(ramSize) / uint64(len(sizes))
	a := &virtio.Activation{
		Mem:           mem,
		Features:      features,
		ConfigChanged: func() {},
		Fail:          func(err error) { e.fails <- err },
		Log:           slog.New(e.log),
	}
	for i, size := range sizes {
		base := ramStart + uint64(i)*share
		cfg, end := virtiotest.Layout(base, size, features)
		qe := &queueEnv{
			d:   virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: base + share - end}),
			irq: make(chan struct{}, 1),
		}
		vq := new(virtio.Virtqueue)
		require.NoError(t, vq.Enable(mem, cfg))
		kick, err := eventfd.New()
		require.NoError(t, err)
		t.Cleanup(func() { kick.Close() })
		qe.q = &virtio.Queue{Index: i, Virtqueue: vq, Kick: kick, Interrupt: func() {
			qe.interrupts.Add(1)
			select {
			case qe.irq <- struct{}{}:
			default:
			}
		}}
		e.queues = append(e.queues, qe)
		a.Queues = append(a.Queues, qe.q)
	}
	require.NoError(t, dev.Activate(a))
	t.Cleanup(dev.Reset)
	return e
}

// submit makes a chain of bufs available on queue 0, indirect or not, and
// notifies the device if the driver must.
func (e *env) submit(q int, indirect bool, bufs ...virtiotest.Buf) uint16 {
	qe := e.queues[q]
	var head uint16
	if indirect {
		head = qe.d.AddIndirectChain(bufs...)
	} else {
		head = qe.d.AddChain(bufs...)
	}
	if qe.d.Publish() {
		require.NoError(e.t, qe.q.Kick.Signal())
	}
	return head
}

// wait returns the next used element of queue q, waiting for the
// device's interrupt.
func (e *env) wait(q int) (id, length uint32) {
	e.t.Helper()
	qe := e.queues[q]
	timeout := time.After(10 * time.Second)
	for {
		if id, length, ok := qe.d.GetUsed(); ok {
			return id, length
		}
		if qe.d.EnableInterrupts() {
			continue // arrived meanwhile
		}
		select {
		case <-qe.irq:
		case err := <-e.fails:
			e.t.Fatalf("device failed the queue: %v", err)
		case <-timeout:
			e.t.Fatal("no used buffer after 10s")
		}
	}
}

// do submits one request on queue 0 and returns its status (the last
// writable byte) and used length.
func (e *env) do(bufs ...virtiotest.Buf) (status byte, used uint32) {
	e.t.Helper()
	return e.doOn(0, false, bufs...)
}

func (e *env) doOn(q int, indirect bool, bufs ...virtiotest.Buf) (status byte, used uint32) {
	e.t.Helper()
	head := e.submit(q, indirect, bufs...)
	id, used := e.wait(q)
	require.Equal(e.t, uint32(head), id)
	last := bufs[len(bufs)-1]
	require.True(e.t, last.Write && last.Len > 0, "test chain must end with the status")
	return e.queues[q].d.ReadMem(last.Addr+uint64(last.Len)-1, 1)[0], used
}

// drv returns the driver of queue 0.
func (e *env) drv() *virtiotest.Driver { return e.queues[0].d }

// header is a struct virtio_blk_req header.
func header(typ uint32, sector uint64) []byte {
	h := make([]byte, reqHeaderSize)
	binary.LittleEndian.PutUint32(h[reqTypeOff:], typ)
	binary.LittleEndian.PutUint64(h[reqSectorOff:], sector)
	return h
}

// segment is a struct virtio_blk_discard_write_zeroes.
func segment(sector uint64, num, flags uint32) []byte {
	s := make([]byte, segSize)
	binary.LittleEndian.PutUint64(s[segSectorOff:], sector)
	binary.LittleEndian.PutUint32(s[segNumSectorsOff:], num)
	binary.LittleEndian.PutUint32(s[segFlagsOff:], flags)
	return s
}

// read reads n bytes at sector through the device.
func (e *env) read(sector uint64, n uint32) ([]byte, byte) {
	e.t.Helper()
	d := e.drv()
	data := d.Writable(n)
	status, used := e.do(d.Readable(header(VIRTIO_BLK_T_IN, sector)), data, d.Writable(1))
	require.Equal(e.t, n+1, used)
	return d.ReadMem(data.Addr, uint64(n)), status
}

// write writes p at sector through the device.
func (e *env) write(sector uint64, p []byte) byte {
	e.t.Helper()
	d := e.drv()
	status, used := e.do(d.Readable(header(VIRTIO_BLK_T_OUT, sector)), d.Readable(p), d.Writable(1))
	require.Equal(e.t, uint32(1), used)
	return status
}

// simple sends a request of type typ with optional device-readable data
// and returns its status.
func (e *env) simple(typ uint32, sector uint64, out ...[]byte) byte {
	e.t.Helper()
	d := e.drv()
	bufs := []virtiotest.Buf{d.Readable(header(typ, sector))}
	for _, p := range out {
		bufs = append(bufs, d.Readable(p))
	}
	bufs = append(bufs, d.Writable(1))
	status, used := e.do(bufs...)
	require.Equal(e.t, uint32(1), used)
	return status
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

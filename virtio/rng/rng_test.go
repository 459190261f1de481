package rng_test

import (
	"errors"
	"testing"
	"time"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	ramStart = 0x10000
	ramSize  = 1 << 20
)

// env is requestq in fake RAM, activated on a Device the way the
// transport does it.
type env struct {
	dev        *rng.Device
	d          *virtiotest.Driver
	q          *virtio.Queue
	failed     chan error
	interrupts chan struct{}
}

func newEnv(t *testing.T, features virtio.Features) *env {
	t.Helper()
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	cfg, end := virtiotest.Layout(ramStart, rng.QueueSize, features)
	d := virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: ramStart + ramSize - end})
	vq := new(virtio.Virtqueue)
	require.NoError(t, vq.Enable(mem, cfg))
	kick, err := eventfd.New()
	require.NoError(t, err)
	e := &env{
		dev:        rng.New(),
		d:          d,
		failed:     make(chan error, 1),
		interrupts: make(chan struct{}, 1000),
	}
	e.q = &virtio.Queue{Index: 0, Virtqueue: vq, Kick: kick, Interrupt: func() { e.interrupts <- struct{}{} }}
	t.Cleanup(func() {
		e.dev.Reset()
		kick.Close()
	})
	return e
}

func (e *env) activate(t *testing.T) {
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
		ConfigChanged: func() { t.Error("config change from a device without configuration") },
	}))
}

// waitUsed waits until the device has returned n chains in all.
func (e *env) waitUsed(t *testing.T, n uint16) {
	t.Helper()
	require.Eventually(t, func() bool { return e.d.UsedIdx() == n }, 10*time.Second, time.Millisecond,
		"used idx %d, want %d", e.d.UsedIdx(), n)
}

func notAllEqual(b []byte) bool {
	for _, v := range b {
		if v != b[0] {
			return true
		}
	}
	return false
}

func TestDeviceDescription(t *testing.T) {
	d := rng.New()
	assert.EqualValues(t, 4, d.DeviceID(), "VIRTIO_ID_RNG")
	assert.Zero(t, d.Features())
	require.Len(t, d.QueueMaxSizes(), 1, "requestq only")
	s := d.QueueMaxSizes()[0]
	assert.True(t, s > 0 && s&(s-1) == 0)
	b := []byte{0xFF, 0xFF, 0xFF}
	d.WriteConfig(0, []byte{1, 2, 3})
	d.ReadConfig(0, b)
	assert.Equal(t, []byte{0, 0, 0}, b, "no configuration")
	d.Reset() // before any Activate
}

func TestFillsWritableBuffers(t *testing.T) {
	for name, features := range map[string]virtio.Features{
		"flags":     virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC),
		"event idx": virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC).With(virtio.VIRTIO_F_EVENT_IDX),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, features)
			// Posted before activation: served without a kick.
			a := e.d.Writable(100)
			h1 := e.d.AddChain(a)
			e.d.Publish()
			e.activate(t)
			e.waitUsed(t, 1)
			id, n, ok := e.d.GetUsed()
			require.True(t, ok)
			assert.EqualValues(t, h1, id)
			assert.EqualValues(t, 100, n)
			assert.True(t, notAllEqual(e.d.ReadMem(a.Addr, 100)))

			// A readable-only chain gets nothing; readable buffers are
			// skipped; several writable ones are all filled; an
			// indirect chain works too.
			ro := e.d.Readable([]byte("request"))
			b1, b2 := e.d.Writable(40), e.d.Writable(24)
			c := e.d.Writable(33)
			e.d.EnableInterrupts()
			h2 := e.d.AddChain(ro)
			h3 := e.d.AddChain(e.d.Readable([]byte{9, 9, 9}), b1, b2)
			h4 := e.d.AddIndirectChain(c)
			if e.d.Publish() {
				require.NoError(t, e.q.Kick.Signal())
			}
			e.waitUsed(t, 4)
			got := map[uint32]uint32{}
			for range 3 {
				id, n, ok := e.d.GetUsed()
				require.True(t, ok)
				got[id] = n
			}
			assert.Equal(t, map[uint32]uint32{uint32(h2): 0, uint32(h3): 64, uint32(h4): 33}, got)
			assert.Equal(t, []byte("request"), e.d.ReadMem(ro.Addr, 7), "readable buffer untouched")
			assert.True(t, notAllEqual(e.d.ReadMem(b1.Addr, 40)))
			assert.True(t, notAllEqual(e.d.ReadMem(b2.Addr, 24)))
			assert.True(t, notAllEqual(e.d.ReadMem(c.Addr, 33)))
			select {
			case <-e.interrupts:
			case <-time.After(10 * time.Second):
				t.Fatal("no used buffer notification")
			}
		})
	}
}

func TestBoundsBytesPerChain(t *testing.T) {
	e := newEnv(t, 0)
	// 100 KiB of writable buffers in one chain: only MaxBytesPerChain
	// are filled, from the first buffer on.
	bufs := []virtiotest.Buf{e.d.Writable(40 << 10), e.d.Writable(40 << 10), e.d.Writable(20 << 10)}
	e.d.AddChain(bufs...)
	e.d.Publish()
	e.activate(t)
	e.waitUsed(t, 1)
	_, n, ok := e.d.GetUsed()
	require.True(t, ok)
	assert.EqualValues(t, rng.MaxBytesPerChain, n)
	second := e.d.ReadMem(bufs[1].Addr, 40<<10)
	filled := rng.MaxBytesPerChain - 40<<10
	assert.True(t, notAllEqual(second[filled-64:filled]), "filled up to the bound")
	assert.Equal(t, make([]byte, 40<<10-filled), second[filled:], "not past it")
	assert.Equal(t, make([]byte, 20<<10), e.d.ReadMem(bufs[2].Addr, 20<<10))
}

func TestBrokenQueueFails(t *testing.T) {
	e := newEnv(t, 0)
	e.d.PutAvail(rng.QueueSize + 1) // a head past the table
	e.d.Publish()
	e.activate(t)
	select {
	case err := <-e.failed:
		assert.True(t, errors.Is(err, virtio.ErrDescIndex), "%v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Fail not called")
	}
}

func TestResetAndReactivate(t *testing.T) {
	e := newEnv(t, 0)
	e.activate(t)
	e.dev.Reset()
	e.dev.Reset() // twice is fine

	// A new activation serves again.
	e.q.Virtqueue.Reset()
	require.NoError(t, e.q.Virtqueue.Enable(e.d.Mem, e.d.Cfg))
	e.activate(t)
	e.d.AddChain(e.d.Writable(8))
	e.d.Publish()
	require.NoError(t, e.q.Kick.Signal())
	e.waitUsed(t, 1)
}

func TestQueueNotEnabled(t *testing.T) {
	d := rng.New()
	require.NoError(t, d.Activate(&virtio.Activation{Queues: []*virtio.Queue{nil}}))
	d.Reset()
}

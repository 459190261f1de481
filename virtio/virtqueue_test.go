package virtio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The fake guest RAM of the tests: not at address 0, so that there are
// addresses below RAM as well as above it.
const (
	ramStart = 0x10000
	ramSize  = 1 << 20
	ramEnd   = ramStart + ramSize
)

// bothWays are the feature sets most tests run under: notification
// suppression through the ring flags, and through the event indices.
var bothWays = map[string]virtio.Features{
	"flags":     virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC),
	"event idx": virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC).With(virtio.VIRTIO_F_EVENT_IDX),
}

// queueEnv is a queue in fake guest RAM with a driver for it.
type queueEnv struct {
	mem *memory.Guest
	ram []byte
	d   *virtiotest.Driver
	q   *virtio.Virtqueue
	cfg virtio.QueueConfig
}

// newQueue sets up and enables a queue of the given size whose indices start
// at start, the rings at the bottom of RAM and buffers above them.
func newQueue(t testing.TB, size uint16, features virtio.Features, start uint16) *queueEnv {
	t.Helper()
	mem, ram := virtiotest.NewRAM(ramStart, ramSize)
	cfg, end := virtiotest.Layout(ramStart, size, features)
	cfg.LastAvailIdx, cfg.UsedIdx = start, start
	d := virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: ramEnd - end})
	q := new(virtio.Virtqueue)
	require.NoError(t, q.Enable(mem, cfg))
	return &queueEnv{mem: mem, ram: ram, d: d, q: q, cfg: cfg}
}

// pop pops a chain that must be there.
func (e *queueEnv) pop(t testing.TB) *virtio.DescChain {
	t.Helper()
	var c virtio.DescChain
	ok, err := e.q.Pop(&c)
	require.NoError(t, err)
	require.True(t, ok, "no chain available")
	return &c
}

// popErr publishes what the driver added and returns Pop's error.
func (e *queueEnv) popErr(t testing.TB) error {
	t.Helper()
	e.d.Publish()
	var c virtio.DescChain
	ok, err := e.q.Pop(&c)
	if err == nil {
		assert.True(t, ok, "no chain and no error")
	}
	return err
}

func readAll(t testing.TB, c *virtio.DescChain) []byte {
	t.Helper()
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	return b
}

func TestSingleBufferRoundTrip(t *testing.T) {
	e := newQueue(t, 16, 0, 0)
	var c virtio.DescChain
	ok, err := e.q.Pop(&c)
	require.NoError(t, err)
	assert.False(t, ok, "empty ring")

	head := e.d.AddChain(e.d.Readable([]byte("hello")))
	assert.False(t, mustPop(e.q), "not published yet")
	assert.True(t, e.d.Publish(), "notifications are enabled: the driver must notify")

	c2 := e.pop(t)
	assert.Equal(t, head, c2.Head)
	assert.Equal(t, [][]byte{[]byte("hello")}, c2.ReadableBuffers())
	assert.Empty(t, c2.WritableBuffers())
	assert.Equal(t, uint32(5), c2.ReadableLen())
	assert.Equal(t, uint32(0), c2.WritableLen())
	assert.Equal(t, "hello", string(readAll(t, c2)))

	interrupt, err := e.q.Push(c2.Head, 0)
	require.NoError(t, err)
	assert.True(t, interrupt, "avail->flags is 0: the device MUST notify (§2.7.7.2)")
	id, n, ok := e.d.GetUsed()
	require.True(t, ok)
	assert.Equal(t, uint32(head), id)
	assert.Equal(t, uint32(0), n)
	assert.Equal(t, uint16(1), e.d.UsedIdx())

	ok, err = e.q.Pop(&c)
	require.NoError(t, err)
	assert.False(t, ok)
}

// mustPop reports whether a chain could be popped (and gives it back).
func mustPop(q *virtio.Virtqueue) bool {
	var c virtio.DescChain
	ok, _ := q.Pop(&c)
	if ok {
		q.Unpop()
	}
	return ok
}

func TestNextChainReadableThenWritable(t *testing.T) {
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			e := newQueue(t, 8, features, 0)
			hdr := make([]byte, 16)
			binary.LittleEndian.PutUint64(hdr, 0x1122334455667788)
			binary.LittleEndian.PutUint64(hdr[8:], 42)
			data := e.d.Writable(6)
			status := e.d.Writable(1)
			// The header split over two descriptors: the device must not
			// assume a layout (§2.7.4.1).
			head := e.d.AddChain(e.d.Readable(hdr[:5]), e.d.Readable(hdr[5:]), data, status)
			e.d.Publish()

			c := e.pop(t)
			assert.Equal(t, head, c.Head)
			require.Len(t, c.ReadableBuffers(), 2)
			require.Len(t, c.WritableBuffers(), 2)
			assert.Equal(t, uint32(16), c.ReadableLen())
			assert.Equal(t, uint32(7), c.WritableLen())

			var got [16]byte
			_, err := io.ReadFull(c, got[:])
			require.NoError(t, err)
			assert.Equal(t, hdr, got[:])
			_, err = c.Read(got[:])
			assert.ErrorIs(t, err, io.EOF)

			n, err := c.Write([]byte("abcdef!"))
			require.NoError(t, err)
			assert.Equal(t, 7, n)
			n, err = c.Write([]byte("x"))
			assert.ErrorIs(t, err, io.ErrShortWrite)
			assert.Equal(t, 0, n)
			assert.Equal(t, uint32(7), c.Written())

			_, err = e.q.Push(c.Head, c.Written())
			require.NoError(t, err)
			id, l, ok := e.d.GetUsed()
			require.True(t, ok)
			assert.Equal(t, uint32(head), id)
			assert.Equal(t, uint32(7), l)
			assert.Equal(t, "abcdef", string(e.d.ReadMem(data.Addr, 6)))
			assert.Equal(t, "!", string(e.d.ReadMem(status.Addr, 1)))
			assert.Equal(t, 8, e.d.FreeDescriptors(), "every descriptor came back")
		})
	}
}

func TestChainOfQueueSizeDescriptors(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	var bufs []virtiotest.Buf
	for i := range 4 {
		bufs = append(bufs, e.d.Readable([]byte{byte(i)}))
	}
	e.d.AddChain(bufs...)
	e.d.Publish()
	c := e.pop(t)
	assert.Equal(t, []byte{0, 1, 2, 3}, readAll(t, c))
}

func TestIndirectChain(t *testing.T) {
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			e := newQueue(t, 2, features, 0)
			out := e.d.Writable(8)
			// More buffers than the queue size: indirect tables exist to
			// raise ring capacity (§2.7.5.3).
			head := e.d.AddIndirectChain(e.d.Readable([]byte("in")), e.d.Readable([]byte("direct")), e.d.Writable(0), out)
			e.d.Publish()

			c := e.pop(t)
			assert.Equal(t, head, c.Head)
			assert.Equal(t, "indirect", string(readAll(t, c)))
			assert.Len(t, c.WritableBuffers(), 1, "the empty buffer is left out")
			_, err := c.Write([]byte("response"))
			require.NoError(t, err)
			_, err = e.q.Push(c.Head, c.Written())
			require.NoError(t, err)
			id, n, ok := e.d.GetUsed()
			require.True(t, ok)
			assert.Equal(t, uint32(head), id)
			assert.Equal(t, uint32(8), n)
			assert.Equal(t, "response", string(e.d.ReadMem(out.Addr, 8)))
		})
	}
}

func TestDirectDescriptorsThenIndirectTable(t *testing.T) {
	// §2.7.5.3.2: the device MUST handle zero or more normal chained
	// descriptors followed by a single indirect one, and MUST ignore
	// VIRTQ_DESC_F_WRITE on the descriptor referring to the table.
	e := newQueue(t, 4, bothWays["flags"], 0)
	in := e.d.Readable([]byte("head "))
	more := e.d.Readable([]byte("more"))
	out := e.d.Writable(3)
	table := e.d.PutTable(
		virtio.Desc{Addr: more.Addr, Len: more.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1},
		virtio.Desc{Addr: out.Addr, Len: out.Len, Flags: virtio.VIRTQ_DESC_F_WRITE},
	)
	e.d.SetDesc(2, virtio.Desc{Addr: in.Addr, Len: in.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 3})
	e.d.SetDesc(3, virtio.Desc{Addr: table, Len: 2 * virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT | virtio.VIRTQ_DESC_F_WRITE})
	e.d.PutAvail(2)
	e.d.Publish()

	c := e.pop(t)
	assert.Equal(t, uint16(2), c.Head)
	assert.Equal(t, "head more", string(readAll(t, c)))
	assert.Equal(t, uint32(3), c.WritableLen())
}

func TestIndexWraparound(t *testing.T) {
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			// Start 6 short of the 16-bit wrap and go 40 chains past it,
			// in batches of up to the queue size.
			const size = 8
			start := uint16(math.MaxUint16 - 5)
			e := newQueue(t, size, features, start)
			e.d.SetUsedEvent(start) // interrupt at the first chain
			bufs := make([]virtiotest.Buf, size)
			for i := range bufs {
				bufs[i] = e.d.Writable(4)
			}
			seq := 0
			for batch := range 7 {
				n := batch%size + 1
				heads := make([]uint16, n)
				for i := range heads {
					heads[i] = e.d.AddChain(bufs[i])
				}
				e.d.Publish()
				for i := range n {
					c := e.pop(t)
					assert.Equal(t, heads[i], c.Head)
					var v [4]byte
					binary.LittleEndian.PutUint32(v[:], uint32(seq+i))
					_, err := c.Write(v[:])
					require.NoError(t, err)
					require.NoError(t, e.q.AddUsed(c.Head, c.Written()))
				}
				assert.False(t, mustPop(e.q))
				e.q.Publish()
				for i := range n {
					id, l, ok := e.d.GetUsed()
					require.True(t, ok)
					assert.Equal(t, uint32(heads[i]), id)
					assert.Equal(t, uint32(4), l)
					assert.Equal(t, uint32(seq+i), binary.LittleEndian.Uint32(e.d.ReadMem(bufs[i].Addr, 4)))
				}
				seq += n
			}
			assert.Equal(t, start+uint16(seq), e.d.UsedIdx())
			assert.Equal(t, start+uint16(seq), e.q.LastAvailIdx())
			assert.Less(t, e.d.UsedIdx(), start, "the indices wrapped")
		})
	}
}

func TestUsedRingBatchAndOrder(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	var heads []uint16
	for i := range 3 {
		heads = append(heads, e.d.AddChain(e.d.Writable(uint32(10+i))))
	}
	e.d.Publish()
	var chains []*virtio.DescChain
	for range heads {
		chains = append(chains, e.pop(t))
	}
	// Complete them out of order, publishing once.
	for i := len(chains) - 1; i >= 0; i-- {
		require.NoError(t, e.q.AddUsed(chains[i].Head, chains[i].WritableLen()))
	}
	assert.Equal(t, uint16(0), e.d.UsedIdx(), "nothing is visible before Publish")
	assert.Equal(t, uint16(3), e.q.UsedIdx())
	assert.True(t, e.q.Publish())
	assert.Equal(t, uint16(3), e.d.UsedIdx())
	assert.False(t, e.q.Publish(), "nothing new")
	for i := len(heads) - 1; i >= 0; i-- {
		id, n, ok := e.d.GetUsed()
		require.True(t, ok)
		assert.Equal(t, uint32(heads[i]), id)
		assert.Equal(t, uint32(10+i), n)
	}
}

func TestPushMisuse(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	_, err := e.q.Push(0, 0)
	assert.ErrorIs(t, err, virtio.ErrNotInFlight, "nothing was popped")
	e.d.AddChain(e.d.Writable(1))
	e.d.Publish()
	c := e.pop(t)
	_, err = e.q.Push(4, 0)
	assert.ErrorIs(t, err, virtio.ErrDescIndex)
	_, err = e.q.Push(c.Head, 1)
	assert.NoError(t, err)

	var q virtio.Virtqueue
	_, err = q.Pop(c)
	assert.ErrorIs(t, err, virtio.ErrNotReady)
	_, err = q.Push(0, 0)
	assert.ErrorIs(t, err, virtio.ErrNotReady)
	assert.False(t, q.Publish())
	_, err = q.EnableNotifications()
	assert.ErrorIs(t, err, virtio.ErrNotReady)
	q.DisableNotifications()
}

func TestUnpop(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	h1 := e.d.AddChain(e.d.Writable(1))
	h2 := e.d.AddChain(e.d.Writable(2))
	e.d.Publish()
	assert.Equal(t, h1, e.pop(t).Head)
	e.q.Unpop()
	e.q.Unpop() // nothing more to give back: ignored
	assert.Equal(t, h1, e.pop(t).Head)
	assert.Equal(t, h2, e.pop(t).Head)
	assert.False(t, mustPop(e.q))
}

func TestReset(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	e.d.AddChain(e.d.Writable(1))
	e.d.Publish()
	e.pop(t)
	e.q.Reset()
	assert.False(t, e.q.Ready())
	assert.Equal(t, uint16(0), e.q.Size())
	var c virtio.DescChain
	_, err := e.q.Pop(&c)
	assert.ErrorIs(t, err, virtio.ErrNotReady)

	// The driver sets the queue up again (§3.1.1) and the device starts
	// over from index 0.
	d := virtiotest.NewDriver(e.mem, e.cfg, memory.Range{Start: ramStart + ramSize/2, Size: ramSize / 2})
	require.NoError(t, e.q.Enable(e.mem, e.cfg))
	h := d.AddChain(d.Readable([]byte("again")))
	d.Publish()
	c2 := e.pop(t)
	assert.Equal(t, h, c2.Head)
	assert.Equal(t, "again", string(readAll(t, c2)))
}

func TestEnableValidates(t *testing.T) {
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	good, _ := virtiotest.Layout(ramStart, 256, 0)
	var q virtio.Virtqueue
	require.NoError(t, q.Enable(mem, good))
	assert.True(t, q.Ready())
	assert.Equal(t, uint16(256), q.Size())

	biggest, _ := virtiotest.Layout(ramStart, virtio.MaxQueueSize, 0)
	require.NoError(t, q.Enable(mem, biggest), "32768 is the largest valid size and fits in 1 MiB")
	assert.Equal(t, uint16(virtio.MaxQueueSize), q.Size())

	with := func(f func(*virtio.QueueConfig)) virtio.QueueConfig {
		c := good
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  virtio.QueueConfig
		want error
	}{
		{"size 0", with(func(c *virtio.QueueConfig) { c.Size = 0 }), virtio.ErrQueueSize},
		{"size 3", with(func(c *virtio.QueueConfig) { c.Size = 3 }), virtio.ErrQueueSize},
		{"size 100", with(func(c *virtio.QueueConfig) { c.Size = 100 }), virtio.ErrQueueSize},
		{"size 65535", with(func(c *virtio.QueueConfig) { c.Size = math.MaxUint16 }), virtio.ErrQueueSize},
		{"size 65534", with(func(c *virtio.QueueConfig) { c.Size = 0xFFFE }), virtio.ErrQueueSize},
		{"descriptor table on 8 bytes", with(func(c *virtio.QueueConfig) { c.DescTable += 8 }), virtio.ErrMisaligned},
		{"available ring on an odd address", with(func(c *virtio.QueueConfig) { c.AvailRing++ }), virtio.ErrMisaligned},
		{"used ring on 2 bytes", with(func(c *virtio.QueueConfig) { c.UsedRing += 2 }), virtio.ErrMisaligned},
		{"descriptor table below RAM", with(func(c *virtio.QueueConfig) { c.DescTable = 0 }), memory.ErrOutOfRange},
		{"descriptor table across the end of RAM", with(func(c *virtio.QueueConfig) { c.DescTable = ramEnd - 16 }), memory.ErrOutOfRange},
		{"available ring across the end of RAM", with(func(c *virtio.QueueConfig) { c.AvailRing = ramEnd - 8 }), memory.ErrOutOfRange},
		{"used ring across the end of RAM", with(func(c *virtio.QueueConfig) { c.UsedRing = ramEnd - 8 }), memory.ErrOutOfRange},
		{"used ring at the top of the address space", with(func(c *virtio.QueueConfig) { c.UsedRing = math.MaxUint64 - 3 }), memory.ErrOutOfRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q.Reset()
			err := q.Enable(mem, tc.cfg)
			assert.ErrorIs(t, err, tc.want)
			assert.False(t, q.Ready(), "a failed Enable leaves the queue disabled")
		})
	}
	// A part may end at the last byte of RAM. (A used ring, 4-byte aligned
	// and 2 mod 4 bytes long, can only come within 2 bytes of it.)
	for _, at := range []virtio.QueueConfig{
		with(func(c *virtio.QueueConfig) { c.DescTable = ramEnd - virtio.DescTableSize(c.Size) }),
		with(func(c *virtio.QueueConfig) { c.AvailRing = ramEnd - virtio.AvailRingSize(c.Size) }),
		with(func(c *virtio.QueueConfig) { c.UsedRing = ramEnd - virtio.UsedRingSize(c.Size) - 2 }),
	} {
		assert.NoError(t, q.Enable(mem, at))
	}
}

// TestMalformedChains covers every way a driver can break a chain: each
// must give an error, and the error must stick.
func TestMalformedChains(t *testing.T) {
	const size = 8
	indirect := virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC)
	for _, tc := range []struct {
		name     string
		features virtio.Features
		maxBytes uint32
		build    func(d *virtiotest.Driver)
		want     error
	}{
		{"head out of range", 0, 0, func(d *virtiotest.Driver) {
			d.PutAvail(size)
		}, virtio.ErrDescIndex},
		{"next out of range", 0, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			d.SetDesc(0, virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: size})
			d.PutAvail(0)
		}, virtio.ErrDescIndex},
		{"descriptor pointing at itself", 0, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			d.SetDesc(5, virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 5})
			d.PutAvail(5)
		}, virtio.ErrChainTooLong},
		{"loop through the whole table", 0, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			for i := range uint16(size) {
				d.SetDesc(i, virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: (i + 1) % size})
			}
			d.PutAvail(3)
		}, virtio.ErrChainTooLong},
		{"loop of empty descriptors", 0, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			d.SetDesc(1, virtio.Desc{Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 0})
			d.PutAvail(0)
		}, virtio.ErrChainTooLong},
		{"buffer above RAM", 0, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: ramEnd, Len: 1})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"buffer below RAM", 0, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: ramStart - 4, Len: 8})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"buffer across the end of RAM", 0, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: ramEnd - 1, Len: 2, Flags: virtio.VIRTQ_DESC_F_WRITE})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"address plus length overflows", 0, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: math.MaxUint64 - 15, Len: 0x20})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"out-of-RAM buffer later in the chain", 0, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("ok"))
			d.SetDesc(0, virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			d.SetDesc(1, virtio.Desc{Addr: 1 << 40, Len: 1, Flags: virtio.VIRTQ_DESC_F_WRITE})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"readable after writable", 0, 0, func(d *virtiotest.Driver) {
			d.AddChain(d.Writable(4), d.Readable([]byte("late")))
		}, virtio.ErrDescOrder},
		{"readable after an empty writable", 0, 0, func(d *virtiotest.Driver) {
			d.AddChain(d.Writable(0), d.Readable([]byte("late")))
		}, virtio.ErrDescOrder},
		{"chain larger than the queue's limit", 0, 100, func(d *virtiotest.Driver) {
			d.AddChain(d.Readable(make([]byte, 60)), d.Writable(41))
		}, virtio.ErrChainTooLarge},
		{"indirect without VIRTIO_F_INDIRECT_DESC", 0, 0, func(d *virtiotest.Driver) {
			d.AddIndirectChain(d.Readable([]byte("x")))
		}, virtio.ErrIndirect},
		{"indirect with next", indirect, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			table := d.PutTable(virtio.Desc{Addr: b.Addr, Len: b.Len})
			d.SetDesc(0, virtio.Desc{Addr: table, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT | virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			d.SetDesc(1, virtio.Desc{Addr: b.Addr, Len: b.Len})
			d.PutAvail(0)
		}, virtio.ErrIndirect},
		{"indirect table of length 0", indirect, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: d.Alloc(16), Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrIndirect},
		{"indirect table of length 17", indirect, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: d.Alloc(32), Len: 17, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrIndirect},
		{"indirect table of length 8", indirect, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: d.Alloc(16), Len: 8, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrIndirect},
		{"indirect table outside RAM", indirect, 0, func(d *virtiotest.Driver) {
			d.SetDesc(0, virtio.Desc{Addr: ramEnd - virtio.DescSize, Len: 2 * virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"indirect inside an indirect table", indirect, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			inner := d.PutTable(virtio.Desc{Addr: b.Addr, Len: b.Len})
			outer := d.PutTable(virtio.Desc{Addr: inner, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.SetDesc(0, virtio.Desc{Addr: outer, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrIndirect},
		{"two indirect descriptors in a chain", indirect, 0, func(d *virtiotest.Driver) {
			// INDIRECT cannot carry NEXT, so a second table can only be
			// reached by an INDIRECT|NEXT descriptor.
			b := d.Readable([]byte("x"))
			table := d.PutTable(virtio.Desc{Addr: b.Addr, Len: b.Len})
			d.SetDesc(0, virtio.Desc{Addr: table, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT | virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			d.SetDesc(1, virtio.Desc{Addr: table, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrIndirect},
		{"loop inside an indirect table", indirect, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			table := d.PutTable(
				virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1},
				virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 0},
			)
			d.SetDesc(0, virtio.Desc{Addr: table, Len: 2 * virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrChainTooLong},
		{"next outside the indirect table", indirect, 0, func(d *virtiotest.Driver) {
			b := d.Readable([]byte("x"))
			table := d.PutTable(virtio.Desc{Addr: b.Addr, Len: b.Len, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			d.SetDesc(0, virtio.Desc{Addr: table, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrDescIndex},
		{"out-of-RAM buffer in an indirect table", indirect, 0, func(d *virtiotest.Driver) {
			table := d.PutTable(virtio.Desc{Addr: ramEnd, Len: 1, Flags: virtio.VIRTQ_DESC_F_WRITE})
			d.SetDesc(0, virtio.Desc{Addr: table, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, memory.ErrOutOfRange},
		{"readable in an indirect table after a direct writable", indirect, 0, func(d *virtiotest.Driver) {
			w := d.Writable(1)
			b := d.Readable([]byte("x"))
			table := d.PutTable(virtio.Desc{Addr: b.Addr, Len: b.Len})
			d.SetDesc(0, virtio.Desc{Addr: w.Addr, Len: w.Len, Flags: virtio.VIRTQ_DESC_F_WRITE | virtio.VIRTQ_DESC_F_NEXT, Next: 1})
			d.SetDesc(1, virtio.Desc{Addr: table, Len: virtio.DescSize, Flags: virtio.VIRTQ_DESC_F_INDIRECT})
			d.PutAvail(0)
		}, virtio.ErrDescOrder},
		{"indirect chain larger than the queue's limit", indirect, 10, func(d *virtiotest.Driver) {
			d.AddIndirectChain(d.Readable(make([]byte, 6)), d.Writable(5))
		}, virtio.ErrChainTooLarge},
		{"available idx ahead by more than the queue size", 0, 0, func(d *virtiotest.Driver) {
			d.SetAvailIdx(size + 1)
		}, virtio.ErrAvailIdx},
		{"available idx moved backwards", 0, 0, func(d *virtiotest.Driver) {
			d.SetAvailIdx(math.MaxUint16)
		}, virtio.ErrAvailIdx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, _ := virtiotest.NewRAM(ramStart, ramSize)
			cfg, end := virtiotest.Layout(ramStart, size, tc.features)
			cfg.MaxChainBytes = tc.maxBytes
			d := virtiotest.NewDriver(mem, cfg, memory.Range{Start: end, Size: ramEnd - end})
			var q virtio.Virtqueue
			require.NoError(t, q.Enable(mem, cfg))
			tc.build(d)
			if d.AvailIdx() != 0 {
				d.Publish()
			}
			var c virtio.DescChain
			ok, err := q.Pop(&c)
			require.Error(t, err)
			assert.False(t, ok)
			assert.ErrorIs(t, err, tc.want)
			t.Log(err)

			// The error sticks, and nothing else works until a reset.
			_, again := q.Pop(&c)
			assert.Same(t, err, again)
			assert.False(t, q.Ready())
			assert.Equal(t, err, q.Err())
			_, err = q.EnableNotifications()
			assert.Error(t, err)
			_, err = q.Push(0, 0)
			assert.Error(t, err)
			q.Reset()
			assert.NoError(t, q.Err())
		})
	}
}

func TestAvailIdxAtQueueSizeIsFine(t *testing.T) {
	e := newQueue(t, 4, 0, math.MaxUint16-1)
	for range 4 {
		e.d.AddChain(e.d.Readable([]byte("x")))
	}
	e.d.Publish()
	for range 4 {
		e.pop(t)
	}
	assert.False(t, mustPop(e.q))
}

func TestEmptyBuffersAreNotChecked(t *testing.T) {
	// A zero-length buffer carries no data, so its address is never used.
	e := newQueue(t, 4, 0, 0)
	b := e.d.Readable([]byte("x"))
	e.d.SetDesc(0, virtio.Desc{Addr: math.MaxUint64, Len: 0, Flags: virtio.VIRTQ_DESC_F_NEXT, Next: 1})
	e.d.SetDesc(1, virtio.Desc{Addr: b.Addr, Len: b.Len})
	e.d.PutAvail(0)
	e.d.Publish()
	c := e.pop(t)
	assert.Equal(t, "x", string(readAll(t, c)))
}

func TestDescChainBuffersAliasGuestMemory(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	in := e.d.Readable([]byte("abc"))
	out := e.d.Writable(2)
	e.d.AddChain(in, out)
	e.d.Publish()
	c := e.pop(t)
	// No copies: the device sees the guest's later writes and the guest
	// sees the device's.
	e.d.WriteMem(in.Addr, []byte("X"))
	assert.Equal(t, "Xbc", string(c.ReadableBuffers()[0]))
	c.WritableBuffers()[0][1] = 'Z'
	assert.Equal(t, "\x00Z", string(e.d.ReadMem(out.Addr, 2)))
	// Capacity is clipped: appending cannot write past a buffer.
	assert.Equal(t, 3, cap(c.ReadableBuffers()[0]))
}

func TestDescChainReaderWriterHelpers(t *testing.T) {
	e := newQueue(t, 8, 0, 0)
	e.d.AddChain(e.d.Readable([]byte("ab")), e.d.Readable([]byte("cde")), e.d.Writable(2), e.d.Writable(0), e.d.Writable(3))
	e.d.Publish()
	c := e.pop(t)

	p := make([]byte, 3)
	n, err := c.ReadAt(p, 1)
	require.NoError(t, err)
	assert.Equal(t, "bcd", string(p[:n]))
	n, err = c.ReadAt(p, 4)
	assert.ErrorIs(t, err, io.EOF)
	assert.Equal(t, "e", string(p[:n]))
	_, err = c.ReadAt(p, -1)
	assert.Error(t, err)

	var one [1]byte
	_, err = c.Read(one[:])
	require.NoError(t, err)
	assert.Equal(t, "a", string(one[:]))
	assert.Equal(t, "bcde", string(readAll(t, c)))

	n, err = c.WriteAt([]byte("XYZ"), 1)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	n, err = c.WriteAt([]byte("!!"), 4)
	assert.ErrorIs(t, err, io.ErrShortWrite)
	assert.Equal(t, 1, n)
	_, err = c.WriteAt([]byte("!"), -1)
	assert.Error(t, err)
	assert.Equal(t, uint32(0), c.Written(), "WriteAt does not count")
	w := c.WritableBuffers()
	assert.Equal(t, "\x00X", string(w[0]))
	assert.Equal(t, "YZ!", string(w[1]))

	_, err = c.Write([]byte("12345"))
	require.NoError(t, err)
	assert.Equal(t, uint32(5), c.Written())
	assert.Equal(t, "12", string(w[0]))
	assert.Equal(t, "345", string(w[1]))
}

func TestSliceBuffers(t *testing.T) {
	bufs := [][]byte{[]byte("ab"), []byte("cde"), {}, []byte("fgh")}
	join := func(b [][]byte) string { return string(bytes.Join(b, []byte("|"))) }
	assert.Equal(t, "ab|cde|fgh", join(virtio.SliceBuffers(nil, bufs, 0, math.MaxUint64)))
	assert.Equal(t, "b|cd", join(virtio.SliceBuffers(nil, bufs, 1, 3)))
	assert.Equal(t, "e|fg", join(virtio.SliceBuffers(nil, bufs, 4, 3)))
	assert.Equal(t, "h", join(virtio.SliceBuffers(nil, bufs, 7, 10)))
	assert.Empty(t, virtio.SliceBuffers(nil, bufs, 8, 10))
	assert.Empty(t, virtio.SliceBuffers(nil, bufs, 2, 0))
	// Everything but the last byte, then the last byte: a block request's
	// data and status.
	assert.Equal(t, "ab|cde|fg", join(virtio.SliceBuffers(nil, bufs, 0, 7)))
	dst := make([][]byte, 0, 4)
	out := virtio.SliceBuffers(dst, bufs, 7, 1)
	out[0][0] = 'H'
	assert.Equal(t, "fgH", string(bufs[3]), "sub-slices alias the buffers")
}

func TestDescChainReuseKeepsNoStaleBuffers(t *testing.T) {
	e := newQueue(t, 4, 0, 0)
	var c virtio.DescChain
	e.d.AddChain(e.d.Readable([]byte("one")), e.d.Writable(1))
	e.d.AddChain(e.d.Writable(2))
	e.d.Publish()
	ok, err := e.q.Pop(&c)
	require.True(t, ok)
	require.NoError(t, err)
	_, _ = c.Read(make([]byte, 2))
	ok, err = e.q.Pop(&c)
	require.True(t, ok)
	require.NoError(t, err)
	assert.Empty(t, c.ReadableBuffers())
	assert.Equal(t, uint32(0), c.ReadableLen())
	assert.Len(t, c.WritableBuffers(), 1)
	assert.Equal(t, uint32(2), c.WritableLen())
	assert.Equal(t, uint32(0), c.Written())
}

func TestDescEncodeDecode(t *testing.T) {
	d := virtio.Desc{Addr: 0x0102030405060708, Len: 0x0A0B0C0D, Flags: virtio.VIRTQ_DESC_F_NEXT | virtio.VIRTQ_DESC_F_WRITE, Next: 0x1234}
	var b [virtio.DescSize]byte
	d.Encode(b[:])
	assert.Equal(t, []byte{8, 7, 6, 5, 4, 3, 2, 1, 0xD, 0xC, 0xB, 0xA, 3, 0, 0x34, 0x12}, b[:], "struct virtq_desc is little-endian (§2.7.5)")
	assert.Equal(t, d, virtio.DecodeDesc(b[:]))
}

func TestRingSizes(t *testing.T) {
	// The table in §2.7.
	assert.Equal(t, uint64(16*256), virtio.DescTableSize(256))
	assert.Equal(t, uint64(6+2*256), virtio.AvailRingSize(256))
	assert.Equal(t, uint64(6+8*256), virtio.UsedRingSize(256))
	assert.Equal(t, uint64(1<<32-1), uint64(virtio.MaxChainBytes))
}

func TestFeatures(t *testing.T) {
	f := virtio.Features(0).With(virtio.VIRTIO_F_VERSION_1).With(virtio.VIRTIO_F_EVENT_IDX).With(64)
	assert.True(t, f.Has(virtio.VIRTIO_F_VERSION_1))
	assert.True(t, f.Has(virtio.VIRTIO_F_EVENT_IDX))
	assert.False(t, f.Has(virtio.VIRTIO_F_INDIRECT_DESC))
	assert.False(t, f.Has(64))
	assert.Equal(t, virtio.Features(1<<32|1<<29), f)
}

func TestErrorsAreDistinct(t *testing.T) {
	all := []error{virtio.ErrQueueSize, virtio.ErrMisaligned, virtio.ErrNotReady, virtio.ErrAvailIdx,
		virtio.ErrDescIndex, virtio.ErrChainTooLong, virtio.ErrChainTooLarge, virtio.ErrDescOrder,
		virtio.ErrIndirect, virtio.ErrNotInFlight}
	for i, a := range all {
		for j, b := range all {
			assert.Equal(t, i == j, errors.Is(a, b))
		}
	}
}

package virtio_test

import (
	"encoding/binary"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// inWindow is the meaning of vring_need_event spelled out: whether event is
// one of the indices old, old+1, ..., newIdx-1 (modulo 2^16).
func inWindow(event, newIdx, old uint16) bool {
	for i := old; i != newIdx; i++ {
		if i == event {
			return true
		}
	}
	return false
}

func TestNeedEventMatchesTheSpecFormula(t *testing.T) {
	for _, old := range []uint16{0, 1, 100, 32767, 32768, 65530, 65535} {
		for delta := range uint16(70) {
			newIdx := old + delta
			for off := -5; off < 80; off++ {
				event := old + uint16(off)
				want := inWindow(event, newIdx, old)
				require.Equal(t, want, virtio.NeedEvent(event, newIdx, old), "event %d new %d old %d", event, newIdx, old)
			}
		}
	}
	// The note in §2.7.7.2: with used_event 0 the device notifies after
	// the first buffer, then again after the 65536th.
	assert.True(t, virtio.NeedEvent(0, 1, 0))
	assert.False(t, virtio.NeedEvent(0, 2, 1))
	assert.False(t, virtio.NeedEvent(0, 0, math.MaxUint16))
	assert.True(t, virtio.NeedEvent(0, 1, math.MaxUint16))
	// The whole ring of 2^16 is never crossed in one step.
	assert.False(t, virtio.NeedEvent(7, 9, 9))
}

// completeOne makes one chain available, pops it and pushes it, and returns
// whether the device decided to interrupt the driver.
func (e *queueEnv) completeOne(t *testing.T) bool {
	t.Helper()
	e.d.AddChain(e.d.Writable(1))
	e.d.Publish()
	c := e.pop(t)
	interrupt, err := e.q.Push(c.Head, 1)
	require.NoError(t, err)
	_, _, ok := e.d.GetUsed()
	require.True(t, ok)
	return interrupt
}

func TestEventIdxInterruptsWhenUsedIdxPassesUsedEvent(t *testing.T) {
	features := virtio.Features(0).With(virtio.VIRTIO_F_EVENT_IDX)
	for _, start := range []uint16{0, 1000, math.MaxUint16 - 3, math.MaxUint16} {
		for ahead := range uint16(5) {
			e := newQueue(t, 8, features, start)
			event := start + ahead
			e.d.SetUsedEvent(event)
			// VIRTQ_AVAIL_F_NO_INTERRUPT must be ignored (§2.7.7.2).
			e.d.SetAvailFlags(virtio.VIRTQ_AVAIL_F_NO_INTERRUPT)
			for i := range uint16(6) {
				placedAt := start + i
				assert.Equal(t, placedAt == event, e.completeOne(t),
					"start %d used_event %d: chain placed at used idx %d", start, event, placedAt)
			}
		}
	}
}

func TestEventIdxBatchInterrupt(t *testing.T) {
	features := virtio.Features(0).With(virtio.VIRTIO_F_EVENT_IDX)
	for _, start := range []uint16{0, math.MaxUint16 - 1} {
		for ahead := range uint16(7) {
			e := newQueue(t, 8, features, start)
			e.d.SetUsedEvent(start + ahead)
			for range 4 {
				e.d.AddChain(e.d.Writable(1))
			}
			e.d.Publish()
			for range 4 {
				require.NoError(t, e.q.AddUsed(e.pop(t).Head, 0))
			}
			// One Publish for chains placed at start..start+3.
			assert.Equal(t, ahead < 4, e.q.Publish(), "start %d used_event %+d", start, ahead)
		}
	}
}

func TestNoInterruptFlag(t *testing.T) {
	e := newQueue(t, 8, 0, 0)
	e.d.SetUsedEvent(12345) // ignored without VIRTIO_F_EVENT_IDX (§2.7.7.2)
	assert.True(t, e.completeOne(t), "flags 0: the device MUST notify")
	assert.True(t, e.completeOne(t))
	e.d.DisableInterrupts()
	assert.False(t, e.completeOne(t), "VIRTQ_AVAIL_F_NO_INTERRUPT: the device SHOULD NOT notify")
	assert.False(t, e.completeOne(t))
	assert.False(t, e.d.EnableInterrupts(), "nothing unseen in the used ring")
	assert.True(t, e.completeOne(t))
}

func TestNoNotifyFlag(t *testing.T) {
	e := newQueue(t, 8, 0, 0)
	e.d.AddChain(e.d.Writable(1))
	assert.True(t, e.d.Publish(), "used->flags starts at 0: the driver must notify")
	c := e.pop(t)

	e.q.DisableNotifications()
	assert.Equal(t, uint16(virtio.VIRTQ_USED_F_NO_NOTIFY), e.d.UsedFlags())
	_, err := e.q.Push(c.Head, 1)
	require.NoError(t, err)
	assert.Equal(t, uint16(virtio.VIRTQ_USED_F_NO_NOTIFY), e.d.UsedFlags(), "publishing keeps the flag")
	assert.Equal(t, uint16(1), e.d.UsedIdx())
	e.d.AddChain(e.d.Writable(1))
	assert.False(t, e.d.Publish(), "the device asked for no notifications")

	// Re-enabling finds the chain that came while notifications were off:
	// a device that went to sleep now would never be woken for it.
	more, err := e.q.EnableNotifications()
	require.NoError(t, err)
	assert.True(t, more)
	assert.Equal(t, uint16(0), e.d.UsedFlags())
	assert.Equal(t, uint16(1), e.d.UsedIdx(), "the flags store leaves used->idx alone")
	e.pop(t)
	more, err = e.q.EnableNotifications()
	require.NoError(t, err)
	assert.False(t, more)
	e.d.AddChain(e.d.Writable(1))
	assert.True(t, e.d.Publish())
	assert.Equal(t, uint16(0), e.d.AvailEvent(), "avail_event is not used without VIRTIO_F_EVENT_IDX")
}

func TestAvailEvent(t *testing.T) {
	features := virtio.Features(0).With(virtio.VIRTIO_F_EVENT_IDX)
	for _, start := range []uint16{0, math.MaxUint16} {
		e := newQueue(t, 8, features, start)
		assert.False(t, mustPop(e.q))
		assert.Equal(t, start, e.d.AvailEvent(), "an empty Pop asks to be notified of the next chain")

		e.d.AddChain(e.d.Writable(1))
		assert.True(t, e.d.Publish(), "the driver wrote entry avail_event")
		e.pop(t)
		assert.False(t, mustPop(e.q))
		assert.Equal(t, start+1, e.d.AvailEvent())

		e.d.AddChain(e.d.Writable(1))
		e.d.AddChain(e.d.Writable(1))
		assert.True(t, e.d.Publish())

		// Busy: no notifications while the device works through the ring.
		e.q.DisableNotifications()
		e.pop(t)
		e.d.AddChain(e.d.Writable(1))
		assert.False(t, e.d.Publish(), "avail_event stays behind while notifications are disabled")
		e.pop(t)
		e.pop(t)
		assert.False(t, mustPop(e.q))
		assert.Equal(t, start+1, e.d.AvailEvent(), "an empty Pop does not re-arm while disabled")

		// The chain added between the last Pop and re-enabling is found.
		e.d.AddChain(e.d.Writable(1))
		assert.False(t, e.d.Publish())
		more, err := e.q.EnableNotifications()
		require.NoError(t, err)
		assert.True(t, more)
		e.pop(t)
		more, err = e.q.EnableNotifications()
		require.NoError(t, err)
		assert.False(t, more)
		assert.Equal(t, start+5, e.d.AvailEvent())
		e.d.AddChain(e.d.Writable(1))
		assert.True(t, e.d.Publish())

		assert.Equal(t, uint16(0), e.d.UsedFlags(), "with VIRTIO_F_EVENT_IDX the device MUST set flags to 0 (§2.7.10.2)")
	}
}

// TestConcurrentDriverAndDevice runs a driver and a device in two
// goroutines, as a guest's vCPU and a device's worker run. The driver sleeps
// until interrupted and the device until notified, each re-checking after
// re-enabling notifications, so a lost wakeup in either direction hangs the
// test. Run it with -race: every access to shared guest memory is ordered by
// the atomic ring index accesses alone.
func TestConcurrentDriverAndDevice(t *testing.T) {
	total := 20000
	if testing.Short() {
		total = 2000
	}
	const (
		size    = 16
		msgSize = 8
		timeout = 10 * time.Second
	)
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			// Start near the wrap of the 16-bit indices.
			e := newQueue(t, size, features, math.MaxUint16-100)
			kick := make(chan struct{}, 1) // available buffer notifications
			irq := make(chan struct{}, 1)  // used buffer notifications
			done := make(chan struct{})
			signal := func(ch chan struct{}) {
				select {
				case ch <- struct{}{}:
				default:
				}
			}

			var wg sync.WaitGroup
			wg.Go(func() { // the device
				var c virtio.DescChain
				batch := 0
				for {
					e.q.DisableNotifications()
					interrupt := false
					for {
						ok, err := e.q.Pop(&c)
						if !assert.NoError(t, err) {
							return
						}
						if !ok {
							break
						}
						var in [msgSize]byte
						if _, err := io.ReadFull(&c, in[:]); !assert.NoError(t, err) {
							return
						}
						var out [msgSize]byte
						binary.LittleEndian.PutUint64(out[:], 3*binary.LittleEndian.Uint64(in[:])+1)
						if _, err := c.Write(out[:]); !assert.NoError(t, err) {
							return
						}
						// Publish some chains one by one, some in batches.
						if !assert.NoError(t, e.q.AddUsed(c.Head, c.Written())) {
							return
						}
						if batch++; batch%3 != 0 {
							interrupt = e.q.Publish() || interrupt
						}
					}
					if e.q.Publish() || interrupt {
						signal(irq)
					}
					more, err := e.q.EnableNotifications()
					if !assert.NoError(t, err) {
						return
					}
					if more {
						continue
					}
					select {
					case <-kick:
					case <-done:
						return
					case <-time.After(timeout):
						t.Error("device: no notification: lost wakeup")
						return
					}
				}
			})

			// The driver: up to size/2 two-descriptor chains in flight,
			// each with its own pair of buffers.
			type pair struct {
				in, out uint64
				seq     uint64
			}
			var free []*pair
			for range size / 2 {
				free = append(free, &pair{in: e.d.Alloc(msgSize), out: e.d.Alloc(msgSize)})
			}
			inFlight := map[uint16]*pair{}
			sent, received := 0, 0
			for received < total {
				added := false
				for sent < total && len(free) > 0 {
					p := free[len(free)-1]
					free = free[:len(free)-1]
					p.seq = uint64(sent)
					var in [msgSize]byte
					binary.LittleEndian.PutUint64(in[:], p.seq)
					e.d.WriteMem(p.in, in[:])
					head := e.d.AddChain(
						virtiotest.Buf{Addr: p.in, Len: msgSize},
						virtiotest.Buf{Addr: p.out, Len: msgSize, Write: true},
					)
					inFlight[head] = p
					sent++
					added = true
				}
				if added && e.d.Publish() {
					signal(kick)
				}
				got := false
				for {
					id, n, ok := e.d.GetUsed()
					if !ok {
						break
					}
					p := inFlight[uint16(id)]
					require.NotNil(t, p, "used id %d was not in flight", id)
					delete(inFlight, uint16(id))
					require.Equal(t, uint32(msgSize), n)
					require.Equal(t, 3*p.seq+1, binary.LittleEndian.Uint64(e.d.ReadMem(p.out, msgSize)))
					free = append(free, p)
					received++
					got = true
				}
				if got || received == total || (sent < total && len(free) > 0) {
					continue
				}
				// Nothing to do: sleep until interrupted, unless used
				// chains arrived while re-enabling interrupts.
				if e.d.EnableInterrupts() {
					continue
				}
				select {
				case <-irq:
				case <-time.After(timeout):
					close(done)
					wg.Wait()
					t.Fatalf("driver: no interrupt after %d of %d chains: lost wakeup", received, total)
				}
				e.d.DisableInterrupts()
			}
			close(done)
			wg.Wait()
			assert.Equal(t, uint16(math.MaxUint16-100)+uint16(total), e.d.UsedIdx())
		})
	}
}

package net

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govmm/govmm/virtio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRXHoldStates(t *testing.T) {
	var h rxHold
	assert.False(t, h.hold(), "no batch: the receive worker interrupts itself")
	assert.False(t, h.release(false), "nothing held")

	h.begin()
	assert.True(t, h.hold(), "a batch runs: it takes the interrupt")
	assert.True(t, h.hold(), "a second one joins the first")
	assert.True(t, h.release(true), "one interrupt for both")
	assert.False(t, h.release(true), "and only one")
	assert.True(t, h.hold(), "the batch goes on holding")
	assert.True(t, h.release(false))
	assert.False(t, h.hold(), "the batch has ended")
	assert.False(t, h.release(false))
}

// TestRXHoldLosesNoInterrupt races a receive worker that publishes against
// a transmit worker that runs batches: after the last publish, an
// interrupt must have been sent that covers it, by one worker or the
// other.
func TestRXHoldLosesNoInterrupt(t *testing.T) {
	const publishes = 20000
	var (
		h         rxHold
		published atomic.Int64 // publishes made
		covered   atomic.Int64 // publishes an interrupt was sent after
		rxDone    atomic.Bool
		orphaned  atomic.Int64 // times the state was pending without a batch
		wg        sync.WaitGroup
	)
	send := func() {
		// The interrupt covers every publish made before it.
		p := published.Load()
		for {
			c := covered.Load()
			if p <= c || covered.CompareAndSwap(c, p) {
				return
			}
		}
	}
	wg.Add(2)
	go func() { // the receive worker
		defer wg.Done()
		defer rxDone.Store(true)
		for range publishes {
			published.Add(1)
			if !h.hold() {
				send()
			}
		}
	}()
	go func() { // the transmit worker
		defer wg.Done()
		for i := 0; !rxDone.Load(); i++ {
			h.begin()
			if i%3 == 0 && h.release(true) {
				send()
			}
			if h.release(false) {
				send()
			}
			// A notification held with no batch to send it would wait
			// for the next batch, which may never come.
			if h.state.Load() == holdRXPending {
				orphaned.Add(1)
			}
		}
	}()
	wg.Wait()
	assert.Equal(t, int64(publishes), covered.Load(), "publishes left without an interrupt")
	assert.Zero(t, orphaned.Load(), "notifications held after their batch ended")
	assert.NotEqual(t, holdRXPending, h.state.Load())
}

// rxArrivesDuringWrite makes the fake tap receive a packet while the
// transmit worker writes packet number at: the hook waits until the
// receive worker has published it and had time to interrupt, then calls
// check with the write's number. The hook runs on the transmit worker,
// where a test may report a failure but not stop (FailNow belongs to the
// test's own goroutine), so it asserts rather than requires.
func (h *harness) rxArrivesDuringWrite(at int, check func(n int)) {
	h.be.setOnWrite(func(n int) {
		if n == at {
			h.be.push(packet(Header{}, frame(60, 1)))
			assert.Eventually(h.t, func() bool { return h.rxd.UsedIdx() == 1 }, waitFor, time.Millisecond,
				"the packet that came in during write %d was not published", n)
			time.Sleep(20 * time.Millisecond)
		}
		check(n)
	})
}

func TestRXInterruptWaitsForTheTransmitInterrupt(t *testing.T) {
	// An ACK that comes in while the guest's packets are written is
	// delivered at once, but its interrupt goes with the next transmit
	// interrupt, which the driver asks for at the first completion here.
	h := newHarness(t, allFeatures())
	h.activate()
	h.postRX(make4K(20)...)
	var during, atNext, txAtNext atomic.Int64
	h.rxArrivesDuringWrite(1, func(n int) {
		switch n {
		case 1:
			during.Store(h.irqs[receiveq1].Load())
		case 2:
			atNext.Store(h.irqs[receiveq1].Load())
			txAtNext.Store(h.irqs[transmitq1].Load())
		}
	})
	for i := range 3 {
		h.addTX(packet(Header{}, frame(200, byte(i))))
	}
	h.kickTX()
	h.waitUsed(h.txd, 3)
	assert.Zero(t, during.Load(), "receive interrupt sent while the packet was written")
	assert.Equal(t, int64(1), txAtNext.Load(), "transmit interrupts after the first packet")
	assert.Equal(t, int64(1), atNext.Load(), "receive interrupts with the transmit interrupt")
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, int64(1), h.irqs[receiveq1].Load(), "one receive interrupt in all")
	_, got := h.takeRXPacket()
	assert.Equal(t, frame(60, 1), got)
	h.noFail()
}

// sendThreeWithAnACK has the driver send three packets while an ACK comes
// in during the first one's write, and waits until all three are sent.
func (h *harness) sendThreeWithAnACK() {
	h.t.Helper()
	h.postRX(make4K(20)...)
	h.rxArrivesDuringWrite(1, func(int) {})
	for i := range 3 {
		h.addTX(packet(Header{}, frame(200, byte(i))))
	}
	h.kickTX()
	h.waitUsed(h.txd, 3)
}

// With both queues on one line, as Device.ShareQueueInterrupt asks, the
// transmit interrupt is the held receive notification too: no receive
// interrupt goes out, and the ACK was in the used ring before the transmit
// interrupt, so the driver finds it.
func TestTransmitInterruptStandsForHeldRXOnASharedLine(t *testing.T) {
	h := newHarness(t, allFeatures())
	h.lines = &[numQueues]uint32{5, 5}
	var rxUsedAtTXIRQ atomic.Int64
	rxUsedAtTXIRQ.Store(-1)
	h.onIRQ = func(q int) {
		if q == transmitq1 && h.irqs[transmitq1].Load() == 0 {
			rxUsedAtTXIRQ.Store(int64(h.rxd.UsedIdx()))
		}
	}
	h.activate()
	h.sendThreeWithAnACK()
	assert.Equal(t, int64(1), h.irqs[transmitq1].Load(), "transmit interrupts after the first packet")
	assert.Equal(t, int64(1), rxUsedAtTXIRQ.Load(), "the ACK published before the transmit interrupt")
	time.Sleep(20 * time.Millisecond)
	assert.Zero(t, h.irqs[receiveq1].Load(), "receive interrupts beside the shared one")
	_, got := h.takeRXPacket()
	assert.Equal(t, frame(60, 1), got)

	// On lines of their own the receive interrupt follows the transmit
	// one, as without lines (TestRXInterruptWaitsForTheTransmitInterrupt).
	h = newHarness(t, allFeatures())
	h.lines = &[numQueues]uint32{5, 6}
	h.activate()
	h.sendThreeWithAnACK()
	require.Eventually(t, func() bool { return h.irqs[receiveq1].Load() == 1 }, waitFor, time.Millisecond)
	h.noFail()
}

func TestRXInterruptWaitsAtMostMaxHeldPackets(t *testing.T) {
	// The driver wants no transmit interrupt in this batch, so the held
	// receive interrupt goes after maxHeldPackets packets, not at the end
	// of a long batch; and without a batch running it goes at once.
	for _, tc := range suppressionModes() {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.features)
			h.activate()
			h.postRX(make4K(20)...)
			h.txd.DisableInterrupts()
			if tc.features.Has(virtio.VIRTIO_F_EVENT_IDX) {
				h.txd.SetUsedEvent(0x8000) // far past this batch
			}
			var during, before, after atomic.Int64
			h.rxArrivesDuringWrite(1, func(n int) {
				switch n {
				case 1:
					during.Store(h.irqs[receiveq1].Load())
				case maxHeldPackets:
					before.Store(h.irqs[receiveq1].Load())
				case maxHeldPackets + 1:
					after.Store(h.irqs[receiveq1].Load())
				}
			})
			const n = 3 * maxHeldPackets
			for i := range n {
				h.addTX(packet(Header{}, frame(200, byte(i))))
			}
			h.kickTX()
			h.waitUsed(h.txd, n)
			assert.Zero(t, h.irqs[transmitq1].Load(), "transmit interrupts the driver did not ask for")
			assert.Zero(t, during.Load())
			assert.Zero(t, before.Load())
			assert.Equal(t, int64(1), after.Load(), "receive interrupt held past maxHeldPackets packets")
			time.Sleep(20 * time.Millisecond)
			assert.Equal(t, int64(1), h.irqs[receiveq1].Load())

			// No batch: a packet's interrupt goes at once.
			h.be.setOnWrite(nil)
			_, _ = h.takeRXPacket()
			h.rxd.EnableInterrupts()
			h.be.push(packet(Header{}, frame(60, 2)))
			require.Eventually(t, func() bool { return h.irqs[receiveq1].Load() == 2 }, waitFor, time.Millisecond)
			h.noFail()
		})
	}
}

package virtio_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/virtio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deviceQueue wraps a queueEnv's virtqueue as a transport would hand it to
// a device: with a Kick eventfd and an Interrupt that counts, and that
// runs onInterrupt (if set) from inside Drain.
type deviceQueue struct {
	*queueEnv
	q           *virtio.Queue
	interrupts  atomic.Int32
	onInterrupt func()
}

func newDeviceQueue(t *testing.T, size uint16, features virtio.Features) *deviceQueue {
	t.Helper()
	e := newQueue(t, size, features, 0)
	kick, err := eventfd.New()
	require.NoError(t, err)
	t.Cleanup(func() { kick.Close() })
	dq := &deviceQueue{queueEnv: e}
	dq.q = &virtio.Queue{Index: 0, Virtqueue: e.q, Kick: kick, Interrupt: func() {
		dq.interrupts.Add(1)
		if dq.onInterrupt != nil {
			dq.onInterrupt()
		}
	}}
	return dq
}

// recordingServe serves a chain by recording its head and writing its
// readable length as one byte, the length it returns.
func recordingServe(heads *[]uint16) virtio.ServeFunc {
	return func(c *virtio.DescChain) (uint32, error) {
		*heads = append(*heads, c.Head)
		_, err := c.Write([]byte{byte(c.ReadableLen())})
		return c.Written(), err
	}
}

func TestDrainServesEveryChainAndInterruptsOnce(t *testing.T) {
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			dq := newDeviceQueue(t, 8, features)
			var want []uint16
			for i := range 3 {
				want = append(want, dq.d.AddChain(dq.d.Readable(make([]byte, i+1)), dq.d.Writable(4)))
			}
			dq.d.Publish()

			var heads []uint16
			var c virtio.DescChain
			require.NoError(t, virtio.Drain(dq.q, &c, recordingServe(&heads)))

			assert.Equal(t, want, heads)
			assert.EqualValues(t, 1, dq.interrupts.Load(), "one interrupt for the batch")
			require.EqualValues(t, 3, dq.d.UsedIdx())
			for i := range 3 {
				id, n, ok := dq.d.GetUsed()
				require.True(t, ok)
				assert.EqualValues(t, want[i], id)
				assert.EqualValues(t, 1, n, "the written length serve returned")
			}
			// Drain returns with notifications enabled, so the
			// driver's next chain produces a kick.
			dq.d.AddChain(dq.d.Writable(1))
			assert.True(t, dq.d.Publish(), "driver must notify after Drain")
		})
	}
}

// The driver sees each chain come back while the device is still serving
// the next ones (Linux's virtio-net reclaims transmit buffers that way),
// and the batch still ends in a single interrupt.
func TestDrainPublishesEachCompletionAtOnce(t *testing.T) {
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			dq := newDeviceQueue(t, 8, features)
			for range 4 {
				dq.d.AddChain(dq.d.Writable(4))
			}
			dq.d.Publish()
			var seen []uint16 // the used idx the driver sees as each chain is served
			var c virtio.DescChain
			require.NoError(t, virtio.Drain(dq.q, &c, func(c *virtio.DescChain) (uint32, error) {
				seen = append(seen, dq.d.UsedIdx())
				return 0, nil
			}))
			assert.Equal(t, []uint16{0, 1, 2, 3}, seen, "the chains served before are already used")
			assert.EqualValues(t, 4, dq.d.UsedIdx())
			assert.EqualValues(t, 1, dq.interrupts.Load(), "one interrupt for the batch")
		})
	}
}

// queuedWithUsedEvent1 is a queue of 8 whose driver has made n writable
// chains available and set used_event to 1.
func queuedWithUsedEvent1(t *testing.T, features virtio.Features, n int) *deviceQueue {
	t.Helper()
	dq := newDeviceQueue(t, 8, features)
	dq.d.SetUsedEvent(1)
	for range n {
		dq.d.AddChain(dq.d.Writable(4))
	}
	dq.d.Publish()
	return dq
}

// With VIRTIO_F_EVENT_IDX the interrupt goes the moment the completion the
// driver asked for (used_event) is published, not at the end of the batch;
// with the flags, the batch ends in one interrupt.
func TestDrainInterruptTiming(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features virtio.Features
		// interrupts the driver has seen as each of the 4 chains is
		// served
		want []int32
	}{
		// used_event 1: interrupt once used->idx passes 1, i.e. right
		// after the second chain, before the third is served.
		{"event-idx", virtio.Features(0).With(virtio.VIRTIO_F_EVENT_IDX), []int32{0, 0, 1, 1}},
		{"flags", 0, []int32{0, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dq := queuedWithUsedEvent1(t, tc.features, 4)
			var seen []int32
			var c virtio.DescChain
			require.NoError(t, virtio.Drain(dq.q, &c, func(*virtio.DescChain) (uint32, error) {
				seen = append(seen, dq.interrupts.Load())
				return 0, nil
			}))
			assert.Equal(t, tc.want, seen)
			assert.EqualValues(t, 1, dq.interrupts.Load(), "one interrupt in all")
		})
	}
}

// DrainNotifying calls its hook wherever Drain would interrupt, and
// leaves the interrupt to it.
func TestDrainNotifyingHandsEachInterruptToTheHook(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features virtio.Features
		want     []int // chains served at each call of the hook
	}{
		// used_event 1, then 3 once the driver has seen the first:
		// the hook runs twice in the batch, after chains 2 and 4.
		{"event-idx", virtio.Features(0).With(virtio.VIRTIO_F_EVENT_IDX), []int{2, 4}},
		// Once, at the end of the batch.
		{"flags", 0, []int{5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dq := queuedWithUsedEvent1(t, tc.features, 5)
			var hooked []int
			served := 0
			var c virtio.DescChain
			require.NoError(t, virtio.DrainNotifying(dq.q, &c, func(*virtio.DescChain) (uint32, error) {
				served++
				if len(hooked) == 1 {
					dq.d.SetUsedEvent(3)
				}
				return 0, nil
			}, func() { hooked = append(hooked, served) }))
			assert.Equal(t, tc.want, hooked)
			assert.Zero(t, dq.interrupts.Load(), "the hook sends the interrupt, not Drain")
		})
	}
}

func TestQueueSharesInterrupt(t *testing.T) {
	line := func(l uint32) func() uint32 { return func() uint32 { return l } }
	a := &virtio.Queue{InterruptLine: line(1)}
	b := &virtio.Queue{InterruptLine: line(1)}
	c := &virtio.Queue{InterruptLine: line(2)}
	unknown := &virtio.Queue{}
	assert.True(t, a.SharesInterrupt(b))
	assert.False(t, a.SharesInterrupt(c))
	assert.False(t, a.SharesInterrupt(unknown), "a transport that cannot tell")
	assert.False(t, unknown.SharesInterrupt(unknown))
	assert.False(t, a.SharesInterrupt(nil), "a queue the driver did not enable")
}

func TestDrainEmptyQueue(t *testing.T) {
	dq := newDeviceQueue(t, 4, 0)
	var c virtio.DescChain
	called := false
	require.NoError(t, virtio.Drain(dq.q, &c, func(*virtio.DescChain) (uint32, error) {
		called = true
		return 0, nil
	}))
	assert.False(t, called)
	assert.Zero(t, dq.interrupts.Load(), "nothing used, no interrupt")
}

// A chain the driver adds after the device last looked at the ring but
// before it re-enabled notifications gets no kick (the driver saw them
// disabled): Drain must find it itself.
func TestDrainRechecksAfterEnablingNotifications(t *testing.T) {
	for name, features := range bothWays {
		t.Run(name, func(t *testing.T) {
			dq := newDeviceQueue(t, 8, features)
			dq.d.AddChain(dq.d.Writable(4))
			dq.d.Publish()
			added := false
			// Interrupt runs between the batch's Publish and
			// EnableNotifications: the window in question.
			dq.onInterrupt = func() {
				if !added {
					added = true
					// The driver takes the used chain, asks for the
					// next interrupt and adds a chain.
					_, _, ok := dq.d.GetUsed()
					require.True(t, ok)
					dq.d.EnableInterrupts()
					dq.d.AddChain(dq.d.Writable(4))
					dq.d.Publish()
				}
			}
			var heads []uint16
			var c virtio.DescChain
			require.NoError(t, virtio.Drain(dq.q, &c, recordingServe(&heads)))
			assert.Len(t, heads, 2, "the late chain is served too")
			assert.EqualValues(t, 2, dq.d.UsedIdx())
			assert.EqualValues(t, 2, dq.interrupts.Load())
		})
	}
}

func TestDrainHonoursInterruptSuppression(t *testing.T) {
	dq := newDeviceQueue(t, 4, 0)
	dq.d.DisableInterrupts()
	dq.d.AddChain(dq.d.Writable(4))
	dq.d.Publish()
	var heads []uint16
	var c virtio.DescChain
	require.NoError(t, virtio.Drain(dq.q, &c, recordingServe(&heads)))
	assert.Len(t, heads, 1)
	assert.Zero(t, dq.interrupts.Load(), "VIRTQ_AVAIL_F_NO_INTERRUPT")
}

func TestDrainServeError(t *testing.T) {
	dq := newDeviceQueue(t, 4, 0)
	dq.d.AddChain(dq.d.Writable(4))
	dq.d.AddChain(dq.d.Writable(4))
	dq.d.Publish()
	boom := errors.New("boom")
	calls := 0
	var c virtio.DescChain
	err := virtio.Drain(dq.q, &c, func(*virtio.DescChain) (uint32, error) {
		calls++
		return 0, boom
	})
	assert.ErrorIs(t, err, boom)
	assert.Equal(t, 1, calls, "Drain stops at the first error")
	assert.Zero(t, dq.d.UsedIdx(), "the failed chain is not returned")
}

func TestDrainQueueError(t *testing.T) {
	dq := newDeviceQueue(t, 4, 0)
	dq.d.PutAvail(7) // a head past the descriptor table
	dq.d.Publish()
	var c virtio.DescChain
	err := virtio.Drain(dq.q, &c, func(*virtio.DescChain) (uint32, error) {
		t.Fatal("serve called for a broken chain")
		return 0, nil
	})
	assert.ErrorIs(t, err, virtio.ErrDescIndex)
}

// waitClosed waits for ch to be closed, failing the test after a while.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// goDone runs f on a goroutine and returns a channel closed when it
// returns.
func goDone(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	return done
}

func newKickQueue(t *testing.T) *virtio.Queue {
	t.Helper()
	kick, err := eventfd.New()
	require.NoError(t, err)
	t.Cleanup(func() { kick.Close() })
	return &virtio.Queue{Kick: kick}
}

func TestStartWorkerRunsAtOnceAndOnEveryKick(t *testing.T) {
	q := newKickQueue(t)
	calls := make(chan struct{}, 10)
	w := virtio.StartWorker(q, func() error {
		calls <- struct{}{}
		return nil
	}, func(err error) { t.Errorf("fail(%v)", err) })

	// Once without a kick: buffers may be waiting from before.
	waitRecv(t, calls)
	for range 3 {
		require.NoError(t, q.Kick.Signal())
		waitRecv(t, calls)
	}
	waitClosed(t, goDone(w.Stop), "Stop")
	assert.Empty(t, calls, "no call after Stop's wake-up")
	// Stop twice and on nil is fine.
	waitClosed(t, goDone(w.Stop), "second Stop")
	var nilWorker *virtio.Worker
	nilWorker.Stop()
}

func waitRecv(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the worker")
	}
}

func TestStartWorkerReportsWorkError(t *testing.T) {
	q := newKickQueue(t)
	boom := errors.New("broken queue")
	failed := make(chan error, 1)
	w := virtio.StartWorker(q, func() error { return boom }, func(err error) { failed <- err })
	select {
	case err := <-failed:
		assert.ErrorIs(t, err, boom)
	case <-time.After(10 * time.Second):
		t.Fatal("fail not called")
	}
	// The worker has exited: Stop does not wait for anything.
	waitClosed(t, goDone(w.Stop), "Stop after failure")
}

// An error the work returns because Stop woke it is not a failure: the
// device is being reset.
func TestStartWorkerErrorDuringStopIsNotReported(t *testing.T) {
	q := newKickQueue(t)
	var fails atomic.Int32
	entered := make(chan struct{})
	w := virtio.StartWorker(q, func() error {
		close(entered)
		// Block until a kick, which only Stop sends here, then fail.
		_, _ = q.Kick.Wait()
		return errors.New("interrupted")
	}, func(error) { fails.Add(1) })
	waitRecv(t, entered)
	waitClosed(t, goDone(w.Stop), "Stop")
	assert.Zero(t, fails.Load())
}

// The same work, kicked by the driver instead of Stop: a real failure.
func TestStartWorkerErrorOnKickIsReported(t *testing.T) {
	q := newKickQueue(t)
	failed := make(chan struct{})
	entered := make(chan struct{})
	w := virtio.StartWorker(q, func() error {
		close(entered)
		_, _ = q.Kick.Wait()
		return errors.New("interrupted")
	}, func(error) { close(failed) })
	waitRecv(t, entered)
	require.NoError(t, q.Kick.Signal())
	waitClosed(t, failed, "fail")
	w.Stop()
}

func TestStartWorkerExitsQuietlyWhenKickCloses(t *testing.T) {
	kick, err := eventfd.New()
	require.NoError(t, err)
	q := &virtio.Queue{Kick: kick}
	var fails atomic.Int32
	ran := make(chan struct{}, 1)
	w := virtio.StartWorker(q, func() error {
		select {
		case ran <- struct{}{}:
		default:
		}
		return nil
	}, func(error) { fails.Add(1) })
	waitRecv(t, ran)
	require.NoError(t, kick.Close())
	waitClosed(t, goDone(w.Stop), "Stop after Close")
	assert.Zero(t, fails.Load(), "a closed kick is a shutdown, not a failure")
}

func TestWorkerGroupStopsEveryWorker(t *testing.T) {
	const n = 3
	var g virtio.WorkerGroup
	var fails atomic.Int32
	var entered sync.WaitGroup
	queues := make([]*virtio.Queue, n)
	workers := make([]*virtio.Worker, n)
	for i := range n {
		q := newKickQueue(t)
		queues[i] = q
		entered.Add(1)
		var once sync.Once
		// Each work blocks until kicked, then fails: a worker that
		// Stop woke reports nothing, one woken otherwise reports.
		workers[i] = virtio.StartWorker(q, func() error {
			once.Do(entered.Done)
			_, err := q.Kick.Wait()
			if err != nil {
				return err
			}
			return errors.New("woken")
		}, func(error) { fails.Add(1) })
		g.Add(workers[i])
	}
	entered.Wait()
	waitClosed(t, goDone(g.Stop), "WorkerGroup.Stop")

	// A worker the group did not stop would still be waiting on its
	// kick: closing the kicks would make it fail.
	for _, q := range queues {
		require.NoError(t, q.Kick.Close())
	}
	for _, w := range workers {
		waitClosed(t, goDone(w.Stop), "Stop")
	}
	assert.Zero(t, fails.Load(), "every worker was stopped by the group")

	// The group forgot them: stopping it again does nothing, and it can
	// be reused.
	waitClosed(t, goDone(g.Stop), "second WorkerGroup.Stop")
	q := newKickQueue(t)
	called := make(chan struct{}, 1)
	g.Add(virtio.StartWorker(q, func() error {
		select {
		case called <- struct{}{}:
		default:
		}
		return nil
	}, func(error) { fails.Add(1) }))
	waitRecv(t, called)
	waitClosed(t, goDone(g.Stop), "WorkerGroup.Stop after reuse")
}

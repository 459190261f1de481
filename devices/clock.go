package devices

import (
	"math/bits"
	"sync"
	"time"
)

// Clock is the time source of the timer devices (PIT, RTC, ACPI PM timer).
// Production code uses SystemClock; tests inject a fake clock so that they
// can step time deterministically instead of sleeping.
type Clock interface {
	// Now returns the current time. The difference of two Now values must
	// be monotonic, as it is for time.Now (which carries a monotonic clock
	// reading); the wall-clock part is used only by the RTC.
	Now() time.Time
	// AfterFunc arranges for f to be called in its own goroutine once d has
	// elapsed, like time.AfterFunc. stop cancels the call; it reports true
	// if it did, false if f has already been started.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// SystemClock is the host clock: time.Now and time.AfterFunc.
var SystemClock Clock = systemClock{}

type systemClock struct{}

// Now returns time.Now().
func (systemClock) Now() time.Time { return time.Now() }

// AfterFunc wraps time.AfterFunc.
func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// nanosPerSecond is the number of nanoseconds in a second: the unit of
// time.Duration against the unit of the device clock frequencies (Hz).
const nanosPerSecond = uint64(time.Second)

// ticksIn returns how many full periods of a clock of hz fit in d: the
// number of input clock edges a counter device has seen after d. It computes
// d*hz/1e9 in 128 bits, so it neither overflows nor loses precision after
// long uptimes (d*hz overflows 64 bits after about 2 hours at the PIT's
// 1.19 MHz). Negative durations count as zero.
func ticksIn(d time.Duration, hz uint64) uint64 {
	if d <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(d), hz)
	// hi < 1e9 because d < 2^63 and hz < 2^30, so Div64 cannot panic.
	q, _ := bits.Div64(hi, lo, nanosPerSecond)
	return q
}

// durationOfTicks returns the time from the start of a clock of hz until its
// n-th edge, rounded up to the next nanosecond so that a timer set for it
// fires no earlier than the edge. It saturates at the largest Duration.
func durationOfTicks(n, hz uint64) time.Duration {
	hi, lo := bits.Mul64(n, nanosPerSecond)
	if hi >= hz {
		return time.Duration(1<<63 - 1)
	}
	q, r := bits.Div64(hi, lo, hz)
	if r != 0 {
		q++
	}
	if q > 1<<63-1 {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(q)
}

// deviceTimer is the one pending timer callback of a device (the PIT's
// channel 0 interrupt, the RTC's update/alarm/periodic interrupt). It exists
// so that Close can both cancel a pending callback and wait for one that has
// already started, leaving no goroutine behind.
//
// All methods except wait must be called with the owning device's mutex
// held, and the callback must take that mutex and then check current(gen)
// before doing anything: a callback that had already started when the guest
// reprogrammed the device must notice that it is stale.
type deviceTimer struct {
	clock Clock
	stop  func() bool
	gen   uint64
	// running counts armed-and-not-cancelled callbacks plus running ones.
	running sync.WaitGroup
}

// arm cancels any pending callback and schedules f(gen) after d. f runs
// without the device mutex; it must acquire it and check current(gen).
func (t *deviceTimer) arm(d time.Duration, f func(gen uint64)) {
	t.cancel()
	t.gen++
	gen := t.gen
	t.running.Add(1)
	t.stop = t.clock.AfterFunc(d, func() {
		defer t.running.Done()
		f(gen)
	})
}

// cancel stops the pending callback, if any. A callback that has already
// started will find itself stale.
func (t *deviceTimer) cancel() {
	t.gen++
	if t.stop != nil {
		if t.stop() {
			// The callback will never run: it cannot call Done itself.
			t.running.Done()
		}
		t.stop = nil
	}
}

// current reports whether gen is the generation of the latest arm, i.e.
// whether a callback is still wanted.
func (t *deviceTimer) current(gen uint64) bool { return gen == t.gen }

// wait blocks until no callback is running. Call it without the device
// mutex, after cancel, once the device is marked closed so no callback arms
// a new one.
func (t *deviceTimer) wait() { t.running.Wait() }

// Package devicetest provides test doubles for the devices package and its
// users: a fake clock that tests step by hand, and an interrupt line that
// records what a device did with it. Nothing here sleeps or depends on the
// host's timing, so tests built on it are deterministic.
package devicetest

import (
	"bytes"
	"sync"
	"time"
)

// FakeClock is a manually advanced clock that implements devices.Clock.
// Timer callbacks run synchronously inside Advance, on the goroutine that
// calls Advance, in the order of their due times; while a callback runs, Now
// returns its due time.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []*fakeTimer
}

type fakeTimer struct {
	due time.Time
	seq uint64 // tie-breaker: timers due at the same time fire in arming order
	f   func()
}

// NewFakeClock returns a clock that reads start until advanced.
func NewFakeClock(start time.Time) *FakeClock {
	return &FakeClock{now: start}
}

// Now returns the clock's current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc registers f to run when the clock has been advanced by d. The
// returned function cancels it and reports whether it did.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d < 0 {
		d = 0
	}
	c.seq++
	t := &fakeTimer{due: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.timers {
			if x == t {
				c.timers = append(c.timers[:i], c.timers[i+1:]...)
				return true
			}
		}
		return false
	}
}

// Advance moves the clock forward by d, running every timer that falls due
// on the way, including timers armed by those callbacks. Negative d is
// ignored.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	if d < 0 {
		d = 0
	}
	target := c.now.Add(d)
	for {
		i := c.earliest()
		if i < 0 || c.timers[i].due.After(target) {
			break
		}
		t := c.timers[i]
		c.timers = append(c.timers[:i], c.timers[i+1:]...)
		if t.due.After(c.now) {
			c.now = t.due
		}
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	c.now = target
	c.mu.Unlock()
}

// earliest returns the index of the timer due first (the first armed of
// those due at the same time), or -1. The caller holds c.mu.
func (c *FakeClock) earliest() int {
	best := -1
	for i, t := range c.timers {
		if best < 0 || t.due.Before(c.timers[best].due) ||
			(t.due.Equal(c.timers[best].due) && t.seq < c.timers[best].seq) {
			best = i
		}
	}
	return best
}

// Pending returns how many timers are armed and not yet run.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// NextDue returns how long until the earliest armed timer is due, and false
// if no timer is armed.
func (c *FakeClock) NextDue() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.earliest()
	if i < 0 {
		return 0, false
	}
	return c.timers[i].due.Sub(c.now), true
}

// IRQRecorder is an interrupt line (devices.IRQLine) that records every
// level a device drives it to. It is safe for concurrent use.
type IRQRecorder struct {
	mu     sync.Mutex
	calls  []bool
	level  bool
	rising int
}

// SetLevel records a level change.
func (r *IRQRecorder) SetLevel(high bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, high)
	if high && !r.level {
		r.rising++
	}
	r.level = high
}

// Level returns the level the line was last driven to.
func (r *IRQRecorder) Level() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.level
}

// RisingEdges returns how many low-to-high transitions the line has seen:
// the number of interrupts an edge-triggered controller would have latched.
func (r *IRQRecorder) RisingEdges() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rising
}

// Calls returns a copy of every SetLevel argument, in order.
func (r *IRQRecorder) Calls() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.calls...)
}

// Reset forgets the recorded calls and edges (the level is kept).
func (r *IRQRecorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
	r.rising = 0
}

// Buffer is a bytes.Buffer that is safe for concurrent use: device output
// (a UART's transmitter, a console) written from vCPU goroutines and read
// by a test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

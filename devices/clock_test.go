package devices

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTicksIn(t *testing.T) {
	assert.Equal(t, uint64(0), ticksIn(-time.Second, PITFrequency))
	assert.Equal(t, uint64(PITFrequency), ticksIn(time.Second, PITFrequency))
	assert.Equal(t, uint64(1193), ticksIn(time.Millisecond, PITFrequency))
	// After a year the 64-bit product d*hz has long overflowed.
	year := 365 * 24 * time.Hour
	assert.Equal(t, uint64(365*24*3600)*PITFrequency, ticksIn(year, PITFrequency))
	assert.Equal(t, uint64(1<<63-1)/uint64(time.Second)*PMTimerFrequency+
		uint64(1<<63-1)%uint64(time.Second)*PMTimerFrequency/uint64(time.Second),
		ticksIn(time.Duration(1<<63-1), PMTimerFrequency))
}

func TestDurationOfTicksRoundsUp(t *testing.T) {
	for _, n := range []uint64{0, 1, 2, 1193, 65536, PITFrequency, 123456789} {
		d := durationOfTicks(n, PITFrequency)
		assert.Equal(t, n, ticksIn(d, PITFrequency), "n=%d", n)
		if d > 0 {
			assert.Less(t, ticksIn(d-1, PITFrequency), n, "n=%d: not the earliest time", n)
		}
	}
	assert.Equal(t, time.Duration(1<<63-1), durationOfTicks(1<<62, 1))
}

func TestDeviceTimerCancelAndWait(t *testing.T) {
	fc := newFakeClock()
	dt := deviceTimer{clock: fc}
	var fired atomic.Int32
	var gens []uint64
	dt.arm(time.Second, func(gen uint64) { gens = append(gens, gen); fired.Add(1) })
	dt.arm(2*time.Second, func(gen uint64) {
		gens = append(gens, gen)
		fired.Add(1)
		assert.True(t, dt.current(gen))
	})
	assert.Equal(t, 1, fc.Pending(), "re-arming cancels the pending callback")
	fc.Advance(3 * time.Second)
	assert.Equal(t, int32(1), fired.Load())

	dt.arm(time.Second, func(uint64) { fired.Add(1) })
	dt.cancel()
	assert.Equal(t, 0, fc.Pending())
	dt.wait() // returns: nothing armed, nothing running
	fc.Advance(time.Hour)
	assert.Equal(t, int32(1), fired.Load())
}

func TestDeviceTimerWaitsForRunningCallback(t *testing.T) {
	dt := deviceTimer{clock: SystemClock}
	started := make(chan struct{})
	release := make(chan struct{})
	dt.arm(0, func(uint64) {
		close(started)
		<-release
	})
	<-started
	dt.cancel() // too late to cancel: the callback is running
	waited := make(chan struct{})
	go func() { dt.wait(); close(waited) }()
	select {
	case <-waited:
		t.Fatal("wait returned while the callback was running")
	case <-time.After(10 * time.Millisecond):
	}
	close(release)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "wait did not return after the callback finished")
	}
}

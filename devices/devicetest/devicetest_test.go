package devicetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFakeClockRunsTimersInOrder(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFakeClock(start)
	var order []string
	var at []time.Duration
	record := func(name string) func() {
		return func() { order = append(order, name); at = append(at, c.Now().Sub(start)) }
	}
	c.AfterFunc(3*time.Second, record("c"))
	c.AfterFunc(time.Second, record("a1"))
	c.AfterFunc(time.Second, record("a2"))
	stop := c.AfterFunc(2*time.Second, record("cancelled"))
	c.AfterFunc(2*time.Second, func() {
		record("b")()
		c.AfterFunc(500*time.Millisecond, record("b+")) // armed by a callback
	})
	assert.True(t, stop())
	assert.False(t, stop())
	d, ok := c.NextDue()
	assert.True(t, ok)
	assert.Equal(t, time.Second, d)

	c.Advance(10 * time.Second)
	assert.Equal(t, []string{"a1", "a2", "b", "b+", "c"}, order)
	assert.Equal(t, []time.Duration{time.Second, time.Second, 2 * time.Second, 2500 * time.Millisecond, 3 * time.Second}, at)
	assert.Equal(t, 10*time.Second, c.Now().Sub(start))
	assert.Zero(t, c.Pending())
	_, ok = c.NextDue()
	assert.False(t, ok)
	c.Advance(-time.Second)
	assert.Equal(t, 10*time.Second, c.Now().Sub(start), "time never goes back")
}

func TestIRQRecorder(t *testing.T) {
	var r IRQRecorder
	r.SetLevel(true)
	r.SetLevel(true)
	r.SetLevel(false)
	r.SetLevel(true)
	assert.True(t, r.Level())
	assert.Equal(t, 2, r.RisingEdges())
	assert.Equal(t, []bool{true, true, false, true}, r.Calls())
	r.Reset()
	assert.Empty(t, r.Calls())
	assert.Zero(t, r.RisingEdges())
	assert.True(t, r.Level())
}

package devices

import (
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Control words as Linux writes them (arch/x86/kernel/tsc.c,
// drivers/clocksource/i8253.c).
const (
	cwCh2Mode0     = 0xB0 // counter 2, LSB then MSB, mode 0, binary
	cwCh0Mode2     = 0x34 // counter 0, LSB then MSB, mode 2 (periodic)
	cwCh0Mode0     = 0x30 // counter 0, LSB then MSB, mode 0 (pit_shutdown)
	cwCh0Mode4     = 0x38 // counter 0, LSB then MSB, mode 4 (oneshot)
	cwCh0Latch     = 0x00 // counter latch command for counter 0
	cwCh2Latch     = 0x80 // counter latch command for counter 2
	linuxPITLatch  = (PITFrequency + 500) / 1000
	portBOut2Bit   = portBOut2
	portBGateOnSpk = portBGate2
)

type pitHarness struct {
	t     *testing.T
	fc    *devicetest.FakeClock
	irq   *devicetest.IRQRecorder
	p     *PIT
	portB PortDevice
	tick  uint64
}

func newPITHarness(t *testing.T) *pitHarness {
	fc := newFakeClock()
	irq := &devicetest.IRQRecorder{}
	p := NewPIT(irq, fc)
	t.Cleanup(p.Close)
	return &pitHarness{t: t, fc: fc, irq: irq, p: p, portB: p.PortB()}
}

// advanceTicks moves the clock so that exactly n more PIT input clocks
// have passed.
func (h *pitHarness) advanceTicks(n uint64) {
	h.tick += n
	target := durationOfTicks(h.tick, PITFrequency)
	h.fc.Advance(target - h.fc.Now().Sub(testEpoch))
	require.Equal(h.t, h.tick, ticksIn(h.fc.Now().Sub(testEpoch), PITFrequency))
}

func (h *pitHarness) control(v byte) { out8(h.p, pitControl, v) }

func (h *pitHarness) writeWord(ch uint16, v uint16) {
	out8(h.p, ch, byte(v))
	out8(h.p, ch, byte(v>>8))
}

func (h *pitHarness) readWord(ch uint16) uint16 {
	lo := in8(h.p, ch)
	hi := in8(h.p, ch)
	return uint16(lo) | uint16(hi)<<8
}

func (h *pitHarness) out2() bool { return in8(h.portB, 0)&portBOut2Bit != 0 }

// gate2 sets counter 2's gate as Linux does: read-modify-write of port B
// with the speaker off.
func (h *pitHarness) gate2(on bool) {
	v := in8(h.portB, 0) &^ (portBSpeakerData | portBGate2)
	if on {
		v |= portBGate2
	}
	out8(h.portB, 0, v)
}

// outPattern advances one tick at a time and records counter 2's OUT.
func (h *pitHarness) outPattern(n int) []bool {
	var out []bool
	for range n {
		h.advanceTicks(1)
		out = append(out, h.out2())
	}
	return out
}

func TestPITLinuxQuickCalibrate(t *testing.T) {
	h := newPITHarness(t)
	// quick_pit_calibrate: gate high, speaker off, mode 0 from 0xFFFF.
	h.gate2(true)
	h.control(cwCh2Mode0)
	out8(h.p, pitCounter2, 0xFF)
	out8(h.p, pitCounter2, 0xFF)
	h.advanceTicks(1)
	assert.Equal(t, uint16(0xFFFF), h.readWord(pitCounter2), "loaded on the first clock")
	// pit_expect_msb: the MSB stays 0xFF for 256 clocks, then 0xFE...
	h.advanceTicks(255)
	assert.Equal(t, uint16(0xFF00), h.readWord(pitCounter2))
	h.advanceTicks(1)
	assert.Equal(t, uint16(0xFEFF), h.readWord(pitCounter2))
	for msb := 0xFE; msb > 0xF0; msb-- {
		in8(h.p, pitCounter2) // LSB, ignored
		assert.Equal(t, byte(msb), in8(h.p, pitCounter2))
		h.advanceTicks(256)
	}
	assert.False(t, h.out2())
	assert.Empty(t, h.irq.Calls(), "counter 2 does not interrupt")
}

func TestPITLinuxCalibrateTSC(t *testing.T) {
	h := newPITHarness(t)
	// pit_calibrate_tsc: 50 ms in mode 0, then poll port B bit 5.
	const latch = PITFrequency / (1000 / 50)
	h.gate2(true)
	h.control(cwCh2Mode0)
	h.writeWord(pitCounter2, latch)
	h.advanceTicks(latch)
	assert.False(t, h.out2())
	assert.Equal(t, uint16(1), h.readWord(pitCounter2))
	h.advanceTicks(1)
	assert.True(t, h.out2(), "OUT rises N+1 clocks after the count is written")
	assert.Equal(t, uint16(0), h.readWord(pitCounter2))
	h.advanceTicks(1)
	assert.Equal(t, uint16(0xFFFF), h.readWord(pitCounter2), "mode 0 keeps counting through zero")
	assert.True(t, h.out2(), "and OUT stays high")
}

func TestPITCounterLatch(t *testing.T) {
	h := newPITHarness(t)
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, 1000)
	h.advanceTicks(10)
	h.control(cwCh0Latch)
	h.advanceTicks(100)
	h.control(cwCh0Latch) // ignored: the first latch has not been read
	assert.Equal(t, uint16(991), h.readWord(pitCounter0))
	assert.Equal(t, uint16(891), h.readWord(pitCounter0), "latch released after both bytes")

	// Reprogramming drops a latched count.
	h.control(cwCh0Latch)
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, 500)
	h.advanceTicks(1)
	assert.Equal(t, uint16(500), h.readWord(pitCounter0))
}

func TestPITReadBack(t *testing.T) {
	h := newPITHarness(t)
	h.control(cwCh2Mode0)
	h.writeWord(pitCounter2, 100) // gate low: loaded but not counting
	const rbCh2CountAndStatus = 0xC0 | pitRBCounter0<<2
	h.control(rbCh2CountAndStatus)
	assert.Equal(t, byte(pitStatusNullCount|0x30), in8(h.p, pitCounter2), "status first")
	assert.Equal(t, uint16(0), h.readWord(pitCounter2), "count not loaded yet")

	h.gate2(true)
	h.advanceTicks(101)
	const rbCh2Status = 0xC0 | pitRBNoCount | pitRBCounter0<<2
	h.control(rbCh2Status)
	assert.Equal(t, byte(pitStatusOut|0x30), in8(h.p, pitCounter2))
	assert.Equal(t, uint16(0), h.readWord(pitCounter2), "live count: no count was latched")

	// One command for all three counters.
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, 1000)
	h.advanceTicks(5)
	const rbAll = 0xC0 | pitRBCounter0 | pitRBCounter0<<1 | pitRBCounter0<<2
	h.control(rbAll)
	assert.Equal(t, byte(pitStatusOut|cwCh0Mode2&pitCtrlBits), in8(h.p, pitCounter0))
	assert.Equal(t, uint16(996), h.readWord(pitCounter0))
	assert.Equal(t, byte(pitStatusNullCount|0x30), in8(h.p, pitCounter1), "counter 1 never programmed")
	assert.Equal(t, byte(pitStatusOut|0x30), in8(h.p, pitCounter2))
	assert.Equal(t, uint16(0xFFFB), h.readWord(pitCounter2))
}

func TestPITAccessModesAndFlipFlops(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)

	h.control(0x90) // counter 2, LSB only, mode 0
	out8(h.p, pitCounter2, 0x34)
	h.advanceTicks(1)
	assert.Equal(t, byte(0x34), in8(h.p, pitCounter2))
	assert.Equal(t, byte(0x34), in8(h.p, pitCounter2), "LSB access reads the LSB every time")

	h.control(0xA0) // counter 2, MSB only, mode 0
	out8(h.p, pitCounter2, 0x12)
	h.advanceTicks(1)
	assert.Equal(t, byte(0x12), in8(h.p, pitCounter2))
	h.advanceTicks(1)
	assert.Equal(t, byte(0x11), in8(h.p, pitCounter2), "0x1200 - 1 = 0x11FF")

	// Word access; a control word resets a half-written count.
	h.control(cwCh2Mode0)
	out8(h.p, pitCounter2, 0x99)
	h.control(cwCh2Mode0)
	h.writeWord(pitCounter2, 0x0102)
	h.advanceTicks(1)
	assert.Equal(t, byte(0x02), in8(h.p, pitCounter2))
	h.advanceTicks(1) // the MSB is read live, a clock later
	assert.Equal(t, byte(0x01), in8(h.p, pitCounter2))
	assert.Equal(t, byte(0x01), in8(h.p, pitCounter2), "the LSB (of 0x0101) again")

	// The control word register cannot be read.
	assert.Equal(t, byte(openBus), in8(h.p, pitControl))
}

func TestPITMode0FirstByteStopsCounting(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)
	h.control(cwCh2Mode0)
	h.writeWord(pitCounter2, 10)
	h.advanceTicks(20)
	require.True(t, h.out2())
	out8(h.p, pitCounter2, 5) // first byte: stop, OUT low
	assert.False(t, h.out2())
	frozen := in8(h.p, pitCounter2)
	h.advanceTicks(100)
	out8(h.p, pitCounter2, 0) // second byte: count 5 loads
	h.control(cwCh2Latch)
	assert.Equal(t, frozen, in8(h.p, pitCounter2), "frozen while stopped")
	in8(h.p, pitCounter2)
	assert.Equal(t, []bool{false, false, false, false, false, true}, h.outPattern(6))
}

func TestPITModesOnCounter2(t *testing.T) {
	hi, lo := true, false
	cases := []struct {
		name    string
		control byte
		count   uint16
		trigger bool // raise the gate after writing the count
		want    []bool
	}{
		{"mode 0", 0xB0, 3, false, []bool{lo, lo, lo, hi, hi, hi}},
		{"mode 1", 0xB2, 3, true, []bool{lo, lo, lo, hi, hi, hi}},
		{"mode 2", 0xB4, 3, false, []bool{hi, hi, lo, hi, hi, lo, hi}},
		{"mode 3 even", 0xB6, 4, false, []bool{hi, hi, lo, lo, hi, hi, lo, lo, hi}},
		{"mode 3 odd", 0xB6, 5, false, []bool{hi, hi, hi, lo, lo, hi, hi, hi, lo, lo, hi}},
		{"mode 4", 0xB8, 3, false, []bool{hi, hi, hi, lo, hi, hi}},
		{"mode 5", 0xBA, 3, true, []bool{hi, hi, hi, lo, hi, hi}},
		{"mode 6 is mode 2", 0xBC, 3, false, []bool{hi, hi, lo, hi}},
		{"mode 7 is mode 3", 0xBE, 2, false, []bool{hi, lo, hi, lo}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newPITHarness(t)
			h.gate2(!tc.trigger)
			h.control(tc.control)
			h.writeWord(pitCounter2, tc.count)
			if tc.trigger {
				h.advanceTicks(50)
				assert.True(t, h.out2(), "waits for the trigger")
				h.gate2(true)
			}
			assert.Equal(t, tc.want, h.outPattern(len(tc.want)))
		})
	}
}

func TestPITCountSequences(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)
	read := func() uint16 { h.advanceTicks(1); return h.readWord(pitCounter2) }

	h.control(0xB4) // mode 2: n..1, reload
	h.writeWord(pitCounter2, 3)
	assert.Equal(t, []uint16{3, 2, 1, 3, 2}, []uint16{read(), read(), read(), read(), read()})

	h.control(0xB6) // mode 3, even: decrements by two
	h.writeWord(pitCounter2, 6)
	assert.Equal(t, []uint16{6, 4, 2, 6, 4, 2, 6}, []uint16{read(), read(), read(), read(), read(), read(), read()})
}

func TestPITGateSuspendsMode0(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)
	h.control(cwCh2Mode0)
	h.writeWord(pitCounter2, 100)
	h.advanceTicks(50)
	assert.Equal(t, uint16(51), h.readWord(pitCounter2))
	h.gate2(false)
	h.advanceTicks(1000)
	assert.Equal(t, uint16(51), h.readWord(pitCounter2))
	assert.False(t, h.out2())
	h.gate2(true)
	h.advanceTicks(50)
	assert.False(t, h.out2())
	h.advanceTicks(1)
	assert.True(t, h.out2())
}

func TestPITGateRestartsMode2(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)
	h.control(0xB4)
	h.writeWord(pitCounter2, 10)
	h.advanceTicks(4)
	assert.Equal(t, uint16(7), h.readWord(pitCounter2))
	h.gate2(false)
	h.advanceTicks(9)
	assert.True(t, h.out2(), "gate low forces OUT high")
	assert.Equal(t, uint16(7), h.readWord(pitCounter2))
	h.gate2(true)
	h.advanceTicks(1)
	assert.Equal(t, uint16(10), h.readWord(pitCounter2), "rising gate reloads")
}

func TestPITBCD(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)
	h.control(cwCh2Mode0 | pitBCDFlag)
	h.writeWord(pitCounter2, 0x1000) // 1000 decimal
	h.advanceTicks(1)
	assert.Equal(t, uint16(0x1000), h.readWord(pitCounter2))
	h.advanceTicks(1)
	assert.Equal(t, uint16(0x0999), h.readWord(pitCounter2))

	h.control(cwCh2Mode0 | pitBCDFlag)
	h.writeWord(pitCounter2, 0) // 10000
	h.advanceTicks(2)
	assert.Equal(t, uint16(0x9999), h.readWord(pitCounter2))

	h.control(cwCh2Mode0 | pitBCDFlag)
	h.writeWord(pitCounter2, 0xFFFF) // not BCD: taken at face value, no panic
	h.advanceTicks(3)
	h.readWord(pitCounter2)

	assert.Equal(t, uint16(0x1234), encodeBCD16(decodeBCD16(0x1234)))
}

func TestPITPeriodicIRQ(t *testing.T) {
	for _, mode := range []byte{cwCh0Mode2, 0x36} { // modes 2 and 3
		h := newPITHarness(t)
		h.control(mode)
		h.writeWord(pitCounter0, linuxPITLatch)
		h.fc.Advance(10 * time.Millisecond)
		assert.Equal(t, 10, h.irq.RisingEdges(), "mode %#x: one interrupt per period", mode)
		assert.False(t, h.irq.Level(), "pulses leave the line low")
		assert.Equal(t, 1, h.fc.Pending())
	}
}

func TestPITOneShotIRQ(t *testing.T) {
	for _, mode := range []byte{cwCh0Mode0, cwCh0Mode4} {
		h := newPITHarness(t)
		h.control(mode)
		h.writeWord(pitCounter0, 100)
		h.advanceTicks(100)
		assert.Equal(t, 0, h.irq.RisingEdges(), "mode %#x: not yet", mode)
		h.advanceTicks(2)
		assert.Equal(t, 1, h.irq.RisingEdges(), "mode %#x", mode)
		assert.Zero(t, h.fc.Pending(), "mode %#x: no timer after the one shot", mode)
		h.advanceTicks(PITFrequency)
		assert.Equal(t, 1, h.irq.RisingEdges())
		// Linux's oneshot clockevent reprograms the count each time.
		h.writeWord(pitCounter0, 50)
		h.advanceTicks(52)
		assert.Equal(t, 2, h.irq.RisingEdges(), "mode %#x: re-armed by a new count", mode)
	}
}

func TestPITLinuxShutdownStopsTimer(t *testing.T) {
	h := newPITHarness(t)
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, linuxPITLatch)
	h.advanceTicks(5*linuxPITLatch + 1)
	require.Equal(t, 5, h.irq.RisingEdges())

	// drivers/clocksource/i8253.c clockevent_i8253_disable.
	h.control(cwCh0Mode0)
	h.writeWord(pitCounter0, 0)
	h.control(cwCh0Mode0)
	assert.Zero(t, h.fc.Pending(), "no timer keeps running")
	h.fc.Advance(time.Minute)
	assert.Equal(t, 5, h.irq.RisingEdges())
}

func TestPITNewPeriodTakesEffectAtPeriodEnd(t *testing.T) {
	h := newPITHarness(t)
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, 1000)
	h.advanceTicks(10)
	h.writeWord(pitCounter0, 500)
	assert.Equal(t, uint16(991), h.readWord(pitCounter0), "current period unaffected")
	h.advanceTicks(990)
	assert.Equal(t, uint16(1), h.readWord(pitCounter0))
	assert.Equal(t, 0, h.irq.RisingEdges())
	h.advanceTicks(1)
	assert.Equal(t, uint16(500), h.readWord(pitCounter0), "new count loaded at the reload")
	assert.Equal(t, 1, h.irq.RisingEdges())
	h.advanceTicks(499)
	assert.Equal(t, 1, h.irq.RisingEdges())
	h.advanceTicks(1)
	assert.Equal(t, 2, h.irq.RisingEdges())
}

func TestPITMinimumInterruptInterval(t *testing.T) {
	h := newPITHarness(t)
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, 2) // 600 kHz
	h.fc.Advance(10 * time.Millisecond)
	edges := h.irq.RisingEdges()
	assert.LessOrEqual(t, edges, int(10*time.Millisecond/pitMinIRQInterval)+1)
	assert.Greater(t, edges, 10)
}

// manualClock is a Clock whose timers run only when the test says so,
// however late: it simulates a host that falls behind.
type manualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	due       time.Time
	f         func()
	cancelled bool
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{due: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.cancelled
		t.cancelled = true
		return was
	}
}

// live returns the timers not yet run or cancelled.
func (c *manualClock) live() []*manualTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l []*manualTimer
	for _, t := range c.timers {
		if !t.cancelled {
			l = append(l, t)
		}
	}
	return l
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestPITHostFallingBehindDoesNotStorm(t *testing.T) {
	mc := &manualClock{now: testEpoch}
	irq := &devicetest.IRQRecorder{}
	p := NewPIT(irq, mc)
	defer p.Close()
	out8(p, pitControl, cwCh0Mode2)
	latch := uint16(linuxPITLatch)
	out8(p, pitCounter0, byte(latch))
	out8(p, pitCounter0, byte(latch>>8))

	mc.advance(100 * time.Millisecond) // 100 periods pass unseen
	timers := mc.live()
	require.Len(t, timers, 1)
	timers[0].cancelled = true // it runs now
	timers[0].f()
	assert.Equal(t, 1, irq.RisingEdges(), "one interrupt, not a hundred")
	next := mc.live()
	require.Len(t, next, 1)
	wait := next[0].due.Sub(mc.Now())
	assert.Greater(t, wait, time.Duration(0), "the next one is in the future")
	assert.LessOrEqual(t, wait, time.Millisecond)
}

func TestPITCloseStopsTimer(t *testing.T) {
	h := newPITHarness(t)
	h.control(cwCh0Mode2)
	h.writeWord(pitCounter0, linuxPITLatch)
	require.Equal(t, 1, h.fc.Pending())
	h.p.Close()
	assert.Zero(t, h.fc.Pending())
	h.writeWord(pitCounter0, linuxPITLatch)
	assert.Zero(t, h.fc.Pending(), "a closed PIT arms no timer")
	h.fc.Advance(time.Second)
	assert.Zero(t, h.irq.RisingEdges())
	h.p.Close() // idempotent
}

func TestPITCloseWithSystemClock(t *testing.T) {
	irq := &devicetest.IRQRecorder{}
	p := NewPIT(irq, SystemClock)
	out8(p, pitControl, cwCh0Mode2)
	out8(p, pitCounter0, 0x10) // ~14 µs period, clamped to pitMinIRQInterval
	out8(p, pitCounter0, 0)
	require.Eventually(t, func() bool { return irq.RisingEdges() >= 3 }, waitTimeout, time.Millisecond)
	p.Close()
	n := irq.RisingEdges()
	time.Sleep(2 * pitMinIRQInterval)
	assert.Equal(t, n, irq.RisingEdges(), "no interrupt after Close returned")
}

func TestPITPortB(t *testing.T) {
	h := newPITHarness(t)
	assert.Equal(t, byte(0), in8(h.portB, 0)&^portBRefresh)
	out8(h.portB, 0, 0xFF)
	assert.Equal(t, byte(portBWritable), in8(h.portB, 0)&portBWritable, "bits 0-3 read back")

	var toggles int
	last := in8(h.portB, 0) & portBRefresh
	for range 10 * portBRefreshPeriod {
		h.advanceTicks(1)
		if v := in8(h.portB, 0) & portBRefresh; v != last {
			toggles++
			last = v
		}
	}
	assert.Equal(t, 10, toggles, "the refresh bit toggles every refresh period")

	data := []byte{0, 0}
	h.portB.ReadPort(0, data)
	assert.Equal(t, byte(0xFF), data[1], "past port B is open bus")
}

func TestPITMultiByteAccess(t *testing.T) {
	h := newPITHarness(t)
	h.gate2(true)
	// A 16-bit write to port 0x42 is two byte writes: 0x42, then 0x43.
	h.p.WritePort(pitCounter2, []byte{0x00, cwCh2Mode0})
	h.p.WritePort(pitCounter2, []byte{0x10, cwCh0Latch}) // count LSB; latch counter 0
	out8(h.p, pitCounter2, 0x00)                         // count MSB
	h.advanceTicks(1)
	data := make([]byte, 4)
	h.p.ReadPort(pitCounter2, data)
	assert.Equal(t, []byte{0x10, openBus, openBus, openBus}, data,
		"LSB of counter 2, the unreadable control port, then past the PIT")
}

package devices

import (
	"sync"
	"time"
)

// PC resources of the 8254 programmable interval timer (IBM PC/AT Technical
// Reference, "System Timers" and "System I/O Address Map").
const (
	// PITFrequency is the 8254's input clock on every PC: 1.193182 MHz,
	// the 14.31818 MHz NTSC-derived oscillator divided by 12 (Linux
	// include/linux/timex.h, PIT_TICK_RATE).
	PITFrequency = 1193182
	// PITBase is the first PIT port: counters 0-2 at 0x40-0x42 and the
	// control word register at 0x43.
	PITBase uint16 = 0x40
	// PITPorts is the number of ports of the PIT.
	PITPorts uint16 = 4
	// PITIRQ is the ISA IRQ that counter 0's OUT drives (the system
	// timer interrupt).
	PITIRQ = 0
	// PortBPort is system control port B (PC/AT "port 61h"): speaker and
	// counter 2 gate control, refresh and counter 2 output status. The PIT
	// provides it through PortB.
	PortBPort uint16 = 0x61
	// PortBPorts is the number of ports of port B.
	PortBPorts uint16 = 1
)

// PIT port offsets from PITBase.
const (
	pitCounter0 = 0
	pitCounter1 = 1
	pitCounter2 = 2
	pitControl  = 3 // control word register (write only)
	pitCounters = 3
)

// Control word fields (Intel 8254 datasheet, Figure 7 "Control Word
// Format"): SC1-SC0 select the counter, RW1-RW0 the access, M2-M0 the mode.
const (
	pitSelectShift = 6
	pitSelectMask  = 0x03
	pitReadBack    = 3 // SC = 11: read-back command (Figure 11)
	pitAccessShift = 4
	pitAccessMask  = 0x03
	pitModeShift   = 1
	pitModeMask    = 0x07
	pitBCDFlag     = 0x01
	pitCtrlBits    = 0x3F // RW, M and BCD: what the status byte reports back
)

// Counter modes (M2-M0; 8254 datasheet, "Mode Definitions").
const (
	pitModeTerminalCount  = 0 // interrupt on terminal count
	pitModeOneShot        = 1 // hardware retriggerable one-shot
	pitModeRateGenerator  = 2 // divide by n: one low clock per period
	pitModeSquareWave     = 3 // divide by n: half high, half low
	pitModeSoftwareStrobe = 4 // one low clock n+1 clocks after the count is written
	pitModeHardwareStrobe = 5 // one low clock n+1 clocks after a gate trigger
	pitModeAliasOffset    = 4 // M2 is "don't care" for modes 2 and 3: 6 is 2 and 7 is 3
	pitMinPeriodicCount   = 2 // a count of 1 is illegal in modes 2 and 3
)

// Access modes (RW1-RW0).
const (
	pitAccessLatch = 0 // counter latch command, not an access mode
	pitAccessLSB   = 1 // read/write least significant byte only
	pitAccessMSB   = 2 // read/write most significant byte only
	pitAccessWord  = 3 // least significant byte first, then most significant
)

// Read-back command bits (8254 datasheet, Figure 11). COUNT and STATUS are
// active low.
const (
	pitRBNoCount  = 0x20 // 0: latch the count of the selected counters
	pitRBNoStatus = 0x10 // 0: latch the status of the selected counters
	pitRBCounter0 = 0x02 // select counter 0; counter 1 and 2 follow
)

// Status byte bits (8254 datasheet, Figure 12); bits 5-0 repeat the
// counter's control word.
const (
	pitStatusOut       = 0x80 // the state of the OUT pin
	pitStatusNullCount = 0x40 // the last count written is not yet in the counting element
)

// Counter modulus: a count of 0 means the largest count, 2^16 in binary and
// 10^4 in BCD (8254 datasheet, "Initial count").
const (
	pitBinaryModulus = 1 << 16
	pitBCDModulus    = 10000
)

// Port B bits (IBM PC/AT Technical Reference, "System Control Port B").
const (
	portBGate2         = 0x01 // counter 2 GATE
	portBSpeakerData   = 0x02 // speaker data enable (ANDed with counter 2 OUT)
	portBParityCheck   = 0x04 // 1 disables the RAM parity check NMI (stored only)
	portBChannelCheck  = 0x08 // 1 disables the I/O channel check NMI (stored only)
	portBRefresh       = 0x10 // toggles with each DRAM refresh request (read only)
	portBOut2          = 0x20 // counter 2 OUT (read only)
	portBIOCheck       = 0x40 // I/O channel check occurred (read only, never set)
	portBParityError   = 0x80 // RAM parity error occurred (read only, never set)
	portBWritable      = portBGate2 | portBSpeakerData | portBParityCheck | portBChannelCheck
	portBRefreshPeriod = 18 // PIT ticks per refresh request: the BIOS runs counter 1 at 18 (15.08 µs)
)

// pitMinIRQInterval is the shortest time between two counter 0 interrupts.
// A guest could program a period of 2 ticks (600 kHz) which no host timer
// can follow; KVM's own PIT clamps the period the same way (Linux
// arch/x86/kvm/i8254.c, create_pit_timer and min_timer_period_us).
const pitMinIRQInterval = 200 * time.Microsecond

// PIT is an Intel 8254 programmable interval timer with the PC's wiring:
// counter 0 drives IRQ 0, counter 1 (DRAM refresh) is free, and counter 2
// (the speaker) has its gate and output on system control port B (PortB).
//
// The counters are computed from the host monotonic clock at PITFrequency
// whenever the guest looks at them, so they count in real time and cost
// nothing while nobody reads them. Linux's PIT-based TSC calibration
// (arch/x86/kernel/tsc.c, quick_pit_calibrate and pit_calibrate_tsc) polls
// counter 2 in mode 0 and port B bit 5 and sees a real 8254.
//
// All six modes count and drive OUT as the datasheet describes; counting
// starts one input clock after the count is written, as on the chip. BCD
// counting (control word bit 0) is supported. Simplifications: a new count
// written in mode 3 takes effect at the end of the current period (the chip
// loads it at the end of the current half period); and an OUT change caused
// by a control word (rather than by counting) does not interrupt.
//
// Counter 0's interrupt: in modes 2 and 3, IRQ 0 is pulsed at the rising
// edge of OUT once per period; in modes 0, 1, 4 and 5 once when the count
// expires. A timer goroutine is armed only while such an edge is ahead, so
// after Linux's pit_shutdown (mode 0 without a new count) the PIT costs no
// CPU. If the host falls behind, missed periods are dropped rather than
// delivered in a burst, and pulses are at least pitMinIRQInterval apart.
type PIT struct {
	mu     sync.Mutex
	clock  Clock
	epoch  time.Time // tick 0
	irq    irqOutput
	timer  deviceTimer
	closed bool

	ch    [pitCounters]pitChannel
	portB byte // the writable bits of port B

	// Counter 0 interrupt bookkeeping, in ticks since epoch.
	irqEdge    int64 // the tick of the OUT edge the timer waits for
	lastPulse  int64
	havePulsed bool
}

// pitChannel is one counter. Times are in PIT ticks since the PIT's epoch.
type pitChannel struct {
	ctrl   byte // control word bits 5-0 as last written
	mode   int  // 0-5; control word modes 6 and 7 are modes 2 and 3
	access int  // pitAccessLSB, pitAccessMSB or pitAccessWord
	bcd    bool

	cr        uint32 // count register: the last count written, in [1, modulus]
	hasCount  bool   // a count was written since the control word
	crPending bool   // cr is not yet in the counting element (null count)
	n         uint32 // the count of the current counting cycle

	writeMSB bool // write flip-flop: the next byte written is the MSB
	lsbHeld  byte // the LSB written while waiting for the MSB
	readMSB  bool // read flip-flop: the next unlatched read returns the MSB

	latched       [2]byte // latched count bytes still to be read
	latchedLen    int
	latchedPos    int
	status        byte // latched status byte
	statusLatched bool

	gate bool

	// The counting element. While active, k = now - origin (or pausedK
	// while paused) is the number of input clocks since the count was
	// loaded or triggered: the count enters the counting element at k = 1.
	active     bool
	paused     bool  // gate low: modes 0/4 suspend, modes 2/3 stop with OUT high
	origin     int64 // tick at which k = 0
	pausedK    int64
	pendingK   int64  // k when a mode 2/3 count was written during counting
	frozen     uint32 // what the counter reads while not counting
	outStopped bool   // OUT while not counting
}

// NewPIT returns a PIT whose counter 0 output pulses irq0 (nil: not wired)
// and whose counters run on clock (SystemClock in production). Register it
// at PITBase (PITPorts ports) and PortB at PortBPort. Close it to stop its
// timer.
func NewPIT(irq0 IRQLine, clock Clock) *PIT {
	p := &PIT{clock: clock, epoch: clock.Now(), irq: irqOutput{line: irq0}}
	p.timer.clock = clock
	for i := range p.ch {
		p.ch[i] = pitChannel{
			ctrl:      pitAccessWord << pitAccessShift,
			access:    pitAccessWord,
			crPending: true, // no count written yet
			// Counters 0 and 1 have GATE tied high on the PC; counter
			// 2's GATE is port B bit 0, which is 0 after reset.
			gate: i != pitCounter2,
		}
	}
	return p
}

// Close stops the counter 0 interrupt timer and waits for a running timer
// callback to finish. The PIT still answers port I/O afterwards, but raises
// no more interrupts.
func (p *PIT) Close() {
	p.mu.Lock()
	p.closed = true
	p.timer.cancel()
	p.mu.Unlock()
	p.timer.wait()
}

// now returns the current PIT tick and the time since the epoch.
func (p *PIT) now() (int64, time.Duration) {
	e := p.clock.Now().Sub(p.epoch)
	return int64(ticksIn(e, PITFrequency)), e
}

// ReadPort implements PortDevice for ports PITBase..PITBase+3.
func (p *PIT) ReadPort(offset uint16, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, _ := p.now()
	readBytes(PITPorts, offset, data, func(off uint16) byte {
		if off == pitControl {
			// The control word register cannot be read (8254
			// datasheet, Table 1): the data bus floats.
			return openBus
		}
		return p.ch[off].read(now)
	})
}

// WritePort implements PortDevice for ports PITBase..PITBase+3.
func (p *PIT) WritePort(offset uint16, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, _ := p.now()
	writeBytes(PITPorts, offset, data, func(off uint16, v byte) {
		if off == pitControl {
			p.writeControl(v, now)
		} else {
			p.ch[off].writeCount(v, now)
		}
		if off == pitCounter0 || off == pitControl {
			p.scheduleIRQ(now)
		}
	})
}

// writeControl handles a byte written to the control word register.
func (p *PIT) writeControl(v byte, now int64) {
	sel := int(v>>pitSelectShift) & pitSelectMask
	if sel == pitReadBack {
		for i := range p.ch {
			if v&(pitRBCounter0<<i) == 0 {
				continue
			}
			// With both latched, status is read first (8254
			// datasheet, "Read-Back Command"); read enforces that.
			if v&pitRBNoStatus == 0 {
				p.ch[i].latchStatus(now)
			}
			if v&pitRBNoCount == 0 {
				p.ch[i].latchCount(now)
			}
		}
		return
	}
	ch := &p.ch[sel]
	if access := int(v>>pitAccessShift) & pitAccessMask; access == pitAccessLatch {
		ch.latchCount(now)
		return
	}
	ch.program(v, now)
}

// program applies a control word that sets a counter's mode. All of the
// counter's control logic is reset and OUT goes to its initial state: low
// in mode 0, high in the others (8254 datasheet, "Mode Definitions").
func (ch *pitChannel) program(v byte, now int64) {
	ch.advance(now)
	ch.frozen = ch.value(now)
	ch.ctrl = v & pitCtrlBits
	ch.access = int(v>>pitAccessShift) & pitAccessMask
	ch.mode = int(v>>pitModeShift) & pitModeMask
	if ch.mode > pitModeHardwareStrobe {
		ch.mode -= pitModeAliasOffset
	}
	ch.bcd = v&pitBCDFlag != 0
	ch.hasCount, ch.crPending = false, true
	ch.active, ch.paused = false, false
	ch.writeMSB, ch.readMSB = false, false
	// A latched count or status is held "until read or the counter is
	// reprogrammed" (8254 datasheet, "Counter Latch Command").
	ch.latchedLen, ch.latchedPos, ch.statusLatched = 0, 0, false
	ch.outStopped = ch.mode != pitModeTerminalCount
}

// periodic reports whether the counter is in a mode that reloads by itself.
func (ch *pitChannel) periodic() bool {
	return ch.mode == pitModeRateGenerator || ch.mode == pitModeSquareWave
}

// modulus returns the number of distinct counts in the current mode.
func (ch *pitChannel) modulus() uint32 {
	if ch.bcd {
		return pitBCDModulus
	}
	return pitBinaryModulus
}

// k returns the number of input clocks the counting element has counted.
func (ch *pitChannel) k(now int64) int64 {
	if ch.paused {
		return ch.pausedK
	}
	return max(now-ch.origin, 0)
}

// start loads the count register into the counting element: counting
// starts with the next input clock.
func (ch *pitChannel) start(now int64) {
	ch.n = ch.cr
	ch.crPending = false
	ch.active = true
	ch.origin = now
	ch.pausedK = 0
	// Modes 0 and 4 count only while GATE is high; modes 2 and 3 stop
	// while it is low and reload when it rises.
	ch.paused = !ch.gate && ch.mode != pitModeOneShot && ch.mode != pitModeHardwareStrobe
}

// writeCount handles a byte written to a counter port.
func (ch *pitChannel) writeCount(v byte, now int64) {
	switch ch.access {
	case pitAccessLSB:
		ch.load(uint16(v), now)
	case pitAccessMSB:
		ch.load(uint16(v)<<bitsPerByte, now)
	case pitAccessWord:
		if !ch.writeMSB {
			ch.lsbHeld = v
			ch.writeMSB = true
			if ch.mode == pitModeTerminalCount {
				// Mode 0: writing the first byte of a two-byte
				// count stops counting and sets OUT low at once.
				ch.advance(now)
				ch.frozen = ch.value(now)
				ch.active = false
				ch.outStopped = false
			}
			return
		}
		ch.writeMSB = false
		ch.load(uint16(ch.lsbHeld)|uint16(v)<<bitsPerByte, now)
	}
}

// load handles a complete count written by the guest.
func (ch *pitChannel) load(raw uint16, now int64) {
	ch.advance(now)
	c := uint32(raw)
	if ch.bcd {
		c = decodeBCD16(raw)
	}
	c %= ch.modulus()
	if c == 0 {
		c = ch.modulus()
	}
	ch.cr = c
	ch.hasCount = true
	ch.crPending = true
	switch ch.mode {
	case pitModeTerminalCount, pitModeSoftwareStrobe:
		// A new count restarts counting (8254 datasheet, modes 0
		// and 4: "If a new count is written during counting, it will
		// be loaded on the next CLK pulse").
		ch.start(now)
	case pitModeOneShot, pitModeHardwareStrobe:
		// Loaded by the next trigger (a rising edge of GATE).
	case pitModeRateGenerator, pitModeSquareWave:
		if !ch.active {
			ch.start(now)
			return
		}
		// During counting the current period completes first.
		ch.pendingK = ch.k(now)
	}
}

// advance loads a pending mode 2/3 count once the period during which it
// was written has ended. Reloads happen at k = 1 + m*n.
func (ch *pitChannel) advance(now int64) {
	if !ch.active || !ch.crPending || ch.paused || !ch.periodic() {
		return
	}
	n := int64(ch.n)
	boundary := int64(1) + n
	if ch.pendingK >= 1 {
		boundary = 1 + n*((ch.pendingK-1)/n+1)
	}
	if ch.k(now) < boundary {
		return
	}
	// The new count entered the counting element at the boundary: make
	// k count from there, so k(boundary) = 1.
	ch.origin += boundary - 1
	ch.n = ch.cr
	ch.crPending = false
}

// value returns the counting element's count, in [0, modulus).
func (ch *pitChannel) value(now int64) uint32 {
	if !ch.active {
		return ch.frozen % ch.modulus()
	}
	k := ch.k(now)
	if k == 0 {
		return ch.frozen % ch.modulus() // the new count is loaded at the next clock
	}
	n := int64(ch.n)
	var v int64
	switch ch.mode {
	case pitModeRateGenerator:
		// n, n-1, ..., 1, then reload.
		v = n - (k-1)%n
	case pitModeSquareWave:
		// Decrements by two; an odd count first loses one.
		// High for ceil(n/2) clocks, low for floor(n/2).
		phase := (k - 1) % n
		if n%2 == 0 {
			v = n - 2*(phase%(n/2))
		} else {
			if high := (n + 1) / 2; phase >= high {
				phase -= high
			}
			v = n - 1 - 2*phase
		}
	default:
		// One-shot modes keep counting down through zero.
		v = n - (k - 1)
	}
	m := int64(ch.modulus())
	v %= m
	if v < 0 {
		v += m
	}
	return uint32(v)
}

// out returns the state of the OUT pin.
func (ch *pitChannel) out(now int64) bool {
	if !ch.active {
		return ch.outStopped
	}
	k := ch.k(now)
	n := int64(ch.n)
	switch ch.mode {
	case pitModeTerminalCount:
		// Low until the count reaches zero, then high.
		return k >= n+1
	case pitModeOneShot:
		// Low from the clock after the trigger until the count expires.
		return k == 0 || k > n
	case pitModeRateGenerator:
		// Low for one clock when the count reaches 1.
		return ch.paused || k == 0 || (k-1)%n != n-1
	case pitModeSquareWave:
		// Square wave: high for the first half of each period.
		return ch.paused || k == 0 || (k-1)%n < (n+1)/2
	default: // pitModeSoftwareStrobe, pitModeHardwareStrobe
		// Low for one clock when the count reaches zero.
		return k != n+1
	}
}

// nextRisingEdge returns the first k > cur at which OUT rises, assuming the
// gate stays high and no new count is written.
func (ch *pitChannel) nextRisingEdge(cur int64) (int64, bool) {
	n := int64(ch.n)
	switch ch.mode {
	case pitModeTerminalCount, pitModeOneShot:
		if cur < n+1 {
			return n + 1, true
		}
	case pitModeSoftwareStrobe, pitModeHardwareStrobe:
		if cur < n+2 {
			return n + 2, true
		}
	case pitModeRateGenerator, pitModeSquareWave:
		if n < pitMinPeriodicCount {
			return 0, false // a count of 1 is illegal in these modes: OUT never rises
		}
		if cur < 1 {
			return 1 + n, true
		}
		return 1 + n*((cur-1)/n+1), true
	}
	return 0, false
}

// setGate changes the counter's GATE input (8254 datasheet, Table 3 "Gate
// Pin Operations Summary").
func (ch *pitChannel) setGate(high bool, now int64) {
	if ch.gate == high {
		return
	}
	ch.advance(now)
	ch.gate = high
	switch ch.mode {
	case pitModeTerminalCount, pitModeSoftwareStrobe:
		// Low disables counting, high enables it.
		if !ch.active {
			return
		}
		if !high {
			ch.pausedK, ch.paused = ch.k(now), true
		} else {
			ch.origin, ch.paused = now-ch.pausedK, false
		}
	case pitModeRateGenerator, pitModeSquareWave:
		// Low stops counting and sets OUT high; the rising edge
		// reloads the count and restarts.
		if !high {
			if ch.active {
				ch.pausedK, ch.paused = ch.k(now), true
			}
		} else if ch.hasCount {
			ch.start(now)
		}
	case pitModeOneShot, pitModeHardwareStrobe:
		// The rising edge triggers: load the count and start.
		if high && ch.hasCount {
			ch.start(now)
		}
	}
}

// encode returns the count as the counter shows it: binary or BCD.
func (ch *pitChannel) encode(v uint32) uint16 {
	if ch.bcd {
		return encodeBCD16(v)
	}
	return uint16(v)
}

// read returns the next byte a read of the counter port yields: a latched
// status, a latched count, or the live count per the access mode.
func (ch *pitChannel) read(now int64) byte {
	if ch.statusLatched {
		ch.statusLatched = false
		return ch.status
	}
	if ch.latchedPos < ch.latchedLen {
		b := ch.latched[ch.latchedPos]
		ch.latchedPos++
		if ch.latchedPos == ch.latchedLen {
			ch.latchedLen, ch.latchedPos = 0, 0
		}
		return b
	}
	ch.advance(now)
	v := ch.encode(ch.value(now))
	switch ch.access {
	case pitAccessLSB:
		return byte(v)
	case pitAccessMSB:
		return byte(v >> bitsPerByte)
	default:
		ch.readMSB = !ch.readMSB
		if ch.readMSB {
			return byte(v)
		}
		return byte(v >> bitsPerByte)
	}
}

// latchCount latches the count for reading. A second latch before the
// first is read is ignored (8254 datasheet, "Counter Latch Command").
func (ch *pitChannel) latchCount(now int64) {
	if ch.latchedLen > 0 {
		return
	}
	ch.advance(now)
	v := ch.encode(ch.value(now))
	ch.latchedPos = 0
	switch ch.access {
	case pitAccessLSB:
		ch.latched[0], ch.latchedLen = byte(v), 1
	case pitAccessMSB:
		ch.latched[0], ch.latchedLen = byte(v>>bitsPerByte), 1
	default:
		ch.latched[0], ch.latched[1], ch.latchedLen = byte(v), byte(v>>bitsPerByte), 2
	}
}

// latchStatus latches the status byte; ignored if one is already latched.
func (ch *pitChannel) latchStatus(now int64) {
	if ch.statusLatched {
		return
	}
	ch.advance(now)
	s := ch.ctrl
	if ch.out(now) {
		s |= pitStatusOut
	}
	if ch.crPending || (ch.active && ch.k(now) == 0) {
		s |= pitStatusNullCount
	}
	ch.status, ch.statusLatched = s, true
}

// scheduleIRQ arms the timer for counter 0's next OUT rising edge, if any.
func (p *PIT) scheduleIRQ(now int64) {
	p.timer.cancel()
	ch := &p.ch[pitCounter0]
	if p.closed || p.irq.line == nil || !ch.active || ch.paused {
		return
	}
	ch.advance(now)
	k := ch.k(now)
	edgeK, ok := ch.nextRisingEdge(k)
	if !ok {
		return
	}
	p.irqEdge = now + (edgeK - k)
	fire := p.irqEdge
	if minGap := int64(ticksIn(pitMinIRQInterval, PITFrequency)); p.havePulsed && fire < p.lastPulse+minGap {
		fire = p.lastPulse + minGap
	}
	_, elapsed := p.now()
	p.timer.arm(durationOfTicks(uint64(fire), PITFrequency)-elapsed, p.onTimer)
}

// onTimer pulses IRQ 0 if the awaited edge has come and arms the next one.
func (p *PIT) onTimer(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !p.timer.current(gen) {
		return
	}
	now, _ := p.now()
	if now >= p.irqEdge {
		p.irq.pulse()
		p.lastPulse, p.havePulsed = now, true
	}
	p.scheduleIRQ(now)
}

// PortB returns system control port B (register it at PortBPort).
func (p *PIT) PortB() PortDevice { return (*pitPortB)(p) }

// pitPortB is the PIT seen through port 0x61.
type pitPortB PIT

// ReadPort implements PortDevice: the gate and speaker bits as written,
// the refresh toggle and counter 2's OUT.
func (b *pitPortB) ReadPort(offset uint16, data []byte) {
	p := (*PIT)(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	now, _ := p.now()
	readBytes(PortBPorts, offset, data, func(uint16) byte {
		v := p.portB
		if (now/portBRefreshPeriod)%2 == 1 {
			v |= portBRefresh
		}
		if p.ch[pitCounter2].out(now) {
			v |= portBOut2
		}
		return v
	})
}

// WritePort implements PortDevice: bit 0 drives counter 2's GATE and bits
// 1-3 are stored; the status bits 4-7 are read-only.
func (b *pitPortB) WritePort(offset uint16, data []byte) {
	p := (*PIT)(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	now, _ := p.now()
	writeBytes(PortBPorts, offset, data, func(_ uint16, v byte) {
		p.portB = v & portBWritable
		p.ch[pitCounter2].setGate(v&portBGate2 != 0, now)
	})
}

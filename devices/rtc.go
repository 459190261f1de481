package devices

import (
	"sync"
	"time"
)

// PC resources of the CMOS real-time clock (IBM PC/AT Technical Reference,
// "Real-Time Clock/CMOS RAM").
const (
	// RTCBase is the RTC's index port; the data port follows it.
	RTCBase uint16 = 0x70
	// RTCPorts is the number of ports of the RTC: index and data.
	RTCPorts uint16 = 2
	// RTCIRQ is the ISA IRQ of the RTC's interrupt output.
	RTCIRQ = 8
	// RTCCenturyRegister is the CMOS index of the century byte, the value
	// for the FADT's CENTURY field (ACPI 6.5 §5.2.9, Table 5.9). 0x32 is
	// the IBM PC/AT location, and what Linux uses when the FADT names it
	// (drivers/rtc/rtc-mc146818-lib.c, mc146818_get_time).
	RTCCenturyRegister = 0x32
)

// RTC port offsets.
const (
	rtcIndexPort  = 0
	rtcDataPort   = 1
	rtcIndexMask  = 0x7F // bits 0-6 select one of 128 CMOS bytes
	rtcNMIDisable = 0x80 // bit 7 of the index port masks NMI on the PC/AT
	cmosSize      = 128
)

// Clock and control registers (Motorola MC146818A datasheet, Figure 3
// "Address Map" and Table 3 "Time, Calendar and Alarm Data Modes").
const (
	rtcSeconds      = 0x00
	rtcSecondsAlarm = 0x01
	rtcMinutes      = 0x02
	rtcMinutesAlarm = 0x03
	rtcHours        = 0x04
	rtcHoursAlarm   = 0x05
	rtcDayOfWeek    = 0x06 // 1-7, Sunday = 1
	rtcDayOfMonth   = 0x07
	rtcMonth        = 0x08
	rtcYear         = 0x09 // 0-99
	rtcRegA         = 0x0A
	rtcRegB         = 0x0B
	rtcRegC         = 0x0C
	rtcRegD         = 0x0D
	rtcClockRegs    = rtcYear + 1 // registers 0x00-0x09
)

// Register A.
const (
	regAUIP     = 0x80 // update in progress (read only)
	regADVMask  = 0x70 // divider control; stored only
	regARSMask  = 0x0F // periodic interrupt rate select
	regADefault = 0x26 // DV = 010 (32.768 kHz time base running), RS = 0110 (1024 Hz)
)

// Register B.
const (
	regBSET   = 0x80 // stop updates so the time can be set
	regBPIE   = 0x40 // periodic interrupt enable
	regBAIE   = 0x20 // alarm interrupt enable
	regBUIE   = 0x10 // update-ended interrupt enable
	regBSQWE  = 0x08 // square-wave output enable (no pin here; stored)
	regBDM    = 0x04 // data mode: 1 = binary, 0 = BCD
	regB24h   = 0x02 // 1 = 24-hour mode, 0 = 12-hour mode
	regBDSE   = 0x01 // daylight saving enable; stored, never applied (UTC)
	regBReset = regB24h
)

// Register C (read only; reading clears it) and register D.
const (
	regCIRQF    = 0x80 // an enabled flag below is set: the IRQ output is active
	regCPF      = 0x40 // periodic interrupt flag
	regCAF      = 0x20 // alarm flag
	regCUF      = 0x10 // update-ended flag
	rtcFlagBits = regCPF | regCAF | regCUF
	regDVRT     = 0x80 // valid RAM and time: the battery is good
)

const (
	rtcHoursPM        = 0x80 // in 12-hour mode, bit 7 of the hours marks PM
	rtcAlarmDontCare  = 0xC0 // an alarm byte with both top bits set matches any value
	rtcHoursPerHalf   = 12
	rtcYearsInCentury = 100
)

// rtcUIPWindow is how long before each update the UIP bit is set: t_BUC,
// 244 µs with a 32.768 kHz time base (MC146818A datasheet, "Update Cycle").
// The registers change exactly at the second boundary, so a guest that
// reads while UIP is 0 always gets a consistent time.
const rtcUIPWindow = 244 * time.Microsecond

// rtcMinPeriodicInterval bounds the timer rate of the periodic interrupt
// (8192 Hz at RS = 3 is the chip's fastest).
const rtcMinPeriodicInterval = 122 * time.Microsecond

// RTC is a Motorola MC146818A real-time clock with its 128 bytes of CMOS
// RAM, as wired in the PC/AT: index port 0x70, data port 0x71, IRQ 8.
//
// The time is the host's UTC time plus an offset that changes when the
// guest sets the clock, so nothing ticks in the background. The registers
// follow register B's data mode (BCD or binary) and hour mode (12 or 24)
// whenever they are read, even when the guest changes the mode without
// rewriting the time (the chip would keep the old bytes). Daylight saving
// (DSE) and the divider bits (DV) are stored but have no effect. UIP is set
// during the last rtcUIPWindow of every second.
//
// Interrupts: PF, AF and UF are computed when register C is read (AF by
// comparing the alarm with the time at that moment). While an interrupt is
// enabled in register B and IRQ 8 is wired, a timer also sets the flags at
// the right time and raises IRQ 8; the line stays high until the guest
// reads register C. Without enabled interrupts no timer runs.
type RTC struct {
	mu     sync.Mutex
	clock  Clock
	epoch  time.Time // phase of the periodic interrupt
	irq    irqOutput
	timer  deviceTimer
	closed bool

	index       byte
	nmiDisabled bool
	cmos        [cmosSize]byte // NVRAM and the alarm bytes; time is computed
	offset      time.Duration  // guest time = host UTC + offset
	regA, regB  byte
	regC        byte // flags collected so far
	checked     time.Time

	// held holds clock registers 0x00-0x09 and the century while SET
	// is 1 (updates stopped) so the guest can write them one by one.
	held        [rtcClockRegs]byte
	heldCentury byte
}

// NewRTC returns an RTC reading the host's time from clock (SystemClock in
// production), interrupting through irq8 (nil: not wired). Register it at
// RTCBase (RTCPorts ports). Close it to stop its timer.
func NewRTC(irq8 IRQLine, clock Clock) *RTC {
	now := clock.Now()
	r := &RTC{
		clock:   clock,
		epoch:   now,
		irq:     irqOutput{line: irq8},
		regA:    regADefault,
		regB:    regBReset,
		checked: now,
	}
	r.timer.clock = clock
	return r
}

// Close stops the interrupt timer and waits for a running callback.
func (r *RTC) Close() {
	r.mu.Lock()
	r.closed = true
	r.timer.cancel()
	r.mu.Unlock()
	r.timer.wait()
}

// NMIDisabled reports whether the guest last wrote the index port with bit 7
// set, which masks NMI on the PC/AT. govmm delivers no NMIs from here; this
// is informational.
func (r *RTC) NMIDisabled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nmiDisabled
}

// ReadPort implements PortDevice. The index port is write-only on the
// PC/AT and reads as open bus.
func (r *RTC) ReadPort(offset uint16, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	readBytes(RTCPorts, offset, data, func(off uint16) byte {
		if off == rtcIndexPort {
			return openBus
		}
		return r.readReg(r.index)
	})
}

// WritePort implements PortDevice. A 16-bit write to the index port writes
// the index and then the data, as two byte cycles would.
func (r *RTC) WritePort(offset uint16, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	writeBytes(RTCPorts, offset, data, func(off uint16, v byte) {
		if off == rtcIndexPort {
			r.index = v & rtcIndexMask
			r.nmiDisabled = v&rtcNMIDisable != 0
			return
		}
		r.writeReg(r.index, v)
	})
}

// guestNow returns the guest's current time (UTC).
func (r *RTC) guestNow() time.Time {
	return r.clock.Now().UTC().Add(r.offset)
}

func (r *RTC) readReg(i byte) byte {
	switch {
	case i < rtcClockRegs && isAlarmReg(i):
		return r.cmos[i]
	case i < rtcClockRegs:
		if r.regB&regBSET != 0 {
			return r.held[i]
		}
		return r.encodeTime(r.guestNow())[i]
	case i == RTCCenturyRegister:
		if r.regB&regBSET != 0 {
			return r.heldCentury
		}
		return r.encode(r.guestNow().Year() / rtcYearsInCentury)
	case i == rtcRegA:
		v := r.regA
		if r.regB&regBSET == 0 {
			t := r.guestNow()
			if time.Second-time.Duration(t.Nanosecond()) <= rtcUIPWindow {
				v |= regAUIP
			}
		}
		return v
	case i == rtcRegB:
		return r.regB
	case i == rtcRegC:
		r.collectFlags(r.clock.Now())
		v := r.regC
		r.regC = 0 // reading C clears all flags and the IRQ
		r.irq.set(false)
		return v
	case i == rtcRegD:
		return regDVRT
	}
	return r.cmos[i&rtcIndexMask]
}

func (r *RTC) writeReg(i byte, v byte) {
	switch {
	case i < rtcClockRegs && isAlarmReg(i):
		r.cmos[i] = v
		r.schedule()
	case i < rtcClockRegs:
		r.setField(func(regs *[rtcClockRegs]byte, _ *byte) { regs[i] = v })
	case i == RTCCenturyRegister:
		r.setField(func(_ *[rtcClockRegs]byte, century *byte) { *century = v })
	case i == rtcRegA:
		r.regA = v &^ regAUIP
		r.schedule()
	case i == rtcRegB:
		r.writeRegB(v)
	case i == rtcRegC, i == rtcRegD:
		// Read-only.
	default:
		r.cmos[i&rtcIndexMask] = v
	}
}

// isAlarmReg reports whether clock register i is an alarm byte.
func isAlarmReg(i byte) bool {
	return i == rtcSecondsAlarm || i == rtcMinutesAlarm || i == rtcHoursAlarm
}

// writeRegB handles register B. Setting SET freezes the clock registers
// for the guest to write and clears UIE; clearing SET starts the clock from
// what was written (MC146818A datasheet, "Register B").
func (r *RTC) writeRegB(v byte) {
	oldSet := r.regB&regBSET != 0
	newSet := v&regBSET != 0
	if newSet {
		v &^= regBUIE
	}
	if !oldSet && newSet {
		t := r.guestNow()
		r.held = r.encodeTime(t)
		r.heldCentury = r.encode(t.Year() / rtcYearsInCentury)
	}
	r.regB = v
	if oldSet && !newSet {
		r.commit(r.held, r.heldCentury, 0)
	}
	r.updateIRQ()
	r.schedule()
}

// setField applies a guest write to a clock register or the century. With
// SET, it only changes the held registers; otherwise the clock jumps to the
// time the registers now describe, keeping its position within the second.
func (r *RTC) setField(change func(regs *[rtcClockRegs]byte, century *byte)) {
	if r.regB&regBSET != 0 {
		change(&r.held, &r.heldCentury)
		return
	}
	t := r.guestNow()
	regs := r.encodeTime(t)
	century := r.encode(t.Year() / rtcYearsInCentury)
	change(&regs, &century)
	r.commit(regs, century, time.Duration(t.Nanosecond()))
	r.schedule()
}

// commit makes the time described by the registers the guest's current
// time plus frac. Out-of-range fields are normalised as time.Date does
// (e.g. 31 February is 3 March); the day of week is ignored.
func (r *RTC) commit(regs [rtcClockRegs]byte, century byte, frac time.Duration) {
	hour := r.decodeHours(regs[rtcHours])
	year := r.decode(century)*rtcYearsInCentury + r.decode(regs[rtcYear])
	t := time.Date(year, time.Month(r.decode(regs[rtcMonth])), r.decode(regs[rtcDayOfMonth]),
		hour, r.decode(regs[rtcMinutes]), r.decode(regs[rtcSeconds]), 0, time.UTC)
	// Sub saturates rather than overflows for absurd dates.
	r.offset = t.Add(frac).Sub(r.clock.Now().UTC())
}

// encode formats a value per register B's data mode.
func (r *RTC) encode(v int) byte {
	if r.regB&regBDM != 0 {
		return byte(v)
	}
	return toBCD(v)
}

// decode reads a register value per register B's data mode.
func (r *RTC) decode(v byte) int {
	if r.regB&regBDM != 0 {
		return int(v)
	}
	return fromBCD(v)
}

// encodeHours formats the hour per the data and hour modes. In 12-hour
// mode hours run 1-12 and bit 7 marks PM (MC146818A datasheet, Table 3).
func (r *RTC) encodeHours(h int) byte {
	if r.regB&regB24h != 0 {
		return r.encode(h)
	}
	var pm byte
	if h >= rtcHoursPerHalf {
		pm = rtcHoursPM
	}
	h %= rtcHoursPerHalf
	if h == 0 {
		h = rtcHoursPerHalf
	}
	return r.encode(h) | pm
}

// decodeHours is the inverse of encodeHours.
func (r *RTC) decodeHours(v byte) int {
	if r.regB&regB24h != 0 {
		return r.decode(v)
	}
	h := r.decode(v&^rtcHoursPM) % rtcHoursPerHalf
	if v&rtcHoursPM != 0 {
		h += rtcHoursPerHalf
	}
	return h
}

// encodeTime returns clock registers 0x00-0x09 for t. The alarm bytes are
// left zero; they live in cmos.
func (r *RTC) encodeTime(t time.Time) [rtcClockRegs]byte {
	var regs [rtcClockRegs]byte
	regs[rtcSeconds] = r.encode(t.Second())
	regs[rtcMinutes] = r.encode(t.Minute())
	regs[rtcHours] = r.encodeHours(t.Hour())
	regs[rtcDayOfWeek] = r.encode(int(t.Weekday()) + 1)
	regs[rtcDayOfMonth] = r.encode(t.Day())
	regs[rtcMonth] = r.encode(int(t.Month()))
	regs[rtcYear] = r.encode(t.Year() % rtcYearsInCentury)
	return regs
}

// alarmMatches reports whether the alarm bytes match t (MC146818A
// datasheet, "Alarm"): each of seconds, minutes and hours must equal the
// time register or be a don't-care code.
func (r *RTC) alarmMatches(t time.Time) bool {
	regs := r.encodeTime(t)
	for _, p := range [...][2]int{
		{rtcSecondsAlarm, rtcSeconds},
		{rtcMinutesAlarm, rtcMinutes},
		{rtcHoursAlarm, rtcHours},
	} {
		a := r.cmos[p[0]]
		if a&rtcAlarmDontCare != rtcAlarmDontCare && a != regs[p[1]] {
			return false
		}
	}
	return true
}

// periodicInterval returns the period of the periodic interrupt for
// register A's rate select, 0 if disabled (MC146818A datasheet, Table 5
// "Periodic Interrupt Rate": 32.768 kHz time base).
func (r *RTC) periodicInterval() time.Duration {
	// Rates are 65536 Hz >> RS for RS >= 3; RS 1 and 2 repeat the 256
	// and 128 Hz of RS 8 and 9. RS 0 is off.
	const (
		rateBase    = 65536 // Hz: 32.768 kHz counted on both edges
		rsSlowAlias = 7     // RS 1 and 2 behave as RS 8 and 9
	)
	rs := int(r.regA & regARSMask)
	switch rs {
	case 0:
		return 0
	case 1, 2:
		rs += rsSlowAlias
	}
	return time.Second / time.Duration(rateBase>>rs)
}

// collectFlags sets the flags in register C for the events since the last
// check, up to now (host time).
func (r *RTC) collectFlags(now time.Time) {
	if !now.After(r.checked) {
		return
	}
	if p := r.periodicInterval(); p > 0 {
		if now.Sub(r.epoch)/p != r.checked.Sub(r.epoch)/p {
			r.regC |= regCPF
		}
	}
	if r.regB&regBSET == 0 {
		from := r.checked.UTC().Add(r.offset)
		to := now.UTC().Add(r.offset)
		if from.Unix() != to.Unix() {
			r.regC |= regCUF
			if r.alarmMatches(to) {
				r.regC |= regCAF
			}
		}
	}
	r.checked = now
	r.updateIRQ()
}

// updateIRQ computes IRQF and drives IRQ 8 with it.
func (r *RTC) updateIRQ() {
	// IRQF = PF·PIE + AF·AIE + UF·UIE (MC146818A datasheet, "Register
	// C"). The enables in B sit at the bit positions of the flags in C.
	if r.regB&r.regC&rtcFlagBits != 0 {
		r.regC |= regCIRQF
	} else {
		r.regC &^= regCIRQF
	}
	r.irq.set(r.regC&regCIRQF != 0)
}

// schedule arms the timer for the next interrupt-generating event, or stops
// it when no interrupt is enabled.
func (r *RTC) schedule() {
	r.timer.cancel()
	if r.closed || r.irq.line == nil {
		return
	}
	now := r.clock.Now()
	var wait time.Duration
	if r.regB&regBPIE != 0 {
		if p := r.periodicInterval(); p > 0 {
			p = max(p, rtcMinPeriodicInterval)
			wait = p - now.Sub(r.epoch)%p
		}
	}
	if r.regB&(regBAIE|regBUIE) != 0 && r.regB&regBSET == 0 {
		t := now.UTC().Add(r.offset)
		untilSecond := time.Second - time.Duration(t.Nanosecond())
		if wait == 0 || untilSecond < wait {
			wait = untilSecond
		}
	}
	if wait == 0 {
		return
	}
	r.timer.arm(wait, r.onTimer)
}

// onTimer collects the flags that fell due and re-arms.
func (r *RTC) onTimer(gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || !r.timer.current(gen) {
		return
	}
	r.collectFlags(r.clock.Now())
	r.schedule()
}

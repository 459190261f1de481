package devices

import (
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type rtcHarness struct {
	fc  *devicetest.FakeClock
	irq *devicetest.IRQRecorder
	r   *RTC
}

func newRTCHarness(t *testing.T) *rtcHarness {
	fc := newFakeClock()
	irq := &devicetest.IRQRecorder{}
	r := NewRTC(irq, fc)
	t.Cleanup(r.Close)
	return &rtcHarness{fc: fc, irq: irq, r: r}
}

func (h *rtcHarness) read(i byte) byte {
	out8(h.r, rtcIndexPort, i)
	return in8(h.r, rtcDataPort)
}

func (h *rtcHarness) write(i, v byte) {
	out8(h.r, rtcIndexPort, i)
	out8(h.r, rtcDataPort, v)
}

func (h *rtcHarness) clock() [rtcClockRegs + 1]byte {
	var regs [rtcClockRegs + 1]byte
	for i := range byte(rtcClockRegs) {
		regs[i] = h.read(i)
	}
	regs[rtcClockRegs] = h.read(RTCCenturyRegister)
	return regs
}

// clockRegs lists seconds, minutes, hours, day of week, day, month, year
// and century from a clock() readout.
func clockRegs(r [rtcClockRegs + 1]byte) []byte {
	return []byte{r[rtcSeconds], r[rtcMinutes], r[rtcHours], r[rtcDayOfWeek],
		r[rtcDayOfMonth], r[rtcMonth], r[rtcYear], r[rtcClockRegs]}
}

func TestRTCDefaultBCD24h(t *testing.T) {
	h := newRTCHarness(t)
	// 2024-03-15 13:45:30 UTC, a Friday (day 6 with Sunday = 1).
	assert.Equal(t, []byte{0x30, 0x45, 0x13, 0x06, 0x15, 0x03, 0x24, 0x20}, clockRegs(h.clock()))
	assert.Equal(t, byte(regADefault), h.read(rtcRegA))
	assert.Equal(t, byte(regB24h), h.read(rtcRegB))
	assert.Equal(t, byte(regDVRT), h.read(rtcRegD))
	h.fc.Advance(31 * time.Second)
	assert.Equal(t, []byte{0x01, 0x46, 0x13}, clockRegs(h.clock())[:3])
}

func TestRTCBinaryAnd12HourModes(t *testing.T) {
	h := newRTCHarness(t)
	h.write(rtcRegB, regB24h|regBDM)
	assert.Equal(t, []byte{30, 45, 13, 6, 15, 3, 24, 20}, clockRegs(h.clock()))

	h.write(rtcRegB, regBDM) // binary, 12-hour: 1 PM
	assert.Equal(t, byte(rtcHoursPM|1), h.read(rtcHours))
	h.write(rtcRegB, 0) // BCD, 12-hour
	assert.Equal(t, byte(rtcHoursPM|0x01), h.read(rtcHours))

	h.fc.Advance(10*time.Hour + 14*time.Minute + 30*time.Second) // 00:00:00
	assert.Equal(t, byte(0x12), h.read(rtcHours), "midnight is 12 AM")
	h.fc.Advance(12 * time.Hour) // noon
	assert.Equal(t, byte(rtcHoursPM|0x12), h.read(rtcHours), "noon is 12 PM")
	h.fc.Advance(11 * time.Hour)
	assert.Equal(t, byte(rtcHoursPM|0x11), h.read(rtcHours))
}

func TestRTCSetTimeWithSET(t *testing.T) {
	h := newRTCHarness(t)
	// drivers/rtc/rtc-mc146818-lib.c mc146818_set_time: SET, divider
	// reset, write every field, restore.
	h.write(rtcRegB, regB24h|regBSET|regBUIE)
	assert.Equal(t, byte(regB24h|regBSET), h.read(rtcRegB), "SET clears UIE")
	a := h.read(rtcRegA)
	h.write(rtcRegA, a|0x70)
	h.write(rtcYear, 0x25)
	h.write(rtcMonth, 0x02) // February 31 would normalise if applied field by field
	h.write(rtcDayOfMonth, 0x28)
	h.write(rtcHours, 0x23)
	h.write(rtcMinutes, 0x59)
	h.write(rtcSeconds, 0x58)
	h.write(RTCCenturyRegister, 0x20)
	h.fc.Advance(5 * time.Second)
	assert.Equal(t, byte(0x58), h.read(rtcSeconds), "time held while SET")
	h.write(rtcRegB, regB24h)
	h.write(rtcRegA, a)

	h.fc.Advance(3 * time.Second)
	// 2025-02-28 23:59:58 + 3 s = 2025-03-01 00:00:01, a Saturday.
	assert.Equal(t, []byte{0x01, 0x00, 0x00, 0x07, 0x01, 0x03, 0x25, 0x20}, clockRegs(h.clock()))
}

func TestRTCWriteOneFieldWhileRunning(t *testing.T) {
	h := newRTCHarness(t)
	h.fc.Advance(500 * time.Millisecond)
	h.write(rtcMinutes, 0x00)
	assert.Equal(t, []byte{0x30, 0x00, 0x13}, clockRegs(h.clock())[:3])
	h.fc.Advance(500 * time.Millisecond)
	assert.Equal(t, byte(0x31), h.read(rtcSeconds), "keeps its position within the second")

	h.write(RTCCenturyRegister, 0x21)
	assert.Equal(t, []byte{0x24, 0x21}, clockRegs(h.clock())[6:])
}

func TestRTCUpdateInProgress(t *testing.T) {
	h := newRTCHarness(t)
	assert.Zero(t, h.read(rtcRegA)&regAUIP)
	h.fc.Advance(time.Second - rtcUIPWindow - time.Microsecond)
	assert.Zero(t, h.read(rtcRegA)&regAUIP)
	h.fc.Advance(2 * time.Microsecond)
	assert.NotZero(t, h.read(rtcRegA)&regAUIP)
	assert.Equal(t, byte(0x30), h.read(rtcSeconds), "registers not yet updated")
	h.fc.Advance(rtcUIPWindow)
	assert.Zero(t, h.read(rtcRegA)&regAUIP)
	assert.Equal(t, byte(0x31), h.read(rtcSeconds))

	h.write(rtcRegA, 0xFF)
	assert.Equal(t, byte(0x7F), h.read(rtcRegA), "UIP is read-only")
}

func TestRTCStatusCFlagsWithoutInterrupts(t *testing.T) {
	h := newRTCHarness(t)
	assert.Equal(t, byte(0), h.read(rtcRegC))
	h.fc.Advance(1500 * time.Millisecond)
	c := h.read(rtcRegC)
	assert.Equal(t, byte(regCPF|regCUF), c, "update and periodic flags, no IRQF")
	assert.Equal(t, byte(0), h.read(rtcRegC), "reading C clears it")
	assert.Zero(t, h.fc.Pending(), "no timer without enabled interrupts")
	assert.Empty(t, h.irq.Calls())
}

func TestRTCUpdateEndedInterrupt(t *testing.T) {
	h := newRTCHarness(t)
	h.fc.Advance(300 * time.Millisecond)
	h.read(rtcRegC)
	h.write(rtcRegB, regB24h|regBUIE)
	h.fc.Advance(699 * time.Millisecond)
	assert.False(t, h.irq.Level())
	h.fc.Advance(time.Millisecond)
	assert.True(t, h.irq.Level())
	assert.Equal(t, byte(regCIRQF|regCUF), h.read(rtcRegC)&(regCIRQF|regCUF))
	assert.False(t, h.irq.Level(), "reading C lowers IRQ 8")
	h.fc.Advance(time.Second)
	assert.True(t, h.irq.Level())
	assert.Equal(t, 2, h.irq.RisingEdges())

	h.write(rtcRegB, regB24h)
	assert.False(t, h.irq.Level(), "disabling UIE drops IRQF")
	assert.Zero(t, h.fc.Pending())
}

func TestRTCAlarmInterrupt(t *testing.T) {
	h := newRTCHarness(t)
	h.write(rtcSecondsAlarm, 0x35)
	h.write(rtcMinutesAlarm, rtcAlarmDontCare)
	h.write(rtcHoursAlarm, 0x13)
	assert.Equal(t, byte(0x35), h.read(rtcSecondsAlarm))
	h.write(rtcRegB, regB24h|regBAIE)
	h.fc.Advance(4 * time.Second)
	assert.False(t, h.irq.Level())
	h.fc.Advance(time.Second) // 13:45:35
	assert.True(t, h.irq.Level())
	c := h.read(rtcRegC)
	assert.Equal(t, byte(regCIRQF|regCAF), c&(regCIRQF|regCAF))
	h.fc.Advance(59 * time.Second)
	assert.False(t, h.irq.Level())
	h.fc.Advance(time.Second) // 13:46:35: minutes are don't-care
	assert.True(t, h.irq.Level())
}

func TestRTCPeriodicInterrupt(t *testing.T) {
	h := newRTCHarness(t)
	h.write(rtcRegA, 0x20|0x0F) // 2 Hz
	h.write(rtcRegB, regB24h|regBPIE)
	for range 4 {
		h.fc.Advance(500 * time.Millisecond)
		require.True(t, h.irq.Level())
		assert.Equal(t, byte(regCIRQF|regCPF), h.read(rtcRegC)&(regCIRQF|regCPF))
	}
	assert.Equal(t, 4, h.irq.RisingEdges())
	h.write(rtcRegA, 0x20) // RS = 0: off
	assert.Zero(t, h.fc.Pending())
}

func TestRTCNVRAMAndIndexPort(t *testing.T) {
	h := newRTCHarness(t)
	h.write(0x40, 0xAB)
	h.write(0x7F, 0xCD)
	assert.Equal(t, byte(0xAB), h.read(0x40))
	assert.Equal(t, byte(0xCD), h.read(0x7F))
	out8(h.r, rtcIndexPort, rtcNMIDisable|0x40)
	assert.Equal(t, byte(0xAB), in8(h.r, rtcDataPort), "bit 7 of the index masks NMI, not a register bit")
	assert.True(t, h.r.NMIDisabled())
	assert.Equal(t, byte(openBus), in8(h.r, rtcIndexPort))

	// A 16-bit OUT to 0x70 writes the index, then the data.
	h.r.WritePort(rtcIndexPort, []byte{0x41, 0x99})
	assert.Equal(t, byte(0x99), h.read(0x41))

	h.write(rtcRegC, 0xFF)
	h.write(rtcRegD, 0x00)
	assert.Equal(t, byte(regDVRT), h.read(rtcRegD), "C and D are read-only")
}

func TestRTCCloseStopsTimer(t *testing.T) {
	h := newRTCHarness(t)
	h.write(rtcRegB, regB24h|regBUIE)
	require.Equal(t, 1, h.fc.Pending())
	h.r.Close()
	assert.Zero(t, h.fc.Pending())
	h.write(rtcRegB, regB24h|regBUIE|regBPIE)
	assert.Zero(t, h.fc.Pending())
}

func TestRTCAbsurdTimesDoNotPanic(t *testing.T) {
	h := newRTCHarness(t)
	h.write(rtcRegB, regB24h|regBSET)
	for i := range byte(rtcClockRegs) {
		h.write(i, 0xFF)
	}
	h.write(RTCCenturyRegister, 0xFF)
	h.write(rtcRegB, regB24h)
	h.clock()
	h.write(rtcRegB, regBDM)
	h.write(rtcHours, 0)
	h.clock()
}

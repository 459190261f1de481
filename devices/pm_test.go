package devices

import (
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
)

type pmHarness struct {
	fc    *devicetest.FakeClock
	sci   *devicetest.IRQRecorder
	power *powerLog
	pm    *PM
	evt   PortDevice
	cnt   PortDevice
	tmr   PortDevice
}

func newPMHarness() *pmHarness {
	h := &pmHarness{fc: newFakeClock(), sci: &devicetest.IRQRecorder{}, power: &powerLog{}}
	h.pm = NewPM(PMConfig{SCI: h.sci, Power: h.power.handler(), S5SleepType: DefaultS5SleepType, Clock: h.fc})
	h.evt, h.cnt, h.tmr = h.pm.EventBlock(), h.pm.ControlBlock(), h.pm.Timer()
	return h
}

func in16(d PortDevice, off uint16) uint16 {
	b := []byte{0, 0}
	d.ReadPort(off, b)
	return uint16(b[0]) | uint16(b[1])<<8
}

func out16(d PortDevice, off, v uint16) { d.WritePort(off, []byte{byte(v), byte(v >> 8)}) }

func in32(d PortDevice, off uint16) uint32 {
	b := []byte{0, 0, 0, 0}
	d.ReadPort(off, b)
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func TestPMSoftOff(t *testing.T) {
	h := newPMHarness()
	assert.Equal(t, uint16(pm1CntSCIEnable), in16(h.cnt, 0), "already in ACPI mode")

	// ACPICA acpi_hw_legacy_sleep: write SLP_TYP, then SLP_TYP|SLP_EN.
	typ := uint16(DefaultS5SleepType) << pm1CntSleepShift
	out16(h.cnt, 0, typ)
	assert.Empty(t, h.power.get())
	assert.Equal(t, typ|pm1CntSCIEnable, in16(h.cnt, 0))
	out16(h.cnt, 0, typ|pm1CntSleepEn)
	assert.Equal(t, []powerCall{{PowerOff, "ACPI S5"}}, h.power.get())
	assert.Zero(t, in16(h.cnt, 0)&pm1CntSleepEn, "SLP_EN is write-only")

	// A byte write to the high half works as well.
	out8(h.cnt, 1, byte((typ|pm1CntSleepEn)>>8))
	assert.Len(t, h.power.get(), 2)
}

func TestPMOtherSleepStatesAreIgnored(t *testing.T) {
	captureLogs(t)
	h := newPMHarness()
	const s3 = 1
	out16(h.cnt, 0, s3<<pm1CntSleepShift|pm1CntSleepEn)
	assert.Empty(t, h.power.get())
	out16(h.cnt, 0, DefaultS5SleepType<<pm1CntSleepShift) // no SLP_EN
	assert.Empty(t, h.power.get())
}

func TestPMTimer(t *testing.T) {
	h := newPMHarness()
	assert.Equal(t, uint32(0), in32(h.tmr, 0))
	h.fc.Advance(time.Second)
	assert.Equal(t, uint32(PMTimerFrequency), in32(h.tmr, 0))
	assert.Equal(t, uint16(PMTimerFrequency&0xFFFF), in16(h.tmr, 0))
	assert.Equal(t, byte(PMTimerFrequency>>16), in8(h.tmr, 2))
	h.tmr.WritePort(0, []byte{0, 0, 0, 0})
	assert.Equal(t, uint32(PMTimerFrequency), in32(h.tmr, 0), "read-only")
	assert.True(t, PMTimer32Bit)

	// TMR_STS: set when bit 31 toggles, about every 10 minutes.
	assert.Zero(t, in16(h.evt, 0)&pm1TimerStatus)
	toggle := durationOfTicks(1<<pmTimerMSBShift, PMTimerFrequency)
	h.fc.Advance(toggle - time.Second)
	assert.NotZero(t, in32(h.tmr, 0)&(1<<31))
	assert.NotZero(t, in16(h.evt, 0)&pm1TimerStatus)
	out16(h.evt, 0, pm1TimerStatus)
	assert.Zero(t, in16(h.evt, 0)&pm1TimerStatus, "write 1 to clear")
	h.fc.Advance(toggle)
	assert.Zero(t, in32(h.tmr, 0)&(1<<31), "wrapped")
	assert.NotZero(t, in16(h.evt, 0)&pm1TimerStatus)
}

func TestPMPowerButtonSCI(t *testing.T) {
	h := newPMHarness()
	h.pm.PressPowerButton()
	assert.Equal(t, uint16(pm1PowerButton), in16(h.evt, 0))
	assert.False(t, h.sci.Level(), "not enabled")

	out16(h.evt, 2, pm1PowerButton) // PM1_EN
	assert.Equal(t, uint16(pm1PowerButton), in16(h.evt, 2))
	assert.True(t, h.sci.Level(), "SCI is level triggered: high while enabled status is set")
	assert.Equal(t, uint32(pm1PowerButton)|uint32(pm1PowerButton)<<16, in32(h.evt, 0))

	out16(h.evt, 0, 0) // writing 0 clears nothing
	assert.True(t, h.sci.Level())
	out8(h.evt, 1, pm1PowerButton>>8) // byte write to the status high half
	assert.False(t, h.sci.Level())
	assert.Zero(t, in16(h.evt, 0))

	// Enable bits outside the defined set do not stick.
	out16(h.evt, 2, 0xFFFF)
	assert.Equal(t, uint16(pm1EnableBits), in16(h.evt, 2))
	data := []byte{0, 0, 0, 0}
	h.evt.ReadPort(3, data)
	assert.Equal(t, []byte{byte(pm1EnableBits >> 8), 0xFF, 0xFF, 0xFF}, data)
}

func TestPMDefaultClock(t *testing.T) {
	pm := NewPM(PMConfig{})
	a := in32(pm.Timer(), 0)
	time.Sleep(time.Millisecond)
	assert.NotEqual(t, a, in32(pm.Timer(), 0), "counts with the system clock")
	out16(pm.ControlBlock(), 0, DefaultS5SleepType<<pm1CntSleepShift|pm1CntSleepEn) // nil handler
}

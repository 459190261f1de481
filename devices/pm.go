package devices

import (
	"log/slog"
	"sync"
	"time"
)

// The ACPI fixed-hardware power-management resources that govmm exposes.
// The ACPI table builder puts these values in the FADT and DSDT and the
// machine registers the devices at them, so both use these constants.
const (
	// DefaultPM1aEventPort is the PM1a event block (FADT PM1a_EVT_BLK):
	// PM1_STS at +0 and PM1_EN at +2.
	DefaultPM1aEventPort uint16 = 0x600
	// PM1EventBlockLen is FADT PM1_EVT_LEN: two 16-bit registers.
	PM1EventBlockLen uint16 = 4
	// DefaultPM1aControlPort is the PM1a control block (FADT
	// PM1a_CNT_BLK): PM1_CNT.
	DefaultPM1aControlPort uint16 = 0x604
	// PM1ControlBlockLen is FADT PM1_CNT_LEN.
	PM1ControlBlockLen uint16 = 2
	// DefaultPMTimerPort is the power management timer (FADT PM_TMR_BLK).
	DefaultPMTimerPort uint16 = 0x608
	// PMTimerBlockLen is FADT PM_TMR_LEN.
	PMTimerBlockLen uint16 = 4
	// DefaultS5SleepType is the SLP_TYPx value for S5 (soft off): the
	// DSDT's \_S5 package must hold this value.
	DefaultS5SleepType = 5
	// SCIIRQ is the ISA IRQ of the System Control Interrupt (FADT
	// SCI_INT). The SCI is level triggered (ACPI 6.5 §5.2.9, SCI_INT);
	// declare it "level, active high" in the MADT interrupt source
	// override as QEMU does, since the line is asserted by driving it
	// high.
	SCIIRQ = 9
	// PMTimerFrequency is the PM timer's rate: 3.579545 MHz, the NTSC
	// colour burst frequency (ACPI 6.5 §4.8, "Power Management Timer").
	PMTimerFrequency = 3579545
	// PMTimer32Bit reports that the PM timer counts in 32 bits, so the
	// FADT must set the TMR_VAL_EXT flag (ACPI 6.5 §5.2.9, Table 5.10).
	PMTimer32Bit = true
)

// PM1_STS and PM1_EN bits (ACPI 6.5, Tables 4.11 and 4.12). Status bits
// are cleared by writing 1 to them.
const (
	pm1TimerStatus     = 1 << 0  // TMR_STS / TMR_EN: the PM timer's MSB toggled
	pm1BusMasterStatus = 1 << 4  // BM_STS (never set: no bus masters)
	pm1GlobalStatus    = 1 << 5  // GBL_STS / GBL_EN: BIOS released the global lock
	pm1PowerButton     = 1 << 8  // PWRBTN_STS / PWRBTN_EN: fixed power button
	pm1SleepButton     = 1 << 9  // SLPBTN_STS / SLPBTN_EN: fixed sleep button
	pm1RTCStatus       = 1 << 10 // RTC_STS / RTC_EN: RTC alarm wake
	pm1PCIExpWake      = 1 << 14 // PCIEXP_WAKE_STS / PCIEXP_WAKE_DIS
	pm1WakeStatus      = 1 << 15 // WAK_STS: the system woke from a sleep state
	pm1StatusBits      = pm1TimerStatus | pm1BusMasterStatus | pm1GlobalStatus | pm1PowerButton |
		pm1SleepButton | pm1RTCStatus | pm1PCIExpWake | pm1WakeStatus
	pm1EnableBits = pm1TimerStatus | pm1GlobalStatus | pm1PowerButton | pm1SleepButton |
		pm1RTCStatus | pm1PCIExpWake
	// pm1SCIEvents are the events that raise the SCI when enabled.
	pm1SCIEvents = pm1TimerStatus | pm1GlobalStatus | pm1PowerButton | pm1SleepButton | pm1RTCStatus
)

// PM1 event block layout: PM1_STS in the first half, PM1_EN in the second
// (ACPI 6.5 §4.8, "PM1 Event Grouping").
const (
	pm1EnableShift = 16
	pm1RegMask     = 0xFFFF
)

// PM1_CNT bits (ACPI 6.5, Table 4.13).
const (
	pm1CntSCIEnable  = 1 << 0 // SCI_EN: the SCI, not the SMI, signals power events
	pm1CntBMReload   = 1 << 1 // BM_RLD (stored only)
	pm1CntGlobalRls  = 1 << 2 // GBL_RLS: write-only, asks the BIOS for the global lock (ignored)
	pm1CntSleepShift = 10     // SLP_TYPx, bits 10-12: the sleep state to enter
	pm1CntSleepMask  = 0x7 << pm1CntSleepShift
	pm1CntSleepEn    = 1 << 13 // SLP_EN: write-only, enters the SLP_TYPx state
	pm1CntStored     = pm1CntBMReload | pm1CntSleepMask
)

// pmTimerMask keeps the PM timer to its width.
const pmTimerMask = 1<<32 - 1

// pmTimerMSBShift is the position of the PM timer's top bit; TMR_STS is set
// when it toggles.
const pmTimerMSBShift = 31

// PMConfig configures NewPM.
type PMConfig struct {
	// SCI is the System Control Interrupt line (IRQ SCIIRQ; nil: not
	// wired).
	SCI IRQLine
	// Power receives PowerOff when the guest enters S5.
	Power PowerHandler
	// S5SleepType is the SLP_TYPx value the DSDT's \_S5 object gives;
	// normally DefaultS5SleepType.
	S5SleepType uint8
	// Clock runs the PM timer; nil means SystemClock.
	Clock Clock
}

// PM is the ACPI fixed-hardware power-management register set of a
// "legacy" (not hardware-reduced) ACPI platform (ACPI 6.5 §4.8): the PM1a
// event block, the PM1a control block and the PM timer.
//
// There is no SMI and no legacy mode: SCI_EN always reads 1, so with the
// FADT's SMI_CMD set to 0 the OS finds the machine already in ACPI mode
// (ACPI 6.5 §4.8, "Legacy/ACPI Select and the SCI Interrupt"). Writing
// SLP_EN with SLP_TYPx equal to the S5 sleep type powers the machine off;
// other sleep states are not supported and such writes are ignored (and
// logged). PressPowerButton sets PWRBTN_STS, so a guest that enabled it
// gets an SCI and shuts down cleanly. TMR_STS is computed when PM1_STS is
// read; the timer-overflow SCI is not generated in the background.
type PM struct {
	mu     sync.Mutex
	clock  Clock
	epoch  time.Time
	sci    irqOutput
	power  PowerHandler
	s5     uint16
	status uint16 // PM1_STS, except TMR_STS
	enable uint16 // PM1_EN
	cnt    uint16 // PM1_CNT stored bits
	// tmrCleared is the PM timer tick at which TMR_STS was last cleared.
	tmrCleared uint64
}

// NewPM returns the PM registers. Register EventBlock at the PM1a event
// port (PM1EventBlockLen ports), ControlBlock at the PM1a control port
// (PM1ControlBlockLen) and Timer at the PM timer port (PMTimerBlockLen).
func NewPM(cfg PMConfig) *PM {
	clock := cfg.Clock
	if clock == nil {
		clock = SystemClock
	}
	return &PM{
		clock: clock,
		epoch: clock.Now(),
		sci:   irqOutput{line: cfg.SCI},
		power: cfg.Power,
		s5:    uint16(cfg.S5SleepType),
	}
}

// EventBlock returns the PM1a event block device (PM1_STS, PM1_EN).
func (pm *PM) EventBlock() PortDevice { return (*pmEventBlock)(pm) }

// ControlBlock returns the PM1a control block device (PM1_CNT).
func (pm *PM) ControlBlock() PortDevice { return (*pmControlBlock)(pm) }

// Timer returns the PM timer device (PM_TMR, read-only).
func (pm *PM) Timer() PortDevice { return (*pmTimer)(pm) }

// PressPowerButton presses the ACPI fixed power button: it sets PWRBTN_STS,
// which raises the SCI if the guest enabled PWRBTN_EN. Guests with an ACPI
// button driver then shut down (Linux: drivers/acpi/button.c, with the
// event handled by systemd-logind or acpid).
func (pm *PM) PressPowerButton() {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.status |= pm1PowerButton
	pm.updateSCI()
}

// ticks returns the PM timer's free-running count.
func (pm *PM) ticks() uint64 {
	return ticksIn(pm.clock.Now().Sub(pm.epoch), PMTimerFrequency)
}

// statusReg returns PM1_STS, with TMR_STS set if the timer's MSB toggled
// since TMR_STS was last cleared.
func (pm *PM) statusReg() uint16 {
	s := pm.status
	if pm.ticks()>>pmTimerMSBShift != pm.tmrCleared>>pmTimerMSBShift {
		s |= pm1TimerStatus
	}
	return s
}

// updateSCI drives the SCI: enabled events with their status set.
func (pm *PM) updateSCI() {
	pm.sci.set(pm.statusReg()&pm.enable&pm1SCIEvents != 0)
}

// accessMask converts an access of len(data) bytes at offset into a block
// of size bytes into the affected byte lanes of a little-endian register
// image: mask has 0xFF in each lane inside the block.
func accessMask(size, offset uint16, n int) (mask uint32) {
	for i := range n {
		lane := int(offset) + i
		if lane < int(size) {
			mask |= 0xFF << (bitsPerByte * lane)
		}
	}
	return mask
}

// readImage fills data from a little-endian register image of a block of
// size bytes; lanes past the block read as open bus.
func readImage(img uint32, size, offset uint16, data []byte) {
	readBytes(size, offset, data, func(off uint16) byte { return byte(img >> (bitsPerByte * off)) })
}

// writeImage returns the little-endian image of the bytes data writes at
// offset, and the mask of the lanes it writes.
func writeImage(size, offset uint16, data []byte) (val, mask uint32) {
	writeBytes(size, offset, data, func(off uint16, v byte) { val |= uint32(v) << (bitsPerByte * off) })
	return val, accessMask(size, offset, len(data))
}

type (
	pmEventBlock   PM
	pmControlBlock PM
	pmTimer        PM
)

// ReadPort reads PM1_STS and PM1_EN.
func (b *pmEventBlock) ReadPort(offset uint16, data []byte) {
	pm := (*PM)(b)
	pm.mu.Lock()
	defer pm.mu.Unlock()
	img := uint32(pm.statusReg()) | uint32(pm.enable)<<pm1EnableShift
	readImage(img, PM1EventBlockLen, offset, data)
}

// WritePort writes PM1_STS (1 clears a status bit) and PM1_EN.
func (b *pmEventBlock) WritePort(offset uint16, data []byte) {
	pm := (*PM)(b)
	pm.mu.Lock()
	defer pm.mu.Unlock()
	val, mask := writeImage(PM1EventBlockLen, offset, data)
	clear := uint16(val&mask) & pm1StatusBits // PM1_STS is the low half
	if clear&pm1TimerStatus != 0 {
		pm.tmrCleared = pm.ticks()
	}
	pm.status &^= clear
	enMask := uint16(mask >> pm1EnableShift & pm1RegMask)
	enVal := uint16(val >> pm1EnableShift & pm1RegMask)
	pm.enable = (pm.enable&^enMask | enVal&enMask) & pm1EnableBits
	pm.updateSCI()
}

// ReadPort reads PM1_CNT. SCI_EN always reads 1; SLP_EN and GBL_RLS are
// write-only and read 0.
func (b *pmControlBlock) ReadPort(offset uint16, data []byte) {
	pm := (*PM)(b)
	pm.mu.Lock()
	defer pm.mu.Unlock()
	readImage(uint32(pm.cnt|pm1CntSCIEnable), PM1ControlBlockLen, offset, data)
}

// WritePort writes PM1_CNT; SLP_EN with the S5 sleep type powers off.
func (b *pmControlBlock) WritePort(offset uint16, data []byte) {
	pm := (*PM)(b)
	pm.mu.Lock()
	val, mask := writeImage(PM1ControlBlockLen, offset, data)
	m, v := uint16(mask), uint16(val)
	pm.cnt = (pm.cnt&^m | v&m) & pm1CntStored
	sleep := m&pm1CntSleepEn != 0 && v&pm1CntSleepEn != 0
	slpTyp := pm.cnt & pm1CntSleepMask >> pm1CntSleepShift
	powerOff := sleep && slpTyp == pm.s5
	power := pm.power
	pm.mu.Unlock()

	switch {
	case powerOff:
		if power != nil {
			power(PowerOff, "ACPI S5")
		}
	case sleep:
		slog.Warn("acpi: guest asked for an unsupported sleep state; ignored", "SLP_TYP", slpTyp)
	}
}

// ReadPort reads the PM timer.
func (t *pmTimer) ReadPort(offset uint16, data []byte) {
	pm := (*PM)(t)
	pm.mu.Lock()
	defer pm.mu.Unlock()
	readImage(uint32(pm.ticks()&pmTimerMask), PMTimerBlockLen, offset, data)
}

// WritePort ignores writes: the PM timer is read-only.
func (t *pmTimer) WritePort(offset uint16, data []byte) {}

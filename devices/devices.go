// Package devices emulates the legacy PC platform devices that govmm handles
// in userspace: the I/O-port bus that dispatches the guest's IN and OUT
// instructions, the 16550A UART behind the serial console, the Intel 8254
// programmable interval timer (with system control port B at 0x61), the
// MC146818 CMOS real-time clock, the Intel 8042 keyboard controller, the ACPI
// fixed-hardware power-management registers and the 0xCF9 reset control
// register. The interrupt controllers (8259 PIC, IOAPIC, local APICs) are not
// here: KVM emulates them in the kernel (KVM_CREATE_IRQCHIP), and the devices
// reach them through IRQLine.
//
// Every device is driven by vCPU goroutines that exit to userspace on port
// I/O, and some also by host goroutines (timers, the console's stdin reader),
// so each device serialises its state with one mutex. The guest is untrusted:
// any port may be read or written with any size in any order, and no guest
// input makes a device panic.
package devices

import "fmt"

// PortDevice is a device on the x86 I/O-port bus. offset is relative to the
// base the device was registered at; len(data) is 1, 2 or 4.
//
// A read must fill all of data. Devices must accept any offset inside the
// range they were registered with and any length, including accesses that
// run past the end of their range (the bus dispatches an access by its first
// port).
type PortDevice interface {
	ReadPort(offset uint16, data []byte)
	WritePort(offset uint16, data []byte)
}

// IRQLine is one interrupt request line into the platform interrupt
// controllers (KVM_IRQ_LINE on a GSI). SetLevel(true) asserts it. For
// edge-triggered ISA lines a pulse is SetLevel(true) then SetLevel(false).
type IRQLine interface{ SetLevel(high bool) }

// PowerEvent is a request from the guest to end or restart the machine.
type PowerEvent int

// The power events a guest can request.
const (
	// PowerOff asks to turn the machine off (ACPI S5 "soft off").
	PowerOff PowerEvent = iota + 1
	// Reset asks to restart the machine, as the reset button would.
	Reset
)

// String returns a lower-case name for the event, for logs.
func (e PowerEvent) String() string {
	switch e {
	case PowerOff:
		return "power off"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("PowerEvent(%d)", int(e))
}

// PowerHandler receives power events; reason says which device/mechanism
// (e.g. "ACPI S5", "i8042 reset", "port 0xCF9 reset").
//
// Devices call it from the goroutine of the vCPU whose port write asked for
// the event, with no device lock held. It must not block for long: typically
// it records the event and makes the vCPUs stop.
type PowerHandler func(ev PowerEvent, reason string)

// openBus is what a read returns for bits that no device drives: the ISA data
// lines are pulled up, so an unanswered read floats to all ones (IBM PC/AT
// Technical Reference, "I/O Channel"). Linux relies on it, e.g. the 8250
// driver treats an all-ones LSR as "no UART here".
const openBus = 0xFF

// bitsPerByte is the width of one I/O port: registers wider than a byte
// span consecutive ports, least significant byte first.
const bitsPerByte = 8

// Packed BCD (binary-coded decimal) stores one decimal digit per 4-bit
// nibble, as the 8254 (BCD counting) and the MC146818 (DM = 0) do.
const (
	bcdDigitBits = 4
	bcdDigitMask = 0xF
	decimalBase  = 10
)

// toBCD returns v (0-99) as two packed BCD digits.
func toBCD(v int) byte {
	return byte((v/decimalBase)%decimalBase<<bcdDigitBits | v%decimalBase)
}

// fromBCD returns the value of two packed BCD digits. Nibbles above 9 are
// not BCD; they are taken at face value, never rejected.
func fromBCD(v byte) int {
	return int(v>>bcdDigitBits)*decimalBase + int(v&bcdDigitMask)
}

// decodeBCD16 returns the value of four packed BCD digits, taking invalid
// nibbles at face value.
func decodeBCD16(v uint16) uint32 {
	var r uint32
	for shift := 16 - bcdDigitBits; shift >= 0; shift -= bcdDigitBits {
		r = r*decimalBase + uint32(v>>shift)&bcdDigitMask
	}
	return r
}

// encodeBCD16 returns v (below 10000) as four packed BCD digits.
func encodeBCD16(v uint32) uint16 {
	var r uint16
	for shift := 0; shift < 16; shift += bcdDigitBits {
		r |= uint16(v%decimalBase) << shift
		v /= decimalBase
	}
	return r
}

// fillOpenBus makes data read as an unanswered bus cycle.
func fillOpenBus(data []byte) {
	for i := range data {
		data[i] = openBus
	}
}

// readBytes performs a read of len(data) bytes at offset from a device with
// 8-bit registers, as the consecutive byte reads at increasing ports that
// the ISA bus turns a 16- or 32-bit cycle to an 8-bit device into (IBM PC/AT
// Technical Reference: the bus controller splits a 16-bit transfer to an
// 8-bit device into two 8-bit transfers). Bytes past the device's size ports
// read as open bus.
func readBytes(size, offset uint16, data []byte, read func(off uint16) byte) {
	for i := range data {
		off := uint32(offset) + uint32(i)
		if off >= uint32(size) {
			data[i] = openBus
			continue
		}
		data[i] = read(uint16(off))
	}
}

// writeBytes is the write counterpart of readBytes: bytes are written to
// consecutive ports, and bytes past the device's size ports are dropped.
func writeBytes(size, offset uint16, data []byte, write func(off uint16, v byte)) {
	for i, v := range data {
		off := uint32(offset) + uint32(i)
		if off >= uint32(size) {
			return
		}
		write(uint16(off), v)
	}
}

// irqOutput is a device's interrupt output pin: it remembers the level it
// last drove so that the (costly, it is an ioctl) IRQLine.SetLevel happens
// only on changes. A nil line means the pin is not wired. The owning device's
// mutex guards it.
type irqOutput struct {
	line  IRQLine
	level bool
}

// set drives the pin to high, calling the line only if the level changes.
func (o *irqOutput) set(high bool) {
	if o.line == nil || o.level == high {
		return
	}
	o.level = high
	o.line.SetLevel(high)
}

// pulse drives a rising then a falling edge: one interrupt on an
// edge-triggered ISA line. The pin is left low.
func (o *irqOutput) pulse() {
	if o.line == nil {
		return
	}
	if !o.level {
		o.line.SetLevel(true)
	}
	o.line.SetLevel(false)
	o.level = false
}

package pci

import (
	"fmt"
	"sync"

	"github.com/govmm/govmm/devices"
)

// Pin is an INTx# interrupt pin, encoded as in the Interrupt Pin register
// (PCI 3.0 §6.2.4): 0 for none, 1 to 4 for INTA# to INTD#.
type Pin uint8

// The interrupt pins.
const (
	PinNone Pin = iota
	PinINTA
	PinINTB
	PinINTC
	PinINTD
)

// numPins is the number of INTx# pins a device can have.
const numPins = 4

// String returns the pin's signal name.
func (p Pin) String() string {
	switch p {
	case PinNone:
		return "none"
	case PinINTA, PinINTB, PinINTC, PinINTD:
		return fmt.Sprintf("INT%c#", 'A'+rune(p-PinINTA))
	}
	return fmt.Sprintf("Pin(%d)", uint8(p))
}

// INTx routing.
//
// The four INTx# lines of bus 0 are wired to I/O APIC inputs 16-19, as
// the PIRQE#-PIRQH# lines of Intel's ICH chipsets can be, rather than to
// the 8259-visible IRQs 10 and 11 that QEMU's i440FX shares:
//   - GSIs 16-23 exist only on the I/O APIC (KVM's default routing sends
//     GSIs 0-15 to both the 8259s and the I/O APIC, 16-23 to the I/O APIC
//     alone), so PCI interrupts never share a line with an ISA device and
//     need no ISA-compatible edge/level juggling (ELCR) or interrupt
//     router ($PIR, ACPI PCI link devices).
//   - They can be level-triggered and active-low, as PCI requires (PCI 3.0
//     §2.2.6: INTx# are level-sensitive, asserted low), while ISA IRQs are
//     edge-triggered and active-high.
//
// The cost is that a guest without an I/O APIC (booted with "noapic")
// cannot use INTx, which it could not use with MSI-X either; govmm guests
// use the I/O APIC.
//
// Describe the lines as level-triggered, active-low: in the MP table,
// I/O interrupt entries with flags mptable.LevelTriggered|mptable.ActiveLow
// (or "conforming", which for a PCI bus means the same, MP spec 1.4
// §4.3.4); in the DSDT, _PRT entries with Source 0 and Source Index the
// GSI, which Linux registers as level-triggered, active-low (drivers/acpi/
// pci_irq.c, acpi_pci_irq_enable). KVM's I/O APIC models the line's
// logical state, not its voltage: it ignores the polarity bit of the
// redirection entry and treats KVM_IRQ_LINE level 1 as asserted
// (arch/x86/kvm/ioapic.c), so the machine drives 1 for "asserted".
const (
	// INTxGSIBase is the I/O APIC input of the first INTx line.
	INTxGSIBase = 16
	// NumINTxGSIs is the number of INTx lines, one per pin of a slot.
	NumINTxGSIs = numPins
)

// INTxGSI returns the I/O APIC input (GSI) that pin of the device in slot
// drives, and false for PinNone or an invalid slot or pin.
//
// Devices are spread over the four lines with the standard swizzle of the
// PCI-to-PCI Bridge Architecture Specification 1.2 (§9.1, Table 9-1),
// which firmware also applies to slots on a root bus: pin p (1 = INTA#) of
// the device in slot s is on line (s + p - 1) mod 4. So the INTA# of slots
// 0, 1, 2, 3 are on GSIs 16, 17, 18, 19, and single-function devices,
// which almost always use INTA#, do not all share one line.
func INTxGSI(slot int, pin Pin) (gsi uint32, ok bool) {
	if slot < 0 || slot >= MaxSlots || pin < PinINTA || pin > PinINTD {
		return 0, false
	}
	return INTxGSIBase + uint32((slot+int(pin)-1)%NumINTxGSIs), true
}

// INTxRoute is where one INTx# pin of one slot is wired: an entry of the
// ACPI _PRT (ACPI 6.5 §6.2.13) and of the MP table (MP spec 1.4 §4.3.4).
type INTxRoute struct {
	Slot int
	Pin  Pin
	GSI  uint32
}

// PRT field encodings (ACPI 6.5 §6.2.13, Table 6.25).
const (
	// prtAllFunctions in the low word of a _PRT Address means "any
	// function of the device".
	prtAllFunctions = 0xFFFF
	prtSlotShift    = 16
	// mpSlotShift places the device number in an MP table source bus IRQ
	// for a PCI bus: bits 6:2 the device, bits 1:0 the pin, 0 = INTA#, the
	// encoding Linux reads and writes (arch/x86/kernel/mpparse.c;
	// arch/x86/kernel/acpi/boot.c, mp_config_acpi_gsi).
	mpSlotShift = 2
)

// PRTAddress returns the _PRT entry's Address field: the device number in
// the high word, 0xFFFF (all functions) in the low word.
func (r INTxRoute) PRTAddress() uint32 { return uint32(r.Slot)<<prtSlotShift | prtAllFunctions }

// PRTPin returns the _PRT entry's Pin field: 0 for INTA# to 3 for INTD#.
func (r INTxRoute) PRTPin() uint8 { return uint8(r.Pin - PinINTA) }

// MPSourceIRQ returns the MP table I/O interrupt entry's Source Bus IRQ:
// the device number in bits 6:2, the pin (0 = INTA#) in bits 1:0.
func (r INTxRoute) MPSourceIRQ() uint8 { return uint8(r.Slot)<<mpSlotShift | uint8(r.Pin-PinINTA) }

// INTxRoutingTable returns the route of every pin of every slot of bus 0,
// by slot then pin: the complete _PRT of the host bridge, which describes
// the wiring rather than the devices present.
func INTxRoutingTable() []INTxRoute {
	routes := make([]INTxRoute, 0, MaxSlots*numPins)
	for slot := range MaxSlots {
		for pin := PinINTA; pin <= PinINTD; pin++ {
			gsi, _ := INTxGSI(slot, pin)
			routes = append(routes, INTxRoute{Slot: slot, Pin: pin, GSI: gsi})
		}
	}
	return routes
}

// intxRouter is the wired OR of the PCI interrupt lines: any number of
// pins share each GSI, and the GSI is asserted while at least one of them
// is (PCI 3.0 §2.2.6: INTx# are open-drain, shared, level-sensitive). KVM
// cannot do the OR itself, since all of userspace is one interrupt source
// to KVM_IRQ_LINE.
type intxRouter struct {
	mu       sync.Mutex
	lines    [NumINTxGSIs]devices.IRQLine
	asserted [NumINTxGSIs]int // pins asserting each line
}

// newINTxRouter wires the lines to irq(gsi); a nil irq leaves INTx
// unconnected.
func newINTxRouter(irq func(gsi uint32) devices.IRQLine) *intxRouter {
	r := &intxRouter{}
	if irq != nil {
		for i := range r.lines {
			r.lines[i] = irq(INTxGSIBase + uint32(i))
		}
	}
	return r
}

// pin returns the input of one device's pin into the OR for gsi.
func (r *intxRouter) pin(gsi uint32) devices.IRQLine {
	return &intxPin{router: r, line: int(gsi - INTxGSIBase)}
}

// intxPin is one device pin's input into the shared line; the router's
// lock guards it.
type intxPin struct {
	router *intxRouter
	line   int
	high   bool
}

// SetLevel asserts or deasserts this pin, changing the GSI's level only
// when the first pin asserts it or the last one releases it.
func (p *intxPin) SetLevel(high bool) {
	r := p.router
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.high == high {
		return
	}
	p.high = high
	n := &r.asserted[p.line]
	if high {
		*n++
	} else {
		*n--
	}
	if l := r.lines[p.line]; l != nil && (*n == 1 && high || *n == 0 && !high) {
		l.SetLevel(high)
	}
}

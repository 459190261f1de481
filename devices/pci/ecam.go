package pci

import "fmt"

// ECAM address decoding (PCIe §7.2.2, Table 7-1, "Enhanced Configuration
// Address Mapping"): each function's 4 KiB configuration space is mapped at
// bus << 20 | device << 15 | function << 12 from the window's base.
const (
	ecamBusShift      = 20
	ecamDeviceShift   = 15
	ecamFunctionShift = 12
	ecamDeviceMask    = 0x1F
	ecamFunctionMask  = 0x7
	ecamRegisterMask  = 0xFFF
	// ecamAccessWidth is the DWORD that bounds one access: a
	// configuration request carries byte enables for one DWORD, so an
	// access may be 1, 2 or 4 bytes but must not cross a DWORD boundary
	// (PCIe §7.2.2.2, ECAM software rules).
	ecamAccessWidth = 4
)

// The ECAM window govmm puts in the MMIO hole, and that the machine
// describes in an MCFG allocation entry (PCI Firmware Specification 3.0
// §4.1.2, Table 4-3: base address, PCI segment group, start and end bus).
//
// The window covers all 256 bus numbers, 256 MiB, although only bus 0 is
// populated. The size costs nothing: the window is not memory, just
// guest-physical address space whose every access exits to userspace. In
// return, every bus number the guest can form decodes in ECAM, so adding
// bridges later changes neither this window nor the ACPI tables, and the
// layout matches a PC chipset's default (Intel PCIEXBAR, QEMU q35: 256
// MiB). 0xE000_0000 is 256 MiB-aligned, as PCIe §7.2.2 requires of a
// window that decodes 8 bus bits; it sits in the 32-bit MMIO hole
// (machine/memory: 0xC000_0000 up to 4 GiB) above the BAR window
// (DefaultWindows) and well below the I/O APIC at 0xFEC0_0000.
//
// The range must also be reserved, by an e820 entry or a PNP0C02 device
// in the DSDT, or Linux refuses to use it (arch/x86/pci/mmconfig-shared.c,
// pci_mmcfg_check_reserved) and stays on mechanism #1, without extended
// configuration space.
const (
	ECAMBase     uint64 = 0xE000_0000
	ECAMBusCount        = 256
	// ECAMBusSize is the configuration space of one bus: 32 devices of
	// 8 functions of 4 KiB.
	ECAMBusSize  uint64 = 1 << ecamBusShift
	ECAMSize            = ECAMBusCount * ECAMBusSize
	ECAMSegment         = 0 // PCI segment group number
	ECAMStartBus        = 0
	ECAMEndBus          = ECAMBusCount - 1
)

// ECAM is the memory-mapped configuration access mechanism of a Bus, an
// MMIOHandler for the window: offset 0 is the configuration space of
// 00:00.0, wherever the machine maps it.
type ECAM struct {
	bus  *Bus
	size uint64
}

// NewECAM returns the ECAM window of bus decoding buses bus numbers (1 to
// 256) from bus 0: (buses << 20) bytes, ECAMSize for ECAMBusCount.
func NewECAM(bus *Bus, buses int) (*ECAM, error) {
	if buses < 1 || buses > ECAMBusCount {
		return nil, fmt.Errorf("pci: ECAM bus count %d is not in 1-%d", buses, ECAMBusCount)
	}
	return &ECAM{bus: bus, size: uint64(buses) << ecamBusShift}, nil
}

// Size returns the size of the window in bytes.
func (e *ECAM) Size() uint64 { return e.size }

// decode returns the configuration address of an access, and false for
// one outside the window, of another size than 1, 2 or 4 bytes, or
// crossing a DWORD boundary.
func (e *ECAM) decode(offset uint64, n int) (Address, bool) {
	if offset >= e.size || (n != 1 && n != 2 && n != 4) || offset%ecamAccessWidth+uint64(n) > ecamAccessWidth {
		return Address{}, false
	}
	return Address{
		Bus:      uint8(ECAMStartBus + offset>>ecamBusShift),
		Device:   uint8(offset >> ecamDeviceShift & ecamDeviceMask),
		Function: uint8(offset >> ecamFunctionShift & ecamFunctionMask),
		Register: uint16(offset & ecamRegisterMask),
	}, true
}

// ReadMMIO performs a configuration read. Reads that no function claims,
// and malformed ones, return all ones.
func (e *ECAM) ReadMMIO(offset uint64, data []byte) {
	a, ok := e.decode(offset, len(data))
	if !ok {
		fillOnes(data)
		return
	}
	e.bus.ReadConfig(a, data)
}

// WriteMMIO performs a configuration write; malformed ones are dropped.
func (e *ECAM) WriteMMIO(offset uint64, data []byte) {
	if a, ok := e.decode(offset, len(data)); ok {
		e.bus.WriteConfig(a, data)
	}
}

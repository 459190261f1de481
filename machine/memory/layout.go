// Package memory owns guest-physical memory: the memory map (where RAM, the
// legacy BIOS areas and the 32-bit MMIO hole sit) and the host mappings that
// back guest RAM.
//
// The map follows the PC conventions that Linux expects, as described in
// Linux Documentation/arch/x86/boot.rst ("Memory layout") and by the ACPI
// specification's E820 chapter (ACPI 6.5 §15):
//
//	0x0000_0000 .. 0x0009_FC00  conventional memory: IVT, BDA, govmm's boot data
//	0x0009_FC00 .. 0x000A_0000  EBDA (reserved)
//	0x000A_0000 .. 0x0010_0000  VGA hole and BIOS ROM area (reserved; the ACPI
//	                            tables from 0xE0000, the MP table from 0xF0000)
//	0x0010_0000 .. lowRAMEnd    RAM: kernel, initrd
//	MMIOHoleStart .. 4 GiB      32-bit MMIO hole: PCI BARs, ECAM, virtio-mmio
//	                            windows, IOAPIC, LAPIC, ...
//	4 GiB .. 4 GiB + rest       RAM above the hole
//
// RAM below 1 MiB is backed by the same memory slot as the rest of low RAM; the
// reserved ranges are only marked so in the e820 map, which is how firmware
// tables placed there stay out of the kernel's allocator.
package memory

// Guest-physical addresses of the fixed pieces of the PC memory map.
const (
	// EBDAStart is where the Extended BIOS Data Area begins: the last KiB of
	// the 640 KiB of conventional memory. Linux scans it, like the BIOS ROM
	// area, for the MP floating pointer (Intel MP spec 1.4 §4); govmm puts
	// the MP table in the ROM area, where it has room for 64 CPUs.
	EBDAStart = 0x9FC00
	// VGAHoleStart is the start of the legacy VGA window and BIOS ROM area,
	// which ends at 1 MiB. It is never RAM in the e820 map.
	VGAHoleStart = 0xA0000
	// BIOSROMStart is the start of the 128 KiB area Linux scans for the ACPI
	// RSDP (ACPI 6.5 §5.2.5.1: 0xE0000..0xFFFFF on 16-byte boundaries).
	BIOSROMStart = 0xE0000
	// HighMemStart is 1 MiB, the classic load address of the protected-mode
	// kernel (boot.rst: code32_start defaults to 0x100000).
	HighMemStart = 0x100000

	// MMIOHoleStart is the bottom of the 32-bit PCI/MMIO hole. RAM that
	// would fall between here and 4 GiB is moved above 4 GiB instead, as
	// PC chipsets do with their "top of low memory" register.
	MMIOHoleStart = 0xC000_0000
	// MMIOHoleEnd is 4 GiB, the top of the 32-bit address space.
	MMIOHoleEnd = 1 << 32

	// VirtioMMIOBase is where the virtio-mmio devices' register windows
	// begin: the MiB below the IOAPIC, above the PCI ECAM window, that no
	// PCI window reaches (the same place as QEMU's microvm machine).
	VirtioMMIOBase = IOAPICAddr - VirtioMMIOSize
	VirtioMMIOSize = 1 << 20
	// IOAPICAddr is the default IOAPIC register window (Intel 82093AA
	// datasheet §3.0; also what KVM's in-kernel IOAPIC decodes).
	IOAPICAddr = 0xFEC0_0000
	// LAPICAddr is the default local APIC base (Intel SDM Vol. 3A §11.4.1).
	LAPICAddr = 0xFEE0_0000
	// KVMIdentityMapAddr and KVMTSSAddr are one page and three pages that
	// Intel VMX needs for real-mode emulation (KVM_SET_IDENTITY_MAP_ADDR and
	// KVM_SET_TSS_ADDR in Documentation/virt/kvm/api.rst). They must be
	// outside RAM and are placed just below the BIOS flash, as QEMU does.
	KVMIdentityMapAddr = 0xFFFB_C000
	KVMTSSAddr         = 0xFFFB_D000
)

// Size limits for guest RAM.
const (
	MinRAM   = 64 << 20 // below this the stock kernels' decompressors do not fit
	MaxRAM   = 1 << 40  // 1 TiB: far above what govmm is tested with; a sanity cap
	PageSize = 4096
)

// Range is a half-open range of guest-physical addresses [Start, Start+Size).
type Range struct {
	Start uint64
	Size  uint64
}

// End returns the first address after the range.
func (r Range) End() uint64 { return r.Start + r.Size }

// Contains reports whether [addr, addr+n) lies inside r, without overflow.
func (r Range) Contains(addr, n uint64) bool {
	if addr < r.Start {
		return false
	}
	off := addr - r.Start
	return off <= r.Size && n <= r.Size-off
}

// RAMLayout splits size bytes of guest RAM around the 32-bit MMIO hole:
// up to MMIOHoleStart below it, the rest from 4 GiB. size must be a multiple
// of PageSize.
func RAMLayout(size uint64) []Range {
	if size <= MMIOHoleStart {
		return []Range{{Start: 0, Size: size}}
	}
	return []Range{
		{Start: 0, Size: MMIOHoleStart},
		{Start: MMIOHoleEnd, Size: size - MMIOHoleStart},
	}
}

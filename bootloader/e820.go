package bootloader

import (
	"errors"
	"fmt"
	"slices"

	"github.com/govmm/govmm/machine/memory"
)

// E820Type is the type of an address range in the E820 memory map (ACPI 6.5
// §15.1 "INT 15H, E820H - Query System Address Map", table "Address Range
// Types"; the same numbers as E820_TYPE_* in Linux
// arch/x86/include/asm/e820/types.h).
type E820Type uint32

// The address range types of ACPI 6.5 §15.1.
const (
	// E820RAM (AddressRangeMemory): available RAM usable by the OS.
	E820RAM E820Type = 1
	// E820Reserved (AddressRangeReserved): in use or reserved by the
	// system; the OS must not use it.
	E820Reserved E820Type = 2
	// E820ACPI (AddressRangeACPI): ACPI tables, reclaimable once read.
	E820ACPI E820Type = 3
	// E820NVS (AddressRangeNVS): ACPI NVS memory, preserved across sleep.
	E820NVS E820Type = 4
	// E820Unusable (AddressRangeUnusable): memory with detected errors.
	E820Unusable E820Type = 5
)

func (t E820Type) String() string {
	switch t {
	case E820RAM:
		return "RAM"
	case E820Reserved:
		return "reserved"
	case E820ACPI:
		return "ACPI"
	case E820NVS:
		return "NVS"
	case E820Unusable:
		return "unusable"
	}
	return fmt.Sprintf("type %d", uint32(t))
}

// E820Entry is one entry of the map: struct boot_e820_entry in bootparam.h,
// 20 bytes packed (addr u64, size u64, type u32).
type E820Entry struct {
	Addr uint64
	Size uint64
	Type E820Type
}

// End returns the first address after the entry.
func (e E820Entry) End() uint64 { return e.Addr + e.Size }

func (e E820Entry) String() string {
	// The format of the kernel's own "BIOS-e820:" boot log lines.
	return fmt.Sprintf("[mem 0x%016x-0x%016x] %s", e.Addr, e.End()-1, e.Type)
}

const (
	// e820EntrySize is sizeof(struct boot_e820_entry).
	e820EntrySize = 20
	// E820MaxEntriesZeroPage is E820_MAX_ENTRIES_ZEROPAGE (bootparam.h): the
	// room in boot_params.e820_table. Larger maps need a SETUP_E820_EXT
	// setup_data node, which govmm never needs.
	E820MaxEntriesZeroPage = 128
)

// kvmPrivateStart and kvmPrivateEnd bound the pages KVM on Intel uses for
// the EPT identity map (one page) and the real-mode TSS (three pages), set by
// the machine with KVM_SET_IDENTITY_MAP_ADDR and KVM_SET_TSS_ADDR. They are
// not RAM, but the guest must not put a PCI BAR there either, so they are
// reported as reserved, as QEMU does (target/i386/kvm/kvm.c,
// kvm_arch_init: e820_add_entry(identity_base, 0x4000, E820_RESERVED)).
const (
	kvmTSSPages     = 3 // Documentation/virt/kvm/api.rst, KVM_SET_TSS_ADDR
	kvmPrivateStart = memory.KVMIdentityMapAddr
	kvmPrivateEnd   = memory.KVMTSSAddr + kvmTSSPages*memory.PageSize
)

// ErrBadRAMLayout is returned (wrapped) by E820Map for a RAM layout that
// does not follow govmm's memory map.
var ErrBadRAMLayout = errors.New("RAM layout does not fit the PC memory map")

// E820Map derives the E820 memory map Linux gets from govmm's RAM layout (as
// produced by memory.RAMLayout):
//
//	[0, EBDAStart)              RAM: conventional memory
//	[EBDAStart, HighMemStart)   reserved: EBDA (MP floating pointer), VGA
//	                            hole, and the BIOS area where govmm puts the
//	                            ACPI tables (0xE0000) and MP table (0xF0000)
//	[HighMemStart, low RAM end) RAM: kernel, initrd, the rest
//	[KVM private pages]         reserved (inside the 32-bit MMIO hole)
//	[4 GiB, ...)                RAM above the hole, if any
//	reserved...                 reserved: the extra ranges, such as the PCIe
//	                            ECAM window, which Linux only uses if the
//	                            firmware reserves it
//
// The first range must start at 0 and reach beyond 1 MiB; no RAM range may
// touch the MMIO hole, and the reserved ranges must lie inside it. The
// result is sorted, does not overlap, and fits the zero page's 128 entries.
func E820Map(ram []memory.Range, reserved ...memory.Range) ([]E820Entry, error) {
	if len(ram) == 0 {
		return nil, fmt.Errorf("%w: no RAM", ErrBadRAMLayout)
	}
	if low := ram[0]; low.Start != 0 || low.End() <= memory.HighMemStart {
		return nil, fmt.Errorf("%w: the first RAM range [%#x, %#x) must start at 0 and extend beyond 1 MiB",
			ErrBadRAMLayout, low.Start, low.End())
	}
	m := []E820Entry{
		{Addr: 0, Size: memory.EBDAStart, Type: E820RAM},
		{Addr: memory.EBDAStart, Size: memory.HighMemStart - memory.EBDAStart, Type: E820Reserved},
		{Addr: memory.HighMemStart, Size: ram[0].End() - memory.HighMemStart, Type: E820RAM},
		{Addr: kvmPrivateStart, Size: kvmPrivateEnd - kvmPrivateStart, Type: E820Reserved},
	}
	for i, r := range ram {
		if r.Size == 0 || r.End() < r.Start {
			return nil, fmt.Errorf("%w: RAM range %d [%#x, +%#x) is empty or wraps", ErrBadRAMLayout, i, r.Start, r.Size)
		}
		if r.Start < memory.MMIOHoleEnd && r.End() > memory.MMIOHoleStart {
			return nil, fmt.Errorf("%w: RAM range [%#x, %#x) overlaps the MMIO hole [%#x, %#x)",
				ErrBadRAMLayout, r.Start, r.End(), uint64(memory.MMIOHoleStart), uint64(memory.MMIOHoleEnd))
		}
		if i > 0 {
			m = append(m, E820Entry{Addr: r.Start, Size: r.Size, Type: E820RAM})
		}
	}
	for _, r := range reserved {
		if r.Size == 0 || r.End() < r.Start || r.Start < memory.MMIOHoleStart || r.End() > memory.MMIOHoleEnd {
			return nil, fmt.Errorf("%w: reserved range [%#x, +%#x) is not inside the MMIO hole [%#x, %#x)",
				ErrBadRAMLayout, r.Start, r.Size, uint64(memory.MMIOHoleStart), uint64(memory.MMIOHoleEnd))
		}
		m = append(m, E820Entry{Addr: r.Start, Size: r.Size, Type: E820Reserved})
	}
	slices.SortFunc(m, func(a, b E820Entry) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	for i := 1; i < len(m); i++ {
		if m[i].Addr < m[i-1].End() {
			return nil, fmt.Errorf("%w: %v overlaps %v", ErrBadRAMLayout, m[i], m[i-1])
		}
	}
	if len(m) > E820MaxEntriesZeroPage {
		return nil, fmt.Errorf("%w: %d E820 entries, the zero page holds %d",
			ErrBadRAMLayout, len(m), E820MaxEntriesZeroPage)
	}
	return m, nil
}

package bootloader

import (
	"encoding/binary"
	"fmt"

	"github.com/govmm/govmm/machine/memory"
)

// Guest-physical addresses of what govmm places in conventional memory, all in
// [0, memory.EBDAStart) and below the kernel at 1 MiB, none overlapping (a
// test checks). Linux reserves the whole first megabyte for itself early in
// boot (arch/x86/realmode/init.c, reserve_real_mode), and copies the zero
// page and command line before reusing any of it; the GDT, TSS, stack and
// page tables are replaced by the kernel's own within its first instructions.
const (
	// 0x000-0x3ff is the real-mode IVT and 0x400-0x4ff the BIOS data
	// area; Linux reads the BDA (e.g. the EBDA pointer at 0x40e), so govmm
	// starts after it.

	// GDTAddr is the boot GDT: gdtEntries descriptors, see buildGDT.
	GDTAddr = 0x500
	// TSSAddr is the 64-bit TSS that TR points at.
	TSSAddr = 0x600
	// BootStackBottom and BootStackTop bound the boot stack; RSP starts at
	// the top and the stack grows down, away from the zero page above it.
	// (The 64-bit entry of the decompressor switches to its own stack at
	// once, arch/x86/boot/compressed/head_64.S startup_64.)
	BootStackBottom = 0x1000
	BootStackTop    = 0x7000
	// ZeroPageAddr is struct boot_params; RSI points here at entry.
	ZeroPageAddr = 0x7000
	// PML4Addr, PDPTAddr and PDAddr are the boot page tables: one PML4,
	// one PDPT and identityMapGiB page directories (one per GiB).
	PML4Addr = 0x9000
	PDPTAddr = 0xa000
	PDAddr   = 0xb000
	// PageTablesEnd is the first byte after the page directories.
	PageTablesEnd = PDAddr + identityMapGiB*memory.PageSize
	// CmdlineAddr is the kernel command line, NUL-terminated, at most
	// CmdlineMaxSize bytes including the NUL. boot.rst ("cmd_line_ptr")
	// allows it "anywhere between the end of the setup heap and 0xA0000".
	CmdlineAddr    = 0x20000
	CmdlineMaxSize = 0x10000
)

// Selectors of the boot GDT. boot.rst "64-bit Boot Protocol" requires "a GDT
// ... with the descriptors for selectors __BOOT_CS(0x10) and __BOOT_DS(0x18)"
// and "CS must be __BOOT_CS and DS, ES, SS must be __BOOT_DS". This is also
// the layout of Linux's own boot GDT (arch/x86/boot/pm.c, setup_gdt:
// GDT_ENTRY_BOOT_CS = 2, GDT_ENTRY_BOOT_DS = 3, GDT_ENTRY_BOOT_TSS = 4).
const (
	BootCSSelector  = 0x10
	BootDSSelector  = 0x18
	BootTSSSelector = 0x20

	gdtDescriptorSize = 8 // SDM Vol. 3A §3.4.5 "Segment Descriptors"
	// A TSS descriptor in IA-32e mode is 16 bytes: two GDT slots (SDM
	// Vol. 3A, Task Management, "TSS Descriptor in 64-bit mode").
	tssDescriptorSize = 16
	// gdtSize covers null (0x00), unused (0x08), code (0x10), data (0x18)
	// and the two slots of the TSS descriptor (0x20, 0x28).
	gdtSize = BootTSSSelector + tssDescriptorSize
	// tssSize is the size of the 64-bit TSS, 104 bytes (SDM Vol. 3A, Task
	// Management, "Task Management in 64-bit Mode", figure "64-Bit TSS
	// Format"); a descriptor's limit is size-1.
	tssSize = 0x68
	// tssIOMapBase is the offset of the "I/O Map Base Address" field in
	// the 64-bit TSS. Setting it to tssSize, beyond the limit, means "no
	// I/O permission bitmap" (SDM Vol. 1, Input/Output, "I/O Permission Bit
	// Map").
	tssIOMapBase = 0x66
)

// Segment descriptor fields (SDM Vol. 3A §3.4.5, figure "Segment
// Descriptor"; the types are from §3.4.5.1 table "Code- and Data-Segment
// Types" and §3.5 table "System-Segment and Gate-Descriptor Types").
// Section titles are given with the numbers of SDM editions where they are
// stable; chapters after "Protected-Mode Memory Management" were renumbered
// in 2023, so for those the title is the reference.
const (
	// Code and data types (S=1). The accessed bit (bit 0) is set: VM entry
	// requires it for CS and for any usable data segment (SDM Vol. 3C, VM
	// Entries, "Checks on Guest Segment Registers"), and the CPU would set
	// it on the first load anyway.
	segTypeCodeExecReadAccessed = 0xb // execute/read, accessed
	segTypeDataReadWriteAccess  = 0x3 // read/write, accessed
	// segTypeTSS64Busy is a busy 64-bit TSS. LTR marks the descriptor busy,
	// and VM entry requires TR's type to be 11 in IA-32e mode.
	segTypeTSS64Busy = 0xb

	// flatLimit is the 20-bit limit of a flat 4 GiB segment; with G=1 the
	// limit is scaled by 4 KiB: (0xfffff << 12) | 0xfff = 0xffffffff.
	flatLimit   = 0xfffff
	granularity = 12 // log2 of the 4 KiB unit of a G=1 limit
)

// Paging structure entry bits (SDM Vol. 3A, Paging, "4-Level Paging and
// 5-Level Paging", tables "Format of a PML4 Entry", "... of a Page-Directory-Pointer-
// Table Entry that References a Page Directory" and "... of a Page-Directory
// Entry that Maps a 2-MByte Page").
const (
	ptePresent  = 1 << 0 // P
	pteWritable = 1 << 1 // R/W
	ptePageSize = 1 << 7 // PS: in a PDE, map a 2 MiB page

	pageTableEntries = 512 // 4 KiB table of 8-byte entries
	pteSize          = 8
	largePageSize    = 2 << 20 // a PDE with PS=1 maps 2 MiB
	pdpteSpan        = 1 << 30 // a PDPT entry covers 1 GiB
	// identityMapGiB is how much of the physical address space the boot
	// page tables map 1:1: the first 4 GiB, which holds the kernel, zero
	// page, command line and initrd (boot.rst "64-bit Boot Protocol":
	// they must be identity mapped) as well as the MMIO hole.
	identityMapGiB = 4
	// IdentityMapEnd is the first address the boot page tables do not map.
	IdentityMapEnd = identityMapGiB * pdpteSpan
)

// Control register and MSR bits for IA-32e mode (SDM Vol. 3A §2.5 "Control
// Registers", §2.2.1 "Extended Feature Enable Register", and Processor
// Management and Initialization, "Initializing IA-32e Mode": long mode needs
// CR4.PAE, EFER.LME and CR0.PG; the CPU then sets EFER.LMA).
const (
	CR0PE   = 1 << 0  // protection enable
	CR0ET   = 1 << 4  // extension type, hardwired to 1 since the i486
	CR0PG   = 1 << 31 // paging
	CR4PAE  = 1 << 5  // physical address extension, required for 4-level paging
	EFERLME = 1 << 8  // long mode enable
	EFERLMA = 1 << 10 // long mode active
	// RFLAGSReserved1 is RFLAGS bit 1, reserved and always 1 (SDM Vol. 1
	// §3.4.3 "EFLAGS Register"). Every other bit is 0, so IF=0: interrupts
	// are disabled, as boot.rst requires.
	RFLAGSReserved1 = 1 << 1
)

// Segment is a segment register as the CPU caches it (its "hidden part"),
// the shape KVM's struct kvm_segment has.
//
// Limit is the byte-granular limit the CPU uses, i.e. already scaled when
// G=1 (a flat segment has Limit 0xffffffff), which is what kvm_segment.limit
// and the VMCS hold; it is not the raw 20-bit descriptor field.
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8 // 4-bit descriptor type
	Present  bool  // P
	DPL      uint8 // descriptor privilege level, 0-3
	DB       bool  // D/B: default operation size (must be 0 when L=1)
	S        bool  // 1 for code/data, 0 for system segments (TSS, LDT)
	L        bool  // 64-bit code segment
	G        bool  // granularity: limit in 4 KiB units
	AVL      bool  // available to software
	Unusable bool  // the register holds no usable segment (e.g. LDTR = 0)
}

// CPUState is the register state the boot vCPU must get: KVM_SET_SREGS for
// the segment, descriptor-table, control registers and EFER, KVM_SET_REGS
// for RIP, RSI, RSP and RFLAGS. General-purpose registers not listed must
// be zero.
//
// Applying it with KVM: start from KVM_GET_SREGS and overwrite these fields,
// so apic_base and the interrupt bitmap keep KVM's values; copy each Segment
// field by field into struct kvm_segment (Limit is already byte-granular,
// Unusable goes to kvm_segment.unusable); and call KVM_SET_CPUID2 first, as
// KVM refuses EFER.LME unless the guest's CPUID reports long mode.
type CPUState struct {
	RIP, RSI, RSP, RFLAGS uint64

	CR0, CR3, CR4, EFER uint64

	GDTBase  uint64
	GDTLimit uint16
	IDTBase  uint64
	IDTLimit uint16

	CS, DS, ES, FS, GS, SS, TR, LDT Segment
}

// Boot segments. They describe exactly what buildGDT encodes; the tests
// decode the GDT bytes and compare.
var (
	// codeSegment is __BOOT_CS: a flat 64-bit code segment (L=1, D=0,
	// which SDM Vol. 3A, Protection, "Code Segment Descriptor in 64-bit
	// Mode" requires together).
	codeSegment = Segment{
		Limit: 0xffffffff, Selector: BootCSSelector, Type: segTypeCodeExecReadAccessed,
		Present: true, S: true, L: true, G: true,
	}
	// dataSegment is __BOOT_DS: a flat 4 GiB read/write data segment.
	dataSegment = Segment{
		Limit: 0xffffffff, Selector: BootDSSelector, Type: segTypeDataReadWriteAccess,
		Present: true, DB: true, S: true, G: true,
	}
	// tssSegment is TR. KVM (VMX) refuses to enter a guest whose TR is
	// unusable, so govmm provides a real, empty TSS; Linux loads its own
	// TR in cpu_init().
	tssSegment = Segment{
		Base: TSSAddr, Limit: tssSize - 1, Selector: BootTSSSelector, Type: segTypeTSS64Busy,
		Present: true,
	}
	// ldtSegment: there is no LDT. An unusable LDTR passes VM entry checks.
	ldtSegment = Segment{Unusable: true}
)

// SetupLongMode writes the boot GDT, TSS and identity-mapping page tables
// into guest memory and returns the CPU state for 64-bit mode with them:
// paging on (CR0.PG, CR4.PAE, 4-level paging from PML4Addr), EFER.LME|LMA,
// CS = __BOOT_CS (64-bit), the data segments = __BOOT_DS, RSP = BootStackTop,
// interrupts off. RIP and RSI are left 0 for the caller (Load) to set.
func SetupLongMode(mem *memory.Guest) (*CPUState, error) {
	gdt, err := buildGDT()
	if err != nil {
		return nil, err
	}
	if _, err := mem.WriteAt(gdt, GDTAddr); err != nil {
		return nil, fmt.Errorf("bootloader: writing the GDT: %w", err)
	}
	if _, err := mem.WriteAt(buildTSS(), TSSAddr); err != nil {
		return nil, fmt.Errorf("bootloader: writing the TSS: %w", err)
	}
	if _, err := mem.WriteAt(buildPageTables(), PML4Addr); err != nil {
		return nil, fmt.Errorf("bootloader: writing the page tables: %w", err)
	}
	return &CPUState{
		RSP:    BootStackTop,
		RFLAGS: RFLAGSReserved1,
		CR0:    CR0PE | CR0ET | CR0PG,
		CR3:    PML4Addr,
		CR4:    CR4PAE,
		EFER:   EFERLME | EFERLMA,

		GDTBase:  GDTAddr,
		GDTLimit: gdtSize - 1, // a descriptor-table limit is its size - 1
		// No IDT: Linux loads one before it enables interrupts or can take
		// an exception it handles. Until then any exception escalates to
		// a triple fault, which KVM reports as KVM_EXIT_SHUTDOWN.
		IDTBase:  0,
		IDTLimit: 0,

		CS:  codeSegment,
		DS:  dataSegment,
		ES:  dataSegment,
		FS:  dataSegment,
		GS:  dataSegment,
		SS:  dataSegment,
		TR:  tssSegment,
		LDT: ldtSegment,
	}, nil
}

// buildGDT returns the bytes of the boot GDT.
func buildGDT() ([]byte, error) {
	gdt := make([]byte, gdtSize) // slots 0 (null) and 1 (unused) stay zero
	le := binary.LittleEndian
	for _, s := range []Segment{codeSegment, dataSegment} {
		d, err := encodeDescriptor(s)
		if err != nil {
			return nil, err
		}
		le.PutUint64(gdt[s.Selector:], d)
	}
	lo, hi, err := encodeSystemDescriptor64(tssSegment)
	if err != nil {
		return nil, err
	}
	le.PutUint64(gdt[tssSegment.Selector:], lo)
	le.PutUint64(gdt[tssSegment.Selector+gdtDescriptorSize:], hi)
	return gdt, nil
}

// encodeDescriptor encodes the 8-byte segment descriptor for s (SDM Vol. 3A
// §3.4.5, figure "Segment Descriptor"):
//
//	bits  0-15 limit 15:0     bits 16-39 base 23:0
//	bits 40-43 type           bit  44    S
//	bits 45-46 DPL            bit  47    P
//	bits 48-51 limit 19:16    bit  52    AVL
//	bit  53    L              bit  54    D/B
//	bit  55    G              bits 56-63 base 31:24
func encodeDescriptor(s Segment) (uint64, error) {
	raw := uint64(s.Limit)
	if s.G {
		// The descriptor holds limit >> 12; the low 12 bits of a G=1
		// limit are implicitly all ones.
		if s.Limit&(1<<granularity-1) != 1<<granularity-1 {
			return 0, fmt.Errorf("bootloader: segment limit %#x cannot be encoded with G=1", s.Limit)
		}
		raw = uint64(s.Limit) >> granularity
	}
	if raw > flatLimit || s.Base > 0xffffffff || s.Type > 0xf || s.DPL > 3 {
		return 0, fmt.Errorf("bootloader: segment %+v cannot be encoded in a descriptor", s)
	}
	d := raw&0xffff | (raw>>16)<<48
	d |= (s.Base&0xffffff)<<16 | (s.Base>>24)<<56
	d |= uint64(s.Type) << 40
	d |= uint64(s.DPL) << 45
	d |= bit(s.S, 44) | bit(s.Present, 47) | bit(s.AVL, 52) | bit(s.L, 53) | bit(s.DB, 54) | bit(s.G, 55)
	return d, nil
}

// encodeSystemDescriptor64 encodes a 16-byte IA-32e system descriptor (TSS,
// LDT): the low 8 bytes are a legacy descriptor holding base 31:0, the high
// 8 bytes hold base 63:32 and must otherwise be zero (SDM Vol. 3A, "TSS
// Descriptor in 64-bit mode").
func encodeSystemDescriptor64(s Segment) (lo, hi uint64, err error) {
	low := s
	low.Base &= 0xffffffff
	lo, err = encodeDescriptor(low)
	return lo, s.Base >> 32, err
}

func bit(b bool, n uint) uint64 {
	if b {
		return 1 << n
	}
	return 0
}

// buildTSS returns an empty 64-bit TSS: zero stack pointers, and an I/O map
// base beyond the limit, so there is no I/O permission bitmap.
func buildTSS() []byte {
	tss := make([]byte, tssSize)
	binary.LittleEndian.PutUint16(tss[tssIOMapBase:], tssSize)
	return tss
}

// buildPageTables returns the PML4, PDPT and page directories, contiguous
// from PML4Addr, that identity-map [0, IdentityMapEnd) with 2 MiB pages:
//
//	PML4[0]  -> PDPT            (covers 512 GiB)
//	PDPT[i]  -> PD i            (covers GiB i), i < identityMapGiB
//	PD i[j]  =  i GiB + j*2 MiB, PS=1
//
// Entries are present and writable, with U/S=0 (supervisor only).
func buildPageTables() []byte {
	b := make([]byte, PageTablesEnd-PML4Addr)
	le := binary.LittleEndian
	at := func(table uint64, index int) []byte {
		off := table - PML4Addr + uint64(index)*pteSize
		return b[off : off+pteSize]
	}
	le.PutUint64(at(PML4Addr, 0), PDPTAddr|ptePresent|pteWritable)
	for i := range identityMapGiB {
		pd := uint64(PDAddr + i*memory.PageSize)
		le.PutUint64(at(PDPTAddr, i), pd|ptePresent|pteWritable)
		for j := range pageTableEntries {
			phys := uint64(i)*pdpteSpan + uint64(j)*largePageSize
			le.PutUint64(at(pd, j), phys|ptePresent|pteWritable|ptePageSize)
		}
	}
	return b
}

package kvm

// Regs is struct kvm_regs: the general-purpose registers (KVM_GET_REGS).
type Regs struct {
	RAX, RBX, RCX, RDX uint64
	RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11   uint64
	R12, R13, R14, R15 uint64
	RIP, RFLAGS        uint64
}

// Segment is struct kvm_segment: a segment register with its hidden
// descriptor cache unpacked (Intel SDM Vol. 3A §3.4.3 and §3.4.5).
type Segment struct {
	Base     uint64
	Limit    uint32
	Selector uint16
	Type     uint8 // descriptor type field (bits 8-11 of the high dword)
	Present  uint8
	DPL      uint8
	DB       uint8 // default operation size (0 = 16-bit, 1 = 32-bit)
	S        uint8 // 1 = code/data, 0 = system segment
	L        uint8 // 64-bit code segment
	G        uint8 // granularity: limit in 4 KiB units
	AVL      uint8
	Unusable uint8
	_        uint8
}

// DTable is struct kvm_dtable: a descriptor-table register (GDTR or IDTR).
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs: segment, control and descriptor-table
// registers, EFER and the APIC base.
type Sregs struct {
	CS, DS, ES, FS, GS, SS Segment
	TR, LDT                Segment
	GDT, IDT               DTable
	CR0, CR2, CR3, CR4     uint64
	CR8                    uint64
	EFER                   uint64
	APICBase               uint64
	InterruptBitmap        [4]uint64 // (KVM_NR_INTERRUPTS + 63) / 64
}

// FPU is struct kvm_fpu: the legacy x87/SSE state (the FXSAVE image).
type FPU struct {
	FPR        [8][16]uint8
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]uint8
	MXCSR      uint32
	_          uint32
}

// MSREntry is struct kvm_msr_entry: one model-specific register.
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// CPUIDEntry is struct kvm_cpuid_entry2: the result of CPUID for one
// (function, index) pair.
type CPUIDEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32 // CPUIDFlagSignificantIndex, ...
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDFlagSignificantIndex marks a leaf whose result depends on ECX
// (KVM_CPUID_FLAG_SIGNIFCANT_INDEX, sic, in <linux/kvm.h>).
const CPUIDFlagSignificantIndex = 1

// LAPICState is struct kvm_lapic_state: the local APIC's 4 KiB register
// page, of which KVM transfers the first 1 KiB.
type LAPICState struct {
	Regs [1024]byte
}

// UserspaceMemoryRegion is struct kvm_userspace_memory_region: one memory
// slot, mapping guest-physical memory to host virtual memory.
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

// Memory slot flags.
const (
	MemLogDirtyPages = 1 << 0 // KVM_MEM_LOG_DIRTY_PAGES
	MemReadonly      = 1 << 1 // KVM_MEM_READONLY
)

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

type ioeventfd struct {
	Datamatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// IRQ routing entry types and irqchips (struct kvm_irq_routing_entry).
const (
	IRQRoutingIRQChip = 1 // KVM_IRQ_ROUTING_IRQCHIP
	IRQRoutingMSI     = 2 // KVM_IRQ_ROUTING_MSI

	IRQChipPICMaster = 0 // KVM_IRQCHIP_PIC_MASTER
	IRQChipPICSlave  = 1 // KVM_IRQCHIP_PIC_SLAVE
	IRQChipIOAPIC    = 2 // KVM_IRQCHIP_IOAPIC
)

// IRQRoutingEntry is struct kvm_irq_routing_entry. U holds the union: for
// IRQRoutingIRQChip, U[0] is the irqchip and U[1] the pin; for
// IRQRoutingMSI, U[0..2] are address_lo, address_hi and data.
type IRQRoutingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	U     [8]uint32
}

// VCPUEvents is struct kvm_vcpu_events: pending exceptions, interrupts,
// NMIs and SIPIs of a vCPU.
type VCPUEvents struct {
	ExceptionInjected     uint8
	ExceptionNr           uint8
	ExceptionHasErrorCode uint8
	ExceptionPending      uint8
	ExceptionErrorCode    uint32
	InterruptInjected     uint8
	InterruptNr           uint8
	InterruptSoft         uint8
	InterruptShadow       uint8
	NMIInjected           uint8
	NMIPending            uint8
	NMIMasked             uint8
	_                     uint8
	SIPIVector            uint32
	Flags                 uint32
	SMISMM                uint8
	SMIPending            uint8
	SMIInsideNMI          uint8
	LatchedInit           uint8
	TripleFaultPending    uint8
	_                     [26]uint8
	ExceptionHasPayload   uint8
	ExceptionPayload      uint64
}

// EnableCap is struct kvm_enable_cap (KVM_ENABLE_CAP).
type EnableCap struct {
	Cap   uint32
	Flags uint32
	Args  [4]uint64
	_     [64]uint8
}

// MSI is struct kvm_msi (KVM_SIGNAL_MSI).
type MSI struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// Translation is struct kvm_translation (KVM_TRANSLATE): a guest-virtual
// to guest-physical translation through the vCPU's current page tables.
type Translation struct {
	LinearAddress   uint64
	PhysicalAddress uint64
	Valid           uint8
	Writeable       uint8
	Usermode        uint8
	_               [5]uint8
}

// GuestDebug is struct kvm_guest_debug for x86 (KVM_SET_GUEST_DEBUG).
type GuestDebug struct {
	Control  uint32
	_        uint32
	DebugReg [8]uint64
}

// MPState is a vCPU's multiprocessing state (struct kvm_mp_state).
type MPState uint32

// The multiprocessing states x86 uses.
const (
	MPStateRunnable      MPState = 0 // KVM_MP_STATE_RUNNABLE
	MPStateUninitialized MPState = 1 // waiting for INIT (an AP before boot)
	MPStateInitReceived  MPState = 2 // got INIT, waiting for SIPI
	MPStateHalted        MPState = 3 // executed HLT, waiting for an interrupt
	MPStateSIPIReceived  MPState = 4
)

func (s MPState) String() string {
	switch s {
	case MPStateRunnable:
		return "runnable"
	case MPStateUninitialized:
		return "uninitialized"
	case MPStateInitReceived:
		return "INIT received"
	case MPStateHalted:
		return "halted"
	case MPStateSIPIReceived:
		return "SIPI received"
	}
	return "unknown"
}

package kvm

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// The expected values below were printed by a C program compiled against
// the Linux 6.1 UAPI headers (<linux/kvm.h>, <asm/kvm.h>) on x86-64. If a Go
// struct drifts from the C layout, an ioctl would read or write the wrong
// bytes, so these are checked exactly.

func TestStructSizesMatchKernelHeaders(t *testing.T) {
	for _, c := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"kvm_regs", unsafe.Sizeof(Regs{}), 144},
		{"kvm_sregs", unsafe.Sizeof(Sregs{}), 312},
		{"kvm_segment", unsafe.Sizeof(Segment{}), 24},
		{"kvm_dtable", unsafe.Sizeof(DTable{}), 16},
		{"kvm_fpu", unsafe.Sizeof(FPU{}), 416},
		{"kvm_msr_entry", unsafe.Sizeof(MSREntry{}), 16},
		{"kvm_cpuid_entry2", unsafe.Sizeof(CPUIDEntry{}), 40},
		{"kvm_lapic_state", unsafe.Sizeof(LAPICState{}), 1024},
		{"kvm_userspace_memory_region", unsafe.Sizeof(UserspaceMemoryRegion{}), 32},
		{"kvm_irq_level", unsafe.Sizeof(irqLevel{}), 8},
		{"kvm_irqfd", unsafe.Sizeof(irqfd{}), 32},
		{"kvm_ioeventfd", unsafe.Sizeof(ioeventfd{}), 64},
		{"kvm_irq_routing_entry", unsafe.Sizeof(IRQRoutingEntry{}), 48},
		{"kvm_vcpu_events", unsafe.Sizeof(VCPUEvents{}), 64},
		{"kvm_enable_cap", unsafe.Sizeof(EnableCap{}), 104},
		{"kvm_msi", unsafe.Sizeof(MSI{}), 32},
		{"kvm_translation", unsafe.Sizeof(Translation{}), 24},
		{"kvm_guest_debug", unsafe.Sizeof(GuestDebug{}), 72},
	} {
		assert.Equal(t, c.want, c.got, "sizeof(struct %s)", c.name)
	}
}

func TestFieldOffsetsMatchKernelHeaders(t *testing.T) {
	var run runHeader
	assert.EqualValues(t, 1, unsafe.Offsetof(run.ImmediateExit))
	assert.EqualValues(t, 8, unsafe.Offsetof(run.ExitReason))
	assert.EqualValues(t, 13, unsafe.Offsetof(run.IFFlag))
	assert.EqualValues(t, 32, unsafe.Offsetof(run.Exit))
	var s Sregs
	assert.EqualValues(t, 192, unsafe.Offsetof(s.GDT))
	assert.EqualValues(t, 208, unsafe.Offsetof(s.IDT))
	assert.EqualValues(t, 224, unsafe.Offsetof(s.CR0))
	assert.EqualValues(t, 264, unsafe.Offsetof(s.EFER))
	assert.EqualValues(t, 280, unsafe.Offsetof(s.InterruptBitmap))
	var seg Segment
	assert.EqualValues(t, 14, unsafe.Offsetof(seg.Type))
	var c CPUIDEntry
	assert.EqualValues(t, 8, unsafe.Offsetof(c.Flags))
	var e VCPUEvents
	assert.EqualValues(t, 56, unsafe.Offsetof(e.ExceptionPayload))
}

func TestIoctlNumbersMatchKernelHeaders(t *testing.T) {
	for _, c := range []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"KVM_GET_API_VERSION", ioctlGetAPIVersion, 0xae00},
		{"KVM_CREATE_VM", ioctlCreateVM, 0xae01},
		{"KVM_GET_MSR_INDEX_LIST", ioctlGetMSRIndexList, 0xc004ae02},
		{"KVM_CHECK_EXTENSION", ioctlCheckExtension, 0xae03},
		{"KVM_GET_VCPU_MMAP_SIZE", ioctlGetVCPUMmapSize, 0xae04},
		{"KVM_GET_SUPPORTED_CPUID", ioctlGetSupportedCPUID, 0xc008ae05},
		{"KVM_CREATE_VCPU", ioctlCreateVCPU, 0xae41},
		{"KVM_SET_USER_MEMORY_REGION", ioctlSetUserMemoryRegion, 0x4020ae46},
		{"KVM_SET_TSS_ADDR", ioctlSetTSSAddr, 0xae47},
		{"KVM_SET_IDENTITY_MAP_ADDR", ioctlSetIdentityMapAddr, 0x4008ae48},
		{"KVM_CREATE_IRQCHIP", ioctlCreateIRQChip, 0xae60},
		{"KVM_IRQ_LINE", ioctlIRQLine, 0x4008ae61},
		{"KVM_SET_GSI_ROUTING", ioctlSetGSIRouting, 0x4008ae6a},
		{"KVM_IRQFD", ioctlIRQFD, 0x4020ae76},
		{"KVM_SET_BOOT_CPU_ID", ioctlSetBootCPUID, 0xae78},
		{"KVM_IOEVENTFD", ioctlIOEventFD, 0x4040ae79},
		{"KVM_ENABLE_CAP", ioctlEnableCap, 0x4068aea3},
		{"KVM_SIGNAL_MSI", ioctlSignalMSI, 0x4020aea5},
		{"KVM_RUN", ioctlRun, 0xae80},
		{"KVM_GET_REGS", ioctlGetRegs, 0x8090ae81},
		{"KVM_SET_REGS", ioctlSetRegs, 0x4090ae82},
		{"KVM_GET_SREGS", ioctlGetSregs, 0x8138ae83},
		{"KVM_SET_SREGS", ioctlSetSregs, 0x4138ae84},
		{"KVM_TRANSLATE", ioctlTranslate, 0xc018ae85},
		{"KVM_GET_MSRS", ioctlGetMSRs, 0xc008ae88},
		{"KVM_SET_MSRS", ioctlSetMSRs, 0x4008ae89},
		{"KVM_GET_FPU", ioctlGetFPU, 0x81a0ae8c},
		{"KVM_SET_FPU", ioctlSetFPU, 0x41a0ae8d},
		{"KVM_GET_LAPIC", ioctlGetLAPIC, 0x8400ae8e},
		{"KVM_SET_LAPIC", ioctlSetLAPIC, 0x4400ae8f},
		{"KVM_SET_CPUID2", ioctlSetCPUID2, 0x4008ae90},
		{"KVM_GET_MP_STATE", ioctlGetMPState, 0x8004ae98},
		{"KVM_SET_MP_STATE", ioctlSetMPState, 0x4004ae99},
		{"KVM_SET_GUEST_DEBUG", ioctlSetGuestDebug, 0x4048ae9b},
		{"KVM_GET_VCPU_EVENTS", ioctlGetVCPUEvents, 0x8040ae9f},
		{"KVM_SET_VCPU_EVENTS", ioctlSetVCPUEvents, 0x4040aea0},
	} {
		assert.Equal(t, c.want, c.got, "%s = %#x, want %#x", c.name, c.got, c.want)
	}
}

func TestExitReasonString(t *testing.T) {
	assert.Equal(t, "KVM_EXIT_IO", ExitIO.String())
	assert.Equal(t, "KVM_EXIT_INTERNAL_ERROR", ExitInternalError.String())
	assert.Equal(t, "KVM_EXIT_999", ExitReason(999).String())
}

func TestCoalescedLayoutMatchesKernelHeaders(t *testing.T) {
	assert.EqualValues(t, 16, unsafe.Sizeof(coalescedZone{}), "sizeof(struct kvm_coalesced_mmio_zone)")
	assert.EqualValues(t, 24, unsafe.Sizeof(coalescedEntry{}), "sizeof(struct kvm_coalesced_mmio)")
	assert.EqualValues(t, 8, unsafe.Sizeof(coalescedRingHeader{}), "sizeof(struct kvm_coalesced_mmio_ring)")
	var e coalescedEntry
	assert.EqualValues(t, 12, unsafe.Offsetof(e.PIO))
	assert.EqualValues(t, 16, unsafe.Offsetof(e.Data))
	assert.Equal(t, uintptr(0x4010ae67), ioctlRegisterCoalescedMMIO, "KVM_REGISTER_COALESCED_MMIO")
}

package kvm

// DebugExit is struct kvm_debug_exit_arch, the payload of a KVM_EXIT_DEBUG
// on x86 (<asm/kvm.h>): the intercepted exception vector (1 for #DB, 3
// for #BP), the linear address of the instruction (for #BP the int3
// itself), and DR6 and DR7 at the exit.
type DebugExit struct {
	Exception uint32
	PC        uint64
	DR6       uint64
	DR7       uint64
}

// Offsets in kvm_run's exit union of struct kvm_debug_exit_arch
// { __u32 exception; __u32 pad; __u64 pc; __u64 dr6; __u64 dr7; }.
const (
	debugExceptionOff = 0
	debugPCOff        = 8
	debugDR6Off       = 16
	debugDR7Off       = 24
)

// DebugExit returns the current KVM_EXIT_DEBUG.
func (v *VCPU) DebugExit() DebugExit {
	return DebugExit{
		Exception: v.exitU32(debugExceptionOff),
		PC:        v.exitU64(debugPCOff),
		DR6:       v.exitU64(debugDR6Off),
		DR7:       v.exitU64(debugDR7Off),
	}
}

// CapSetGuestDebug2 is KVM_CAP_SET_GUEST_DEBUG2: CheckExtension returns the
// mask of kvm_guest_debug.control flags this KVM accepts (Linux 5.15+;
// 0 before), which is how to know whether KVM_GUESTDBG_BLOCKIRQ exists.
const CapSetGuestDebug2 = 195

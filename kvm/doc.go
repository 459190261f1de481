// Package kvm is a thin, typed layer over the Linux KVM ioctl API
// (Documentation/virt/kvm/api.rst in the Linux tree).
//
// KVM exposes three kinds of file descriptors:
//
//   - the system fd (/dev/kvm): API version, capabilities, supported CPUID,
//     and KVM_CREATE_VM;
//   - a VM fd: memory slots, the in-kernel interrupt controllers, interrupt
//     routing, eventfds, and KVM_CREATE_VCPU;
//   - a vCPU fd: registers, MSRs, CPUID, and KVM_RUN, whose results come back
//     in a shared "kvm_run" page mapped from the vCPU fd.
//
// Each Go type here wraps one of those fds. Every error names the ioctl that
// failed, so a failure deep inside machine setup still says what KVM refused.
//
// The structs mirror the C structs in <linux/kvm.h> and <asm/kvm.h> for
// x86-64 byte for byte; layout_test.go checks their sizes against the values
// the C compiler reports for the kernel headers.
package kvm

package kvm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl request numbers are built from four fields (asm-generic/ioctl.h):
// direction (2 bits), argument size (14 bits), type (8 bits), number (8 bits).
// KVM's type is 0xAE (KVMIO in <linux/kvm.h>).
const (
	iocNone  = 0
	iocWrite = 1 // userspace writes the argument to the kernel
	iocRead  = 2 // the kernel writes the argument back

	iocNRShift   = 0
	iocTypeShift = 8
	iocSizeShift = 16
	iocDirShift  = 30

	kvmIO = 0xAE
)

func ioc(dir, nr, size uintptr) uintptr {
	return dir<<iocDirShift | kvmIO<<iocTypeShift | nr<<iocNRShift | size<<iocSizeShift
}

func io(nr uintptr) uintptr         { return ioc(iocNone, nr, 0) }
func ior(nr, size uintptr) uintptr  { return ioc(iocRead, nr, size) }
func iow(nr, size uintptr) uintptr  { return ioc(iocWrite, nr, size) }
func iowr(nr, size uintptr) uintptr { return ioc(iocRead|iocWrite, nr, size) }
func sizeOf[T any]() uintptr        { var v T; return unsafe.Sizeof(v) }

// The ioctls govmm uses, with the numbers <linux/kvm.h> defines for them.
var (
	// System ioctls (on /dev/kvm).
	ioctlGetAPIVersion     = io(0x00)
	ioctlCreateVM          = io(0x01)
	ioctlGetMSRIndexList   = iowr(0x02, 4) // struct kvm_msr_list header
	ioctlCheckExtension    = io(0x03)
	ioctlGetVCPUMmapSize   = io(0x04)
	ioctlGetSupportedCPUID = iowr(0x05, 8) // struct kvm_cpuid2 header

	// VM ioctls.
	ioctlCreateVCPU          = io(0x41)
	ioctlSetUserMemoryRegion = iow(0x46, sizeOf[UserspaceMemoryRegion]())
	ioctlSetTSSAddr          = io(0x47)
	ioctlSetIdentityMapAddr  = iow(0x48, 8)
	ioctlCreateIRQChip       = io(0x60)
	ioctlIRQLine             = iow(0x61, sizeOf[irqLevel]())
	ioctlSetGSIRouting       = iow(0x6a, 8) // struct kvm_irq_routing header
	ioctlIRQFD               = iow(0x76, sizeOf[irqfd]())
	ioctlSetBootCPUID        = io(0x78)
	ioctlIOEventFD           = iow(0x79, sizeOf[ioeventfd]())
	ioctlEnableCap           = iow(0xa3, sizeOf[EnableCap]())
	ioctlSignalMSI           = iow(0xa5, sizeOf[MSI]())

	// vCPU ioctls.
	ioctlRun           = io(0x80)
	ioctlGetRegs       = ior(0x81, sizeOf[Regs]())
	ioctlSetRegs       = iow(0x82, sizeOf[Regs]())
	ioctlGetSregs      = ior(0x83, sizeOf[Sregs]())
	ioctlSetSregs      = iow(0x84, sizeOf[Sregs]())
	ioctlTranslate     = iowr(0x85, sizeOf[Translation]())
	ioctlGetMSRs       = iowr(0x88, 8) // struct kvm_msrs header
	ioctlSetMSRs       = iow(0x89, 8)
	ioctlGetFPU        = ior(0x8c, sizeOf[FPU]())
	ioctlSetFPU        = iow(0x8d, sizeOf[FPU]())
	ioctlGetLAPIC      = ior(0x8e, sizeOf[LAPICState]())
	ioctlSetLAPIC      = iow(0x8f, sizeOf[LAPICState]())
	ioctlSetCPUID2     = iow(0x90, 8) // struct kvm_cpuid2 header
	ioctlGetMPState    = ior(0x98, 4)
	ioctlSetMPState    = iow(0x99, 4)
	ioctlSetGuestDebug = iow(0x9b, sizeOf[GuestDebug]())
	ioctlGetVCPUEvents = ior(0x9f, sizeOf[VCPUEvents]())
	ioctlSetVCPUEvents = iow(0xa0, sizeOf[VCPUEvents]())
)

// Error is a failed KVM ioctl. Op is the ioctl's name as <linux/kvm.h>
// spells it; Err is the errno.
type Error struct {
	Op  string
	Err error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ioctl issues one ioctl and wraps a failure in an *Error naming op. It does
// not retry on EINTR: for KVM_RUN an EINTR is how a vCPU is stopped, and the
// caller decides what it means.
func ioctl(fd int, op string, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, &Error{Op: op, Err: errno}
	}
	return r, nil
}

// ioctlPtr is ioctl with a pointer argument. Converting the unsafe.Pointer
// to uintptr inside the call expression keeps the object alive and unmoved
// for the duration of the syscall (the rule in unsafe.Pointer's doc, case 4).
func ioctlPtr(fd int, op string, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return &Error{Op: op, Err: errno}
	}
	return nil
}

func errorf(op, format string, args ...any) error {
	return &Error{Op: op, Err: fmt.Errorf(format, args...)}
}

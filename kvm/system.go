package kvm

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is where the KVM system device lives.
const DevicePath = "/dev/kvm"

// APIVersion is the only KVM API version there has ever been
// (KVM_API_VERSION in <linux/kvm.h>); anything else is not KVM as we know it.
const APIVersion = 12

// Capabilities govmm checks with KVM_CHECK_EXTENSION (<linux/kvm.h>).
const (
	CapIRQChip          = 0x00
	CapUserMemory       = 0x03
	CapSetTSSAddr       = 0x04
	CapExtCPUID         = 0x07
	CapNrVCPUs          = 0x09
	CapNrMemslots       = 0x0a
	CapMPState          = 0x0e
	CapSetGuestDebug    = 0x17
	CapIRQRouting       = 0x19
	CapIRQFD            = 0x20
	CapIOEventFD        = 0x24
	CapSetIdentityMap   = 0x25
	CapAdjustClock      = 0x27
	CapVCPUEvents       = 0x29
	CapGetTSCKHz        = 0x3d
	CapMaxVCPUs         = 0x42
	CapTSCDeadlineTimer = 0x48
	CapSignalMSI        = 0x4d
	CapIOEventFDAnyLen  = 0x7a // KVM_CAP_IOEVENTFD_ANY_LENGTH: MMIO ioeventfds of length 0 match any width
	CapImmediateExit    = 0x88
	CapNestedState      = 0x9d
)

// System is an open /dev/kvm.
type System struct {
	fd       int
	mmapSize int // size of the per-vCPU kvm_run mapping
}

// ErrNoKVM and ErrKVMPermission classify the two common reasons /dev/kvm
// cannot be opened, so the CLI can say how to fix each.
var (
	ErrNoKVM         = errors.New("/dev/kvm does not exist: KVM is not available on this host (load kvm_intel or kvm_amd, or enable virtualization in the firmware)")
	ErrKVMPermission = errors.New("permission denied opening /dev/kvm: add your user to the kvm group (usermod -aG kvm $USER, then log in again) or install a udev rule such as KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0666\"")
)

// Open opens /dev/kvm and checks the API version.
func Open() (*System, error) { return OpenPath(DevicePath) }

// OpenPath opens the KVM system device at path.
func OpenPath(path string) (*System, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("%w (%s)", ErrNoKVM, path)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return nil, ErrKVMPermission
	case err != nil:
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	s := &System{fd: fd}
	v, err := ioctl(fd, "KVM_GET_API_VERSION", ioctlGetAPIVersion, 0)
	if err != nil {
		s.Close()
		return nil, err
	}
	if v != APIVersion {
		s.Close()
		return nil, errorf("KVM_GET_API_VERSION", "API version %d, want %d", v, APIVersion)
	}
	n, err := ioctl(fd, "KVM_GET_VCPU_MMAP_SIZE", ioctlGetVCPUMmapSize, 0)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.mmapSize = int(n)
	return s, nil
}

// Close closes /dev/kvm. VMs created from it stay valid.
func (s *System) Close() error { return unix.Close(s.fd) }

// FD returns the file descriptor.
func (s *System) FD() int { return s.fd }

// CheckExtension returns KVM_CHECK_EXTENSION's answer for capability c:
// 0 when unsupported, otherwise 1 or a capability-specific number.
func (s *System) CheckExtension(c int) int {
	r, err := ioctl(s.fd, "KVM_CHECK_EXTENSION", ioctlCheckExtension, uintptr(c))
	if err != nil {
		return 0
	}
	return int(r)
}

// VCPUMmapSize is the size of the kvm_run area mapped from each vCPU fd.
func (s *System) VCPUMmapSize() int { return s.mmapSize }

// maxCPUIDEntries bounds the E2BIG retry loop of SupportedCPUID; real hosts
// report well under 100 entries.
const maxCPUIDEntries = 4096

// SupportedCPUID returns KVM_GET_SUPPORTED_CPUID: every CPUID leaf KVM can
// present to a guest, with the bits KVM and the host CPU support. The kernel
// answers E2BIG when the buffer is too small, so the buffer doubles until it
// fits (api.rst, "KVM_GET_SUPPORTED_CPUID").
func (s *System) SupportedCPUID() ([]CPUIDEntry, error) {
	for n := 64; n <= maxCPUIDEntries; n *= 2 {
		entries, err := cpuid2Ioctl(s.fd, "KVM_GET_SUPPORTED_CPUID", ioctlGetSupportedCPUID, make([]CPUIDEntry, n))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		return entries, err
	}
	return nil, errorf("KVM_GET_SUPPORTED_CPUID", "more than %d entries", maxCPUIDEntries)
}

// cpuid2Ioctl passes a struct kvm_cpuid2 { u32 nent; u32 padding; entries[] }
// and returns the entries the kernel filled in.
func cpuid2Ioctl(fd int, op string, req uintptr, entries []CPUIDEntry) ([]CPUIDEntry, error) {
	const headerWords = 2 // nent, padding
	entryWords := int(unsafe.Sizeof(CPUIDEntry{}) / 4)
	buf := make([]uint32, headerWords+len(entries)*entryWords)
	buf[0] = uint32(len(entries))
	dst := unsafe.Slice((*CPUIDEntry)(unsafe.Pointer(&buf[headerWords])), len(entries))
	copy(dst, entries)
	if err := ioctlPtr(fd, op, req, unsafe.Pointer(&buf[0])); err != nil {
		return nil, err
	}
	n := int(buf[0])
	if n > len(entries) {
		return nil, errorf(op, "kernel returned %d entries for a buffer of %d", n, len(entries))
	}
	out := make([]CPUIDEntry, n)
	copy(out, dst[:n])
	return out, nil
}

// MSRIndexList returns KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and
// restores for a vCPU.
func (s *System) MSRIndexList() ([]uint32, error) {
	for n := 256; n <= 1<<16; n *= 2 {
		buf := make([]uint32, 1+n) // struct kvm_msr_list { u32 nmsrs; u32 indices[]; }
		buf[0] = uint32(n)
		err := ioctlPtr(s.fd, "KVM_GET_MSR_INDEX_LIST", ioctlGetMSRIndexList, unsafe.Pointer(&buf[0]))
		if errors.Is(err, unix.E2BIG) {
			continue
		}
		if err != nil {
			return nil, err
		}
		got := int(buf[0])
		if got > n {
			return nil, errorf("KVM_GET_MSR_INDEX_LIST", "kernel returned %d entries for %d", got, n)
		}
		return append([]uint32(nil), buf[1:1+got]...), nil
	}
	return nil, errorf("KVM_GET_MSR_INDEX_LIST", "list too long")
}

// maxCreateVMTries bounds the EINTR retries of KVM_CREATE_VM; a signal
// arrives at most every few milliseconds, so a handful always suffices.
const maxCreateVMTries = 100

// CreateVM creates a new, empty virtual machine (KVM_CREATE_VM, type 0).
//
// KVM_CREATE_VM fails with EINTR when a signal is pending while KVM
// registers its MMU notifier on the process (mmu_notifier_register takes
// mm_take_all_locks, which gives up on a pending signal). The Go runtime
// signals its threads on its own (SIGURG preempts goroutines), so this
// happens to govmm now and then; the call is simply made again, as QEMU's
// kvm_init does.
func (s *System) CreateVM() (*VM, error) {
	for try := 1; ; try++ {
		fd, err := ioctl(s.fd, "KVM_CREATE_VM", ioctlCreateVM, 0)
		if errors.Is(err, unix.EINTR) && try < maxCreateVMTries {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &VM{fd: int(fd), sys: s}, nil
	}
}

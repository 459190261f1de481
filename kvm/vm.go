package kvm

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// VM is a KVM virtual machine fd.
type VM struct {
	fd  int
	sys *System
}

// Close closes the VM fd. The VM lives on until its vCPU fds are closed too.
func (vm *VM) Close() error { return unix.Close(vm.fd) }

// FD returns the file descriptor.
func (vm *VM) FD() int { return vm.fd }

// CheckExtension asks the VM (rather than the system) about a capability;
// some answers, such as CapMaxVCPUs, can differ per VM.
func (vm *VM) CheckExtension(c int) int {
	r, err := ioctl(vm.fd, "KVM_CHECK_EXTENSION", ioctlCheckExtension, uintptr(c))
	if err != nil {
		return 0
	}
	return int(r)
}

// SetUserMemoryRegion creates, moves or deletes (MemorySize 0) a memory slot.
// host must stay mapped for as long as the slot exists.
func (vm *VM) SetUserMemoryRegion(slot uint32, gpa uint64, host []byte, flags uint32) error {
	r := UserspaceMemoryRegion{Slot: slot, Flags: flags, GuestPhysAddr: gpa, MemorySize: uint64(len(host))}
	if len(host) > 0 {
		r.UserspaceAddr = uint64(uintptr(unsafe.Pointer(&host[0])))
	}
	return ioctlPtr(vm.fd, "KVM_SET_USER_MEMORY_REGION", ioctlSetUserMemoryRegion, unsafe.Pointer(&r))
}

// SetTSSAddr tells Intel VMX where three pages for the real-mode TSS may
// live (KVM_SET_TSS_ADDR). It must be outside guest RAM.
func (vm *VM) SetTSSAddr(addr uint64) error {
	_, err := ioctl(vm.fd, "KVM_SET_TSS_ADDR", ioctlSetTSSAddr, uintptr(addr))
	return err
}

// SetIdentityMapAddr places the one-page identity-map table Intel VMX uses
// for real mode without unrestricted guest (KVM_SET_IDENTITY_MAP_ADDR).
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	return ioctlPtr(vm.fd, "KVM_SET_IDENTITY_MAP_ADDR", ioctlSetIdentityMapAddr, unsafe.Pointer(&addr))
}

// CreateIRQChip creates the in-kernel interrupt controllers: two 8259 PICs,
// an IOAPIC, and a local APIC for every vCPU created afterwards
// (KVM_CREATE_IRQCHIP). With it, KVM handles INIT/SIPI, HLT and interrupt
// delivery without exits to userspace.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctl(vm.fd, "KVM_CREATE_IRQCHIP", ioctlCreateIRQChip, 0)
	return err
}

// IRQLine sets the level of a GSI (KVM_IRQ_LINE). Under the default routing
// GSIs 0-15 drive both the PIC pin and the IOAPIC pin of the same number, and
// GSIs 16-23 only the IOAPIC.
func (vm *VM) IRQLine(gsi uint32, high bool) error {
	l := irqLevel{IRQ: gsi}
	if high {
		l.Level = 1
	}
	return ioctlPtr(vm.fd, "KVM_IRQ_LINE", ioctlIRQLine, unsafe.Pointer(&l))
}

// SetGSIRouting replaces the whole GSI routing table (KVM_SET_GSI_ROUTING).
func (vm *VM) SetGSIRouting(entries []IRQRoutingEntry) error {
	const headerWords = 1 // struct kvm_irq_routing { u32 nr; u32 flags; entries[] }
	entryWords := int(unsafe.Sizeof(IRQRoutingEntry{}) / 8)
	buf := make([]uint64, headerWords+len(entries)*entryWords)
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(entries))
	if len(entries) > 0 {
		copy(unsafe.Slice((*IRQRoutingEntry)(unsafe.Pointer(&buf[headerWords])), len(entries)), entries)
	}
	return ioctlPtr(vm.fd, "KVM_SET_GSI_ROUTING", ioctlSetGSIRouting, unsafe.Pointer(&buf[0]))
}

// Flags for IRQFD and IOEventFD.
const (
	irqfdFlagDeassign = 1 << 0 // KVM_IRQFD_FLAG_DEASSIGN

	IOEventFDFlagDatamatch = 1 << 0 // KVM_IOEVENTFD_FLAG_DATAMATCH
	IOEventFDFlagPIO       = 1 << 1 // KVM_IOEVENTFD_FLAG_PIO
	ioeventfdFlagDeassign  = 1 << 2 // KVM_IOEVENTFD_FLAG_DEASSIGN
)

// IRQFD makes a write to eventfd efd raise GSI gsi inside the kernel, with
// no userspace round trip (KVM_IRQFD).
func (vm *VM) IRQFD(efd int, gsi uint32) error {
	a := irqfd{FD: uint32(efd), GSI: gsi}
	return ioctlPtr(vm.fd, "KVM_IRQFD", ioctlIRQFD, unsafe.Pointer(&a))
}

// RemoveIRQFD undoes IRQFD.
func (vm *VM) RemoveIRQFD(efd int, gsi uint32) error {
	a := irqfd{FD: uint32(efd), GSI: gsi, Flags: irqfdFlagDeassign}
	return ioctlPtr(vm.fd, "KVM_IRQFD", ioctlIRQFD, unsafe.Pointer(&a))
}

// IOEventFD makes a guest write of size bytes at addr (an I/O port with
// IOEventFDFlagPIO, else an MMIO address) signal eventfd efd instead of
// exiting to userspace (KVM_IOEVENTFD). With IOEventFDFlagDatamatch only
// writes of datamatch count.
func (vm *VM) IOEventFD(efd int, addr uint64, size uint32, datamatch uint64, flags uint32) error {
	a := ioeventfd{Datamatch: datamatch, Addr: addr, Len: size, FD: int32(efd), Flags: flags}
	return ioctlPtr(vm.fd, "KVM_IOEVENTFD", ioctlIOEventFD, unsafe.Pointer(&a))
}

// RemoveIOEventFD undoes IOEventFD (same arguments).
func (vm *VM) RemoveIOEventFD(efd int, addr uint64, size uint32, datamatch uint64, flags uint32) error {
	a := ioeventfd{Datamatch: datamatch, Addr: addr, Len: size, FD: int32(efd), Flags: flags | ioeventfdFlagDeassign}
	return ioctlPtr(vm.fd, "KVM_IOEVENTFD", ioctlIOEventFD, unsafe.Pointer(&a))
}

// SignalMSI injects one message-signalled interrupt (KVM_SIGNAL_MSI).
func (vm *VM) SignalMSI(m MSI) error {
	return ioctlPtr(vm.fd, "KVM_SIGNAL_MSI", ioctlSignalMSI, unsafe.Pointer(&m))
}

// EnableCap enables a VM capability (KVM_ENABLE_CAP on the VM fd).
func (vm *VM) EnableCap(c EnableCap) error {
	return ioctlPtr(vm.fd, "KVM_ENABLE_CAP", ioctlEnableCap, unsafe.Pointer(&c))
}

// CreateVCPU creates vCPU id and maps its kvm_run area. With an in-kernel
// irqchip, id is also the vCPU's initial local APIC ID, and vCPU 0 is the
// bootstrap processor.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(vm.fd, "KVM_CREATE_VCPU", ioctlCreateVCPU, uintptr(id))
	if err != nil {
		return nil, err
	}
	run, err := unix.Mmap(int(fd), 0, vm.sys.mmapSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, errorf("mmap kvm_run", "%v", err)
	}
	if len(run) < int(unsafe.Sizeof(runHeader{})) {
		unix.Munmap(run)
		unix.Close(int(fd))
		return nil, errorf("KVM_GET_VCPU_MMAP_SIZE", "kvm_run area of %d bytes is too small", len(run))
	}
	return &VCPU{fd: int(fd), id: id, run: run, hdr: (*runHeader)(unsafe.Pointer(&run[0]))}, nil
}

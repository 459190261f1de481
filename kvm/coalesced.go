package kvm

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Coalesced I/O (api.rst, "KVM_REGISTER_COALESCED_MMIO"): for a registered
// zone of MMIO addresses or, with KVM_CAP_COALESCED_PIO, of I/O ports, KVM
// does not exit on a guest write. It appends the write to a ring that
// userspace reads later, and the guest goes on at once. That suits
// registers whose writes have no immediate effect the guest can see, such
// as the PCI configuration address register at 0xCF8: its value matters
// only at the next access to the data port 0xCFC, which does exit. QEMU
// does the same for its PC chipsets.
//
// Userspace must replay the ring's writes, in order, before it handles any
// other access to the device, so that ordering is as if each write had
// exited.

const (
	CapCoalescedMMIO = 15  // KVM_CAP_COALESCED_MMIO: the ring's page offset in the vCPU mapping
	CapCoalescedPIO  = 162 // KVM_CAP_COALESCED_PIO
)

// coalescedZone is struct kvm_coalesced_mmio_zone.
type coalescedZone struct {
	Addr uint64
	Size uint32
	PIO  uint32
}

// coalescedEntry is struct kvm_coalesced_mmio: one recorded write.
type coalescedEntry struct {
	PhysAddr uint64
	Len      uint32
	PIO      uint32
	Data     [8]byte
}

// coalescedRingHeader is struct kvm_coalesced_mmio_ring without its
// entries: KVM appends at last, userspace consumes from first.
type coalescedRingHeader struct {
	First uint32
	Last  uint32
}

var (
	ioctlRegisterCoalescedMMIO = iow(0x67, unsafe.Sizeof(coalescedZone{}))
)

// RegisterCoalescedPIO makes guest writes to I/O ports [port, port+size)
// go to the coalesced ring instead of exiting.
func (vm *VM) RegisterCoalescedPIO(port uint16, size uint32) error {
	z := coalescedZone{Addr: uint64(port), Size: size, PIO: 1}
	return ioctlPtr(vm.fd, "KVM_REGISTER_COALESCED_MMIO", ioctlRegisterCoalescedMMIO, unsafe.Pointer(&z))
}

// CoalescedWrite is one write taken from the ring.
type CoalescedWrite struct {
	PIO  bool   // an I/O port write (else MMIO)
	Addr uint64 // the port or guest-physical address
	Data []byte // 1 to 8 bytes; valid until the next call of Drain's callback
}

// CoalescedRing is the shared ring page. Every vCPU maps the same page, so
// a VM has one ring; the caller serialises Drain calls.
type CoalescedRing struct {
	hdr     *coalescedRingHeader
	entries []coalescedEntry
}

// CoalescedRing returns the VM's coalesced ring through this vCPU's
// mapping, or nil if KVM has none (pageOffset from CapCoalescedMMIO is 0)
// or the mapping is too small.
func (v *VCPU) CoalescedRing(pageOffset int) *CoalescedRing {
	page := unix.Getpagesize()
	start := pageOffset * page
	if pageOffset <= 0 || start+page > len(v.run) {
		return nil
	}
	hdrSize := int(unsafe.Sizeof(coalescedRingHeader{}))
	n := (page - hdrSize) / int(unsafe.Sizeof(coalescedEntry{})) // KVM_COALESCED_MMIO_MAX
	return &CoalescedRing{
		hdr:     (*coalescedRingHeader)(unsafe.Pointer(&v.run[start])),
		entries: unsafe.Slice((*coalescedEntry)(unsafe.Pointer(&v.run[start+hdrSize])), n),
	}
}

// Drain passes every pending write to fn, oldest first, and frees its slot.
// It returns how many there were. The indexes come from memory KVM writes,
// so they are bounded before use.
func (r *CoalescedRing) Drain(fn func(CoalescedWrite)) int {
	n := 0
	max := uint32(len(r.entries))
	for {
		first := atomic.LoadUint32(&r.hdr.First)
		if first == atomic.LoadUint32(&r.hdr.Last) || first >= max {
			return n
		}
		e := &r.entries[first]
		l := e.Len
		if l > uint32(len(e.Data)) {
			l = uint32(len(e.Data))
		}
		fn(CoalescedWrite{PIO: e.PIO != 0, Addr: e.PhysAddr, Data: e.Data[:l]})
		atomic.StoreUint32(&r.hdr.First, (first+1)%max)
		n++
	}
}

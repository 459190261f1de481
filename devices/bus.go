package devices

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// portSpace is the number of x86 I/O ports: IN and OUT take a 16-bit port
// number (Intel SDM Vol. 1 §19.3, "I/O Address Space").
const portSpace = 1 << 16

// bitsPerWord is the number of ports one word of the logged bitmap covers.
const bitsPerWord = 64

// portRange is one registered device: ports [base, base+size).
type portRange struct {
	name string
	base uint16
	size uint16
	dev  PortDevice
}

// end returns one past the last port of the range, as an int so that a range
// ending at 0xFFFF does not wrap.
func (r *portRange) end() int { return int(r.base) + int(r.size) }

// PortBus routes the guest's port I/O to the devices registered on it.
//
// Registration is expected before the vCPUs run, but is safe at any time:
// the table of ranges is an immutable sorted slice that Register replaces
// as a whole (copy on write), so Read, Write and Lookup never take a lock;
// they find the device with a binary search.
//
// An access is routed by its first port; the device receives the whole
// access (see PortDevice). Ports no device claims behave as an empty ISA
// slot: reads return all ones and writes are dropped. Each such port is
// logged once, at debug level.
type PortBus struct {
	regMu  sync.Mutex                  // serialises Register
	ranges atomic.Pointer[[]portRange] // sorted by base, never overlapping
	// logged has one bit per port, set once an unclaimed access to that
	// port has been logged.
	logged [portSpace / bitsPerWord]atomic.Uint64
}

// NewPortBus returns an empty bus.
func NewPortBus() *PortBus {
	b := &PortBus{}
	b.ranges.Store(&[]portRange{})
	return b
}

// Register attaches dev at ports [base, base+size). name identifies the
// device in errors, logs and Lookup. It fails if size is zero, if the range
// runs past port 0xFFFF, or if it overlaps a registered device.
func (b *PortBus) Register(name string, base, size uint16, dev PortDevice) error {
	if dev == nil {
		return fmt.Errorf("port bus: register %q: nil device", name)
	}
	if size == 0 {
		return fmt.Errorf("port bus: register %q at %#x: zero size", name, base)
	}
	nr := portRange{name: name, base: base, size: size, dev: dev}
	if nr.end() > portSpace {
		return fmt.Errorf("port bus: register %q at %#x size %#x: runs past the last port %#x",
			name, base, size, portSpace-1)
	}

	b.regMu.Lock()
	defer b.regMu.Unlock()
	old := *b.ranges.Load()
	for i := range old {
		r := &old[i]
		if int(nr.base) < r.end() && int(r.base) < nr.end() {
			return fmt.Errorf("port bus: %q at [%#x, %#x] overlaps %q at [%#x, %#x]",
				name, nr.base, nr.end()-1, r.name, r.base, r.end()-1)
		}
	}
	i, _ := slices.BinarySearchFunc(old, base, func(r portRange, port uint16) int {
		return int(r.base) - int(port)
	})
	next := slices.Insert(slices.Clone(old), i, nr)
	b.ranges.Store(&next)
	return nil
}

// Unregister detaches the device registered with Register at exactly
// [base, base+size), as when the guest moves or disables a PCI I/O BAR,
// and reports whether there was one. Only the owner of a registration
// should remove it: the bus cannot tell who registered what.
func (b *PortBus) Unregister(base, size uint16) bool {
	b.regMu.Lock()
	defer b.regMu.Unlock()
	old := *b.ranges.Load()
	i := slices.IndexFunc(old, func(r portRange) bool { return r.base == base && r.size == size })
	if i < 0 {
		return false
	}
	next := slices.Delete(slices.Clone(old), i, i+1)
	b.ranges.Store(&next)
	return true
}

// find returns the range that contains port, or nil.
func (b *PortBus) find(port uint16) *portRange {
	rs := *b.ranges.Load()
	// The first range whose end lies beyond port is the only candidate.
	i, _ := slices.BinarySearchFunc(rs, port, func(r portRange, p uint16) int {
		if r.end() <= int(p) {
			return -1
		}
		return 1
	})
	if i < len(rs) && rs[i].base <= port {
		return &rs[i]
	}
	return nil
}

// Read performs a guest IN of len(data) bytes from port, filling data.
func (b *PortBus) Read(port uint16, data []byte) {
	if r := b.find(port); r != nil {
		r.dev.ReadPort(port-r.base, data)
		return
	}
	b.logUnclaimed(port, "read", len(data))
	fillOpenBus(data)
}

// Write performs a guest OUT of data to port.
func (b *PortBus) Write(port uint16, data []byte) {
	if r := b.find(port); r != nil {
		r.dev.WritePort(port-r.base, data)
		return
	}
	b.logUnclaimed(port, "write", len(data))
}

// Lookup returns the name of the device that claims port.
func (b *PortBus) Lookup(port uint16) (name string, ok bool) {
	if r := b.find(port); r != nil {
		return r.name, true
	}
	return "", false
}

// logUnclaimed logs the first access to a port nobody claims. Later
// accesses to it cost one atomic operation.
func (b *PortBus) logUnclaimed(port uint16, op string, size int) {
	bit := uint64(1) << (port % bitsPerWord)
	if b.logged[port/bitsPerWord].Or(bit)&bit != 0 {
		return
	}
	slog.Debug("unclaimed I/O port", "port", fmt.Sprintf("%#x", port), "op", op, "size", size)
}

// Ignore is a device for ports that are known but deliberately do nothing:
// reads return all ones, writes are dropped, and nothing is logged. Its main
// use is port 0x80, the POST diagnostic port, which Linux writes for short
// I/O delays (arch/x86/include/asm/io.h, native_io_delay) many times during
// boot.
type Ignore struct{}

// ReadPort fills data with all ones, as an empty slot would.
func (Ignore) ReadPort(offset uint16, data []byte) { fillOpenBus(data) }

// WritePort drops the write.
func (Ignore) WritePort(offset uint16, data []byte) {}

// POSTPort is the POST code port: firmware writes progress codes to it and
// Linux writes it as an I/O delay. Register Ignore{} there.
const POSTPort uint16 = 0x80

package pci

import (
	"fmt"
	"slices"

	"github.com/govmm/govmm/devices"
)

// MMIOHandler answers guest loads and stores inside a region of
// guest-physical memory (a memory BAR, the ECAM window) or, through
// IOPortDevice, of I/O space (an I/O BAR). offset is relative to the start
// of the region. A read must fill all of data. Handlers must accept any
// offset and any length, including accesses that run past their end: the
// guest is untrusted.
type MMIOHandler interface {
	ReadMMIO(offset uint64, data []byte)
	WriteMMIO(offset uint64, data []byte)
}

// IOPortDevice adapts the handler of an I/O BAR to the port bus: register
// it at the BAR's port with the BAR's size.
func IOPortDevice(h MMIOHandler) devices.PortDevice { return ioPorts{h} }

type ioPorts struct{ h MMIOHandler }

func (p ioPorts) ReadPort(offset uint16, data []byte)  { p.h.ReadMMIO(uint64(offset), data) }
func (p ioPorts) WritePort(offset uint16, data []byte) { p.h.WriteMMIO(uint64(offset), data) }

// Mux is an MMIOHandler that lays out several handlers inside one BAR, for
// example virtio's configuration structures next to the MSI-X table and
// PBA. An access is routed by its first byte to the handler whose range
// contains it, at an offset relative to that range; the handler gets the
// whole access (see MMIOHandler). Bytes no handler covers read as zero and
// ignore writes, as unimplemented registers inside a device's BAR
// commonly do.
//
// Add handlers before the BAR can decode; a Mux is read-only afterwards,
// so accesses need no lock.
type Mux struct {
	ranges []muxRange // sorted by offset, never overlapping
}

type muxRange struct {
	offset, size uint64
	h            MMIOHandler
}

// Add places h at [offset, offset+size) of the BAR.
func (m *Mux) Add(offset, size uint64, h MMIOHandler) error {
	if h == nil || size == 0 || offset+size < offset {
		return fmt.Errorf("pci: bad mux range [%#x, +%#x)", offset, size)
	}
	for _, r := range m.ranges {
		if offset < r.offset+r.size && r.offset < offset+size {
			return fmt.Errorf("pci: mux range [%#x, %#x) overlaps [%#x, %#x)",
				offset, offset+size, r.offset, r.offset+r.size)
		}
	}
	i, _ := slices.BinarySearchFunc(m.ranges, offset, func(r muxRange, off uint64) int {
		if r.offset < off {
			return -1
		}
		return 1
	})
	m.ranges = slices.Insert(m.ranges, i, muxRange{offset: offset, size: size, h: h})
	return nil
}

// find returns the range containing offset, or nil.
func (m *Mux) find(offset uint64) *muxRange {
	i, _ := slices.BinarySearchFunc(m.ranges, offset, func(r muxRange, off uint64) int {
		if r.offset+r.size <= off {
			return -1
		}
		return 1
	})
	if i < len(m.ranges) && m.ranges[i].offset <= offset {
		return &m.ranges[i]
	}
	return nil
}

// ReadMMIO routes a read to the handler at offset, or reads zeros.
func (m *Mux) ReadMMIO(offset uint64, data []byte) {
	if r := m.find(offset); r != nil {
		r.h.ReadMMIO(offset-r.offset, data)
		return
	}
	clear(data)
}

// WriteMMIO routes a write to the handler at offset, or drops it.
func (m *Mux) WriteMMIO(offset uint64, data []byte) {
	if r := m.find(offset); r != nil {
		r.h.WriteMMIO(offset-r.offset, data)
	}
}

package pci

import "fmt"

// AddCapability appends a capability to the function's capability list
// (PCI 3.0 §6.7) and returns its offset in configuration space. body is
// the capability after its two-byte header: the bus fills in the ID and
// the next pointer.
//
// Capabilities are laid out in the order they are added, each at the
// first DWORD-aligned offset after the previous one (the first at 0x40,
// right after the predefined header), and the list is linked in the same
// order: the Capabilities Pointer at 0x34 points at the first one, each
// next pointer at the following one, and the last one's is 0. The first
// capability also sets Status bit 4 (Capabilities List). Everything must
// fit in the first 256 bytes, which is all that pointers reach.
//
// The body is read-only to the guest; make fields writable with
// SetWriteMask or SetW1CMask, and give them side effects with OnRead and
// OnWrite.
func (c *ConfigSpace) AddCapability(id uint8, body []byte) (offset uint8, err error) {
	if id == invalidCapabilityID {
		return 0, fmt.Errorf("pci: capability ID %#x reads as the end of the list", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	off := alignUp(c.capEnd, capabilityAlign)
	end := off + capabilityHeaderSize + len(body)
	if end > ConfigSpaceSize {
		return 0, fmt.Errorf("pci: capability %#x of %d bytes does not fit below %#x (first free offset %#x)",
			id, capabilityHeaderSize+len(body), ConfigSpaceSize, off)
	}
	c.regs[off] = id
	c.regs[off+capabilityNext] = 0
	copy(c.regs[off+capabilityHeaderSize:], body)
	if c.lastCap == 0 {
		c.regs[RegCapabilitiesPointer] = byte(off)
		le.PutUint16(c.regs[RegStatus:], c.u16Locked(RegStatus)|StatusCapabilitiesList)
	} else {
		c.regs[int(c.lastCap)+capabilityNext] = byte(off)
	}
	c.lastCap = uint8(off)
	c.capEnd = end
	return uint8(off), nil
}

// maxVendorCapabilityBody is the most data a vendor-specific capability
// can carry after its ID, next pointer and one-byte length.
const maxVendorCapabilityBody = 0xFF - vendorCapabilityLength - 1

// AddVendorCapability appends a vendor-specific capability (ID 09h, PCI
// 3.0 Appendix H) holding data after its length byte, which it fills in:
// the whole structure's size, ID and next pointer included. virtio's
// capabilities are of this kind (virtio 1.2 §4.1.4: struct virtio_pci_cap
// starts with cap_vndr, cap_next, cap_len; data begins at cfg_type). It
// returns the capability's offset.
func (c *ConfigSpace) AddVendorCapability(data []byte) (offset uint8, err error) {
	if len(data) > maxVendorCapabilityBody {
		return 0, fmt.Errorf("pci: vendor capability of %d data bytes overflows its length byte", len(data))
	}
	body := make([]byte, 0, 1+len(data))
	body = append(body, byte(capabilityHeaderSize+1+len(data)))
	body = append(body, data...)
	return c.AddCapability(CapabilityVendorSpecific, body)
}

// alignUp rounds n up to a multiple of align, a power of two.
func alignUp(n, align int) int { return (n + align - 1) &^ (align - 1) }

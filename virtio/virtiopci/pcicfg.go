package virtiopci

import (
	"math/bits"

	"github.com/govmm/govmm/devices/pci"
)

// The PCI configuration access capability (§4.1.4.9): struct
// virtio_pci_cfg_cap, a window in configuration space onto the BARs. The
// driver writes cap.bar, cap.offset and cap.length (1, 2 or 4 bytes), then
// reads or writes pci_cfg_data, and the device performs that access on the
// BAR. It lets software that cannot map BARs, such as firmware in real
// mode, drive the device with configuration cycles alone; "The device MUST
// present at least one VIRTIO_PCI_CAP_PCI_CFG capability".
//
// Because the window does not go through the BAR's address, it works
// whether or not Memory Space decoding is on.

// setupPCICfgWindow makes the capability's bar, offset, length and
// pci_cfg_data fields writable ("The fields cap.bar, cap.length,
// cap.offset and pci_cfg_data are read-write (RW) for the driver") and
// hooks pci_cfg_data.
func (t *Transport) setupPCICfgWindow() error {
	base := t.pciCfgCap
	rw := func(offset uint16, n int) error {
		mask := make([]byte, n)
		for i := range mask {
			mask[i] = 0xFF
		}
		return t.cs.SetWriteMask(base+offset, mask)
	}
	for _, f := range []struct {
		offset uint16
		size   int
	}{{capBAR, 1}, {capOffset, 4}, {capLength, 4}, {capPCICfgData, pciCfgDataSize}} {
		if err := rw(f.offset, f.size); err != nil {
			return err
		}
	}
	data := base + capPCICfgData
	// "Upon detecting driver read access to pci_cfg_data, the device
	// MUST execute a read access of length cap.length at offset
	// cap.offset at BAR selected by cap.bar and store the first
	// cap.length bytes in pci_cfg_data." The read hook runs before the
	// configuration read returns the bytes.
	if err := t.cs.OnRead(data, pciCfgDataSize, func(uint16, int) { t.pciCfgAccess(false) }); err != nil {
		return err
	}
	// "Upon detecting driver write access to pci_cfg_data, the device
	// MUST execute a write access at offset cap.offset at BAR selected
	// by cap.bar using the first cap.length bytes from pci_cfg_data."
	// The write hook runs after the bytes landed in pci_cfg_data.
	return t.cs.OnWrite(data, pciCfgDataSize, func(uint16, int) { t.pciCfgAccess(true) })
}

// pciCfgAccess performs the BAR access the window's fields describe. An
// access the driver may not make ("The driver MUST NOT write a cap.offset
// which is not a multiple of cap.length", cap.length 1, 2 or 4, a BAR the
// function has) does nothing.
func (t *Transport) pciCfgAccess(write bool) {
	base := t.pciCfgCap
	bar := t.cs.Uint8(base + capBAR)
	offset := t.cs.Uint32(base + capOffset)
	length := t.cs.Uint32(base + capLength)
	h, size := t.barHandler(bar)
	if h == nil || length == 0 || length > pciCfgDataSize || bits.OnesCount32(length) != 1 ||
		offset%length != 0 || uint64(offset)+uint64(length) > size {
		return
	}
	data := base + capPCICfgData
	var buf [pciCfgDataSize]byte
	if write {
		for i := range length {
			buf[i] = t.cs.Uint8(data + uint16(i))
		}
		h.WriteMMIO(uint64(offset), buf[:length])
		return
	}
	h.ReadMMIO(uint64(offset), buf[:length])
	for i := range length {
		t.cs.SetUint8(data+uint16(i), buf[i])
	}
}

// barHandler returns the handler and size of BAR bar, or nil for a BAR the
// function does not have.
func (t *Transport) barHandler(bar uint8) (pci.MMIOHandler, uint64) {
	switch bar {
	case BARIndex:
		return t.bar, BARSize
	case NotifyIOBARIndex:
		return t.notifyIO, NotifyIOBARSize
	}
	return nil, 0
}

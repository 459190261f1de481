// Package pvpanic is QEMU's paravirtualized panic device in its PCI form,
// pvpanic-pci (QEMU hw/misc/pvpanic-pci.c): a PCI function with one byte
// register through which a guest kernel tells the host that it panicked.
// The host learns of the panic at once, instead of from a console message
// it would have to recognise or a guest that stops answering.
//
// # The register
//
// BAR 0 is a small memory BAR whose first byte is the register (QEMU's
// hw/misc/pvpanic.c, pvpanic_read and pvpanic_write):
//
//   - a read returns the events the device supports, here
//     PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
//   - a write reports the events whose bits are set.
//
// Linux's driver (drivers/misc/pvpanic/pvpanic.c) reads the register once,
// when it binds (devm_pvpanic_probe), and keeps the supported events as
// its capability. Its panic notifier, which runs first among the panic
// notifiers (priority INT_MAX), then writes PVPANIC_CRASH_LOADED if a
// crash kernel is loaded (kdump will take over and the host should let it)
// and PVPANIC_PANICKED otherwise (pvpanic_panic_notify), with iowrite8 at
// the start of the BAR, and only bits of its capability.
//
// # Linux
//
// pvpanic-pci.ko binds PCI 1b36:0011 and needs pvpanic.ko, which registers
// the panic notifier. Debian 12's generic and cloud kernels (6.1) build
// both as modules (CONFIG_PVPANIC=y, which only opens the menu;
// CONFIG_PVPANIC_PCI=m; CONFIG_PVPANIC_MMIO=m, the ACPI "QEMU0001" and
// device tree variant). A guest whose userspace does not load modules by
// alias must load pvpanic.ko and then pvpanic-pci.ko itself.
package pvpanic

import (
	"fmt"

	"github.com/govmm/govmm/devices/pci"
)

// Identity of the function, as QEMU gives it (hw/misc/pvpanic-pci.c and
// the defaults of hw/pci/pci.c); the names are those of QEMU's and Linux's
// headers.
const (
	// PCI_VENDOR_ID_REDHAT is the vendor ID of Red Hat's emulated
	// devices, the one Linux's pvpanic-pci matches.
	PCI_VENDOR_ID_REDHAT = 0x1B36
	// PCI_DEVICE_ID_REDHAT_PVPANIC is pvpanic-pci's device ID.
	PCI_DEVICE_ID_REDHAT_PVPANIC = 0x0011
	// PCI_SUBVENDOR_ID_REDHAT_QUMRANET and PCI_SUBDEVICE_ID_QEMU are the
	// subsystem IDs QEMU gives every PCI device unless it sets its own.
	PCI_SUBVENDOR_ID_REDHAT_QUMRANET = 0x1AF4
	PCI_SUBDEVICE_ID_QEMU            = 0x1100
	// PCI_CLASS_SYSTEM_OTHER is base class 08h (base system peripheral),
	// sub-class 80h (other), as QEMU's pc->class_id; the class code
	// register adds programming interface 00h.
	PCI_CLASS_SYSTEM_OTHER = 0x0880
	// Revision is QEMU's pc->revision.
	Revision = 1
)

// Events (Linux's include/uapi/misc/pvpanic.h), bits of the register.
const (
	// PVPANIC_PANICKED: the guest kernel panicked.
	PVPANIC_PANICKED = 1 << 0
	// PVPANIC_CRASH_LOADED: the guest kernel panicked with a crash kernel
	// loaded, which is about to take over (kdump).
	PVPANIC_CRASH_LOADED = 1 << 1
	// Supported are the events the device supports, what a read of the
	// register returns: QEMU's default (PVPANIC_EVENTS). Newer kernels
	// also know PVPANIC_SHUTDOWN (bit 2), which they send on a normal
	// power off only if the device supports it; this one does not.
	Supported = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED
)

// Layout of the BAR.
const (
	// BARIndex is the BAR that holds the register (pcim_iomap(pdev, 0, 0)
	// in Linux's pvpanic_pci_probe).
	BARIndex = 0
	// BARSize is its size: the smallest memory BAR. QEMU registers a
	// 2-byte region, which software sizes as 16 bytes too, since the low
	// 4 bits of a memory BAR are its type bits (PCI 3.0 §6.2.5.1).
	BARSize = pci.MinMemoryBARSize
	// RegEvents is the offset of the register in the BAR.
	RegEvents = 0
)

// ISAPort is where QEMU's ISA variant (-device pvpanic) puts the same
// register, one I/O port, which the DSDT describes as a device with _HID
// "QEMU0001" and that port in its _CRS (Linux's pvpanic-mmio binds it).
// Register serves it as a devices.PortDevice of one port; govmm uses the
// PCI variant.
const ISAPort = 0x505

// Register is the pvpanic register. It answers accesses to the BAR
// (pci.MMIOHandler) or to ISAPort (devices.PortDevice) at offsets from
// their start.
type Register struct {
	onEvent func(events uint8)
}

// NewRegister returns the register. onEvent, if not nil, is called for
// each guest write of the register that has a supported event bit set,
// with the supported bits of the byte written (never 0). It is called on
// the vCPU goroutine whose access it is, possibly from several at once,
// and should return quickly: the vCPU that panicked waits for it.
func NewRegister(onEvent func(events uint8)) *Register {
	return &Register{onEvent: onEvent}
}

// ReadMMIO reads the register: its byte holds Supported, every other byte
// of the access reads as 0, whatever its offset and width.
func (r *Register) ReadMMIO(offset uint64, data []byte) {
	clear(data)
	if offset == RegEvents && len(data) > 0 {
		data[0] = Supported
	}
}

// WriteMMIO handles a write: one that includes the register's byte
// reports that byte's supported events. Linux writes single bytes; a
// wider write at the register's offset counts its first byte, and bits
// the device does not support are ignored, as QEMU does after logging them
// (handle_event).
func (r *Register) WriteMMIO(offset uint64, data []byte) {
	if offset != RegEvents || len(data) == 0 {
		return
	}
	if ev := data[0] & Supported; ev != 0 && r.onEvent != nil {
		r.onEvent(ev)
	}
}

// ReadPort reads the register as an I/O port.
func (r *Register) ReadPort(offset uint16, data []byte) { r.ReadMMIO(uint64(offset), data) }

// WritePort writes the register as an I/O port.
func (r *Register) WritePort(offset uint16, data []byte) { r.WriteMMIO(uint64(offset), data) }

// Device is the pvpanic-pci function: its configuration space and its
// register in BAR 0.
type Device struct {
	cs  *pci.ConfigSpace
	reg *Register
}

// New returns a pvpanic-pci function whose register calls onEvent (see
// NewRegister). Attach it to a bus slot; the machine maps BAR 0's Handler
// (the Register) where the guest places it.
func New(onEvent func(events uint8)) (*Device, error) {
	cs, err := pci.NewConfigSpace(pci.Header{
		VendorID:          PCI_VENDOR_ID_REDHAT,
		DeviceID:          PCI_DEVICE_ID_REDHAT_PVPANIC,
		RevisionID:        Revision,
		ClassCode:         PCI_CLASS_SYSTEM_OTHER << 8, // programming interface 00h
		SubsystemVendorID: PCI_SUBVENDOR_ID_REDHAT_QUMRANET,
		SubsystemID:       PCI_SUBDEVICE_ID_QEMU,
		// No interrupt: the device only listens.
		InterruptPin: pci.PinNone,
	})
	if err != nil {
		return nil, fmt.Errorf("pvpanic: %w", err)
	}
	reg := NewRegister(onEvent)
	if err := cs.SetBAR(BARIndex, pci.BAR{Kind: pci.BARMemory32, Size: BARSize, Handler: reg}); err != nil {
		return nil, fmt.Errorf("pvpanic: %w", err)
	}
	return &Device{cs: cs, reg: reg}, nil
}

// Config returns the function's configuration space (pci.Device).
func (d *Device) Config() *pci.ConfigSpace { return d.cs }

// Register returns the register behind BAR 0.
func (d *Device) Register() *Register { return d.reg }

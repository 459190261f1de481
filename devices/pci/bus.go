package pci

import (
	"fmt"
	"sync"

	"github.com/govmm/govmm/devices"
)

// Geometry of the configuration address (PCI 3.0 §3.2.2.3.2; PCIe §7.2.2).
const (
	// MaxSlots is the number of devices on a bus: the device number is 5
	// bits.
	MaxSlots = 32
	// MaxFunctions is the number of functions of a device: the function
	// number is 3 bits. Only function 0 is implemented.
	MaxFunctions = 8
	// RootBus is the number of the bus below the host bridge, the only
	// bus there is.
	RootBus = 0
	// HostBridgeSlot is the slot of the host bridge.
	HostBridgeSlot = 0
)

// Address selects a configuration register: bus, device (slot), function
// and byte offset in that function's configuration space.
type Address struct {
	Bus      uint8
	Device   uint8
	Function uint8
	Register uint16
}

// String formats the address as lspci does (bus:device.function) with the
// register.
func (a Address) String() string {
	return fmt.Sprintf("%02x:%02x.%d+%#x", a.Bus, a.Device, a.Function, a.Register)
}

// Device is a PCI function on a Bus. The bus routes the guest's
// configuration accesses to its ConfigSpace, wires its INTx# pin and
// reports its BARs to the machine.
type Device interface {
	Config() *ConfigSpace
}

// BARMapper is the machine's side of BAR decoding: the bus tells it when a
// BAR starts or stops decoding, so that it can install the BAR's Handler
// where the guest placed it (on its MMIO bus for a memory BAR, its port bus
// for an I/O BAR) and remove it again, together with anything else tied to
// the address, such as ioeventfds.
//
// A BAR decodes while the guest has enabled its space in the Command
// register (Memory Space or I/O Space, PCI 3.0 §6.2.2) and it holds a
// usable address (not 0, not reaching the top of its address space). Every
// change is reported as UnmapBAR of the old region, if the BAR decoded,
// then MapBAR of the new one, if it decodes: moving a decoding BAR, turning
// the Command bit on or off, and sizing a BAR with decoding left on all
// produce these pairs, so a mapper that mirrors the calls always agrees
// with the guest.
//
// The calls come on the vCPU goroutine whose configuration write caused
// them, with the bus's configuration lock held; they must not make
// configuration accesses through the bus. The guest may place BARs
// anywhere, over RAM or over each other: the mapper decides what wins.
type BARMapper interface {
	MapBAR(dev Device, r Region)
	UnmapBAR(dev Device, r Region)
}

// BusConfig is the machine's side of a Bus.
type BusConfig struct {
	// Mapper receives BAR decoding changes; nil ignores them.
	Mapper BARMapper
	// IRQ returns the interrupt line of an I/O APIC input, called once
	// for each of the INTx GSIs (INTxGSIBase to INTxGSIBase+NumINTxGSIs-1)
	// by NewBus; nil leaves INTx unconnected.
	IRQ func(gsi uint32) devices.IRQLine
}

// Bus is PCI bus 0 and its host bridge: it routes configuration
// transactions from Conf1 and ECAM to the functions in its slots (see the
// package documentation for what is and is not modelled).
type Bus struct {
	// mu serialises configuration transactions and Attach: a host
	// bridge issues one transaction at a time.
	mu     sync.Mutex
	slots  [MaxSlots]Device
	mapper BARMapper
	intx   *intxRouter
	bridge *HostBridge
}

// NewBus returns a bus with the host bridge at 00:00.0.
func NewBus(cfg BusConfig) *Bus {
	b := &Bus{mapper: cfg.Mapper, intx: newINTxRouter(cfg.IRQ), bridge: newHostBridge()}
	if err := b.Attach(HostBridgeSlot, b.bridge); err != nil {
		panic(err) // cannot happen: the bus is empty and the bridge new
	}
	return b
}

// HostBridge returns the host bridge at 00:00.0.
func (b *Bus) HostBridge() *HostBridge { return b.bridge }

// Attach puts dev in slot (1 to 31; slot 0 is the host bridge's) as
// function 0, wires its INTx# pin to the line INTxGSI gives and reports the
// BARs it already decodes. A ConfigSpace can be attached only once.
func (b *Bus) Attach(slot int, dev Device) error {
	if slot < 0 || slot >= MaxSlots {
		return fmt.Errorf("pci: slot %d is not in 0-%d", slot, MaxSlots-1)
	}
	if dev == nil || dev.Config() == nil {
		return fmt.Errorf("pci: slot %d: nil device", slot)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slots[slot] != nil {
		return fmt.Errorf("pci: slot %d is occupied", slot)
	}
	cs := dev.Config()
	var line devices.IRQLine
	if gsi, ok := INTxGSI(slot, cs.InterruptPin()); ok {
		line = b.intx.pin(gsi)
	}
	var notify func(Region, bool)
	if m := b.mapper; m != nil {
		notify = func(r Region, mapped bool) {
			if mapped {
				m.MapBAR(dev, r)
			} else {
				m.UnmapBAR(dev, r)
			}
		}
	}
	if err := cs.attach(notify, line); err != nil {
		return fmt.Errorf("pci: slot %d: %w", slot, err)
	}
	b.slots[slot] = dev
	return nil
}

// Device returns the device in slot, or nil.
func (b *Bus) Device(slot int) Device {
	if slot < 0 || slot >= MaxSlots {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slots[slot]
}

// functionLocked returns the configuration space a addresses, or nil if no
// function answers there. b.mu must be held.
func (b *Bus) functionLocked(a Address) *ConfigSpace {
	if a.Bus != RootBus || a.Function != 0 || int(a.Device) >= MaxSlots || b.slots[a.Device] == nil {
		return nil
	}
	return b.slots[a.Device].Config()
}

// ReadConfig performs a configuration read. A read that no function
// claims returns all ones (PCI 3.0 §6.1: the host bridge completes a
// master-aborted configuration read with all ones), so the Vendor ID of an
// empty slot reads InvalidVendorID.
func (b *Bus) ReadConfig(a Address, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.functionLocked(a)
	if cs == nil {
		fillOnes(data)
		return
	}
	cs.ReadConfig(a.Register, data)
}

// WriteConfig performs a configuration write; one that no function claims
// is dropped.
func (b *Bus) WriteConfig(a Address, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cs := b.functionLocked(a); cs != nil {
		cs.WriteConfig(a.Register, data)
	}
}

// INTxRoutes returns the route of the INTx# pin of every device on the bus
// that has one, by slot: the MP table's I/O interrupt entries for bus 0.
func (b *Bus) INTxRoutes() []INTxRoute {
	b.mu.Lock()
	defer b.mu.Unlock()
	var routes []INTxRoute
	for slot, dev := range b.slots {
		if dev == nil {
			continue
		}
		pin := dev.Config().InterruptPin()
		if gsi, ok := INTxGSI(slot, pin); ok {
			routes = append(routes, INTxRoute{Slot: slot, Pin: pin, GSI: gsi})
		}
	}
	return routes
}

// fillOnes makes data read as an unclaimed transaction.
func fillOnes(data []byte) {
	for i := range data {
		data[i] = allOnes
	}
}

// Host bridge identity. The bridge is a plain type 0 function of class
// "host bridge" with no BARs and no interrupt: Linux needs nothing more
// from it, and an ID without chipset registers behind it keeps guests from
// binding chipset drivers (intel-agp, EDAC) or quirks to it. It uses the
// ID Red Hat assigned to QEMU's generic PCIe host bridge (QEMU
// docs/specs/pci-ids.rst: "1b36:0008 PCIe host bridge"; lspci: "Red Hat,
// Inc. QEMU PCIe Host bridge"), and QEMU's default subsystem IDs
// (1af4:1100, "QEMU Virtual Machine").
const (
	HostBridgeVendorID          = 0x1B36 // Red Hat, Inc.
	HostBridgeDeviceID          = 0x0008 // QEMU PCIe host bridge
	HostBridgeRevisionID        = 0x00
	HostBridgeSubsystemVendorID = 0x1AF4 // Red Hat, Inc. (formerly Qumranet)
	HostBridgeSubsystemID       = 0x1100 // QEMU Virtual Machine
)

// HostBridge is the function at 00:00.0 that represents the host bridge
// itself (PCI 3.0 §3.2.2.3.2 reserves no slot for it; PCs put it at device
// 0 by convention).
type HostBridge struct {
	cs *ConfigSpace
}

func newHostBridge() *HostBridge {
	cs, err := NewConfigSpace(Header{
		VendorID:          HostBridgeVendorID,
		DeviceID:          HostBridgeDeviceID,
		RevisionID:        HostBridgeRevisionID,
		ClassCode:         ClassBridgeHost,
		SubsystemVendorID: HostBridgeSubsystemVendorID,
		SubsystemID:       HostBridgeSubsystemID,
	})
	if err != nil {
		panic(err) // cannot happen: the header is constant and valid
	}
	return &HostBridge{cs: cs}
}

// Config returns the host bridge's configuration space.
func (h *HostBridge) Config() *ConfigSpace { return h.cs }

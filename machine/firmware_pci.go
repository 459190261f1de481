package machine

import (
	"encoding/binary"

	"github.com/govmm/govmm/bootloader/acpi"
	"github.com/govmm/govmm/bootloader/acpi/aml"
	"github.com/govmm/govmm/bootloader/mptable"
	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/machine/memory"
)

// Bus IDs in the MP table: firmware numbers PCI buses first, from 0, and
// the ISA bus after them (MP spec 1.4 §4.3.2).
const (
	mpPCIBusID = pci.RootBus
	mpISABusID = mpPCIBusID + 1
)

// pciLegacyIOEnd is the last port below the configuration mechanism's
// ports; the host bridge forwards every other port to the PCI bus (the
// legacy devices at the bottom included, as on a PC, where they sit behind
// the PCI-to-ISA bridge).
const (
	pciLegacyIOEnd   = pci.ConfigAddressPort - 1
	pciPostConfigIO  = pci.ConfigDataPort + pci.ConfigDataPorts
	ioSpaceLastPort  = 0xFFFF
	confPortsDecoded = uint8(pci.ConfigAddressPorts + pci.ConfigDataPorts)
)

// MCFG layout (PCI Firmware Specification 3.0 §4.1.2, Tables 4-2 and
// 4-3): eight reserved bytes, then one 16-byte allocation entry per ECAM
// window: base address (u64), PCI segment group (u16), start and end bus
// (u8 each) and four reserved bytes.
const (
	mcfgReserved  = 8
	mcfgEntrySize = 16
	mcfgRevision  = 1
)

// ecamRange is the ECAM window as guest-physical address space.
func ecamRange() memory.Range { return memory.Range{Start: pci.ECAMBase, Size: pci.ECAMSize} }

// mcfgTable is the MCFG describing the one ECAM window.
func mcfgTable() acpi.Table {
	body := make([]byte, mcfgReserved, mcfgReserved+mcfgEntrySize)
	body = binary.LittleEndian.AppendUint64(body, pci.ECAMBase)
	body = binary.LittleEndian.AppendUint16(body, pci.ECAMSegment)
	body = append(body, pci.ECAMStartBus, pci.ECAMEndBus, 0, 0, 0, 0)
	return acpi.Table{Signature: "MCFG", Revision: mcfgRevision, Body: body}
}

// pciDSDT is the DSDT part describing the PCI host bridge: a PCI Express
// root bridge (PNP0A08, compatible with the conventional PNP0A03) with the
// bus numbers and address windows it forwards in _CRS (PCI Firmware
// Specification 3.0 §4.1.3 and ACPI 6.5 §6.2.2), the wiring of its INTx
// pins to I/O APIC inputs in _PRT (ACPI 6.5 §6.2.13), and a motherboard
// resource device (PNP0C02) that reserves the ECAM window, which Linux
// wants before it trusts the MCFG (arch/x86/pci/mmconfig-shared.c,
// is_acpi_reserved).
func pciDSDT() []aml.Node {
	win := pci.DefaultWindows()
	prt := aml.Package{}
	for _, r := range pci.INTxRoutingTable() {
		// Package {Address, Pin, Source, Source Index}: Source 0 means
		// Source Index is a GSI, not a link device.
		prt = append(prt, aml.Package{
			aml.Integer(r.PRTAddress()), aml.Integer(r.PRTPin()), aml.Integer(0), aml.Integer(r.GSI),
		})
	}
	ecam := aml.DWordMemory(uint32(pci.ECAMBase), uint32(pci.ECAMBase+pci.ECAMSize-1))
	ecam.Consumer = true
	return []aml.Node{
		aml.Device("PCI0",
			aml.Name("_HID", aml.EISAID("PNP0A08")),
			aml.Name("_CID", aml.EISAID("PNP0A03")),
			aml.Name("_SEG", aml.Integer(pci.ECAMSegment)),
			aml.Name("_BBN", aml.Integer(pci.RootBus)),
			aml.Name("_UID", aml.Integer(0)),
			aml.Name("_CRS", aml.ResourceTemplate(
				aml.WordBusNumber(pci.ECAMStartBus, pci.ECAMEndBus),
				aml.IO{Decode16: true, Min: pci.ConfigAddressPort, Max: pci.ConfigAddressPort, Alignment: 1, Length: confPortsDecoded},
				aml.WordIO(0, pciLegacyIOEnd),
				aml.WordIO(pciPostConfigIO, ioSpaceLastPort),
				aml.DWordMemory(uint32(win.Mem32.Base), uint32(win.Mem32.End()-1)),
			)),
			aml.Name("_PRT", prt),
		),
		aml.Device("MRES",
			aml.Name("_HID", aml.EISAID("PNP0C02")),
			aml.Name("_UID", aml.Integer(1)),
			aml.Name("_CRS", aml.ResourceTemplate(ecam)),
		),
	}
}

// pciMPTable returns the MP table's PCI bus and the I/O interrupt entries
// of the INTx pins of the devices present, level-triggered and active-low
// as PCI interrupts are (PCI 3.0 §2.2.6; see devices/pci's INTx notes).
func (h *pciHost) mpTable() (buses []mptable.Bus, irqs []mptable.Interrupt) {
	buses = []mptable.Bus{{ID: mpPCIBusID, Type: mptable.BusPCI}}
	for _, r := range h.bus.INTxRoutes() {
		irqs = append(irqs, mptable.Interrupt{
			Type:      mptable.INT,
			Flags:     mptable.LevelTriggered | mptable.ActiveLow,
			SourceBus: mpPCIBusID,
			SourceIRQ: r.MPSourceIRQ(),
			Pin:       uint8(r.GSI),
		})
	}
	return buses, irqs
}

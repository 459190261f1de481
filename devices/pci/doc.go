// Package pci models the PCI side of a govmm machine: the configuration
// space of PCI functions, their Base Address Registers, the host bridge that
// reaches them through configuration mechanism #1 (I/O ports 0xCF8-0xCFF)
// and through the PCI Express enhanced configuration access mechanism
// (ECAM, memory-mapped), MSI-X, and INTx interrupt routing. It is a pure
// model: nothing here touches KVM, so all of it is unit-testable, and the
// machine connects it to the hypervisor through a few small interfaces.
//
// The specifications cited throughout are the PCI Local Bus Specification
// 3.0 ("PCI 3.0"), the PCI Express Base Specification 4.0 ("PCIe"), the
// PCI-to-PCI Bridge Architecture Specification 1.2 and the PCI Firmware
// Specification 3.0.
//
// # Topology
//
// There is one bus, bus 0, directly below the host bridge, with up to 32
// devices (PCI 3.0 §3.2.2.3.2: the device number is 5 bits). Each device
// has function 0 only: headers say "single function" (Header Type bit 7
// clear), so Linux does not probe functions 1-7, and accesses to them, to
// any other bus, or to an empty slot read all ones (the master abort a
// host bridge turns into all-ones data, PCI 3.0 §6.1) and drop writes. The
// host bridge itself is the function at 00:00.0 (see HostBridge).
//
// # Wiring a machine
//
//	bus := pci.NewBus(pci.BusConfig{Mapper: m, IRQ: gsiLine})
//	bus.Attach(1, virtioDev)                // slots 1-31
//	conf1 := pci.NewConf1(bus, devices.NewResetControl(power))
//	ports.Register("PCI CONFIG_ADDRESS", pci.ConfigAddressPort, pci.ConfigAddressPorts, conf1.AddressPort())
//	ports.Register("PCI CONFIG_DATA", pci.ConfigDataPort, pci.ConfigDataPorts, conf1.DataPort())
//	ecam, _ := pci.NewECAM(bus, pci.ECAMBusCount) // MMIO at [ECAMBase, ECAMBase+ECAMSize)
//	bus.AssignResources(pci.DefaultWindows())     // the firmware's job
//
// The reset control register at 0xCF9 moves behind CONFIG_ADDRESS, which
// forwards byte accesses to it. m implements BARMapper: it registers a BAR's
// Handler on its MMIO bus (memory BARs) or port bus (I/O BARs, through
// IOPortDevice) when the guest enables it and removes it when the guest
// moves or disables it. gsiLine returns the devices.IRQLine of a GSI; the
// bus ORs the INTx pins that share one (see INTxGSI). Each MSI-X capability
// gets an MSIRouter that programs KVM's GSI routing and delivers messages.
//
// The ACPI tables and the MP table describe the same hardware from the
// exported values: the MCFG entry from ECAMBase, ECAMSegment, ECAMStartBus
// and ECAMEndBus (and the ECAM range must also be reserved, in the e820 map
// or a PNP0C02 resource, or Linux ignores it); the host bridge's _CRS from
// the bus range and DefaultWindows; the _PRT and the MP table's I/O
// interrupt entries from INTxRoutingTable or Bus.INTxRoutes.
//
// # Concurrency
//
// Configuration transactions on a Bus are serialised by one lock, as a
// host bridge issues one at a time; BARMapper and AccessHook callbacks run
// under it, on the vCPU goroutine whose access caused them. A ConfigSpace
// has its own lock so that device goroutines can raise INTx or read the
// Command register at any time; an MSIXTable has one for its vector table.
// The guest is untrusted: any access of any size at any offset is accepted,
// and no guest input makes this package panic.
package pci

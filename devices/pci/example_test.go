package pci_test

import (
	"fmt"

	"github.com/govmm/govmm/devices/pci"
)

// printMapper stands in for the machine: it would add and remove the
// BAR's Handler on its MMIO or port bus.
type printMapper struct{}

func (printMapper) MapBAR(dev pci.Device, r pci.Region)   { fmt.Println("map", r) }
func (printMapper) UnmapBAR(dev pci.Device, r pci.Region) { fmt.Println("unmap", r) }

// printRouter stands in for the machine's KVM GSI routing.
type printRouter struct{}

func (printRouter) UpdateVector(v int, msg pci.MSIMessage, masked bool) {
	fmt.Printf("vector %d: %#x/%#x masked=%v\n", v, msg.Address, msg.Data, masked)
}

func (printRouter) SendMSI(v int, msg pci.MSIMessage) { fmt.Printf("vector %d: send\n", v) }

// A device with one memory BAR holding its MSI-X table and PBA, put on
// the bus, given addresses as firmware would, then programmed by the guest
// through ECAM and the table.
func Example() {
	bus := pci.NewBus(pci.BusConfig{Mapper: printMapper{}})
	cs, _ := pci.NewConfigSpace(pci.Header{
		VendorID: 0x1AF4, DeviceID: 0x1041, ClassCode: 0x020000, // virtio-net
		SubsystemVendorID: 0x1AF4, SubsystemID: 0x0001, InterruptPin: pci.PinINTA,
	})
	bar := &pci.Mux{}
	_ = cs.SetBAR(0, pci.BAR{Kind: pci.BARMemory64, Size: 0x4000, Handler: bar})
	msix, _ := pci.AddMSIX(cs, pci.MSIXConfig{
		Vectors: 2, TableBAR: 0, TableOffset: 0x2000, PBABAR: 0, PBAOffset: 0x3000, Router: printRouter{},
	})
	_ = bar.Add(0x2000, msix.TableSize(), msix)
	_ = bar.Add(0x3000, msix.PBASize(), msix.PBA())
	_ = bus.Attach(1, cs)

	assigned, _ := bus.AssignResources(pci.DefaultWindows())
	fmt.Println("assigned", assigned[0].Kind, fmt.Sprintf("%#x", assigned[0].Addr))
	fmt.Println("INTx", bus.INTxRoutes())

	// The guest: enable bus mastering and MSI-X through ECAM, then
	// program vector 0 and unmask it.
	ecam, _ := pci.NewECAM(bus, pci.ECAMBusCount)
	dev1 := uint64(1) << 15
	ecam.WriteMMIO(dev1+pci.RegCommand, []byte{pci.CommandMemorySpace | pci.CommandBusMaster, 0})
	ctl := dev1 + uint64(msix.CapabilityOffset()) + 2
	ecam.WriteMMIO(ctl, []byte{0, pci.MSIXControlEnable >> 8})
	bar.WriteMMIO(0x2000, []byte{0x00, 0x00, 0xE0, 0xFE, 0, 0, 0, 0}) // address
	bar.WriteMMIO(0x2008, []byte{0x41, 0x00, 0, 0, 0, 0, 0, 0})       // data, unmasked
	msix.Signal(0)

	// Output:
	// map BAR0 64-bit memory [0xc0000000, 0xc0004000)
	// assigned 64-bit memory 0xc0000000
	// INTx [{1 INTA# 17}]
	// vector 0: 0xfee00000/0x41 masked=false
	// vector 0: send
}

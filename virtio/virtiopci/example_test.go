package virtiopci_test

import (
	"fmt"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiopci"
	"github.com/govmm/govmm/virtio/virtiotest"
)

// printingMapper stands in for the machine's BARMapper.
type printingMapper struct{}

func (printingMapper) MapBAR(_ pci.Device, r pci.Region)   { fmt.Println("map", r) }
func (printingMapper) UnmapBAR(_ pci.Device, r pci.Region) { fmt.Println("unmap", r) }

// A virtio-rng on the PCI bus, as the machine wires it: the function goes
// into a slot, firmware assigns its BAR, and the queue's notify address
// becomes an ioeventfd on the Kick eventfd.
func Example() {
	mem, _ := virtiotest.NewRAM(0, 1<<20)
	t, err := virtiopci.New(virtiopci.Config{Device: rng.New(), Mem: mem})
	if err != nil {
		panic(err)
	}
	defer t.Close() // after the machine removed the ioeventfds

	bus := pci.NewBus(pci.BusConfig{Mapper: printingMapper{}})
	_ = bus.Attach(1, t)
	_, _ = bus.AssignResources(pci.DefaultWindows())

	cs := t.Config()
	fmt.Printf("%04x:%04x class %06x\n", cs.VendorID(), cs.DeviceID(), cs.ClassCode())
	bar, _ := cs.MappedRegion(virtiopci.BARIndex)
	for _, d := range t.Doorbells() {
		fmt.Printf("doorbell: BAR%d+%#x = %#x, any width\n", d.BAR, d.Offset, bar.Addr+d.Offset)
	}
	// Output:
	// map BAR0 32-bit memory [0xc0000000, 0xc0008000)
	// 1af4:1044 class ff0000
	// doorbell: BAR0+0x3000 = 0xc0003000, any width
}

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
// into a slot, firmware assigns its BARs, and the queue's two notify
// registers become ioeventfds on the Kick eventfd: an address in BAR 0,
// and the notify port, shared by all queues, matching the queue's index.
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
	for _, d := range t.Doorbells() {
		bar, _ := cs.MappedRegion(d.BAR)
		fmt.Printf("doorbell: %v, offset %#x = %#x", bar.Kind, d.Offset, bar.Addr+d.Offset)
		if d.Match {
			fmt.Printf(", %d-byte writes of %d\n", d.Size, d.Data)
		} else {
			fmt.Println(", any width")
		}
	}
	// Output:
	// map BAR0 32-bit memory [0xc0000000, 0xc0008000)
	// map BAR1 I/O [0xc000, 0xc004)
	// 1af4:1044 class ff0000
	// doorbell: 32-bit memory, offset 0x3000 = 0xc0003000, any width
	// doorbell: I/O, offset 0x0 = 0xc000, 2-byte writes of 0
}

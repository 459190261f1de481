package acpi_test

import (
	"fmt"

	"github.com/govmm/govmm/bootloader/acpi"
	"github.com/govmm/govmm/bootloader/acpi/aml"
	"github.com/govmm/govmm/machine/memory"
)

func ExampleBuild() {
	cfg := acpi.Config{
		NumCPUs:          2,
		LAPICAddr:        memory.LAPICAddr,
		IOAPICAddr:       memory.IOAPICAddr,
		IOAPICID:         2, // after the processors' APIC IDs 0 and 1, as in the MP table
		SCIIRQ:           9,
		PM1aEventBlock:   0x600,
		PM1aControlBlock: 0x604,
		PMTimerBlock:     0x608,
		PMTimer32Bit:     true,
		ResetPort:        0xCF9,
		ResetValue:       0x06,
		S5SleepType:      5,
		// A device in \_SB; a PCI host bridge would go here.
		SystemBus: []aml.Node{
			aml.Device("COM1",
				aml.Name("_HID", aml.EISAID("PNP0501")),
				aml.Name("_CRS", aml.ResourceTemplate(
					aml.IO{Decode16: true, Min: 0x3F8, Max: 0x3F8, Alignment: 1, Length: 8},
					aml.IRQNoFlags{4},
				)),
			),
		},
	}
	blob, rsdp, err := acpi.Build(cfg, memory.BIOSROMStart)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The machine copies blob to guest memory at memory.BIOSROMStart and
	// passes rsdp in boot_params.acpi_rsdp_addr.
	fmt.Printf("RSDP at %#x, %d bytes of tables\n", rsdp, len(blob))
	// Output: RSDP at 0xe0000, 696 bytes of tables
}

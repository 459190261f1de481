package mptable_test

import (
	"fmt"

	"github.com/govmm/govmm/bootloader/mptable"
	"github.com/govmm/govmm/machine/memory"
)

func ExampleBuild() {
	const base = 0xF0000 // the BIOS area Linux scans for "_MP_"
	cfg := mptable.Config{
		NumCPUs:      2,
		CPUSignature: 0x000806F8, // CPUID.1:EAX of the vCPUs
		CPUFeatures:  0x178BFBFF, // CPUID.1:EDX of the vCPUs
		LAPICAddr:    memory.LAPICAddr,
		IOAPICAddr:   memory.IOAPICAddr,
		IOAPICID:     2, // unique: processors have APIC IDs 0 and 1
	}
	blob, err := mptable.Build(cfg, base)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%q at %#x, %d bytes\n", blob[:4], base, len(blob))
	// Output: "_MP_" at 0xf0000, 252 bytes
}

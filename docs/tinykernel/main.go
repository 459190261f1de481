// Command tinykernel writes the smallest "Linux kernel" govmm will boot
// (see internal/tinykernel): a bzImage of about 600 bytes whose 64-bit entry
// point prints the kernel command line and powers the machine off. It
// exists for docs/tour.md.
//
//	go run ./docs/tinykernel build/tiny-bzImage
//	govmm boot --kernel build/tiny-bzImage --append 'hello from the zero page'
package main

import (
	"fmt"
	"os"

	"github.com/govmm/govmm/internal/tinykernel"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tinykernel OUTPUT")
		os.Exit(2)
	}
	if err := os.WriteFile(os.Args[1], tinykernel.BzImage(tinykernel.PrintCmdlineAndPowerOff), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "tinykernel:", err)
		os.Exit(1)
	}
}

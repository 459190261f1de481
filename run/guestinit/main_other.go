//go:build !linux

package guestinit

import (
	"fmt"
	"os"

	"github.com/govmm/govmm/run/wire"
)

// exitUnsupported is the exit status of Main where there is no Linux to
// be the init of.
const exitUnsupported = 1

// Main is the guest init of a Linux VM; on any other system it says so
// and exits.
func Main() {
	fmt.Fprintf(os.Stderr, "%sthe guest init runs only on Linux\n", wire.ConsolePrefix)
	os.Exit(exitUnsupported)
}

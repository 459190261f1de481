package machine

import (
	"github.com/govmm/govmm/bootloader"
	"github.com/govmm/govmm/kvm"
	"github.com/govmm/govmm/machine/memory"
)

// RealModeLoadAddr is where a flat real-mode image is loaded and entered:
// 0000:7C00, the address at which PC firmware has always loaded and
// started a boot sector. Tiny hand-made guests (tests, lessons) use it.
const RealModeLoadAddr = 0x7C00

// MaxRealModeImage is the largest real-mode image: it must fit between
// RealModeLoadAddr and the EBDA, in conventional memory.
const MaxRealModeImage = memory.EBDAStart - RealModeLoadAddr

// loadRealMode copies a flat real-mode image to RealModeLoadAddr and points
// the bootstrap processor at it. The CPU stays in the state KVM gives a
// vCPU after reset (Intel SDM Vol. 3A §10.1.1, Table 10-1) except for CS:IP,
// which would otherwise point at the BIOS reset vector, and SP.
func (m *Machine) loadRealMode(image []byte) error {
	// ValidateConfig has checked that the image fits below the EBDA.
	if _, err := m.mem.WriteAt(image, RealModeLoadAddr); err != nil {
		return err
	}
	v := m.vcpus[0]
	sregs, err := v.GetSregs()
	if err != nil {
		return err
	}
	sregs.CS.Selector, sregs.CS.Base = 0, 0
	if err := v.SetSregs(sregs); err != nil {
		return err
	}
	// The stack grows down from just below the image, as after a BIOS boot.
	return v.SetRegs(kvm.Regs{RIP: RealModeLoadAddr, RSP: RealModeLoadAddr, RFLAGS: bootloader.RFLAGSReserved1})
}

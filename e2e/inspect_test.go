package e2e

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// inspected is the state govmm printed on SIGUSR2 for a hung TestVirtioAllBusy
// in the nested test bed (abridged): vCPU 0 is the guest's own, vCPU 1
// carries L1's registers.
const inspected = `govmm: user defined signal 2: the vCPUs' state
vCPU 0: runnable, interrupts enabled
  RIP=ffffffff812f6a02 RFLAGS=0000000000000202 RSP=ffa00000001a3db0 RBP=ff11000000667070
  R14=0000000000000000 R15=ffa00000001a3e78
  CR0=0000000080050033 CR2=00000000004f03ca CR3=0000000000663000 CR4=00000000007116b0 EFER=0000000000000d01
  local APIC: TPR=10 in service [], requested []
vCPU 1: runnable, interrupts enabled
  RIP=ffffffffc058f20c RFLAGS=0000000000010246 RSP=ff764808403b7c60 RBP=ff1100000055d020
  CR0=0000000080050033 CR2=ffffffffc058f20c CR3=0000000136dc2000 CR4=00000000007116a0 EFER=0000000000000d01
  local APIC: TPR=00 in service [], requested [33 236]
`

func TestForeignVCPUState(t *testing.T) {
	why, ok := foreignVCPUState(inspected, 512<<20)
	assert.True(t, ok)
	assert.Contains(t, why, "vCPU 1 runs with CR3=0x136dc2000, outside the guest's 512 MiB")

	// The same vCPUs in a guest with 8 GiB: both CR3s are RAM.
	_, ok = foreignVCPUState(inspected, 8<<30)
	assert.False(t, ok)
	// Bit 63 (no flush) and the PCID in bits 11:0 are not address bits.
	_, ok = foreignVCPUState("vCPU 0: halted, interrupts enabled\n  CR0=0 CR2=0 CR3=8000000000663663 CR4=0\n", 512<<20)
	assert.False(t, ok)
	// No inspection (govmm did not answer, or was never asked).
	_, ok = foreignVCPUState("SIGQUIT: quit\n", 512<<20)
	assert.False(t, ok)
}

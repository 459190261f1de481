package machine

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio/virtiommio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mmioMachine is a machine, never started, whose virtio functions are n
// virtio-mmio devices in windows 0..n-1 on the lines addVirtioMMIO gives.
func mmioMachine(n int) *Machine {
	m := &Machine{}
	for i := range n {
		m.virtio = append(m.virtio, &virtioFunction{
			name: fmt.Sprintf("dev%d", i),
			mmio: &mmioDevice{
				base: memory.VirtioMMIOBase + uint64(i)*virtiommio.Window,
				irq:  virtioMMIOIRQs[i%len(virtioMMIOIRQs)],
			},
		})
	}
	return m
}

// TestVirtioMMIODSDT checks, through iasl's disassembly, that each
// virtio-mmio device is a LNRO0005 platform device in \_SB with its window
// and line, in window order, and that a line two devices use is marked
// shared.
func TestVirtioMMIODSDT(t *testing.T) {
	m := mmioMachine(len(virtioMMIOIRQs) + 2)
	s := disassemble(t, buildACPI(t, append(pciDSDT(), m.virtioMMIODSDT()...)), "DSDT")

	devices := regexp.MustCompile(`Device \((VR[0-9A-F]{2})\)`).FindAllStringSubmatch(s, -1)
	var names []string
	for _, d := range devices {
		names = append(names, d[1])
	}
	assert.Equal(t, []string{"VR00", "VR01", "VR02", "VR03", "VR04", "VR05", "VR06", "VR07", "VR08"}, names,
		"one device per window, in window order")

	for i, f := range m.virtio {
		shared := "Exclusive"
		if i%len(virtioMMIOIRQs) < 2 { // windows 0 and 7 share IRQ 5, 1 and 8 IRQ 6
			shared = "Shared"
		}
		// iasl prints a device's objects in order: _HID, _UID, _CRS.
		want := fmt.Sprintf(`(?s)Device \(VR%02X\)\s*\{\s*`+
			`Name \(_HID, "LNRO0005"\).*?`+
			`Name \(_UID, %s\).*?`+
			`Memory32Fixed \(ReadWrite,\s*0x%08X,[^)]*0x00001000,`+
			`.*?IRQ \(Edge, ActiveHigh, %s, \)\s*\{%d\}`,
			i, uidASL(i), f.mmio.base, shared, f.mmio.irq)
		assert.Regexp(t, want, s, "device %d", i)
	}
}

// uidASL is how iasl disassembles a small integer: Zero, One, or hex.
func uidASL(i int) string {
	switch i {
	case 0:
		return "Zero"
	case 1:
		return "One"
	}
	return fmt.Sprintf("0x%02X", i)
}

func TestVirtioMMIODSDTEmpty(t *testing.T) {
	require.Empty(t, (&Machine{}).virtioMMIODSDT(), "the PCI transport adds no platform devices")
}

func TestVirtioMMIOACPIName(t *testing.T) {
	last := &mmioDevice{base: memory.VirtioMMIOBase + uint64(MaxVirtioMMIODevices-1)*virtiommio.Window}
	assert.Equal(t, "VRFF", last.acpiName(), "every window has a four-character name")
}

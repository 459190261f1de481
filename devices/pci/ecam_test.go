package pci

import (
	"testing"

	"github.com/govmm/govmm/machine/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ecamOffset is where a register sits in the ECAM window (PCIe §7.2.2,
// Table 7-1).
func ecamOffset(bus, dev, fn uint8, reg uint16) uint64 {
	return uint64(bus)<<20 | uint64(dev)<<15 | uint64(fn)<<12 | uint64(reg)
}

func ecamRead(e *ECAM, off uint64, n int) uint64 {
	b := make([]byte, 8)
	e.ReadMMIO(off, b[:n])
	return le.Uint64(b)
}

func TestECAMDecoding(t *testing.T) {
	bus := NewBus(BusConfig{})
	dev := newConfig(t, Header{VendorID: 0x1AF4, DeviceID: 0x1042, Extended: true})
	require.NoError(t, bus.Attach(5, dev))
	e, err := NewECAM(bus, ECAMBusCount)
	require.NoError(t, err)
	assert.EqualValues(t, ECAMSize, e.Size())

	assert.EqualValues(t, 0x10421AF4, ecamRead(e, ecamOffset(0, 5, 0, 0), 4))
	assert.EqualValues(t, 0x1042, ecamRead(e, ecamOffset(0, 5, 0, RegDeviceID), 2))
	assert.EqualValues(t, 0x10, ecamRead(e, ecamOffset(0, 5, 0, RegDeviceID+1), 1))
	assert.EqualValues(t, HostBridgeVendorID, ecamRead(e, ecamOffset(0, 0, 0, 0), 2))

	// Writes reach the register; extended space is reachable.
	e.WriteMMIO(ecamOffset(0, 5, 0, RegCommand), []byte{CommandMemorySpace, 0})
	assert.EqualValues(t, CommandMemorySpace, dev.Command())
	assert.Zero(t, ecamRead(e, ecamOffset(0, 5, 0, 0x100), 4), "no extended capabilities")
	assert.Zero(t, ecamRead(e, ecamOffset(0, 5, 0, 0xFFC), 4))
	assert.EqualValues(t, 0xFFFFFFFF, ecamRead(e, ecamOffset(0, 0, 0, 0x100), 4),
		"a conventional function has no extended space")

	// Absent: empty slot, other functions, other buses, past the window.
	for _, off := range []uint64{
		ecamOffset(0, 4, 0, 0), ecamOffset(0, 5, 1, 0), ecamOffset(0, 31, 7, 0xFFC),
		ecamOffset(1, 5, 0, 0), ecamOffset(255, 0, 0, 0), ECAMSize, ECAMSize + ecamOffset(0, 5, 0, 0),
		^uint64(3),
	} {
		assert.EqualValues(t, 0xFFFFFFFF, ecamRead(e, off, 4), "%#x", off)
		e.WriteMMIO(off, []byte{0, 0, 0, 0})
	}

	// Malformed: 8 bytes, 3 bytes, crossing a DWORD boundary.
	assert.EqualValues(t, uint64(1<<64-1), ecamRead(e, ecamOffset(0, 5, 0, 0), 8))
	assert.EqualValues(t, 0xFFFFFF, ecamRead(e, ecamOffset(0, 5, 0, 0), 3))
	assert.EqualValues(t, 0xFFFFFFFF, ecamRead(e, ecamOffset(0, 5, 0, 2), 4))
	assert.EqualValues(t, 0xFFFF, ecamRead(e, ecamOffset(0, 5, 0, 3), 2))
	e.WriteMMIO(ecamOffset(0, 5, 0, RegCommand+1), []byte{0, 0, 0, 0})
	e.WriteMMIO(ecamOffset(0, 5, 0, RegCommand), make([]byte, 8))
	assert.EqualValues(t, CommandMemorySpace, dev.Command(), "malformed writes are dropped")
}

func TestECAMBusCount(t *testing.T) {
	bus := NewBus(BusConfig{})
	e, err := NewECAM(bus, 1)
	require.NoError(t, err)
	assert.EqualValues(t, ECAMBusSize, e.Size())
	assert.EqualValues(t, 0xFFFFFFFF, ecamRead(e, ECAMBusSize, 4))
	_, err = NewECAM(bus, 0)
	assert.Error(t, err)
	_, err = NewECAM(bus, ECAMBusCount+1)
	assert.Error(t, err)
}

// The ECAM window and the BAR window sit in the MMIO hole, apart from each
// other and from the interrupt controllers, and ECAM is naturally aligned
// (PCIe §7.2.2).
func TestPlatformWindows(t *testing.T) {
	assert.EqualValues(t, 256<<20, ECAMSize)
	assert.Zero(t, ECAMBase%ECAMSize, "aligned to its size")
	assert.EqualValues(t, ECAMBusCount-1, ECAMEndBus)
	assert.GreaterOrEqual(t, ECAMBase, uint64(memory.MMIOHoleStart))
	assert.LessOrEqual(t, ECAMBase+ECAMSize, uint64(memory.IOAPICAddr))

	w := DefaultWindows()
	assert.EqualValues(t, memory.MMIOHoleStart, w.Mem32.Base)
	assert.LessOrEqual(t, w.Mem32.End(), ECAMBase)
	assert.Zero(t, w.Mem64.Size)
	assert.EqualValues(t, 0xC000, w.IO.Base)
	assert.EqualValues(t, 0x10000, w.IO.End())
}

package pci

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sizeBAR sizes a BAR as PCI 3.0 §6.2.5.1 describes and Linux does
// (drivers/pci/probe.c, __pci_read_base): save, write all ones, read the
// mask, restore.
func sizeBAR(cs *ConfigSpace, index int) (mask uint32) {
	off := barOffset(index)
	saved := read32(cs, off)
	write32(cs, off, 0xFFFFFFFF)
	mask = read32(cs, off)
	write32(cs, off, saved)
	return mask
}

func TestBARSizing(t *testing.T) {
	cs := newConfig(t, testHeader())
	require.NoError(t, cs.SetBAR(0, BAR{Kind: BARMemory32, Size: 4096}))
	require.NoError(t, cs.SetBAR(1, BAR{Kind: BARIO, Size: 32}))
	require.NoError(t, cs.SetBAR(2, BAR{Kind: BARMemory64, Size: 16 << 10, Prefetchable: true}))
	require.NoError(t, cs.SetBAR(4, BAR{Kind: BARMemory64, Size: 8 << 30}))

	// Type bits before any write: memory 32-bit (000b), I/O (bit 0),
	// 64-bit prefetchable (1100b), 64-bit (0100b).
	assert.EqualValues(t, 0x0, cs.BARRegister(0))
	assert.EqualValues(t, 0x1, cs.BARRegister(1))
	assert.EqualValues(t, 0xC, cs.BARRegister(2))
	assert.EqualValues(t, 0x4, cs.BARRegister(4))

	assert.EqualValues(t, 0xFFFFF000, sizeBAR(cs, 0), "4 KiB, 32-bit, non-prefetchable")
	assert.EqualValues(t, 0x0000FFE1, sizeBAR(cs, 1), "32 ports; upper 16 bits hardwired to 0")
	assert.EqualValues(t, 0xFFFFC00C, sizeBAR(cs, 2), "16 KiB low dword with type bits")
	assert.EqualValues(t, 0xFFFFFFFF, sizeBAR(cs, 3), "upper dword of a small 64-bit BAR: all writable")
	assert.EqualValues(t, 0x00000004, sizeBAR(cs, 4), "8 GiB: no writable bits in the low dword")
	assert.EqualValues(t, 0xFFFFFFFE, sizeBAR(cs, 5), "8 GiB: bit 33 and up")

	// The size, as software computes it from the mask.
	assert.EqualValues(t, 4096, ^(sizeBAR(cs, 0)&^0xF)+1)
	assert.EqualValues(t, 32, uint16(^(sizeBAR(cs, 1)&^0x3)+1))
	mask64 := uint64(sizeBAR(cs, 5))<<32 | uint64(sizeBAR(cs, 4)&^0xF)
	assert.EqualValues(t, 8<<30, ^mask64+1)

	// Sizing restored the registers; programming keeps the type bits and
	// drops address bits below the size.
	write32(cs, barOffset(0), 0xC0000FFF)
	assert.EqualValues(t, 0xC0000000, cs.BARRegister(0))
	write32(cs, barOffset(1), 0xFFFFC07F)
	assert.EqualValues(t, 0x0000C061, cs.BARRegister(1))
	write32(cs, barOffset(2), 0xD0000000)
	write32(cs, barOffset(3), 0x1)
	assert.EqualValues(t, 0x1_D000_0000, cs.BARAddress(2))
	assert.EqualValues(t, 0xD000000C, cs.BARRegister(2))
	assert.EqualValues(t, 0xC0000000, cs.BARAddress(0))
	assert.EqualValues(t, 0xC060, cs.BARAddress(1))

	b, ok := cs.BAR(2)
	assert.True(t, ok)
	assert.Equal(t, BAR{Kind: BARMemory64, Size: 16 << 10, Prefetchable: true}, b)
	_, ok = cs.BAR(3)
	assert.False(t, ok, "upper half of BAR 2")
	_, ok = cs.BAR(-1)
	assert.False(t, ok)
	assert.Zero(t, cs.BARRegister(6))
	assert.Zero(t, cs.BARAddress(-1))
}

func TestSetBARValidation(t *testing.T) {
	cs := newConfig(t, testHeader())
	for name, b := range map[string]BAR{
		"zero size":        {Kind: BARMemory32},
		"not a power of 2": {Kind: BARMemory32, Size: 3 << 12},
		"memory too small": {Kind: BARMemory32, Size: 8},
		"32-bit too big":   {Kind: BARMemory32, Size: 4 << 30},
		"64-bit too small": {Kind: BARMemory64, Size: 8},
		"I/O too small":    {Kind: BARIO, Size: 2},
		"I/O too big":      {Kind: BARIO, Size: 512},
		"prefetchable I/O": {Kind: BARIO, Size: 16, Prefetchable: true},
		"no kind":          {Size: 4096},
	} {
		assert.Error(t, cs.SetBAR(0, b), name)
	}
	assert.Error(t, cs.SetBAR(6, BAR{Kind: BARIO, Size: 16}))
	assert.Error(t, cs.SetBAR(5, BAR{Kind: BARMemory64, Size: 4096}), "no room for the upper half")
	require.NoError(t, cs.SetBAR(1, BAR{Kind: BARMemory64, Size: 4096}))
	assert.Error(t, cs.SetBAR(2, BAR{Kind: BARIO, Size: 16}), "upper half taken")
	assert.Error(t, cs.SetBAR(0, BAR{Kind: BARMemory64, Size: 4096}), "overlaps BAR 1")
	assert.Error(t, cs.SetBAR(1, BAR{Kind: BARIO, Size: 16}), "already defined")
	assert.Equal(t, "I/O", BARIO.String())
	assert.Equal(t, "BARKind(9)", BARKind(9).String())
}

// newMappedDevice attaches a device with a 32-bit memory BAR 0 (4 KiB), an
// I/O BAR 1 (16 ports) and a 64-bit memory BAR 2 (8 KiB) in slot 2 of a bus
// with a recording mapper.
func newMappedDevice(t *testing.T) (*ConfigSpace, *recordingMapper) {
	m := newRecordingMapper(t)
	bus := NewBus(BusConfig{Mapper: m})
	cs := newConfig(t, testHeader())
	require.NoError(t, cs.SetBAR(0, BAR{Kind: BARMemory32, Size: 4096}))
	require.NoError(t, cs.SetBAR(1, BAR{Kind: BARIO, Size: 16}))
	require.NoError(t, cs.SetBAR(2, BAR{Kind: BARMemory64, Size: 8192}))
	require.NoError(t, bus.Attach(2, cs))
	assert.Empty(t, m.take(), "nothing decodes at reset")
	return cs, m
}

func TestBARRelocationCallbacks(t *testing.T) {
	cs, m := newMappedDevice(t)

	// Programming addresses with decoding off maps nothing.
	write32(cs, barOffset(0), 0xC000_0000)
	write32(cs, barOffset(1), 0xC000)
	write32(cs, barOffset(2), 0xC000_4000)
	write32(cs, barOffset(3), 0)
	assert.Empty(t, m.take())

	// Memory Space maps both memory BARs; I/O Space the I/O BAR.
	write16(cs, RegCommand, CommandMemorySpace)
	assert.Equal(t, []string{
		"map BAR0 32-bit memory [0xc0000000, 0xc0001000)",
		"map BAR2 64-bit memory [0xc0004000, 0xc0006000)",
	}, m.take())
	write16(cs, RegCommand, CommandMemorySpace|CommandIOSpace)
	assert.Equal(t, []string{"map BAR1 I/O [0xc000, 0xc010)"}, m.take())
	r, ok := cs.MappedRegion(1)
	assert.True(t, ok)
	assert.EqualValues(t, 0xC000, r.Addr)
	assert.Equal(t, 16*uint64(1), r.Size)

	// Moving a decoding BAR unmaps the old region, then maps the new one.
	write32(cs, barOffset(0), 0xC010_0000)
	assert.Equal(t, []string{
		"unmap BAR0 32-bit memory [0xc0000000, 0xc0001000)",
		"map BAR0 32-bit memory [0xc0100000, 0xc0101000)",
	}, m.take())
	// Rewriting the same address changes nothing; neither does a Command
	// write that keeps the decode bits.
	write32(cs, barOffset(0), 0xC010_0000)
	write16(cs, RegCommand, CommandMemorySpace|CommandIOSpace|CommandBusMaster)
	assert.Empty(t, m.take())

	// A 64-bit BAR moves in two steps, high dword then low: each is
	// reported (Linux avoids this by turning decoding off first).
	write32(cs, barOffset(3), 0x1)
	write32(cs, barOffset(2), 0x0)
	assert.Equal(t, []string{
		"unmap BAR2 64-bit memory [0xc0004000, 0xc0006000)",
		"map BAR2 64-bit memory [0x1c0004000, 0x1c0006000)",
		"unmap BAR2 64-bit memory [0x1c0004000, 0x1c0006000)",
		"map BAR2 64-bit memory [0x100000000, 0x100002000)",
	}, m.take())

	// Sizing with decoding on: all ones is not a placement, the BAR stops
	// decoding and comes back when restored.
	sizeBAR(cs, 1)
	assert.Equal(t, []string{
		"unmap BAR1 I/O [0xc000, 0xc010)",
		"map BAR1 I/O [0xc000, 0xc010)",
	}, m.take())
	sizeBAR(cs, 0)
	assert.Equal(t, []string{
		"unmap BAR0 32-bit memory [0xc0100000, 0xc0101000)",
		"map BAR0 32-bit memory [0xc0100000, 0xc0101000)",
	}, m.take())

	// Address 0 means unassigned.
	write32(cs, barOffset(0), 0)
	assert.Equal(t, []string{"unmap BAR0 32-bit memory [0xc0100000, 0xc0101000)"}, m.take())
	_, ok = cs.MappedRegion(0)
	assert.False(t, ok)

	// Turning decoding off unmaps everything that decodes.
	write16(cs, RegCommand, 0)
	assert.Equal(t, []string{
		"unmap BAR1 I/O [0xc000, 0xc010)",
		"unmap BAR2 64-bit memory [0x100000000, 0x100002000)",
	}, m.take())
	_, ok = cs.MappedRegion(7)
	assert.False(t, ok)
}

// The last usable placement of a 32-bit BAR ends just below 4 GiB; the one
// that reaches the top of the space is what sizing leaves behind.
func TestBARDecodeLimits(t *testing.T) {
	cs, m := newMappedDevice(t)
	write16(cs, RegCommand, CommandMemorySpace|CommandIOSpace)
	write32(cs, barOffset(0), 0xFFFF_E000)
	write32(cs, barOffset(1), 0xFFE0)
	assert.Equal(t, []string{
		"map BAR0 32-bit memory [0xffffe000, 0xfffff000)",
		"map BAR1 I/O [0xffe0, 0xfff0)",
	}, m.take())
	write32(cs, barOffset(0), 0xFFFF_F000)
	write32(cs, barOffset(1), 0xFFF0)
	assert.Equal(t, []string{
		"unmap BAR0 32-bit memory [0xffffe000, 0xfffff000)",
		"unmap BAR1 I/O [0xffe0, 0xfff0)",
	}, m.take())
	write16(cs, RegCommand, 0)
	write32(cs, barOffset(2), 0xFFFF_E000)
	write32(cs, barOffset(3), 0xFFFF_FFFF)
	write16(cs, RegCommand, CommandMemorySpace)
	assert.Empty(t, m.take(), "a 64-bit BAR at the top of the 64-bit space")
	write32(cs, barOffset(3), 0xFFFF_FFFE)
	assert.Equal(t, []string{"map BAR2 64-bit memory [0xfffffffeffffe000, 0xffffffff00000000)"}, m.take())
}

// BARs already decoding when the function is attached are reported then.
func TestBARAttachReportsDecoding(t *testing.T) {
	cs := newConfig(t, testHeader())
	require.NoError(t, cs.SetBAR(0, BAR{Kind: BARMemory32, Size: 4096}))
	write32(cs, barOffset(0), 0xC000_0000)
	write16(cs, RegCommand, CommandMemorySpace)
	m := newRecordingMapper(t)
	bus := NewBus(BusConfig{Mapper: m})
	require.NoError(t, bus.Attach(1, cs))
	calls := m.calls
	require.Len(t, calls, 1)
	assert.Same(t, cs, calls[0].Device)
	assert.Equal(t, "map BAR0 32-bit memory [0xc0000000, 0xc0001000)", calls[0].String())
	assert.Error(t, NewBus(BusConfig{}).Attach(1, cs), "attached once only")
}

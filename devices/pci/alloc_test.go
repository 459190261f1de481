package pci

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAssignResources(t *testing.T) {
	m := newRecordingMapper(t)
	bus := NewBus(BusConfig{Mapper: m})
	a := newConfig(t, testHeader())
	require.NoError(t, a.SetBAR(0, BAR{Kind: BARMemory32, Size: 4096}))
	require.NoError(t, a.SetBAR(1, BAR{Kind: BARIO, Size: 32}))
	require.NoError(t, a.SetBAR(4, BAR{Kind: BARMemory64, Size: 16 << 10, Prefetchable: true}))
	require.NoError(t, bus.Attach(1, a))
	h := testHeader()
	h.InterruptPin = PinNone
	b := newConfig(t, h)
	require.NoError(t, b.SetBAR(2, BAR{Kind: BARMemory32, Size: 1 << 20}))
	require.NoError(t, b.SetBAR(3, BAR{Kind: BARIO, Size: 256}))
	require.NoError(t, bus.Attach(2, b))
	c := newConfig(t, testHeader()) // no BARs
	require.NoError(t, bus.Attach(5, c))

	got, err := bus.AssignResources(DefaultWindows())
	require.NoError(t, err)
	// Largest first, each naturally aligned, packed from the window base.
	assert.Equal(t, []Assignment{
		{Slot: 1, Index: 0, Kind: BARMemory32, Addr: 0xC010_4000, Size: 4096},
		{Slot: 1, Index: 1, Kind: BARIO, Addr: 0xC100, Size: 32},
		{Slot: 1, Index: 4, Kind: BARMemory64, Addr: 0xC010_0000, Size: 16 << 10},
		{Slot: 2, Index: 2, Kind: BARMemory32, Addr: 0xC000_0000, Size: 1 << 20},
		{Slot: 2, Index: 3, Kind: BARIO, Addr: 0xC000, Size: 256},
	}, got)

	// The registers hold them, decoding is on, and the mapper heard of
	// every BAR once.
	assert.EqualValues(t, 0xC010_4000, a.BARAddress(0))
	assert.EqualValues(t, 0xC100, a.BARAddress(1))
	assert.EqualValues(t, 0xC010_0000, a.BARAddress(4))
	assert.EqualValues(t, 0xC010_000C, a.BARRegister(4), "type bits kept")
	assert.EqualValues(t, CommandIOSpace|CommandMemorySpace, a.Command())
	assert.EqualValues(t, CommandIOSpace|CommandMemorySpace, b.Command())
	assert.Zero(t, c.Command(), "nothing to decode")
	assert.Zero(t, bus.HostBridge().Config().Command())
	assert.Len(t, m.live, 5)
	for _, call := range m.calls {
		assert.True(t, call.Map, "%v", call)
	}

	// Interrupt Line holds the routed GSI for devices with a pin.
	assert.EqualValues(t, 17, a.InterruptLine())
	assert.Zero(t, b.InterruptLine())
	assert.EqualValues(t, 17, c.InterruptLine())

	// A second run (say, after a guest moved things) reassigns the same.
	m.take()
	write32(a, barOffset(0), 0xD000_0000)
	again, err := bus.AssignResources(DefaultWindows())
	require.NoError(t, err)
	assert.Equal(t, got, again)
	assert.EqualValues(t, 0xC010_4000, a.BARAddress(0))
}

func TestAssignResources64BitWindow(t *testing.T) {
	bus := NewBus(BusConfig{})
	a := newConfig(t, testHeader())
	require.NoError(t, a.SetBAR(0, BAR{Kind: BARMemory64, Size: 8 << 30}))
	require.NoError(t, a.SetBAR(2, BAR{Kind: BARMemory32, Size: 4096}))
	require.NoError(t, bus.Attach(1, a))
	w := DefaultWindows()
	w.Mem64 = Window{Base: 1 << 40, Size: 1 << 40}
	got, err := bus.AssignResources(w)
	require.NoError(t, err)
	assert.Equal(t, []Assignment{
		{Slot: 1, Index: 0, Kind: BARMemory64, Addr: 1 << 40, Size: 8 << 30},
		{Slot: 1, Index: 2, Kind: BARMemory32, Addr: 0xC000_0000, Size: 4096},
	}, got)
	assert.EqualValues(t, 1<<40, a.BARAddress(0))

	_, err = bus.AssignResources(DefaultWindows())
	assert.Error(t, err, "8 GiB does not fit the 32-bit window")
}

func TestAssignResourcesErrors(t *testing.T) {
	bus := NewBus(BusConfig{})
	a := newConfig(t, testHeader())
	require.NoError(t, a.SetBAR(0, BAR{Kind: BARIO, Size: 256}))
	require.NoError(t, a.SetBAR(1, BAR{Kind: BARIO, Size: 256}))
	require.NoError(t, bus.Attach(1, a))

	w := DefaultWindows()
	w.IO = Window{Base: 0xF000, Size: 0x100}
	_, err := bus.AssignResources(w)
	assert.Error(t, err, "two 256-port BARs in 256 ports")
	assert.Zero(t, a.Command())

	w.IO = Window{Base: 0xFF00, Size: 0x200}
	_, err = bus.AssignResources(w)
	assert.Error(t, err, "past the last port")
	w = DefaultWindows()
	w.Mem32 = Window{Base: 0xF000_0000, Size: 0x2000_0000}
	_, err = bus.AssignResources(w)
	assert.Error(t, err, "past 4 GiB")
}

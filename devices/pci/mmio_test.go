package pci

import (
	"testing"

	"github.com/govmm/govmm/devices"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMux(t *testing.T) {
	var m Mux
	lo := &bytesHandler{mem: []byte{1, 2, 3, 4}}
	hi := &bytesHandler{mem: make([]byte, 0x10)}
	require.NoError(t, m.Add(0x1000, 0x10, hi))
	require.NoError(t, m.Add(0, 4, lo))
	assert.Error(t, m.Add(2, 4, lo), "overlap")
	assert.Error(t, m.Add(0x100F, 1, lo), "overlap")
	assert.Error(t, m.Add(8, 0, lo), "empty")
	assert.Error(t, m.Add(^uint64(0), 2, lo), "wraps")
	assert.Error(t, m.Add(8, 8, nil))

	b := make([]byte, 4)
	m.ReadMMIO(1, b[:2])
	assert.Equal(t, []byte{2, 3}, b[:2])
	m.ReadMMIO(2, b) // runs past lo's end: lo gets the whole access
	assert.Equal(t, []byte{3, 4, 0, 0}, b)
	m.WriteMMIO(0x1004, []byte{9, 9})
	assert.Equal(t, byte(9), hi.mem[5])
	assert.Equal(t, []string{"w2@0x4"}, hi.accesses, "offsets are relative to the range")

	b = []byte{7, 7, 7, 7}
	m.ReadMMIO(0x800, b)
	assert.Equal(t, []byte{0, 0, 0, 0}, b, "holes read zero")
	m.WriteMMIO(0x800, b) // dropped
	m.ReadMMIO(0x1010, b)
	assert.Equal(t, []byte{0, 0, 0, 0}, b)
}

func TestIOPortDevice(t *testing.T) {
	h := &bytesHandler{mem: make([]byte, 16)}
	ports := devices.NewPortBus()
	require.NoError(t, ports.Register("bar", 0xC040, 16, IOPortDevice(h)))
	ports.Write(0xC044, []byte{0xAB, 0xCD})
	b := make([]byte, 2)
	ports.Read(0xC044, b)
	assert.Equal(t, []byte{0xAB, 0xCD}, b)
	assert.Equal(t, []string{"w2@0x4", "r2@0x4"}, h.accesses)
}

func TestRegionAndAddressStrings(t *testing.T) {
	r := Region{Index: 2, BAR: BAR{Kind: BARMemory64, Size: 0x4000}, Addr: 0xC000_0000}
	assert.EqualValues(t, 0xC000_4000, r.End())
	assert.Equal(t, "BAR2 64-bit memory [0xc0000000, 0xc0004000)", r.String())
	assert.Equal(t, "00:1f.0+0x3c", Address{Device: 31, Register: RegInterruptLine}.String())
	assert.True(t, BARMemory32.IsMemory())
	assert.False(t, BARIO.IsMemory())
}

func TestBusAttach(t *testing.T) {
	bus := NewBus(BusConfig{})
	assert.Same(t, bus.HostBridge(), bus.Device(HostBridgeSlot))
	hb := bus.HostBridge().Config()
	assert.EqualValues(t, HostBridgeVendorID, hb.VendorID())
	assert.EqualValues(t, ClassBridgeHost, hb.ClassCode())
	assert.Equal(t, PinNone, hb.InterruptPin())

	cs := newConfig(t, testHeader())
	assert.Error(t, bus.Attach(HostBridgeSlot, cs), "occupied")
	assert.Error(t, bus.Attach(MaxSlots, cs))
	assert.Error(t, bus.Attach(-1, cs))
	assert.Error(t, bus.Attach(1, nil))
	assert.Error(t, bus.Attach(1, nilConfig{}))
	require.NoError(t, bus.Attach(MaxSlots-1, cs))
	assert.Same(t, cs, bus.Device(MaxSlots-1))
	assert.Nil(t, bus.Device(1))
	assert.Nil(t, bus.Device(MaxSlots))

	b := make([]byte, 2)
	bus.ReadConfig(Address{Device: MaxSlots - 1}, b)
	assert.Equal(t, []byte{0xF4, 0x1A}, b)
	bus.ReadConfig(Address{Device: 200}, b)
	assert.Equal(t, []byte{0xFF, 0xFF}, b, "device numbers past 31 are absent")
}

type nilConfig struct{}

func (nilConfig) Config() *ConfigSpace { return nil }

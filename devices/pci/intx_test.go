package pci

import (
	"testing"

	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The swizzle (PCI-to-PCI Bridge Architecture Specification 1.2, Table
// 9-1) onto GSIs 16-19.
func TestINTxSwizzle(t *testing.T) {
	want := map[int][numPins]uint32{
		//    INTA INTB INTC INTD
		0:  {16, 17, 18, 19},
		1:  {17, 18, 19, 16},
		2:  {18, 19, 16, 17},
		3:  {19, 16, 17, 18},
		4:  {16, 17, 18, 19},
		5:  {17, 18, 19, 16},
		31: {19, 16, 17, 18},
	}
	for slot, gsis := range want {
		for i, gsi := range gsis {
			got, ok := INTxGSI(slot, PinINTA+Pin(i))
			assert.True(t, ok)
			assert.Equal(t, gsi, got, "slot %d %v", slot, PinINTA+Pin(i))
		}
	}
	for _, c := range []struct {
		slot int
		pin  Pin
	}{{0, PinNone}, {0, PinINTD + 1}, {-1, PinINTA}, {MaxSlots, PinINTA}} {
		_, ok := INTxGSI(c.slot, c.pin)
		assert.False(t, ok, "slot %d pin %d", c.slot, c.pin)
	}
	assert.Equal(t, "INTC#", PinINTC.String())
	assert.Equal(t, "none", PinNone.String())
	assert.Equal(t, "Pin(9)", Pin(9).String())
}

// One table drives both the ACPI _PRT and the MP table.
func TestINTxRoutingTable(t *testing.T) {
	routes := INTxRoutingTable()
	require.Len(t, routes, MaxSlots*numPins)
	for _, r := range routes {
		gsi, _ := INTxGSI(r.Slot, r.Pin)
		assert.Equal(t, gsi, r.GSI)
		assert.GreaterOrEqual(t, r.GSI, uint32(INTxGSIBase))
		assert.Less(t, r.GSI, uint32(INTxGSIBase+NumINTxGSIs))
	}
	r := routes[7*numPins+2] // slot 7, INTC#
	assert.Equal(t, INTxRoute{Slot: 7, Pin: PinINTC, GSI: 17}, r)
	assert.EqualValues(t, 0x0007FFFF, r.PRTAddress(), "device 7, any function")
	assert.EqualValues(t, 2, r.PRTPin())
	assert.EqualValues(t, 7<<2|2, r.MPSourceIRQ())
	assert.EqualValues(t, 0x7F, INTxRoute{Slot: 31, Pin: PinINTD}.MPSourceIRQ())

	bus := NewBus(BusConfig{})
	h := testHeader()
	require.NoError(t, bus.Attach(3, newConfig(t, h)))
	h.InterruptPin = PinNone
	require.NoError(t, bus.Attach(4, newConfig(t, h)))
	h.InterruptPin = PinINTB
	require.NoError(t, bus.Attach(6, newConfig(t, h)))
	assert.Equal(t, []INTxRoute{{3, PinINTA, 19}, {6, PinINTB, 19}}, bus.INTxRoutes(),
		"devices with a pin only; the host bridge has none")
}

// intxRig is a bus whose four INTx GSIs are recorded.
type intxRig struct {
	bus   *Bus
	lines map[uint32]*devicetest.IRQRecorder
}

func newINTxRig(t *testing.T) *intxRig {
	r := &intxRig{lines: map[uint32]*devicetest.IRQRecorder{}}
	r.bus = NewBus(BusConfig{IRQ: func(gsi uint32) devices.IRQLine {
		l := &devicetest.IRQRecorder{}
		r.lines[gsi] = l
		return l
	}})
	require.Len(t, r.lines, NumINTxGSIs)
	return r
}

func (r *intxRig) attach(t *testing.T, slot int, pin Pin) *ConfigSpace {
	h := testHeader()
	h.InterruptPin = pin
	cs := newConfig(t, h)
	require.NoError(t, r.bus.Attach(slot, cs))
	return cs
}

// INTx# lines are shared and wired-OR (PCI 3.0 §2.2.6): the GSI stays
// asserted until the last device releases it.
func TestINTxSharedLine(t *testing.T) {
	r := newINTxRig(t)
	a := r.attach(t, 1, PinINTA) // GSI 17
	b := r.attach(t, 4, PinINTB) // GSI 17 too
	c := r.attach(t, 2, PinINTA) // GSI 18
	line := r.lines[17]

	a.INTx().SetLevel(true)
	assert.True(t, line.Level())
	b.INTx().SetLevel(true)
	a.INTx().SetLevel(true) // repeated: no change
	a.INTx().SetLevel(false)
	assert.True(t, line.Level(), "b still asserts")
	b.INTx().SetLevel(false)
	assert.False(t, line.Level())
	assert.Equal(t, []bool{true, false}, line.Calls(), "the line changes only on the first assert and last release")

	c.SetINTx(true)
	assert.True(t, r.lines[18].Level())
	assert.False(t, r.lines[16].Level())
	assert.Empty(t, r.lines[19].Calls())
}

// Interrupt Disable gates the pin, not the Interrupt Status bit (PCI 3.0
// §6.2.2, §6.2.3).
func TestINTxInterruptDisable(t *testing.T) {
	r := newINTxRig(t)
	cs := r.attach(t, 0+3, PinINTA) // GSI 19
	line := r.lines[19]

	write16(cs, RegCommand, CommandInterruptDisable)
	cs.SetINTx(true)
	assert.NotZero(t, cs.Status()&StatusInterrupt)
	assert.False(t, line.Level(), "disabled")
	write16(cs, RegCommand, 0)
	assert.True(t, line.Level(), "clearing Interrupt Disable asserts the pending level")
	write16(cs, RegCommand, CommandInterruptDisable)
	assert.False(t, line.Level())
	assert.NotZero(t, cs.Status()&StatusInterrupt)
	cs.SetINTx(false)
	assert.Zero(t, cs.Status()&StatusInterrupt)
	write16(cs, RegCommand, 0)
	assert.False(t, line.Level())
	assert.Equal(t, []bool{true, false}, line.Calls())
}

// A device that asserts INTx before it is attached drives the line on
// attach; one without a pin, or on a bus without lines, drives nothing.
func TestINTxBeforeAttachAndUnwired(t *testing.T) {
	r := newINTxRig(t)
	h := testHeader()
	cs := newConfig(t, h)
	cs.SetINTx(true)
	require.NoError(t, r.bus.Attach(1, cs))
	assert.True(t, r.lines[17].Level())

	h.InterruptPin = PinNone
	none := newConfig(t, h)
	require.NoError(t, r.bus.Attach(2, none))
	none.SetINTx(true)
	assert.Empty(t, r.lines[18].Calls())

	bare := NewBus(BusConfig{})
	cs = newConfig(t, testHeader())
	require.NoError(t, bare.Attach(1, cs))
	cs.SetINTx(true) // no lines: no panic
	assert.NotZero(t, cs.Status()&StatusInterrupt)
}

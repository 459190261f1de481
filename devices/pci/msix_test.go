package pci

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// msixRig is a function with an MSI-X table of 8 vectors at offset 0 of
// its 64-bit BAR 0 and the PBA at 0x2000, both reached through a Mux as
// the guest would reach them.
type msixRig struct {
	cs     *ConfigSpace
	table  *MSIXTable
	router *recordingRouter
	bar    *Mux
	ctl    uint16 // Message Control's configuration offset
}

const (
	rigVectors   = 8
	rigPBAOffset = 0x2000
)

func newMSIXRig(t *testing.T) *msixRig {
	g := &msixRig{cs: newConfig(t, testHeader()), router: &recordingRouter{}, bar: &Mux{}}
	require.NoError(t, g.cs.SetBAR(0, BAR{Kind: BARMemory64, Size: 16 << 10, Handler: g.bar}))
	var err error
	g.table, err = AddMSIX(g.cs, MSIXConfig{
		Vectors: rigVectors, TableBAR: 0, TableOffset: 0, PBABAR: 0, PBAOffset: rigPBAOffset, Router: g.router,
	})
	require.NoError(t, err)
	require.NoError(t, g.bar.Add(0, g.table.TableSize(), g.table))
	require.NoError(t, g.bar.Add(rigPBAOffset, g.table.PBASize(), g.table.PBA()))
	g.ctl = uint16(g.table.CapabilityOffset()) + msixControl
	write16(g.cs, RegCommand, CommandMemorySpace|CommandBusMaster)
	return g
}

func (g *msixRig) control(v uint16) { write16(g.cs, g.ctl, v) }

func (g *msixRig) read32(off uint64) uint32 {
	b := make([]byte, 4)
	g.bar.ReadMMIO(off, b)
	return le.Uint32(b)
}

func (g *msixRig) write32(off uint64, v uint32) { g.bar.WriteMMIO(off, le.AppendUint32(nil, v)) }

func (g *msixRig) pba() uint64 {
	b := make([]byte, 8)
	g.bar.ReadMMIO(rigPBAOffset, b)
	return le.Uint64(b)
}

// program writes vector v's entry the way Linux does (drivers/pci/msi/
// msi.c, pci_write_msg_msix): address low, address high, data, each a
// DWORD, then Vector Control.
func (g *msixRig) program(v int, msg MSIMessage, masked bool) {
	base := uint64(v) * MSIXEntrySize
	g.write32(base+msixEntryAddrLow, uint32(msg.Address))
	g.write32(base+msixEntryAddrHigh, uint32(msg.Address>>32))
	g.write32(base+msixEntryData, msg.Data)
	ctl := uint32(0)
	if masked {
		ctl = msixVectorMasked
	}
	g.write32(base+msixEntryControl, ctl)
}

func update(v int, msg MSIMessage, masked bool) routerCall {
	return routerCall{Vector: v, Msg: msg, Masked: masked}
}

func send(v int, msg MSIMessage) routerCall { return routerCall{Send: true, Vector: v, Msg: msg} }

var (
	msgA = MSIMessage{Address: 0xFEE0_0000, Data: 0x4021}
	msgB = MSIMessage{Address: 0xFEE0_1000, Data: 0x4022}
)

func TestMSIXCapability(t *testing.T) {
	g := newMSIXRig(t)
	off := findCapability(configReader(g.cs), CapabilityMSIX)
	require.NotZero(t, off)
	assert.Equal(t, g.table.CapabilityOffset(), off)
	assert.EqualValues(t, rigVectors-1, read16(g.cs, g.ctl), "Table Size is N-1, disabled, unmasked")
	assert.EqualValues(t, 0x0|0, read32(g.cs, uint16(off)+msixTableOffsetBIR), "offset 0, BIR 0")
	assert.EqualValues(t, rigPBAOffset|0, read32(g.cs, uint16(off)+msixPBAOffsetBIR))

	// Only Function Mask and MSI-X Enable are writable.
	g.control(0xFFFF)
	assert.EqualValues(t, MSIXControlEnable|MSIXControlFunctionMask|(rigVectors-1), read16(g.cs, g.ctl))
	write32(g.cs, uint16(off)+msixTableOffsetBIR, 0xFFFFFFFF)
	assert.Zero(t, read32(g.cs, uint16(off)+msixTableOffsetBIR))
	assert.True(t, g.table.Enabled())
	g.control(0)
	assert.False(t, g.table.Enabled())

	assert.Equal(t, rigVectors, g.table.Vectors())
	assert.EqualValues(t, rigVectors*MSIXEntrySize, g.table.TableSize())
	assert.EqualValues(t, 8, g.table.PBASize(), "one QWORD")
}

func TestMSIXTableReadWrite(t *testing.T) {
	g := newMSIXRig(t)
	// Reset: every vector masked (PCI 3.0 §6.8.2.9), address and data 0.
	for v := range rigVectors {
		assert.EqualValues(t, msixVectorMasked, g.read32(uint64(v)*MSIXEntrySize+msixEntryControl))
		assert.Zero(t, g.read32(uint64(v)*MSIXEntrySize+msixEntryAddrLow))
	}

	g.write32(0x10+msixEntryAddrLow, 0xFEE0_3003) // bits 1:0 are reserved
	g.write32(0x10+msixEntryAddrHigh, 0x1)
	g.write32(0x10+msixEntryData, 0xFFFF_FFFF)
	g.write32(0x10+msixEntryControl, 0xFFFF_FFFE) // reserved bits read 0
	assert.EqualValues(t, 0xFEE0_3000, g.read32(0x10))
	assert.EqualValues(t, 0x1, g.read32(0x14))
	assert.EqualValues(t, 0xFFFF_FFFF, g.read32(0x18))
	assert.Zero(t, g.read32(0x1C))
	assert.Equal(t, MSIMessage{Address: 0x1_FEE0_3000, Data: 0xFFFF_FFFF}, g.table.Message(1))

	// QWORD accesses: address, then data and control.
	g.bar.WriteMMIO(0x20, le.AppendUint64(nil, 0x0000_0002_FEE0_4000))
	g.bar.WriteMMIO(0x28, le.AppendUint64(nil, 0x0000_0001_0000_4041))
	assert.Equal(t, MSIMessage{Address: 0x2_FEE0_4000, Data: 0x4041}, g.table.Message(2))
	assert.True(t, g.table.Masked(2))
	b := make([]byte, 8)
	g.bar.ReadMMIO(0x28, b)
	assert.EqualValues(t, 0x0000_0001_0000_4041, le.Uint64(b))

	// Reads of any shape see the bytes; writes of other shapes are ignored.
	g.bar.ReadMMIO(0x11, b[:2])
	assert.Equal(t, []byte{0x30, 0xE0}, b[:2])
	g.bar.ReadMMIO(0x1E, b[:4])
	assert.Equal(t, []byte{0, 0, 0x00, 0x40}, b[:4], "across entries")
	for _, w := range []struct {
		off uint64
		n   int
	}{{0x10, 1}, {0x10, 2}, {0x11, 4}, {0x12, 4}, {0x14, 8}, {0x10, 3}, {0x10, 16}, {0x7C, 8}, {0x80, 4}} {
		g.bar.WriteMMIO(w.off, make([]byte, w.n))
	}
	assert.Equal(t, MSIMessage{Address: 0x1_FEE0_3000, Data: 0xFFFF_FFFF}, g.table.Message(1))
	assert.EqualValues(t, 1, g.read32(0x7C), "last entry untouched by the overrunning QWORD")

	// Past the table: zeros, and no effect.
	assert.Zero(t, g.read32(rigVectors*MSIXEntrySize))
	g.table.ReadMMIO(^uint64(1), b[:4])
	assert.Equal(t, []byte{0, 0, 0, 0}, b[:4])
	g.table.WriteMMIO(^uint64(3), b[:4])
	assert.Empty(t, g.router.take(), "nothing unmasked while MSI-X is disabled")
}

func TestMSIXMaskAndPending(t *testing.T) {
	g := newMSIXRig(t)
	assert.False(t, g.table.Signal(0), "MSI-X disabled: the device falls back to INTx")
	assert.False(t, g.table.Pending(0), "no pending bit while disabled")

	g.control(MSIXControlEnable)
	assert.Empty(t, g.router.take(), "all vectors are still masked")
	g.program(0, msgA, true)
	assert.Empty(t, g.router.take(), "changes to a masked vector are not reported")

	// Firing a masked vector sets its pending bit (§6.8.3.4).
	assert.True(t, g.table.Signal(0))
	assert.True(t, g.table.Pending(0))
	assert.EqualValues(t, 1, g.pba())
	assert.Empty(t, g.router.take())
	g.bar.WriteMMIO(rigPBAOffset, make([]byte, 8))
	assert.EqualValues(t, 1, g.pba(), "the PBA is read-only")

	// Unmasking reports the route, then sends the pending message and
	// clears the bit.
	g.write32(msixEntryControl, 0)
	assert.Equal(t, []routerCall{update(0, msgA, false), send(0, msgA)}, g.router.take())
	assert.False(t, g.table.Pending(0))
	assert.Zero(t, g.pba())

	// Unmasked: Signal sends at once.
	assert.True(t, g.table.Signal(0))
	assert.Equal(t, []routerCall{send(0, msgA)}, g.router.take())

	// A new message while unmasked is reported (the spec calls it
	// undefined; Linux before 5.14 did it).
	g.write32(msixEntryAddrLow, uint32(msgB.Address))
	g.write32(msixEntryData, msgB.Data)
	assert.Equal(t, []routerCall{
		update(0, MSIMessage{Address: msgB.Address, Data: msgA.Data}, false),
		update(0, msgB, false),
	}, g.router.take())

	// Masking is reported; so is a QWORD write that unmasks.
	g.write32(msixEntryControl, msixVectorMasked)
	assert.Equal(t, []routerCall{update(0, msgB, true)}, g.router.take())
	assert.True(t, g.table.Masked(0))
	g.bar.WriteMMIO(msixEntryData, le.AppendUint64(nil, uint64(msgA.Data)))
	assert.Equal(t, []routerCall{update(0, MSIMessage{Address: msgB.Address, Data: msgA.Data}, false)}, g.router.take())

	// Vectors out of range.
	assert.False(t, g.table.Signal(rigVectors))
	assert.False(t, g.table.Signal(-1))
	assert.True(t, g.table.Masked(rigVectors))
	assert.False(t, g.table.Pending(-1))
	assert.Zero(t, g.table.Message(99))
}

// The Function Mask masks every vector whatever its own Mask bit, and
// pending messages go out when it clears (PCI 3.0 §6.8.2.3).
func TestMSIXFunctionMask(t *testing.T) {
	g := newMSIXRig(t)
	g.program(0, msgA, false)
	g.program(3, msgB, false)
	g.program(5, msgB, true)
	assert.Empty(t, g.router.take())

	g.control(MSIXControlEnable | MSIXControlFunctionMask)
	assert.Empty(t, g.router.take(), "enabled but function-masked")
	assert.True(t, g.table.Masked(0))
	assert.True(t, g.table.Signal(3))
	assert.True(t, g.table.Signal(5))
	assert.EqualValues(t, 1<<3|1<<5, g.pba())

	g.control(MSIXControlEnable)
	assert.Equal(t, []routerCall{
		update(0, msgA, false),
		update(3, msgB, false), send(3, msgB),
	}, g.router.take())
	assert.EqualValues(t, 1<<5, g.pba(), "vector 5 is still masked by its own bit")

	g.control(MSIXControlEnable | MSIXControlFunctionMask)
	assert.Equal(t, []routerCall{update(0, msgA, true), update(3, msgB, true)}, g.router.take())

	// Disabling MSI-X masks too; re-enabling unmasks.
	g.control(MSIXControlEnable)
	g.router.take()
	g.control(0)
	assert.Equal(t, []routerCall{update(0, msgA, true), update(3, msgB, true)}, g.router.take())
	assert.False(t, g.table.Enabled())
}

// Without Bus Master Enable the function cannot write the message
// (PCIe §7.5.1.1.3).
func TestMSIXNeedsBusMaster(t *testing.T) {
	g := newMSIXRig(t)
	g.control(MSIXControlEnable)
	g.program(1, msgA, false)
	g.router.take()
	write16(g.cs, RegCommand, CommandMemorySpace)
	assert.True(t, g.table.Signal(1))
	assert.Empty(t, g.router.take())
	write16(g.cs, RegCommand, CommandMemorySpace|CommandBusMaster)
	assert.True(t, g.table.Signal(1))
	assert.Equal(t, []routerCall{send(1, msgA)}, g.router.take())
}

func TestAddMSIXValidation(t *testing.T) {
	cs := newConfig(t, testHeader())
	require.NoError(t, cs.SetBAR(0, BAR{Kind: BARMemory32, Size: 4096}))
	require.NoError(t, cs.SetBAR(1, BAR{Kind: BARIO, Size: 16}))
	good := MSIXConfig{Vectors: 4, TableBAR: 0, TableOffset: 0, PBABAR: 0, PBAOffset: 0x800}
	for name, mod := range map[string]func(*MSIXConfig){
		"no vectors":      func(c *MSIXConfig) { c.Vectors = 0 },
		"too many":        func(c *MSIXConfig) { c.Vectors = MaxMSIXVectors + 1 },
		"I/O BAR":         func(c *MSIXConfig) { c.TableBAR = 1 },
		"undefined BAR":   func(c *MSIXConfig) { c.PBABAR = 2 },
		"reserved BIR":    func(c *MSIXConfig) { c.TableBAR = 7 },
		"misaligned":      func(c *MSIXConfig) { c.TableOffset = 4 },
		"table overruns":  func(c *MSIXConfig) { c.TableOffset = 0xFC8 },
		"PBA overruns":    func(c *MSIXConfig) { c.PBAOffset = 0x1000 },
		"overlap":         func(c *MSIXConfig) { c.PBAOffset = 0x38 },
		"too big for BAR": func(c *MSIXConfig) { c.Vectors = 256; c.PBAOffset = 0xF00 },
	} {
		c := good
		mod(&c)
		_, err := AddMSIX(cs, c)
		assert.Error(t, err, name)
	}
	assert.Zero(t, cs.CapabilitiesPointer(), "failed adds leave no capability")
	tbl, err := AddMSIX(cs, good)
	require.NoError(t, err)
	assert.EqualValues(t, HeaderSize, tbl.CapabilityOffset())
}

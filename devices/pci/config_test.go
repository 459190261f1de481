package pci

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewConfigSpaceHeader(t *testing.T) {
	cs := newConfig(t, testHeader())
	assert.Equal(t, ConfigSpaceSize, cs.Size())
	assert.EqualValues(t, 0x1AF4, cs.VendorID())
	assert.EqualValues(t, 0x1041, cs.DeviceID())
	assert.EqualValues(t, 0x01, cs.RevisionID())
	assert.EqualValues(t, 0x020000, cs.ClassCode())
	assert.EqualValues(t, HeaderTypeNormal, cs.HeaderType())
	assert.EqualValues(t, 0x1AF4, cs.SubsystemVendorID())
	assert.EqualValues(t, 0x0001, cs.SubsystemID())
	assert.Equal(t, PinINTA, cs.InterruptPin())
	assert.Zero(t, cs.Command(), "Command resets to 0 (PCI 3.0 §6.2.2)")
	assert.Zero(t, cs.Status())
	assert.Zero(t, cs.CapabilitiesPointer())
	assert.Zero(t, cs.InterruptLine())
	assert.False(t, cs.BusMaster())

	// The guest sees the same bytes, little-endian.
	assert.EqualValues(t, 0x10411AF4, read32(cs, RegVendorID))
	assert.EqualValues(t, 0x02000001, read32(cs, RegRevisionID), "revision then class code")
	assert.EqualValues(t, 0x00011AF4, read32(cs, RegSubsystemVendorID))
}

func TestNewConfigSpaceRejectsBadHeaders(t *testing.T) {
	for name, h := range map[string]Header{
		"absent vendor": {VendorID: InvalidVendorID},
		"class":         {VendorID: 1, ClassCode: 1 << 24},
		"pin":           {VendorID: 1, InterruptPin: PinINTD + 1},
	} {
		_, err := NewConfigSpace(h)
		assert.Error(t, err, name)
	}
}

// The identification registers are read-only (PCI 3.0 §6.2.1).
func TestConfigReadOnlyHeader(t *testing.T) {
	cs := newConfig(t, testHeader())
	before := make([]byte, HeaderSize)
	cs.ReadConfig(0, before)
	for _, off := range []uint16{RegVendorID, RegDeviceID, RegRevisionID, RegClassCode, RegHeaderType,
		RegSubsystemVendorID, RegSubsystemID, RegCapabilitiesPointer, RegInterruptPin, RegLatencyTimer,
		RegBIST, RegCardbusCISPointer, RegExpansionROM, RegMinGnt, RegMaxLat} {
		cs.WriteConfig(off, []byte{0xA5, 0x5A, 0xA5, 0x5A}[:4-off%4])
	}
	for i := 0; i < NumBARs; i++ {
		write32(cs, barOffset(i), 0xFFFFFFFF)
	}
	after := make([]byte, HeaderSize)
	cs.ReadConfig(0, after)
	// Only the Cache Line Size and Interrupt Line scratch registers and
	// the writable Command bits may differ.
	before[RegCommand], after[RegCommand] = 0, 0
	before[RegCommand+1], after[RegCommand+1] = 0, 0
	before[RegCacheLineSize], after[RegCacheLineSize] = 0, 0
	before[RegInterruptLine], after[RegInterruptLine] = 0, 0
	assert.Equal(t, before, after)
	assert.Zero(t, read32(cs, RegExpansionROM), "no expansion ROM: the BAR sizes as 0 (PCI 3.0 §6.2.5.2)")
	assert.Zero(t, read32(cs, RegBAR0), "an unimplemented BAR reads 0 after all ones")
}

// Command's defined bits are read/write; the rest are hardwired to 0
// (PCI 3.0 §6.2.2, PCIe §7.5.1.1.3).
func TestConfigCommandMask(t *testing.T) {
	cs := newConfig(t, testHeader())
	write16(cs, RegCommand, 0xFFFF)
	assert.EqualValues(t, CommandIOSpace|CommandMemorySpace|CommandBusMaster|CommandParityErrorResponse|
		CommandSERREnable|CommandInterruptDisable, cs.Command())
	assert.True(t, cs.BusMaster())
	write16(cs, RegCommand, 0)
	assert.Zero(t, cs.Command())

	// A byte write reaches only its lane.
	write8(cs, RegCommand+1, CommandInterruptDisable>>8)
	assert.EqualValues(t, CommandInterruptDisable, cs.Command())
	write8(cs, RegCommand, CommandBusMaster)
	assert.EqualValues(t, CommandInterruptDisable|CommandBusMaster, cs.Command())
}

// Status error bits are write-1-to-clear; the others are read-only (PCI
// 3.0 §6.2.3).
func TestConfigStatusW1C(t *testing.T) {
	cs := newConfig(t, testHeader())
	_, err := cs.AddCapability(CapabilityVendorSpecific, []byte{4, 0})
	require.NoError(t, err)
	errs := uint16(StatusReceivedMasterAbort | StatusDetectedParityError | StatusSignaledTargetAbort)
	cs.SetUint16(RegStatus, cs.Status()|errs)
	cs.SetINTx(true)
	want := errs | StatusCapabilitiesList | StatusInterrupt
	require.EqualValues(t, want, cs.Status())

	write16(cs, RegStatus, 0) // writing 0 changes nothing
	assert.EqualValues(t, want, cs.Status())
	write16(cs, RegStatus, StatusReceivedMasterAbort|StatusCapabilitiesList|StatusInterrupt)
	assert.EqualValues(t, want&^StatusReceivedMasterAbort, cs.Status(), "only the W1C bit is cleared")
	write16(cs, RegStatus, 0xFFFF)
	assert.EqualValues(t, StatusCapabilitiesList|StatusInterrupt, cs.Status())

	// A 32-bit write at Command clears Status bits through the upper half.
	cs.SetUint16(RegStatus, cs.Status()|StatusSignaledSystemError)
	write32(cs, RegCommand, uint32(StatusSignaledSystemError)<<16|CommandMemorySpace)
	assert.EqualValues(t, StatusCapabilitiesList|StatusInterrupt, cs.Status())
	assert.EqualValues(t, CommandMemorySpace, cs.Command())
}

func TestConfigScratchRegisters(t *testing.T) {
	cs := newConfig(t, testHeader())
	write8(cs, RegCacheLineSize, 0x10)
	write8(cs, RegInterruptLine, 17)
	assert.EqualValues(t, 0x10, read8(cs, RegCacheLineSize))
	assert.EqualValues(t, 17, cs.InterruptLine())
	// Latency Timer is read-only 0 (PCIe §7.5.1.1.6): Linux's
	// pcibios_set_master writes it and reads back 0.
	write8(cs, RegLatencyTimer, 64)
	assert.Zero(t, read8(cs, RegLatencyTimer))
}

func TestConfigOutOfRange(t *testing.T) {
	cs := newConfig(t, testHeader())
	b := []byte{0, 0, 0, 0}
	cs.ReadConfig(0xFE, b)
	assert.Equal(t, []byte{0, 0, 0xFF, 0xFF}, b, "bytes past 256 read all ones")
	cs.ReadConfig(0x100, b)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, b, "no extended space: Linux sees 256 bytes")
	cs.WriteConfig(0xFFFF, b) // dropped, no panic

	ext := newConfig(t, Header{VendorID: 1, Extended: true})
	assert.Equal(t, ExtendedConfigSpaceSize, ext.Size())
	ext.ReadConfig(0x100, b)
	assert.Equal(t, []byte{0, 0, 0, 0}, b, "empty extended capability list (PCIe §7.6.3)")
	ext.ReadConfig(0xFFE, b)
	assert.Equal(t, []byte{0, 0, 0xFF, 0xFF}, b)
	write32(ext, 0x100, 0xFFFFFFFF)
	assert.Zero(t, read32(ext, 0x100), "extended space is read-only")
}

func TestConfigDeviceMasksAndHooks(t *testing.T) {
	cs := newConfig(t, testHeader())
	off, err := cs.AddVendorCapability([]byte{1, 2, 3, 4, 5, 6})
	require.NoError(t, err)
	field := uint16(off) + 4
	require.NoError(t, cs.SetWriteMask(field, []byte{0xFF, 0x0F}))
	require.NoError(t, cs.SetW1CMask(field+2, []byte{0x80}))

	var writes, reads []uint16
	require.NoError(t, cs.OnWrite(field, 2, func(o uint16, n int) { writes = append(writes, o) }))
	require.NoError(t, cs.OnRead(field+2, 1, func(o uint16, n int) {
		reads = append(reads, o)
		cs.SetUint8(field+2, cs.Uint8(field+2)|0x80) // an event the device latches
	}))

	write16(cs, field, 0xFFFF)
	assert.EqualValues(t, 0x0FFF, cs.Uint16(field))
	assert.Equal(t, []uint16{field}, writes)
	cs.WriteConfig(field-1, []byte{0, 0, 0}) // starts before the watched field
	assert.Equal(t, []uint16{field, field - 1}, writes)
	assert.EqualValues(t, 0x0000, cs.Uint16(field))
	write8(cs, field+3, 0xAA) // outside the watched range, read-only
	assert.Len(t, writes, 2)
	assert.EqualValues(t, 5, cs.Uint8(field+3))

	assert.EqualValues(t, 0x84, read8(cs, field+2), "read hook ran first")
	assert.Equal(t, []uint16{field + 2}, reads)
	write8(cs, field+2, 0x80)
	assert.EqualValues(t, 0x04, cs.Uint8(field+2), "W1C")

	assert.Error(t, cs.SetWriteMask(RegCommand, []byte{0xFF}), "header masks are fixed")
	assert.Error(t, cs.SetWriteMask(0xFF, []byte{1, 2}), "past the end")
	assert.Error(t, cs.OnWrite(RegBAR0, 4, func(uint16, int) {}))
	assert.Error(t, cs.OnRead(0x80, 0, func(uint16, int) {}))
	assert.Error(t, cs.OnRead(0x80, 4, nil))
}

func TestConfigRawAccessors(t *testing.T) {
	cs := newConfig(t, testHeader())
	cs.SetUint32(0x80, 0x11223344)
	assert.EqualValues(t, 0x11223344, cs.Uint32(0x80))
	assert.EqualValues(t, 0x3344, cs.Uint16(0x80))
	assert.EqualValues(t, 0x22, cs.Uint8(0x82))
	cs.SetUint32(0xFE, 0xAABBCCDD) // clipped at the end
	assert.EqualValues(t, 0xFFFFCCDD, cs.Uint32(0xFE))
	assert.EqualValues(t, 0xFF, cs.Uint8(0x1000))
	assert.Same(t, cs, cs.Config())
}

package pci

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCapabilityListWalk(t *testing.T) {
	cs := newConfig(t, testHeader())
	read := configReader(cs)
	assert.Zero(t, findCapability(read, CapabilityVendorSpecific), "no list: Status bit 4 clear")

	// Three capabilities of odd sizes: each starts DWORD-aligned after the
	// previous one, in order.
	first, err := cs.AddVendorCapability([]byte{0xA})
	require.NoError(t, err)
	second, err := cs.AddCapability(0x01, []byte{0x03, 0x00, 0x00}) // power management, 5 bytes
	require.NoError(t, err)
	third, err := cs.AddVendorCapability([]byte{0xB, 0xC})
	require.NoError(t, err)
	assert.EqualValues(t, HeaderSize, first)
	assert.EqualValues(t, 0x44, second)
	assert.EqualValues(t, 0x4C, third)

	assert.NotZero(t, cs.Status()&StatusCapabilitiesList)
	assert.Equal(t, first, cs.CapabilitiesPointer())
	assert.Equal(t, first, findCapability(read, CapabilityVendorSpecific), "the first match wins")
	assert.Equal(t, second, findCapability(read, 0x01))
	assert.Zero(t, findCapability(read, CapabilityMSIX))

	// The list as bytes: ID, next, then the body; vendor capabilities
	// carry their whole length (PCI 3.0 Appendix H).
	assert.Equal(t, []byte{CapabilityVendorSpecific, byte(second), 4, 0xA}, bytesAt(cs, uint16(first), 4))
	assert.Equal(t, []byte{0x01, byte(third), 0x03, 0x00, 0x00}, bytesAt(cs, uint16(second), 5))
	assert.Equal(t, []byte{CapabilityVendorSpecific, 0, 5, 0xB, 0xC}, bytesAt(cs, uint16(third), 5))

	// Following the next pointers by hand visits all three and ends at 0.
	var walk []uint8
	for p := cs.CapabilitiesPointer(); p != 0; p = read8(cs, uint16(p)+capabilityNext) {
		assert.Zero(t, p%capabilityAlign, "DWORD-aligned")
		walk = append(walk, p)
	}
	assert.Equal(t, []uint8{first, second, third}, walk)

	// The guest cannot rewrite the list.
	write32(cs, uint16(first), 0)
	write8(cs, RegCapabilitiesPointer, 0)
	assert.Equal(t, first, findCapability(read, CapabilityVendorSpecific))
}

func bytesAt(cs *ConfigSpace, off uint16, n int) []byte {
	b := make([]byte, n)
	cs.ReadConfig(off, b)
	return b
}

func TestCapabilityFitsIn256Bytes(t *testing.T) {
	cs := newConfig(t, Header{VendorID: 1, Extended: true})
	// 0x40 + 2 + 190 = 0x100: exactly full.
	off, err := cs.AddCapability(CapabilityVendorSpecific, make([]byte, ConfigSpaceSize-HeaderSize-capabilityHeaderSize))
	require.NoError(t, err)
	assert.EqualValues(t, HeaderSize, off)
	_, err = cs.AddCapability(CapabilityVendorSpecific, nil)
	assert.Error(t, err, "capabilities must stay within the 256 bytes pointers reach, even with extended space")

	cs = newConfig(t, testHeader())
	_, err = cs.AddCapability(CapabilityVendorSpecific, make([]byte, ConfigSpaceSize))
	assert.Error(t, err)
	_, err = cs.AddVendorCapability(make([]byte, 0x100))
	assert.Error(t, err, "length byte overflow")
	_, err = cs.AddCapability(invalidCapabilityID, nil)
	assert.Error(t, err)
	assert.Zero(t, cs.CapabilitiesPointer(), "failed adds leave no trace")
	assert.Zero(t, cs.Status()&StatusCapabilitiesList)
}

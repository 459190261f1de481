package memory

import (
	"errors"
	"math"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRAMLayoutSplitsAroundTheHole(t *testing.T) {
	assert.Equal(t, []Range{{0, 64 << 20}}, RAMLayout(64<<20))
	assert.Equal(t, []Range{{0, MMIOHoleStart}}, RAMLayout(MMIOHoleStart))
	assert.Equal(t, []Range{{0, MMIOHoleStart}, {MMIOHoleEnd, PageSize}}, RAMLayout(MMIOHoleStart+PageSize))
	l := RAMLayout(8 << 30)
	require.Len(t, l, 2)
	assert.Equal(t, uint64(8<<30), l[0].Size+l[1].Size, "no RAM is lost to the hole")
	assert.Equal(t, uint64(MMIOHoleEnd), l[1].Start)
}

func TestRangeContainsNeverOverflows(t *testing.T) {
	r := Range{Start: 0x1000, Size: 0x1000}
	assert.True(t, r.Contains(0x1000, 0x1000))
	assert.True(t, r.Contains(0x1FFF, 1))
	assert.True(t, r.Contains(0x2000, 0), "an empty access at the end is inside")
	assert.False(t, r.Contains(0x1FFF, 2))
	assert.False(t, r.Contains(0xFFF, 1))
	assert.False(t, r.Contains(0x1800, math.MaxUint64), "a huge length must not wrap around")
	assert.False(t, r.Contains(math.MaxUint64, 2))
}

func TestGuestAccessorsAreBoundsChecked(t *testing.T) {
	low := make([]byte, 0x2000)
	high := make([]byte, 0x1000)
	g := NewFromBytes(Region{Range{0, 0x2000}, low}, Region{Range{MMIOHoleEnd, 0x1000}, high})
	assert.Equal(t, uint64(0x3000), g.Size())

	_, err := g.WriteAt([]byte("govmm"), 0x1FFB)
	require.NoError(t, err)
	assert.Equal(t, "govmm", string(low[0x1FFB:]))
	buf := make([]byte, 5)
	_, err = g.ReadAt(buf, 0x1FFB)
	require.NoError(t, err)
	assert.Equal(t, "govmm", string(buf))

	_, err = g.WriteAt([]byte("x"), MMIOHoleEnd+0xFFF)
	require.NoError(t, err)
	assert.Equal(t, byte('x'), high[0xFFF])

	for _, c := range []struct{ addr, n uint64 }{
		{0x1FFC, 5},               // runs off the end of a region
		{0x2000, 1},               // in the hole
		{MMIOHoleStart, 4},        // MMIO
		{MMIOHoleEnd + 0x1000, 1}, // past the end of RAM
		{math.MaxUint64, 1},
		{1, math.MaxUint64},
	} {
		_, err := g.Slice(c.addr, c.n)
		assert.True(t, errors.Is(err, ErrOutOfRange), "Slice(%#x, %#x): %v", c.addr, c.n, err)
	}
	_, err = g.ReadAt(buf, -1)
	assert.ErrorIs(t, err, ErrOutOfRange)

	s, err := g.Slice(0x10, 4)
	require.NoError(t, err)
	assert.Equal(t, 4, cap(s), "a slice cannot be extended past what was asked")
}

func TestNewMapsAndRejectsUnaligned(t *testing.T) {
	g, err := New(RAMLayout(64 << 20))
	require.NoError(t, err)
	defer g.Close()
	b, err := g.Slice(64<<20-1, 1)
	require.NoError(t, err)
	b[0] = 1 // the mapping is writable to its last byte
	for _, r := range g.Regions {
		assert.Zero(t, uintptr(unsafe.Pointer(unsafe.SliceData(r.Host)))%hostHugePageSize,
			"host mapping of %#x is 2 MiB aligned, so huge pages can back guest huge pages", r.Start)
	}

	_, err = New([]Range{{Start: 0, Size: 100}})
	assert.Error(t, err)
}

func FuzzSlice(f *testing.F) {
	f.Add(uint64(0), uint64(1))
	f.Add(uint64(0x1FFF), uint64(2))
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64))
	g := NewFromBytes(Region{Range{0x1000, 0x2000}, make([]byte, 0x2000)}, Region{Range{MMIOHoleEnd, 0x1000}, make([]byte, 0x1000)})
	f.Fuzz(func(t *testing.T, addr, n uint64) {
		b, err := g.Slice(addr, n)
		if err != nil {
			return
		}
		if uint64(len(b)) != n {
			t.Fatalf("Slice(%#x, %#x) returned %d bytes", addr, n, len(b))
		}
		inside := false
		for _, r := range g.Regions {
			inside = inside || (addr >= r.Start && addr-r.Start+n <= r.Size)
		}
		if !inside {
			t.Fatalf("Slice(%#x, %#x) succeeded outside RAM", addr, n)
		}
	})
}

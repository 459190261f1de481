package bootloader

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/machine/memory"
)

const (
	kib = uint64(1) << 10
	mib = uint64(1) << 20
	gib = uint64(1) << 30
)

// lowBIOS are the first two entries of every map: conventional memory and
// the reserved EBDA/VGA/BIOS area up to 1 MiB.
var lowBIOS = []E820Entry{
	{Addr: 0, Size: 0x9fc00, Type: E820RAM},
	{Addr: 0x9fc00, Size: 0x100000 - 0x9fc00, Type: E820Reserved},
}

// kvmPrivate is the reserved entry for KVM's identity-map and TSS pages.
var kvmPrivate = E820Entry{Addr: 0xfffbc000, Size: 0x4000, Type: E820Reserved}

func TestE820Map(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		want []E820Entry
	}{
		{"64M", 64 * mib, append(lowBIOS[:2:2],
			E820Entry{Addr: 1 * mib, Size: 63 * mib, Type: E820RAM},
			kvmPrivate)},
		{"3G-4K", 3*gib - 4*kib, append(lowBIOS[:2:2],
			E820Entry{Addr: 1 * mib, Size: 3*gib - 4*kib - 1*mib, Type: E820RAM},
			kvmPrivate)},
		{"3G", 3 * gib, append(lowBIOS[:2:2],
			E820Entry{Addr: 1 * mib, Size: 3*gib - 1*mib, Type: E820RAM},
			kvmPrivate)},
		{"3G+4K", 3*gib + 4*kib, append(lowBIOS[:2:2],
			E820Entry{Addr: 1 * mib, Size: 3*gib - 1*mib, Type: E820RAM},
			kvmPrivate,
			E820Entry{Addr: 4 * gib, Size: 4 * kib, Type: E820RAM})},
		{"4G", 4 * gib, append(lowBIOS[:2:2],
			E820Entry{Addr: 1 * mib, Size: 3*gib - 1*mib, Type: E820RAM},
			kvmPrivate,
			E820Entry{Addr: 4 * gib, Size: 1 * gib, Type: E820RAM})},
		{"8G", 8 * gib, append(lowBIOS[:2:2],
			E820Entry{Addr: 1 * mib, Size: 3*gib - 1*mib, Type: E820RAM},
			kvmPrivate,
			E820Entry{Addr: 4 * gib, Size: 5 * gib, Type: E820RAM})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := E820Map(memory.RAMLayout(tt.size))
			require.NoError(t, err)
			assert.Equal(t, tt.want, m)
			checkE820Invariants(t, m, tt.size)
		})
	}
}

// checkE820Invariants: sorted, non-overlapping, within the zero page's limit,
// no RAM in the MMIO hole, and all of the RAM accounted for except the
// reserved [EBDAStart, 1 MiB) window.
func checkE820Invariants(t *testing.T, m []E820Entry, size uint64) {
	t.Helper()
	assert.LessOrEqual(t, len(m), E820MaxEntriesZeroPage)
	var ram uint64
	for i, e := range m {
		assert.NotZero(t, e.Size, "entry %v", e)
		if i > 0 {
			assert.GreaterOrEqual(t, e.Addr, m[i-1].End(), "%v after %v", e, m[i-1])
		}
		if e.Type == E820RAM {
			ram += e.Size
			assert.False(t, e.Addr < memory.MMIOHoleEnd && e.End() > memory.MMIOHoleStart,
				"RAM %v in the MMIO hole", e)
		}
	}
	assert.Equal(t, size-(memory.HighMemStart-memory.EBDAStart), ram)
}

func TestE820MapErrors(t *testing.T) {
	tests := []struct {
		name string
		ram  []memory.Range
		msg  string
	}{
		{"no RAM", nil, "no RAM"},
		{"not at 0", []memory.Range{{Start: 1 * mib, Size: 64 * mib}}, "must start at 0"},
		{"only 1M", []memory.Range{{Start: 0, Size: 1 * mib}}, "extend beyond 1 MiB"},
		{"into the hole", []memory.Range{{Start: 0, Size: 3*gib + 4*kib}}, "MMIO hole"},
		{"high range in the hole", []memory.Range{{Start: 0, Size: 64 * mib}, {Start: 3 * gib, Size: 4 * kib}}, "MMIO hole"},
		{"overlap", []memory.Range{{Start: 0, Size: 64 * mib}, {Start: 32 * mib, Size: 64 * mib}}, "overlaps"},
		{"empty range", []memory.Range{{Start: 0, Size: 64 * mib}, {Start: 4 * gib}}, "empty"},
		{"wraps", []memory.Range{{Start: 0, Size: 64 * mib}, {Start: 4 * gib, Size: ^uint64(0)}}, "wraps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := E820Map(tt.ram)
			assert.ErrorIs(t, err, ErrBadRAMLayout)
			assert.ErrorContains(t, err, tt.msg)
		})
	}
}

func TestE820MapTooManyEntries(t *testing.T) {
	ram := []memory.Range{{Start: 0, Size: 64 * mib}}
	for i := range uint64(130) {
		ram = append(ram, memory.Range{Start: 4*gib + i*2*mib, Size: mib})
	}
	_, err := E820Map(ram)
	assert.ErrorIs(t, err, ErrBadRAMLayout)
	assert.ErrorContains(t, err, "the zero page holds 128")
}

func TestE820TypeString(t *testing.T) {
	assert.Equal(t, "RAM", E820RAM.String())
	assert.Equal(t, "reserved", E820Reserved.String())
	assert.Equal(t, "ACPI", E820ACPI.String())
	assert.Equal(t, "NVS", E820NVS.String())
	assert.Equal(t, "unusable", E820Unusable.String())
	assert.Equal(t, "type 9", E820Type(9).String())
	assert.Equal(t, "[mem 0x0000000000100000-0x00000000001fffff] RAM", E820Entry{Addr: mib, Size: mib, Type: E820RAM}.String())
}

func TestE820MapReserved(t *testing.T) {
	ecam := memory.Range{Start: 0xE000_0000, Size: 256 * mib}
	m, err := E820Map(memory.RAMLayout(512*mib), ecam)
	require.NoError(t, err)
	assert.Contains(t, m, E820Entry{Addr: ecam.Start, Size: ecam.Size, Type: E820Reserved})
	for i := 1; i < len(m); i++ {
		assert.Less(t, m[i-1].Addr, m[i].Addr, "sorted")
	}

	for _, bad := range []memory.Range{
		{Start: 64 * mib, Size: mib},         // in RAM
		{Start: 0xFFFF_F000, Size: 2 * 4096}, // crosses 4 GiB
		{Start: 0xE000_0000, Size: 0},        // empty
	} {
		_, err := E820Map(memory.RAMLayout(512*mib), bad)
		assert.ErrorIs(t, err, ErrBadRAMLayout, "%+v", bad)
	}
}

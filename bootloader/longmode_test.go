package bootloader

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/machine/memory"
)

// decodeDescriptor decodes an 8-byte code/data/system descriptor the way the
// CPU loads it into a segment register's hidden part (SDM Vol. 3A §3.4.5),
// written independently of encodeDescriptor. For a 16-byte IA-32e system
// descriptor, pass the upper 8 bytes as high.
func decodeDescriptor(d, high uint64, selector uint16) Segment {
	limit := uint32(d&0xffff | (d>>48&0xf)<<16)
	g := d>>55&1 == 1
	if g {
		limit = limit<<12 | 0xfff
	}
	s := Segment{
		Base:     d>>16&0xffffff | (d>>56&0xff)<<24,
		Limit:    limit,
		Selector: selector,
		Type:     uint8(d >> 40 & 0xf),
		S:        d>>44&1 == 1,
		DPL:      uint8(d >> 45 & 3),
		Present:  d>>47&1 == 1,
		AVL:      d>>52&1 == 1,
		L:        d>>53&1 == 1,
		DB:       d>>54&1 == 1,
		G:        g,
	}
	if !s.S {
		s.Base |= (high & 0xffffffff) << 32
	}
	return s
}

func TestSetupLongModeGDTMatchesSegments(t *testing.T) {
	mem := newGuest(t, 64*mib)
	cpu, err := SetupLongMode(mem)
	require.NoError(t, err)

	require.Equal(t, uint64(GDTAddr), cpu.GDTBase)
	gdt := readGuest(t, mem, cpu.GDTBase, uint64(cpu.GDTLimit)+1)
	entry := func(sel uint16) uint64 {
		require.Less(t, int(sel)+8, len(gdt)+1, "selector %#x beyond the GDT limit", sel)
		return binary.LittleEndian.Uint64(gdt[sel:])
	}
	assert.Zero(t, entry(0), "null descriptor")
	assert.Zero(t, entry(8), "unused slot")

	// Every segment register must hold exactly what its GDT entry encodes.
	for name, seg := range map[string]Segment{
		"CS": cpu.CS, "DS": cpu.DS, "ES": cpu.ES, "FS": cpu.FS, "GS": cpu.GS, "SS": cpu.SS,
	} {
		assert.Equal(t, decodeDescriptor(entry(seg.Selector), 0, seg.Selector), seg, name)
	}
	tr := decodeDescriptor(entry(cpu.TR.Selector), entry(cpu.TR.Selector+8), cpu.TR.Selector)
	assert.Equal(t, tr, cpu.TR)

	// Well-known encodings (Linux's boot GDT uses 0xa09b/0xc093 too).
	assert.Equal(t, uint64(0x00af9b000000ffff), entry(0x10), "64-bit code")
	assert.Equal(t, uint64(0x00cf93000000ffff), entry(0x18), "flat data")

	// boot.rst "64-bit Boot Protocol" selectors and flat 4G segments.
	assert.Equal(t, uint16(0x10), cpu.CS.Selector)
	for _, s := range []Segment{cpu.DS, cpu.ES, cpu.SS, cpu.FS, cpu.GS} {
		assert.Equal(t, uint16(0x18), s.Selector)
		assert.Equal(t, uint32(0xffffffff), s.Limit)
		assert.Zero(t, s.Base)
		assert.Equal(t, uint8(3), s.Type&3, "read/write, accessed")
	}
	assert.True(t, cpu.CS.L && !cpu.CS.DB, "64-bit code segment: L=1, D=0")
	assert.Equal(t, uint8(0xb), cpu.CS.Type, "execute/read, accessed")
	assert.True(t, cpu.CS.Present && cpu.CS.S && cpu.CS.G)

	// TR: a present, busy 64-bit TSS of 104 bytes at TSSAddr.
	assert.Equal(t, uint8(0xb), cpu.TR.Type)
	assert.False(t, cpu.TR.S)
	assert.True(t, cpu.TR.Present)
	assert.Equal(t, uint64(TSSAddr), cpu.TR.Base)
	assert.Equal(t, uint32(103), cpu.TR.Limit)
	tss := readGuest(t, mem, TSSAddr, 104)
	assert.Equal(t, uint16(104), binary.LittleEndian.Uint16(tss[0x66:]), "no I/O bitmap")

	assert.True(t, cpu.LDT.Unusable)
}

func TestSetupLongModeRegisters(t *testing.T) {
	cpu, err := SetupLongMode(newGuest(t, 64*mib))
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<0|1<<4|1<<31), cpu.CR0, "PE|ET|PG")
	assert.Equal(t, uint64(1<<5), cpu.CR4, "PAE")
	assert.Equal(t, uint64(1<<8|1<<10), cpu.EFER, "LME|LMA")
	assert.Equal(t, uint64(2), cpu.RFLAGS, "reserved bit 1, IF=0")
	assert.Equal(t, uint64(PML4Addr), cpu.CR3)
	assert.Equal(t, uint64(BootStackTop), cpu.RSP)
	assert.Equal(t, uint16(0x2f), cpu.GDTLimit, "6 slots of 8 bytes")
}

// translate walks the 4-level page tables in guest memory like the MMU (SDM
// Vol. 3A, "4-Level Paging"), supporting 2 MiB pages only.
func translate(t *testing.T, mem *memory.Guest, cr3, va uint64) (uint64, error) {
	t.Helper()
	const addrMask = 0x000ffffffffff000
	entry := func(table uint64, index uint64) uint64 {
		return binary.LittleEndian.Uint64(readGuest(t, mem, table+index*8, 8))
	}
	pml4e := entry(cr3&addrMask, va>>39&511)
	if pml4e&1 == 0 {
		return 0, fmt.Errorf("PML4E not present for %#x", va)
	}
	pdpte := entry(pml4e&addrMask, va>>30&511)
	if pdpte&1 == 0 {
		return 0, fmt.Errorf("PDPTE not present for %#x", va)
	}
	require.Zero(t, pdpte&(1<<7), "no 1 GiB pages")
	pde := entry(pdpte&addrMask, va>>21&511)
	if pde&1 == 0 {
		return 0, fmt.Errorf("PDE not present for %#x", va)
	}
	require.NotZero(t, pde&(1<<7), "2 MiB page")
	require.NotZero(t, pde&2, "writable")
	return pde&0x000fffffffe00000 | va&(2<<20-1), nil
}

func TestSetupLongModePageTables(t *testing.T) {
	mem := newGuest(t, 64*mib)
	cpu, err := SetupLongMode(mem)
	require.NoError(t, err)
	for _, va := range []uint64{
		0, ZeroPageAddr, CmdlineAddr, KernelLoadAddr, KernelLoadAddr + KernelEntry64Offset,
		2*mib - 1, 2 * mib, 16 * mib, 1*gib - 1, 1 * gib, 3 * gib, 0xfee00000, 4*gib - 1,
	} {
		pa, err := translate(t, mem, cpu.CR3, va)
		require.NoError(t, err)
		assert.Equal(t, va, pa, "identity map of %#x", va)
	}
	_, err = translate(t, mem, cpu.CR3, 4*gib)
	assert.ErrorContains(t, err, "PDPTE not present", "only the first 4 GiB are mapped")
	assert.Equal(t, uint64(4*gib), uint64(IdentityMapEnd))
}

// bootRegion is a named guest-physical range used by the overlap checks.
type bootRegion struct {
	name       string
	start, end uint64
}

func checkNoOverlap(t *testing.T, regions []bootRegion) {
	t.Helper()
	for i, a := range regions {
		assert.Less(t, a.start, a.end, a.name)
		for _, b := range regions[i+1:] {
			assert.False(t, a.start < b.end && b.start < a.end,
				"%s [%#x, %#x) overlaps %s [%#x, %#x)", a.name, a.start, a.end, b.name, b.start, b.end)
		}
	}
}

func lowMemoryRegions() []bootRegion {
	return []bootRegion{
		{"IVT+BDA", 0, 0x500},
		{"GDT", GDTAddr, GDTAddr + gdtSize},
		{"TSS", TSSAddr, TSSAddr + tssSize},
		{"boot stack", BootStackBottom, BootStackTop},
		{"zero page", ZeroPageAddr, ZeroPageAddr + ZeroPageSize},
		{"PML4", PML4Addr, PML4Addr + memory.PageSize},
		{"PDPT", PDPTAddr, PDPTAddr + memory.PageSize},
		{"PDs", PDAddr, PageTablesEnd},
		{"command line", CmdlineAddr, CmdlineAddr + CmdlineMaxSize},
	}
}

func TestLowMemoryLayout(t *testing.T) {
	regions := lowMemoryRegions()
	checkNoOverlap(t, regions)
	for _, r := range regions {
		assert.LessOrEqual(t, r.end, uint64(memory.EBDAStart), "%s below the EBDA", r.name)
	}
	// Page tables must be page aligned and contiguous as buildPageTables
	// assumes.
	assert.Zero(t, PML4Addr%memory.PageSize)
	assert.Equal(t, PML4Addr+memory.PageSize, PDPTAddr)
	assert.Equal(t, PDPTAddr+memory.PageSize, PDAddr)
	assert.Zero(t, BootStackTop%16, "ABI stack alignment")
}

func TestSetupLongModeTooLittleMemory(t *testing.T) {
	_, err := SetupLongMode(memory.NewFromBytes(memory.Region{
		Range: memory.Range{Start: 0, Size: 0x8000}, Host: make([]byte, 0x8000),
	}))
	assert.ErrorIs(t, err, memory.ErrOutOfRange)
	assert.ErrorContains(t, err, "page tables")
}

func TestEncodeDescriptorRejects(t *testing.T) {
	_, err := encodeDescriptor(Segment{Limit: 0x1000, G: true})
	assert.Error(t, err)
	_, err = encodeDescriptor(Segment{Limit: 0x100000})
	assert.Error(t, err)
	_, err = encodeDescriptor(Segment{Base: 1 << 32})
	assert.Error(t, err)
	_, err = encodeDescriptor(Segment{DPL: 4})
	assert.Error(t, err)
	lo, hi, err := encodeSystemDescriptor64(Segment{Base: 0x1234_5678_9abc_def0, Limit: 0x67, Type: 0xb, Present: true})
	require.NoError(t, err)
	assert.Equal(t, uint64(0x12345678), hi)
	assert.Equal(t, uint64(0x1234_5678_9abc_def0), decodeDescriptor(lo, hi, 0).Base)
}

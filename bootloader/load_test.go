package bootloader

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/machine/memory"
)

func makeInitrd(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13 + 1)
	}
	return b
}

// checkLoadInvariants checks what must hold after any successful Load: the
// entry state, the bytes in memory, and that nothing overlaps.
func checkLoadInvariants(t *testing.T, mem *memory.Guest, info *BootInfo, kernel, initrd []byte, cmdline string) {
	t.Helper()
	le := binary.LittleEndian
	lowEnd := mem.Regions[0].End()

	// Entry: 64-bit entry point, RSI = zero page.
	assert.Equal(t, uint64(0x100000+0x200), info.CPU.RIP)
	assert.Equal(t, uint64(ZeroPageAddr), info.CPU.RSI)
	assert.Equal(t, uint64(ZeroPageAddr), info.ZeroPageAddr)

	// The protected-mode kernel at 1 MiB.
	h := info.Header
	setup := h.SetupSize()
	assert.Equal(t, kernel[setup:setup+h.ProtectedModeSize()], readGuest(t, mem, KernelLoadAddr, info.KernelSize))
	assert.LessOrEqual(t, info.KernelEnd, lowEnd)
	assert.GreaterOrEqual(t, info.RuntimeAddr, uint64(KernelLoadAddr))
	assert.Equal(t, info.RuntimeAddr+uint64(h.InitSize), info.KernelEnd)

	// Command line, NUL-terminated.
	assert.Equal(t, append([]byte(cmdline), 0), readGuest(t, mem, CmdlineAddr, uint64(len(cmdline))+1))

	// Zero page fields.
	zp := readGuest(t, mem, ZeroPageAddr, ZeroPageSize)
	assert.Equal(t, byte(0xff), zp[0x210], "type_of_loader")
	assert.Equal(t, uint16(0xffff), le.Uint16(zp[0x1fa:]), "vid_mode")
	assert.Equal(t, byte(0x81), zp[0x211], "loadflags: LOADED_HIGH|CAN_USE_HEAP")
	assert.Equal(t, uint16(0xe000-0x200), le.Uint16(zp[0x224:]), "heap_end_ptr")
	assert.Equal(t, uint32(CmdlineAddr), le.Uint32(zp[0x228:]), "cmd_line_ptr")
	assert.Zero(t, le.Uint32(zp[0x0c8:]), "ext_cmd_line_ptr")
	assert.Equal(t, uint32(info.InitrdAddr), le.Uint32(zp[0x218:]), "ramdisk_image")
	assert.Equal(t, uint32(len(initrd)), le.Uint32(zp[0x21c:]), "ramdisk_size")
	assert.Zero(t, le.Uint32(zp[0x0c0:]), "ext_ramdisk_image")
	assert.Zero(t, le.Uint32(zp[0x0c4:]), "ext_ramdisk_size")
	assert.Equal(t, "HdrS", string(zp[0x202:0x206]))
	assert.Equal(t, h.raw[:0x210-0x1f1], zp[0x1f1:0x210], "header copied from the image")
	require.Equal(t, len(info.E820), int(zp[0x1e8]), "e820_entries")
	for i, e := range info.E820 {
		off := 0x2d0 + 20*i
		assert.Equal(t, e, E820Entry{
			Addr: le.Uint64(zp[off:]), Size: le.Uint64(zp[off+8:]), Type: E820Type(le.Uint32(zp[off+16:])),
		})
	}

	// Initrd: page aligned, below initrd_addr_max and low RAM, in RAM.
	regions := lowMemoryRegions()
	regions = append(regions, bootRegion{"kernel", KernelLoadAddr, info.KernelEnd})
	if len(initrd) > 0 {
		assert.Equal(t, initrd, readGuest(t, mem, info.InitrdAddr, uint64(len(initrd))))
		assert.Zero(t, info.InitrdAddr%memory.PageSize)
		end := info.InitrdAddr + uint64(len(initrd))
		assert.LessOrEqual(t, end, uint64(h.InitrdAddrMax)+1)
		assert.LessOrEqual(t, end, lowEnd)
		assert.True(t, isRAM(info.E820, info.InitrdAddr, end), "initrd in e820 RAM")
		regions = append(regions, bootRegion{"initrd", info.InitrdAddr, end})
	} else {
		assert.Zero(t, info.InitrdAddr)
		assert.Zero(t, info.InitrdSize)
	}
	checkNoOverlap(t, regions)
	assert.True(t, isRAM(info.E820, KernelLoadAddr, info.KernelEnd), "kernel in e820 RAM")
	assert.True(t, isRAM(info.E820, 0x500, PageTablesEnd), "boot data in e820 RAM")
	assert.True(t, isRAM(info.E820, CmdlineAddr, CmdlineAddr+CmdlineMaxSize), "command line in e820 RAM")
}

func isRAM(m []E820Entry, start, end uint64) bool {
	for _, e := range m {
		if e.Type == E820RAM && e.Addr <= start && end <= e.End() {
			return true
		}
	}
	return false
}

func TestLoad(t *testing.T) {
	s := defaultSpec()
	kernel := s.build()
	initrd := makeInitrd(3*int(mib) + 123)
	cmdline := "console=ttyS0 root=/dev/vda rw"
	mem := newGuest(t, 128*mib)

	info, err := Load(mem, kernel, initrd, cmdline, LoadOptions{RSDPAddr: 0xe0000})
	require.NoError(t, err)
	checkLoadInvariants(t, mem, info, kernel, initrd, cmdline)

	// Relocatable, 2 MiB aligned: align_up(1 MiB) = 2 MiB, raised to
	// pref_address (16 MiB), plus init_size (4 MiB).
	assert.Equal(t, uint64(16*mib), info.RuntimeAddr)
	assert.Equal(t, uint64(20*mib), info.KernelEnd)
	// The initrd ends at the top of RAM, rounded down to a page.
	assert.Equal(t, (128*mib-uint64(len(initrd)))&^0xfff, info.InitrdAddr)

	zp := readGuest(t, mem, ZeroPageAddr, ZeroPageSize)
	assert.Equal(t, uint64(0xe0000), binary.LittleEndian.Uint64(zp[0x70:]), "acpi_rsdp_addr")
}

func TestLoadNoInitrdEmptyCmdline(t *testing.T) {
	kernel := defaultSpec().build()
	mem := newGuest(t, 64*mib)
	info, err := Load(mem, kernel, nil, "", LoadOptions{})
	require.NoError(t, err)
	checkLoadInvariants(t, mem, info, kernel, nil, "")
	zp := readGuest(t, mem, ZeroPageAddr, ZeroPageSize)
	assert.Zero(t, binary.LittleEndian.Uint64(zp[0x70:]), "no RSDP")
}

func TestLoadInitrdAddrMax(t *testing.T) {
	s := defaultSpec()
	s.initrdAddrMax = 32*uint32(mib) - 1
	kernel := s.build()
	initrd := makeInitrd(5000)
	mem := newGuest(t, 128*mib)
	info, err := Load(mem, kernel, initrd, "quiet", LoadOptions{})
	require.NoError(t, err)
	checkLoadInvariants(t, mem, info, kernel, initrd, "quiet")
	assert.Equal(t, 32*mib-2*4096, info.InitrdAddr)
}

func TestLoadNonRelocatable(t *testing.T) {
	s := defaultSpec()
	s.relocatable = 0
	s.kernelAlignment = 0 // ignored for a non-relocatable kernel
	s.prefAddress = 24 * mib
	kernel := s.build()
	mem := newGuest(t, 64*mib)
	info, err := Load(mem, kernel, makeInitrd(4096), "", LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint64(24*mib), info.RuntimeAddr)
	assert.Equal(t, uint64(28*mib), info.KernelEnd)

	s.prefAddress = 0x80000
	_, err = Load(mem, s.build(), nil, "", LoadOptions{})
	assert.ErrorIs(t, err, ErrMalformedHeader)
}

func TestLoadLargeAlignment(t *testing.T) {
	// A relocatable kernel wanting 64 MiB alignment runs at 64 MiB even
	// though pref_address is lower.
	s := defaultSpec()
	s.kernelAlignment = 64 << 20
	mem := newGuest(t, 128*mib)
	info, err := Load(mem, s.build(), nil, "", LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint64(64*mib), info.RuntimeAddr)
	assert.Equal(t, uint64(68*mib), info.KernelEnd)
}

func TestLoadCmdline(t *testing.T) {
	s := defaultSpec()
	s.cmdlineSize = 16
	kernel := s.build()
	mem := newGuest(t, 64*mib)

	info, err := Load(mem, kernel, nil, strings.Repeat("x", 16), LoadOptions{})
	require.NoError(t, err, "exactly cmdline_size characters are allowed")
	checkLoadInvariants(t, mem, info, kernel, nil, strings.Repeat("x", 16))

	_, err = Load(mem, kernel, nil, strings.Repeat("x", 17), LoadOptions{})
	assert.ErrorIs(t, err, ErrCmdlineTooLong)
	assert.ErrorContains(t, err, "17 bytes, this kernel accepts at most 16 (cmdline_size)")

	_, err = Load(mem, kernel, nil, "a\x00b", LoadOptions{})
	assert.ErrorIs(t, err, ErrBadCmdline)

	// A kernel accepting more than govmm's buffer.
	s.cmdlineSize = 1 << 20
	_, err = Load(mem, s.build(), nil, strings.Repeat("x", CmdlineMaxSize), LoadOptions{})
	assert.ErrorIs(t, err, ErrCmdlineTooLong)
	assert.ErrorContains(t, err, "govmm's command line buffer")
	_, err = Load(mem, s.build(), nil, strings.Repeat("x", CmdlineMaxSize-1), LoadOptions{})
	assert.NoError(t, err)
}

func TestLoadInitrdTooBig(t *testing.T) {
	kernel := defaultSpec().build()
	mem := newGuest(t, 64*mib)
	// 64 MiB of RAM, the kernel needs up to 20 MiB: 44 MiB remain.
	_, err := Load(mem, kernel, make([]byte, 44*mib+1), "", LoadOptions{})
	assert.ErrorIs(t, err, ErrInitrdTooBig)
	assert.ErrorContains(t, err, "initrd (45 MiB) does not fit below 0x4000000")
	assert.ErrorContains(t, err, "leaving 44 MiB")

	_, err = Load(mem, kernel, make([]byte, 100*mib), "", LoadOptions{})
	assert.ErrorIs(t, err, ErrInitrdTooBig)
	assert.ErrorContains(t, err, "initrd (100 MiB)")

	// Exactly the room left fits.
	initrd := makeInitrd(int(44 * mib))
	info, err := Load(mem, kernel, initrd, "", LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, uint64(20*mib), info.InitrdAddr)
	checkLoadInvariants(t, mem, info, kernel, initrd, "")
}

func TestLoadRAMTooSmall(t *testing.T) {
	s := defaultSpec()
	s.initSize = 60 << 20 // decompresses at 16 MiB: needs up to 76 MiB
	_, err := Load(newGuest(t, 64*mib), s.build(), nil, "", LoadOptions{})
	assert.ErrorIs(t, err, ErrRAMTooSmall)
	assert.ErrorContains(t, err, "needs init_size 60 MiB there, up to 0x4c00000")
	assert.ErrorContains(t, err, "low RAM ends at 0x4000000 (64 MiB)")

	s = defaultSpec()
	s.prefAddress = ^uint64(0) // would overflow a naive addition
	_, err = Load(newGuest(t, 64*mib), s.build(), nil, "", LoadOptions{})
	assert.ErrorIs(t, err, ErrRAMTooSmall)

	s = defaultSpec()
	s.initSize = 0xffffffff
	_, err = Load(newGuest(t, 64*mib), s.build(), nil, "", LoadOptions{})
	assert.ErrorIs(t, err, ErrRAMTooSmall)

	// A payload larger than init_size is still accounted for.
	s = defaultSpec()
	s.payloadLen = 70 << 20
	_, err = Load(newGuest(t, 64*mib), s.build(), nil, "", LoadOptions{})
	assert.ErrorIs(t, err, ErrRAMTooSmall)
	assert.ErrorContains(t, err, "image reaches")
}

func TestLoadErrorsLeaveMemoryUntouched(t *testing.T) {
	s := defaultSpec()
	kernel := s.build()
	mem := newGuest(t, 64*mib)
	for _, tc := range []struct {
		kernel  []byte
		initrd  []byte
		cmdline string
	}{
		{kernel[:100], nil, ""},
		{kernel, make([]byte, 60*mib), ""},
		{kernel, nil, strings.Repeat("y", 4096)},
	} {
		_, err := Load(mem, tc.kernel, tc.initrd, tc.cmdline, LoadOptions{})
		require.Error(t, err)
	}
	assert.True(t, bytes.Equal(mem.Regions[0].Host, make([]byte, 64*mib)), "guest memory written on error")
}

func TestLoadBadMemory(t *testing.T) {
	kernel := defaultSpec().build()
	_, err := Load(memory.NewFromBytes(), kernel, nil, "", LoadOptions{})
	assert.ErrorIs(t, err, ErrBadRAMLayout)
}

func TestLoadAboveHole(t *testing.T) {
	// 8 GiB: 3 GiB below the MMIO hole, 5 GiB above. mmap'ed with
	// MAP_NORESERVE, so only the pages Load touches cost host memory.
	mem, err := memory.New(memory.RAMLayout(8 * gib))
	if err != nil {
		t.Skipf("cannot map 8 GiB of address space: %v", err)
	}
	defer mem.Close()
	kernel := defaultSpec().build()
	initrd := makeInitrd(int(mib))
	info, err := Load(mem, kernel, initrd, "console=ttyS0", LoadOptions{})
	require.NoError(t, err)
	checkLoadInvariants(t, mem, info, kernel, initrd, "console=ttyS0")
	// initrd_addr_max (2 GiB - 1) is below the hole, so it caps the initrd.
	assert.Equal(t, 2*gib-mib, info.InitrdAddr)
	assert.Equal(t, E820Entry{Addr: 4 * gib, Size: 5 * gib, Type: E820RAM}, info.E820[len(info.E820)-1])

	// With a kernel that takes initrds anywhere below 4 GiB, the end of
	// low RAM (the hole) is the limit.
	s := defaultSpec()
	s.initrdAddrMax = 0xffffffff
	info, err = Load(mem, s.build(), initrd, "", LoadOptions{})
	require.NoError(t, err)
	assert.Equal(t, 3*gib-mib, info.InitrdAddr)
}

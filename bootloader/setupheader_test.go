package bootloader

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSetupHeaderValid(t *testing.T) {
	s := defaultSpec()
	img := s.build()
	h, err := ParseSetupHeader(img)
	require.NoError(t, err)

	assert.Equal(t, uint8(27), h.SetupSects)
	assert.Equal(t, uint64(28*512), h.SetupSize())
	assert.Equal(t, uint32(64<<10/16), h.SysSize)
	assert.Equal(t, uint64(64<<10), h.ProtectedModeSize())
	assert.Equal(t, uint16(0xaa55), h.BootFlag)
	assert.Equal(t, uint32(0x53726448), h.Header)
	assert.Equal(t, uint16(0x020f), h.Version)
	assert.Equal(t, "2.15", h.ProtocolString())
	assert.Equal(t, uint16(0x1234), h.KernelVersion)
	assert.Equal(t, uint8(LoadedHigh), h.LoadFlags)
	assert.Equal(t, uint32(0x100000), h.Code32Start)
	assert.Equal(t, uint32(0x7fffffff), h.InitrdAddrMax)
	assert.Equal(t, uint32(2<<20), h.KernelAlignment)
	assert.True(t, h.Relocatable())
	assert.Equal(t, uint8(21), h.MinAlignment)
	assert.NotZero(t, h.XLoadFlags&XLFKernel64)
	assert.NotZero(t, h.XLoadFlags&XLFCanBeLoadedAbove4G)
	assert.Equal(t, uint32(2048), h.CmdlineSize)
	assert.Equal(t, uint32(0x3b5), h.PayloadOffset)
	assert.Equal(t, uint32(0x1000), h.PayloadLength)
	assert.Equal(t, uint64(16<<20), h.PrefAddress)
	assert.Equal(t, uint32(4<<20), h.InitSize)
	assert.Equal(t, uint32(0x190), h.HandoverOffset)
	assert.Equal(t, uint32(0x4321), h.KernelInfoOffset)
	assert.Equal(t, 0x26c-0x1f1, h.Len())

	// The parser keeps no reference to the caller's buffer.
	img[0x206] = 0
	assert.Equal(t, uint16(0x020f), h.Version)
	assert.Equal(t, byte(0x0f), h.raw[0x206-0x1f1])
}

func TestParseSetupHeaderShortHeader(t *testing.T) {
	// A protocol 2.12 header ends after handover_offset (0x268): fields
	// beyond it must read as 0, not as the code that follows.
	s := defaultSpec()
	s.version = 0x020c
	s.headerEnd = 0x268
	img := s.build()
	binary.LittleEndian.PutUint32(img[0x268:], 0xdeadbeef)
	h, err := ParseSetupHeader(img)
	require.NoError(t, err)
	assert.Equal(t, 0x268-0x1f1, h.Len())
	assert.Equal(t, uint32(0x190), h.HandoverOffset)
	assert.Zero(t, h.KernelInfoOffset)
	assert.Equal(t, "2.12", h.ProtocolString())
}

func TestParseSetupHeaderSetupSectsZeroMeansFour(t *testing.T) {
	s := defaultSpec()
	s.setupSects = 0
	h, err := ParseSetupHeader(s.build())
	require.NoError(t, err)
	assert.Equal(t, uint64(5*512), h.SetupSize())
}

func TestParseSetupHeaderErrors(t *testing.T) {
	valid := defaultSpec().build()
	mutate := func(f func(b []byte)) []byte {
		b := append([]byte(nil), valid...)
		f(b)
		return b
	}
	spec := func(f func(s *imageSpec)) []byte {
		s := defaultSpec()
		f(&s)
		return s.build()
	}
	tests := []struct {
		name    string
		image   []byte
		want    error
		message string
	}{
		{"empty", nil, ErrNotBzImage, "only 0 bytes"},
		{"tiny", []byte("hello"), ErrNotBzImage, "too short"},
		{"elf vmlinux", append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1}, make([]byte, 4096)...),
			ErrELFVmlinux, "ELF vmlinux"},
		{"short elf", []byte{0x7f, 'E', 'L', 'F'}, ErrNotBzImage, "arch/x86/boot/bzImage"},
		{"no boot flag", mutate(func(b []byte) { b[0x1fe] = 0 }), ErrNotBzImage, "boot_flag"},
		{"no HdrS", mutate(func(b []byte) { copy(b[0x202:], "HdrX") }), ErrNotBzImage, "HdrS"},
		{"protocol 2.05", spec(func(s *imageSpec) { s.version = 0x0205 }), ErrProtocolTooOld, "protocol 2.05"},
		{"protocol 2.00", spec(func(s *imageSpec) { s.version = 0x0200 }), ErrProtocolTooOld, "2.00, govmm needs 2.06"},
		{"zImage", spec(func(s *imageSpec) { s.loadFlags = 0 }), ErrNotBzImage, "LOADED_HIGH"},
		{"protocol 2.10", spec(func(s *imageSpec) { s.version = 0x020a }), ErrNo64BitEntry, "2.10 predates xloadflags"},
		{"32-bit kernel", spec(func(s *imageSpec) { s.xloadFlags = 0 }), ErrNo64BitEntry, "XLF_KERNEL_64"},
		{"truncated setup", valid[:0x1000], ErrTruncated, "27 setup sectors take 14336"},
		{"truncated payload", valid[:len(valid)-1], ErrTruncated, "syssize"},
		{"syssize beyond file", spec(func(s *imageSpec) { s.sysSize = u32p(0xffffffff); s.truncateTo = 1 << 20 }),
			ErrTruncated, "syssize 4294967295"},
		{"header too short", spec(func(s *imageSpec) { s.headerEnd = 0x260 }), ErrMalformedHeader, "header ends at 0x260"},
		{"header too long", spec(func(s *imageSpec) { s.headerEnd = 0x291 }), ErrMalformedHeader, "header ends at 0x291"},
		{"syssize zero", spec(func(s *imageSpec) { s.sysSize = u32p(0) }), ErrMalformedHeader, "syssize is 0"},
		{"init_size zero", spec(func(s *imageSpec) { s.initSize = 0 }), ErrMalformedHeader, "init_size"},
		{"alignment not power of two", spec(func(s *imageSpec) { s.kernelAlignment = 3 << 20 }),
			ErrMalformedHeader, "kernel_alignment"},
		{"alignment zero", spec(func(s *imageSpec) { s.kernelAlignment = 0 }), ErrMalformedHeader, "kernel_alignment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseSetupHeader(tt.image)
			require.Error(t, err)
			assert.Nil(t, h)
			assert.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.message)
		})
	}
}

func TestErrELFVmlinuxIsNotBzImage(t *testing.T) {
	assert.True(t, errors.Is(ErrELFVmlinux, ErrNotBzImage))
}

// headerFields lists every struct setup_header field with its file offset and
// size, transcribed from the table in boot.rst "The Real-Mode Kernel Header".
var headerFields = []struct {
	name   string
	off    int
	size   int
	get    func(h *SetupHeader) uint64
	set    func(h *SetupHeader, v uint64)
	fixed  bool // checked by the parser, so not freely settable in a valid image
	before int  // protocol it needs, for documentation
}{
	{"setup_sects", 0x1f1, 1, func(h *SetupHeader) uint64 { return uint64(h.SetupSects) }, func(h *SetupHeader, v uint64) { h.SetupSects = uint8(v) }, true, 0},
	{"root_flags", 0x1f2, 2, func(h *SetupHeader) uint64 { return uint64(h.RootFlags) }, func(h *SetupHeader, v uint64) { h.RootFlags = uint16(v) }, false, 0},
	{"syssize", 0x1f4, 4, func(h *SetupHeader) uint64 { return uint64(h.SysSize) }, func(h *SetupHeader, v uint64) { h.SysSize = uint32(v) }, true, 0},
	{"ram_size", 0x1f8, 2, func(h *SetupHeader) uint64 { return uint64(h.RAMSize) }, func(h *SetupHeader, v uint64) { h.RAMSize = uint16(v) }, false, 0},
	{"vid_mode", 0x1fa, 2, func(h *SetupHeader) uint64 { return uint64(h.VidMode) }, func(h *SetupHeader, v uint64) { h.VidMode = uint16(v) }, false, 0},
	{"root_dev", 0x1fc, 2, func(h *SetupHeader) uint64 { return uint64(h.RootDev) }, func(h *SetupHeader, v uint64) { h.RootDev = uint16(v) }, false, 0},
	{"boot_flag", 0x1fe, 2, func(h *SetupHeader) uint64 { return uint64(h.BootFlag) }, func(h *SetupHeader, v uint64) { h.BootFlag = uint16(v) }, true, 0},
	{"jump", 0x200, 2, func(h *SetupHeader) uint64 { return uint64(h.Jump) }, func(h *SetupHeader, v uint64) { h.Jump = uint16(v) }, true, 0x200},
	{"header", 0x202, 4, func(h *SetupHeader) uint64 { return uint64(h.Header) }, func(h *SetupHeader, v uint64) { h.Header = uint32(v) }, true, 0x200},
	{"version", 0x206, 2, func(h *SetupHeader) uint64 { return uint64(h.Version) }, func(h *SetupHeader, v uint64) { h.Version = uint16(v) }, true, 0x200},
	{"realmode_swtch", 0x208, 4, func(h *SetupHeader) uint64 { return uint64(h.RealmodeSwtch) }, func(h *SetupHeader, v uint64) { h.RealmodeSwtch = uint32(v) }, false, 0x200},
	{"start_sys_seg", 0x20c, 2, func(h *SetupHeader) uint64 { return uint64(h.StartSysSeg) }, func(h *SetupHeader, v uint64) { h.StartSysSeg = uint16(v) }, false, 0x200},
	{"kernel_version", 0x20e, 2, func(h *SetupHeader) uint64 { return uint64(h.KernelVersion) }, func(h *SetupHeader, v uint64) { h.KernelVersion = uint16(v) }, false, 0x200},
	{"type_of_loader", 0x210, 1, func(h *SetupHeader) uint64 { return uint64(h.TypeOfLoader) }, func(h *SetupHeader, v uint64) { h.TypeOfLoader = uint8(v) }, false, 0x200},
	{"loadflags", 0x211, 1, func(h *SetupHeader) uint64 { return uint64(h.LoadFlags) }, func(h *SetupHeader, v uint64) { h.LoadFlags = uint8(v) }, true, 0x200},
	{"setup_move_size", 0x212, 2, func(h *SetupHeader) uint64 { return uint64(h.SetupMoveSize) }, func(h *SetupHeader, v uint64) { h.SetupMoveSize = uint16(v) }, false, 0x200},
	{"code32_start", 0x214, 4, func(h *SetupHeader) uint64 { return uint64(h.Code32Start) }, func(h *SetupHeader, v uint64) { h.Code32Start = uint32(v) }, false, 0x200},
	{"ramdisk_image", 0x218, 4, func(h *SetupHeader) uint64 { return uint64(h.RamdiskImage) }, func(h *SetupHeader, v uint64) { h.RamdiskImage = uint32(v) }, false, 0x200},
	{"ramdisk_size", 0x21c, 4, func(h *SetupHeader) uint64 { return uint64(h.RamdiskSize) }, func(h *SetupHeader, v uint64) { h.RamdiskSize = uint32(v) }, false, 0x200},
	{"bootsect_kludge", 0x220, 4, func(h *SetupHeader) uint64 { return uint64(h.BootsectKludge) }, func(h *SetupHeader, v uint64) { h.BootsectKludge = uint32(v) }, false, 0x200},
	{"heap_end_ptr", 0x224, 2, func(h *SetupHeader) uint64 { return uint64(h.HeapEndPtr) }, func(h *SetupHeader, v uint64) { h.HeapEndPtr = uint16(v) }, false, 0x201},
	{"ext_loader_ver", 0x226, 1, func(h *SetupHeader) uint64 { return uint64(h.ExtLoaderVer) }, func(h *SetupHeader, v uint64) { h.ExtLoaderVer = uint8(v) }, false, 0x202},
	{"ext_loader_type", 0x227, 1, func(h *SetupHeader) uint64 { return uint64(h.ExtLoaderType) }, func(h *SetupHeader, v uint64) { h.ExtLoaderType = uint8(v) }, false, 0x202},
	{"cmd_line_ptr", 0x228, 4, func(h *SetupHeader) uint64 { return uint64(h.CmdLinePtr) }, func(h *SetupHeader, v uint64) { h.CmdLinePtr = uint32(v) }, false, 0x202},
	{"initrd_addr_max", 0x22c, 4, func(h *SetupHeader) uint64 { return uint64(h.InitrdAddrMax) }, func(h *SetupHeader, v uint64) { h.InitrdAddrMax = uint32(v) }, false, 0x203},
	{"kernel_alignment", 0x230, 4, func(h *SetupHeader) uint64 { return uint64(h.KernelAlignment) }, func(h *SetupHeader, v uint64) { h.KernelAlignment = uint32(v) }, true, 0x205},
	{"relocatable_kernel", 0x234, 1, func(h *SetupHeader) uint64 { return uint64(h.RelocatableKernel) }, func(h *SetupHeader, v uint64) { h.RelocatableKernel = uint8(v) }, false, 0x205},
	{"min_alignment", 0x235, 1, func(h *SetupHeader) uint64 { return uint64(h.MinAlignment) }, func(h *SetupHeader, v uint64) { h.MinAlignment = uint8(v) }, false, 0x20a},
	{"xloadflags", 0x236, 2, func(h *SetupHeader) uint64 { return uint64(h.XLoadFlags) }, func(h *SetupHeader, v uint64) { h.XLoadFlags = uint16(v) }, true, 0x20c},
	{"cmdline_size", 0x238, 4, func(h *SetupHeader) uint64 { return uint64(h.CmdlineSize) }, func(h *SetupHeader, v uint64) { h.CmdlineSize = uint32(v) }, false, 0x206},
	{"hardware_subarch", 0x23c, 4, func(h *SetupHeader) uint64 { return uint64(h.HardwareSubarch) }, func(h *SetupHeader, v uint64) { h.HardwareSubarch = uint32(v) }, false, 0x207},
	{"hardware_subarch_data", 0x240, 8, func(h *SetupHeader) uint64 { return h.HardwareSubarchData }, func(h *SetupHeader, v uint64) { h.HardwareSubarchData = v }, false, 0x207},
	{"payload_offset", 0x248, 4, func(h *SetupHeader) uint64 { return uint64(h.PayloadOffset) }, func(h *SetupHeader, v uint64) { h.PayloadOffset = uint32(v) }, false, 0x208},
	{"payload_length", 0x24c, 4, func(h *SetupHeader) uint64 { return uint64(h.PayloadLength) }, func(h *SetupHeader, v uint64) { h.PayloadLength = uint32(v) }, false, 0x208},
	{"setup_data", 0x250, 8, func(h *SetupHeader) uint64 { return h.SetupData }, func(h *SetupHeader, v uint64) { h.SetupData = v }, false, 0x209},
	{"pref_address", 0x258, 8, func(h *SetupHeader) uint64 { return h.PrefAddress }, func(h *SetupHeader, v uint64) { h.PrefAddress = v }, false, 0x20a},
	{"init_size", 0x260, 4, func(h *SetupHeader) uint64 { return uint64(h.InitSize) }, func(h *SetupHeader, v uint64) { h.InitSize = uint32(v) }, true, 0x20a},
	{"handover_offset", 0x264, 4, func(h *SetupHeader) uint64 { return uint64(h.HandoverOffset) }, func(h *SetupHeader, v uint64) { h.HandoverOffset = uint32(v) }, false, 0x20b},
	{"kernel_info_offset", 0x268, 4, func(h *SetupHeader) uint64 { return uint64(h.KernelInfoOffset) }, func(h *SetupHeader, v uint64) { h.KernelInfoOffset = uint32(v) }, false, 0x20f},
}

// TestSetupHeaderOffsets writes a distinct value at each field's documented
// offset in the image and checks the parser reads it into that field, then
// that encode writes each field back to the same place.
func TestSetupHeaderOffsets(t *testing.T) {
	// The fields tile the header without gaps, up to 0x26c.
	next := 0x1f1
	for _, f := range headerFields {
		assert.Equal(t, next, f.off, "field %s", f.name)
		next = f.off + f.size
	}
	assert.Equal(t, 0x26c, next)

	for _, f := range headerFields {
		if f.fixed {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			img := defaultSpec().build()
			v := uint64(0xa1b2c3d4e5f60718) >> (64 - 8*f.size)
			putLE(img[f.off:], f.size, v)
			h, err := ParseSetupHeader(img)
			require.NoError(t, err)
			assert.Equal(t, v, f.get(h))

			// encode: set a new value through the struct and find it at
			// the same offset.
			w := v ^ 0x5a5a5a5a5a5a5a5a>>(64-8*f.size)
			f.set(h, w)
			buf := make([]byte, h.Len())
			h.encode(buf)
			assert.Equal(t, w, getLE(buf[f.off-0x1f1:], f.size))
		})
	}
}

func TestSetupHeaderEncodeRoundTrip(t *testing.T) {
	img := defaultSpec().build()
	h, err := ParseSetupHeader(img)
	require.NoError(t, err)
	buf := make([]byte, h.Len())
	h.encode(buf)
	// Unchanged fields encode to exactly the image's bytes.
	assert.Equal(t, img[0x1f1:0x26c], buf)

	var back SetupHeader
	back.decode(buf)
	back.raw = h.raw
	assert.Equal(t, *h, back)
}

func TestSetupHeaderEncodeStopsAtHeaderEnd(t *testing.T) {
	s := defaultSpec()
	s.version = 0x020c
	s.headerEnd = 0x268
	h, err := ParseSetupHeader(s.build())
	require.NoError(t, err)
	h.KernelInfoOffset = 0xffffffff // not part of a 2.12 header
	buf := make([]byte, 0x290-0x1f1)
	h.encode(buf[:h.Len()])
	assert.Equal(t, make([]byte, 0x290-0x268), buf[0x268-0x1f1:])
}

func putLE(b []byte, size int, v uint64) {
	for i := range size {
		b[i] = byte(v >> (8 * i))
	}
}

func getLE(b []byte, size int) uint64 {
	var v uint64
	for i := range size {
		v |= uint64(b[i]) << (8 * i)
	}
	return v
}

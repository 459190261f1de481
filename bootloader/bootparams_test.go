package bootloader

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The offsets below are literal numbers from the comments of struct
// boot_params in arch/x86/include/uapi/asm/bootparam.h, not the package's
// constants, so that a typo in either shows up.
func TestBootParamsMarshalOffsets(t *testing.T) {
	h, err := ParseSetupHeader(defaultSpec().build())
	require.NoError(t, err)
	hdr := *h
	hdr.TypeOfLoader = 0xff
	hdr.CmdLinePtr = 0x20000
	hdr.RamdiskImage = 0x3ff0000
	hdr.RamdiskSize = 0x8000
	bp := BootParams{
		Hdr:             hdr,
		ACPIRSDPAddr:    0x000e0000,
		ExtRamdiskImage: 0x11,
		ExtRamdiskSize:  0x22,
		ExtCmdLinePtr:   0x33,
		E820Table: []E820Entry{
			{Addr: 0, Size: 0x9fc00, Type: E820RAM},
			{Addr: 0x9fc00, Size: 0x60400, Type: E820Reserved},
			{Addr: 0x100000, Size: 0x3f00000, Type: E820RAM},
		},
	}
	b, err := bp.MarshalBinary()
	require.NoError(t, err)
	require.Len(t, b, 4096)
	le := binary.LittleEndian

	assert.Equal(t, uint64(0xe0000), le.Uint64(b[0x070:]), "acpi_rsdp_addr")
	assert.Equal(t, uint32(0x11), le.Uint32(b[0x0c0:]), "ext_ramdisk_image")
	assert.Equal(t, uint32(0x22), le.Uint32(b[0x0c4:]), "ext_ramdisk_size")
	assert.Equal(t, uint32(0x33), le.Uint32(b[0x0c8:]), "ext_cmd_line_ptr")
	assert.Equal(t, byte(3), b[0x1e8], "e820_entries")
	assert.Zero(t, b[0x1ef], "sentinel must stay 0")

	// The setup header at 0x1f1, with the loader's fields.
	assert.Equal(t, uint16(0xaa55), le.Uint16(b[0x1fe:]), "boot_flag")
	assert.Equal(t, "HdrS", string(b[0x202:0x206]))
	assert.Equal(t, byte(0xff), b[0x210], "type_of_loader")
	assert.Equal(t, uint32(0x20000), le.Uint32(b[0x228:]), "cmd_line_ptr")
	assert.Equal(t, uint32(0x3ff0000), le.Uint32(b[0x218:]), "ramdisk_image")
	assert.Equal(t, uint32(0x8000), le.Uint32(b[0x21c:]), "ramdisk_size")
	assert.Equal(t, uint32(4<<20), le.Uint32(b[0x260:]), "init_size")
	assert.Equal(t, uint32(0x4321), le.Uint32(b[0x268:]), "kernel_info_offset")
	// Nothing after the header's end (0x26c) up to edd_mbr_sig_buffer.
	assert.Equal(t, make([]byte, 0x290-0x26c), b[0x26c:0x290])

	// e820_table at 0x2d0, 20-byte packed entries.
	for i, e := range bp.E820Table {
		off := 0x2d0 + 20*i
		assert.Equal(t, e.Addr, le.Uint64(b[off:]), "entry %d addr", i)
		assert.Equal(t, e.Size, le.Uint64(b[off+8:]), "entry %d size", i)
		assert.Equal(t, uint32(e.Type), le.Uint32(b[off+16:]), "entry %d type", i)
	}

	// Everything else is zero: clear what was checked and compare.
	clear(b[0x070:0x078])
	clear(b[0x0c0:0x0cc])
	b[0x1e8] = 0
	clear(b[0x1f1:0x26c])
	clear(b[0x2d0 : 0x2d0+3*20])
	assert.Equal(t, make([]byte, 4096), b)
}

func TestBootParamsHeaderLength(t *testing.T) {
	// boot.rst: copy 0x202 + byte at 0x201 - 0x1f1 bytes of header; with a
	// 2.12 header (ends at 0x268) the kernel_info_offset slot stays zero
	// even though the image has non-zero bytes there.
	s := defaultSpec()
	s.version = 0x020c
	s.headerEnd = 0x268
	img := s.build()
	binary.LittleEndian.PutUint32(img[0x268:], 0xdeadbeef)
	h, err := ParseSetupHeader(img)
	require.NoError(t, err)
	b, err := (&BootParams{Hdr: *h}).MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, img[0x1f1:0x268], b[0x1f1:0x268])
	assert.Equal(t, make([]byte, 0x290-0x268), b[0x268:0x290])
}

func TestBootParamsFullE820Table(t *testing.T) {
	table := make([]E820Entry, E820MaxEntriesZeroPage)
	for i := range table {
		table[i] = E820Entry{Addr: uint64(i) << 20, Size: 1 << 20, Type: E820RAM}
	}
	b, err := (&BootParams{E820Table: table}).MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, byte(128), b[0x1e8])
	last := 0x2d0 + 127*20
	assert.Equal(t, uint64(127<<20), binary.LittleEndian.Uint64(b[last:]))
	assert.Equal(t, 0xcd0, bpE820TableEnd)
	assert.Equal(t, make([]byte, 0x1000-0xcd0), b[0xcd0:], "nothing after e820_table")

	_, err = (&BootParams{E820Table: append(table, E820Entry{})}).MarshalBinary()
	assert.ErrorContains(t, err, "129 E820 entries")
}

func TestBootParamsConstants(t *testing.T) {
	assert.Equal(t, 0x070, bpACPIRSDPAddr)
	assert.Equal(t, 0x0c0, bpExtRamdiskImage)
	assert.Equal(t, 0x0c4, bpExtRamdiskSize)
	assert.Equal(t, 0x0c8, bpExtCmdLinePtr)
	assert.Equal(t, 0x1e8, bpE820Entries)
	assert.Equal(t, 0x1ef, bpSentinel)
	assert.Equal(t, 0x1f1, bpHdr)
	assert.Equal(t, 0x2d0, bpE820Table)
	assert.Equal(t, 0xde00, HeapEndPtr)
}

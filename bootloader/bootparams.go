package bootloader

import (
	"encoding/binary"
	"fmt"
)

// ZeroPageSize is sizeof(struct boot_params): one 4 KiB page, the "zero
// page" (bootparam.h; boot.rst "64-bit Boot Protocol").
const ZeroPageSize = 4096

// Offsets of the struct boot_params fields govmm writes, from the offset
// comments in arch/x86/include/uapi/asm/bootparam.h and the table in
// Documentation/arch/x86/zero-page.rst. The struct is packed, so these are
// the ABI; Go's struct layout is never relied on.
const (
	bpACPIRSDPAddr    = 0x070 // __u64 acpi_rsdp_addr
	bpExtRamdiskImage = 0x0c0 // __u32 ext_ramdisk_image: ramdisk_image bits 63:32
	bpExtRamdiskSize  = 0x0c4 // __u32 ext_ramdisk_size: ramdisk_size bits 63:32
	bpExtCmdLinePtr   = 0x0c8 // __u32 ext_cmd_line_ptr: cmd_line_ptr bits 63:32
	bpE820Entries     = 0x1e8 // __u8 e820_entries
	bpSentinel        = 0x1ef // __u8 sentinel: must stay 0 (see below)
	bpHdr             = 0x1f1 // struct setup_header hdr
	bpE820Table       = 0x2d0 // struct boot_e820_entry e820_table[128]
	// bpE820TableEnd is 0xcd0, where _pad8 follows the table.
	bpE820TableEnd = bpE820Table + E820MaxEntriesZeroPage*e820EntrySize
)

// Values boot.rst asks a boot loader to write into the header.
const (
	// TypeOfLoaderUndefined: "If your boot loader has an assigned id ...
	// Otherwise, enter 0xFF here" (boot.rst "type_of_loader"). govmm has
	// no assigned id.
	TypeOfLoaderUndefined = 0xFF
	// VidModeNormal is vga=normal, the 80x25 text mode (boot.rst "Special
	// Command Line Options": "normal" means 0xFFFF). vid_mode is "modify
	// (obligatory)"; only the real-mode setup code, which govmm skips,
	// acts on it.
	VidModeNormal = 0xFFFF
	// setupHeapEnd is the end of the real-mode setup stack/heap, as an
	// offset from the start of the real-mode code, for a protocol 2.02+
	// bzImage: 0xe000 in boot.rst "Sample Boot Configuration".
	setupHeapEnd = 0xe000
	// heapEndPtrBias: heap_end_ptr is "the offset (from the beginning of
	// the real-mode code) of the end of the setup stack/heap, minus 0x0200"
	// (boot.rst "heap_end_ptr").
	heapEndPtrBias = 0x200
	// HeapEndPtr is the heap_end_ptr value govmm writes, with CAN_USE_HEAP.
	HeapEndPtr = setupHeapEnd - heapEndPtrBias
)

// BootParams is struct boot_params, the zero page. Only the fields a 64-bit
// boot loader fills are represented; everything else marshals as zero,
// which is what boot.rst asks for ("allocated and initialized to all zero").
//
// In particular the sentinel byte at 0x1ef stays 0: the kernel takes a
// nonzero sentinel as a sign that the loader copied too much of the image
// into boot_params and then clears fields it cannot trust (bootparam.h,
// comment on sentinel; arch/x86/include/asm/bootparam_utils.h).
type BootParams struct {
	// Hdr is the setup header: the image's header, copied verbatim up to
	// its own length, with the loader's fields (type_of_loader,
	// cmd_line_ptr, ramdisk_image, ...) set on top.
	Hdr SetupHeader

	ACPIRSDPAddr    uint64 // physical address of the ACPI RSDP, or 0
	ExtRamdiskImage uint32 // high 32 bits of the initrd address
	ExtRamdiskSize  uint32 // high 32 bits of the initrd size
	ExtCmdLinePtr   uint32 // high 32 bits of the command line address

	// E820Table is the memory map, at most E820MaxEntriesZeroPage entries;
	// e820_entries is set from its length.
	E820Table []E820Entry
}

// MarshalBinary returns the ZeroPageSize bytes of the zero page.
func (bp *BootParams) MarshalBinary() ([]byte, error) {
	if n := len(bp.E820Table); n > E820MaxEntriesZeroPage {
		return nil, fmt.Errorf("bootloader: %d E820 entries, the zero page holds %d", n, E820MaxEntriesZeroPage)
	}
	if n := bp.Hdr.Len(); n > setupHeaderMaxEnd-SetupHeaderOffset {
		// Only reachable with a SetupHeader not made by ParseSetupHeader.
		return nil, fmt.Errorf("bootloader: setup header of %d bytes does not fit in boot_params", n)
	}
	b := make([]byte, ZeroPageSize)
	le := binary.LittleEndian

	le.PutUint64(b[bpACPIRSDPAddr:], bp.ACPIRSDPAddr)
	le.PutUint32(b[bpExtRamdiskImage:], bp.ExtRamdiskImage)
	le.PutUint32(b[bpExtRamdiskSize:], bp.ExtRamdiskSize)
	le.PutUint32(b[bpExtCmdLinePtr:], bp.ExtCmdLinePtr)

	// boot.rst "64-bit Boot Protocol": the header "from offset 0x01f1 of
	// kernel image on should be loaded into struct boot_params", its end
	// being "0x0202 + byte value at offset 0x0201". encode writes exactly
	// that many bytes: the image's raw header plus the loader's fields.
	bp.Hdr.encode(b[bpHdr : bpHdr+bp.Hdr.Len()])

	b[bpE820Entries] = uint8(len(bp.E820Table))
	for i, e := range bp.E820Table {
		off := bpE820Table + i*e820EntrySize
		le.PutUint64(b[off:], e.Addr)
		le.PutUint64(b[off+8:], e.Size)
		le.PutUint32(b[off+16:], uint32(e.Type))
	}
	return b, nil
}

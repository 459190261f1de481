package bootloader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors returned by ParseSetupHeader and Load. They are wrapped with details,
// so test for them with errors.Is.
var (
	// ErrNotBzImage: the file is not a Linux bzImage at all (no boot
	// sector signature, no "HdrS" magic, or an old zImage).
	ErrNotBzImage = errors.New("not a Linux bzImage")
	// ErrELFVmlinux is the common mistake of passing the uncompressed ELF
	// vmlinux from the top of the kernel build tree. It wraps ErrNotBzImage.
	ErrELFVmlinux = fmt.Errorf("%w: the file is an ELF vmlinux; "+
		"govmm boots a bzImage such as arch/x86/boot/bzImage or a distribution's /boot/vmlinuz-*",
		ErrNotBzImage)
	// ErrProtocolTooOld: the kernel speaks a boot protocol older than 2.06.
	ErrProtocolTooOld = errors.New("kernel boot protocol too old")
	// ErrNo64BitEntry: the kernel has no 64-bit entry point (protocol older
	// than 2.12, or XLF_KERNEL_64 clear: a 32-bit kernel).
	ErrNo64BitEntry = errors.New("kernel has no 64-bit entry point")
	// ErrTruncated: the file is shorter than its header says.
	ErrTruncated = errors.New("kernel image truncated")
	// ErrMalformedHeader: a header field holds a value no real kernel has.
	ErrMalformedHeader = errors.New("malformed kernel setup header")
)

// File offsets of the fields of the real-mode kernel header, from boot.rst
// "The Real-Mode Kernel Header" (the table "Offset/Size Proto Name") and
// struct setup_header in arch/x86/include/uapi/asm/bootparam.h. The same
// offsets are used inside struct boot_params, which embeds the header at
// 0x1f1 (see bootparams.go).
const (
	offSetupSects          = 0x1f1 // 1 byte
	offRootFlags           = 0x1f2 // 2 bytes
	offSysSize             = 0x1f4 // 4 bytes (2.04+)
	offRAMSize             = 0x1f8 // 2 bytes, "DO NOT USE"
	offVidMode             = 0x1fa // 2 bytes
	offRootDev             = 0x1fc // 2 bytes
	offBootFlag            = 0x1fe // 2 bytes
	offJump                = 0x200 // 2 bytes
	offHeader              = 0x202 // 4 bytes
	offVersion             = 0x206 // 2 bytes
	offRealmodeSwtch       = 0x208 // 4 bytes
	offStartSysSeg         = 0x20c // 2 bytes
	offKernelVersion       = 0x20e // 2 bytes
	offTypeOfLoader        = 0x210 // 1 byte
	offLoadFlags           = 0x211 // 1 byte
	offSetupMoveSize       = 0x212 // 2 bytes
	offCode32Start         = 0x214 // 4 bytes
	offRamdiskImage        = 0x218 // 4 bytes
	offRamdiskSize         = 0x21c // 4 bytes
	offBootsectKludge      = 0x220 // 4 bytes
	offHeapEndPtr          = 0x224 // 2 bytes (2.01+)
	offExtLoaderVer        = 0x226 // 1 byte (2.02+)
	offExtLoaderType       = 0x227 // 1 byte (2.02+)
	offCmdLinePtr          = 0x228 // 4 bytes (2.02+)
	offInitrdAddrMax       = 0x22c // 4 bytes (2.03+)
	offKernelAlignment     = 0x230 // 4 bytes (2.05+)
	offRelocatableKernel   = 0x234 // 1 byte (2.05+)
	offMinAlignment        = 0x235 // 1 byte (2.10+)
	offXLoadFlags          = 0x236 // 2 bytes (2.12+)
	offCmdlineSize         = 0x238 // 4 bytes (2.06+)
	offHardwareSubarch     = 0x23c // 4 bytes (2.07+)
	offHardwareSubarchData = 0x240 // 8 bytes (2.07+)
	offPayloadOffset       = 0x248 // 4 bytes (2.08+)
	offPayloadLength       = 0x24c // 4 bytes (2.08+)
	offSetupData           = 0x250 // 8 bytes (2.09+)
	offPrefAddress         = 0x258 // 8 bytes (2.10+)
	offInitSize            = 0x260 // 4 bytes (2.10+)
	offHandoverOffset      = 0x264 // 4 bytes (2.11+)
	offKernelInfoOffset    = 0x268 // 4 bytes (2.15+)
)

// Layout of the header as a whole.
const (
	// SetupHeaderOffset is where struct setup_header starts, both in the
	// bzImage file and in struct boot_params (bootparam.h: "hdr; /* 0x1f1 */").
	SetupHeaderOffset = offSetupSects
	// setupHeaderLenBase: boot.rst ("64-bit Boot Protocol") gives the end of
	// the header as 0x0202 + the byte at 0x0201. That byte is the
	// displacement of the short "jmp" at 0x200, which jumps over the header.
	setupHeaderLenBase  = offHeader
	offJumpDisplacement = offJump + 1
	// setupHeaderMaxEnd is the end of the hole for the header in struct
	// boot_params (_pad7 runs up to edd_mbr_sig_buffer at 0x290). boot.rst
	// ("The kernel_info") calls the header "permanently limited" by it.
	setupHeaderMaxEnd = 0x290
	// setupHeaderMinEnd is the end of init_size, the last field govmm
	// reads; every 2.10+ header reaches at least that far.
	setupHeaderMinEnd = offInitSize + 4
)

// Magic numbers and limits from boot.rst.
const (
	// sectorSize: "a sector refers to 512 bytes" (boot.rst, "The Real-Mode
	// Kernel Header").
	sectorSize = 512
	// defaultSetupSects: "If this field is 0, the real value is 4."
	defaultSetupSects = 4
	// BootFlagMagic is the boot sector signature 0xAA55 at 0x1fe.
	BootFlagMagic = 0xAA55
	// HeaderMagic is "HdrS" at 0x202, read as a little-endian uint32.
	HeaderMagic = 0x53726448
	// sysSizeUnit: syssize counts 16-byte paragraphs.
	sysSizeUnit = 16

	// Protocol versions, encoded as boot.rst does: 2.06 is 0x0206.
	minProtocol       = 0x0206 // 2.06 adds cmdline_size; older kernels cap the command line at 255
	protocolXLoadFlag = 0x020c // 2.12: xloadflags, hence XLF_KERNEL_64
)

// elfMagic starts every ELF file (ELF spec, e_ident[EI_MAG0..EI_MAG3]).
var elfMagic = []byte{0x7f, 'E', 'L', 'F'}

// Bits of loadflags (boot.rst "loadflags"; bootparam.h).
const (
	LoadedHigh   = 1 << 0 // LOADED_HIGH: protected-mode code goes to 0x100000 (a bzImage)
	KASLRFlag    = 1 << 1 // KASLR_FLAG: kernel internal
	QuietFlag    = 1 << 5 // QUIET_FLAG: suppress early messages
	KeepSegments = 1 << 6 // KEEP_SEGMENTS: obsolete
	CanUseHeap   = 1 << 7 // CAN_USE_HEAP: heap_end_ptr is valid
)

// Bits of xloadflags (boot.rst "xloadflags"; bootparam.h).
const (
	// XLFKernel64: "this kernel has the legacy 64-bit entry point at 0x200".
	XLFKernel64 = 1 << 0
	// XLFCanBeLoadedAbove4G: "kernel/boot_params/cmdline/ramdisk can be
	// above 4G". govmm keeps all of them below 4 GiB regardless.
	XLFCanBeLoadedAbove4G = 1 << 1
	XLFEFIHandover32      = 1 << 2
	XLFEFIHandover64      = 1 << 3
	XLFEFIKexec           = 1 << 4
	XLF5Level             = 1 << 5
	XLF5LevelEnabled      = 1 << 6
)

// SetupHeader is struct setup_header (bootparam.h), the header of the
// real-mode part of a bzImage, as parsed from the file. Field names follow
// the C names; see boot.rst "Details of Header Fields" for each one.
//
// Fields that lie beyond the header's own length (older protocols) are 0.
type SetupHeader struct {
	SetupSects          uint8 // as stored; 0 means 4 (use SetupSize)
	RootFlags           uint16
	SysSize             uint32 // protected-mode size in 16-byte paragraphs
	RAMSize             uint16
	VidMode             uint16
	RootDev             uint16
	BootFlag            uint16
	Jump                uint16
	Header              uint32
	Version             uint16
	RealmodeSwtch       uint32
	StartSysSeg         uint16
	KernelVersion       uint16
	TypeOfLoader        uint8
	LoadFlags           uint8
	SetupMoveSize       uint16
	Code32Start         uint32
	RamdiskImage        uint32
	RamdiskSize         uint32
	BootsectKludge      uint32
	HeapEndPtr          uint16
	ExtLoaderVer        uint8
	ExtLoaderType       uint8
	CmdLinePtr          uint32
	InitrdAddrMax       uint32
	KernelAlignment     uint32
	RelocatableKernel   uint8
	MinAlignment        uint8
	XLoadFlags          uint16
	CmdlineSize         uint32
	HardwareSubarch     uint32
	HardwareSubarchData uint64
	PayloadOffset       uint32
	PayloadLength       uint32
	SetupData           uint64
	PrefAddress         uint64
	InitSize            uint32
	HandoverOffset      uint32
	KernelInfoOffset    uint32

	// raw is the header exactly as in the file, from 0x1f1 up to its end
	// (0x202 + byte at 0x201). Boot loaders copy it verbatim into the zero
	// page so fields govmm does not know about keep the kernel's values.
	raw []byte
}

// Len returns the length of the header in bytes, counted from 0x1f1.
func (h *SetupHeader) Len() int { return len(h.raw) }

// SetupSize is the size of the real-mode part of the file (boot sector plus
// setup code), which the protected-mode kernel follows: (setup_sects+1)*512
// with 0 meaning 4 (boot.rst "Loading The Rest of The Kernel").
func (h *SetupHeader) SetupSize() uint64 {
	sects := uint64(h.SetupSects)
	if sects == 0 {
		sects = defaultSetupSects
	}
	return (sects + 1) * sectorSize
}

// ProtectedModeSize is the size of the protected-mode kernel: syssize
// paragraphs of 16 bytes (boot.rst "syssize").
func (h *SetupHeader) ProtectedModeSize() uint64 {
	return uint64(h.SysSize) * sysSizeUnit
}

// Relocatable reports whether the protected-mode kernel may be loaded at any
// address that is a multiple of kernel_alignment (boot.rst
// "relocatable_kernel").
func (h *SetupHeader) Relocatable() bool { return h.RelocatableKernel != 0 }

// ProtocolString formats the boot protocol version as boot.rst does: 0x020f
// is "2.15".
func (h *SetupHeader) ProtocolString() string { return protocolString(h.Version) }

func protocolString(v uint16) string { return fmt.Sprintf("%d.%02d", v>>8, v&0xff) }

// ParseSetupHeader parses and validates the setup header of a bzImage. It
// checks everything govmm needs to boot the kernel through the 64-bit boot
// protocol: the signatures, protocol 2.12 or later with XLF_KERNEL_64, a
// bzImage (LOADED_HIGH), sane sizes, and that the file really holds the setup
// sectors and the syssize*16 bytes of protected-mode code it announces.
//
// kernel is untrusted; ParseSetupHeader never panics and does not keep a
// reference to it.
func ParseSetupHeader(kernel []byte) (*SetupHeader, error) {
	if bytes.HasPrefix(kernel, elfMagic) {
		return nil, ErrELFVmlinux
	}
	if len(kernel) < offVersion+2 {
		return nil, fmt.Errorf("%w: the file is only %d bytes, too short to hold a setup header "+
			"(the \"HdrS\" magic is at offset %#x)", ErrNotBzImage, len(kernel), offHeader)
	}
	le := binary.LittleEndian
	if flag := le.Uint16(kernel[offBootFlag:]); flag != BootFlagMagic {
		return nil, fmt.Errorf("%w: boot_flag at %#x is %#04x, want %#04x",
			ErrNotBzImage, offBootFlag, flag, BootFlagMagic)
	}
	if magic := le.Uint32(kernel[offHeader:]); magic != HeaderMagic {
		return nil, fmt.Errorf("%w: no \"HdrS\" magic at offset %#x (found %q)",
			ErrNotBzImage, offHeader, kernel[offHeader:offHeader+4])
	}

	h := &SetupHeader{SetupSects: kernel[offSetupSects], Version: le.Uint16(kernel[offVersion:])}
	if h.Version < minProtocol {
		return nil, fmt.Errorf("%w: the kernel speaks boot protocol %s, govmm needs %s or later",
			ErrProtocolTooOld, protocolString(h.Version), protocolString(minProtocol))
	}
	// The setup sectors (at least 5*512 bytes, more than the largest
	// possible header) must be in the file before any other field is read.
	if setup := h.SetupSize(); uint64(len(kernel)) < setup {
		return nil, fmt.Errorf("%w: the file is %d bytes but its boot sector and %d setup sectors take %d",
			ErrTruncated, len(kernel), setup/sectorSize-1, setup)
	}
	h.LoadFlags = kernel[offLoadFlags]
	if h.LoadFlags&LoadedHigh == 0 {
		return nil, fmt.Errorf("%w: LOADED_HIGH is clear in loadflags, so this is an old zImage "+
			"that must be loaded at 0x10000", ErrNotBzImage)
	}
	if h.Version < protocolXLoadFlag {
		return nil, fmt.Errorf("%w: boot protocol %s predates xloadflags (%s), which announces it",
			ErrNo64BitEntry, protocolString(h.Version), protocolString(protocolXLoadFlag))
	}
	h.XLoadFlags = le.Uint16(kernel[offXLoadFlags:])
	if h.XLoadFlags&XLFKernel64 == 0 {
		return nil, fmt.Errorf("%w: XLF_KERNEL_64 is clear in xloadflags (%#x); is it a 32-bit kernel?",
			ErrNo64BitEntry, h.XLoadFlags)
	}

	end := setupHeaderLenBase + int(kernel[offJumpDisplacement])
	if end < setupHeaderMinEnd || end > setupHeaderMaxEnd {
		return nil, fmt.Errorf("%w: header ends at %#x (0x202 + byte at 0x201), outside [%#x, %#x]",
			ErrMalformedHeader, end, setupHeaderMinEnd, setupHeaderMaxEnd)
	}
	h.raw = bytes.Clone(kernel[SetupHeaderOffset:end])
	h.decode(h.raw)

	if h.SysSize == 0 {
		return nil, fmt.Errorf("%w: syssize is 0, there is no protected-mode kernel", ErrMalformedHeader)
	}
	if want := h.SetupSize() + h.ProtectedModeSize(); uint64(len(kernel)) < want {
		return nil, fmt.Errorf("%w: the file is %d bytes but its header announces %d "+
			"(%d setup bytes + syssize %d * 16)", ErrTruncated, len(kernel), want,
			h.SetupSize(), h.SysSize)
	}
	if h.InitSize == 0 {
		return nil, fmt.Errorf("%w: init_size is 0", ErrMalformedHeader)
	}
	if h.Relocatable() && !isPowerOfTwo(uint64(h.KernelAlignment)) {
		// The 64-bit entry code rounds its load address up with
		// kernel_alignment-1 as a mask (compressed/head_64.S, startup_64).
		return nil, fmt.Errorf("%w: kernel_alignment %#x is not a power of two",
			ErrMalformedHeader, h.KernelAlignment)
	}
	return h, nil
}

// decode fills the fields from the header bytes b (b[0] is offset 0x1f1).
// Fields beyond len(b) stay 0.
func (h *SetupHeader) decode(b []byte) {
	r := headerIO{b: b}
	h.SetupSects = r.u8(offSetupSects)
	h.RootFlags = r.u16(offRootFlags)
	h.SysSize = r.u32(offSysSize)
	h.RAMSize = r.u16(offRAMSize)
	h.VidMode = r.u16(offVidMode)
	h.RootDev = r.u16(offRootDev)
	h.BootFlag = r.u16(offBootFlag)
	h.Jump = r.u16(offJump)
	h.Header = r.u32(offHeader)
	h.Version = r.u16(offVersion)
	h.RealmodeSwtch = r.u32(offRealmodeSwtch)
	h.StartSysSeg = r.u16(offStartSysSeg)
	h.KernelVersion = r.u16(offKernelVersion)
	h.TypeOfLoader = r.u8(offTypeOfLoader)
	h.LoadFlags = r.u8(offLoadFlags)
	h.SetupMoveSize = r.u16(offSetupMoveSize)
	h.Code32Start = r.u32(offCode32Start)
	h.RamdiskImage = r.u32(offRamdiskImage)
	h.RamdiskSize = r.u32(offRamdiskSize)
	h.BootsectKludge = r.u32(offBootsectKludge)
	h.HeapEndPtr = r.u16(offHeapEndPtr)
	h.ExtLoaderVer = r.u8(offExtLoaderVer)
	h.ExtLoaderType = r.u8(offExtLoaderType)
	h.CmdLinePtr = r.u32(offCmdLinePtr)
	h.InitrdAddrMax = r.u32(offInitrdAddrMax)
	h.KernelAlignment = r.u32(offKernelAlignment)
	h.RelocatableKernel = r.u8(offRelocatableKernel)
	h.MinAlignment = r.u8(offMinAlignment)
	h.XLoadFlags = r.u16(offXLoadFlags)
	h.CmdlineSize = r.u32(offCmdlineSize)
	h.HardwareSubarch = r.u32(offHardwareSubarch)
	h.HardwareSubarchData = r.u64(offHardwareSubarchData)
	h.PayloadOffset = r.u32(offPayloadOffset)
	h.PayloadLength = r.u32(offPayloadLength)
	h.SetupData = r.u64(offSetupData)
	h.PrefAddress = r.u64(offPrefAddress)
	h.InitSize = r.u32(offInitSize)
	h.HandoverOffset = r.u32(offHandoverOffset)
	h.KernelInfoOffset = r.u32(offKernelInfoOffset)
}

// encode writes the fields into b (b[0] is offset 0x1f1), starting from the
// raw header bytes of the image. Fields that do not fit entirely in b are
// not written: a loader must only set fields the kernel's protocol version
// has (boot.rst: "make sure only to set fields supported by the protocol
// version in use").
func (h *SetupHeader) encode(b []byte) {
	copy(b, h.raw)
	w := headerIO{b: b}
	w.put8(offSetupSects, h.SetupSects)
	w.put16(offRootFlags, h.RootFlags)
	w.put32(offSysSize, h.SysSize)
	w.put16(offRAMSize, h.RAMSize)
	w.put16(offVidMode, h.VidMode)
	w.put16(offRootDev, h.RootDev)
	w.put16(offBootFlag, h.BootFlag)
	w.put16(offJump, h.Jump)
	w.put32(offHeader, h.Header)
	w.put16(offVersion, h.Version)
	w.put32(offRealmodeSwtch, h.RealmodeSwtch)
	w.put16(offStartSysSeg, h.StartSysSeg)
	w.put16(offKernelVersion, h.KernelVersion)
	w.put8(offTypeOfLoader, h.TypeOfLoader)
	w.put8(offLoadFlags, h.LoadFlags)
	w.put16(offSetupMoveSize, h.SetupMoveSize)
	w.put32(offCode32Start, h.Code32Start)
	w.put32(offRamdiskImage, h.RamdiskImage)
	w.put32(offRamdiskSize, h.RamdiskSize)
	w.put32(offBootsectKludge, h.BootsectKludge)
	w.put16(offHeapEndPtr, h.HeapEndPtr)
	w.put8(offExtLoaderVer, h.ExtLoaderVer)
	w.put8(offExtLoaderType, h.ExtLoaderType)
	w.put32(offCmdLinePtr, h.CmdLinePtr)
	w.put32(offInitrdAddrMax, h.InitrdAddrMax)
	w.put32(offKernelAlignment, h.KernelAlignment)
	w.put8(offRelocatableKernel, h.RelocatableKernel)
	w.put8(offMinAlignment, h.MinAlignment)
	w.put16(offXLoadFlags, h.XLoadFlags)
	w.put32(offCmdlineSize, h.CmdlineSize)
	w.put32(offHardwareSubarch, h.HardwareSubarch)
	w.put64(offHardwareSubarchData, h.HardwareSubarchData)
	w.put32(offPayloadOffset, h.PayloadOffset)
	w.put32(offPayloadLength, h.PayloadLength)
	w.put64(offSetupData, h.SetupData)
	w.put64(offPrefAddress, h.PrefAddress)
	w.put32(offInitSize, h.InitSize)
	w.put32(offHandoverOffset, h.HandoverOffset)
	w.put32(offKernelInfoOffset, h.KernelInfoOffset)
}

// headerIO reads and writes little-endian fields of the setup header by their
// file offset, in a buffer that starts at 0x1f1. Accesses that do not fit read
// 0 and write nothing, so no header length can make them panic.
type headerIO struct{ b []byte }

func (x headerIO) field(off, n int) []byte {
	i := off - SetupHeaderOffset
	if i < 0 || i+n > len(x.b) {
		return nil
	}
	return x.b[i : i+n]
}

func (x headerIO) u8(off int) uint8 {
	if f := x.field(off, 1); f != nil {
		return f[0]
	}
	return 0
}

func (x headerIO) u16(off int) uint16 {
	if f := x.field(off, 2); f != nil {
		return binary.LittleEndian.Uint16(f)
	}
	return 0
}

func (x headerIO) u32(off int) uint32 {
	if f := x.field(off, 4); f != nil {
		return binary.LittleEndian.Uint32(f)
	}
	return 0
}

func (x headerIO) u64(off int) uint64 {
	if f := x.field(off, 8); f != nil {
		return binary.LittleEndian.Uint64(f)
	}
	return 0
}

func (x headerIO) put8(off int, v uint8) {
	if f := x.field(off, 1); f != nil {
		f[0] = v
	}
}

func (x headerIO) put16(off int, v uint16) {
	if f := x.field(off, 2); f != nil {
		binary.LittleEndian.PutUint16(f, v)
	}
}

func (x headerIO) put32(off int, v uint32) {
	if f := x.field(off, 4); f != nil {
		binary.LittleEndian.PutUint32(f, v)
	}
}

func (x headerIO) put64(off int, v uint64) {
	if f := x.field(off, 8); f != nil {
		binary.LittleEndian.PutUint64(f, v)
	}
}

func isPowerOfTwo(x uint64) bool { return x != 0 && x&(x-1) == 0 }

package bootloader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/govmm/govmm/machine/memory"
)

const (
	// KernelLoadAddr is where the protected-mode kernel is copied: 1 MiB,
	// the load address of a bzImage ("0x100000 for bzImage kernels",
	// boot.rst "Loading The Rest of The Kernel"). QEMU's direct kernel
	// boot does the same.
	//
	// This works for any relocatable 64-bit kernel however big it
	// decompresses: what sits at 1 MiB is only the decompressor plus the
	// compressed kernel. Its 64-bit entry (arch/x86/boot/compressed/
	// head_64.S, startup_64) picks the address the kernel will run at,
	// the load address rounded up to kernel_alignment but at least
	// LOAD_PHYSICAL_ADDR (= pref_address, 16 MiB by default), copies itself
	// to the end of an init_size-long buffer there, and decompresses the
	// kernel to the buffer's start. With KASLR it may choose another
	// place in e820 RAM, avoiding the initrd, zero page and command line.
	KernelLoadAddr = memory.HighMemStart
	// KernelEntry64Offset: the kernel is started "by jumping to the 64-bit
	// kernel entry point, which is the start address of loaded 64-bit
	// kernel plus 0x200" (boot.rst "64-bit Boot Protocol").
	KernelEntry64Offset = 0x200
)

// Errors returned by Load (wrapped; test with errors.Is), besides those of
// ParseSetupHeader and E820Map.
var (
	// ErrRAMTooSmall: the kernel needs more memory than the guest's low
	// RAM has before it can even read the memory map.
	ErrRAMTooSmall = errors.New("guest RAM too small for this kernel")
	// ErrInitrdTooBig: no room for the initrd between the kernel and the
	// highest address the kernel accepts for it.
	ErrInitrdTooBig = errors.New("initrd too big for guest RAM")
	// ErrCmdlineTooLong: the command line exceeds the kernel's
	// cmdline_size or govmm's buffer.
	ErrCmdlineTooLong = errors.New("kernel command line too long")
	// ErrBadCmdline: the command line contains a NUL byte, which would
	// silently cut it short.
	ErrBadCmdline = errors.New("invalid kernel command line")
)

// LoadOptions are the inputs of Load besides the kernel, initrd and command
// line.
type LoadOptions struct {
	// RSDPAddr is the guest-physical address of the ACPI RSDP, written to
	// boot_params.acpi_rsdp_addr so the kernel need not scan for it; 0 if
	// there are no ACPI tables (or to let the kernel scan 0xE0000-0xFFFFF).
	RSDPAddr uint64
	// Reserved are ranges of the MMIO hole to mark reserved in the E820
	// map, such as the PCIe ECAM window.
	Reserved []memory.Range
}

// BootInfo describes what Load placed where, and how the vCPU must start.
type BootInfo struct {
	// CPU is the boot vCPU's entry state.
	CPU CPUState
	// Header is the kernel's parsed setup header.
	Header *SetupHeader

	// KernelAddr and KernelSize locate the protected-mode kernel as
	// copied from the bzImage.
	KernelAddr, KernelSize uint64
	// RuntimeAddr is where the kernel decompresses itself (without KASLR),
	// and KernelEnd is RuntimeAddr + init_size: [KernelAddr, KernelEnd) is
	// the memory the kernel uses before it reads the E820 map, kept free
	// of everything else.
	RuntimeAddr, KernelEnd uint64
	// InitrdAddr and InitrdSize locate the initrd; both 0 if none.
	InitrdAddr, InitrdSize uint64
	// CmdlineAddr is the NUL-terminated command line, CmdlineLen bytes
	// without the NUL.
	CmdlineAddr, CmdlineLen uint64
	// ZeroPageAddr is struct boot_params.
	ZeroPageAddr uint64
	// E820 is the memory map given to the kernel.
	E820 []E820Entry
}

// Load loads a bzImage kernel, an optional initrd (nil or empty for none) and
// a command line into guest memory, fills the zero page and the long-mode
// structures, and returns the vCPU state to start the kernel at its 64-bit
// entry point.
//
// kernel and initrd are the file contents, read by the caller; Load copies
// them into guest RAM and keeps no reference to them. Both are untrusted:
// every value taken from the kernel header is checked before use. Everything
// is validated before the first byte is written, so on error guest memory is
// unchanged.
//
// The guest memory must follow memory.RAMLayout: one range from 0 to the low
// RAM end (at most the MMIO hole at 3 GiB) and possibly one from 4 GiB.
// The kernel, initrd, zero page and command line all go below the hole.
func Load(mem *memory.Guest, kernel, initrd []byte, cmdline string, opts LoadOptions) (*BootInfo, error) {
	h, err := ParseSetupHeader(kernel)
	if err != nil {
		return nil, err
	}

	ram := make([]memory.Range, len(mem.Regions))
	for i, r := range mem.Regions {
		ram[i] = r.Range
	}
	e820, err := E820Map(ram, opts.Reserved...)
	if err != nil {
		return nil, err
	}
	lowEnd := ram[0].End() // E820Map checked that ram[0] starts at 0

	info := &BootInfo{
		Header:       h,
		KernelAddr:   KernelLoadAddr,
		KernelSize:   h.ProtectedModeSize(),
		CmdlineAddr:  CmdlineAddr,
		CmdlineLen:   uint64(len(cmdline)),
		ZeroPageAddr: ZeroPageAddr,
		E820:         e820,
	}
	if info.RuntimeAddr, info.KernelEnd, err = kernelFootprint(h, lowEnd); err != nil {
		return nil, err
	}
	if err := checkCmdline(h, cmdline); err != nil {
		return nil, err
	}
	if len(initrd) > 0 {
		info.InitrdSize = uint64(len(initrd))
		if info.InitrdAddr, err = placeInitrd(h, info.InitrdSize, info.KernelEnd, lowEnd); err != nil {
			return nil, err
		}
	}

	// The zero page: the image's setup header with the loader's fields
	// (boot.rst "Details of Header Fields", those of type "write" and
	// "modify (obligatory)"), plus the zero-page fields of zero-page.rst.
	hdr := *h
	hdr.TypeOfLoader = TypeOfLoaderUndefined
	hdr.VidMode = VidModeNormal
	hdr.LoadFlags |= CanUseHeap
	hdr.HeapEndPtr = HeapEndPtr
	hdr.CmdLinePtr = uint32(CmdlineAddr)
	hdr.RamdiskImage = uint32(info.InitrdAddr)
	hdr.RamdiskSize = uint32(info.InitrdSize)
	bp := BootParams{
		Hdr:             hdr,
		ACPIRSDPAddr:    opts.RSDPAddr,
		ExtRamdiskImage: uint32(info.InitrdAddr >> 32),
		ExtRamdiskSize:  uint32(info.InitrdSize >> 32),
		ExtCmdLinePtr:   uint32(uint64(CmdlineAddr) >> 32),
		E820Table:       e820,
	}
	zeroPage, err := bp.MarshalBinary()
	if err != nil {
		return nil, err
	}

	// All checks passed: write guest memory.
	setup := h.SetupSize()
	payload := kernel[setup : setup+info.KernelSize] // ParseSetupHeader checked the length
	writes := []struct {
		what string
		data []byte
		addr uint64
	}{
		{"kernel", payload, KernelLoadAddr},
		// boot.rst "The Kernel Command Line": a null-terminated string.
		{"command line", append([]byte(cmdline), 0), CmdlineAddr},
		{"initrd", initrd, info.InitrdAddr},
		{"zero page", zeroPage, ZeroPageAddr},
	}
	for _, w := range writes {
		if len(w.data) == 0 {
			continue
		}
		if _, err := mem.WriteAt(w.data, int64(w.addr)); err != nil {
			return nil, fmt.Errorf("bootloader: writing the %s at %#x: %w", w.what, w.addr, err)
		}
	}
	cpu, err := SetupLongMode(mem)
	if err != nil {
		return nil, err
	}
	cpu.RIP = KernelLoadAddr + KernelEntry64Offset
	cpu.RSI = ZeroPageAddr // boot.rst: "%rsi must hold the base address of the struct boot_params"
	info.CPU = *cpu
	return info, nil
}

// kernelFootprint returns where the kernel will decompress itself and the
// end of the memory it needs from KernelLoadAddr on before it reads the E820
// map, checking that this fits below lowEnd.
//
// boot.rst ("init_size") defines the runtime start as
// align_up(load_address, kernel_alignment) for a relocatable kernel and
// pref_address otherwise; the 64-bit entry code further raises it to at
// least LOAD_PHYSICAL_ADDR, which header.S exports as pref_address
// (compressed/head_64.S, startup_64: "cmpq $LOAD_PHYSICAL_ADDR, %rbp").
func kernelFootprint(h *SetupHeader, lowEnd uint64) (runtime, end uint64, err error) {
	runtime = h.PrefAddress
	if h.Relocatable() {
		align := uint64(h.KernelAlignment) // a power of two, <= 2 GiB
		runtime = max((KernelLoadAddr+align-1)&^(align-1), h.PrefAddress)
	} else if runtime < KernelLoadAddr {
		return 0, 0, fmt.Errorf("%w: the kernel is not relocatable and wants to run at %#x, below %#x",
			ErrMalformedHeader, runtime, KernelLoadAddr)
	}
	tooSmall := func(need string) error {
		return fmt.Errorf("%w: it decompresses at %#x and needs init_size %d MiB there, %s, "+
			"but low RAM ends at %#x (%d MiB); give the guest more memory",
			ErrRAMTooSmall, runtime, mibCeil(uint64(h.InitSize)), need, lowEnd, lowEnd>>20)
	}
	if runtime > lowEnd || uint64(h.InitSize) > lowEnd-runtime {
		return 0, 0, tooSmall(fmt.Sprintf("up to %#x", runtime+uint64(h.InitSize)))
	}
	end = runtime + uint64(h.InitSize)
	// The compressed image itself must fit too (it always lies inside the
	// init_size buffer for real kernels, but the header is untrusted).
	end = max(end, KernelLoadAddr+h.ProtectedModeSize())
	if end > lowEnd {
		return 0, 0, tooSmall(fmt.Sprintf("and its image reaches %#x", end))
	}
	return runtime, end, nil
}

// checkCmdline checks the command line against the kernel's limit and
// govmm's buffer.
func checkCmdline(h *SetupHeader, cmdline string) error {
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		return fmt.Errorf("%w: NUL byte at offset %d", ErrBadCmdline, i)
	}
	// cmdline_size is "the maximum size of the command line without the
	// terminating zero" (boot.rst "cmdline_size").
	if uint64(len(cmdline)) > uint64(h.CmdlineSize) {
		return fmt.Errorf("%w: %d bytes, this kernel accepts at most %d (cmdline_size)",
			ErrCmdlineTooLong, len(cmdline), h.CmdlineSize)
	}
	if len(cmdline)+1 > CmdlineMaxSize {
		return fmt.Errorf("%w: %d bytes, govmm's command line buffer holds %d including the NUL",
			ErrCmdlineTooLong, len(cmdline), CmdlineMaxSize)
	}
	return nil
}

// placeInitrd returns the address of an initrd of size bytes: page aligned,
// as high as possible, ending at or below both initrd_addr_max+1 and the end
// of low RAM, and starting at or above kernelEnd. Placing it high, as QEMU
// and GRUB do, keeps it clear of the kernel's decompression buffer and
// early allocations.
func placeInitrd(h *SetupHeader, size, kernelEnd, lowEnd uint64) (uint64, error) {
	// initrd_addr_max is "the address of the highest safe byte" (boot.rst
	// "initrd_addr_max"), so the initrd may end just after it.
	top := min(uint64(h.InitrdAddrMax)+1, lowEnd)
	if size <= top {
		addr := (top - size) &^ (memory.PageSize - 1)
		if addr >= kernelEnd {
			return addr, nil
		}
	}
	var room uint64
	if top > kernelEnd {
		room = top - kernelEnd
	}
	return 0, fmt.Errorf("initrd (%d MiB) does not fit below %#x (min of initrd_addr_max+1 and the "+
		"%d MiB of low RAM): the kernel uses memory up to %#x, leaving %d MiB: %w",
		mibCeil(size), top, lowEnd>>20, kernelEnd, room>>20, ErrInitrdTooBig)
}

// mibCeil returns n bytes in MiB, rounded up.
func mibCeil(n uint64) uint64 { return n>>20 + min(n&(1<<20-1), 1) }

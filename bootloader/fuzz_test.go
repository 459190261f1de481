package bootloader

import (
	"sync"
	"testing"

	"github.com/govmm/govmm/machine/memory"
)

// fuzzRAMSize is the guest RAM of FuzzLoad, kept small because every
// execution allocates it afresh.
const fuzzRAMSize = 4 << 20

// fuzzSeeds are valid and almost-valid images the fuzzer starts from.
func fuzzSeeds() [][]byte {
	// Small enough to load into fuzzRAMSize: decompresses at 2 MiB (1 MiB
	// rounded up to kernel_alignment) and needs 1 MiB there.
	small := defaultSpec()
	small.setupSects = 4
	small.payloadLen = 256
	small.initSize = 1 << 20
	small.prefAddress = 1 << 20
	old := small
	old.version = 0x020c
	old.headerEnd = 0x268
	nonReloc := small
	nonReloc.relocatable = 0
	valid := small.build()
	return [][]byte{
		valid,
		old.build(),
		nonReloc.build(),
		valid[:len(valid)-1],
		valid[:0x300],
		{0x7f, 'E', 'L', 'F', 2, 1, 1, 0},
		nil,
	}
}

// parseFuzzMaxLen is the longest file FuzzParseSetupHeader builds: more than
// the largest setup code (255 + 1 sectors) plus some protected-mode bytes.
const parseFuzzMaxLen = 256*512 + 64<<10

// FuzzParseSetupHeader: no input may panic, and whatever the parser accepts
// must satisfy what Load relies on.
//
// The parser reads only the first four bytes (the ELF check), the header
// bytes 0x1f1..0x290, and the file's length. So the fuzzer controls exactly
// those: a prefix, the header and a length, over a fixed filler. This covers
// every input the parser can tell apart while keeping fuzz inputs small
// (the fuzzer minimizes each new input, which for whole multi-kilobyte
// files would use up the fuzzing time).
func FuzzParseSetupHeader(f *testing.F) {
	for _, s := range fuzzSeeds() {
		hdr := s[min(len(s), SetupHeaderOffset):min(len(s), setupHeaderMaxEnd)]
		f.Add(s[:min(len(s), 8)], hdr, uint32(len(s)))
	}
	bufs := sync.Pool{New: func() any {
		b := make([]byte, parseFuzzMaxLen)
		for i := range b {
			b[i] = byte(i * 31)
		}
		return b
	}}
	f.Fuzz(func(t *testing.T, prefix, header []byte, length uint32) {
		data := bufs.Get().([]byte)
		defer bufs.Put(data)
		clear(data[:setupHeaderMaxEnd])
		copy(data[:SetupHeaderOffset], prefix)
		copy(data[SetupHeaderOffset:setupHeaderMaxEnd], header)
		data = data[:min(int(length), len(data))]

		h, err := ParseSetupHeader(data)
		if err != nil {
			if h != nil {
				t.Fatalf("header %+v returned with error %v", h, err)
			}
			return
		}
		if h.Version < 0x020c || h.XLoadFlags&XLFKernel64 == 0 || h.LoadFlags&LoadedHigh == 0 {
			t.Fatalf("accepted a kernel without a 64-bit entry: %+v", h)
		}
		if end := h.SetupSize() + h.ProtectedModeSize(); end > uint64(len(data)) {
			t.Fatalf("accepted %d bytes announcing %d", len(data), end)
		}
		if h.Len() < setupHeaderMinEnd-SetupHeaderOffset || h.Len() > setupHeaderMaxEnd-SetupHeaderOffset {
			t.Fatalf("header length %d", h.Len())
		}
		if _, err := (&BootParams{Hdr: *h}).MarshalBinary(); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}

// FuzzParseSetupHeaderRaw feeds whole files to the parser, for the
// cases the structured target cannot build (files shorter than 0x290 bytes
// with any content).
func FuzzParseSetupHeaderRaw(f *testing.F) {
	f.Add([]byte{0x7f, 'E', 'L', 'F'})
	f.Add(fuzzSeeds()[0][:0x210])
	f.Fuzz(func(t *testing.T, data []byte) {
		if h, err := ParseSetupHeader(data); (h == nil) == (err == nil) {
			t.Fatalf("header %v, error %v", h, err)
		}
	})
}

// fuzzImageSize bounds the kernel images FuzzLoad builds.
const fuzzImageSize = 8 << 10

// FuzzLoad runs the whole loader against a small guest on kernels whose setup
// header (the bytes 0x1f1..0x290) and file length are fuzzed, with fuzzed
// initrd sizes and command lines: it must either fail cleanly or produce a
// non-overlapping layout inside RAM.
//
// Fuzzing the header rather than the whole file keeps inputs ~160 bytes
// long; the fuzzer minimizes every new input it finds, which for a
// multi-kilobyte kernel would use up the whole fuzzing time.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds() {
		if len(s) >= setupHeaderMaxEnd && len(s) <= fuzzImageSize {
			f.Add(s[SetupHeaderOffset:setupHeaderMaxEnd], uint16(len(s)), uint32(5000), "console=ttyS0")
		}
	}
	const ramSize = fuzzRAMSize
	// Guest RAM and the initrd are reused between executions: allocating
	// (and zeroing) megabytes each time would cost far more than Load
	// itself. Load does not depend on what the RAM held before, and it only
	// reads the initrd.
	ramPool := sync.Pool{New: func() any { return make([]byte, ramSize) }}
	initrdBuf := make([]byte, ramSize+1)
	f.Fuzz(func(t *testing.T, header []byte, length uint16, initrdSize uint32, cmdline string) {
		kernel := make([]byte, fuzzImageSize)
		for i := range kernel {
			kernel[i] = byte(i)
		}
		copy(kernel[SetupHeaderOffset:setupHeaderMaxEnd], header)
		kernel = kernel[:min(int(length), len(kernel))]

		ram := ramPool.Get().([]byte)
		defer ramPool.Put(ram)
		mem := memory.NewFromBytes(memory.Region{
			Range: memory.Range{Start: 0, Size: ramSize},
			Host:  ram,
		})
		initrd := initrdBuf[:min(initrdSize, ramSize+1)]
		info, err := Load(mem, kernel, initrd, cmdline, LoadOptions{})
		if err != nil {
			return
		}
		if info.CPU.RIP != KernelLoadAddr+KernelEntry64Offset || info.CPU.RSI != ZeroPageAddr {
			t.Fatalf("entry state %+v", info.CPU)
		}
		if info.KernelEnd > ramSize || info.KernelEnd < KernelLoadAddr+info.KernelSize {
			t.Fatalf("kernel [%#x, %#x) of %d bytes outside RAM", KernelLoadAddr, info.KernelEnd, info.KernelSize)
		}
		if len(initrd) > 0 {
			end := info.InitrdAddr + info.InitrdSize
			if info.InitrdAddr < info.KernelEnd || end > ramSize || end > uint64(info.Header.InitrdAddrMax)+1 ||
				info.InitrdAddr%memory.PageSize != 0 {
				t.Fatalf("initrd [%#x, %#x) misplaced, kernel ends at %#x", info.InitrdAddr, end, info.KernelEnd)
			}
		}
		if uint64(len(cmdline)) > uint64(info.Header.CmdlineSize) || len(cmdline) >= CmdlineMaxSize {
			t.Fatalf("accepted a %d-byte command line", len(cmdline))
		}
	})
}

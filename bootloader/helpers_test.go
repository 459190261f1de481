package bootloader

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/machine/memory"
)

// imageSpec describes a synthetic bzImage: a real-mode part whose setup
// header carries the chosen values, followed by a protected-mode payload.
// Offsets are written as literal numbers from boot.rst's header table, on
// purpose independent of the package's constants.
type imageSpec struct {
	setupSects      uint8
	version         uint16
	loadFlags       uint8
	xloadFlags      uint16
	headerEnd       int // 0x202 + byte at 0x201
	payloadLen      int // protected-mode bytes; syssize = ceil(payloadLen/16)
	sysSize         *uint32
	initSize        uint32
	prefAddress     uint64
	kernelAlignment uint32
	relocatable     uint8
	cmdlineSize     uint32
	initrdAddrMax   uint32
	truncateTo      int // if > 0, cut the file to this many bytes
}

// defaultSpec looks like a modern x86-64 kernel (protocol 2.15), scaled down:
// a 64 KiB payload that needs 4 MiB at 16 MiB to decompress.
func defaultSpec() imageSpec {
	return imageSpec{
		setupSects:      27,
		version:         0x020f,
		loadFlags:       0x01, // LOADED_HIGH
		xloadFlags:      0x7f &^ 0x60,
		headerEnd:       0x26c,
		payloadLen:      64 << 10,
		initSize:        4 << 20,
		prefAddress:     16 << 20,
		kernelAlignment: 2 << 20,
		relocatable:     1,
		cmdlineSize:     2048,
		initrdAddrMax:   0x7fffffff,
	}
}

func (s imageSpec) setupSize() int {
	n := int(s.setupSects)
	if n == 0 {
		n = 4
	}
	return (n + 1) * 512
}

func (s imageSpec) payload() []byte {
	p := make([]byte, s.payloadLen)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

func (s imageSpec) build() []byte {
	setup := s.setupSize()
	sys := uint32((s.payloadLen + 15) / 16)
	if s.sysSize != nil {
		sys = *s.sysSize
	}
	size := setup + int(sys)*16
	if s.truncateTo > 0 {
		// Cut short: never allocate what a huge syssize announces.
		size = min(size, max(s.truncateTo, setup))
	}
	img := make([]byte, size)
	le := binary.LittleEndian
	img[0], img[1] = 'M', 'Z' // like real images: an EFI stub's DOS header
	img[0x1f1] = s.setupSects
	le.PutUint32(img[0x1f4:], sys)
	le.PutUint16(img[0x1fa:], 0xffff)
	le.PutUint16(img[0x1fe:], 0xaa55)
	img[0x200] = 0xeb                      // jmp short
	img[0x201] = byte(s.headerEnd - 0x202) // over the header
	copy(img[0x202:], "HdrS")
	le.PutUint16(img[0x206:], s.version)
	le.PutUint16(img[0x20e:], 0x1234)
	img[0x211] = s.loadFlags
	le.PutUint32(img[0x214:], 0x100000)
	le.PutUint32(img[0x22c:], s.initrdAddrMax)
	le.PutUint32(img[0x230:], s.kernelAlignment)
	img[0x234] = s.relocatable
	img[0x235] = 21
	le.PutUint16(img[0x236:], s.xloadFlags)
	le.PutUint32(img[0x238:], s.cmdlineSize)
	le.PutUint32(img[0x248:], 0x3b5)
	le.PutUint32(img[0x24c:], 0x1000)
	le.PutUint64(img[0x258:], s.prefAddress)
	le.PutUint32(img[0x260:], s.initSize)
	if s.headerEnd >= 0x268 {
		le.PutUint32(img[0x264:], 0x190)
	}
	if s.headerEnd >= 0x26c {
		le.PutUint32(img[0x268:], 0x4321)
	}
	// The byte right after the header is code in a real image.
	if s.headerEnd < len(img) {
		img[s.headerEnd] = 0xcc
	}
	copy(img[setup:], s.payload())
	if s.truncateTo > 0 && s.truncateTo < len(img) {
		img = img[:s.truncateTo]
	}
	return img
}

// newGuest returns size bytes of fake guest RAM laid out by
// memory.RAMLayout, backed by Go memory (size must be below the MMIO hole).
func newGuest(t testing.TB, size uint64) *memory.Guest {
	t.Helper()
	require.LessOrEqual(t, size, uint64(memory.MMIOHoleStart))
	return memory.NewFromBytes(memory.Region{
		Range: memory.Range{Start: 0, Size: size},
		Host:  make([]byte, size),
	})
}

// readGuest copies n bytes of guest memory at addr.
func readGuest(t testing.TB, mem *memory.Guest, addr, n uint64) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := mem.ReadAt(b, int64(addr))
	require.NoError(t, err)
	return b
}

func u32p(v uint32) *uint32 { return &v }

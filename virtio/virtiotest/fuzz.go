package virtiotest

import (
	"math/rand/v2"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	"github.com/govmm/govmm/machine/memory"
)

// guardPattern fills the guard bytes around a GuardedRAM.
const guardPattern = 0xA5

// GuardedRAM is fake guest RAM at guest-physical address 0 with guard
// pages around it in the host allocation, for fuzz targets: a device that
// writes outside guest RAM changes a guard byte, which Check finds.
type GuardedRAM struct {
	Mem     *memory.Guest
	RAM     []byte
	backing []byte
}

// NewGuardedRAM returns size bytes of zeroed guest RAM between guard
// pages; size must be a multiple of the page size.
func NewGuardedRAM(size int) *GuardedRAM {
	guard := int(memory.PageSize)
	buf := make([]byte, size+2*guard+guard)
	off := (memory.PageSize - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%memory.PageSize) % memory.PageSize
	backing := buf[off : int(off)+size+2*guard]
	for i := range backing {
		backing[i] = guardPattern
	}
	ram := backing[guard : guard+size : guard+size]
	clear(ram)
	mem := memory.NewFromBytes(memory.Region{Range: memory.Range{Start: 0, Size: uint64(size)}, Host: ram})
	return &GuardedRAM{Mem: mem, RAM: ram, backing: backing}
}

// Check fails t if a byte outside guest RAM changed.
func (g *GuardedRAM) Check(t testing.TB) {
	t.Helper()
	guard := len(g.backing) - len(g.RAM)
	guard /= 2
	for i, b := range g.backing[:guard] {
		if b != guardPattern {
			t.Fatalf("write below guest RAM at -%d", guard-i)
		}
	}
	for i, b := range g.backing[guard+len(g.RAM):] {
		if b != guardPattern {
			t.Fatalf("write above guest RAM at +%d", i)
		}
	}
}

// Input hands out a fuzz input's bytes as little-endian integers; past
// their end it returns zeros.
type Input struct{ B []byte }

// More reports whether bytes are left.
func (in *Input) More() bool { return len(in.B) > 0 }

func (in *Input) U8() uint8 {
	if len(in.B) == 0 {
		return 0
	}
	v := in.B[0]
	in.B = in.B[1:]
	return v
}

func (in *Input) U16() uint16 { return uint16(in.U8()) | uint16(in.U8())<<8 }
func (in *Input) U32() uint32 { return uint32(in.U16()) | uint32(in.U16())<<16 }
func (in *Input) U64() uint64 { return uint64(in.U32()) | uint64(in.U32())<<32 }

// Bytes returns up to n input bytes.
func (in *Input) Bytes(n int) []byte {
	n = min(n, len(in.B))
	b := in.B[:n]
	in.B = in.B[n:]
	return b
}

// InputChain picks a chain of one to three of bufs for a fuzzed driver to
// post, taking them in turn from *next, each readable or writable as the
// input says (so sometimes in an order the device must refuse).
func InputChain(in *Input, bufs []Buf, next *int) []Buf {
	n := int(in.U8()%3) + 1
	kinds := in.U8()
	chain := make([]Buf, n)
	for i := range chain {
		chain[i] = bufs[*next%len(bufs)]
		*next++
		chain[i].Write = kinds&(1<<i) == 0
	}
	return chain
}

// RandomInputs returns n random fuzz inputs of 64 to 1087 bytes from a
// generator seeded with seed, with bytes from ops sprinkled in where an
// operation byte may be read: a uniform byte rarely reaches the
// operations that need sensible arguments (setting a queue up, posting
// buffers).
func RandomInputs(seed uint64, n int, ops []byte) [][]byte {
	rnd := rand.New(rand.NewPCG(seed, seed+1))
	inputs := make([][]byte, n)
	for k := range inputs {
		data := make([]byte, 64+rnd.IntN(1024))
		for i := range data {
			data[i] = byte(rnd.Uint32())
		}
		for i := 0; i < len(data); i += 1 + rnd.IntN(24) {
			data[i] = ops[rnd.IntN(len(ops))]
		}
		inputs[k] = data
	}
	return inputs
}

// WithWatchdog runs f, and panics with every goroutine's stack if it has
// not returned after d: a deadlock in a fuzz input shows where it hangs.
func WithWatchdog(name string, d time.Duration, f func()) {
	watchdog := time.AfterFunc(d, func() {
		debug.SetTraceback("all")
		panic(name + ": input ran too long (deadlock?)")
	})
	defer watchdog.Stop()
	f()
}

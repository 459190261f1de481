package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/govmm/govmm/machine/memory"
)

// sharedWordSize is the size of the word atomic operations act on. Go's
// sync/atomic has no 16-bit operations, so a 16-bit ring field is accessed
// through the naturally aligned 32-bit word that contains it.
const sharedWordSize = 4

// maxCASAttempts bounds the compare-and-swap loop that stores a 16-bit field
// next to 16 bits the device does not own. A swap fails only if the guest
// wrote the other half between the load and the swap; a driver has no reason
// to write there at all, so running out of attempts means a hostile guest.
const maxCASAttempts = 1000

// errContended is returned when maxCASAttempts swaps in a row fail.
var errContended = errors.New("virtio: guest keeps writing next to a ring field")

// sharedField is a little-endian 16-bit field of a ring that the driver and
// the device access concurrently: an index, the flags or an event index.
// Every access is one sequentially consistent atomic operation on the
// aligned 32-bit word that holds the field, which can neither tear nor be
// reordered with the device's other accesses to the rings (the Go memory
// model makes sync/atomic operations sequentially consistent; on amd64 a
// load is a MOV and a store or swap is a locked instruction, a full fence).
type sharedField struct {
	word *uint32 // host address of the aligned word holding the field
	off  uint64  // byte offset of the field in the word: 0 or 2
}

// newSharedField locates the 16-bit field at guest-physical address gpa,
// which must be 2-byte aligned. The whole aligned word around it must be
// guest RAM: with RAM regions that start and end on 4-byte boundaries, as
// page-aligned regions do, that holds for every field of a ring that lies in
// RAM.
func newSharedField(mem *memory.Guest, gpa uint64) (sharedField, error) {
	start := gpa &^ (sharedWordSize - 1)
	b, err := mem.Slice(start, sharedWordSize)
	if err != nil {
		return sharedField{}, err
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%sharedWordSize != 0 {
		return sharedField{}, fmt.Errorf("virtio: host mapping of guest address %#x is not %d-byte aligned", start, sharedWordSize)
	}
	return sharedField{word: (*uint32)(p), off: gpa - start}, nil
}

// load atomically reads the field.
func (f sharedField) load() uint16 {
	var b [sharedWordSize]byte
	binary.NativeEndian.PutUint32(b[:], atomic.LoadUint32(f.word))
	return binary.LittleEndian.Uint16(b[f.off:])
}

// store atomically writes the field, leaving the other half of its word as
// it is.
func (f sharedField) store(v uint16) error {
	for range maxCASAttempts {
		old := atomic.LoadUint32(f.word)
		var b [sharedWordSize]byte
		binary.NativeEndian.PutUint32(b[:], old)
		binary.LittleEndian.PutUint16(b[f.off:], v)
		if atomic.CompareAndSwapUint32(f.word, old, binary.NativeEndian.Uint32(b[:])) {
			return nil
		}
	}
	return errContended
}

// storePair atomically writes the whole word as two little-endian 16-bit
// fields: lo at the lower address, hi above it. The used ring's flags and
// idx are such a pair, both written only by the device.
func (f sharedField) storePair(lo, hi uint16) {
	var b [sharedWordSize]byte
	binary.LittleEndian.PutUint16(b[0:], lo)
	binary.LittleEndian.PutUint16(b[2:], hi)
	atomic.StoreUint32(f.word, binary.NativeEndian.Uint32(b[:]))
}

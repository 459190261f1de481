// Package virtiotest provides a fake virtio driver for tests of the virtio
// package and of the devices built on it. A Driver lays out a split
// virtqueue in fake guest RAM and makes buffers available and takes used
// ones back the way a guest's driver does (virtio 1.2 §2.7.13, §2.7.14),
// with the same atomic accesses to the shared ring fields as the device
// side, so a Driver can run in its own goroutine against a device under the
// race detector. It also has raw accessors to build the malformed rings a
// hostile guest could.
//
// Driver methods panic on misuse (running out of descriptors or RAM): they
// are test code, and a panic there is a bug in the test.
package virtiotest

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
)

// NewRAM returns fake guest RAM of size bytes at guest-physical address start
// and the bytes behind it. Like RAM mapped with mmap, the bytes start on a
// page boundary of host memory.
func NewRAM(start, size uint64) (*memory.Guest, []byte) {
	buf := make([]byte, size+memory.PageSize)
	off := (memory.PageSize - uintptr(unsafe.Pointer(unsafe.SliceData(buf)))%memory.PageSize) % memory.PageSize
	ram := buf[off : off+uintptr(size) : off+uintptr(size)]
	return memory.NewFromBytes(memory.Region{Range: memory.Range{Start: start, Size: size}, Host: ram}), ram
}

// Offsets in the rings (virtio 1.2 §2.7.6 struct virtq_avail, §2.7.8 struct
// virtq_used).
const (
	availFlagsOff  = 0
	availIdxOff    = 2
	availRingOff   = 4
	availEntrySize = 2
	usedFlagsOff   = 0
	usedIdxOff     = 2
	usedRingOff    = 4
	usedElemSize   = 8
	usedElemLenOff = 4
	wordSize       = 4 // the unit of atomic access to the 16-bit fields
)

// usedRingAlign is where Layout puts the used ring: on a cache line of its
// own, as Linux does, away from the driver-written parts.
const usedRingAlign = 64

// Layout returns the configuration of a queue of the given size whose parts
// lie back to back from base (which must be 16-byte aligned), as Linux lays
// them out, and the first address after them.
func Layout(base uint64, size uint16, features virtio.Features) (cfg virtio.QueueConfig, end uint64) {
	cfg = virtio.QueueConfig{Size: size, Features: features, DescTable: base}
	cfg.AvailRing = base + virtio.DescTableSize(size)
	cfg.UsedRing = alignUp(cfg.AvailRing+virtio.AvailRingSize(size), usedRingAlign)
	end = alignUp(cfg.UsedRing+virtio.UsedRingSize(size), usedRingAlign)
	return cfg, end
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// Buf is one buffer of a chain: guest RAM at Addr, Len bytes long, readable
// or writable for the device.
type Buf struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Driver is the driver side of one split virtqueue.
type Driver struct {
	Mem *memory.Guest
	Cfg virtio.QueueConfig

	free      []uint16   // free descriptor indices
	owned     [][]uint16 // descriptors of each in-flight chain, by head
	availIdx  uint16     // avail->idx including chains not yet published
	published uint16     // avail->idx as in guest memory
	lastUsed  uint16     // used->idx up to which the driver has taken chains
	dataNext  uint64     // bump allocator for buffers and indirect tables
	dataEnd   uint64
}

// NewDriver sets up the rings of cfg in mem as a driver does before enabling
// a queue: it zeroes them, then sets avail->idx and used->idx to
// cfg.LastAvailIdx and cfg.UsedIdx (both 0 for a fresh queue). Buffers and
// indirect tables come from data, which must not overlap the rings.
func NewDriver(mem *memory.Guest, cfg virtio.QueueConfig, data memory.Range) *Driver {
	d := &Driver{
		Mem:       mem,
		Cfg:       cfg,
		owned:     make([][]uint16, cfg.Size),
		availIdx:  cfg.LastAvailIdx,
		published: cfg.LastAvailIdx,
		lastUsed:  cfg.UsedIdx,
		dataNext:  data.Start,
		dataEnd:   data.End(),
	}
	for i := int(cfg.Size) - 1; i >= 0; i-- {
		d.free = append(d.free, uint16(i))
	}
	clear(d.slice(cfg.DescTable, virtio.DescTableSize(cfg.Size)))
	clear(d.slice(cfg.AvailRing, virtio.AvailRingSize(cfg.Size)))
	clear(d.slice(cfg.UsedRing, virtio.UsedRingSize(cfg.Size)))
	d.field(cfg.AvailRing + availIdxOff).store(cfg.LastAvailIdx)
	d.field(cfg.UsedRing + usedIdxOff).store(cfg.UsedIdx)
	return d
}

func (d *Driver) slice(gpa, n uint64) []byte {
	b, err := d.Mem.Slice(gpa, n)
	if err != nil {
		panic(fmt.Sprintf("virtiotest: %v", err))
	}
	return b
}

// Alloc returns n bytes of the data area, 16-byte aligned, zeroed.
func (d *Driver) Alloc(n uint64) uint64 {
	addr := alignUp(d.dataNext, virtio.DescTableAlign)
	if addr+n > d.dataEnd || addr+n < addr {
		panic("virtiotest: data area exhausted")
	}
	d.dataNext = addr + n
	clear(d.slice(addr, n))
	return addr
}

// Readable allocates a device-readable buffer holding data.
func (d *Driver) Readable(data []byte) Buf {
	addr := d.Alloc(uint64(len(data)))
	copy(d.slice(addr, uint64(len(data))), data)
	return Buf{Addr: addr, Len: uint32(len(data))}
}

// Writable allocates a zeroed device-writable buffer of n bytes.
func (d *Driver) Writable(n uint32) Buf {
	return Buf{Addr: d.Alloc(uint64(n)), Len: n, Write: true}
}

// WriteMem and ReadMem access guest memory (buffers the device filled).
func (d *Driver) WriteMem(gpa uint64, p []byte) { copy(d.slice(gpa, uint64(len(p))), p) }

// ReadMem returns a copy of n bytes of guest memory at gpa.
func (d *Driver) ReadMem(gpa uint64, n uint64) []byte {
	return append([]byte(nil), d.slice(gpa, n)...)
}

// FreeDescriptors returns how many descriptors are free.
func (d *Driver) FreeDescriptors() int { return len(d.free) }

// AddChain puts bufs in free descriptors chained with VIRTQ_DESC_F_NEXT and
// their head in the next available ring entry (§2.7.13.1, §2.7.13.2), and
// returns the head. The device sees it after Publish.
func (d *Driver) AddChain(bufs ...Buf) uint16 {
	if len(bufs) == 0 || len(bufs) > len(d.free) {
		panic(fmt.Sprintf("virtiotest: chain of %d buffers, %d free descriptors", len(bufs), len(d.free)))
	}
	idx := make([]uint16, len(bufs))
	for k := range idx {
		idx[k] = d.free[len(d.free)-1]
		d.free = d.free[:len(d.free)-1]
	}
	for k, b := range bufs {
		desc := virtio.Desc{Addr: b.Addr, Len: b.Len}
		if b.Write {
			desc.Flags |= virtio.VIRTQ_DESC_F_WRITE
		}
		if k+1 < len(bufs) {
			desc.Flags |= virtio.VIRTQ_DESC_F_NEXT
			desc.Next = idx[k+1]
		}
		d.SetDesc(idx[k], desc)
	}
	head := idx[0]
	d.owned[head] = append(d.owned[head][:0], idx...)
	d.PutAvail(head)
	return head
}

// AddIndirectChain puts bufs in an indirect table (§2.7.5.3) allocated from
// the data area, and one descriptor referring to it in the ring.
func (d *Driver) AddIndirectChain(bufs ...Buf) uint16 {
	descs := make([]virtio.Desc, len(bufs))
	for k, b := range bufs {
		descs[k] = virtio.Desc{Addr: b.Addr, Len: b.Len}
		if b.Write {
			descs[k].Flags |= virtio.VIRTQ_DESC_F_WRITE
		}
		if k+1 < len(bufs) {
			descs[k].Flags |= virtio.VIRTQ_DESC_F_NEXT
			descs[k].Next = uint16(k + 1)
		}
	}
	table := d.PutTable(descs...)
	if len(d.free) == 0 {
		panic("virtiotest: no free descriptor")
	}
	head := d.free[len(d.free)-1]
	d.free = d.free[:len(d.free)-1]
	d.SetDesc(head, virtio.Desc{Addr: table, Len: uint32(len(descs) * virtio.DescSize), Flags: virtio.VIRTQ_DESC_F_INDIRECT})
	d.owned[head] = append(d.owned[head][:0], head)
	d.PutAvail(head)
	return head
}

// PutTable writes descs as a descriptor table in the data area and returns
// its address, for building indirect tables by hand.
func (d *Driver) PutTable(descs ...virtio.Desc) uint64 {
	n := uint64(len(descs)) * virtio.DescSize
	addr := d.Alloc(n)
	b := d.slice(addr, n)
	for k, desc := range descs {
		desc.Encode(b[k*virtio.DescSize:])
	}
	return addr
}

// SetDesc writes descriptor i of the descriptor table.
func (d *Driver) SetDesc(i uint16, desc virtio.Desc) {
	desc.Encode(d.slice(d.Cfg.DescTable+uint64(i)*virtio.DescSize, virtio.DescSize))
}

// Desc reads descriptor i of the descriptor table.
func (d *Driver) Desc(i uint16) virtio.Desc {
	return virtio.DecodeDesc(d.slice(d.Cfg.DescTable+uint64(i)*virtio.DescSize, virtio.DescSize))
}

// PutAvail writes head into the next available ring entry, without
// publishing it and without checking it.
func (d *Driver) PutAvail(head uint16) {
	slot := uint64(d.availIdx % d.Cfg.Size)
	binary.LittleEndian.PutUint16(d.slice(d.Cfg.AvailRing+availRingOff+availEntrySize*slot, availEntrySize), head)
	d.availIdx++
}

// Publish stores avail->idx, making the chains added since the last Publish
// visible to the device (§2.7.13.3), and reports whether the driver must
// now notify the device (§2.7.10): with VIRTIO_F_EVENT_IDX if avail->idx
// passed avail_event, otherwise if VIRTQ_USED_F_NO_NOTIFY is clear.
func (d *Driver) Publish() bool {
	old := d.published
	d.SetAvailIdx(d.availIdx)
	if old == d.availIdx {
		return false
	}
	// The atomic store above and the loads below are sequentially
	// consistent: the barrier §2.7.13.4.1 asks for.
	if d.Cfg.Features.Has(virtio.VIRTIO_F_EVENT_IDX) {
		return virtio.NeedEvent(d.AvailEvent(), d.availIdx, old)
	}
	return d.UsedFlags()&virtio.VIRTQ_USED_F_NO_NOTIFY == 0
}

// SetAvailIdx stores avail->idx as is.
func (d *Driver) SetAvailIdx(v uint16) {
	d.availIdx = v
	d.published = v
	d.field(d.Cfg.AvailRing + availIdxOff).store(v)
}

// AvailIdx returns the driver's avail->idx, unpublished chains included.
func (d *Driver) AvailIdx() uint16 { return d.availIdx }

// SetAvailFlags stores avail->flags.
func (d *Driver) SetAvailFlags(v uint16) { d.field(d.Cfg.AvailRing + availFlagsOff).store(v) }

// SetUsedEvent stores avail->used_event.
func (d *Driver) SetUsedEvent(v uint16) {
	d.field(d.Cfg.AvailRing + availRingOff + availEntrySize*uint64(d.Cfg.Size)).store(v)
}

// UsedIdx loads used->idx.
func (d *Driver) UsedIdx() uint16 { return d.field(d.Cfg.UsedRing + usedIdxOff).load() }

// UsedFlags loads used->flags.
func (d *Driver) UsedFlags() uint16 { return d.field(d.Cfg.UsedRing + usedFlagsOff).load() }

// AvailEvent loads used->avail_event.
func (d *Driver) AvailEvent() uint16 {
	return d.field(d.Cfg.UsedRing + usedRingOff + usedElemSize*uint64(d.Cfg.Size)).load()
}

// UsedElem reads used->ring[i % Size]: the head and the written length.
func (d *Driver) UsedElem(i uint16) (id, length uint32) {
	e := d.slice(d.Cfg.UsedRing+usedRingOff+usedElemSize*uint64(i%d.Cfg.Size), usedElemSize)
	return binary.LittleEndian.Uint32(e), binary.LittleEndian.Uint32(e[usedElemLenOff:])
}

// GetUsed takes the next used element, if the device published one
// (§2.7.14), and frees the descriptors of its chain.
func (d *Driver) GetUsed() (id, length uint32, ok bool) {
	if d.lastUsed == d.UsedIdx() {
		return 0, 0, false
	}
	id, length = d.UsedElem(d.lastUsed)
	d.lastUsed++
	if id < uint32(d.Cfg.Size) {
		d.free = append(d.free, d.owned[id]...)
		d.owned[id] = d.owned[id][:0]
	}
	return id, length, true
}

// EnableInterrupts asks the device for used buffer notifications (§2.7.7):
// it clears VIRTQ_AVAIL_F_NO_INTERRUPT, or with VIRTIO_F_EVENT_IDX sets
// used_event to the next used index the driver will take. It then reports
// whether used chains arrived meanwhile, so a driver sleeps only on false.
func (d *Driver) EnableInterrupts() bool {
	if d.Cfg.Features.Has(virtio.VIRTIO_F_EVENT_IDX) {
		d.SetUsedEvent(d.lastUsed)
	} else {
		d.SetAvailFlags(0)
	}
	return d.UsedIdx() != d.lastUsed
}

// DisableInterrupts asks the device not to send used buffer notifications
// (without VIRTIO_F_EVENT_IDX; with it, used_event is left behind instead).
func (d *Driver) DisableInterrupts() {
	if !d.Cfg.Features.Has(virtio.VIRTIO_F_EVENT_IDX) {
		d.SetAvailFlags(virtio.VIRTQ_AVAIL_F_NO_INTERRUPT)
	}
}

// field is a 16-bit ring field accessed atomically through its aligned
// 32-bit word, as the device side does.
type field struct {
	word *uint32
	off  uint64
}

func (d *Driver) field(gpa uint64) field {
	start := gpa &^ (wordSize - 1)
	b := d.slice(start, wordSize)
	return field{word: (*uint32)(unsafe.Pointer(unsafe.SliceData(b))), off: gpa - start}
}

func (f field) load() uint16 {
	var b [wordSize]byte
	binary.NativeEndian.PutUint32(b[:], atomic.LoadUint32(f.word))
	return binary.LittleEndian.Uint16(b[f.off:])
}

func (f field) store(v uint16) {
	for {
		old := atomic.LoadUint32(f.word)
		var b [wordSize]byte
		binary.NativeEndian.PutUint32(b[:], old)
		binary.LittleEndian.PutUint16(b[f.off:], v)
		if atomic.CompareAndSwapUint32(f.word, old, binary.NativeEndian.Uint32(b[:])) {
			return
		}
	}
}

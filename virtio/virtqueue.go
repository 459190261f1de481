package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/govmm/govmm/machine/memory"
)

// Errors of a virtqueue. Those from Enable mean the driver configured the
// queue wrongly; those from Pop mean it broke a rule of §2.7 while the queue
// ran. Either way the transport sets DEVICE_NEEDS_RESET (§2.1.2). They are
// wrapped with details; test them with errors.Is. A buffer or ring outside
// guest RAM gives an error that wraps memory.ErrOutOfRange.
var (
	// ErrQueueSize: the queue size is not a power of 2 in [1, 32768] (§2.7).
	ErrQueueSize = errors.New("virtio: queue size is not a power of 2 between 1 and 32768")
	// ErrMisaligned: a part of the queue is not aligned as §2.7 requires.
	ErrMisaligned = errors.New("virtio: virtqueue part is misaligned")
	// ErrNotReady: the queue was used before Enable or after Reset.
	ErrNotReady = errors.New("virtio: virtqueue is not enabled")
	// ErrAvailIdx: the available idx moved ahead of the device by more
	// than the queue size, which no driver can do (§2.7.13.3).
	ErrAvailIdx = errors.New("virtio: available idx is more than the queue size ahead")
	// ErrDescIndex: a head in the available ring or a next field points
	// past the end of its descriptor table.
	ErrDescIndex = errors.New("virtio: descriptor index out of range")
	// ErrChainTooLong: a descriptor chain loops or has more descriptors
	// than its table or MaxChainDescriptors (§2.7.5.2, §2.7.5.3.1).
	ErrChainTooLong = errors.New("virtio: descriptor chain loops or is too long")
	// ErrChainTooLarge: a chain describes more than the queue's
	// MaxChainBytes (§2.7.5.2).
	ErrChainTooLarge = errors.New("virtio: descriptor chain describes too many bytes")
	// ErrDescOrder: a device-readable descriptor follows a device-writable
	// one (§2.7.4.2).
	ErrDescOrder = errors.New("virtio: device-readable descriptor after a device-writable one")
	// ErrIndirect: a malformed indirect descriptor (§2.7.5.3.1): one
	// without VIRTIO_F_INDIRECT_DESC, one inside an indirect table, one
	// with VIRTQ_DESC_F_NEXT, or a table whose length is zero or not a
	// multiple of 16.
	ErrIndirect = errors.New("virtio: malformed indirect descriptor")
	// ErrNotInFlight: the device pushed more chains than it popped.
	ErrNotInFlight = errors.New("virtio: push without a popped chain")
)

// QueueConfig is what the driver tells the transport about a virtqueue
// before enabling it (§4.1.4.3 queue_size, queue_desc, queue_driver,
// queue_device; §4.2.2 for MMIO), and the features negotiated for the device.
type QueueConfig struct {
	// Size is the Queue Size: a power of 2, at most MaxQueueSize (§2.7).
	// The transport checks it against the device's maximum.
	Size uint16
	// DescTable, AvailRing and UsedRing are the guest-physical addresses of
	// the Descriptor Area, the Driver Area and the Device Area.
	DescTable uint64
	AvailRing uint64
	UsedRing  uint64
	// Features are the negotiated features. The queue looks at
	// VIRTIO_F_INDIRECT_DESC and VIRTIO_F_EVENT_IDX.
	Features Features
	// MaxChainBytes, if not 0, lowers the limit on the bytes one chain
	// describes below MaxChainBytes, for a device with a smaller bound.
	MaxChainBytes uint32
	// LastAvailIdx and UsedIdx are where the device starts in the
	// available and used rings. After a reset both are 0, as the rings the
	// driver sets up start at 0 (§2.7.6, §2.7.8); other values restore a
	// queue that was saved while it ran.
	LastAvailIdx uint16
	UsedIdx      uint16
}

// Virtqueue is the device side of a split virtqueue (§2.7). The zero value
// is a disabled queue; Enable makes it usable. It is not safe for concurrent
// use: see the package documentation.
type Virtqueue struct {
	ready         bool
	err           error // sticky: the driver broke the queue
	mem           *memory.Guest
	size          uint16
	mask          uint16 // size - 1: ring slot of a free-running index
	indirect      bool   // VIRTIO_F_INDIRECT_DESC
	eventIdx      bool   // VIRTIO_F_EVENT_IDX
	maxChainBytes uint32

	// The three parts, as slices of guest RAM.
	descTable []byte
	availRing []byte
	usedRing  []byte

	// Fields shared with the running driver, accessed atomically.
	availFlags sharedField // avail->flags (driver writes)
	availIdx   sharedField // avail->idx (driver writes)
	usedEvent  sharedField // avail->used_event (driver writes)
	usedHeader sharedField // used->flags and used->idx (device writes)
	availEvent sharedField // used->avail_event (device writes)

	lastAvail      uint16 // free-running index of the next chain to pop
	availCache     uint16 // avail->idx as last read
	nextUsed       uint16 // used->idx once pushed chains are published
	publishedUsed  uint16 // used->idx as in guest memory
	usedFlags      uint16 // used->flags as in guest memory
	notify         bool   // available buffer notifications are enabled
	availEventSet  bool   // avail_event holds availEventLast
	availEventLast uint16
	inFlight       int // chains popped and not yet pushed
}

// Enable validates cfg and starts using the rings it describes. It fails if
// the size is not a power of 2 up to 32768, if a part is misaligned (§2.7.1)
// or if a part does not lie entirely in guest RAM; the transport then sets
// DEVICE_NEEDS_RESET. On failure the queue stays disabled.
func (q *Virtqueue) Enable(mem *memory.Guest, cfg QueueConfig) error {
	q.Reset()
	if cfg.Size == 0 || cfg.Size > MaxQueueSize || cfg.Size&(cfg.Size-1) != 0 {
		return fmt.Errorf("%w: %d", ErrQueueSize, cfg.Size)
	}
	for _, part := range []struct {
		name  string
		addr  uint64
		align uint64
	}{
		{"descriptor table", cfg.DescTable, DescTableAlign},
		{"available ring", cfg.AvailRing, AvailRingAlign},
		{"used ring", cfg.UsedRing, UsedRingAlign},
	} {
		if part.addr%part.align != 0 {
			return fmt.Errorf("%w: %s at %#x, want %d-byte alignment", ErrMisaligned, part.name, part.addr, part.align)
		}
	}
	var err error
	if q.descTable, err = mem.Slice(cfg.DescTable, DescTableSize(cfg.Size)); err != nil {
		return q.enableFailed("descriptor table", err)
	}
	if q.availRing, err = mem.Slice(cfg.AvailRing, AvailRingSize(cfg.Size)); err != nil {
		return q.enableFailed("available ring", err)
	}
	if q.usedRing, err = mem.Slice(cfg.UsedRing, UsedRingSize(cfg.Size)); err != nil {
		return q.enableFailed("used ring", err)
	}
	usedEventOff := availRingOff + availEntrySize*uint64(cfg.Size)
	availEventOff := usedRingOff + usedElemSize*uint64(cfg.Size)
	for _, f := range []struct {
		field *sharedField
		gpa   uint64
		name  string
	}{
		{&q.availFlags, cfg.AvailRing + availFlagsOff, "avail->flags"},
		{&q.availIdx, cfg.AvailRing + availIdxOff, "avail->idx"},
		{&q.usedEvent, cfg.AvailRing + usedEventOff, "avail->used_event"},
		// used->flags and used->idx share the aligned word at the start of
		// the 4-byte aligned used ring; storePair writes both.
		{&q.usedHeader, cfg.UsedRing + usedFlagsOff, "used->flags"},
		{&q.availEvent, cfg.UsedRing + availEventOff, "used->avail_event"},
	} {
		if *f.field, err = newSharedField(mem, f.gpa); err != nil {
			return q.enableFailed(f.name, err)
		}
	}
	q.mem = mem
	q.size = cfg.Size
	q.mask = cfg.Size - 1
	q.indirect = cfg.Features.Has(VIRTIO_F_INDIRECT_DESC)
	q.eventIdx = cfg.Features.Has(VIRTIO_F_EVENT_IDX)
	q.maxChainBytes = MaxChainBytes
	if cfg.MaxChainBytes != 0 {
		q.maxChainBytes = cfg.MaxChainBytes
	}
	q.lastAvail = cfg.LastAvailIdx
	q.availCache = cfg.LastAvailIdx
	q.nextUsed = cfg.UsedIdx
	q.publishedUsed = cfg.UsedIdx
	q.notify = true
	q.ready = true
	return nil
}

func (q *Virtqueue) enableFailed(part string, err error) error {
	q.Reset()
	return fmt.Errorf("virtio: %s: %w", part, err)
}

// Reset forgets the rings and returns the queue to its disabled zero state,
// as a device reset (§2.4) or a queue reset requires. It does not touch
// guest memory.
func (q *Virtqueue) Reset() {
	*q = Virtqueue{}
}

// Ready reports whether the queue is enabled and unbroken.
func (q *Virtqueue) Ready() bool { return q.ready && q.err == nil }

// Size returns the queue size, 0 while disabled.
func (q *Virtqueue) Size() uint16 { return q.size }

// Err returns the error that broke the queue, if any.
func (q *Virtqueue) Err() error { return q.err }

// LastAvailIdx returns the free-running index of the available ring entry
// the next Pop takes, for saving a running queue (see QueueConfig).
func (q *Virtqueue) LastAvailIdx() uint16 { return q.lastAvail }

// EventIdx reports whether the queue uses VIRTIO_F_EVENT_IDX's event
// indexes for notification suppression (§2.7.7.2, §2.7.10.2) rather than
// the flags.
func (q *Virtqueue) EventIdx() bool { return q.eventIdx }

// UsedIdx returns used->idx as it will be once the chains added with AddUsed
// are published.
func (q *Virtqueue) UsedIdx() uint16 { return q.nextUsed }

// fail breaks the queue: err sticks until Reset.
func (q *Virtqueue) fail(err error) error {
	q.err = err
	return err
}

// check returns the error that keeps the queue from being used, if any.
func (q *Virtqueue) check() error {
	if q.err != nil {
		return q.err
	}
	if !q.ready {
		return ErrNotReady
	}
	return nil
}

// pending reads avail->idx and returns how many chains the driver has made
// available that the device has not popped.
func (q *Virtqueue) pending() (uint16, error) {
	// The atomic load orders the reads of the ring entries and descriptors
	// it covers after it: the driver "MUST perform a suitable memory
	// barrier before the idx update" (§2.7.13.3.1), and this is the
	// matching barrier on the device's side.
	idx := q.availIdx.load()
	n := idx - q.lastAvail
	if n > q.size {
		// The driver can never have more than Size chains outstanding
		// (§2.7.13: the ring is as large as the descriptor table).
		return 0, q.fail(fmt.Errorf("%w: idx %d, device at %d, size %d", ErrAvailIdx, idx, q.lastAvail, q.size))
	}
	q.availCache = idx
	return n, nil
}

// Pop takes the next descriptor chain from the available ring (§2.7.6) and
// walks it into c, reusing c's storage. It returns false with a nil error
// if the ring is empty. An error means the driver broke the queue: it
// sticks until Reset, and the device should stop and have the transport set
// DEVICE_NEEDS_RESET.
//
// With VIRTIO_F_EVENT_IDX and notifications enabled, finding the ring empty
// asks the driver for a notification when it adds the next chain (§2.7.10)
// and checks the ring once more, so a device can sleep until notified
// whenever Pop returns false.
func (q *Virtqueue) Pop(c *DescChain) (bool, error) {
	if err := q.check(); err != nil {
		return false, err
	}
	if q.lastAvail == q.availCache {
		n, err := q.pending()
		if err != nil {
			return false, err
		}
		if n == 0 && q.eventIdx && q.notify {
			if n, err = q.armAvailEvent(); err != nil {
				return false, err
			}
		}
		if n == 0 {
			return false, nil
		}
	}
	// avail->ring[last_avail_idx % Size]: the index of a chain's head.
	slot := availRingOff + availEntrySize*uint64(q.lastAvail&q.mask)
	head := binary.LittleEndian.Uint16(q.availRing[slot:])
	if head >= q.size {
		return false, q.fail(fmt.Errorf("%w: available ring entry %d has head %d, queue size %d", ErrDescIndex, q.lastAvail, head, q.size))
	}
	c.reset(head)
	if err := q.walk(c, head); err != nil {
		return false, q.fail(fmt.Errorf("chain at head %d: %w", head, err))
	}
	q.lastAvail++
	q.inFlight++
	return true, nil
}

// Unpop gives back the chain the last Pop returned: the next Pop returns it
// again. A network device uses it to leave a receive buffer in the ring
// when it turns out to have no packet for it. Call it at most once per Pop,
// in reverse order of the Pops, and before pushing the chain.
func (q *Virtqueue) Unpop() {
	if q.inFlight == 0 {
		return
	}
	q.inFlight--
	q.lastAvail--
}

// walk follows the chain starting at descriptor head of the descriptor table
// into c (§2.7.5): VIRTQ_DESC_F_NEXT links, and at the end of zero or more
// direct descriptors, at most one indirect table (§2.7.5.3.2).
func (q *Virtqueue) walk(c *DescChain, head uint16) error {
	i := head
	// The table has Size descriptors: a longer chain must visit one twice.
	for range q.size {
		d := DecodeDesc(q.descTable[DescSize*uint64(i):])
		if d.Flags&VIRTQ_DESC_F_INDIRECT != 0 {
			return q.walkIndirect(c, d)
		}
		if err := q.addBuffer(c, d); err != nil {
			return fmt.Errorf("descriptor %d: %w", i, err)
		}
		if d.Flags&VIRTQ_DESC_F_NEXT == 0 {
			return nil
		}
		if d.Next >= q.size {
			return fmt.Errorf("%w: descriptor %d has next %d, queue size %d", ErrDescIndex, i, d.Next, q.size)
		}
		i = d.Next
	}
	return fmt.Errorf("%w: more than the queue size of %d descriptors", ErrChainTooLong, q.size)
}

// walkIndirect follows the indirect table that descriptor d refers to
// (§2.7.5.3): its descriptors start at index 0 and are chained by next
// within the table.
func (q *Virtqueue) walkIndirect(c *DescChain, d Desc) error {
	// §2.7.5.3.1: the driver MUST NOT set INDIRECT unless
	// VIRTIO_F_INDIRECT_DESC was negotiated, and MUST NOT set both
	// INDIRECT and NEXT. The device MUST ignore WRITE on a descriptor that
	// refers to an indirect table (§2.7.5.3.2).
	if !q.indirect {
		return fmt.Errorf("%w: VIRTIO_F_INDIRECT_DESC was not negotiated", ErrIndirect)
	}
	if d.Flags&VIRTQ_DESC_F_NEXT != 0 {
		return fmt.Errorf("%w: both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT are set", ErrIndirect)
	}
	// struct indirect_descriptor_table { struct virtq_desc desc[len / 16]; }
	if d.Len == 0 || d.Len%DescSize != 0 {
		return fmt.Errorf("%w: table length %d is not a non-zero multiple of %d", ErrIndirect, d.Len, DescSize)
	}
	table, err := q.mem.Slice(d.Addr, uint64(d.Len))
	if err != nil {
		return fmt.Errorf("indirect table: %w", err)
	}
	n := d.Len / DescSize
	var i uint32
	for range n {
		e := DecodeDesc(table[DescSize*uint64(i):])
		if e.Flags&VIRTQ_DESC_F_INDIRECT != 0 {
			// §2.7.5.3.1: "MUST NOT set the VIRTQ_DESC_F_INDIRECT flag
			// within an indirect descriptor (ie. only one table per
			// descriptor)".
			return fmt.Errorf("%w: indirect descriptor %d inside an indirect table", ErrIndirect, i)
		}
		if err := q.addBuffer(c, e); err != nil {
			return fmt.Errorf("indirect descriptor %d: %w", i, err)
		}
		if e.Flags&VIRTQ_DESC_F_NEXT == 0 {
			return nil
		}
		if uint32(e.Next) >= n {
			return fmt.Errorf("%w: indirect descriptor %d has next %d, table of %d", ErrDescIndex, i, e.Next, n)
		}
		i = uint32(e.Next)
	}
	return fmt.Errorf("%w: more than the indirect table's %d descriptors", ErrChainTooLong, n)
}

// addBuffer appends the buffer of descriptor d, already copied out of guest
// memory, to c after checking it.
func (q *Virtqueue) addBuffer(c *DescChain, d Desc) error {
	c.descs++
	if c.descs > MaxChainDescriptors {
		return fmt.Errorf("%w: more than %d descriptors", ErrChainTooLong, MaxChainDescriptors)
	}
	write := d.Flags&VIRTQ_DESC_F_WRITE != 0
	if !write && c.sawWritable {
		// §2.7.4.2: "The driver MUST place any device-writable descriptor
		// elements after any device-readable descriptor elements."
		return ErrDescOrder
	}
	c.sawWritable = c.sawWritable || write
	// §2.7.5.2: no more than 2^32 bytes in total. Summed in 64 bits, so
	// the sum cannot wrap.
	total := uint64(c.readableLen) + uint64(c.writableLen) + uint64(d.Len)
	if total > uint64(q.maxChainBytes) {
		return fmt.Errorf("%w: more than %d bytes", ErrChainTooLarge, q.maxChainBytes)
	}
	if d.Len == 0 {
		// An empty buffer carries nothing; its address is never used, so
		// it is not checked.
		return nil
	}
	// Slice checks that [addr, addr+len) lies in one RAM region without
	// overflowing.
	b, err := q.mem.Slice(d.Addr, uint64(d.Len))
	if err != nil {
		return err
	}
	if write {
		c.writable = append(c.writable, b)
		c.writableLen += d.Len
	} else {
		c.readable = append(c.readable, b)
		c.readableLen += d.Len
	}
	return nil
}

// AddUsed puts the chain with index head on the used ring (§2.7.8) with the
// number of bytes the device wrote into its writable buffers, starting at
// the first (§2.7.8.2: the device MUST have written at least written bytes;
// it may report fewer than it wrote, never more). The driver sees it once
// Publish runs.
func (q *Virtqueue) AddUsed(head uint16, written uint32) error {
	if err := q.check(); err != nil {
		return err
	}
	if head >= q.size {
		return fmt.Errorf("%w: used head %d, queue size %d", ErrDescIndex, head, q.size)
	}
	if q.inFlight == 0 {
		return ErrNotInFlight
	}
	q.inFlight--
	// used->ring[used->idx % Size] = {id: head, len: written}; §2.7.8.2:
	// the device MUST set len prior to updating the used idx.
	e := q.usedRing[usedRingOff+usedElemSize*uint64(q.nextUsed&q.mask):]
	binary.LittleEndian.PutUint32(e[usedElemIDOff:], uint32(head))
	binary.LittleEndian.PutUint32(e[usedElemLen:], written)
	q.nextUsed++
	return nil
}

// Publish makes the chains added with AddUsed visible to the driver by
// storing used->idx after their elements, and reports whether the driver
// must be sent a used buffer notification (an interrupt) for them (§2.7.7).
// With nothing added since the last Publish it does nothing and returns
// false.
func (q *Virtqueue) Publish() bool {
	if q.check() != nil || q.nextUsed == q.publishedUsed {
		return false
	}
	old := q.publishedUsed
	// The atomic store orders the element writes before idx, and idx
	// before the reads of the driver's suppression fields below: the
	// device side of the full barrier §2.7.13.4.1 asks of the driver.
	q.usedHeader.storePair(q.usedFlags, q.nextUsed)
	q.publishedUsed = q.nextUsed
	if q.eventIdx {
		// §2.7.7.2: notify if the used idx at which one of these chains
		// was placed was equal to used_event; the lower bit of
		// avail->flags is ignored.
		return NeedEvent(q.usedEvent.load(), q.nextUsed, old)
	}
	// §2.7.7.2: if flags is 1 the device SHOULD NOT notify; if 0 it MUST.
	return q.availFlags.load()&VIRTQ_AVAIL_F_NO_INTERRUPT == 0
}

// Push is AddUsed followed by Publish: it returns the chain and reports
// whether the driver must be interrupted, which the caller must then do (or
// remember, to send one interrupt for several Pushes: a later Publish with
// nothing new returns false). A device that completes several chains at
// once can call AddUsed for each and Publish once instead.
func (q *Virtqueue) Push(head uint16, written uint32) (bool, error) {
	if err := q.AddUsed(head, written); err != nil {
		return false, err
	}
	return q.Publish(), nil
}

// DisableNotifications tells the driver that the device does not need
// available buffer notifications, while it is busy taking chains anyway
// (§2.7.10). Without VIRTIO_F_EVENT_IDX it sets VIRTQ_USED_F_NO_NOTIFY.
// With it, it only stops Pop re-arming avail_event: the driver notifies
// when its idx passes avail_event, which stays behind the chains the device
// is taking. The driver may still notify: suppression is only advice.
func (q *Virtqueue) DisableNotifications() {
	if q.check() != nil || !q.notify {
		return
	}
	q.notify = false
	if !q.eventIdx {
		q.usedFlags |= VIRTQ_USED_F_NO_NOTIFY
		q.usedHeader.storePair(q.usedFlags, q.publishedUsed)
	}
}

// EnableNotifications asks the driver to notify the device when it makes
// more chains available, then checks the available ring again and reports
// whether there are chains to pop. The check closes the race in which the
// driver adds a chain after the device last looked but before it re-enabled
// notifications, sees them disabled and does not notify (§2.7.14 describes
// the same pattern on the driver's side): a device sleeps until the next
// notification only when EnableNotifications returns false.
//
// Without VIRTIO_F_EVENT_IDX it clears VIRTQ_USED_F_NO_NOTIFY; with it, it
// sets avail_event to the index of the next chain the device will pop, so
// that the driver notifies when it writes that entry (§2.7.10.2).
func (q *Virtqueue) EnableNotifications() (bool, error) {
	if err := q.check(); err != nil {
		return false, err
	}
	q.notify = true
	if q.eventIdx {
		n, err := q.armAvailEvent()
		return n != 0, err
	}
	if q.usedFlags&VIRTQ_USED_F_NO_NOTIFY != 0 {
		q.usedFlags &^= VIRTQ_USED_F_NO_NOTIFY
		// Sequentially consistent: the store is ordered before the
		// load of avail->idx in pending.
		q.usedHeader.storePair(q.usedFlags, q.publishedUsed)
	}
	n, err := q.pending()
	return n != 0, err
}

// armAvailEvent sets avail_event to the next index the device will pop,
// then returns how many chains are pending. Both accesses are atomic, so
// the store is ordered before the load: either the driver sees the new
// avail_event and notifies, or the load sees the driver's new idx.
func (q *Virtqueue) armAvailEvent() (uint16, error) {
	if !q.availEventSet || q.availEventLast != q.lastAvail {
		if err := q.availEvent.store(q.lastAvail); err != nil {
			return 0, q.fail(err)
		}
		q.availEventSet = true
		q.availEventLast = q.lastAvail
	}
	return q.pending()
}

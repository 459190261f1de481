package virtio

import "encoding/binary"

// MaxQueueSize is the largest Queue Size of a split virtqueue: "Queue Size
// value is always a power of 2. The maximum Queue Size value is 32768"
// (§2.7). It is the highest power of 2 whose double fits the 16-bit ring
// indices, so that idx can tell a full ring from an empty one (§2.7.13).
const MaxQueueSize = 32768

// Alignment, in bytes, of the three parts of a split virtqueue (§2.7, the
// table of alignments and sizes; the driver MUST align them, §2.7.1).
const (
	DescTableAlign = 16
	AvailRingAlign = 2
	UsedRingAlign  = 4
)

// Descriptor flags (§2.7.5, struct virtq_desc).
const (
	// VIRTQ_DESC_F_NEXT marks a buffer as continuing via the next field.
	VIRTQ_DESC_F_NEXT = 1
	// VIRTQ_DESC_F_WRITE marks a buffer as device write-only (otherwise
	// device read-only).
	VIRTQ_DESC_F_WRITE = 2
	// VIRTQ_DESC_F_INDIRECT means the buffer contains a table of buffer
	// descriptors (§2.7.5.3).
	VIRTQ_DESC_F_INDIRECT = 4
)

// VIRTQ_AVAIL_F_NO_INTERRUPT in the available ring's flags asks the device
// not to send used buffer notifications (§2.7.6, §2.7.7). Only meaningful
// without VIRTIO_F_EVENT_IDX.
const VIRTQ_AVAIL_F_NO_INTERRUPT = 1

// VIRTQ_USED_F_NO_NOTIFY in the used ring's flags tells the driver that the
// device does not need available buffer notifications (§2.7.8, §2.7.10).
// Only meaningful without VIRTIO_F_EVENT_IDX.
const VIRTQ_USED_F_NO_NOTIFY = 1

// Layout of the rings, in bytes (§2.7.5, §2.7.6, §2.7.8).
const (
	// DescSize is the size of a struct virtq_desc:
	// le64 addr, le32 len, le16 flags, le16 next.
	DescSize = 16

	descAddrOff  = 0
	descLenOff   = 8
	descFlagsOff = 12
	descNextOff  = 14

	// struct virtq_avail: le16 flags, le16 idx, le16 ring[Size],
	// le16 used_event.
	availFlagsOff  = 0
	availIdxOff    = 2
	availRingOff   = 4
	availEntrySize = 2

	// struct virtq_used: le16 flags, le16 idx,
	// struct virtq_used_elem ring[Size], le16 avail_event.
	usedFlagsOff  = 0
	usedIdxOff    = 2
	usedRingOff   = 4
	usedElemSize  = 8 // struct virtq_used_elem: le32 id, le32 len
	usedElemIDOff = 0
	usedElemLen   = 4

	// eventFieldSize is the size of used_event and avail_event, the
	// fields that follow the rings.
	eventFieldSize = 2
)

// DescTableSize returns the size in bytes of the descriptor table of a queue
// of the given size: 16 * (Queue Size).
func DescTableSize(queueSize uint16) uint64 {
	return DescSize * uint64(queueSize)
}

// AvailRingSize returns the size in bytes of the available ring of a queue
// of the given size, used_event included: 6 + 2 * (Queue Size).
func AvailRingSize(queueSize uint16) uint64 {
	return availRingOff + availEntrySize*uint64(queueSize) + eventFieldSize
}

// UsedRingSize returns the size in bytes of the used ring of a queue of the
// given size, avail_event included: 6 + 8 * (Queue Size).
func UsedRingSize(queueSize uint16) uint64 {
	return usedRingOff + usedElemSize*uint64(queueSize) + eventFieldSize
}

// Desc is a descriptor: struct virtq_desc (§2.7.5), decoded.
type Desc struct {
	Addr  uint64 // guest-physical address of the buffer
	Len   uint32 // length of the buffer in bytes
	Flags uint16 // VIRTQ_DESC_F_*
	Next  uint16 // index of the next descriptor if Flags has VIRTQ_DESC_F_NEXT
}

// DecodeDesc decodes the descriptor in the first DescSize bytes of b. It
// reads each byte of b once, so decoding a descriptor straight out of guest
// memory takes a single snapshot of it that the guest cannot change after
// the device has checked it.
func DecodeDesc(b []byte) Desc {
	_ = b[DescSize-1] // one bounds check
	return Desc{
		Addr:  binary.LittleEndian.Uint64(b[descAddrOff:]),
		Len:   binary.LittleEndian.Uint32(b[descLenOff:]),
		Flags: binary.LittleEndian.Uint16(b[descFlagsOff:]),
		Next:  binary.LittleEndian.Uint16(b[descNextOff:]),
	}
}

// Encode writes d into the first DescSize bytes of b, as a driver would.
func (d Desc) Encode(b []byte) {
	_ = b[DescSize-1]
	binary.LittleEndian.PutUint64(b[descAddrOff:], d.Addr)
	binary.LittleEndian.PutUint32(b[descLenOff:], d.Len)
	binary.LittleEndian.PutUint16(b[descFlagsOff:], d.Flags)
	binary.LittleEndian.PutUint16(b[descNextOff:], d.Next)
}

// NeedEvent is vring_need_event from the spec's virtio_queue.h (Appendix A),
// the test behind both event index mechanisms (§2.7.7, §2.7.10): having
// moved its index from old to newIdx, a side must notify the other if the
// other asked to be told when entry eventIdx was written, that is if
// eventIdx lies in [old, newIdx) modulo 2^16:
//
//	(u16)(new_idx - event_idx - 1) < (u16)(new_idx - old)
func NeedEvent(eventIdx, newIdx, old uint16) bool {
	return newIdx-eventIdx-1 < newIdx-old
}

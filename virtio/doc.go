// Package virtio is the device side of virtio 1.2 (OASIS "Virtual I/O Device
// (VIRTIO) Version 1.2"): the feature and status bits that every transport
// and device shares (§2.1, §2.2, §6), and the split virtqueue (§2.7), the ring
// through which a driver in the guest hands buffers to a device and gets them
// back.
//
// # The split virtqueue
//
// A split virtqueue is three areas of guest RAM, each written by one side
// only (§2.7):
//
//	Descriptor Table (driver writes)  Size × {addr, len, flags, next}
//	Available Ring   (driver writes)  flags, idx, ring[Size], used_event
//	Used Ring        (device writes)  flags, idx, ring[Size]{id, len}, avail_event
//
// The driver describes a buffer as a chain of descriptors, device-readable
// ones first and device-writable ones after (§2.7.4.2), puts the index of the
// chain's head in the available ring and then increments avail->idx. The
// device takes chains from the available ring ([Virtqueue.Pop]), reads and
// writes their buffers ([DescChain]), and returns each chain's head with the
// number of bytes it wrote through the used ring ([Virtqueue.Push]), then
// tells the driver with a used buffer notification (an interrupt) unless the
// driver suppressed it (§2.7.7).
//
// # A device's loop
//
// A device runs one goroutine per virtqueue. When the driver notifies the
// queue (an available buffer notification: a write to the transport's notify
// register), the goroutine drains it:
//
//	var c virtio.DescChain
//	for {
//		q.DisableNotifications() // optional: no kicks while we are busy
//		for {
//			ok, err := q.Pop(&c)
//			if err != nil {
//				return err // the transport sets DEVICE_NEEDS_RESET
//			}
//			if !ok {
//				break
//			}
//			n := serve(&c) // read c's readable buffers, fill its writable ones
//			if err := q.AddUsed(c.Head, n); err != nil {
//				return err
//			}
//		}
//		if q.Publish() { // one used->idx store for the whole batch
//			interrupt() // used buffer notification
//		}
//		more, err := q.EnableNotifications()
//		if err != nil {
//			return err
//		}
//		if !more {
//			break // sleep until the next notification
//		}
//	}
//
// EnableNotifications re-checks the available ring after telling the driver
// to notify again, which closes the window in which the driver could add a
// buffer, see notifications still disabled, and not notify. With
// VIRTIO_F_EVENT_IDX, Pop also re-arms avail_event whenever it finds the ring
// empty while notifications are enabled, so a device that never calls
// DisableNotifications needs no EnableNotifications either.
//
// # Concurrency
//
// The rings live in guest RAM, which the guest's vCPUs change at any time.
// Fields the driver and the device both access while the queue runs (the
// indices, the flags and the event indices) are read and written with
// sequentially consistent atomic operations, which give the ordering §2.7.13
// and §2.7.14 ask for: the device reads avail->idx before the ring entries and
// descriptors it covers, writes used elements before used->idx, and publishes
// used->idx before it reads the driver's notification suppression fields.
// Everything else the device reads from guest memory (descriptors, ring
// entries) is copied out once and then validated and used from the copy, so
// a guest that changes a descriptor while the device walks it cannot make
// the device use a value other than the one it checked.
//
// A Virtqueue itself is not safe for concurrent use: one goroutine, the
// queue's worker, calls all of its methods. The transport must not call
// Enable or Reset while that goroutine may be using the queue; it asks the
// worker to do it, or stops the worker first.
//
// # Errors
//
// A driver that breaks the rules of §2.7 (a descriptor loop, a buffer
// outside guest RAM, an available index that moves by more than the queue
// size, ...) makes Pop return an error. The error sticks: every later call
// returns it until Reset. The device should then stop using the queue and the
// transport should set DEVICE_NEEDS_RESET in the device status and send a
// configuration change notification (§2.1.2). No guest input makes this
// package panic or touch memory outside guest RAM.
//
// # Not supported
//
// The packed virtqueue (§2.8, VIRTIO_F_RING_PACKED), VIRTIO_F_IN_ORDER and the
// legacy interface (guest-endian rings, §2.7.3) are not implemented: devices
// must not offer those features. Ring and buffer addresses are guest-physical
// addresses; there is no IOMMU, so VIRTIO_F_ACCESS_PLATFORM changes nothing
// here.
package virtio

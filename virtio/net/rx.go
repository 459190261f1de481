package net

import (
	"errors"
	"os"
	"sync/atomic"

	"github.com/govmm/govmm/virtio"
)

// rxBatch is how many packets the receive worker delivers before it
// publishes them, while the backend has more. Publishing once per batch
// makes one used->idx store and at most one interrupt for many packets;
// the bound keeps the driver from waiting behind a long burst.
const rxBatch = 64

// receiver serves receiveq1 (§5.1.6.3, §5.1.6.4) on a goroutine of its own.
//
// It never reads a packet from the backend before it holds buffers the
// driver posted that are large enough for any packet: the backend's own
// queue (the tap's, in the kernel) is where packets wait while the guest is
// slow, and where they are dropped if it stays slow, as on a real link;
// govmm drops none for want of buffers. So the worker waits for one of two things at a
// time: for the driver to post buffers (its queue's Kick) while it holds too
// few, and for a packet (in Backend.ReadPacket, on Go's poller for a tap)
// once it holds enough.
//
// "Enough" depends on VIRTIO_NET_F_MRG_RXBUF:
//
//   - Without it, every packet goes into one chain (§5.1.6.3.2: "The device
//     MUST use only a single descriptor", meaning one chain) and the driver
//     sizes its chains for the largest packet it can get (§5.1.6.3.1). One
//     chain is enough; a packet larger than it is cut short by the
//     backend, then dropped and counted.
//   - With it, a packet may spread over several chains, num_buffers telling
//     the driver how many. The worker pops chains until together they hold
//     rxBufferNeed bytes (a header and a MaxPacketLen packet), or until it
//     holds every chain the ring can have: then the driver cannot post
//     more, and waiting would deadlock. Chains it pops and does not fill
//     stay with it for the next packet; they are never given back to the
//     ring.
//
// The backend reads a packet straight into the held chains' buffers (one
// readv for a tap: the kernel's copy into guest RAM is the only one), except
// for the header, which lands in the receiver's own memory to be checked
// and completed before it is copied into the first chain.
type receiver struct {
	d   *Device
	run *activation
	q   *virtio.Queue

	// Negotiated features.
	mrg       bool // VIRTIO_NET_F_MRG_RXBUF
	guestCsum bool // VIRTIO_NET_F_GUEST_CSUM
	guestTSO4 bool // VIRTIO_NET_F_GUEST_TSO4
	guestTSO6 bool // VIRTIO_NET_F_GUEST_TSO6
	guestECN  bool // VIRTIO_NET_F_GUEST_ECN

	// held is a ring of the chains popped from the available ring and not
	// yet used, oldest first: held[first], ..., held[first+count-1] (mod
	// its length, the queue size, the most chains the driver can have
	// available). Their DescChains are reused, so a steady stream of
	// packets allocates nothing.
	held         []virtio.DescChain
	first, count int
	heldBytes    uint64 // the held chains' writable bytes

	hdr         [HeaderSize]byte // the packet's header, before it goes to the guest
	iov         [][]byte         // where the backend puts the next packet
	unpublished int              // chains added to the used ring since the last Publish
	idle        func()           // r.publish, bound once

	stop atomic.Bool   // set by Reset
	done chan struct{} // closed when loop returns
}

func newReceiver(d *Device, run *activation, q *virtio.Queue) *receiver {
	f := run.act.Features
	r := &receiver{
		d:         d,
		run:       run,
		q:         q,
		mrg:       f.Has(VIRTIO_NET_F_MRG_RXBUF),
		guestCsum: f.Has(VIRTIO_NET_F_GUEST_CSUM),
		guestTSO4: f.Has(VIRTIO_NET_F_GUEST_TSO4),
		guestTSO6: f.Has(VIRTIO_NET_F_GUEST_TSO6),
		guestECN:  f.Has(VIRTIO_NET_F_GUEST_ECN),
		// The driver can have at most Size chains available (§2.7).
		held: make([]virtio.DescChain, q.Size()),
		iov:  make([][]byte, 0, MaxBuffers),
		done: make(chan struct{}),
	}
	r.idle = r.publish
	return r
}

// chain returns the i-th oldest held chain.
func (r *receiver) chain(i int) *virtio.DescChain {
	return &r.held[(r.first+i)%len(r.held)]
}

// loop is the worker: it runs until Reset, a broken queue or the loss of
// the backend.
func (r *receiver) loop() {
	defer close(r.done)
	for !r.stop.Load() {
		if err := r.fill(); err != nil {
			r.broken(err)
			return
		}
		if !r.ready() {
			// Too few buffers. Let the driver see what was delivered,
			// then sleep until it posts more: ask for a notification
			// and check the ring once more, as the driver may have
			// posted buffers just before (§2.7.10).
			r.publish()
			more, err := r.q.EnableNotifications()
			if err != nil {
				r.broken(err)
				return
			}
			if !more {
				if _, err := r.q.Kick.Wait(); err != nil {
					if !errors.Is(err, os.ErrClosed) {
						r.broken(err)
					}
					return
				}
			}
			continue
		}
		capacity := r.gather()
		n, err := r.d.backend.ReadPacket(r.iov, r.idle)
		if err != nil {
			if errors.Is(err, ErrStopped) {
				continue // Reset: the loop condition ends it
			}
			r.publish()
			if errors.Is(err, ErrVanished) {
				r.d.reportVanished(r.run, err, true)
			} else if r.d.warnedRead.CompareAndSwap(false, true) {
				r.run.log.Error("virtio-net: reading from the backend failed; the guest receives nothing until the device is reset",
					"tap", r.d.name, "err", err)
			}
			return
		}
		if err := r.deliver(n, capacity); err != nil {
			r.broken(err)
			return
		}
	}
}

// broken reports an error from the queue: the driver broke it (§2.7), and
// the transport will set DEVICE_NEEDS_RESET.
func (r *receiver) broken(err error) {
	if !r.stop.Load() {
		r.run.act.Fail(err)
	}
}

// ready reports whether the held chains can take any packet.
func (r *receiver) ready() bool {
	if !r.mrg {
		return r.count > 0
	}
	return r.heldBytes >= rxBufferNeed || r.count == len(r.held)
}

// fill pops chains from the available ring until the receiver is ready or
// the ring is empty. While it holds enough it needs no notifications, so
// they stay disabled and posting buffers costs the driver no VM exit.
func (r *receiver) fill() error {
	r.q.DisableNotifications()
	for !r.ready() {
		c := &r.held[(r.first+r.count)%len(r.held)]
		ok, err := r.q.Pop(c)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if c.WritableLen() < HeaderSize {
			// A buffer must hold at least a header (§5.1.6.3.1): this
			// one cannot take any packet. It goes back unused.
			if err := r.q.AddUsed(c.Head, 0); err != nil {
				return err
			}
			r.unpublished++
			continue
		}
		r.count++
		r.heldBytes += uint64(c.WritableLen())
	}
	return nil
}

// gather lists the buffers the next packet may fill, in r.iov, and returns
// their total size: the header goes to r.hdr, the packet after it into the
// first held chain's writable buffers, and with VIRTIO_NET_F_MRG_RXBUF on
// into the next chains' until there is room for the largest packet.
func (r *receiver) gather() (capacity uint64) {
	r.iov = append(r.iov[:0], r.hdr[:])
	for i := range r.count {
		c := r.chain(i)
		bufs := c.WritableBuffers()
		if i == 0 {
			// The first HeaderSize bytes of the first chain are the
			// header's place: they are written after the header has
			// been completed.
			r.iov = virtio.SliceBuffers(r.iov, bufs, HeaderSize, uint64(c.WritableLen())-HeaderSize)
		} else {
			if len(r.iov)+len(bufs) > MaxBuffers {
				break
			}
			r.iov = append(r.iov, bufs...)
		}
		capacity += uint64(c.WritableLen())
		if !r.mrg || capacity >= rxBufferNeed {
			break
		}
	}
	if len(r.iov) > MaxBuffers {
		// A first chain of more descriptors than that: the packet must
		// fit in the first ones.
		for _, b := range r.iov[MaxBuffers:] {
			capacity -= uint64(len(b))
		}
		r.iov = r.iov[:MaxBuffers]
	}
	return capacity
}

// deliver hands the driver a packet of n bytes, header included, that the
// backend put where gather said: it completes the header, then returns the
// chains the packet fills to the driver through the used ring. A packet
// that cannot be delivered is dropped without using any chain.
func (r *receiver) deliver(n int, capacity uint64) error {
	s := &r.d.stats
	if n < HeaderSize+ethHeaderLen || uint64(n) > capacity {
		// Runt, or truncated: the packet was larger than the buffers.
		s.rxDropped.Add(1)
		return nil
	}
	h := DecodeHeader(r.hdr[:])
	if !r.headerAllowed(h) {
		s.rxDropped.Add(1)
		return nil
	}
	if r.guestCsum {
		// RSC_INFO needs VIRTIO_NET_F_RSC_EXT (§5.1.6.4.1).
		h.Flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID
	} else {
		// "If VIRTIO_NET_F_GUEST_CSUM is not negotiated, the device MUST
		// set flags to zero" (§5.1.6.4.1). A tap without TUN_F_CSUM
		// sends full checksums but may still say DATA_VALID.
		h.Flags = 0
	}

	// Every chain but the last is filled to its full length (§5.1.6.4.1:
	// "the device MUST use all buffers but the last ... completely"),
	// which is how readv filled them.
	used := 0
	for rem := uint64(n); rem > 0; used++ {
		rem -= min(rem, uint64(r.chain(used).WritableLen()))
	}
	// "The device MUST set num_buffers to the number of descriptors used
	// to hold the incoming packet" (§5.1.6.3.2): 1 without MRG_RXBUF. A
	// tap does not write this field (it is not in the kernel's 10-byte
	// struct virtio_net_hdr), so it is always the device's.
	h.NumBuffers = uint16(used)
	h.Encode(r.hdr[:])
	if _, err := r.chain(0).WriteAt(r.hdr[:], 0); err != nil {
		return err // cannot happen: fill checked the chain's size
	}
	rem := uint64(n)
	for range used {
		c := r.chain(0)
		size := uint64(c.WritableLen())
		l := min(rem, size)
		if err := r.q.AddUsed(c.Head, uint32(l)); err != nil {
			return err
		}
		rem -= l
		r.heldBytes -= size
		r.first = (r.first + 1) % len(r.held)
		r.count--
	}
	s.rxPackets.Add(1)
	s.rxBytes.Add(uint64(n - HeaderSize))
	r.unpublished++
	if r.unpublished >= rxBatch {
		r.publish()
	}
	return nil
}

// headerAllowed checks a received header against what the driver can take
// (§5.1.6.4.1): a segmentation offload packet only with its GUEST_
// feature, ECN only with VIRTIO_NET_F_GUEST_ECN, and always with a partial
// checksum. The backend was told these features in Start, so only packets
// it queued before may break the rules.
func (r *receiver) headerAllowed(h Header) bool {
	ecn := h.GSOType&VIRTIO_NET_HDR_GSO_ECN != 0
	switch h.GSOType &^ VIRTIO_NET_HDR_GSO_ECN {
	case VIRTIO_NET_HDR_GSO_NONE:
		return !ecn
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if !r.guestTSO4 {
			return false
		}
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if !r.guestTSO6 {
			return false
		}
	default:
		return false
	}
	// "If gso_type differs from VIRTIO_NET_HDR_GSO_NONE, then the device
	// MUST also set the VIRTIO_NET_HDR_F_NEEDS_CSUM bit" (§5.1.6.4.1).
	return (!ecn || r.guestECN) && h.Flags&VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
}

// publish makes the delivered packets visible to the driver and interrupts
// it if it asked (§2.7.7), unless a transmit batch is running: the
// transmit worker then sends the interrupt (see rxHold). The backend calls
// publish, as idle, before it blocks.
func (r *receiver) publish() {
	r.unpublished = 0
	if r.q.Publish() && !r.run.hold.hold() {
		r.q.Interrupt()
	}
}

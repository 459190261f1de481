package net

import (
	"errors"

	"github.com/govmm/govmm/virtio"
)

// transmitter serves transmitq1 (§5.1.6.2): each chain the driver makes
// available is one packet, a virtio_net_hdr and an Ethernet frame in the
// chain's device-readable buffers. It runs on a virtio.Worker, which calls
// drain after every kick; virtio.Drain takes every available chain,
// publishes each completion as soon as the packet is written, and
// interrupts the driver when it asked for one.
type transmitter struct {
	d   *Device
	run *activation
	q   *virtio.Queue

	// The negotiated features that decide which headers the driver may
	// send (§5.1.6.2.1).
	csum, tso4, tso6, ecn bool

	chain     virtio.DescChain // reused for every chain: no allocation per packet
	serve     virtio.ServeFunc // t.sendHeld, bound once
	interrupt func()           // t.txInterrupt, bound once
	sent      uint64           // packets sent, for rxHold's bound
	// hdr is the device's own copy of the packet's header. The buffers
	// are guest RAM, which a hostile guest can change while the device
	// works, so the header is checked and handed to the backend from
	// here, never read twice from guest RAM.
	hdr [HeaderSize]byte
	iov [][]byte // the packet as the backend gets it: hdr, then guest RAM
}

func newTransmitter(d *Device, run *activation, q *virtio.Queue) *transmitter {
	f := run.act.Features
	t := &transmitter{
		d:    d,
		run:  run,
		q:    q,
		csum: f.Has(VIRTIO_NET_F_CSUM),
		tso4: f.Has(VIRTIO_NET_F_HOST_TSO4),
		tso6: f.Has(VIRTIO_NET_F_HOST_TSO6),
		ecn:  f.Has(VIRTIO_NET_F_HOST_ECN),
		iov:  make([][]byte, 0, MaxBuffers),
	}
	t.serve = t.sendHeld
	t.interrupt = t.txInterrupt
	return t
}

// drain is the worker's job: transmit everything the driver queued. It
// holds the receive queue's interrupts meanwhile and sends the one held,
// if any, when it is done (see rxHold).
func (t *transmitter) drain() error {
	t.run.hold.begin()
	err := virtio.DrainNotifying(t.q, &t.chain, t.serve, t.interrupt)
	if t.run.hold.release(false) {
		t.rxInterrupt()
	}
	return err
}

// sendHeld is send, letting a held receive interrupt go every
// maxHeldPackets packets.
func (t *transmitter) sendHeld(c *virtio.DescChain) (uint32, error) {
	n, err := t.send(c)
	t.sent++
	if t.sent%maxHeldPackets == 0 {
		t.letHeldGo()
	}
	return n, err
}

// txInterrupt sends the transmit queue's used buffer notification, which
// also settles a held receive notification: KVM kicks a running vCPU out
// of the guest once for both (the second finds it already leaving,
// kvm_vcpu_kick), where the receive interrupt alone, later, would stop it
// again.
//
// Where both queues share a line (Device.ShareQueueInterrupt asks for
// that), the one interrupt is the receive queue's notification too: the
// driver looks at every queue behind the vector. The held notification is
// taken before the message goes out, so every receive publish it stands
// for came before the message (the receive worker publishes, then marks
// the notification held); a publish after the take holds a notification
// again, for later. Otherwise the receive interrupt follows the transmit
// one at once.
func (t *transmitter) txInterrupt() {
	if t.q.SharesInterrupt(t.run.queue(receiveq1)) {
		t.run.hold.release(true)
		t.q.Interrupt()
		return
	}
	t.q.Interrupt()
	t.letHeldGo()
}

// letHeldGo sends the held receive interrupt, if any, while the batch goes
// on.
func (t *transmitter) letHeldGo() {
	if t.run.hold.release(true) {
		t.rxInterrupt()
	}
}

// rxInterrupt sends the receive queue's used buffer notification that
// the receive worker left to the transmitter.
func (t *transmitter) rxInterrupt() {
	if q := t.run.queue(receiveq1); q != nil {
		q.Interrupt()
	}
}

// send transmits the packet in c. It never fails: a malformed or
// undeliverable packet is dropped and counted, and the chain is completed
// all the same, with a used length of 0 since the device writes nothing
// into a transmit buffer. Only a broken queue stops the worker, and that
// error comes from Pop, in virtio.Drain.
func (t *transmitter) send(c *virtio.DescChain) (uint32, error) {
	const written = 0
	s := &t.d.stats
	n := uint64(c.ReadableLen())
	// A packet is a header and at least an Ethernet header, at most the
	// largest packet the offloads allow (§5.1.6.2). Device-writable
	// buffers in a transmit chain have no meaning; they are ignored.
	if n < HeaderSize+ethHeaderLen || n > HeaderSize+MaxPacketLen {
		s.txErrors.Add(1)
		return written, nil
	}
	// c is fresh from Pop, so Read starts at the first readable byte.
	if _, err := c.Read(t.hdr[:]); err != nil {
		s.txErrors.Add(1)
		return written, nil
	}
	h := DecodeHeader(t.hdr[:])
	if !t.headerAllowed(h) {
		s.txErrors.Add(1)
		return written, nil
	}
	// "The device MUST ignore flag bits that it does not recognize"
	// (§5.1.6.2.2): only NEEDS_CSUM means anything on transmit, so only
	// it reaches the backend. num_buffers is unused on transmit; the
	// driver "MUST set num_buffers to zero" (§5.1.6.2.1), and so does the
	// device's copy.
	h.Flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM
	h.NumBuffers = 0
	h.Encode(t.hdr[:])

	// The frame goes to the backend straight from guest RAM: the iovec
	// points into the chain's buffers, and the kernel's copy into its
	// socket buffer is the only copy of the payload.
	t.iov = append(t.iov[:0], t.hdr[:])
	t.iov = virtio.SliceBuffers(t.iov, c.ReadableBuffers(), HeaderSize, n-HeaderSize)
	if len(t.iov) > MaxBuffers {
		// More buffers than one writev takes (Linux uses at most
		// MAX_SKB_FRAGS + 2 for a packet).
		s.txErrors.Add(1)
		return written, nil
	}
	if t.d.vanished.Load() {
		s.txDropped.Add(1)
		return written, nil
	}
	err := t.d.backend.WritePacket(t.iov)
	clear(t.iov) // keep no references to guest RAM between packets
	switch {
	case err == nil:
		s.txPackets.Add(1)
		s.txBytes.Add(n - HeaderSize)
	case errors.Is(err, ErrStopped):
		// Reset is stopping the device; the driver will not look at
		// this chain again.
		s.txDropped.Add(1)
	case errors.Is(err, ErrVanished):
		s.txDropped.Add(1)
		t.d.reportVanished(t.run, err, true)
	default:
		// The tap refused this packet: a header the kernel does not
		// accept (EINVAL), the link down (EIO), no memory. Counted;
		// logged once, as a guest can cause any number of them.
		s.txDropped.Add(1)
		if t.d.warnedWrite.CompareAndSwap(false, true) {
			t.run.log.Warn("virtio-net: backend refused a packet; further refusals are only counted",
				"tap", t.d.name, "err", err)
		}
	}
	return written, nil
}

// headerAllowed checks a transmitted header against the features the
// driver negotiated (§5.1.6.2.1): partial checksums need
// VIRTIO_NET_F_CSUM, each segmentation offload its HOST_ feature, and a
// segmentation offload packet a partial checksum and an MSS. The tap's
// kernel side checks the rest (virtio_net_hdr_to_skb in
// include/linux/virtio_net.h: csum_start and csum_offset inside the
// packet, gso_type against the frame's protocol).
func (t *transmitter) headerAllowed(h Header) bool {
	needsCsum := h.Flags&VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
	if needsCsum && !t.csum {
		return false
	}
	ecn := h.GSOType&VIRTIO_NET_HDR_GSO_ECN != 0
	switch h.GSOType &^ VIRTIO_NET_HDR_GSO_ECN {
	case VIRTIO_NET_HDR_GSO_NONE:
		return !ecn
	case VIRTIO_NET_HDR_GSO_TCPV4:
		if !t.tso4 {
			return false
		}
	case VIRTIO_NET_HDR_GSO_TCPV6:
		if !t.tso6 {
			return false
		}
	default:
		// UDP fragmentation and segmentation are not offered.
		return false
	}
	// "If gso_type differs from VIRTIO_NET_HDR_GSO_NONE, then the driver
	// MUST also set the VIRTIO_NET_HDR_F_NEEDS_CSUM bit in flags and MUST
	// set gso_size to indicate the desired MSS." (§5.1.6.2.1)
	return (!ecn || t.ecn) && needsCsum && h.GSOSize != 0
}

package net

import "sync/atomic"

// rxHold lets the transmit worker hold back the receive queue's used
// buffer notifications while it drains the transmit queue, and send them
// itself: with its own next interrupt (KVM kicks a running vCPU out once
// for both), or as that interrupt where both queues share a line, after
// maxHeldPackets packets, or when the batch ends, whichever comes first
// (see transmitter.txInterrupt).
//
// Why: while a guest sends a TCP stream, the host's ACKs come back through
// the tap while the transmit worker is still writing the guest's packets
// (the host's stack can answer a segment from inside the writev that
// delivered it). The receive worker, on its own thread, delivers each
// ACK at once, and each delivery the driver asked to hear about (its
// used_event, §2.7.10) is an interrupt: under KVM an MSI that stops the
// running vCPU, and a guest EOI. A VMM that serves both queues from one
// thread, as QEMU's main loop does, finds those ACKs only after its
// transmit batch and delivers them together with one interrupt. Holding
// the receive queue's notification while the batch runs gives the same
// coalescing without giving up the second thread: the packets are put in
// the used ring and published at once, only the interrupt waits.
// docs/benchmarks.md has the measurement that led here.
//
// The wait is bounded: the transmit worker lets a held notification go
// every maxHeldPackets packets, so a long transmit burst cannot starve the
// guest's receive path (and with it the ACKs the sender needs).
//
// The virtio specification allows this: it sets no time by which a used
// buffer notification must follow the used ring's update, and "the driver
// MUST handle spurious notifications from the device" (§2.7.7.1), such as
// one that comes after the driver already found the buffers by polling.
// No notification is lost: the held one is sent, by one worker or the
// other, after every publish that asked for it.
type rxHold struct {
	state atomic.Uint32 // holdTXBusy | holdRXPending
}

const (
	// holdTXBusy: the transmit worker is draining its queue.
	holdTXBusy uint32 = 1 << iota
	// holdRXPending: the receive worker published buffers the driver
	// asked to be notified of, and left the notification to the
	// transmit worker.
	holdRXPending
)

// maxHeldPackets is how many packets the transmit worker may send while
// it holds a receive notification. With TCP segmentation offload a packet
// is up to 64 KiB, so this bounds the wait to about 1 MiB of transmitting.
const maxHeldPackets = 16

// begin marks the start of a transmit batch.
func (h *rxHold) begin() { h.state.Or(holdTXBusy) }

// hold is the receive worker's question after a publish that needs a
// notification: it returns true if a transmit batch is running, which then
// owns the notification, and false if the caller must send it now. The
// compare-and-swap makes the two cases exclusive: a batch that ends
// between the load and the swap changes the state, and the loop then
// finds it idle.
func (h *rxHold) hold() bool {
	for {
		s := h.state.Load()
		if s&holdTXBusy == 0 {
			return false
		}
		if s&holdRXPending != 0 || h.state.CompareAndSwap(s, s|holdRXPending) {
			return true
		}
	}
}

// release takes a held notification, returning true if there was one for
// the caller to send. With busy the batch goes on; without, it has ended.
func (h *rxHold) release(busy bool) bool {
	var old uint32
	if busy {
		old = h.state.And(^holdRXPending)
	} else {
		old = h.state.Swap(0)
	}
	return old&holdRXPending != 0
}

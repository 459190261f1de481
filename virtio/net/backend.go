package net

import (
	"errors"

	"github.com/govmm/govmm/virtio"
)

// Backend is the host end of the virtual link: where the packets the driver
// transmits go, and where the packets it receives come from. Tap is the
// real one; the tests use a fake.
//
// Every packet crosses the interface with its struct virtio_net_hdr in
// front (HeaderSize bytes, §5.1.6): a tap opened with IFF_VNET_HDR speaks
// the same header as the driver, so checksum and segmentation offloads pass
// through without the device touching the packet's bytes.
//
// The device calls ReadPacket from its receive goroutine and WritePacket
// from its transmit goroutine, each from one goroutine at a time but the
// two concurrently; Start and Stop come from the device's Activate and
// Reset, concurrently with both.
type Backend interface {
	// Start readies the backend for a driver that accepted the negotiated
	// features: a tap programs the receive offloads the driver can take.
	// It undoes Stop.
	Start(negotiated virtio.Features) error
	// ReadPacket reads one packet, header first, into bufs, which it
	// fills in order, and returns the packet's length. If the packet did
	// not fit, the length is larger than the buffers (at least by one)
	// and the rest of the packet is lost. When no packet is waiting, ReadPacket calls idle (if
	// not nil, and possibly more than once) and then blocks until one
	// arrives or Stop is called.
	ReadPacket(bufs [][]byte, idle func()) (int, error)
	// WritePacket sends one packet, header first, gathered from bufs.
	WritePacket(bufs [][]byte) error
	// Stop makes ReadPacket and WritePacket return ErrStopped promptly,
	// blocked calls included, until the next Start.
	Stop()
	// Close releases the backend. For a tap govmm created, the interface
	// goes away.
	Close() error
}

// MaxBuffers is the most buffers the device hands to ReadPacket or
// WritePacket at a time: one less than a readv or writev takes (UIO_MAXIOV,
// include/uapi/linux/uio.h), so that a backend can add one of its own.
const MaxBuffers = iovMax - 1

var (
	// ErrStopped is returned by a Backend's ReadPacket and WritePacket
	// after Stop.
	ErrStopped = errors.New("virtio-net: backend stopped")
	// ErrVanished is returned (wrapped, naming the interface) by a
	// Backend whose host interface went away: a tap that was deleted
	// while govmm had it open. It is final: the device stops receiving
	// and drops what the driver transmits.
	ErrVanished = errors.New("interface vanished")
)

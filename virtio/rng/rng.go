// Package rng is the virtio entropy device, virtio-rng (virtio 1.2 §5.4):
// the guest hands it empty buffers and gets them back full of random bytes
// from the host kernel's CSPRNG. Linux's virtio_rng driver feeds them to
// the guest's hwrng and from there to its own entropy pool.
//
// It is the smallest virtio device there is (one queue, no feature bits,
// no configuration space) and so a model for the others: a Device that
// starts a virtio.Worker per queue in Activate, serves each chain with a
// virtio.ServeFunc through virtio.Drain, and stops its workers in Reset.
package rng

import (
	"crypto/rand"
	"sync"

	"github.com/govmm/govmm/virtio"
)

// The device's one virtqueue (§5.4.2): requestq, queue 0.
const requestQ = 0

// QueueSize is the maximum size of requestq. The driver keeps one request
// in flight at a time (Linux's virtio_rng does), so a small queue is
// plenty; QEMU uses 8.
const QueueSize = 64

// MaxBytesPerChain is the most random bytes the device puts into one
// descriptor chain. A chain may describe up to 4 GiB of writable buffers;
// the spec lets the device use less than all of it (§5.4.6.1: "The device
// MUST place one or more random bytes into the buffer, but it MAY use less
// than the entire buffer length"), and capping it bounds the work one
// request can make govmm do. Linux asks for at most a few hundred bytes.
const MaxBytesPerChain = 64 << 10

// Device is a virtio entropy device. The zero value is not usable; call
// New.
type Device struct {
	mu     sync.Mutex
	worker *virtio.Worker // requestq's, while active
}

// New returns an entropy device, reset.
func New() *Device { return &Device{} }

// DeviceID returns VIRTIO_ID_RNG (§5.4.1).
func (d *Device) DeviceID() uint16 { return virtio.VIRTIO_ID_RNG }

// Features returns no feature bits: "None currently defined" (§5.4.3).
func (d *Device) Features() virtio.Features { return 0 }

// QueueMaxSizes returns the size of the one queue, requestq.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig reads zeros: the device has no configuration (§5.4.4, "None
// currently defined").
func (d *Device) ReadConfig(_ uint64, data []byte) { clear(data) }

// WriteConfig ignores writes.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate starts serving requestq. A driver that did not enable the
// queue gets a device that does nothing.
func (d *Device) Activate(a *virtio.Activation) error {
	q := a.Queues[requestQ]
	if q == nil {
		return nil
	}
	var c virtio.DescChain // the worker's, reused for every chain
	w := virtio.StartWorker(q, func() error { return virtio.Drain(q, &c, fill) }, a.Fail)
	d.mu.Lock()
	d.worker = w
	d.mu.Unlock()
	return nil
}

// fill serves one request (§5.4.6): it fills the chain's device-writable
// buffers with random bytes, up to MaxBytesPerChain, and returns how many
// it wrote. The device-readable buffers, which a request has no use for,
// are ignored; a chain with none writable gets 0 bytes.
func fill(c *virtio.DescChain) (uint32, error) {
	var written uint32
	for _, b := range c.WritableBuffers() {
		n := min(len(b), MaxBytesPerChain-int(written))
		// crypto/rand reads the kernel's CSPRNG (getrandom(2)) straight
		// into guest memory; it never fails and always fills b.
		_, _ = rand.Read(b[:n])
		written += uint32(n)
		if written == MaxBytesPerChain {
			break
		}
	}
	return written, nil
}

// Reset stops the worker; it returns once the worker no longer touches the
// queue.
func (d *Device) Reset() {
	d.mu.Lock()
	w := d.worker
	d.worker = nil
	d.mu.Unlock()
	w.Stop()
}

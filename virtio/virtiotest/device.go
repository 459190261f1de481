package virtiotest

import (
	"sync"

	"github.com/govmm/govmm/virtio"
)

// FakeDevice is a virtio.Device for transport tests: it records what the
// transport does to it and lets a test act as the device through the
// Activation it was given. Its configuration space is eight bytes,
// 1 to 8; bytes past them read 0 and ignore writes.
type FakeDevice struct {
	ID          uint16          // the device ID; 0x20 from NewFakeDevice
	Offered     virtio.Features // what Features returns
	Sizes       []uint16        // the queues' maximum sizes
	ActivateErr error           // what Activate returns, if not nil

	mu          sync.Mutex
	config      [8]byte
	act         *virtio.Activation
	activations int
	resets      int
	maxEnd      uint64 // the furthest byte a config access reached
}

// NewFakeDevice returns a device with the given queue sizes, one queue of
// 16 if none are given.
func NewFakeDevice(sizes ...uint16) *FakeDevice {
	if len(sizes) == 0 {
		sizes = []uint16{16}
	}
	return &FakeDevice{ID: 0x20, Sizes: sizes, config: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
}

func (d *FakeDevice) DeviceID() uint16          { return d.ID }
func (d *FakeDevice) Features() virtio.Features { return d.Offered }
func (d *FakeDevice) QueueMaxSizes() []uint16   { return d.Sizes }

func (d *FakeDevice) ReadConfig(offset uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxEnd = max(d.maxEnd, offset+uint64(len(data)))
	for i := range data {
		if o := offset + uint64(i); o < uint64(len(d.config)) {
			data[i] = d.config[o]
		} else {
			data[i] = 0
		}
	}
}

func (d *FakeDevice) WriteConfig(offset uint64, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.maxEnd = max(d.maxEnd, offset+uint64(len(data)))
	for i, v := range data {
		if o := offset + uint64(i); o < uint64(len(d.config)) {
			d.config[o] = v
		}
	}
}

func (d *FakeDevice) Activate(a *virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ActivateErr != nil {
		return d.ActivateErr
	}
	d.act = a
	d.activations++
	return nil
}

func (d *FakeDevice) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.act = nil
	d.resets++
}

// Activation returns the current activation, nil before DRIVER_OK and
// after a reset.
func (d *FakeDevice) Activation() *virtio.Activation {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.act
}

// Counts returns how many times the device was activated and reset.
func (d *FakeDevice) Counts() (activations, resets int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.activations, d.resets
}

// MaxConfigEnd returns the furthest byte of the configuration space an
// access reached, counted from its start.
func (d *FakeDevice) MaxConfigEnd() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxEnd
}

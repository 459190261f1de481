package net

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/virtio"
)

// Device is a virtio network device (§5.1) in front of a Backend. It
// implements virtio.Device.
type Device struct {
	name    string // the tap's name, for the log
	mac     [macLen]byte
	backend Backend

	// status is virtio_net_config.status. vCPUs read it through
	// ReadConfig while a worker may clear VIRTIO_NET_S_LINK_UP.
	status atomic.Uint32

	mu     sync.Mutex // serializes Activate, Reset and Close
	run    *activation
	closed bool

	// vanished is set once the backend reported ErrVanished; it never
	// clears, as the tap's file stays detached from any interface.
	vanished atomic.Bool
	// warnedRead and warnedWrite record that an unexpected backend error
	// was logged, so that a stream of them is counted, not logged.
	warnedRead  atomic.Bool
	warnedWrite atomic.Bool

	stats stats
}

// activation is the state of one activation, from Activate to Reset.
type activation struct {
	act *virtio.Activation
	log *slog.Logger
	rx  *receiver      // nil if the driver did not enable receiveq1
	tx  *virtio.Worker // nil if it did not enable transmitq1

	// hold passes the receive queue's interrupts to the transmit worker
	// while it is busy (see rxHold).
	hold rxHold
}

// queue returns queue i of the activation, or nil if the driver did not
// enable it.
func (run *activation) queue(i int) *virtio.Queue {
	if i >= len(run.act.Queues) {
		return nil
	}
	return run.act.Queues[i]
}

// New returns a network device with the address in opts (or one derived
// from opts.TapName) that sends and receives through backend. The device
// owns the backend from then on: Close closes it.
func New(opts Options, backend Backend) (*Device, error) {
	if backend == nil {
		return nil, errors.New("virtio-net: no backend")
	}
	mac := opts.MAC
	if mac == nil {
		if opts.TapName == "" {
			return nil, errors.New("virtio-net: need a tap name or a MAC address")
		}
		mac = MACFromName(opts.TapName)
	}
	if err := checkMAC(mac); err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	d := &Device{name: opts.TapName, backend: backend}
	copy(d.mac[:], mac)
	d.status.Store(VIRTIO_NET_S_LINK_UP)
	return d, nil
}

// MAC returns the device's Ethernet address.
func (d *Device) MAC() net.HardwareAddr { return append(net.HardwareAddr(nil), d.mac[:]...) }

// DeviceID implements virtio.Device: VIRTIO_ID_NET (§5.1.1).
func (d *Device) DeviceID() uint16 { return virtio.VIRTIO_ID_NET }

// Features implements virtio.Device.
func (d *Device) Features() virtio.Features {
	var f virtio.Features
	for _, bit := range offeredFeatures {
		f = f.With(bit)
	}
	return f
}

// QueueMaxSizes implements virtio.Device: receiveq1 and transmitq1 (§5.1.2).
func (d *Device) QueueMaxSizes() []uint16 {
	return []uint16{receiveq1: QueueSize, transmitq1: QueueSize}
}

// ShareQueueInterrupt implements virtio.QueueInterruptSharer: both queues
// share one interrupt. While the guest sends, the host's replies (TCP's
// ACKs) come back on the receive queue as the transmit queue completes
// its packets, and the other way round while it receives; with one
// vector, the interrupt either queue sends makes the driver collect both,
// where two vectors would interrupt the guest twice. It also lets a
// transmit interrupt stand for the receive notification that rxHold held
// back (see transmitter.txInterrupt).
func (d *Device) ShareQueueInterrupt() bool { return true }

// config returns struct virtio_net_config as the driver sees it now.
func (d *Device) config() [configSize]byte {
	var c [configSize]byte
	copy(c[configMACOff:], d.mac[:])
	binary.LittleEndian.PutUint16(c[configStatusOff:], uint16(d.status.Load()))
	// max_virtqueue_pairs is only meaningful with VIRTIO_NET_F_MQ, which
	// the device does not offer; it has one pair.
	binary.LittleEndian.PutUint16(c[configMaxVirtqueuePairsOff:], 1)
	// mtu stays 0: VIRTIO_NET_F_MTU is not offered, so the driver picks
	// its MTU (1500 by default) and the host sets the tap's.
	return c
}

// ReadConfig implements virtio.Device. Any offset and length works: bytes
// past virtio_net_config read as zero.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	c := d.config()
	clear(data)
	if offset < configSize {
		copy(data, c[offset:])
	}
}

// WriteConfig implements virtio.Device. "All of the device configuration
// fields are read-only for the driver" (§5.1.4), so writes are ignored.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: it programs the backend for the
// negotiated features and starts one goroutine per queue.
func (d *Device) Activate(a *virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("virtio-net: device is closed")
	}
	d.stopLocked()
	if len(a.Queues) != numQueues {
		return fmt.Errorf("virtio-net: activated with %d queues, want %d", len(a.Queues), numQueues)
	}
	log := a.Log
	if log == nil {
		log = slog.Default()
	}
	run := &activation{act: a, log: log}
	if err := d.backend.Start(a.Features); err != nil {
		if !errors.Is(err, ErrVanished) {
			return fmt.Errorf("virtio-net: tap %s: %w", d.name, err)
		}
		// No configuration change notification from inside Activate,
		// which the transport runs while the driver sets DRIVER_OK:
		// Linux reads status right after that anyway (virtnet_probe).
		d.reportVanished(run, err, false)
	}
	if q := a.Queues[receiveq1]; q != nil && !d.vanished.Load() {
		run.rx = newReceiver(d, run, q)
		go run.rx.loop()
	}
	if q := a.Queues[transmitq1]; q != nil {
		t := newTransmitter(d, run, q)
		run.tx = virtio.StartWorker(q, t.drain, a.Fail)
	}
	d.run = run
	return nil
}

// Reset implements virtio.Device. It returns once both workers have
// stopped; a packet a worker was handling is lost, as on real hardware.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopLocked()
}

// stopLocked stops the workers of the current activation, if any.
func (d *Device) stopLocked() {
	run := d.run
	if run == nil {
		return
	}
	d.run = nil
	if run.rx != nil {
		run.rx.stop.Store(true)
	}
	// Stop wakes a worker blocked in the backend (the receive worker
	// waiting for a packet, the transmit worker for room to write); the
	// Kick signals wake workers waiting for the driver.
	d.backend.Stop()
	if run.rx != nil {
		_ = run.rx.q.Kick.Signal()
		<-run.rx.done
	}
	run.tx.Stop() // nil-safe
	if !d.vanished.Load() {
		d.status.Store(VIRTIO_NET_S_LINK_UP)
	}
}

// Close resets the device and closes its backend; a tap govmm created
// disappears from the host.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.stopLocked()
	d.closed = true
	return d.backend.Close()
}

// reportVanished handles ErrVanished from the backend, once per device: it
// logs it, naming the tap, and takes the link down (VIRTIO_NET_S_LINK_UP
// cleared, §5.1.4), telling the driver through a configuration change
// notification when notify is set and it negotiated VIRTIO_NET_F_STATUS.
// The VM keeps running.
func (d *Device) reportVanished(run *activation, err error, notify bool) {
	if !d.vanished.CompareAndSwap(false, true) {
		return
	}
	run.log.Error("virtio-net: tap vanished; the guest keeps running without this network link",
		"tap", d.name, "err", err)
	d.status.Store(0)
	if notify && run.act.Features.Has(VIRTIO_NET_F_STATUS) && run.act.ConfigChanged != nil {
		run.act.ConfigChanged()
	}
}

// Stats are the device's packet counters since New.
type Stats struct {
	RXPackets uint64 // packets delivered to the driver
	RXBytes   uint64 // their bytes, without the virtio_net_hdr
	RXDropped uint64 // packets read from the backend and not delivered
	TXPackets uint64 // packets the backend took
	TXBytes   uint64 // their bytes, without the virtio_net_hdr
	TXDropped uint64 // well-formed packets the backend refused or that found it gone
	TXErrors  uint64 // malformed transmit chains, completed and dropped
}

type stats struct {
	rxPackets, rxBytes, rxDropped           atomic.Uint64
	txPackets, txBytes, txDropped, txErrors atomic.Uint64
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	s := &d.stats
	return Stats{
		RXPackets: s.rxPackets.Load(), RXBytes: s.rxBytes.Load(), RXDropped: s.rxDropped.Load(),
		TXPackets: s.txPackets.Load(), TXBytes: s.txBytes.Load(), TXDropped: s.txDropped.Load(),
		TXErrors: s.txErrors.Load(),
	}
}

var (
	_ virtio.Device               = (*Device)(nil)
	_ virtio.QueueInterruptSharer = (*Device)(nil)
)

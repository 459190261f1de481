// Package transport is the part of a virtio transport that is the same on
// every bus: feature negotiation, the device status state machine, the
// virtqueue registers, device reset and the activation of a virtio.Device
// (virtio 1.2 §2.1, §2.2, §2.4, §3.1). Only the way the driver reaches
// those registers and the way the device interrupts it depend on the bus.
//
// A Core holds that state; a bus transport (virtio/virtiopci, virtio over
// PCI, §4.1; virtio/virtiommio, virtio over MMIO, §4.2) decodes the
// guest's register accesses into calls on it and supplies the interrupts.
//
// # Concurrency
//
// The transport serialises the driver's register accesses with a lock of
// its own and calls every method of Core with it held, except where a
// method's comment says otherwise. The callbacks a Core hands the device
// (through virtio.Activation) run on the device's goroutines and never
// take that lock: a reset holds it while Device.Reset waits for those
// goroutines, so they must be able to finish without it.
package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
)

// FeatureWords is how many 32-bit words of feature bits the feature
// registers of both transports reach: bits 0 to 127 (§6), selected 32 at a
// time by the feature select registers (§4.1.4.3, §4.2.2).
const FeatureWords = 4

// Features are the feature bits every transport offers for every device
// (§6): VIRTIO_F_VERSION_1 because both transports are the modern
// interface ("A device MUST offer VIRTIO_F_VERSION_1", §6.1), and the two
// virtqueue features package virtio implements. VIRTIO_F_RING_RESET and
// VIRTIO_F_NOTIFICATION_DATA are not offered.
var Features = virtio.Features(0).
	With(virtio.VIRTIO_F_VERSION_1).
	With(virtio.VIRTIO_F_INDIRECT_DESC).
	With(virtio.VIRTIO_F_EVENT_IDX)

// DeviceTypeFeatures are the bits a device type may define (§6: bits 0 to
// 23 and 50 to 127; bits 24 to 49 are reserved for the transport and the
// queues). The Core masks Device.Features with it, so a device cannot offer
// a queue feature the transport does not implement.
const DeviceTypeFeatures = virtio.Features(1<<24-1) | ^virtio.Features(1<<50-1)

// QueueRegs are the registers of one virtqueue that both transports have,
// as the driver programs them after selecting the queue (§4.1.4.3
// queue_size, queue_enable, queue_desc, queue_driver, queue_device;
// §4.2.2 QueueNum, QueueReady, QueueDesc*, QueueDriver*, QueueDevice*).
type QueueRegs struct {
	Size   uint16 // the size the driver chose; the maximum on reset
	Enable bool   // queue_enable / QueueReady
	Desc   uint64 // the Descriptor Area
	Driver uint64 // the Driver Area (available ring)
	Device uint64 // the Device Area (used ring)
}

// LowHalf masks the low 32 bits of a 64-bit queue address.
const LowHalf = 1<<32 - 1

// SetHalf replaces the low or high 32 bits of the queue address *reg with
// v: the driver writes each address as two 32-bit halves (§4.1.3.1: "the
// driver MAY access each of the high and low 32-bit parts of the field
// independently"; virtio-mmio's Low and High registers, §4.2.2).
func SetHalf(reg *uint64, high bool, v uint32) {
	if high {
		*reg = *reg&LowHalf | uint64(v)<<32
	} else {
		*reg = *reg&^LowHalf | uint64(v)
	}
}

// Interrupts are how a bus transport notifies the driver. Each function is
// called from the device's goroutines, or from a vCPU goroutine with the
// transport's lock held when the transport fails the device, so none may
// take that lock.
type Interrupts struct {
	// Queue sends a used buffer notification for queue i (§2.7.7.2,
	// §4.1.5.4, §4.2.3.4).
	Queue func(i int)
	// Line is virtio.Queue.InterruptLine for queue i: the same number for
	// queues whose notifications reach the driver as one interrupt.
	Line func(i int) uint32
	// Config sends a configuration change notification (§4.1.5.3,
	// §4.2.3.4).
	Config func()
}

// Config is what a Core is built from.
type Config struct {
	Device virtio.Device
	// Mem is guest RAM, where the driver puts the virtqueues.
	Mem *memory.Guest
	// Log receives the device's errors, already naming the device.
	Log *slog.Logger
	// MaxQueues is the most queues the bus transport can address.
	MaxQueues int
	// Interrupts are the bus transport's notifications to the driver.
	Interrupts Interrupts
	// OnReset runs at the end of every reset, with the transport's lock
	// held: the bus transport's own registers return to their reset
	// values and its pending interrupts go away.
	OnReset func()
}

// Core is the bus-independent state of one virtio device's transport.
type Core struct {
	dev      virtio.Device
	mem      *memory.Guest
	log      *slog.Logger
	irq      Interrupts
	onReset  func()
	maxSizes []uint16 // the device's maximum queue sizes
	offered  [FeatureWords]uint32

	// kicks are the queues' Kick eventfds. They live as long as the Core,
	// so that the machine can attach ioeventfds to them once.
	kicks []*eventfd.EventFD

	// State shared with the device's goroutines, which interrupt, fail
	// and change the configuration without the transport's lock.
	//
	// epoch counts resets. The callbacks an Activation gets remember the
	// epoch they were made in and do nothing once it has passed, so a
	// late call from a stopped device cannot touch the next activation.
	epoch atomic.Uint64
	// status is device_status / Status (§2.1). The driver changes it
	// through WriteStatus, the device sets DEVICE_NEEDS_RESET.
	status atomic.Uint32
	// configGeneration is config_generation / ConfigGeneration
	// (§4.1.4.3, §4.2.2): bumped on every configuration change, so that a
	// driver that reads a multi-field configuration can tell that it
	// changed under it (§2.5).
	configGeneration atomic.Uint32
	// activated is set the first time a driver starts the device and
	// stays set across resets: Activated reports it.
	activated atomic.Bool

	// The driver's registers, guarded by the transport's lock.
	closed bool
	// DeviceFeatureSelect and DriverFeatureSelect select the word of
	// feature bits that DeviceFeatures and the driver feature register
	// show.
	DeviceFeatureSelect uint32
	DriverFeatureSelect uint32
	driverFeatures      [FeatureWords]uint32
	// QueueSelect selects the queue whose registers the queue registers
	// show.
	QueueSelect uint16
	queues      []QueueRegs
}

// New builds the Core of cfg.Device and its queues' Kick eventfds. The
// device starts reset, as after power-on; cfg.OnReset does not run for
// that.
func New(cfg Config) (*Core, error) {
	if cfg.Device == nil {
		return nil, errors.New("no device")
	}
	if cfg.Mem == nil {
		return nil, errors.New("no guest memory")
	}
	sizes := append([]uint16(nil), cfg.Device.QueueMaxSizes()...)
	if len(sizes) == 0 || len(sizes) > cfg.MaxQueues {
		return nil, fmt.Errorf("%d queues, want 1 to %d", len(sizes), cfg.MaxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s > virtio.MaxQueueSize || s&(s-1) != 0 {
			return nil, fmt.Errorf("queue %d: maximum size %d is not a power of 2 up to %d", i, s, virtio.MaxQueueSize)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	onReset := cfg.OnReset
	if onReset == nil {
		onReset = func() {}
	}
	c := &Core{
		dev:      cfg.Device,
		mem:      cfg.Mem,
		log:      log,
		irq:      cfg.Interrupts,
		onReset:  onReset,
		maxSizes: sizes,
		queues:   make([]QueueRegs, len(sizes)),
	}
	offered := cfg.Device.Features()&DeviceTypeFeatures | Features
	c.offered[0], c.offered[1] = uint32(offered), uint32(offered>>32)
	for range sizes {
		k, err := eventfd.New()
		if err != nil {
			c.closeKicks()
			return nil, err
		}
		c.kicks = append(c.kicks, k)
	}
	c.resetRegisters()
	return c, nil
}

// Device returns the device the Core presents.
func (c *Core) Device() virtio.Device { return c.dev }

// Log returns the logger that names the device.
func (c *Core) Log() *slog.Logger { return c.log }

// Closed reports whether Close has run: register accesses then do nothing.
func (c *Core) Closed() bool { return c.closed }

// NumQueues is the number of virtqueues of the device.
func (c *Core) NumQueues() int { return len(c.queues) }

// MaxQueueSize is the maximum size of queue i.
func (c *Core) MaxQueueSize(i int) uint16 { return c.maxSizes[i] }

// Kicks returns the queues' Kick eventfds, for the machine's ioeventfds.
// Safe without the lock: the slice never changes.
func (c *Core) Kicks() []*eventfd.EventFD { return c.kicks }

// Kick signals queue i's Kick eventfd: an available buffer notification
// (§2.7.13) that reached userspace instead of KVM's ioeventfd, which would
// have done the same. An index that is no queue is ignored. Safe without
// the lock.
func (c *Core) Kick(i uint64) {
	if i >= uint64(len(c.kicks)) {
		return
	}
	// After Close the file is closed and Signal fails; nothing to do.
	_ = c.kicks[i].Signal()
}

// SelectedQueue returns the registers of the queue QueueSelect selects, or
// nil if there is no such queue.
func (c *Core) SelectedQueue() *QueueRegs {
	if int(c.QueueSelect) >= len(c.queues) {
		return nil
	}
	return &c.queues[c.QueueSelect]
}

// QueueWritable reports whether the driver may still program q's
// registers. "The driver MUST configure the other virtqueue fields before
// enabling the virtqueue" (§4.1.4.3.2) and sets up all queues before
// DRIVER_OK (§3.1.1 step 7): once the queue is enabled or the device is
// live, its registers are frozen, so that what the driver reads back is
// what the device uses.
func (c *Core) QueueWritable(q *QueueRegs) bool {
	return !q.Enable && c.status.Load()&virtio.VIRTIO_CONFIG_S_DRIVER_OK == 0
}

// DeviceFeatures returns the word of offered feature bits that
// DeviceFeatureSelect selects: "The device MUST present ... the feature
// bits it is offering" 32 at a time, bits 32 × select and up (§4.1.4.3,
// §4.2.2). Words past bit 127 read 0.
func (c *Core) DeviceFeatures() uint32 {
	if c.DeviceFeatureSelect < FeatureWords {
		return c.offered[c.DeviceFeatureSelect]
	}
	return 0
}

// DriverFeatures returns the word of accepted feature bits that
// DriverFeatureSelect selects.
func (c *Core) DriverFeatures() uint32 {
	if c.DriverFeatureSelect < FeatureWords {
		return c.driverFeatures[c.DriverFeatureSelect]
	}
	return 0
}

// SetDriverFeatures stores v as the word of accepted feature bits that
// DriverFeatureSelect selects. Features are settled once the device
// accepted them with FEATURES_OK (§2.2, §3.1.1 step 5): later writes are
// ignored. Bits past the 128 of §6 cannot be accepted and are dropped.
func (c *Core) SetDriverFeatures(v uint32) {
	if c.status.Load()&virtio.VIRTIO_CONFIG_S_FEATURES_OK == 0 && c.DriverFeatureSelect < FeatureWords {
		c.driverFeatures[c.DriverFeatureSelect] = v
	}
}

// Status returns the device status (§2.1). Safe without the lock.
func (c *Core) Status() uint8 { return uint8(c.status.Load()) }

// ConfigGeneration returns the configuration generation counter. Safe
// without the lock.
func (c *Core) ConfigGeneration() uint32 { return c.configGeneration.Load() }

// WriteStatus is the driver's write of v to the device status: the state
// machine of §2.1 and §3.1.1.
func (c *Core) WriteStatus(v uint8) {
	if c.closed {
		return
	}
	// "Writing 0 into this field resets the device" (§4.1.4.3; §4.2.2:
	// "Writing zero (0x0) to this register triggers a device reset").
	if v == 0 {
		c.Reset()
		return
	}
	old := uint8(c.status.Load())
	// The driver sets bits one step at a time and "MUST NOT clear a
	// device status bit" (§2.1.1); only a reset clears them, so a write
	// can only add bits. DEVICE_NEEDS_RESET is the device's to set.
	add := v &^ old &^ virtio.VIRTIO_CONFIG_S_NEEDS_RESET
	if add&virtio.VIRTIO_CONFIG_S_FEATURES_OK != 0 {
		if err := c.checkFeatures(); err != nil {
			// §2.2.2: the device "MUST fail to set the FEATURES_OK
			// device status bit when the driver writes it" if it
			// cannot accept the features; the driver reads the status
			// back to find out (§3.1.1 step 6).
			c.log.Warn("virtio: refusing FEATURES_OK", "err", err)
			add &^= virtio.VIRTIO_CONFIG_S_FEATURES_OK
		}
	}
	c.status.Or(uint32(add))
	if add&virtio.VIRTIO_CONFIG_S_DRIVER_OK != 0 {
		c.activate()
	}
}

// checkFeatures checks the features the driver accepted: only offered
// ones (§2.2.1: "The driver MUST NOT accept a feature which the device did
// not offer"), and VIRTIO_F_VERSION_1, without which the driver would
// expect the legacy interface this device does not have (§6.1: the device
// MAY fail to operate further if VIRTIO_F_VERSION_1 is not accepted).
func (c *Core) checkFeatures() error {
	for i, w := range c.driverFeatures {
		if extra := w &^ c.offered[i]; extra != 0 {
			return fmt.Errorf("driver accepted features %#x of word %d, which are not offered", extra, i)
		}
	}
	if !c.negotiated().Has(virtio.VIRTIO_F_VERSION_1) {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1")
	}
	return nil
}

// negotiated returns the features the driver accepted, as far as
// virtio.Features reaches (bits 0-63, all that can be offered).
func (c *Core) negotiated() virtio.Features {
	return virtio.Features(c.driverFeatures[1])<<32 | virtio.Features(c.driverFeatures[0])
}

// activate starts the device when the driver sets DRIVER_OK: it builds a
// virtqueue for every queue the driver enabled and hands them to
// Device.Activate. A queue the device cannot use, an Activate error or
// DRIVER_OK without FEATURES_OK set DEVICE_NEEDS_RESET instead.
func (c *Core) activate() {
	status := c.status.Load()
	if status&virtio.VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
		return // already broken: the driver must reset first
	}
	if status&virtio.VIRTIO_CONFIG_S_FEATURES_OK == 0 {
		c.NeedsReset(errors.New("driver set DRIVER_OK without FEATURES_OK"))
		return
	}
	epoch := c.epoch.Load()
	features := c.negotiated()
	queues := make([]*virtio.Queue, len(c.queues))
	for i := range c.queues {
		q := &c.queues[i]
		if !q.Enable {
			continue
		}
		if q.Size > c.maxSizes[i] {
			c.NeedsReset(fmt.Errorf("queue %d: size %d is above the maximum %d", i, q.Size, c.maxSizes[i]))
			return
		}
		vq := new(virtio.Virtqueue)
		err := vq.Enable(c.mem, virtio.QueueConfig{
			Size:      q.Size,
			DescTable: q.Desc,
			AvailRing: q.Driver,
			UsedRing:  q.Device,
			Features:  features,
		})
		if err != nil {
			c.NeedsReset(fmt.Errorf("queue %d: %w", i, err))
			return
		}
		queues[i] = &virtio.Queue{
			Index:     i,
			Virtqueue: vq,
			Kick:      c.kicks[i],
			Interrupt: func() {
				if c.epoch.Load() == epoch { // else the device was reset since: stale
					c.irq.Queue(i)
				}
			},
			InterruptLine: func() uint32 { return c.irq.Line(i) },
		}
	}
	err := c.dev.Activate(&virtio.Activation{
		Mem:           c.mem,
		Features:      features,
		Queues:        queues,
		ConfigChanged: func() { c.configChanged(epoch) },
		Fail:          func(err error) { c.fail(epoch, err) },
		Log:           c.log,
	})
	if err != nil {
		c.NeedsReset(fmt.Errorf("activate: %w", err))
		return
	}
	c.activated.Store(true)
}

// Activated reports whether a driver has ever started the device: set
// DRIVER_OK after FEATURES_OK (§3.1.1) and had the device accept its
// queues. A later reset does not clear it, so after a run it tells a
// device that a guest drove from one that no guest driver claimed. It may
// be called without the transport's lock.
func (c *Core) Activated() bool { return c.activated.Load() }

// Reset resets the device (§2.4): the device stops, and every register
// returns to its initial value.
func (c *Core) Reset() {
	// Make the old activation's callbacks inert, then wait until the
	// device has stopped using the queues ("Reset must wait": Device.Reset
	// returns only then). Only after that are the registers cleared, so
	// nothing the device did on its way out survives the reset.
	c.epoch.Add(1)
	c.dev.Reset()
	c.resetRegisters()
	c.status.Store(0)
	// The bus transport's registers and interrupt go back to idle: no
	// notification from before the reset is left pending (§2.4.1: a
	// device "MUST NOT send any notifications or interact with the
	// queues after indicating completion of the reset by reinitializing
	// device status to 0, until the driver re-initializes the device").
	c.onReset()
}

// resetRegisters gives the registers their reset values: the queue size
// the maximum (§4.1.4.3: "On reset, specifies the maximum queue size
// supported by the device"), the queues disabled (§4.1.4.3.1: "The device
// MUST present a 0 in queue_enable on reset"; §4.2.2.1: "Upon reset, the
// device MUST clear ... ready bits in the QueueReady register for all
// queues"), everything else 0.
func (c *Core) resetRegisters() {
	c.DeviceFeatureSelect = 0
	c.DriverFeatureSelect = 0
	c.driverFeatures = [FeatureWords]uint32{}
	c.QueueSelect = 0
	for i := range c.queues {
		c.queues[i] = QueueRegs{Size: c.maxSizes[i]}
	}
}

// configChanged is Activation.ConfigChanged: the device changed its
// configuration space. The generation changes first ("The device changes
// this every time the configuration noticeably changes", §4.1.4.3), so
// that a driver that sees the interrupt and rereads the configuration also
// sees a new generation: a driver reads the generation before and after
// reading several fields and retries if it changed (§2.5).
func (c *Core) configChanged(epoch uint64) {
	if c.epoch.Load() != epoch {
		return
	}
	c.configGeneration.Add(1)
	c.irq.Config()
}

// fail is Activation.Fail: the device hit an error it cannot recover from.
func (c *Core) fail(epoch uint64, err error) {
	if c.epoch.Load() != epoch {
		return
	}
	c.NeedsReset(err)
}

// NeedsReset logs err, sets DEVICE_NEEDS_RESET and, if the driver has set
// DRIVER_OK, tells it with a configuration change notification: "If
// DRIVER_OK is set, after it sets DEVICE_NEEDS_RESET, the device MUST send
// a device configuration change notification to the driver" (§2.1.2).
// Safe without the lock.
func (c *Core) NeedsReset(err error) {
	c.log.Warn("virtio: device needs reset", "err", err)
	old := c.status.Or(virtio.VIRTIO_CONFIG_S_NEEDS_RESET)
	if old&virtio.VIRTIO_CONFIG_S_DRIVER_OK != 0 {
		c.irq.Config()
	}
}

// Stop stops the device without resetting the registers, for a driver
// request that the device cannot carry out while it runs, and sets
// DEVICE_NEEDS_RESET with err as the reason. The device stays stopped
// until the driver resets it.
func (c *Core) Stop(err error) {
	c.epoch.Add(1)
	c.dev.Reset()
	c.NeedsReset(err)
}

// Close resets the device, which stops it, and closes the Kick eventfds.
// The machine must remove the ioeventfds on them first. Register accesses
// after Close do nothing. Close may be called more than once.
func (c *Core) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	c.Reset()
	return c.closeKicks()
}

func (c *Core) closeKicks() error {
	var errs []error
	for _, k := range c.kicks {
		errs = append(errs, k.Close())
	}
	return errors.Join(errs...)
}

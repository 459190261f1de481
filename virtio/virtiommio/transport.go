package virtiommio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/transport"
)

// le is the byte order of the registers: "little-endian" (§4.2.2).
var le = binary.LittleEndian

// Config is what a Transport is built from.
type Config struct {
	// Device is the virtio device the window presents.
	Device virtio.Device
	// Mem is guest RAM, where the driver puts the virtqueues.
	Mem *memory.Guest
	// Interrupt sends an edge on the device's interrupt line (the machine
	// gives it an irqfd). It is called from the device's goroutines and
	// must not block; nil drops the interrupts.
	Interrupt func()
	// Log receives the device's errors; nil discards them. Every record
	// gets a "device" attribute with Name.
	Log *slog.Logger
	// Name names the device in logs, e.g. "virtio-blk vda".
	Name string
}

// Transport is a virtio device behind a virtio-mmio register window
// (§4.2). It implements the MMIO handler the machine puts at the window's
// base address (ReadMMIO, WriteMMIO).
type Transport struct {
	core      *transport.Core
	log       *slog.Logger
	interrupt func()

	// interruptStatus is InterruptStatus. Device goroutines set its bits
	// without taking mu; the driver's InterruptACK clears them.
	interruptStatus atomic.Uint32

	// mu serialises the driver's register accesses (vCPU goroutines) and
	// guards core's registers.
	mu sync.Mutex
}

// New builds the transport of cfg.Device and its queues' Kick eventfds.
// The device starts reset, as after power-on.
func New(cfg Config) (*Transport, error) {
	if cfg.Device == nil {
		return nil, errors.New("virtiommio: no device")
	}
	name := cfg.Name
	if name == "" {
		name = virtio.DeviceName(cfg.Device.DeviceID())
	}
	if cfg.Device.DeviceID() == 0 {
		// "If DeviceID is zero (0x0) the driver MUST discard the device"
		// (§4.2.3.1.1): a placeholder, not a device.
		return nil, fmt.Errorf("virtiommio: %s: device ID 0", name)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{log: log.With("device", name), interrupt: cfg.Interrupt}
	if t.interrupt == nil {
		t.interrupt = func() {}
	}
	core, err := transport.New(transport.Config{
		Device:    cfg.Device,
		Mem:       cfg.Mem,
		Log:       t.log,
		MaxQueues: MaxQueues,
		Interrupts: transport.Interrupts{
			Queue: func(int) { t.notify(VIRTIO_MMIO_INT_VRING) },
			// One line for every queue: the driver's handler looks at
			// all of them whenever VIRTIO_MMIO_INT_VRING is set
			// (Linux drivers/virtio/virtio_mmio.c, vm_interrupt).
			Line:   func(int) uint32 { return 0 },
			Config: func() { t.notify(VIRTIO_MMIO_INT_CONFIG) },
		},
		// "Upon reset, the device MUST clear all bits in
		// InterruptStatus" (§4.2.2.1).
		OnReset: func() { t.interruptStatus.Store(0) },
	})
	if err != nil {
		return nil, fmt.Errorf("virtiommio: %s: %w", name, err)
	}
	t.core = core
	return t, nil
}

// notify tells the driver about an event: "The device MUST present each
// event by setting the corresponding bit in InterruptStatus from the
// moment it takes place, until the driver acknowledges the interrupt by
// writing a corresponding bit mask to the InterruptACK register"
// (§4.2.2.1), then sends an edge on the interrupt line.
//
// The line is edge-triggered (an ISA IRQ, active-high, as the machine
// describes it), and every event sends an edge even while the bit is still
// set. A driver that read InterruptStatus just before the bit was set
// again gets another interrupt for it, so no event waits for a later one.
func (t *Transport) notify(bit uint32) {
	t.interruptStatus.Or(bit)
	t.interrupt()
}

// Doorbell is one queue's available buffer notification as KVM can match
// it without an exit (KVM_IOEVENTFD with a data match): a 32-bit write of
// Queue at Offset in the window signals FD.
type Doorbell struct {
	Offset uint64
	Size   int
	Queue  uint64
	FD     int
}

// Doorbells returns one doorbell per queue: QueueNotify, where "the value
// written is the queue index" (§4.2.2, without VIRTIO_F_NOTIFICATION_DATA),
// with the queue's index as the data to match.
func (t *Transport) Doorbells() []Doorbell {
	kicks := t.core.Kicks()
	d := make([]Doorbell, len(kicks))
	for i, k := range kicks {
		d[i] = Doorbell{Offset: regQueueNotify, Size: regWidth, Queue: uint64(i), FD: k.FD()}
	}
	return d
}

// Activated reports whether a guest driver has ever started the device
// (transport.Core.Activated).
func (t *Transport) Activated() bool { return t.core.Activated() }

// Close resets the device, which stops it, and closes the Kick eventfds.
// The machine must remove the ioeventfds on them first. Register accesses
// after Close do nothing. Close may be called more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.core.Close()
}

// ReadMMIO is the driver's read of the window at offset.
func (t *Transport) ReadMMIO(offset uint64, data []byte) {
	clear(data)
	if offset >= ConfigOffset {
		t.configAccess(offset, data, false)
		return
	}
	if len(data) != regWidth || offset%regWidth != 0 {
		return // not a register access the driver may make (§4.2.2.2)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	le.PutUint32(data, t.readRegisterLocked(offset))
}

// WriteMMIO is the driver's write to the window at offset.
func (t *Transport) WriteMMIO(offset uint64, data []byte) {
	if offset >= ConfigOffset {
		t.configAccess(offset, data, true)
		return
	}
	if len(data) != regWidth || offset%regWidth != 0 {
		return
	}
	v := le.Uint32(data)
	if offset == regQueueNotify {
		// KVM normally takes these writes without an exit; one that
		// reaches here does what its ioeventfd would have done.
		t.core.Kick(uint64(v))
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.core.Closed() {
		t.writeRegisterLocked(offset, v)
	}
}

// configAccess passes an access to the device-specific configuration
// space (§4.2.2: "Config 0x100+"), clipped to the window, to the device.
// Its fields may be accessed at their own widths (§4.2.2.2), so any width
// goes through.
func (t *Transport) configAccess(offset uint64, data []byte, write bool) {
	if offset >= Window {
		return
	}
	data = data[:min(uint64(len(data)), Window-offset)]
	offset -= ConfigOffset
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.core.Closed() {
		return
	}
	if write {
		t.core.Device().WriteConfig(offset, data)
	} else {
		t.core.Device().ReadConfig(offset, data)
	}
}

// readRegisterLocked returns the value of the control register at offset.
// Write-only registers read 0.
func (t *Transport) readRegisterLocked(offset uint64) uint32 {
	c := t.core
	switch offset {
	case regMagicValue:
		return MagicValue
	case regVersion:
		return Version
	case regDeviceID:
		return uint32(c.Device().DeviceID())
	case regVendorID:
		return VendorID
	case regDeviceFeatures:
		return c.DeviceFeatures()
	case regInterruptStatus:
		return t.interruptStatus.Load()
	case regStatus:
		return uint32(c.Status())
	case regSHMLenLow, regSHMLenHigh:
		return noSHMLength
	case regConfigGeneration:
		return c.ConfigGeneration()
	case regQueueNumMax:
		// "If the returned value is zero (0x0) the queue is not
		// available" (§4.2.2).
		if c.SelectedQueue() == nil {
			return 0
		}
		return uint32(c.MaxQueueSize(int(c.QueueSelect)))
	case regQueueReady:
		if q := c.SelectedQueue(); q != nil && q.Enable {
			return 1
		}
	}
	return 0
}

// writeRegisterLocked gives the control register at offset the value v,
// with its side effects. Writes to read-only registers are ignored.
func (t *Transport) writeRegisterLocked(offset uint64, v uint32) {
	c := t.core
	switch offset {
	case regDeviceFeaturesSel:
		c.DeviceFeatureSelect = v
		return
	case regDriverFeaturesSel:
		c.DriverFeatureSelect = v
		return
	case regDriverFeatures:
		c.SetDriverFeatures(v)
		return
	case regInterruptACK:
		// "Writing a value with bits set as defined in InterruptStatus
		// to this register notifies the device that events causing the
		// interrupt have been handled" (§4.2.2).
		t.interruptStatus.And(^v)
		return
	case regStatus:
		c.WriteStatus(uint8(v))
		return
	case regQueueSel:
		// QueueSel is 32 bits; an index past the last queue (or past
		// QueueSelect's 16 bits, which no queue reaches) selects none.
		if v > MaxQueues {
			v = MaxQueues
		}
		c.QueueSelect = uint16(v)
		return
	case regSHMSel:
		return // no shared memory regions: every ID reads length -1
	}
	q := c.SelectedQueue()
	if q == nil {
		return
	}
	if offset == regQueueReady && v == 0 {
		t.stopQueueLocked(q)
		return
	}
	if !c.QueueWritable(q) {
		return
	}
	switch offset {
	case regQueueNum:
		// Any value is stored; DRIVER_OK checks it against QueueNumMax
		// and for a power of 2.
		q.Size = uint16(min(v, 1<<16-1))
	case regQueueReady:
		// "Writing one (0x1) to this register notifies the device that
		// it can execute requests from this virtual queue" (§4.2.2).
		if v == 1 {
			q.Enable = true
		}
	case regQueueDescLow, regQueueDescHigh:
		transport.SetHalf(&q.Desc, offset == regQueueDescHigh, v)
	case regQueueDriverLow, regQueueDriverHigh:
		transport.SetHalf(&q.Driver, offset == regQueueDriverHigh, v)
	case regQueueDeviceLow, regQueueDeviceHigh:
		transport.SetHalf(&q.Device, offset == regQueueDeviceHigh, v)
	}
}

// stopQueueLocked is the driver's write of 0 to QueueReady: "To stop using
// the queue the driver MUST write zero (0x0) to this QueueReady register
// and MUST read the value back to ensure synchronization" (§4.2.2.2), and
// "The device MUST NOT access virtual queue contents when QueueReady is
// zero" (§4.2.2.1). Linux does it for each queue it tears down, after
// resetting the device (vm_del_vq), when it only clears the register.
// While the device runs, it cannot stop one queue alone without
// VIRTIO_F_RING_RESET: the whole device stops, before the register reads
// 0, and asks for a reset with DEVICE_NEEDS_RESET.
func (t *Transport) stopQueueLocked(q *transport.QueueRegs) {
	if !q.Enable {
		return
	}
	if t.core.Status()&virtio.VIRTIO_CONFIG_S_DRIVER_OK != 0 {
		t.core.Stop(fmt.Errorf("driver disabled queue %d of the running device", t.core.QueueSelect))
	}
	q.Enable = false
}

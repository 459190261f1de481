package virtiopci

import (
	"errors"
	"fmt"

	"github.com/govmm/govmm/virtio"
)

// The common configuration structure (§4.1.4.3).
//
// Its registers are modelled one by one: readRegister and writeRegister
// know what each means. A guest access may have any width and offset, so
// readCommon and writeCommon go through an image of the structure: a read
// copies the bytes it covers out of a freshly rendered image; a write
// merges its bytes into the image of every register it touches and hands
// each register's new value to writeRegister, in offset order. A driver
// uses "natural" widths (§4.1.3.1), for which this is one register per
// access; anything else is still well defined.

// readCommon is the guest's read of the common configuration.
func (t *Transport) readCommon(offset uint64, data []byte) {
	clear(data)
	if offset >= commonCfgSize {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var img [commonCfgSize]byte
	t.renderLocked(&img)
	copy(data, img[offset:])
}

// writeCommon is the guest's write to the common configuration.
func (t *Transport) writeCommon(offset uint64, data []byte) {
	if offset >= commonCfgSize {
		return
	}
	end := offset + uint64(len(data)) // no overflow: offset is small
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	for _, r := range commonRegisters {
		if r.offset+r.size <= offset || end <= r.offset {
			continue
		}
		// Render again for every register: an earlier one in the same
		// access (queue_select) may change what a later one shows.
		var img [commonCfgSize]byte
		t.renderLocked(&img)
		lo, hi := max(offset, r.offset), min(end, r.offset+r.size)
		copy(img[lo:hi], data[lo-offset:hi-offset])
		var v uint64
		for i := r.size; i > 0; i-- {
			v = v<<8 | uint64(img[r.offset+i-1])
		}
		t.writeRegisterLocked(r.offset, v)
	}
}

// renderLocked fills img with the registers' current values.
func (t *Transport) renderLocked(img *[commonCfgSize]byte) {
	for _, r := range commonRegisters {
		v := t.readRegisterLocked(r.offset)
		for i := range r.size {
			img[r.offset+i] = byte(v >> (8 * i))
		}
	}
}

// selectedQueue returns the registers of the queue queue_select selects,
// or nil if there is no such queue.
func (t *Transport) selectedQueue() *queueRegs {
	if int(t.queueSelect) >= len(t.queues) {
		return nil
	}
	return &t.queues[t.queueSelect]
}

// readRegisterLocked returns the value of the register at offset.
func (t *Transport) readRegisterLocked(offset uint64) uint64 {
	switch offset {
	case offDeviceFeatureSelect:
		return uint64(t.deviceFeatureSelect)
	case offDeviceFeature:
		// "The device MUST present ... the feature bits it is offering"
		// 32 at a time: bits 32 × device_feature_select and up
		// (§4.1.4.3).
		if t.deviceFeatureSelect < featureWords {
			return uint64(t.offered[t.deviceFeatureSelect])
		}
		return 0
	case offDriverFeatureSelect:
		return uint64(t.driverFeatureSelect)
	case offDriverFeature:
		if t.driverFeatureSelect < featureWords {
			return uint64(t.driverFeatures[t.driverFeatureSelect])
		}
		return 0
	case offConfigMSIXVector:
		return uint64(t.configVector.Load())
	case offNumQueues:
		return uint64(len(t.queues))
	case offDeviceStatus:
		return uint64(t.status.Load())
	case offConfigGeneration:
		return uint64(uint8(t.configGeneration.Load()))
	case offQueueSelect:
		return uint64(t.queueSelect)
	case offQueueNotifyData, offQueueReset:
		// Without VIRTIO_F_NOTIF_CONFIG_DATA and VIRTIO_F_RING_RESET
		// these read 0.
		return 0
	}
	q := t.selectedQueue()
	if q == nil {
		// A queue_select past the last queue selects nothing:
		// queue_size 0 says "the queue is unavailable" (§4.1.4.3), and
		// no event of it is mapped to a vector.
		if offset == offQueueMSIXVector {
			return VIRTIO_MSI_NO_VECTOR
		}
		return 0
	}
	switch offset {
	case offQueueSize:
		return uint64(q.size)
	case offQueueMSIXVector:
		return uint64(q.msixVector.Load())
	case offQueueEnable:
		if q.enable {
			return 1
		}
		return 0
	case offQueueNotifyOff:
		return uint64(t.queueSelect) // the queue's own doorbell
	case offQueueDescLo:
		return q.desc & lowHalf
	case offQueueDescHi:
		return q.desc >> 32
	case offQueueDriverLo:
		return q.driver & lowHalf
	case offQueueDriverHi:
		return q.driver >> 32
	case offQueueDeviceLo:
		return q.device & lowHalf
	case offQueueDeviceHi:
		return q.device >> 32
	}
	return 0
}

// lowHalf masks the low 32 bits of a 64-bit register.
const lowHalf = 1<<32 - 1

// setHalf replaces the low or high 32 bits of *reg with v.
func setHalf(reg *uint64, high bool, v uint64) {
	if high {
		*reg = *reg&lowHalf | v<<32
	} else {
		*reg = *reg&^lowHalf | v&lowHalf
	}
}

// writeRegisterLocked gives the register at offset the value v, with the
// register's side effects. Writes to read-only registers are ignored.
func (t *Transport) writeRegisterLocked(offset uint64, v uint64) {
	status := t.status.Load()
	switch offset {
	case offDeviceFeatureSelect:
		t.deviceFeatureSelect = uint32(v)
		return
	case offDriverFeatureSelect:
		t.driverFeatureSelect = uint32(v)
		return
	case offDriverFeature:
		// Features are settled once the device accepted them with
		// FEATURES_OK (§2.2, §3.1.1 step 5): later writes are ignored.
		// Bits past the 128 of §6 cannot be accepted and are dropped.
		if status&virtio.VIRTIO_CONFIG_S_FEATURES_OK == 0 && t.driverFeatureSelect < featureWords {
			t.driverFeatures[t.driverFeatureSelect] = uint32(v)
		}
		return
	case offConfigMSIXVector:
		t.configVector.Store(t.mapVector(v))
		return
	case offDeviceStatus:
		t.writeStatusLocked(uint8(v))
		return
	case offQueueSelect:
		t.queueSelect = uint16(v)
		return
	}
	q := t.selectedQueue()
	if q == nil {
		return
	}
	if offset == offQueueMSIXVector {
		// Vectors may be changed at any time; interrupts read the
		// register as they happen.
		q.msixVector.Store(t.mapVector(v))
		return
	}
	// The driver MUST configure the other virtqueue fields before
	// enabling the virtqueue with queue_enable (§4.1.4.3.2), and sets up
	// all queues before DRIVER_OK (§3.1.1 step 7): once the queue is
	// enabled or the device is live, its registers are frozen, so that
	// what the driver reads back is what the device uses.
	if q.enable || status&virtio.VIRTIO_CONFIG_S_DRIVER_OK != 0 {
		return
	}
	switch offset {
	case offQueueSize:
		// "This can be modified by the driver to reduce memory
		// requirements" (§4.1.4.3). Any value is stored; DRIVER_OK
		// checks it against the maximum and for a power of 2.
		q.size = uint16(v)
	case offQueueEnable:
		// Writing 1 enables the queue. Without VIRTIO_F_RING_RESET the
		// driver "MUST NOT write a 0 to queue_enable" (§4.1.4.3.2); it is
		// ignored.
		if v == 1 {
			q.enable = true
		}
	case offQueueDescLo, offQueueDescHi:
		setHalf(&q.desc, offset == offQueueDescHi, v)
	case offQueueDriverLo, offQueueDriverHi:
		setHalf(&q.driver, offset == offQueueDriverHi, v)
	case offQueueDeviceLo, offQueueDeviceHi:
		setHalf(&q.device, offset == offQueueDeviceHi, v)
	}
}

// mapVector returns what config_msix_vector or queue_msix_vector holds
// after the driver writes v: v if it names an entry of the MSI-X table,
// otherwise VIRTIO_MSI_NO_VECTOR, which tells the driver that the mapping
// failed (§4.1.5.1.2.1: "The device MUST return vector mapped to a given
// event, (NO_VECTOR if unmapped) on read of
// config_msix_vector/queue_msix_vector").
func (t *Transport) mapVector(v uint64) uint32 {
	if v < uint64(t.msix.Vectors()) {
		return uint32(v)
	}
	return VIRTIO_MSI_NO_VECTOR
}

// writeStatusLocked is the device status state machine (§2.1, §3.1.1).
func (t *Transport) writeStatusLocked(v uint8) {
	// "Writing 0 into this field resets the device" (§4.1.4.3).
	if v == 0 {
		t.resetLocked()
		return
	}
	old := uint8(t.status.Load())
	// The driver sets bits one step at a time and "MUST NOT clear a
	// device status bit" (§2.1.1); only a reset clears them, so a write
	// can only add bits. DEVICE_NEEDS_RESET is the device's to set.
	add := v &^ old &^ virtio.VIRTIO_CONFIG_S_NEEDS_RESET
	if add&virtio.VIRTIO_CONFIG_S_FEATURES_OK != 0 {
		if err := t.checkFeaturesLocked(); err != nil {
			// §2.2.2: the device "MUST fail to set the FEATURES_OK
			// device status bit when the driver writes it" if it
			// cannot accept the features; the driver reads the status
			// back to find out (§3.1.1 step 6).
			t.log.Warn("virtio: refusing FEATURES_OK", "err", err)
			add &^= virtio.VIRTIO_CONFIG_S_FEATURES_OK
		}
	}
	t.status.Or(uint32(add))
	if add&virtio.VIRTIO_CONFIG_S_DRIVER_OK != 0 {
		t.activateLocked()
	}
}

// checkFeaturesLocked checks the features the driver accepted: only
// offered ones (§2.2.1: "The driver MUST NOT accept a feature which the
// device did not offer"), and VIRTIO_F_VERSION_1, without which the driver
// would expect the legacy interface this device does not have (§6.1: the
// device MAY fail to operate further if VIRTIO_F_VERSION_1 is not
// accepted).
func (t *Transport) checkFeaturesLocked() error {
	for i, w := range t.driverFeatures {
		if extra := w &^ t.offered[i]; extra != 0 {
			return fmt.Errorf("driver accepted features %#x of word %d, which are not offered", extra, i)
		}
	}
	if !t.negotiated().Has(virtio.VIRTIO_F_VERSION_1) {
		return errors.New("driver did not accept VIRTIO_F_VERSION_1")
	}
	return nil
}

// negotiated returns the features the driver accepted, as far as
// virtio.Features reaches (bits 0-63, all that can be offered).
func (t *Transport) negotiated() virtio.Features {
	return virtio.Features(t.driverFeatures[1])<<32 | virtio.Features(t.driverFeatures[0])
}

// activateLocked starts the device when the driver sets DRIVER_OK: it
// builds a virtqueue for every queue the driver enabled and hands them to
// Device.Activate. A queue the device cannot use, an Activate error or
// DRIVER_OK without FEATURES_OK set DEVICE_NEEDS_RESET instead.
func (t *Transport) activateLocked() {
	status := t.status.Load()
	if status&virtio.VIRTIO_CONFIG_S_NEEDS_RESET != 0 {
		return // already broken: the driver must reset first
	}
	if status&virtio.VIRTIO_CONFIG_S_FEATURES_OK == 0 {
		t.needsReset(errors.New("driver set DRIVER_OK without FEATURES_OK"))
		return
	}
	epoch := t.epoch.Load()
	features := t.negotiated()
	queues := make([]*virtio.Queue, len(t.queues))
	for i := range t.queues {
		q := &t.queues[i]
		if !q.enable {
			continue
		}
		if q.size > t.maxSizes[i] {
			t.needsReset(fmt.Errorf("queue %d: size %d is above the maximum %d", i, q.size, t.maxSizes[i]))
			return
		}
		vq := new(virtio.Virtqueue)
		err := vq.Enable(t.mem, virtio.QueueConfig{
			Size:      q.size,
			DescTable: q.desc,
			AvailRing: q.driver,
			UsedRing:  q.device,
			Features:  features,
		})
		if err != nil {
			t.needsReset(fmt.Errorf("queue %d: %w", i, err))
			return
		}
		queues[i] = &virtio.Queue{
			Index:         i,
			Virtqueue:     vq,
			Kick:          t.kicks[i],
			Interrupt:     func() { t.queueInterrupt(epoch, i) },
			InterruptLine: func() uint32 { return t.queueLine(i) },
		}
	}
	err := t.dev.Activate(&virtio.Activation{
		Mem:           t.mem,
		Features:      features,
		Queues:        queues,
		ConfigChanged: func() { t.configChanged(epoch) },
		Fail:          func(err error) { t.fail(epoch, err) },
		Log:           t.log,
	})
	if err != nil {
		t.needsReset(fmt.Errorf("activate: %w", err))
	}
}

// resetLocked resets the device (§2.4): the device stops, and every
// register returns to its initial value.
func (t *Transport) resetLocked() {
	// Make the old activation's callbacks inert, then wait until the
	// device has stopped using the queues ("Reset must wait": Device.Reset
	// returns only then). Only after that are the registers cleared, so
	// nothing the device did on its way out survives the reset.
	t.epoch.Add(1)
	t.dev.Reset()
	t.resetRegistersLocked()
	t.status.Store(0)
	// The ISR and the interrupt line go back to idle: no notification
	// from before the reset is left pending (§2.4.1: a device "MUST NOT
	// send any notifications or interact with the queues after
	// indicating completion of the reset by reinitializing device status
	// to 0, until the driver re-initializes the device").
	t.isrMu.Lock()
	t.isr = 0
	t.cs.SetINTx(false)
	t.isrMu.Unlock()
}

// resetRegistersLocked gives the common configuration its reset values:
// queue_size the maximum (§4.1.4.3: "On reset, specifies the maximum queue
// size supported by the device"), queue_enable 0 (§4.1.4.3.1: "The device
// MUST present a 0 in queue_enable on reset"), the vectors
// VIRTIO_MSI_NO_VECTOR (§4.1.5.1.2.1: "The device MUST have all queue and
// configuration change events unmapped upon reset"), everything else 0.
func (t *Transport) resetRegistersLocked() {
	t.deviceFeatureSelect = 0
	t.driverFeatureSelect = 0
	t.driverFeatures = [featureWords]uint32{}
	t.queueSelect = 0
	t.configVector.Store(VIRTIO_MSI_NO_VECTOR)
	for i := range t.queues {
		q := &t.queues[i]
		q.size = t.maxSizes[i]
		q.enable = false
		q.desc, q.driver, q.device = 0, 0, 0
		q.msixVector.Store(VIRTIO_MSI_NO_VECTOR)
	}
}

package virtiopci

import "github.com/govmm/govmm/virtio/transport"

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
	if t.core.Closed() {
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

// readRegisterLocked returns the value of the register at offset.
func (t *Transport) readRegisterLocked(offset uint64) uint64 {
	c := t.core
	switch offset {
	case offDeviceFeatureSelect:
		return uint64(c.DeviceFeatureSelect)
	case offDeviceFeature:
		return uint64(c.DeviceFeatures())
	case offDriverFeatureSelect:
		return uint64(c.DriverFeatureSelect)
	case offDriverFeature:
		return uint64(c.DriverFeatures())
	case offConfigMSIXVector:
		return uint64(t.configVector.Load())
	case offNumQueues:
		return uint64(c.NumQueues())
	case offDeviceStatus:
		return uint64(c.Status())
	case offConfigGeneration:
		return uint64(uint8(c.ConfigGeneration()))
	case offQueueSelect:
		return uint64(c.QueueSelect)
	case offQueueNotifyData, offQueueReset:
		// Without VIRTIO_F_NOTIF_CONFIG_DATA and VIRTIO_F_RING_RESET
		// these read 0.
		return 0
	}
	q := c.SelectedQueue()
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
		return uint64(q.Size)
	case offQueueMSIXVector:
		return uint64(t.queueVectors[c.QueueSelect].Load())
	case offQueueEnable:
		if q.Enable {
			return 1
		}
		return 0
	case offQueueNotifyOff:
		return uint64(c.QueueSelect) // the queue's own doorbell
	case offQueueDescLo:
		return q.Desc & transport.LowHalf
	case offQueueDescHi:
		return q.Desc >> 32
	case offQueueDriverLo:
		return q.Driver & transport.LowHalf
	case offQueueDriverHi:
		return q.Driver >> 32
	case offQueueDeviceLo:
		return q.Device & transport.LowHalf
	case offQueueDeviceHi:
		return q.Device >> 32
	}
	return 0
}

// writeRegisterLocked gives the register at offset the value v, with the
// register's side effects. Writes to read-only registers are ignored.
func (t *Transport) writeRegisterLocked(offset uint64, v uint64) {
	c := t.core
	switch offset {
	case offDeviceFeatureSelect:
		c.DeviceFeatureSelect = uint32(v)
		return
	case offDriverFeatureSelect:
		c.DriverFeatureSelect = uint32(v)
		return
	case offDriverFeature:
		c.SetDriverFeatures(uint32(v))
		return
	case offConfigMSIXVector:
		t.configVector.Store(t.mapVector(v))
		return
	case offDeviceStatus:
		c.WriteStatus(uint8(v))
		return
	case offQueueSelect:
		c.QueueSelect = uint16(v)
		return
	}
	q := c.SelectedQueue()
	if q == nil {
		return
	}
	if offset == offQueueMSIXVector {
		// Vectors may be changed at any time; interrupts read the
		// register as they happen.
		t.queueVectors[c.QueueSelect].Store(t.mapVector(v))
		return
	}
	if !c.QueueWritable(q) {
		return
	}
	switch offset {
	case offQueueSize:
		// "This can be modified by the driver to reduce memory
		// requirements" (§4.1.4.3). Any value is stored; DRIVER_OK
		// checks it against the maximum and for a power of 2.
		q.Size = uint16(v)
	case offQueueEnable:
		// Writing 1 enables the queue. Without VIRTIO_F_RING_RESET the
		// driver "MUST NOT write a 0 to queue_enable" (§4.1.4.3.2); it is
		// ignored.
		if v == 1 {
			q.Enable = true
		}
	case offQueueDescLo, offQueueDescHi:
		transport.SetHalf(&q.Desc, offset == offQueueDescHi, uint32(v))
	case offQueueDriverLo, offQueueDriverHi:
		transport.SetHalf(&q.Driver, offset == offQueueDriverHi, uint32(v))
	case offQueueDeviceLo, offQueueDeviceHi:
		transport.SetHalf(&q.Device, offset == offQueueDeviceHi, uint32(v))
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

// resetInterrupts is the PCI half of a reset (transport.Config.OnReset):
// every event unmapped (§4.1.5.1.2.1: "The device MUST have all queue and
// configuration change events unmapped upon reset"), the ISR status clear
// and INTx# deasserted, so that no notification from before the reset is
// left pending.
func (t *Transport) resetInterrupts() {
	t.configVector.Store(VIRTIO_MSI_NO_VECTOR)
	for i := range t.queueVectors {
		t.queueVectors[i].Store(VIRTIO_MSI_NO_VECTOR)
	}
	t.isrMu.Lock()
	t.isr = 0
	t.cs.SetINTx(false)
	t.isrMu.Unlock()
}

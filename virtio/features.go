package virtio

import "fmt"

// The constants in this file and the ring flags keep the names the
// specification and Linux's include/uapi/linux/virtio_*.h give them, so that
// they can be looked up there as they are written here.

// Device status bits (§2.1 "Device Status Field"). The driver sets them in
// order as it initializes the device (§3.1.1); writing 0 resets the device.
const (
	// VIRTIO_CONFIG_S_ACKNOWLEDGE: the guest has found the device.
	VIRTIO_CONFIG_S_ACKNOWLEDGE = 1
	// VIRTIO_CONFIG_S_DRIVER: the guest knows how to drive the device.
	VIRTIO_CONFIG_S_DRIVER = 2
	// VIRTIO_CONFIG_S_DRIVER_OK: the driver is set up and ready to drive
	// the device.
	VIRTIO_CONFIG_S_DRIVER_OK = 4
	// VIRTIO_CONFIG_S_FEATURES_OK: the driver has acknowledged the
	// features it understands; feature negotiation is complete.
	VIRTIO_CONFIG_S_FEATURES_OK = 8
	// VIRTIO_CONFIG_S_NEEDS_RESET: the device has hit an error it cannot
	// recover from (a malformed virtqueue, for one) and needs a reset
	// (§2.1.2). The spec calls it DEVICE_NEEDS_RESET.
	VIRTIO_CONFIG_S_NEEDS_RESET = 64
	// VIRTIO_CONFIG_S_FAILED: the driver has given up on the device.
	VIRTIO_CONFIG_S_FAILED = 128
)

// Device IDs (§5 "Device Types") of the devices govmm provides.
const (
	VIRTIO_ID_NET     = 1 // network card (§5.1)
	VIRTIO_ID_BLOCK   = 2 // block device (§5.2)
	VIRTIO_ID_CONSOLE = 3 // console (§5.3)
	VIRTIO_ID_RNG     = 4 // entropy source (§5.4)
)

// DeviceName names device type id for logs, as Linux names its driver
// but with a dash (drivers/block/virtio_blk.c is virtio_blk): "virtio-net",
// "virtio-blk", "virtio-console", "virtio-rng", or "virtio-ID" for another
// type.
func DeviceName(id uint16) string {
	switch id {
	case VIRTIO_ID_NET:
		return "virtio-net"
	case VIRTIO_ID_BLOCK:
		return "virtio-blk"
	case VIRTIO_ID_CONSOLE:
		return "virtio-console"
	case VIRTIO_ID_RNG:
		return "virtio-rng"
	}
	return fmt.Sprintf("virtio-%d", id)
}

// Feature bit numbers that are not specific to a device type (§6 "Reserved
// Feature Bits"). Bits 0 to 23 and 50 to 127 belong to the device type;
// bits 24 to 40 extend the queue and feature negotiation mechanisms (§2.2).
const (
	// VIRTIO_F_INDIRECT_DESC: the driver can use descriptors with
	// VIRTQ_DESC_F_INDIRECT set (§2.7.5.3).
	VIRTIO_F_INDIRECT_DESC = 28
	// VIRTIO_F_EVENT_IDX: the used_event and avail_event fields replace
	// the ring flags for notification suppression (§2.7.7, §2.7.10).
	VIRTIO_F_EVENT_IDX = 29
	// VIRTIO_F_VERSION_1: the device complies with this specification
	// rather than the legacy interface; rings are little-endian. Every
	// govmm device offers it and requires it.
	VIRTIO_F_VERSION_1 = 32
	// VIRTIO_F_ACCESS_PLATFORM: the device accesses memory through a
	// platform-specific mechanism such as an IOMMU. govmm has none.
	VIRTIO_F_ACCESS_PLATFORM = 33
	// VIRTIO_F_RING_PACKED: the packed virtqueue layout (§2.8). Not
	// implemented by this package.
	VIRTIO_F_RING_PACKED = 34
	// VIRTIO_F_IN_ORDER: the device uses buffers in the order they were
	// made available (§2.7.9). Not implemented by this package.
	VIRTIO_F_IN_ORDER = 35
	// VIRTIO_F_ORDER_PLATFORM: memory accesses are ordered as the platform
	// orders them (for hardware devices).
	VIRTIO_F_ORDER_PLATFORM = 36
	// VIRTIO_F_SR_IOV: the device supports single root I/O virtualization
	// (PCI only).
	VIRTIO_F_SR_IOV = 37
	// VIRTIO_F_NOTIFICATION_DATA: the driver passes extra data (the
	// available index) in its device notifications.
	VIRTIO_F_NOTIFICATION_DATA = 38
	// VIRTIO_F_NOTIF_CONFIG_DATA: the driver uses the value the device
	// provides as the notification data.
	VIRTIO_F_NOTIF_CONFIG_DATA = 39
	// VIRTIO_F_RING_RESET: the driver can reset a single queue.
	VIRTIO_F_RING_RESET = 40
)

// Features is a set of feature bits (§2.2): bit n is feature n.
type Features uint64

// Has reports whether feature bit is in the set.
func (f Features) Has(bit uint) bool {
	return bit < 64 && f&(1<<bit) != 0
}

// With returns the set with feature bit added.
func (f Features) With(bit uint) Features {
	if bit >= 64 {
		return f
	}
	return f | 1<<bit
}

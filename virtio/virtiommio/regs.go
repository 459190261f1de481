package virtiommio

// The register layout of a virtio-mmio device, version 2 (virtio 1.2
// §4.2.2, Table 4.1). Every control register is 32 bits wide, at a 4-byte
// aligned offset from the device's base address; the device-specific
// configuration space follows at ConfigOffset.
const (
	regMagicValue        = 0x000 // R: "virt"
	regVersion           = 0x004 // R: 2 for the modern interface
	regDeviceID          = 0x008 // R: the virtio device ID (§5)
	regVendorID          = 0x00C // R: the subsystem vendor ID
	regDeviceFeatures    = 0x010 // R: offered features, 32 at a time
	regDeviceFeaturesSel = 0x014 // W: which 32 DeviceFeatures shows
	regDriverFeatures    = 0x020 // W: accepted features, 32 at a time
	regDriverFeaturesSel = 0x024 // W: which 32 DriverFeatures takes
	regQueueSel          = 0x030 // W: the queue the Queue* registers mean
	regQueueNumMax       = 0x034 // R: the selected queue's maximum size, 0 if none
	regQueueNum          = 0x038 // W: the size the driver chose
	regQueueReady        = 0x044 // RW: the selected queue is set up
	regQueueNotify       = 0x050 // W: available buffer notification, the value is the queue index
	regInterruptStatus   = 0x060 // R: the events behind the interrupt
	regInterruptACK      = 0x064 // W: the events the driver handled
	regStatus            = 0x070 // RW: device status (§2.1); 0 resets
	regQueueDescLow      = 0x080 // W: the Descriptor Area, low 32 bits
	regQueueDescHigh     = 0x084
	regQueueDriverLow    = 0x090 // W: the Driver Area (available ring)
	regQueueDriverHigh   = 0x094
	regQueueDeviceLow    = 0x0A0 // W: the Device Area (used ring)
	regQueueDeviceHigh   = 0x0A4
	regSHMSel            = 0x0AC // W: selects a shared memory region
	regSHMLenLow         = 0x0B0 // R: its length, -1 if there is no such region
	regSHMLenHigh        = 0x0B4
	regSHMBaseLow        = 0x0B8 // R: its guest-physical address
	regSHMBaseHigh       = 0x0BC
	regQueueReset        = 0x0C0 // RW: VIRTIO_F_RING_RESET only
	regConfigGeneration  = 0x0FC // R: changes with the configuration (§2.5)

	// ConfigOffset is where the device-specific configuration space
	// begins (§4.2.2: "Config 0x100+").
	ConfigOffset = 0x100
	// regWidth is the width of every control register: "The driver MUST
	// only use 32 bit wide and aligned reads and writes to access the
	// control registers" (§4.2.2.2).
	regWidth = 4
)

// Values the device presents.
const (
	// MagicValue is 0x74726976, "virt" in little-endian ASCII: "The
	// device MUST return 0x74726976 in MagicValue" (§4.2.2.1).
	MagicValue = 0x74726976
	// Version 2 is the modern interface; 1 was the legacy one (§4.2.4).
	// "The device MUST return value 0x2 in Version" (§4.2.2.1).
	Version = 2
	// VendorID is the subsystem vendor ID, which the specification leaves
	// to the implementation and Linux only reports (drivers match on
	// VIRTIO_DEV_ANY_ID). govmm's is "GVMM" in little-endian ASCII, as
	// QEMU's is "QEMU".
	VendorID = 0x4D4D5647
	// noSHMLength is SHMLenLow and SHMLenHigh for a region that does not
	// exist: "Reading from a non-existent region ... results in a length
	// of -1" (§4.2.2). No device here has shared memory.
	noSHMLength = 0xFFFF_FFFF
)

// InterruptStatus bits (§4.2.2).
const (
	// VIRTIO_MMIO_INT_VRING: "Used Buffer Notification - bit 0 - the
	// interrupt was asserted because the device has used a buffer in at
	// least one of the active virtual queues."
	VIRTIO_MMIO_INT_VRING = 1 << 0
	// VIRTIO_MMIO_INT_CONFIG: "Configuration Change Notification - bit 1
	// - the interrupt was asserted because the configuration of the
	// device has changed."
	VIRTIO_MMIO_INT_CONFIG = 1 << 1
)

// Window is the size of the address window of one device: a 4 KiB page,
// so the device-specific configuration space has everything from
// ConfigOffset to the end of the page, and each device's registers sit on
// a page of their own. Linux needs at least 0x200 (drivers/virtio/
// virtio_mmio.c reaches the configuration through the one resource).
const Window = 0x1000

// MaxQueues is the most virtqueues a device may have. The registers set no
// useful limit (QueueSel is 32 bits); this one bounds what a device costs
// the host, one Kick eventfd and one ioeventfd per queue, at far more
// queues than any device here has.
const MaxQueues = 1024

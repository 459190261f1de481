package virtiopci

import "github.com/govmm/govmm/virtio"

// PCI identity of a modern virtio function (virtio 1.2 §4.1.2).
const (
	// VendorID is the PCI vendor of every virtio function: Red Hat, Inc.
	// (formerly Qumranet), "Any PCI device with PCI Vendor ID 0x1AF4 ...
	// is a virtio device" (§4.1.2).
	VendorID = 0x1AF4
	// DeviceIDBase plus the virtio device ID (§5) is the PCI Device ID of
	// a non-transitional device: "The PCI Device ID is calculated by
	// adding 0x1040 to the Virtio Device ID" (§4.1.2). The range ends at
	// 0x107F, so virtio device IDs up to MaxVirtioDeviceID fit.
	DeviceIDBase = 0x1040
	// MaxVirtioDeviceID is the largest virtio device ID the PCI Device ID
	// range 0x1040-0x107F can carry.
	MaxVirtioDeviceID = 0x3F
	// RevisionID: "Non-transitional devices SHOULD have a PCI Revision ID
	// of 1 or higher" (§4.1.2.1), which keeps drivers that only know the
	// legacy interface (revision 0) away.
	RevisionID = 1
	// SubsystemVendorID and SubsystemID name the "board". §4.1.2.1:
	// "Non-transitional devices SHOULD have a PCI Subsystem Device ID of
	// 0x40 or higher", again so that legacy drivers, which read the
	// virtio device ID from the subsystem ID, do not match. 0x1100 is what
	// QEMU gives its modern-only devices (its default subsystem, "QEMU
	// Virtual Machine", hw/pci/pci.c) and what govmm's host bridge uses.
	SubsystemVendorID = 0x1AF4
	SubsystemID       = 0x1100
)

// Class codes (PCI Code and ID Assignment Specification §1: base class <<
// 16 | sub-class << 8 | programming interface) of the virtio device types,
// as QEMU sets them (hw/virtio/virtio-*-pci.c). Linux's virtio_pci binds
// by vendor and device ID and ignores the class; the class only tells
// lspci and firmware what kind of device this is.
const (
	// ClassNetworkEthernet: network controller, Ethernet (virtio-net).
	ClassNetworkEthernet = 0x020000
	// ClassStorageSCSI: mass storage controller, SCSI. QEMU's virtio-blk
	// uses it (PCI_CLASS_STORAGE_SCSI), and SeaBIOS looks for it.
	ClassStorageSCSI = 0x010000
	// ClassCommunicationOther: simple communication controller, other
	// (virtio-console, QEMU's PCI_CLASS_COMMUNICATION_OTHER).
	ClassCommunicationOther = 0x078000
	// ClassUnassigned: base class FFh, "device does not fit in any
	// defined classes", for the entropy device and any other type. (QEMU
	// gives virtio-rng 0x00FF, which lspci shows as "Unclassified device
	// [00ff]"; base class FFh is the code the specification defines for
	// the purpose.)
	ClassUnassigned = 0xFF0000
)

// classCode returns the PCI class code of a virtio device type.
func classCode(deviceID uint16) uint32 {
	switch deviceID {
	case virtio.VIRTIO_ID_NET:
		return ClassNetworkEthernet
	case virtio.VIRTIO_ID_BLOCK:
		return ClassStorageSCSI
	case virtio.VIRTIO_ID_CONSOLE:
		return ClassCommunicationOther
	}
	return ClassUnassigned
}

// Virtio structure PCI capabilities (§4.1.4). Each is a vendor-specific
// capability (cap_vndr 0x09) laid out as struct virtio_pci_cap:
//
//	u8   cap_vndr;   0  PCI_CAP_ID_VNDR
//	u8   cap_next;   1
//	u8   cap_len;    2  length of the whole capability
//	u8   cfg_type;   3  VIRTIO_PCI_CAP_*
//	u8   bar;        4  where the structure is
//	u8   id;         5  tells several capabilities of one type apart
//	u8   padding[2]; 6
//	le32 offset;     8  of the structure in the BAR
//	le32 length;     12 of the structure
//
// The notify capability appends le32 notify_off_multiplier, the PCI
// configuration access capability u8 pci_cfg_data[4], both at 16.
const (
	// cfg_type values (§4.1.4, the names of Linux's
	// include/uapi/linux/virtio_pci.h).
	VIRTIO_PCI_CAP_COMMON_CFG = 1 // common configuration (§4.1.4.3)
	VIRTIO_PCI_CAP_NOTIFY_CFG = 2 // notifications (§4.1.4.4)
	VIRTIO_PCI_CAP_ISR_CFG    = 3 // ISR status (§4.1.4.5)
	VIRTIO_PCI_CAP_DEVICE_CFG = 4 // device-specific configuration (§4.1.4.6)
	VIRTIO_PCI_CAP_PCI_CFG    = 5 // PCI configuration access (§4.1.4.9)

	// Offsets inside a capability, counted from cap_vndr.
	capCfgType             = 3
	capBAR                 = 4
	capID                  = 5
	capOffset              = 8
	capLength              = 12
	capNotifyOffMultiplier = 16 // struct virtio_pci_notify_cap
	capPCICfgData          = 16 // struct virtio_pci_cfg_cap
	capHeaderSize          = 3  // cap_vndr, cap_next, cap_len: AddVendorCapability writes them
	virtioPCICapSize       = 16 // sizeof(struct virtio_pci_cap)
	virtioPCINotifyCapSize = 20 // sizeof(struct virtio_pci_notify_cap)
	virtioPCICfgCapSize    = 20 // sizeof(struct virtio_pci_cfg_cap)
	pciCfgDataSize         = 4  // u8 pci_cfg_data[4]
)

// struct virtio_pci_common_cfg (§4.1.4.3): field offsets. The first group
// is about the whole device, the second about the queue queue_select
// selects. The 64-bit queue addresses are accessed as two 32-bit halves
// (§4.1.3.1: "the driver MAY access each of the high and low 32-bit parts
// of the field independently"), so each half is a register of its own.
const (
	offDeviceFeatureSelect = 0x00 // le32, RW
	offDeviceFeature       = 0x04 // le32, RO
	offDriverFeatureSelect = 0x08 // le32, RW
	offDriverFeature       = 0x0C // le32, RW
	offConfigMSIXVector    = 0x10 // le16, RW
	offNumQueues           = 0x12 // le16, RO
	offDeviceStatus        = 0x14 // u8, RW
	offConfigGeneration    = 0x15 // u8, RO
	offQueueSelect         = 0x16 // le16, RW
	offQueueSize           = 0x18 // le16, RW
	offQueueMSIXVector     = 0x1A // le16, RW
	offQueueEnable         = 0x1C // le16, RW
	offQueueNotifyOff      = 0x1E // le16, RO
	offQueueDescLo         = 0x20 // le64 queue_desc, low half, RW
	offQueueDescHi         = 0x24 // high half
	offQueueDriverLo       = 0x28 // le64 queue_driver, low half, RW
	offQueueDriverHi       = 0x2C
	offQueueDeviceLo       = 0x30 // le64 queue_device, low half, RW
	offQueueDeviceHi       = 0x34
	offQueueNotifyData     = 0x38 // le16, RO (VIRTIO_F_NOTIF_CONFIG_DATA, not offered: 0)
	offQueueReset          = 0x3A // le16, RW (VIRTIO_F_RING_RESET, not offered: reads 0)
	// commonCfgSize is sizeof(struct virtio_pci_common_cfg) in virtio
	// 1.2, queue_notify_data and queue_reset included.
	commonCfgSize = 0x3C
)

// commonRegister is one register of the common configuration structure.
type commonRegister struct {
	offset, size uint64
}

// commonRegisters lists every register of struct virtio_pci_common_cfg in
// offset order; together they cover the structure without gaps.
var commonRegisters = [...]commonRegister{
	{offDeviceFeatureSelect, 4}, {offDeviceFeature, 4},
	{offDriverFeatureSelect, 4}, {offDriverFeature, 4},
	{offConfigMSIXVector, 2}, {offNumQueues, 2},
	{offDeviceStatus, 1}, {offConfigGeneration, 1},
	{offQueueSelect, 2}, {offQueueSize, 2}, {offQueueMSIXVector, 2},
	{offQueueEnable, 2}, {offQueueNotifyOff, 2},
	{offQueueDescLo, 4}, {offQueueDescHi, 4},
	{offQueueDriverLo, 4}, {offQueueDriverHi, 4},
	{offQueueDeviceLo, 4}, {offQueueDeviceHi, 4},
	{offQueueNotifyData, 2}, {offQueueReset, 2},
}

// VIRTIO_MSI_NO_VECTOR in config_msix_vector or queue_msix_vector means
// "no interrupt for this event" (§4.1.5.1.2). It is also what reading the
// register returns when the device could not map the event to the vector
// the driver wrote, which is how the driver learns that it failed
// (§4.1.5.1.2.1: "Devices MUST report mapping failures by returning the
// NO_VECTOR value when the relevant config_msix_vector/queue_msix_vector
// field is read").
const VIRTIO_MSI_NO_VECTOR = 0xFFFF

// ISR status bits (§4.1.4.5). The register is only used while MSI-X is
// disabled: reading it returns the bits and clears them, and deasserts
// INTx#.
const (
	// VIRTIO_PCI_ISR_QUEUE: a used buffer notification for some queue.
	VIRTIO_PCI_ISR_QUEUE = 0x1
	// VIRTIO_PCI_ISR_CONFIG: a configuration change notification.
	VIRTIO_PCI_ISR_CONFIG = 0x2
)

// Layout of BAR 0 (see the package documentation). Every structure starts
// on a page of its own.
const (
	// BARIndex is the BAR that holds every structure: a 32-bit,
	// non-prefetchable memory BAR, as registers with side effects must be
	// (PCI 3.0 §6.2.5.1), which fits the host bridge's 32-bit window
	// (pci.DefaultWindows has no 64-bit one).
	BARIndex = 0
	// regionSize is the space each structure gets: a 4 KiB page, as PCI
	// 3.0 §6.8.2 recommends for the MSI-X table and PBA.
	regionSize = 0x1000

	CommonCfgOffset = 0 * regionSize
	ISROffset       = 1 * regionSize
	DeviceCfgOffset = 2 * regionSize
	NotifyOffset    = 3 * regionSize
	MSIXTableOffset = 4 * regionSize
	MSIXPBAOffset   = 5 * regionSize
	// BARSize is the power of two above the six pages.
	BARSize = 8 * regionSize

	// isrLength is the ISR structure's length: one byte (§4.1.4.5).
	isrLength = 1
	// deviceCfgLength is the device-specific structure's advertised
	// length: its whole page. virtio.Device does not say how large its
	// configuration is; bytes past its end read as zero. Linux refuses
	// config accesses past the advertised length (vp_get, vp_set), so it
	// must cover the largest structure.
	deviceCfgLength = regionSize

	// NotifyOffMultiplier is notify_off_multiplier: the notify address of
	// a queue is NotifyOffset + queue_notify_off × NotifyOffMultiplier
	// (§4.1.4.4). With queue_notify_off equal to the queue index, each
	// queue has its own 4-byte doorbell, so the machine can give each
	// its own ioeventfd and a write names its queue by its address alone.
	// The device "MUST either present notify_off_multiplier as an even
	// power of 2, or present notify_off_multiplier as 0" (§4.1.4.4.1).
	NotifyOffMultiplier = 4

	// NotifyIOBARIndex is the second home of the notify structure: an
	// I/O BAR of NotifyIOBARSize ports. §4.1.4.1 lets a device offer
	// several structures of one type, in its order of preference, and
	// names this very case: "on some hypervisors, notifications using IO
	// accesses are faster than memory accesses". On AMD SVM they are: an
	// OUT exits with the port, width and value decoded by the hardware
	// (AMD APM Vol. 2 §15.10.2, IOIO intercept, EXITINFO1), so KVM
	// signals the ioeventfd at once, while a store to an MMIO doorbell
	// exits as a nested page fault that KVM must decode by emulating the
	// instruction. Linux's virtio_pci takes the first notify capability
	// whose BAR it could assign (virtio_pci_find_capability), so the I/O
	// one comes first and the memory one remains for a guest without I/O
	// space.
	NotifyIOBARIndex = 1
	// NotifyIOBARSize is the smallest I/O BAR (PCI 3.0 §6.2.5.1).
	NotifyIOBARSize = 4
	// notifyIOLength is the I/O notify structure's length: the one
	// 16-bit register that every queue shares (notify_off_multiplier 0,
	// which §4.1.4.4 allows), the driver naming the queue by the index it
	// writes (§4.1.5.2). The machine tells the queues apart with one
	// ioeventfd per queue matching its index (KVM_IOEVENTFD_FLAG_DATAMATCH).
	notifyIOLength = 2
	// NotifyIOOffMultiplier is the I/O notify capability's
	// notify_off_multiplier.
	NotifyIOOffMultiplier = 0

	// MaxQueues is the most virtqueues a device may have here: with one
	// MSI-X vector per queue and one for configuration changes, 256
	// vectors of 16 bytes fill the table's page exactly, and 255 notify
	// addresses fit in theirs.
	MaxQueues = regionSize/16 - 1
)

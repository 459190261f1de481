package blk

// The constants in this file keep the names that virtio 1.2 §5.2 and
// Linux's include/uapi/linux/virtio_blk.h give them, so that they can be
// looked up there as they are written here.

// Feature bits of the block device (§5.2.3 "Feature bits").
const (
	// VIRTIO_BLK_F_SIZE_MAX: size_max is the largest size of any single
	// segment. Not offered: segments may be any size.
	VIRTIO_BLK_F_SIZE_MAX = 1
	// VIRTIO_BLK_F_SEG_MAX: seg_max is the largest number of data
	// segments in a request.
	VIRTIO_BLK_F_SEG_MAX = 2
	// VIRTIO_BLK_F_GEOMETRY: the legacy cylinder/head/sector geometry is
	// in geometry. Not offered.
	VIRTIO_BLK_F_GEOMETRY = 4
	// VIRTIO_BLK_F_RO: the device is read-only.
	VIRTIO_BLK_F_RO = 5
	// VIRTIO_BLK_F_BLK_SIZE: blk_size is the logical block size.
	VIRTIO_BLK_F_BLK_SIZE = 6
	// VIRTIO_BLK_F_FLUSH: the device handles VIRTIO_BLK_T_FLUSH, which
	// makes completed writes stable (the device has a write cache).
	VIRTIO_BLK_F_FLUSH = 9
	// VIRTIO_BLK_F_TOPOLOGY: topology describes the best I/O alignment.
	VIRTIO_BLK_F_TOPOLOGY = 10
	// VIRTIO_BLK_F_CONFIG_WCE: the driver can switch the write cache
	// between writeback and writethrough with writeback. Not offered.
	VIRTIO_BLK_F_CONFIG_WCE = 11
	// VIRTIO_BLK_F_MQ: the device has num_queues request queues.
	VIRTIO_BLK_F_MQ = 12
	// VIRTIO_BLK_F_DISCARD: the device handles VIRTIO_BLK_T_DISCARD.
	VIRTIO_BLK_F_DISCARD = 13
	// VIRTIO_BLK_F_WRITE_ZEROES: the device handles
	// VIRTIO_BLK_T_WRITE_ZEROES.
	VIRTIO_BLK_F_WRITE_ZEROES = 14
	// VIRTIO_BLK_F_LIFETIME, VIRTIO_BLK_F_SECURE_ERASE, VIRTIO_BLK_F_ZONED:
	// device lifetime information, secure erase and zoned storage. Not
	// offered.
	VIRTIO_BLK_F_LIFETIME     = 15
	VIRTIO_BLK_F_SECURE_ERASE = 16
	VIRTIO_BLK_F_ZONED        = 17
)

// Request types, the type field of struct virtio_blk_req (§5.2.6 "Device
// Operation"). Any other type, the zoned ones (§5.2.6.3) included, is
// answered with VIRTIO_BLK_S_UNSUPP.
const (
	VIRTIO_BLK_T_IN           = 0  // read sectors into the device-writable data
	VIRTIO_BLK_T_OUT          = 1  // write the device-readable data to sectors
	VIRTIO_BLK_T_FLUSH        = 4  // make every completed write stable
	VIRTIO_BLK_T_GET_ID       = 8  // return the device ID string
	VIRTIO_BLK_T_GET_LIFETIME = 10 // not supported
	VIRTIO_BLK_T_DISCARD      = 11 // the sector ranges may be deallocated
	VIRTIO_BLK_T_WRITE_ZEROES = 13 // the sector ranges read as zeroes
	VIRTIO_BLK_T_SECURE_ERASE = 14 // not supported
)

// Values of the status byte at the end of every request (§5.2.6).
const (
	VIRTIO_BLK_S_OK     = 0 // success
	VIRTIO_BLK_S_IOERR  = 1 // device or driver error
	VIRTIO_BLK_S_UNSUPP = 2 // request not supported by the device
)

// VIRTIO_BLK_ID_BYTES is the length of the data of a VIRTIO_BLK_T_GET_ID
// request: "The device ID string is a NUL-padded ASCII string up to 20 bytes
// long. If the string is 20 bytes long then there is no NUL terminator"
// (§5.2.6).
const VIRTIO_BLK_ID_BYTES = 20

// VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP is the only flag of a struct
// virtio_blk_discard_write_zeroes segment (§5.2.6): on a write zeroes
// request the device may deallocate the sectors it zeroes. The device MUST
// answer VIRTIO_BLK_S_UNSUPP to a discard with it set, and to either request
// with any other flag set (§5.2.6.2).
const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1

// SectorSize is the unit of every sector number and count in the
// protocol: "The sector number indicates the offset (multiplied by 512)
// where the read or write is to occur" (§5.2.6), whatever blk_size says.
// capacity is in the same unit (§5.2.4).
const SectorSize = 512

// struct virtio_blk_req (§5.2.6): a device-readable header, the data, and a
// device-writable status byte at the very end.
//
//	le32 type;
//	le32 reserved;
//	le64 sector;
//	u8 data[];
//	u8 status;
const (
	reqTypeOff    = 0
	reqSectorOff  = 8
	reqHeaderSize = 16
	reqStatusSize = 1
)

// struct virtio_blk_discard_write_zeroes (§5.2.6): the data of discard and
// write zeroes requests is an array of these segments.
//
//	le64 sector;
//	le32 num_sectors;
//	le32 flags;
const (
	segSectorOff     = 0
	segNumSectorsOff = 8
	segFlagsOff      = 12
	segSize          = 16
)

// struct virtio_blk_config (§5.2.4 "Device configuration layout"), the
// device-specific configuration space. Every field is little-endian.
const (
	cfgCapacity                   = 0  // le64: size in 512-byte sectors
	cfgSizeMax                    = 8  // le32 (VIRTIO_BLK_F_SIZE_MAX)
	cfgSegMax                     = 12 // le32 (VIRTIO_BLK_F_SEG_MAX)
	cfgGeometryCylinders          = 16 // le16 (VIRTIO_BLK_F_GEOMETRY)
	cfgGeometryHeads              = 18 // u8
	cfgGeometrySectors            = 19 // u8
	cfgBlkSize                    = 20 // le32 (VIRTIO_BLK_F_BLK_SIZE)
	cfgPhysicalBlockExp           = 24 // u8 (VIRTIO_BLK_F_TOPOLOGY)
	cfgAlignmentOffset            = 25 // u8
	cfgMinIOSize                  = 26 // le16
	cfgOptIOSize                  = 28 // le32
	cfgWriteback                  = 32 // u8 (VIRTIO_BLK_F_CONFIG_WCE)
	cfgNumQueues                  = 34 // le16 (VIRTIO_BLK_F_MQ), after u8 unused0
	cfgMaxDiscardSectors          = 36 // le32 (VIRTIO_BLK_F_DISCARD)
	cfgMaxDiscardSeg              = 40 // le32
	cfgDiscardSectorAlignment     = 44 // le32
	cfgMaxWriteZeroesSectors      = 48 // le32 (VIRTIO_BLK_F_WRITE_ZEROES)
	cfgMaxWriteZeroesSeg          = 52 // le32
	cfgWriteZeroesMayUnmap        = 56 // u8, then u8 unused1[3]
	cfgMaxSecureEraseSectors      = 60 // le32 (VIRTIO_BLK_F_SECURE_ERASE)
	cfgMaxSecureEraseSeg          = 64 // le32
	cfgSecureEraseSectorAlignment = 68 // le32
	cfgZoned                      = 72 // struct virtio_blk_zoned_characteristics (VIRTIO_BLK_F_ZONED)
	configSize                    = 96 // the zoned characteristics are 24 bytes
)

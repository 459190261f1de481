package net

import "encoding/binary"

// The constants in this file keep the names that virtio 1.2 §5.1 and
// Linux's include/uapi/linux/virtio_net.h give them, so that they can be
// looked up there as they are written here.

// Feature bits of the network device (§5.1.3). The device offers the ones
// in offeredFeatures; the others are listed so that the spec's dependency
// rules (§5.1.3.1) can be read against them.
const (
	// VIRTIO_NET_F_CSUM: the device handles packets with a partial
	// checksum (the driver may leave checksumming to it, §5.1.6.2).
	VIRTIO_NET_F_CSUM = 0
	// VIRTIO_NET_F_GUEST_CSUM: the driver handles received packets with a
	// partial checksum.
	VIRTIO_NET_F_GUEST_CSUM = 1
	// VIRTIO_NET_F_CTRL_GUEST_OFFLOADS: offloads can be changed through the
	// control queue. Not offered.
	VIRTIO_NET_F_CTRL_GUEST_OFFLOADS = 2
	// VIRTIO_NET_F_MTU: the mtu config field is valid. Not offered.
	VIRTIO_NET_F_MTU = 3
	// VIRTIO_NET_F_MAC: the mac config field is valid.
	VIRTIO_NET_F_MAC = 5
	// VIRTIO_NET_F_GUEST_TSO4, _TSO6: the driver can receive TCP
	// segmentation offload packets (up to 64 KiB "super-packets" that the
	// guest's stack treats as a run of segments). Both need GUEST_CSUM.
	VIRTIO_NET_F_GUEST_TSO4 = 7
	VIRTIO_NET_F_GUEST_TSO6 = 8
	// VIRTIO_NET_F_GUEST_ECN: the driver can receive TSO packets with the
	// ECN bit. Needs GUEST_TSO4 or GUEST_TSO6.
	VIRTIO_NET_F_GUEST_ECN = 9
	// VIRTIO_NET_F_GUEST_UFO: the driver can receive UDP fragmentation
	// offload packets. Not offered.
	VIRTIO_NET_F_GUEST_UFO = 10
	// VIRTIO_NET_F_HOST_TSO4, _TSO6, _ECN: the device accepts TSO packets
	// from the driver (the tap hands them to the host's stack whole).
	VIRTIO_NET_F_HOST_TSO4 = 11
	VIRTIO_NET_F_HOST_TSO6 = 12
	VIRTIO_NET_F_HOST_ECN  = 13
	// VIRTIO_NET_F_HOST_UFO: the device accepts UFO packets. Not offered.
	VIRTIO_NET_F_HOST_UFO = 14
	// VIRTIO_NET_F_MRG_RXBUF: the driver can take a received packet spread
	// over several receive buffers (num_buffers, §5.1.6.3).
	VIRTIO_NET_F_MRG_RXBUF = 15
	// VIRTIO_NET_F_STATUS: the status config field is valid.
	VIRTIO_NET_F_STATUS = 16
	// VIRTIO_NET_F_CTRL_VQ: there is a control queue. Not offered, so
	// neither are the features that need it (MQ, CTRL_RX, ...).
	VIRTIO_NET_F_CTRL_VQ = 17
	// VIRTIO_NET_F_MQ: several queue pairs. Not offered.
	VIRTIO_NET_F_MQ = 22
)

// offeredFeatures are the device-type feature bits the device offers. Every
// dependency of §5.1.3.1 holds among them: the TSO bits come with their
// CSUM bit, the ECN bits with TSO.
var offeredFeatures = []uint{
	VIRTIO_NET_F_CSUM,
	VIRTIO_NET_F_GUEST_CSUM,
	VIRTIO_NET_F_MAC,
	VIRTIO_NET_F_GUEST_TSO4,
	VIRTIO_NET_F_GUEST_TSO6,
	VIRTIO_NET_F_GUEST_ECN,
	VIRTIO_NET_F_HOST_TSO4,
	VIRTIO_NET_F_HOST_TSO6,
	VIRTIO_NET_F_HOST_ECN,
	VIRTIO_NET_F_MRG_RXBUF,
	VIRTIO_NET_F_STATUS,
}

// Virtqueues (§5.1.2): without VIRTIO_NET_F_MQ there is one pair, and
// without VIRTIO_NET_F_CTRL_VQ no control queue.
const (
	receiveq1  = 0
	transmitq1 = 1
	numQueues  = 2
)

// QueueSize is the maximum size of both queues, QEMU's default. The driver
// may choose a smaller power of 2.
const QueueSize = 256

// Bits of the status config field (§5.1.4).
const (
	// VIRTIO_NET_S_LINK_UP: the link is up.
	VIRTIO_NET_S_LINK_UP = 1
	// VIRTIO_NET_S_ANNOUNCE: the driver should send gratuitous packets
	// (needs VIRTIO_NET_F_GUEST_ANNOUNCE). Not used.
	VIRTIO_NET_S_ANNOUNCE = 2
)

// struct virtio_net_config (§5.1.4), as far as the device fills it:
//
//	u8   mac[6];
//	le16 status;              /* VIRTIO_NET_F_STATUS */
//	le16 max_virtqueue_pairs; /* VIRTIO_NET_F_MQ or VIRTIO_NET_F_RSS */
//	le16 mtu;                 /* VIRTIO_NET_F_MTU */
//
// The fields after mtu (speed, duplex, RSS parameters) exist only with
// features the device does not offer: they read as zero, like every byte
// past the end.
const (
	configMACOff               = 0
	configStatusOff            = 6
	configMaxVirtqueuePairsOff = 8
	configMTUOff               = 10
	configSize                 = 12
)

// Flags of virtio_net_hdr (§5.1.6).
const (
	// VIRTIO_NET_HDR_F_NEEDS_CSUM: the packet's checksum is partial:
	// csum_start and csum_offset say where to compute and store it.
	VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
	// VIRTIO_NET_HDR_F_DATA_VALID: the device validated the checksum
	// (receive only, with VIRTIO_NET_F_GUEST_CSUM).
	VIRTIO_NET_HDR_F_DATA_VALID = 2
	// VIRTIO_NET_HDR_F_RSC_INFO: csum_start and csum_offset hold
	// coalescing counts (receive only, VIRTIO_NET_F_RSC_EXT; never set
	// here).
	VIRTIO_NET_HDR_F_RSC_INFO = 4
)

// Values of virtio_net_hdr.gso_type (§5.1.6).
const (
	VIRTIO_NET_HDR_GSO_NONE   = 0
	VIRTIO_NET_HDR_GSO_TCPV4  = 1
	VIRTIO_NET_HDR_GSO_UDP    = 3
	VIRTIO_NET_HDR_GSO_TCPV6  = 4
	VIRTIO_NET_HDR_GSO_UDP_L4 = 5
	// VIRTIO_NET_HDR_GSO_ECN is a flag on top of TCPV4 or TCPV6: the
	// TCP segments carry the ECN CWR bit.
	VIRTIO_NET_HDR_GSO_ECN = 0x80
)

// HeaderSize is the size of struct virtio_net_hdr as a VIRTIO_F_VERSION_1
// device uses it: 12 bytes, num_buffers included whether or not
// VIRTIO_NET_F_MRG_RXBUF is negotiated (§5.1.6; the 10-byte header without
// num_buffers is legacy only, §5.1.6.1). Linux calls it struct
// virtio_net_hdr_v1. Every packet on either queue starts with it.
const HeaderSize = 12

// Offsets of the fields of struct virtio_net_hdr (§5.1.6):
//
//	u8   flags;
//	u8   gso_type;
//	le16 hdr_len;
//	le16 gso_size;
//	le16 csum_start;
//	le16 csum_offset;
//	le16 num_buffers;
const (
	hdrFlagsOff      = 0
	hdrGSOTypeOff    = 1
	hdrHdrLenOff     = 2
	hdrGSOSizeOff    = 4
	hdrCsumStartOff  = 6
	hdrCsumOffsetOff = 8
	hdrNumBuffersOff = 10
)

// Header is struct virtio_net_hdr (§5.1.6), with the spec's field names.
type Header struct {
	Flags      uint8  // flags: VIRTIO_NET_HDR_F_*
	GSOType    uint8  // gso_type: VIRTIO_NET_HDR_GSO_*
	HdrLen     uint16 // hdr_len: length of the headers to replicate per segment (a hint)
	GSOSize    uint16 // gso_size: the MSS, for gso_type other than NONE
	CsumStart  uint16 // csum_start: where checksumming starts (NEEDS_CSUM)
	CsumOffset uint16 // csum_offset: where after csum_start the checksum goes
	NumBuffers uint16 // num_buffers: receive buffers the packet spans (receive only)
}

// DecodeHeader reads a Header from the first HeaderSize bytes of b. All
// fields are little-endian (§5.1.6: le16).
func DecodeHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	return Header{
		Flags:      b[hdrFlagsOff],
		GSOType:    b[hdrGSOTypeOff],
		HdrLen:     binary.LittleEndian.Uint16(b[hdrHdrLenOff:]),
		GSOSize:    binary.LittleEndian.Uint16(b[hdrGSOSizeOff:]),
		CsumStart:  binary.LittleEndian.Uint16(b[hdrCsumStartOff:]),
		CsumOffset: binary.LittleEndian.Uint16(b[hdrCsumOffsetOff:]),
		NumBuffers: binary.LittleEndian.Uint16(b[hdrNumBuffersOff:]),
	}
}

// Encode writes h into the first HeaderSize bytes of b.
func (h Header) Encode(b []byte) {
	_ = b[HeaderSize-1]
	b[hdrFlagsOff] = h.Flags
	b[hdrGSOTypeOff] = h.GSOType
	binary.LittleEndian.PutUint16(b[hdrHdrLenOff:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[hdrGSOSizeOff:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[hdrCsumStartOff:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[hdrCsumOffsetOff:], h.CsumOffset)
	binary.LittleEndian.PutUint16(b[hdrNumBuffersOff:], h.NumBuffers)
}

// Packet sizes.
const (
	// ethHeaderLen is an Ethernet header: two MAC addresses and the
	// EtherType. Neither the kernel (tun_get_user) nor a driver takes a
	// frame shorter than that.
	ethHeaderLen = 14
	// ipv6HeaderLen and maxIPPayload bound a TSO packet: the largest IPv6
	// payload length is 65535.
	ipv6HeaderLen = 40
	maxIPPayload  = 65535
	// MaxPacketLen is the largest packet, without the virtio_net_hdr, that
	// either side may send with segmentation offloads: 14 + 40 + 65535 =
	// 65589 bytes (§5.1.6.3; virtio 1.2 still said 65550, the IPv4 bound,
	// which later revisions of the spec corrected for IPv6). Without
	// offloads packets are limited by the MTU, which a tap allows up to
	// 65521, so this bound holds for every packet.
	MaxPacketLen = ethHeaderLen + ipv6HeaderLen + maxIPPayload
	// rxBufferNeed is how much receive buffer space one packet of
	// MaxPacketLen needs with its header: 65601 bytes, what §5.1.6.3.1
	// asks a driver without VIRTIO_NET_F_MRG_RXBUF to put in each buffer
	// (65562 in virtio 1.2, from the IPv4 bound).
	rxBufferNeed = HeaderSize + MaxPacketLen
)

// iovMax is the most buffers one readv or writev takes (UIO_MAXIOV in
// include/uapi/linux/uio.h, IOV_MAX in userspace); more fail with EINVAL.
const iovMax = 1024

// Package net is the virtio network device (virtio 1.2 §5.1) with a Linux
// tap interface as its host end: `govmm boot --net tap=NAME[,mac=MAC]`.
//
// # The host side
//
// OpenTap attaches to the tap NAME, creating it if it does not exist, and
// brings its link up, so the host only has to add an address or put the tap
// in a bridge:
//
//	govmm boot --net tap=gv0 ...
//	ip addr add 192.0.2.1/24 dev gv0      # the guest uses 192.0.2.2/24
//
// A tap govmm created is not persistent and vanishes when govmm exits; one
// created beforehand stays, and lets govmm run without CAP_NET_ADMIN if it
// belongs to the user and is up:
//
//	ip tuntap add dev gv0 mode tap user $USER
//	ip link set gv0 up
//
// If the tap is deleted while the guest runs, govmm logs it once, naming
// the tap, and the guest keeps running with its link down: what it
// transmits is dropped and counted, and it receives nothing more.
//
// The guest's MAC address is mac= if given; otherwise it is derived from
// the tap's name (MACFromName: the first 6 bytes of SHA-256 of the name as a
// locally administered unicast address), so it is the same on every run.
//
// # The device
//
// The device has one receive and one transmit queue (receiveq1,
// transmitq1) and no control queue. It offers the checksum and TCP
// segmentation offloads in both directions (VIRTIO_NET_F_CSUM, GUEST_CSUM,
// HOST_TSO4/6, GUEST_TSO4/6, HOST_ECN, GUEST_ECN), mergeable receive buffers
// (MRG_RXBUF), MAC and STATUS. Each packet carries a 12-byte struct
// virtio_net_hdr (§5.1.6), which the tap understands too (IFF_VNET_HDR,
// TUNSETVNETHDRSZ), so the offloads pass through untouched: the guest hands
// 64 KiB TCP segments to the host's stack and back, and nobody computes a
// checksum. At Activate the tap is told which receive offloads the driver
// accepted (TUNSETOFFLOAD); the kernel finishes checksums and segments the
// others before they reach the tap.
//
// Each queue has a goroutine. The transmit worker drains its queue on every
// kick and writes each packet with one writev from the guest's buffers (the
// device copies only the 12-byte header, to check it), publishing each
// completion as soon as the packet is written and interrupting the driver
// when its used_event asks (virtio.Drain).
//
// The receive worker never reads a packet before it holds buffers the
// driver posted that can take the largest packet the tap may deliver:
// while it holds too few it sleeps on its queue's kick, and once it holds
// enough, on the tap. Packets that arrive meanwhile wait in the tap's queue
// in the kernel, which drops them when it is full, as a real link would:
// govmm drops nothing because the guest is slow. With MRG_RXBUF it holds
// chains until together they have room for the largest packet (65601
// bytes with the header) and reads with one readv across all of them, the
// kernel copying the frame straight into guest RAM (the only copy), then
// returns the chains the packet filled with num_buffers set and keeps the
// rest for the next packet. Without MRG_RXBUF each packet takes one chain.
// Completions are published when the tap has no more packets, or every 64
// packets.
//
// The device talks to its host end through the Backend interface; the
// tests use a fake one.
package net

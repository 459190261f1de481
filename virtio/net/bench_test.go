package net

import (
	"fmt"
	"testing"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The benchmarks run the queue logic synchronously, one packet per
// iteration, in batches as a busy driver makes them: with the fake backend
// they measure the device's own cost per packet, with a tap the device and
// the kernel's. Run them with -benchmem: the steady state allocates
// nothing.

const benchBatch = 64

// benchQueue is a queue of QueueSize chains, each one descriptor with a
// buffer of its own, that the benchmark makes available by hand, without
// virtiotest's bookkeeping (which allocates).
type benchQueue struct {
	q    *virtio.Queue
	d    *virtiotest.Driver
	bufs []virtiotest.Buf
}

func newBenchQueue(b *testing.B, f virtio.Features, bufSize uint32, write bool, contents []byte) *benchQueue {
	mem, _ := virtiotest.NewRAM(0, 32<<20)
	sq := newSyncQueue(b, mem, f, QueueSize)
	bq := &benchQueue{q: sq.q, d: sq.d}
	for i := range uint16(QueueSize) {
		var buf virtiotest.Buf
		if write {
			buf = sq.d.Writable(bufSize)
		} else {
			buf = sq.d.Readable(contents)
		}
		bq.bufs = append(bq.bufs, buf)
		desc := virtio.Desc{Addr: buf.Addr, Len: buf.Len}
		if write {
			desc.Flags = virtio.VIRTQ_DESC_F_WRITE
		}
		sq.d.SetDesc(i, desc)
	}
	return bq
}

// post makes the chains with the given heads available.
func (bq *benchQueue) post(heads ...uint16) {
	for _, h := range heads {
		bq.d.PutAvail(h)
	}
	bq.d.SetAvailIdx(bq.d.AvailIdx())
}

func benchSizes() []int { return []int{64, 1514, 65000} }

func BenchmarkTX(b *testing.B) {
	for _, size := range benchSizes() {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			d, be, run := newSyncDevice(b, allFeatures())
			be.discard = true
			benchTX(b, d, run, packet(Header{}, frame(size, 0)))
		})
	}
}

func benchTX(b *testing.B, d *Device, run *activation, p []byte) {
	bq := newBenchQueue(b, run.act.Features, 0, false, p)
	tx := newTransmitter(d, run, bq.q)
	heads := make([]uint16, benchBatch)
	b.SetBytes(int64(len(p) - HeaderSize))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += benchBatch {
		for k := range heads {
			heads[k] = uint16((i + k) % QueueSize)
		}
		bq.post(heads[:min(benchBatch, b.N-i)]...)
		if err := tx.drain(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if s := d.Stats(); s.TXPackets != uint64(b.N) {
		b.Fatalf("%d packets sent, want %d (%+v)", s.TXPackets, b.N, s)
	}
}

func BenchmarkRX(b *testing.B) {
	for _, size := range benchSizes() {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			d, be, run := newSyncDevice(b, allFeatures())
			be.generate = packet(Header{}, frame(size, 0))
			benchRX(b, d, run, size, func(r *receiver, capacity uint64) {
				n, err := be.ReadPacket(r.iov, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.deliver(n, capacity); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// benchRX receives b.N packets of size bytes through a receiver whose
// read is done by receive, into mergeable 4 KiB buffers as Linux posts
// them for bulk traffic.
func benchRX(b *testing.B, d *Device, run *activation, size int, receive func(*receiver, uint64)) {
	bq := newBenchQueue(b, run.act.Features, 4096, true, nil)
	r := newReceiver(d, run, bq.q)
	all := make([]uint16, QueueSize)
	for i := range all {
		all[i] = uint16(i)
	}
	bq.post(all...)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.fill(); err != nil {
			b.Fatal(err)
		}
		if !r.ready() {
			// The driver refills what the device used.
			r.publish()
			for {
				id, _, ok := bq.d.GetUsed()
				if !ok {
					break
				}
				bq.d.PutAvail(uint16(id))
			}
			bq.d.SetAvailIdx(bq.d.AvailIdx())
			i--
			continue
		}
		receive(r, r.gather())
	}
	b.StopTimer()
	if s := d.Stats(); s.RXPackets != uint64(b.N) {
		b.Fatalf("%d packets received, want %d (%+v)", s.RXPackets, b.N, s)
	}
}

// BenchmarkTapTX writes packets through a real tap: the device's cost plus
// one writev into the kernel, which takes the frame into the host's stack
// (where, addressed to nobody, it is dropped). The 65000-byte case is a TCP
// segmentation offload packet, the bulk of a TCP stream from the guest.
func BenchmarkTapTX(b *testing.B) {
	inNewNetns(b)
	tap, err := OpenTap("gvbench0")
	require.NoError(b, err)
	defer tap.Close()
	for _, size := range benchSizes() {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			d, err := New(Options{TapName: "gvbench0"}, tap)
			require.NoError(b, err)
			run := syncActivation(b, allFeatures())
			require.NoError(b, tap.Start(allFeatures()))
			p := packet(Header{}, frame(size, 0))
			if size > 1514 {
				p = packet(Header{
					Flags:   VIRTIO_NET_HDR_F_NEEDS_CSUM,
					GSOType: VIRTIO_NET_HDR_GSO_TCPV4, HdrLen: ethHeaderLen + 40, GSOSize: 1448,
					CsumStart: ethHeaderLen + 20, CsumOffset: 16,
				}, tcpFrame(size-ethHeaderLen-40))
			}
			benchTX(b, d, run, p)
		})
	}
}

// BenchmarkTapRX receives packets from a real tap: the device reads each
// packet with one readv straight into the guest's buffers. The tap's queue
// is filled through a packet socket in batches, with the timer stopped.
func BenchmarkTapRX(b *testing.B) {
	inNewNetns(b)
	tap, err := OpenTap("gvbench1")
	require.NoError(b, err)
	defer tap.Close()
	sock := packetSocket(b, "gvbench1")
	// Below the tap's queue length (txqueuelen, 1000), so none is dropped.
	const fill = 500
	for _, size := range benchSizes() {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			d, err := New(Options{TapName: "gvbench1"}, tap)
			require.NoError(b, err)
			run := syncActivation(b, allFeatures())
			require.NoError(b, tap.Start(allFeatures()))
			f := frame(size, 0)
			if size > 1514 {
				// Too large for the link's MTU: the packet socket
				// takes it as a GSO packet, which the tap passes on
				// whole since the driver accepted TSO (TUN_F_TSO4).
				f = tcpFrame(size - ethHeaderLen - 40)
				require.NoError(b, unix.SetsockoptInt(sock, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1))
				defer unix.SetsockoptInt(sock, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 0)
				hdr := make([]byte, HeaderSize)
				Header{
					Flags:   VIRTIO_NET_HDR_F_NEEDS_CSUM,
					GSOType: VIRTIO_NET_HDR_GSO_TCPV4, HdrLen: ethHeaderLen + 40, GSOSize: 1448,
					CsumStart: ethHeaderLen + 20, CsumOffset: 16,
				}.Encode(hdr)
				// A packet socket takes the legacy 10-byte header,
				// without num_buffers.
				const legacyHeaderSize = 10
				f = append(hdr[:legacyHeaderSize], f...)
			}
			queued := 0
			benchRX(b, d, run, size, func(r *receiver, capacity uint64) {
				for {
					if queued == 0 {
						b.StopTimer()
						for range fill {
							_, err := unix.Write(sock, f)
							require.NoError(b, err)
						}
						queued = fill
						b.StartTimer()
					}
					n, err := tap.ReadPacket(r.iov, nil)
					if err != nil {
						b.Fatal(err)
					}
					if n != size+HeaderSize {
						continue // something else the host sent
					}
					queued--
					if err := r.deliver(n, capacity); err != nil {
						b.Fatal(err)
					}
					return
				}
			})
			tap.Stop()
		})
	}
}

package virtio_test

import (
	"io"
	"testing"

	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// benchmarkRoundTrip measures the device's hot path for a block-like
// request: pop a chain of a 16-byte readable header, a 512-byte writable
// data buffer and a 1-byte writable status, read the header, write the
// status, push and publish. The driver's side per iteration is two stores:
// the head into the available ring and avail->idx.
func benchmarkRoundTrip(b *testing.B, features virtio.Features, indirect bool) {
	e := newQueue(b, 256, features, 0)
	bufs := []virtiotest.Buf{e.d.Readable(make([]byte, 16)), e.d.Writable(512), e.d.Writable(1)}
	var head uint16
	if indirect {
		head = e.d.AddIndirectChain(bufs...)
	} else {
		head = e.d.AddChain(bufs...)
	}
	e.d.SetAvailIdx(0)
	var (
		c      virtio.DescChain
		hdr    [16]byte
		status = []byte{0}
	)
	b.ReportAllocs()
	for b.Loop() {
		e.d.PutAvail(head)
		e.d.Publish()
		ok, err := e.q.Pop(&c)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if _, err := io.ReadFull(&c, hdr[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := c.WriteAt(status, int64(c.WritableLen())-1); err != nil {
			b.Fatal(err)
		}
		if _, err := e.q.Push(c.Head, c.WritableLen()); err != nil {
			b.Fatal(err)
		}
	}
	require.Equal(b, e.d.AvailIdx(), e.d.UsedIdx())
}

func BenchmarkPopWalkPush3Desc(b *testing.B) {
	benchmarkRoundTrip(b, 0, false)
}

func BenchmarkPopWalkPush3DescEventIdx(b *testing.B) {
	benchmarkRoundTrip(b, virtio.Features(0).With(virtio.VIRTIO_F_EVENT_IDX), false)
}

func BenchmarkPopWalkPush3DescIndirect(b *testing.B) {
	benchmarkRoundTrip(b, virtio.Features(0).With(virtio.VIRTIO_F_INDIRECT_DESC), true)
}

package p9

import (
	"github.com/govmm/govmm/internal/iovec"
	"golang.org/x/sys/unix"
)

// The system calls that move file data. They take []unix.Iovec built
// straight from the transport's buffers, which on virtio alias guest RAM,
// so the kernel copies between the page cache and the guest's pages and
// govmm never touches the data (virtio/blk does the same).

// iovMax is the most iovecs one preadv(2) or pwritev(2) takes (UIO_MAXIOV,
// IOV_MAX). A transfer spread over more buffers is cut short there, which
// 9P allows: Rread and Rwrite say how much was moved, and the client asks
// again for the rest.
const iovMax = iovec.Max

// iovecs returns iovecs for bufs, at most iovMax, skipping empty ones.
func iovecs(bufs [][]byte) []unix.Iovec {
	iov := make([]unix.Iovec, 0, min(len(bufs), iovMax))
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if len(iov) == iovMax {
			break
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	return iov
}

// The system calls themselves are shared with virtio-blk (internal/iovec).
var (
	preadv  = iovec.Preadv
	pwritev = iovec.Pwritev
	advance = iovec.Advance
)

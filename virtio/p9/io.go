package p9

import (
	"math/bits"
	"unsafe"

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
const iovMax = 1024

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

// offsetArgs splits a file offset into the two registers preadv(2) and
// pwritev(2) take it in, low half first (on a 64-bit kernel the high one
// is ignored).
func offsetArgs(off int64) (lo, hi uintptr) {
	const half = bits.UintSize / 2
	return uintptr(off), uintptr(uint64(off) >> half >> half)
}

func preadv(fd int, iov []unix.Iovec, off int64) (int, error) {
	lo, hi := offsetArgs(off)
	n, _, errno := unix.Syscall6(unix.SYS_PREADV, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)), lo, hi, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func pwritev(fd int, iov []unix.Iovec, off int64) (int, error) {
	lo, hi := offsetArgs(off)
	n, _, errno := unix.Syscall6(unix.SYS_PWRITEV, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)), lo, hi, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// advance drops the first n bytes from iov.
func advance(iov []unix.Iovec, n int) []unix.Iovec {
	for len(iov) > 0 && n > 0 {
		l := int(iov[0].Len)
		if n < l {
			iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
			iov[0].SetLen(l - n)
			return iov
		}
		n -= l
		iov = iov[1:]
	}
	return iov
}

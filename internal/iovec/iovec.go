// Package iovec moves file data straight between a file and guest memory
// with preadv(2) and pwritev(2). Devices build []unix.Iovec from a
// descriptor chain's buffers, which alias guest RAM, so the kernel copies
// between its page cache and the guest's pages and govmm never touches the
// data. (unix.Preadv takes [][]byte and converts it to a fresh []Iovec on
// every call, which allocates for more than 8 buffers.)
package iovec

import (
	"math/bits"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Max is the most iovecs one preadv or pwritev takes (UIO_MAXIOV, IOV_MAX).
const Max = 1024

// offsetArgs splits a file offset into the two registers preadv and
// pwritev take it in, low half first: on a 64-bit kernel the high register
// is ignored (the shifts make it 0), on a 32-bit one it holds the upper 32
// bits.
func offsetArgs(off int64) (lo, hi uintptr) {
	const half = bits.UintSize / 2
	return uintptr(off), uintptr(uint64(off) >> half >> half)
}

// Preadv reads from fd at off into iov: one preadv(2).
func Preadv(fd int, iov []unix.Iovec, off int64) (int, error) {
	lo, hi := offsetArgs(off)
	n, _, errno := unix.Syscall6(unix.SYS_PREADV, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)), lo, hi, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Pwritev writes iov to fd at off: one pwritev(2).
func Pwritev(fd int, iov []unix.Iovec, off int64) (int, error) {
	lo, hi := offsetArgs(off)
	n, _, errno := unix.Syscall6(unix.SYS_PWRITEV, uintptr(fd),
		uintptr(unsafe.Pointer(unsafe.SliceData(iov))), uintptr(len(iov)), lo, hi, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Advance drops the first n bytes from iov, after a short transfer.
func Advance(iov []unix.Iovec, n int) []unix.Iovec {
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

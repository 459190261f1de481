package blk

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/govmm/govmm/internal/iovec"
	"golang.org/x/sys/unix"
)

// The system calls behind the requests. They take []unix.Iovec built
// straight from the chain's buffers, which alias guest RAM, so that data
// moves between the page cache and the guest's pages in one copy by the
// kernel. (unix.Preadv takes [][]byte and converts it to a fresh []Iovec
// on every call, which allocates for more than 8 buffers.)

// errShortIO is a read that found the end of the image before the end of
// the request: the image shrank under the device.
var errShortIO = errors.New("virtio-blk: image ended before the request")

// rwFull runs preadv or pwritev until all of iov has moved, retrying after
// EINTR and continuing after a short transfer (a signal, or a request
// larger than the 2 GiB one call moves). It consumes iov.
func rwFull(op func(int, []unix.Iovec, int64) (int, error), fd int, iov []unix.Iovec, off int64) error {
	for len(iov) > 0 {
		n, err := op(fd, iov, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errShortIO
		}
		off += int64(n)
		iov = advance(iov, n)
	}
	return nil
}

// appendIovecs appends to iov the bytes [off, off+n) of the concatenation
// of bufs, as at most limit iovecs pointing into bufs. It reports false if
// that takes more than limit iovecs. The caller has checked that the bytes
// are there.
func appendIovecs(iov []unix.Iovec, bufs [][]byte, off, n uint64, limit int) ([]unix.Iovec, bool) {
	for _, b := range bufs {
		if n == 0 {
			break
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		k := min(l-off, n)
		if len(iov) == limit {
			return iov, false
		}
		v := unix.Iovec{Base: &b[off]}
		v.SetLen(int(k))
		iov = append(iov, v)
		n -= k
		off = 0
	}
	return iov, true
}

// fallocate retries fallocate(2) after EINTR.
func fallocate(fd int, mode uint32, off, n int64) error {
	for {
		err := unix.Fallocate(fd, mode, off, n)
		if err != unix.EINTR {
			return err
		}
	}
}

// fallocateFn is fallocate, replaced by tests that need a file system
// without hole punching or FALLOC_FL_ZERO_RANGE.
var fallocateFn = fallocate

// punchHole deallocates [off, off+n) of the image: it reads as zeros
// afterwards, and the file keeps its size (FALLOC_FL_KEEP_SIZE; the
// kernel requires it with FALLOC_FL_PUNCH_HOLE). On a block device it
// zeroes the range and may unmap it.
func punchHole(fd int, off, n int64) error {
	return fallocateFn(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// zeroRange makes [off, off+n) read as zeros, keeping it allocated:
// FALLOC_FL_ZERO_RANGE (with FALLOC_FL_KEEP_SIZE, which a block device
// requires), or writing zeros where the file system has no such operation
// (EOPNOTSUPP, as on tmpfs).
func zeroRange(fd int, off, n int64) error {
	err := fallocateFn(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != unix.EOPNOTSUPP {
		return err
	}
	return writeZeros(fd, off, n)
}

// zeros is what writeZeros writes. It is never written to.
var zeros [1 << 20]byte

// writeZeros writes n zero bytes at off.
func writeZeros(fd int, off, n int64) error {
	var iov [1]unix.Iovec
	for n > 0 {
		k := min(n, int64(len(zeros)))
		iov[0] = unix.Iovec{Base: &zeros[0]}
		iov[0].SetLen(int(k))
		if err := rwFull(pwritev, fd, iov[:], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// fdatasync makes the image's written data stable, retrying after EINTR.
func fdatasync(fd int) error {
	for {
		err := unix.Fdatasync(fd)
		if err != unix.EINTR {
			return err
		}
	}
}

// fdatasyncFn is fdatasync, replaced by tests that count syncs.
var fdatasyncFn = fdatasync

// blockDeviceSize returns the size in bytes of the block device open as
// fd (the BLKGETSIZE64 ioctl, a u64).
func blockDeviceSize(fd int) (int64, error) {
	var size uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
	if errno != 0 {
		return 0, errno
	}
	if size > math.MaxInt64 {
		return 0, fmt.Errorf("impossible size %d", size)
	}
	return int64(size), nil
}

// The system calls themselves are shared with virtio-9p (internal/iovec).
var (
	preadv  = iovec.Preadv
	pwritev = iovec.Pwritev
	advance = iovec.Advance
)

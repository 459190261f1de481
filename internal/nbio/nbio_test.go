package nbio

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// nonblockingPipe returns a pipe whose ends are both O_NONBLOCK, as the
// files nbio is meant for are.
func nonblockingPipe(t *testing.T) (r, w uintptr) {
	t.Helper()
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC))
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return uintptr(p[0]), uintptr(p[1])
}

func iovecs(bufs ...[]byte) []unix.Iovec {
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		iov[i].Base = &b[0]
		iov[i].SetLen(len(b))
	}
	return iov
}

func TestReadWrite(t *testing.T) {
	r, w := nonblockingPipe(t)
	buf := make([]byte, 16)
	n, errno := Read(r, buf)
	require.Equal(t, unix.EAGAIN, errno, "an empty non-blocking pipe says EAGAIN instead of blocking")
	require.Zero(t, n)

	n, errno = Write(w, []byte("doorbell"))
	require.Zero(t, errno)
	require.Equal(t, 8, n)
	n, errno = Read(r, buf)
	require.Zero(t, errno)
	require.Equal(t, "doorbell", string(buf[:n]))
}

func TestReadvWritev(t *testing.T) {
	r, w := nonblockingPipe(t)
	n, errno := Writev(w, iovecs([]byte("virtio-net hdr|"), []byte("frame")))
	require.Zero(t, errno)
	require.Equal(t, 20, n)

	a, b := make([]byte, 15), make([]byte, 10)
	n, errno = Readv(r, iovecs(a, b))
	require.Zero(t, errno)
	require.Equal(t, 20, n)
	require.Equal(t, "virtio-net hdr|", string(a))
	require.Equal(t, "frame", string(b[:5]))

	_, errno = Readv(r, iovecs(a))
	require.Equal(t, unix.EAGAIN, errno)
}

func TestWriteFullPipe(t *testing.T) {
	_, w := nonblockingPipe(t)
	chunk := make([]byte, 4096)
	total := 0
	for {
		n, errno := Write(w, chunk)
		if errno == unix.EAGAIN {
			break
		}
		require.Zero(t, errno)
		total += n
		require.Less(t, total, 64<<20, "the pipe never filled up")
	}
	require.Positive(t, total, "a full pipe says EAGAIN instead of blocking")
}

func TestErrorsPassThrough(t *testing.T) {
	r, w := nonblockingPipe(t)
	_, errno := Write(r, []byte("x"))
	require.Equal(t, unix.EBADF, errno, "the read end of a pipe cannot be written")
	_, errno = Read(w, make([]byte, 1))
	require.Equal(t, unix.EBADF, errno)
	_, errno = Writev(^uintptr(0), iovecs([]byte("x")))
	require.Equal(t, unix.EBADF, errno)
}

package blk

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// iovBytes returns the bytes an iovec points at.
func iovBytes(v unix.Iovec) []byte { return unsafe.Slice(v.Base, v.Len) }

func TestAppendIovecs(t *testing.T) {
	bufs := [][]byte{make([]byte, 10), make([]byte, 5), make([]byte, 20)}
	for i, b := range bufs {
		for j := range b {
			b[j] = byte(10*i + j)
		}
	}
	flat := bytes.Join(bufs, nil)
	for off := range uint64(len(flat) + 1) {
		for n := range uint64(len(flat)) - off + 1 {
			iov, ok := appendIovecs(nil, bufs, off, n, 3)
			require.True(t, ok)
			got := []byte{}
			for _, v := range iov {
				require.NotZero(t, v.Len, "no empty iovecs")
				got = append(got, iovBytes(v)...)
			}
			require.Equal(t, flat[off:off+n], got, "off %d n %d", off, n)
		}
	}
	// The limit counts iovecs.
	_, ok := appendIovecs(nil, bufs, 0, 35, 2)
	require.False(t, ok)
	iov, ok := appendIovecs(nil, bufs, 10, 25, 2)
	require.True(t, ok)
	require.Len(t, iov, 2)
}

// rwFull carries on after short transfers and EINTR until every byte has
// moved, and stops at the end of the file.
func TestRWFullShortTransfers(t *testing.T) {
	src := make([]byte, 1000)
	for i := range src {
		src[i] = byte(i)
	}
	dst := [][]byte{make([]byte, 300), make([]byte, 1), make([]byte, 699)}
	iov, ok := appendIovecs(nil, dst, 0, 1000, 3)
	require.True(t, ok)
	calls := 0
	// A preadv that moves at most 77 bytes and fails every third call
	// with EINTR.
	op := func(_ int, iov []unix.Iovec, off int64) (int, error) {
		calls++
		if calls%3 == 0 {
			return 0, unix.EINTR
		}
		n := 0
		for _, v := range iov {
			k := copy(iovBytes(v)[:min(int(v.Len), 77-n)], src[off+int64(n):])
			n += k
			if n == 77 || k < int(v.Len) {
				break
			}
		}
		return n, nil
	}
	require.NoError(t, rwFull(op, 0, iov, 0))
	require.Equal(t, src, bytes.Join(dst, nil))
	require.Greater(t, calls, 1000/77)

	// A file that ends early.
	iov, _ = appendIovecs(nil, dst, 0, 1000, 3)
	short := func(_ int, iov []unix.Iovec, off int64) (int, error) {
		if off >= 500 {
			return 0, nil
		}
		return min(int(iov[0].Len), 500-int(off)), nil
	}
	require.ErrorIs(t, rwFull(short, 0, iov, 0), errShortIO)
}

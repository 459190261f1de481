package iovec

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func vecs(bufs ...[]byte) []unix.Iovec {
	var iov []unix.Iovec
	for _, b := range bufs {
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	return iov
}

func TestRoundTripAndAdvance(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	defer f.Close()
	fd := int(f.Fd())

	n, err := Pwritev(fd, vecs([]byte("hello "), []byte("world")), 3)
	require.NoError(t, err)
	require.Equal(t, 11, n)

	a, b := make([]byte, 4), make([]byte, 7)
	n, err = Preadv(fd, vecs(a, b), 3)
	require.NoError(t, err)
	require.Equal(t, 11, n)
	require.Equal(t, "hell", string(a))
	require.Equal(t, "o world", string(b))

	iov := Advance(vecs(a, b), 6)
	require.Len(t, iov, 1)
	require.Equal(t, uint64(5), iov[0].Len)
	require.Equal(t, byte('w'), *iov[0].Base)
	require.Empty(t, Advance(vecs(a, b), 11))

	_, err = Preadv(-1, vecs(a), 0)
	require.ErrorIs(t, err, unix.EBADF)
}

func TestOffsetArgs(t *testing.T) {
	lo, hi := offsetArgs(1<<40 + 5)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		require.Equal(t, uintptr(1<<40+5), lo)
		require.Zero(t, hi)
	}
}

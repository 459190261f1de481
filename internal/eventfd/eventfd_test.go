package eventfd

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestSignalWait(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	require.NoError(t, e.Signal())
	require.NoError(t, e.Signal())
	n, err := e.Wait()
	require.NoError(t, err)
	require.Equal(t, uint64(2), n, "two signals before a wait are counted")
}

func TestWaitBlocksUntilSignal(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	got := make(chan uint64)
	go func() {
		n, _ := e.Wait()
		got <- n
	}()
	select {
	case <-got:
		t.Fatal("Wait returned before any Signal")
	case <-time.After(20 * time.Millisecond):
	}
	require.NoError(t, e.Signal())
	require.Equal(t, uint64(1), <-got)
}

func TestCloseWakesWait(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	errc := make(chan error)
	go func() {
		_, err := e.Wait()
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	require.NoError(t, e.Close())
	require.True(t, errors.Is(<-errc, os.ErrClosed))
}

// A Notifier counts its signals like any eventfd, for whoever reads it
// (KVM's irqfd), and refuses them once closed.
func TestNotifier(t *testing.T) {
	n, err := NewNotifier()
	require.NoError(t, err)
	fd := n.FD()
	require.Positive(t, fd)
	require.NoError(t, n.Signal())
	require.NoError(t, n.Signal())
	var b [counterSize]byte
	_, err = unix.Read(fd, b[:])
	require.NoError(t, err)
	require.Equal(t, uint64(2), binary.NativeEndian.Uint64(b[:]))

	require.NoError(t, n.Close())
	require.Equal(t, -1, n.FD())
	require.ErrorIs(t, n.Signal(), os.ErrClosed)
	require.NoError(t, n.Close(), "twice")
}

func TestSignalAfterClose(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.ErrorIs(t, e.Signal(), os.ErrClosed)
	_, err = e.Wait()
	require.ErrorIs(t, err, os.ErrClosed)
}

// A kick (Signal, then the worker's Wait) and an interrupt (a Notifier's
// Signal) happen for every batch of virtqueue work: they must not
// allocate.
func TestSignalAndWaitDoNotAllocate(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	allocs := testing.AllocsPerRun(100, func() {
		_ = e.Signal()
		_, _ = e.Wait()
	})
	require.Zero(t, allocs, "EventFD Signal and Wait")

	n, err := NewNotifier()
	require.NoError(t, err)
	defer n.Close()
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = n.Signal() }), "Notifier.Signal")
}

// Two goroutines may wait on one EventFD: each signal wakes one of them.
func TestConcurrentWaits(t *testing.T) {
	e, err := New()
	require.NoError(t, err)
	defer e.Close()
	got := make(chan uint64, 2)
	for range 2 {
		go func() {
			n, err := e.Wait()
			if err == nil {
				got <- n
			}
		}()
	}
	require.NoError(t, e.Signal())
	require.Equal(t, uint64(1), <-got)
	require.NoError(t, e.Signal())
	require.Equal(t, uint64(1), <-got)
}

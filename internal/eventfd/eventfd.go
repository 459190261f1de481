// Package eventfd wraps Linux eventfd(2) counters, the doorbells between
// KVM and govmm's device goroutines. KVM signals one when the guest writes
// a queue's notify register (KVM_IOEVENTFD) and raises an interrupt when
// govmm signals one (KVM_IRQFD), so neither direction stops a vCPU.
//
// An EventFD's descriptor is non-blocking and owned by an *os.File, so
// Wait parks only the calling goroutine on Go's network poller, not an OS
// thread. A Notifier, for an irqfd that govmm only signals, stays out of
// the poller. Both read and write their counters with internal/nbio, as
// calls on a non-blocking eventfd cannot block.
package eventfd

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/govmm/govmm/internal/nbio"
	"golang.org/x/sys/unix"
)

// counterSize is the size of every read and write: the eventfd counter is
// a uint64 in host byte order (eventfd(2)).
const counterSize = 8

// signalValue is what every Signal writes: 1, as the counter's uint64.
// Nothing writes to it; the calls only read it.
var signalValue = func() (b [counterSize]byte) {
	binary.NativeEndian.PutUint64(b[:], 1)
	return b
}()

// EventFD is an eventfd counter. Signal adds 1; Wait blocks until the
// counter is non-zero, then returns it and resets it to 0. It is safe for
// concurrent use.
type EventFD struct {
	f  *os.File
	rc syscall.RawConn // f's descriptor, for the calls through nbio
	fd int
	// closed is set by Close: the poller's error for a closed file is
	// not os.ErrClosed when it comes through a RawConn.
	closed atomic.Bool

	// The Wait in progress keeps its buffer and result here, and its
	// callback is bound once, so that a Wait allocates nothing (a closure
	// handed to the RawConn would escape, and it runs on every kick).
	// waitMu gives them to one Wait at a time.
	waitMu  sync.Mutex
	waitBuf [counterSize]byte
	waitErr unix.Errno
	waitFn  func(fd uintptr) bool // e.read
}

// New creates an eventfd with a zero counter.
func New() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "eventfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	e := &EventFD{f: f, rc: rc, fd: fd}
	e.waitFn = e.read
	return e, nil
}

// fileError translates an error of the RawConn.
func (e *EventFD) fileError(err error) error {
	if e.closed.Load() {
		return os.ErrClosed
	}
	return fmt.Errorf("eventfd: %w", err)
}

// FD returns the descriptor to hand to KVM. It stays valid until Close.
func (e *EventFD) FD() int { return e.fd }

// Signal adds 1 to the counter, waking a goroutine blocked in Wait.
func (e *EventFD) Signal() error {
	if err := e.rc.Write(writeSignal); err != nil {
		return e.fileError(err)
	}
	return nil
}

// writeSignal is Signal's callback. It never waits for room: EAGAIN means
// the counter is at its maximum (0xFFFFFFFFFFFFFFFE), so the waiter has not
// run for 2^64 signals, and it will wake anyway. No other error can come
// from writing 1 to an open eventfd (eventfd(2)).
func writeSignal(fd uintptr) bool {
	_, _ = nbio.Write(fd, signalValue[:])
	return true
}

// Wait blocks until the counter is non-zero and returns its value,
// resetting it to 0. After Close it returns os.ErrClosed.
func (e *EventFD) Wait() (uint64, error) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	if err := e.rc.Read(e.waitFn); err != nil {
		return 0, e.fileError(err)
	}
	if e.waitErr != 0 {
		return 0, fmt.Errorf("eventfd: read: %w", e.waitErr)
	}
	return binary.NativeEndian.Uint64(e.waitBuf[:]), nil
}

// read is Wait's callback: EAGAIN means the counter is 0, and the poller
// waits until it is not.
func (e *EventFD) read(fd uintptr) bool {
	_, e.waitErr = nbio.Read(fd, e.waitBuf[:])
	return e.waitErr != unix.EAGAIN
}

// Close releases the descriptor and wakes any Wait with os.ErrClosed.
// Remove it from KVM first.
func (e *EventFD) Close() error {
	e.closed.Store(true)
	return e.f.Close()
}

// Notifier is an eventfd that govmm signals and never waits on: an irqfd
// (KVM_IRQFD), whose counter KVM consumes to raise the interrupt. Unlike
// an EventFD it is not in Go's network poller. A descriptor there is in
// the runtime's epoll set, and every signal wakes the thread blocked in
// epoll_wait, which then finds no goroutine waiting: one wasted thread
// wakeup per interrupt, costly where CPUs are few.
type Notifier struct {
	fd atomic.Int64 // -1 once closed
}

// NewNotifier creates a Notifier with a zero counter.
func NewNotifier() (*Notifier, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	n := &Notifier{}
	n.fd.Store(int64(fd))
	return n, nil
}

// FD returns the descriptor to hand to KVM, or -1 after Close.
func (n *Notifier) FD() int { return int(n.fd.Load()) }

// Signal adds 1 to the counter. After Close it returns os.ErrClosed.
// Signal and Close must not run concurrently: a descriptor number can be
// reused as soon as it is closed.
func (n *Notifier) Signal() error {
	fd := int(n.fd.Load())
	if fd < 0 {
		return os.ErrClosed
	}
	switch _, err := nbio.Write(uintptr(fd), signalValue[:]); err {
	case 0, unix.EAGAIN:
		// EAGAIN: the counter is at its maximum; the interrupt is
		// raised anyway.
		return nil
	default:
		return fmt.Errorf("eventfd: %w", err)
	}
}

// Close releases the descriptor. Remove it from KVM first.
func (n *Notifier) Close() error {
	fd := int(n.fd.Swap(-1))
	if fd < 0 {
		return nil
	}
	return unix.Close(fd)
}

// Package nbio makes the system calls of the devices' data path (reads and
// writes on eventfds and on the tap) without telling Go's scheduler about
// them, which is safe only because those files are non-blocking.
//
// Go brackets every syscall.Syscall with runtime.entersyscall and
// exitsyscall, so that the scheduler can hand the calling thread's P to
// another thread should the call block. entersyscall has a side effect that
// matters to a VMM: when every P is idle, the runtime's monitor thread
// (sysmon) sleeps until something happens, and a thread entering a system
// call is such a thing. entersyscall wakes it, and sysmon, taking the call
// as a sign that work is starting again, polls every 20 µs for the next
// millisecond before it backs off (runtime/proc.go: sysmon,
// entersyscallWakeSysmon; idle=0 restarts delay at 20 µs for 50 rounds).
//
// govmm's Ps are idle most of the time: a vCPU's thread sits in KVM_RUN
// (a blocking call, whose P sysmon takes away after 10 ms) and the device
// goroutines wait in the network poller between kicks. So every burst of
// device work, a kick followed by a tap write and an irqfd write, woke
// sysmon into a millisecond of polling. While a guest sent TCP at full
// speed that was more than 2000 wakeups a second, a quarter of a CPU in the
// nested test bed, where each one cost about 100 µs (docs/benchmarks.md).
//
// RawSyscall makes the call without the bracket. The P stays with the
// goroutine for the call's duration, which is right for a call that cannot
// block: on a file opened O_NONBLOCK (or EFD_NONBLOCK) it returns EAGAIN
// instead, and the caller waits in the network poller through
// syscall.RawConn, as before. Calls that can block, such as preadv on a
// disk image or KVM_RUN, must keep using syscall.Syscall.
package nbio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2) on a non-blocking fd. It retries EINTR and returns the
// error number as is (0 for success); EAGAIN means nothing to read.
func Read(fd uintptr, p []byte) (int, unix.Errno) {
	return call(unix.SYS_READ, fd, unsafe.Pointer(unsafe.SliceData(p)), len(p))
}

// Write is write(2) on a non-blocking fd. It retries EINTR and returns the
// error number as is (0 for success); EAGAIN means no room.
func Write(fd uintptr, p []byte) (int, unix.Errno) {
	return call(unix.SYS_WRITE, fd, unsafe.Pointer(unsafe.SliceData(p)), len(p))
}

// Readv is readv(2) on a non-blocking fd, like Read.
func Readv(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	return call(unix.SYS_READV, fd, unsafe.Pointer(unsafe.SliceData(iov)), len(iov))
}

// Writev is writev(2) on a non-blocking fd, like Write.
func Writev(fd uintptr, iov []unix.Iovec) (int, unix.Errno) {
	return call(unix.SYS_WRITEV, fd, unsafe.Pointer(unsafe.SliceData(iov)), len(iov))
}

// call makes one of the calls above. The pointer stays an unsafe.Pointer
// until the RawSyscall expression itself, so that the buffer it points to
// is kept alive and in place for the call (unsafe.Pointer's rule 4).
func call(trap, fd uintptr, p unsafe.Pointer, n int) (int, unix.Errno) {
	for {
		r, _, errno := unix.RawSyscall(trap, fd, uintptr(p), uintptr(n))
		if errno == unix.EINTR {
			// A signal (Go's own preemption signal, say) arrived
			// before any data moved.
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(r), 0
	}
}

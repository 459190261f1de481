package net

// A Linux tap interface as the device's Backend. The kernel side is
// described in Documentation/networking/tuntap.rst; the ioctls and flags
// are in include/uapi/linux/if_tun.h, their implementation in
// drivers/net/tun.c.
//
// A tap is a network interface of the host whose "wire" is a file: a frame
// the host's stack sends on the interface can be read from the file, and a
// frame written to the file arrives on the interface as if received. With
// IFF_VNET_HDR each frame comes with a struct virtio_net_hdr, the same
// header the guest's driver uses, so checksum and segmentation offloads go
// through both ways without the device ever computing a checksum or cutting
// a segment.

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/internal/nbio"
	"github.com/govmm/govmm/virtio"
)

// tunDevicePath is the tun/tap clone device: each open file becomes
// attached to one interface by TUNSETIFF.
const tunDevicePath = "/dev/net/tun"

// ifNameSize is IFNAMSIZ: an interface name and its terminating NUL.
const ifNameSize = unix.IFNAMSIZ

// Offload flags of TUNSETOFFLOAD (include/uapi/linux/if_tun.h). They say
// what the reader of the tap can take: with TUN_F_CSUM the kernel may hand
// over packets whose checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM), with
// TUN_F_TSO4/6 whole TCP segmentation offload packets, otherwise it
// finishes checksums and cuts segments before the packet reaches the file.
// They are the receive side's features, VIRTIO_NET_F_GUEST_*. The transmit
// side needs no setting: the kernel accepts every offload in a written
// header.
const (
	tunFCsum   = 0x01 // TUN_F_CSUM: "You can hand me unchecksummed packets."
	tunFTSO4   = 0x02 // TUN_F_TSO4: "I can handle TSO for IPv4 packets"
	tunFTSO6   = 0x04 // TUN_F_TSO6: "I can handle TSO for IPv6 packets"
	tunFTSOECN = 0x08 // TUN_F_TSO_ECN: "I can handle TSO with ECN bits."
)

// ifreqUnionSize is the size of the union that follows the name in struct
// ifreq on 64-bit Linux: its largest member, struct ifmap, is 24 bytes
// with padding. struct ifreq is 40 bytes.
const ifreqUnionSize = 24

// ifreqFlags is struct ifreq (include/uapi/linux/if.h) as TUNSETIFF,
// TUNGETIFF, SIOCGIFFLAGS and SIOCSIFFLAGS use it: the interface name, then
// the union's short ifr_flags.
type ifreqFlags struct {
	name  [ifNameSize]byte
	flags uint16
	_     [ifreqUnionSize - 2]byte
}

func newIfreqFlags(name string, flags uint16) ifreqFlags {
	r := ifreqFlags{flags: flags}
	copy(r.name[:], name) // CheckTapName keeps it shorter than the array
	return r
}

// tapFlags are the TUNSETIFF flags: a tap (Ethernet frames, not IP packets,
// IFF_TAP), no 4-byte struct tun_pi in front of each frame (IFF_NO_PI), and
// a struct virtio_net_hdr instead (IFF_VNET_HDR). Not IFF_MULTI_QUEUE: the
// device has one queue pair.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// pastDeadline is a deadline that has passed: set on the file, it makes Go's
// poller fail blocked and later reads and writes at once.
var pastDeadline = time.Unix(1, 0)

// Tap is an open tap interface, the Backend of a network device.
type Tap struct {
	name    string
	created bool
	f       *os.File        // non-blocking, on Go's poller
	rc      syscall.RawConn // f's, for readv and writev

	// The receive worker's readv: its iovecs, the result, and idle. rdFn
	// is t.readv, bound once so that ReadPacket allocates nothing.
	rdIov  []unix.Iovec
	rdN    int
	rdErr  syscall.Errno
	rdIdle func()
	rdFn   func(fd uintptr) bool
	spare  [1]byte // see ReadPacket

	// The same for the transmit worker's writev.
	wrIov []unix.Iovec
	wrErr syscall.Errno
	wrFn  func(fd uintptr) bool
}

// OpenTap attaches to the tap interface name, creating it if it does not
// exist, and brings its link up, so that the host only has to give it an
// address (or put it in a bridge). A tap that OpenTap created is not
// persistent: it disappears when the Tap is closed, at the latest when
// govmm exits. An existing persistent one (ip tuntap add NAME mode tap)
// stays. Creating a tap, and bringing a link up, needs CAP_NET_ADMIN; a
// persistent tap created for the user (ip tuntap add NAME mode tap user
// USER) can be attached to without it, if it is up.
func OpenTap(name string) (*Tap, error) {
	if err := CheckTapName(name); err != nil {
		return nil, err
	}
	// Interface flags are read and set through any socket: the ioctl acts
	// on the network namespace the socket belongs to, the caller's.
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tap %s: socket for interface ioctls: %w", name, err)
	}
	defer unix.Close(sock)
	req := newIfreqFlags(name, 0)
	existed := ioctlPtr(sock, unix.SIOCGIFFLAGS, unsafe.Pointer(&req)) == nil

	// O_NONBLOCK: reads and writes never block a thread; Go's poller
	// parks the goroutine instead (os.NewFile sees the flag).
	fd, err := unix.Open(tunDevicePath, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, openError(name, err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	// TUNSETIFF attaches the file to the interface, creating it if need
	// be. The kernel checks the flags against an existing one.
	req = newIfreqFlags(name, tapFlags)
	if err := ioctlPtr(fd, unix.TUNSETIFF, unsafe.Pointer(&req)); err != nil {
		return nil, attachError(name, existed, err)
	}
	// The header's size, which the kernel takes from the file (int *): 12
	// bytes, the VIRTIO_F_VERSION_1 header with num_buffers, not the
	// default 10-byte legacy one.
	hdrSize := int32(HeaderSize)
	if err := ioctlPtr(fd, unix.TUNSETVNETHDRSZ, unsafe.Pointer(&hdrSize)); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETVNETHDRSZ %d: %w", name, hdrSize, err)
	}
	// The header's fields are little-endian in virtio 1.x (§5.1.6, le16).
	// The kernel uses the host's byte order unless told so, which on
	// x86-64 is the same; TUNSETVNETLE (int *) makes it explicit.
	little := int32(1)
	if err := ioctlPtr(fd, unix.TUNSETVNETLE, unsafe.Pointer(&little)); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETVNETLE: %w", name, err)
	}
	// No receive offloads until a driver accepts some (Start). The
	// argument is the flags themselves, not a pointer.
	if err := ioctlVal(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return nil, fmt.Errorf("tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	if err := linkUp(sock, name); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), tunDevicePath+" ("+name+")")
	ok = true // f owns fd now
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	t := &Tap{
		name:    name,
		created: !existed,
		f:       f,
		rc:      rc,
		rdIov:   make([]unix.Iovec, 0, iovMax),
		wrIov:   make([]unix.Iovec, 0, iovMax),
	}
	t.rdFn = t.readv
	t.wrFn = t.writev
	return t, nil
}

// openError explains why /dev/net/tun did not open.
func openError(name string, err error) error {
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("tap %s: %s does not exist: load the tun module (modprobe tun): %w", name, tunDevicePath, err)
	case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
		return fmt.Errorf("tap %s: the kernel has no tun/tap driver (modprobe tun): %w", name, err)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return fmt.Errorf("tap %s: no permission to open %s (it is usually mode 0666; run as root or fix its mode): %w", name, tunDevicePath, err)
	}
	return fmt.Errorf("tap %s: open %s: %w", name, tunDevicePath, err)
}

// attachError explains why TUNSETIFF failed (tun_set_iff in
// drivers/net/tun.c).
func attachError(name string, existed bool, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) && existed:
		return fmt.Errorf("tap %s: permission denied: the tap belongs to another user or group; "+
			"create it for yours (ip tuntap add dev %s mode tap user $USER) or run with CAP_NET_ADMIN: %w", name, name, err)
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("tap %s: permission denied: creating a tap needs CAP_NET_ADMIN; run as root, or create a "+
			"persistent tap owned by your user first (ip tuntap add dev %s mode tap user $USER): %w", name, name, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("tap %s is in use by another program (a single-queue tap takes one): %w", name, err)
	case errors.Is(err, unix.EINVAL) && existed:
		return fmt.Errorf("tap %s: an interface of that name exists and is not a single-queue tap "+
			"(a tun device, a multi-queue tap, or another kind of interface): %w", name, err)
	}
	return fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
}

// linkUp sets IFF_UP on the interface unless it is up already.
func linkUp(sock int, name string) error {
	req := newIfreqFlags(name, 0)
	if err := ioctlPtr(sock, unix.SIOCGIFFLAGS, unsafe.Pointer(&req)); err != nil {
		return fmt.Errorf("tap %s: SIOCGIFFLAGS: %w", name, err)
	}
	if req.flags&unix.IFF_UP != 0 {
		return nil
	}
	req.flags |= unix.IFF_UP
	if err := ioctlPtr(sock, unix.SIOCSIFFLAGS, unsafe.Pointer(&req)); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("tap %s is down and bringing it up needs CAP_NET_ADMIN: run `ip link set %s up`: %w", name, name, err)
		}
		return fmt.Errorf("tap %s: SIOCSIFFLAGS IFF_UP: %w", name, err)
	}
	return nil
}

// ioctlPtr is ioctl(2) with a pointer argument.
func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if e != 0 {
		return e
	}
	return nil
}

// ioctlVal is ioctl(2) with an integer argument.
func ioctlVal(fd int, req uint, arg uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg)
	if e != 0 {
		return e
	}
	return nil
}

// Name returns the interface's name.
func (t *Tap) Name() string { return t.name }

// Created reports whether OpenTap created the interface, which then
// disappears on Close.
func (t *Tap) Created() bool { return t.created }

// tapOffloads translates the negotiated receive features into TUNSETOFFLOAD
// flags. The spec's dependencies (§5.1.3.1) match the kernel's: TSO only
// with checksum offload, ECN only with TSO.
func tapOffloads(f virtio.Features) uintptr {
	if !f.Has(VIRTIO_NET_F_GUEST_CSUM) {
		return 0
	}
	off := uintptr(tunFCsum)
	if f.Has(VIRTIO_NET_F_GUEST_TSO4) {
		off |= tunFTSO4
	}
	if f.Has(VIRTIO_NET_F_GUEST_TSO6) {
		off |= tunFTSO6
	}
	if f.Has(VIRTIO_NET_F_GUEST_ECN) && off&(tunFTSO4|tunFTSO6) != 0 {
		off |= tunFTSOECN
	}
	return off
}

// Start implements Backend: it tells the kernel which receive offloads the
// driver accepted and lifts Stop.
func (t *Tap) Start(negotiated virtio.Features) error {
	if err := t.f.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	off := tapOffloads(negotiated)
	var e syscall.Errno
	err := t.rc.Control(func(fd uintptr) {
		_, _, e = unix.Syscall(unix.SYS_IOCTL, fd, unix.TUNSETOFFLOAD, off)
	})
	if err != nil {
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	if e != 0 {
		return t.errnoError(fmt.Sprintf("TUNSETOFFLOAD %#x", off), e)
	}
	return nil
}

// Stop implements Backend, with a deadline in the past: Go's poller wakes a
// blocked read or write with os.ErrDeadlineExceeded, and fails new ones
// at once.
func (t *Tap) Stop() { _ = t.f.SetDeadline(pastDeadline) }

// Close implements Backend.
func (t *Tap) Close() error { return t.f.Close() }

// ReadPacket implements Backend with one readv(2): the kernel copies the
// header and the frame straight into bufs. A tap cuts a packet that does
// not fit short and returns the length it copied (tun_put_user and
// tun_chr_read_iter in drivers/net/tun.c), so a packet that fills the
// buffers exactly would look like one that was cut. ReadPacket therefore
// gives the kernel one spare byte after bufs: a length that reaches into it
// means the packet was larger than bufs, as Backend has it.
func (t *Tap) ReadPacket(bufs [][]byte, idle func()) (int, error) {
	t.rdIov = appendIovecs(t.rdIov[:0], bufs)
	if len(t.rdIov) == 0 || len(t.rdIov) > MaxBuffers {
		return 0, fmt.Errorf("tap %s: read into %d buffers", t.name, len(t.rdIov))
	}
	spare := unix.Iovec{Base: &t.spare[0]}
	spare.SetLen(len(t.spare))
	t.rdIov = append(t.rdIov, spare)
	t.rdIdle = idle
	err := t.rc.Read(t.rdFn)
	t.rdIdle = nil
	clear(t.rdIov) // keep no pointers into guest RAM
	if err != nil {
		return 0, t.fileError(err)
	}
	if t.rdErr != 0 {
		return 0, t.errnoError("read", t.rdErr)
	}
	return t.rdN, nil
}

// readv is the poller's callback for ReadPacket: it returns false to wait
// until the file is readable, after telling the device it is idle.
func (t *Tap) readv(fd uintptr) bool {
	// The tap is non-blocking, so the call goes through nbio (see there
	// why that matters).
	n, e := nbio.Readv(fd, t.rdIov)
	if e == unix.EAGAIN {
		// No packet queued. The poller waits for the next one.
		if t.rdIdle != nil {
			t.rdIdle()
		}
		return false
	}
	t.rdN, t.rdErr = n, e
	return true
}

// WritePacket implements Backend with one writev(2): the kernel builds a
// socket buffer from the header and copies the frame out of bufs.
func (t *Tap) WritePacket(bufs [][]byte) error {
	t.wrIov = appendIovecs(t.wrIov[:0], bufs)
	if len(t.wrIov) == 0 || len(t.wrIov) > MaxBuffers {
		return fmt.Errorf("tap %s: write from %d buffers", t.name, len(t.wrIov))
	}
	err := t.rc.Write(t.wrFn)
	clear(t.wrIov)
	if err != nil {
		return t.fileError(err)
	}
	if t.wrErr != 0 {
		return t.errnoError("write", t.wrErr)
	}
	return nil
}

// writev is the poller's callback for WritePacket. A tap's write does not
// block in practice (its socket's send buffer is unlimited unless
// TUNSETSNDBUF); if it ever would, the poller waits until it can.
func (t *Tap) writev(fd uintptr) bool {
	_, e := nbio.Writev(fd, t.wrIov)
	if e == unix.EAGAIN {
		return false
	}
	t.wrErr = e
	return true
}

// appendIovecs appends an iovec for each non-empty buffer.
func appendIovecs(iov []unix.Iovec, bufs [][]byte) []unix.Iovec {
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	return iov
}

// fileError translates the poller's errors.
func (t *Tap) fileError(err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrStopped
	case errors.Is(err, os.ErrClosed):
		return fmt.Errorf("tap %s: %w", t.name, err)
	}
	// The poller saw an error condition on the file (EPOLLERR, which Go
	// reports to readers as "not pollable"). A tap's file has one once
	// its interface is gone (tun_chr_poll); ask the kernel whether that
	// is it.
	var req ifreqFlags
	var e syscall.Errno
	if t.rc.Control(func(fd uintptr) {
		_, _, e = unix.Syscall(unix.SYS_IOCTL, fd, unix.TUNGETIFF, uintptr(unsafe.Pointer(&req)))
	}) == nil && e == unix.EBADFD {
		return t.errnoError("poll", e)
	}
	return fmt.Errorf("tap %s: %w", t.name, err)
}

// errnoError translates a system call's error. EBADFD is what a tap's file
// gets once its interface is deleted (ip link del): the kernel detaches
// the file, and every read, write or ioctl on it fails so from then on
// (tun_get returns NULL in drivers/net/tun.c).
func (t *Tap) errnoError(op string, e syscall.Errno) error {
	if e == unix.EBADFD {
		return fmt.Errorf("tap %s: %w (deleted while govmm had it open): %s: %w", t.name, ErrVanished, op, e)
	}
	return fmt.Errorf("tap %s: %s: %w", t.name, op, e)
}

var _ Backend = (*Tap)(nil)

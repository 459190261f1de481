package net

import (
	"encoding/binary"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/govmm/govmm/virtio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// inNewNetns moves the calling test onto an OS thread of its own in a fresh
// network namespace, so that the taps it creates and the addresses it
// gives them never touch the host's network. The thread is never unlocked:
// when the test's goroutine ends, Go destroys the thread instead of reusing
// it in the wrong namespace, and the namespace goes with it (the taps
// created in it too). Goroutines the test starts run on other threads, in
// the host's namespace, which is fine for the device's: they only read and
// write file descriptors. The test is skipped where it cannot run.
func inNewNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace and taps")
	}
	if _, err := os.Stat(tunDevicePath); err != nil {
		t.Skipf("no %s: %v", tunDevicePath, err)
	}
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Skipf("unshare(CLONE_NEWNET): %v", err)
	}
}

// tapFD runs f with the tap's descriptor, without taking it off Go's
// poller (os.File.Fd would make it blocking).
func tapFD(t *testing.T, tap *Tap, f func(fd int)) {
	t.Helper()
	require.NoError(t, tap.rc.Control(func(fd uintptr) { f(int(fd)) }))
}

// ifIndex returns the interface's index in the current namespace, or 0 if
// it does not exist.
func ifIndex(t testing.TB, name string) int {
	t.Helper()
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(sock)
	req, err := unix.NewIfreq(name)
	require.NoError(t, err)
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFINDEX, req); err != nil {
		require.ErrorIs(t, err, unix.ENODEV)
		return 0
	}
	return int(req.Uint32())
}

// deleteLink deletes an interface as `ip link del NAME` does: an
// RTM_DELLINK request over rtnetlink (rtnetlink(7)).
func deleteLink(t *testing.T, name string) {
	t.Helper()
	index := ifIndex(t, name)
	require.NotZero(t, index)
	sock, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	require.NoError(t, err)
	defer unix.Close(sock)
	msg := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfInfomsg)
	*(*unix.NlMsghdr)(unsafe.Pointer(&msg[0])) = unix.NlMsghdr{
		Len:   uint32(len(msg)),
		Type:  unix.RTM_DELLINK,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		Seq:   1,
	}
	*(*unix.IfInfomsg)(unsafe.Pointer(&msg[unix.SizeofNlMsghdr])) = unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(index)}
	require.NoError(t, unix.Sendto(sock, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}))
	reply := make([]byte, 4096)
	n, _, err := unix.Recvfrom(sock, reply, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, n, unix.SizeofNlMsghdr+4)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&reply[0]))
	require.Equal(t, uint16(unix.NLMSG_ERROR), hdr.Type)
	code := int32(binary.NativeEndian.Uint32(reply[unix.SizeofNlMsghdr:]))
	require.Zero(t, code, "RTM_DELLINK %s: %v", name, unix.Errno(-code))
}

// packetSocket opens an AF_PACKET socket bound to the interface: what it
// sends leaves through the interface (for a tap: appears on the tap's
// file), and it receives what arrives on the interface (for a tap: what is
// written to the file). packet(7).
func packetSocket(t testing.TB, name string) int {
	t.Helper()
	proto := int(htons(unix.ETH_P_ALL))
	sock, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(sock) })
	require.NoError(t, unix.Bind(sock, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifIndex(t, name)}))
	tv := unix.NsecToTimeval(int64(waitFor))
	require.NoError(t, unix.SetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	return sock
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recvIncoming returns the next frame the packet socket sees arriving on
// the interface, skipping the ones the host sends out of it.
func recvIncoming(t *testing.T, sock int) []byte {
	t.Helper()
	buf := make([]byte, 70000)
	for {
		n, from, err := unix.Recvfrom(sock, buf, 0)
		require.NoError(t, err, "no frame arrived on the tap")
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		return append([]byte(nil), buf[:n]...)
	}
}

// readWithin reads one packet from the tap into bufs, failing the test if
// none comes within waitFor.
func readWithin(t *testing.T, tap *Tap, bufs [][]byte) int {
	t.Helper()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := tap.ReadPacket(bufs, nil)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		require.NoError(t, r.err)
		return r.n
	case <-time.After(waitFor):
		tap.Stop()
		<-done
		t.Fatal("no packet on the tap")
		return 0
	}
}

// readSkipping reads packets from the tap until one whose frame has the
// given EtherType (the host may send IPv6 router solicitations and the
// like out of a fresh interface).
func readSkipping(t *testing.T, tap *Tap, etherType uint16) (Header, []byte) {
	t.Helper()
	buf := make([]byte, HeaderSize+MaxPacketLen)
	for {
		n := readWithin(t, tap, [][]byte{buf})
		require.GreaterOrEqual(t, n, HeaderSize+ethHeaderLen)
		f := buf[HeaderSize:n]
		if binary.BigEndian.Uint16(f[12:]) == etherType {
			return DecodeHeader(buf), append([]byte(nil), f...)
		}
	}
}

const testEtherType = 0x88b5 // IEEE 802 local experimental

func TestOpenTapCreatesAndConfigures(t *testing.T) {
	inNewNetns(t)
	const name = "gvtest0"
	require.Zero(t, ifIndex(t, name))
	tap, err := OpenTap(name)
	require.NoError(t, err)
	assert.True(t, tap.Created())
	assert.Equal(t, name, tap.Name())

	tapFD(t, tap, func(fd int) {
		var req ifreqFlags
		require.NoError(t, ioctlPtr(fd, unix.TUNGETIFF, unsafe.Pointer(&req)))
		assert.Equal(t, name, unix.ByteSliceToString(req.name[:]))
		assert.Equal(t, uint16(tapFlags), req.flags&tapFlags, "IFF_TAP|IFF_NO_PI|IFF_VNET_HDR")
		assert.Zero(t, req.flags&unix.IFF_PERSIST, "a tap govmm creates is not persistent")
		var size int32
		require.NoError(t, ioctlPtr(fd, unix.TUNGETVNETHDRSZ, unsafe.Pointer(&size)))
		assert.Equal(t, int32(HeaderSize), size)
		var le int32
		require.NoError(t, ioctlPtr(fd, unix.TUNGETVNETLE, unsafe.Pointer(&le)))
		assert.Equal(t, int32(1), le)
	})
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(sock)
	req := newIfreqFlags(name, 0)
	require.NoError(t, ioctlPtr(sock, unix.SIOCGIFFLAGS, unsafe.Pointer(&req)))
	assert.NotZero(t, req.flags&unix.IFF_UP, "the link is up")

	// Every receive offload combination a driver can accept.
	for _, f := range []virtio.Features{0, allFeatures(), without(allFeatures(), VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN)} {
		require.NoError(t, tap.Start(f), "TUNSETOFFLOAD %#x", tapOffloads(f))
	}

	require.NoError(t, tap.Close())
	assert.Zero(t, ifIndex(t, name), "a tap govmm created goes away with it")
}

func TestOpenTapAttachesToPersistentTap(t *testing.T) {
	inNewNetns(t)
	const name = "gvpersist0"
	// What `ip tuntap add dev gvpersist0 mode tap` does.
	fd, err := unix.Open(tunDevicePath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	req := newIfreqFlags(name, unix.IFF_TAP|unix.IFF_NO_PI)
	require.NoError(t, ioctlPtr(fd, unix.TUNSETIFF, unsafe.Pointer(&req)))
	require.NoError(t, ioctlVal(fd, unix.TUNSETPERSIST, 1))
	unix.Close(fd)
	require.NotZero(t, ifIndex(t, name))

	tap, err := OpenTap(name)
	require.NoError(t, err)
	assert.False(t, tap.Created())
	// A second program cannot take a single-queue tap.
	_, err = OpenTap(name)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "in use")
	require.NoError(t, tap.Close())
	assert.NotZero(t, ifIndex(t, name), "a persistent tap stays")
}

func TestOpenTapErrors(t *testing.T) {
	_, err := OpenTap("a-name-too-long-for-linux")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "IFNAMSIZ")

	inNewNetns(t)
	_, err = OpenTap("lo")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a single-queue tap")
	assert.Contains(t, err.Error(), "tap lo")
}

func TestAttachErrorsExplain(t *testing.T) {
	for _, tc := range []struct {
		existed bool
		err     error
		want    string
	}{
		{false, unix.EPERM, "CAP_NET_ADMIN"},
		{false, unix.EPERM, "ip tuntap add dev gv0 mode tap user"},
		{true, unix.EPERM, "another user"},
		{true, unix.EBUSY, "in use"},
		{true, unix.EINVAL, "not a single-queue tap"},
	} {
		err := attachError("gv0", tc.existed, tc.err)
		assert.Contains(t, err.Error(), tc.want)
		assert.Contains(t, err.Error(), "tap gv0")
		assert.ErrorIs(t, err, tc.err)
	}
	assert.Contains(t, openError("gv0", unix.ENOENT).Error(), "modprobe tun")
	assert.Contains(t, openError("gv0", unix.EACCES).Error(), "permission")
}

func TestIfreqIsStructIfreq(t *testing.T) {
	assert.Equal(t, uintptr(40), unsafe.Sizeof(ifreqFlags{}), "sizeof(struct ifreq) on 64-bit Linux")
	assert.Equal(t, uintptr(unix.IFNAMSIZ), unsafe.Offsetof(ifreqFlags{}.flags))
}

func TestTapExchangesFrames(t *testing.T) {
	inNewNetns(t)
	const name = "gvframe0"
	tap, err := OpenTap(name)
	require.NoError(t, err)
	defer tap.Close()
	require.NoError(t, tap.Start(allFeatures()))
	sock := packetSocket(t, name)

	// Host to guest: a frame sent out of the interface is read from the
	// tap, behind a header.
	out := frame(600, 1)
	copy(out[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	_, err = unix.Write(sock, out)
	require.NoError(t, err)
	hdr, got := readSkipping(t, tap, testEtherType)
	assert.Equal(t, out, got)
	assert.Zero(t, hdr.GSOType)

	// Guest to host: a frame written to the tap arrives on the interface.
	in := frame(900, 2)
	hdrBuf := make([]byte, HeaderSize)
	Header{}.Encode(hdrBuf)
	require.NoError(t, tap.WritePacket([][]byte{hdrBuf, in[:100], in[100:]}))
	assert.Equal(t, in, recvIncoming(t, sock))

	// A packet that fills the buffers exactly is not mistaken for a cut
	// one.
	exact := frame(500, 4)
	_, err = unix.Write(sock, exact)
	require.NoError(t, err)
	for {
		buf := make([]byte, HeaderSize+len(exact))
		n := readWithin(t, tap, [][]byte{buf[:HeaderSize], buf[HeaderSize:]})
		if binary.BigEndian.Uint16(buf[HeaderSize+12:]) == testEtherType {
			assert.Equal(t, len(buf), n)
			assert.Equal(t, exact, buf[HeaderSize:])
			break
		}
	}

	// A packet larger than the buffers: ReadPacket returns more than the
	// buffers hold, as Backend requires for the device to see the cut.
	long := frame(1000, 3)
	_, err = unix.Write(sock, long)
	require.NoError(t, err)
	for {
		small := make([]byte, HeaderSize+100)
		n := readWithin(t, tap, [][]byte{small})
		if binary.BigEndian.Uint16(small[HeaderSize+12:]) == testEtherType {
			assert.Greater(t, n, len(small))
			assert.Equal(t, long[:100], small[HeaderSize:])
			break
		}
	}
}

// setAddr gives the interface an IPv4 address and prefix length, as `ip
// addr add` does, with the SIOCSIFADDR and SIOCSIFNETMASK ioctls
// (netdevice(7)).
func setAddr(t *testing.T, name string, addr [4]byte, mask [4]byte) {
	t.Helper()
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(sock)
	for _, op := range []struct {
		req uint
		v   [4]byte
	}{{unix.SIOCSIFADDR, addr}, {unix.SIOCSIFNETMASK, mask}} {
		r, err := unix.NewIfreq(name)
		require.NoError(t, err)
		require.NoError(t, r.SetInet4Addr(op.v[:]))
		require.NoError(t, unix.IoctlIfreq(sock, op.req, r))
	}
}

func TestTapOffloadsFollowTheDriver(t *testing.T) {
	// A UDP datagram the host sends to the tap's subnet broadcast address
	// (no ARP, no ping needed) reaches the tap with a partial checksum
	// only if the driver accepted VIRTIO_NET_F_GUEST_CSUM: TUNSETOFFLOAD
	// TUN_F_CSUM lets the kernel skip checksumming.
	inNewNetns(t)
	const name = "gvcsum0"
	tap, err := OpenTap(name)
	require.NoError(t, err)
	defer tap.Close()
	setAddr(t, name, [4]byte{192, 0, 2, 1}, [4]byte{255, 255, 255, 0})

	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(udp)
	require.NoError(t, unix.SetsockoptInt(udp, unix.SOL_SOCKET, unix.SO_BROADCAST, 1))
	require.NoError(t, unix.SetsockoptString(udp, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name))
	const etherTypeIPv4 = 0x0800
	send := func() (Header, []byte) {
		require.NoError(t, unix.Sendto(udp, []byte("hello, guest"), 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{192, 0, 2, 255}}))
		for {
			hdr, f := readSkipping(t, tap, etherTypeIPv4)
			if f[ethHeaderLen+9] == unix.IPPROTO_UDP && strings.HasSuffix(string(f), "hello, guest") {
				return hdr, f
			}
		}
	}

	require.NoError(t, tap.Start(without(allFeatures(), VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN)))
	hdr, f := send()
	assert.Zero(t, hdr.Flags&VIRTIO_NET_HDR_F_NEEDS_CSUM, "without GUEST_CSUM the kernel checksums")
	assert.NotZero(t, binary.BigEndian.Uint16(f[ethHeaderLen+20+6:]), "UDP checksum filled in")

	require.NoError(t, tap.Start(allFeatures()))
	hdr, _ = send()
	assert.Equal(t, uint8(VIRTIO_NET_HDR_F_NEEDS_CSUM), hdr.Flags, "with GUEST_CSUM the checksum is left partial")
	const ipv4HeaderLen, udpCsumOffset = 20, 6
	assert.Equal(t, uint16(ethHeaderLen+ipv4HeaderLen), hdr.CsumStart)
	assert.Equal(t, uint16(udpCsumOffset), hdr.CsumOffset)
}

func TestTapVanishes(t *testing.T) {
	inNewNetns(t)
	const name = "gvgone0"
	tap, err := OpenTap(name)
	require.NoError(t, err)
	defer tap.Close()
	require.NoError(t, tap.Start(allFeatures()))

	// A reader blocked on the tap when the interface is deleted wakes up.
	done := make(chan error, 1)
	go func() {
		_, err := tap.ReadPacket([][]byte{make([]byte, 2048)}, nil)
		done <- err
	}()
	time.Sleep(quiet)
	deleteLink(t, name)
	select {
	case err := <-done:
		// It may have read one of the packets the kernel sends on a new
		// link first; then the next read says so.
		if err == nil {
			_, err = tap.ReadPacket([][]byte{make([]byte, 2048)}, nil)
		}
		assert.ErrorIs(t, err, ErrVanished)
		assert.Contains(t, err.Error(), name)
	case <-time.After(waitFor):
		tap.Stop()
		t.Fatal("a blocked read did not notice the interface going away")
	}
	hdr := make([]byte, HeaderSize)
	err = tap.WritePacket([][]byte{hdr, frame(60, 0)})
	assert.ErrorIs(t, err, ErrVanished)
	err = tap.Start(allFeatures())
	assert.ErrorIs(t, err, ErrVanished)
}

func TestTapStopWakesReader(t *testing.T) {
	inNewNetns(t)
	tap, err := OpenTap("gvstop0")
	require.NoError(t, err)
	defer tap.Close()
	require.NoError(t, tap.Start(0))
	done := make(chan error, 1)
	idles := 0
	go func() {
		buf := make([]byte, 2048)
		for {
			_, err := tap.ReadPacket([][]byte{buf}, func() { idles++ })
			if err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(quiet)
	tap.Stop()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrStopped)
		assert.Positive(t, idles, "idle was called before the read blocked")
	case <-time.After(waitFor):
		t.Fatal("Stop did not wake the reader")
	}
	// Start lifts Stop.
	require.NoError(t, tap.Start(0))
	hdr := make([]byte, HeaderSize)
	require.NoError(t, tap.WritePacket([][]byte{hdr, frame(60, 0)}))
}

// TestDeviceOverTap runs the device on a real tap: frames both ways, a TCP
// segmentation offload packet from the guest, then the tap deleted under
// the running device.
func TestDeviceOverTap(t *testing.T) {
	inNewNetns(t)
	const name = "gvdev0"
	tap, err := OpenTap(name)
	require.NoError(t, err)
	h := newHarnessOn(t, allFeatures(), name, tap)
	sock := packetSocket(t, name)
	h.activate()
	h.postRX(make4K(32)...)

	// Guest to host.
	out := frame(1514, 1)
	h.addTX(packet(Header{}, out[:40]), out[40:])
	h.kickTX()
	h.waitUsed(h.txd, 1)
	assert.Equal(t, out, recvIncoming(t, sock))

	// A 3000-byte TCP segment for the host's stack to cut into MSS-sized
	// ones: the tap takes it whole, the header saying how.
	tso := tcpFrame(3000)
	h.addTX(packet(Header{
		Flags:   VIRTIO_NET_HDR_F_NEEDS_CSUM,
		GSOType: VIRTIO_NET_HDR_GSO_TCPV4, HdrLen: ethHeaderLen + 40, GSOSize: 1448,
		CsumStart: ethHeaderLen + 20, CsumOffset: 16,
	}, tso))
	h.kickTX()
	h.waitUsed(h.txd, 2)
	assert.Equal(t, tso, recvIncoming(t, sock), "the packet socket sees the super-packet before segmentation")
	assert.Equal(t, uint64(2), h.dev.Stats().TXPackets)

	// Host to guest.
	in := frame(1000, 2)
	copy(in[0:6], h.dev.MAC())
	_, err = unix.Write(sock, in)
	require.NoError(t, err)
	for {
		// Skip what the host's stack sends on a new link.
		_, f := h.nextRXPacket()
		if binary.BigEndian.Uint16(f[12:]) == testEtherType {
			assert.Equal(t, in, f)
			break
		}
	}

	// The tap goes away: reported once, the guest keeps transmitting into
	// the void, nothing breaks.
	deleteLink(t, name)
	for i := range 4 {
		h.addTX(packet(Header{}, frame(100, byte(i))))
		h.kickTX()
	}
	h.waitUsed(h.txd, 6)
	require.Eventually(t, func() bool { return countLines(h.logs.String(), "vanished") == 1 }, waitFor, time.Millisecond)
	assert.Contains(t, h.logs.String(), "tap="+name)
	assert.Equal(t, uint64(4), h.dev.Stats().TXDropped)
	h.noFail()
	h.dev.Reset()
	time.Sleep(quiet)
	assert.Equal(t, 1, countLines(h.logs.String(), "vanished"), h.logs.String())
}

// tcpFrame returns an Ethernet frame holding an IPv4 TCP segment with n
// bytes of payload, from 192.0.2.2 to 192.0.2.1, its TCP checksum set to
// the pseudo-header sum as a driver using VIRTIO_NET_HDR_F_NEEDS_CSUM does
// (§5.1.6.2).
func tcpFrame(n int) []byte {
	const ipHeaderLen, tcpHeaderLen = 20, 20
	f := make([]byte, ethHeaderLen+ipHeaderLen+tcpHeaderLen+n)
	copy(f, []byte{0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00})
	ip := f[ethHeaderLen:]
	ip[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(ip[2:], uint16(ipHeaderLen+tcpHeaderLen+n))
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_TCP
	copy(ip[12:], []byte{192, 0, 2, 2, 192, 0, 2, 1})
	binary.BigEndian.PutUint16(ip[10:], ^onesSum(0, ip[:ipHeaderLen]))
	tcp := ip[ipHeaderLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 9)
	tcp[12] = tcpHeaderLen / 4 << 4
	tcp[13] = 0x18 // PSH, ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	for i := range n {
		tcp[tcpHeaderLen+i] = byte(i)
	}
	pseudo := make([]byte, 12)
	copy(pseudo, ip[12:20])
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], uint16(tcpHeaderLen+n))
	binary.BigEndian.PutUint16(tcp[16:], onesSum(0, pseudo))
	return f
}

// onesSum adds b to sum as 16-bit big-endian words in ones' complement
// arithmetic (RFC 1071).
func onesSum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

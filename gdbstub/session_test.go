package gdbstub

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ioTimeout bounds every read and write of the test client, so that a
// stub that fails to answer fails the test instead of hanging it.
const ioTimeout = 5 * time.Second

// client is a minimal GDB: it frames packets, checks acknowledgments and
// checksums, and expands run-length encoding like GDB does.
type client struct {
	t     *testing.T
	conn  net.Conn
	r     *bufio.Reader
	noAck bool
}

func newClient(t *testing.T, conn net.Conn) *client {
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// frame frames a packet as GDB does: no run-length encoding, which only
// replies use.
func frame(data string) string {
	return "$" + data + "#" + hex2(checksum([]byte(data)))
}

func (c *client) writeRaw(s string) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(ioTimeout)))
	_, err := io.WriteString(c.conn, s)
	require.NoError(c.t, err)
}

func (c *client) readByte() byte {
	c.t.Helper()
	// net.Pipe refuses deadlines once the other end closed, even with
	// data still buffered here; the read itself then reports the end.
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	b, err := c.r.ReadByte()
	require.NoError(c.t, err)
	return b
}

// send sends a packet and, in ack mode, expects the stub's '+'.
func (c *client) send(data string) {
	c.t.Helper()
	c.writeRaw(frame(data))
	if !c.noAck {
		require.Equal(c.t, string(rune(ackByte)), string(c.readByte()), "ack for %q", data)
	}
}

// recv reads one packet, checks it and acknowledges it.
func (c *client) recv() string {
	c.t.Helper()
	for b := c.readByte(); b != packetStart; b = c.readByte() {
		require.Failf(c.t, "unexpected byte before a packet", "%q", b)
	}
	var data []byte
	for b := c.readByte(); b != packetEnd; b = c.readByte() {
		data = append(data, b)
	}
	sum := []byte{c.readByte(), c.readByte()}
	require.Equal(c.t, hex2(checksum(data)), string(sum), "checksum of %q", data)
	if !c.noAck {
		// Best effort: after D the stub is already gone.
		_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, _ = c.conn.Write([]byte{ackByte})
	}
	exp, err := expandRLE(data, 1<<20)
	require.NoError(c.t, err)
	return string(exp)
}

func (c *client) call(data string) string {
	c.t.Helper()
	c.send(data)
	return c.recv()
}

// expectClosed checks that the stub closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := c.r.ReadByte()
	require.ErrorIs(c.t, err, io.EOF)
}

type harness struct {
	f    *fakeTarget
	srv  *Server
	c    *client
	done chan error
}

// start serves one session of a Server for f over an in-memory pipe.
func start(t *testing.T, f *fakeTarget) *harness {
	srv := NewServer(f, Options{Log: testLogger(t)})
	return attachClient(t, f, srv)
}

func attachClient(t *testing.T, f *fakeTarget, srv *Server) *harness {
	a, b := net.Pipe()
	h := &harness{f: f, srv: srv, c: newClient(t, a), done: make(chan error, 1)}
	go func() { h.done <- srv.ServeConn(b) }()
	t.Cleanup(func() {
		a.Close()
		select {
		case <-h.done:
		case <-time.After(ioTimeout):
			t.Error("the session did not end when the client went away")
		}
		srv.Close()
		_, _, _, _, violation := f.state()
		assert.NoError(t, violation, "the stub broke the Target contract")
	})
	return h
}

// wait waits for the session to end.
func (h *harness) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-h.done:
		require.NoError(t, err)
		h.done <- nil // for the clean-up
	case <-time.After(ioTimeout):
		t.Fatal("the session did not end")
	}
}

// waitRunning waits until the stub has resumed f: the client only knows
// that its packet was received.
func waitRunning(t *testing.T, f *fakeTarget) {
	t.Helper()
	for deadline := time.Now().Add(ioTimeout); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if running, _, _, _, _ := f.state(); running {
			return
		}
	}
	t.Fatal("the guest was not resumed")
}

// testLogger logs the stub's packets into the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func hexOf(s string) string { return hex.EncodeToString([]byte(s)) }

func TestHandshakeLikeGDB(t *testing.T) {
	h := start(t, newFakeTarget(2))
	c := h.c
	sup := c.call("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vContSupported+")
	for _, feat := range []string{"PacketSize=4000", "QStartNoAckMode+", "swbreak+", "hwbreak+", "qXfer:features:read+"} {
		assert.Contains(t, strings.Split(sup, ";"), feat)
	}
	assert.Equal(t, "", c.call("vMustReplyEmpty"))
	assert.Equal(t, "OK", c.call("QStartNoAckMode"))
	c.noAck = true
	assert.Equal(t, "OK", c.call("Hg0"))

	// The target description, in chunks as GDB reads it.
	var xmlDoc strings.Builder
	for off := 0; ; {
		r := c.call(fmt.Sprintf("qXfer:features:read:target.xml:%x,%x", off, 0x3fb))
		require.NotEmpty(t, r)
		xmlDoc.WriteString(r[1:])
		off += len(r) - 1
		if r[0] == 'l' {
			break
		}
		require.Equal(t, byte('m'), r[0])
	}
	assert.Equal(t, TargetXML, xmlDoc.String())
	assert.Equal(t, "E00", c.call("qXfer:features:read:other.xml:0,100"))
	assert.Equal(t, "", c.call("qXfer:exec-file:read::0,100"))

	assert.Equal(t, "", c.call("qTStatus"))
	assert.Equal(t, "T05thread:1;", c.call("?"))
	assert.Equal(t, "m1,2", c.call("qfThreadInfo"))
	assert.Equal(t, "l", c.call("qsThreadInfo"))
	assert.Equal(t, "1", c.call("qAttached"))
	assert.Equal(t, "QC1", c.call("qC"))
	assert.Equal(t, "vCont;c;C;s;S", c.call("vCont?"))
	assert.Equal(t, hexOf("vCPU 1"), c.call("qThreadExtraInfo,2"))
	assert.Equal(t, "OK", c.call("T2"))
	assert.Equal(t, "E03", c.call("T3"))
	assert.Equal(t, "E03", c.call("T0"))
	assert.Equal(t, "OK", c.call("Hg2"))
	assert.Equal(t, "QC2", c.call("qC"))
	assert.Equal(t, "E03", c.call("Hg3"))
	assert.Equal(t, "OK", c.call("Hc-1"))
	assert.Equal(t, "", c.call("qOffsets"))
	assert.Equal(t, "", c.call("!"))
}

func TestRegisters(t *testing.T) {
	f := newFakeTarget(2)
	h := start(t, f)
	c := h.c

	want := f.regs(0)
	assert.Equal(t, hex.EncodeToString(want.marshal()), c.call("g"))
	assert.Equal(t, "0010000000000000", c.call("p10"), "rip of vCPU 0, little-endian")
	assert.Equal(t, "E16", c.call(fmt.Sprintf("p%x", numRegs)))

	// P writes one register of the Hg thread.
	assert.Equal(t, "OK", c.call("Hg2"))
	assert.Equal(t, "OK", c.call("P0=efbeadde00000000"))
	assert.Equal(t, uint64(0xdeadbeef), f.regs(1).RAX)
	assert.Equal(t, uint64(0x1111111111111100), f.regs(0).RAX, "vCPU 0 untouched")
	assert.Equal(t, "E16", c.call("P0=efbeadde"), "wrong size")
	assert.Equal(t, "E16", c.call("P0"), "no value")

	// G writes them all.
	r := f.regs(1)
	r.R15, r.CR3, r.XMM[3][7] = 0x1515, 0x9000, 0x77
	assert.Equal(t, "OK", c.call("G"+hex.EncodeToString(r.marshal())))
	assert.Equal(t, r, f.regs(1))
	assert.Equal(t, "E16", c.call("G00"), "short")
	assert.Equal(t, "E16", c.call("Gzz"), "not hex")
}

func TestMemory(t *testing.T) {
	f := newFakeTarget(1)
	h := start(t, f)
	c := h.c

	assert.Equal(t, "90909090", c.call("m1000,4"))
	assert.Equal(t, "OK", c.call("M1000,3:0a0b0c"))
	assert.Equal(t, []byte{0x0a, 0x0b, 0x0c}, f.memAt(0x1000, 3))

	// X carries escaped binary: } # $ * are sent as } and the byte ^ 0x20.
	data := []byte{0x7d, 0x23, 0x24, 0x2a, 0x03, 0x00}
	pkt := append([]byte("X2000,6:"), appendEscaped(nil, data)...)
	assert.Equal(t, "OK", c.call(string(pkt)))
	assert.Equal(t, data, f.memAt(0x2000, 6))
	assert.Equal(t, "OK", c.call("X2000,0:"), "GDB's probe for X")
	assert.Equal(t, "E16", c.call("X2000,2:a"), "length disagrees with the data")

	// Reads stop at the end of RAM; nothing readable is EFAULT.
	end := uint64(fakeBase + fakeMemLen)
	assert.Equal(t, "9090", c.call(fmt.Sprintf("m%x,10", end-2)), "partial read")
	assert.Equal(t, "E0e", c.call(fmt.Sprintf("m%x,1", end)))
	assert.Equal(t, "E0e", c.call("mffffffffffffffff,10"), "at the top of the address space")
	assert.Equal(t, "E0e", c.call(fmt.Sprintf("M%x,2:0102", end-1)), "write across the end")
	// A huge length is clamped, not allocated.
	r := c.call("m1000,ffffffffffffffff")
	assert.Len(t, r, 2*maxMemRead)
}

func TestMalformedPacketsGetErrors(t *testing.T) {
	h := start(t, newFakeTarget(2))
	for _, tc := range []struct{ pkt, want string }{
		{"m", "E16"},
		{"mzz,1", "E16"},
		{"m1000", "E16"},
		{"m1000,", "E16"},
		{"m10000000000000000,1", "E16"},
		{"M1000,2:abc", "E16"},
		{"M1000,2", "E16"},
		{"X1000,2:a}", "E16"},
		{"p", "E16"},
		{"p999", "E16"},
		{"pffffffffffffffffff", "E16"},
		{"P10=12", "E16"},
		{"Gzz", "E16"},
		{"H", "E16"},
		{"Hx1", "E16"},
		{"Hg", "E03"},
		{"Hgffffffffffffffffffff", "E03"},
		{"Hg-2", "E03"},
		{"vCont;", "E16"},
		{"vCont;x", "E16"},
		{"vCont;cc", "E16"},
		{"vCont;Czz", "E16"},
		{"vCont;s:99", "E03"},
		{"vCont;s:ffffffffffffffffffffffff", "E03"},
		{"Z9,1000,1", ""},
		{"Z0,1000", "E16"},
		{"Z0,1000,2", "E16"},
		{"Z1,1000,4", "E16"},
		{"Z2,1000,0", "E16"},
		{"Z2,1000,64", "E16"},
		{"Z3,1000,1", ""}, // no read watchpoints on x86
		{"Zx", ""},
		{"qXfer:features:read:target.xml:zz", "E00"},
		{"qThreadExtraInfo,9", "E03"},
		{"czz", "E16"},
		{"C", "E16"},
		{"Sxx;1000", "E16"},
		{"T", "E03"},
		{"T-1", "E03"},
		{"", ""},
		{"\x00\xff", ""},
	} {
		assert.Equal(t, tc.want, h.c.call(tc.pkt), "reply to %q", tc.pkt)
	}
	running, resumes, _, _, _ := h.f.state()
	assert.False(t, running)
	assert.Zero(t, resumes, "no malformed packet may resume the guest")
}

func TestSoftwareBreakpointIsHiddenAndRestored(t *testing.T) {
	f := newFakeTarget(1)
	h := start(t, f)
	c := h.c

	assert.Equal(t, "OK", c.call("Z0,1234,1"))
	assert.Equal(t, []byte{int3}, f.memAt(0x1234, 1), "an int3 is planted")
	assert.Equal(t, "OK", c.call("Z0,1234,1"), "Z is idempotent")
	assert.Equal(t, "909090", c.call("m1233,3"), "reads show the original byte")

	// A write over the breakpoint changes the saved byte, not the int3.
	assert.Equal(t, "OK", c.call("M1233,3:112233"))
	assert.Equal(t, []byte{0x11, int3, 0x33}, f.memAt(0x1233, 3))
	assert.Equal(t, "112233", c.call("m1233,3"))

	assert.Equal(t, "OK", c.call("z0,1234,1"))
	assert.Equal(t, []byte{0x11, 0x22, 0x33}, f.memAt(0x1233, 3), "the last written byte comes back")
	assert.Equal(t, "OK", c.call("z0,1234,1"), "z is idempotent")
	assert.Equal(t, []byte{0x22}, f.memAt(0x1234, 1))
}

func TestContinueStopsAtBreakpointOnTheVCPUThatHitIt(t *testing.T) {
	f := newFakeTarget(2) // vCPU 0 starts at 0x1000, vCPU 1 at 0x1100
	h := start(t, f)
	c := h.c

	assert.Equal(t, "OK", c.call("Z0,1234,1"))
	// vCPU 1 is 0x100 bytes closer: it gets there first.
	assert.Equal(t, "T05thread:2;swbreak:;", c.call("vCont;c"))
	assert.Equal(t, uint64(0x1234), f.regs(1).RIP, "the PC is on the int3, as KVM reports it")
	assert.Equal(t, "QC2", c.call("qC"), "the stopped thread becomes current")
	assert.Equal(t, hex.EncodeToString(binary.LittleEndian.AppendUint64(nil, 0x1234)), c.call("p10"))

	// GDB's way of going on: remove, step over, insert, continue. Now
	// vCPU 0 gets there.
	assert.Equal(t, "OK", c.call("z0,1234,1"))
	rip0 := f.regs(0).RIP
	assert.Equal(t, "T05thread:2;", c.call("vCont;s:2;c"))
	assert.Equal(t, uint64(0x1235), f.regs(1).RIP)
	assert.Equal(t, rip0, f.regs(0).RIP, "vCPU 0 does not run during the step")
	assert.Equal(t, "OK", c.call("Z0,1234,1"))
	assert.Equal(t, "T05thread:1;swbreak:;", c.call("vCont;c"))
	assert.Equal(t, uint64(0x1234), f.regs(0).RIP)
}

func TestStep(t *testing.T) {
	f := newFakeTarget(2)
	h := start(t, f)
	c := h.c

	assert.Equal(t, "T05thread:1;", c.call("vCont;s:1"))
	assert.Equal(t, uint64(0x1001), f.regs(0).RIP)
	assert.Equal(t, uint64(0x1100), f.regs(1).RIP)

	// The legacy s steps the Hc thread, and may say where to start.
	assert.Equal(t, "OK", c.call("Hc2"))
	assert.Equal(t, "T05thread:2;", c.call("s1200"))
	assert.Equal(t, uint64(0x1201), f.regs(1).RIP)
	assert.Equal(t, "T05thread:2;", c.call("S05"))
	assert.Equal(t, uint64(0x1202), f.regs(1).RIP)

	// The step asked the machine for single-stepping with interrupts
	// blocked, on vCPU 1 only.
	_, _, _, d, _ := f.state()
	assert.Equal(t, 1, d.Step)
	assert.EqualValues(t, GuestDbgEnable|GuestDbgSingleStep|GuestDbgBlockIRQ, f.control[1])
	assert.Zero(t, f.control[0])
}

func TestCtrlCInterruptsARunningGuest(t *testing.T) {
	f := newFakeTarget(2)
	h := start(t, f)
	c := h.c

	c.send("c") // the toy CPUs run off the end of memory and idle
	waitRunning(t, f)
	// Packets other than Ctrl-C are dropped while the guest runs.
	c.send("g")
	c.writeRaw("\x03")
	assert.Equal(t, "T02thread:1;", c.recv(), "SIGINT, as GDB expects after Ctrl-C")
	running, _, interrupts, _, _ := f.state()
	assert.False(t, running)
	assert.Equal(t, 1, interrupts)

	// Ctrl-C while stopped does nothing.
	c.writeRaw("\x03")
	assert.Equal(t, "T02thread:1;", c.call("?"))
	_, _, interrupts, _, _ = f.state()
	assert.Equal(t, 1, interrupts)
}

func TestHardwareBreakpointDoesNotRepeatOnContinue(t *testing.T) {
	f := newFakeTarget(2)
	h := start(t, f)
	c := h.c

	assert.Equal(t, "OK", c.call("Z1,1300,1"))
	assert.Equal(t, "T05thread:2;hwbreak:;", c.call("vCont;c"))
	assert.Equal(t, uint64(0x1300), f.regs(1).RIP)
	_, _, _, d, _ := f.state()
	assert.Equal(t, HWBreakpoint{Type: BreakHW, Addr: 0x1300, Len: 1}, d.HW[0])
	assert.EqualValues(t, GuestDbgEnable|GuestDbgUseHWBP, f.control[0])

	// Continuing without removing it: RFLAGS.RF lets vCPU 1 past it, so
	// the next stop is vCPU 0 arriving there, not vCPU 1 again.
	assert.Equal(t, "T05thread:1;hwbreak:;", c.call("vCont;c"))
	assert.Equal(t, uint64(0x1300), f.regs(0).RIP)
	assert.Greater(t, f.regs(1).RIP, uint64(0x1300))
}

func TestBreakpointInUnmappedMemoryUsesADebugRegister(t *testing.T) {
	// Like start_kernel before the kernel maps itself: the address does
	// not translate, so the int3 cannot be written.
	f := newFakeTarget(1)
	h := start(t, f)
	c := h.c

	assert.Equal(t, "OK", c.call("Z0,ffffffff81000000,1"))
	assert.Equal(t, "OK", c.call("P10=00000081ffffffff"), "jump there")
	assert.Equal(t, "T05thread:1;swbreak:;", c.call("vCont;c"))
	_, _, _, d, _ := f.state()
	assert.Empty(t, d.SW)
	assert.Equal(t, HWBreakpoint{Type: BreakSW, Addr: 0xffffffff81000000, Len: 1}, d.HW[0])
	assert.Equal(t, "OK", c.call("z0,ffffffff81000000,1"))
	assert.Equal(t, "OK", c.call("Z0,ffffffff81000000,1;X1,ff"), "a condition list is ignored")
}

func TestHardwareBreakpointsFirst(t *testing.T) {
	f := newFakeTarget(1)
	h := attachClient(t, f, NewServer(f, Options{HardwareBreakpointsFirst: true}))
	c := h.c
	for _, a := range []string{"1100", "1200", "1234", "1300", "1400"} {
		assert.Equal(t, "OK", c.call("Z0,"+a+",1"))
	}
	assert.Equal(t, []byte{opNOP}, f.memAt(0x1234, 1), "the first four take debug registers")
	assert.Equal(t, []byte{int3}, f.memAt(0x1400, 1), "the fifth is an int3")
	assert.Equal(t, "T05thread:1;swbreak:;", c.call("c"))
	assert.Equal(t, uint64(0x1100), f.regs(0).RIP)
	_, _, _, d, _ := f.state()
	assert.Equal(t, []uint64{0x1400}, d.SW)
	assert.Equal(t, HWBreakpoint{Type: BreakSW, Addr: 0x1100, Len: 1}, d.HW[0])
	assert.Equal(t, "OK", c.call("z0,1100,1"))
	assert.Equal(t, "OK", c.call("Z1,1500,1"), "a freed register serves Z1 too")
}

func TestDebugRegistersRunOut(t *testing.T) {
	h := start(t, newFakeTarget(1))
	c := h.c
	assert.Equal(t, "OK", c.call("Z2,2001,4"), "unaligned: three registers")
	assert.Equal(t, "OK", c.call("Z1,1300,1"))
	assert.Equal(t, "E1c", c.call("Z1,1400,1"), "a fifth register")
	assert.Equal(t, "E1c", c.call("Z4,3000,1"))
	assert.Equal(t, "E0e", c.call("Z0,ffffffff81000000,1"), "no register left to stand in for an int3")
	assert.Equal(t, "OK", c.call("z2,2001,4"))
	assert.Equal(t, "OK", c.call("Z4,3000,10"), "16 bytes: two registers")
	assert.Equal(t, "OK", c.call("Z0,ffffffff81000000,1"))
	assert.Equal(t, "E1c", c.call("Z1,1400,1"))
}

func TestWatchpoint(t *testing.T) {
	f := newFakeTarget(2)
	// mov [0x2000], al at 0x1500.
	f.setMem(0x1500, binary.LittleEndian.AppendUint64([]byte{opStoreAL}, 0x2000))
	h := start(t, f)
	c := h.c

	assert.Equal(t, "OK", c.call("Z2,2000,1"))
	assert.Equal(t, "T05thread:2;watch:2000;", c.call("vCont;c"))
	assert.Equal(t, uint64(0x1500+opStoreLen), f.regs(1).RIP, "a data breakpoint traps after the store")
	assert.Equal(t, []byte{0x01}, f.memAt(0x2000, 1), "vCPU 1's AL was stored")
	assert.Equal(t, "OK", c.call("z2,2000,1"))

	assert.Equal(t, "OK", c.call("Z4,2000,4"))
	assert.Equal(t, "T05thread:1;awatch:2000;", c.call("vCont;c"))
	assert.Equal(t, []byte{0x00}, f.memAt(0x2000, 1), "vCPU 0's AL was stored")
}

func TestDetachRemovesBreakpointsAndLetsTheGuestRun(t *testing.T) {
	f := newFakeTarget(1)
	h := start(t, f)
	c := h.c

	assert.Equal(t, "OK", c.call("Z0,1234,1"))
	assert.Equal(t, "OK", c.call("Z1,1300,1"))
	assert.Equal(t, "OK", c.call("D"))
	c.expectClosed()
	h.wait(t)
	assert.Equal(t, []byte{opNOP}, f.memAt(0x1234, 1))
	running, _, _, d, _ := f.state()
	assert.True(t, running, "the guest runs on")
	assert.True(t, d.Idle(), "with no breakpoint left")
	assert.Zero(t, f.control[0], "and guest debugging off")

	// A new debugger stops it again.
	h2 := attachClient(t, f, h.srv)
	assert.Equal(t, "T05thread:1;", h2.c.call("?"))
	running, _, interrupts, _, _ := f.state()
	assert.False(t, running)
	assert.Equal(t, 1, interrupts)
}

func TestDroppedConnectionReleasesTheGuest(t *testing.T) {
	f := newFakeTarget(1)
	h := start(t, f)
	c := h.c
	assert.Equal(t, "OK", c.call("P10=0020000000000000"), "vCPU 0 to 0x2000")
	assert.Equal(t, "OK", c.call("Z0,1500,1"), "an int3 behind it")
	c.send("c") // runs to the end of memory and idles
	waitRunning(t, f)
	c.conn.Close()
	h.wait(t)
	running, _, interrupts, d, _ := f.state()
	assert.Equal(t, 1, interrupts, "the running guest was stopped to take the int3 out")
	assert.True(t, running, "then it runs on")
	assert.True(t, d.Idle())
	assert.Equal(t, []byte{opNOP}, f.memAt(0x1500, 1))
}

func TestKill(t *testing.T) {
	f := newFakeTarget(1)
	h := start(t, f)
	h.c.send("k")
	h.c.expectClosed()
	h.wait(t)
	assert.True(t, f.killed)
}

func TestGuestExit(t *testing.T) {
	f := newFakeTarget(1)
	f.setMem(0x1010, []byte{opHLT})
	h := start(t, f)
	c := h.c
	assert.Equal(t, "W00", c.call("c"))
	assert.Equal(t, "W00", c.call("?"))
	_, resumes, _, _, _ := f.state()
	assert.Equal(t, "W00", c.call("vCont;c"), "nothing to resume")
	_, resumes2, _, _, _ := f.state()
	assert.Equal(t, resumes, resumes2)
	assert.Equal(t, "OK", c.call("D"))
}

func TestNackRetransmitsAndBadChecksumIsNacked(t *testing.T) {
	h := start(t, newFakeTarget(1))
	c := h.c
	c.writeRaw("$g#00")
	assert.Equal(t, byte(nackByte), c.readByte(), "a bad checksum is nacked")

	c.send("qC")
	first := c.recv()
	c.writeRaw("-")
	assert.Equal(t, first, c.recv(), "a nacked reply is sent again")

	// A packet longer than PacketSize is refused, not buffered.
	big := "M1000,1:" + strings.Repeat("0", PacketSize)
	c.writeRaw(frame(big))
	assert.Equal(t, byte(ackByte), c.readByte())
	assert.Equal(t, "E07", c.recv())
}

func TestOneDebuggerAtATime(t *testing.T) {
	f := newFakeTarget(1)
	srv := NewServer(f, Options{})
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		assert.NoError(t, <-served)
	}()

	first, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer first.Close()
	c1 := newClient(t, first)
	assert.Equal(t, "T05thread:1;", c1.call("?"))

	second, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer second.Close()
	require.NoError(t, second.SetReadDeadline(time.Now().Add(ioTimeout)))
	_, err = second.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "the second debugger is turned away")

	assert.Equal(t, "QC1", c1.call("qC"), "the first one is still served")
	assert.ErrorIs(t, srv.ServeConn(nopConn{}), ErrBusy)
}

// nopConn is a net.Conn that is never used (ServeConn refuses it).
type nopConn struct{ net.Conn }

func (nopConn) Close() error { return nil }

func TestCloseSendsTheExitAndEnds(t *testing.T) {
	f := newFakeTarget(1)
	h := start(t, f)
	c := h.c
	c.send("c") // idles
	waitRunning(t, f)
	// The machine ends while GDB waits (as govmm will on power off):
	// the exit is queued, then the stub is closed.
	f.mu.Lock()
	f.stop(StopEvent{Reason: StopExited, Status: 1})
	f.mu.Unlock()
	go h.srv.Close()
	c.noAck = true // the stub may be gone before an ack could reach it
	assert.Equal(t, "W01", c.recv())
	c.expectClosed()
}

func TestListenAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1234", "127.0.0.1:1234"},
		{":1234", "127.0.0.1:1234"},
		{"0.0.0.0:1234", "0.0.0.0:1234"},
		{"localhost:1234", "localhost:1234"},
		{"[::1]:1234", "[::1]:1234"},
		{"[::]:1234", "[::]:1234"},
		{"0", "127.0.0.1:0"},
	} {
		got, err := ListenAddress(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", ":", "gdb", ":http", "1234:", "65536", "::1", "-1"} {
		_, err := ListenAddress(bad)
		assert.Error(t, err, "%q", bad)
	}
	l, err := Listen(":0")
	require.NoError(t, err)
	defer l.Close()
	assert.True(t, l.Addr().(*net.TCPAddr).IP.IsLoopback(), "a bare port binds loopback only")
}

package devices

import (
	"testing"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type kbcHarness struct {
	c      *I8042
	data   PortDevice
	cmd    PortDevice
	kbdIRQ *devicetest.IRQRecorder
	auxIRQ *devicetest.IRQRecorder
	power  *powerLog
}

func newKBCHarness() *kbcHarness {
	h := &kbcHarness{kbdIRQ: &devicetest.IRQRecorder{}, auxIRQ: &devicetest.IRQRecorder{}, power: &powerLog{}}
	h.c = NewI8042(h.kbdIRQ, h.auxIRQ, h.power.handler())
	h.data, h.cmd = h.c.DataPort(), h.c.CommandPort()
	return h
}

func (h *kbcHarness) status() byte { return in8(h.cmd, 0) }

// command runs a controller command like Linux's i8042_command: an
// optional argument byte, then the result byte if OBF comes up.
func (h *kbcHarness) command(cmd byte, arg ...byte) (byte, bool) {
	out8(h.cmd, 0, cmd)
	for _, a := range arg {
		out8(h.data, 0, a)
	}
	if h.status()&i8042StrOBF == 0 {
		return 0, false
	}
	return in8(h.data, 0), true
}

// flush drains the output buffer like Linux's i8042_flush.
func (h *kbcHarness) flush() int {
	n := 0
	for h.status()&i8042StrOBF != 0 && n < 64 {
		in8(h.data, 0)
		n++
	}
	return n
}

func TestI8042ResetState(t *testing.T) {
	h := newKBCHarness()
	assert.Equal(t, byte(i8042StrSYS|i8042StrUnlocked), h.status())
	ctr, ok := h.command(i8042CmdReadRAM)
	require.True(t, ok)
	assert.Equal(t, byte(i8042CtrAfterFWInit), ctr)
	assert.NotZero(t, h.status()&i8042StrCMD, "last write went to the command port")
}

func TestI8042SelfTestAndInterfaceTests(t *testing.T) {
	h := newKBCHarness()
	r, ok := h.command(i8042CmdSelfTest)
	require.True(t, ok)
	assert.Equal(t, byte(i8042SelfTestPassed), r)
	r, _ = h.command(i8042CmdKbdTest)
	assert.Equal(t, byte(i8042InterfaceOK), r)
	r, _ = h.command(i8042CmdAuxTest)
	assert.Equal(t, byte(i8042InterfaceOK), r)
	assert.Zero(t, h.status()&i8042StrOBF)
}

func TestI8042CTRAndPortEnables(t *testing.T) {
	h := newKBCHarness()
	_, ok := h.command(i8042CmdWriteRAM, 0x47)
	assert.False(t, ok)
	assert.Zero(t, h.status()&i8042StrCMD, "last write went to the data port")
	ctr, _ := h.command(i8042CmdReadRAM)
	assert.Equal(t, byte(0x47), ctr)

	h.command(i8042CmdKbdDisable)
	h.command(i8042CmdAuxDisable)
	ctr, _ = h.command(i8042CmdReadRAM)
	assert.Equal(t, byte(0x47|i8042CtrKbdDisable|i8042CtrAuxDisable), ctr)
	h.command(i8042CmdKbdEnable)
	h.command(i8042CmdAuxEnable)
	ctr, _ = h.command(i8042CmdReadRAM)
	assert.Equal(t, byte(0x47), ctr)

	// The CTR's system flag shows in the status register.
	h.command(i8042CmdWriteRAM, 0x00)
	assert.Zero(t, h.status()&i8042StrSYS)
	h.command(i8042CmdSelfTest)
	assert.NotZero(t, h.status()&i8042StrSYS)

	// The rest of the RAM is plain storage.
	h.command(i8042CmdWriteRAM+5, 0xAA)
	r, _ := h.command(i8042CmdReadRAM + 5)
	assert.Equal(t, byte(0xAA), r)
}

// TestI8042LinuxProbe replays drivers/input/serio/i8042.c probing
// (i8042_controller_check, _selftest, _init, i8042_check_aux with the IRQ
// test, i8042_check_mux) and a keyboard probe with nothing attached.
func TestI8042LinuxProbe(t *testing.T) {
	h := newKBCHarness()
	h.flush()
	r, _ := h.command(i8042CmdSelfTest)
	require.Equal(t, byte(i8042SelfTestPassed), r)

	ctr1, _ := h.command(i8042CmdReadRAM)
	ctr2, _ := h.command(i8042CmdReadRAM)
	require.Equal(t, ctr1, ctr2, "stable CTR read")
	require.NotZero(t, h.status()&i8042StrUnlocked, "no keylock warning")
	ctr := (ctr1 | i8042CtrKbdDisable) &^ i8042CtrKbdInt
	h.command(i8042CmdWriteRAM, ctr)

	// i8042_check_aux: AUX loopback must echo.
	r, ok := h.command(i8042CmdWriteAuxOut, 0x5A)
	require.True(t, ok)
	require.Equal(t, byte(0x5A), r)
	// i8042_toggle_aux: the CTR bit follows the commands.
	h.command(i8042CmdWriteRAM, ctr|i8042CtrAuxDisable)
	got, _ := h.command(i8042CmdReadRAM)
	require.NotZero(t, got&i8042CtrAuxDisable)
	h.command(i8042CmdWriteRAM, ctr&^i8042CtrAuxDisable)
	got, _ = h.command(i8042CmdReadRAM)
	require.Zero(t, got&i8042CtrAuxDisable)
	// AUX IRQ delivery test: loopback with AUXINT raises IRQ 12.
	h.command(i8042CmdWriteRAM, ctr&^i8042CtrAuxDisable|i8042CtrAuxInt)
	out8(h.cmd, 0, i8042CmdWriteAuxOut)
	out8(h.data, 0, 0xA5)
	assert.True(t, h.auxIRQ.Level())
	assert.Equal(t, byte(i8042StrOBF|i8042StrAuxData), h.status()&(i8042StrOBF|i8042StrAuxData))
	assert.Equal(t, byte(0xA5), in8(h.data, 0))
	assert.False(t, h.auxIRQ.Level())
	assert.False(t, h.kbdIRQ.Level())

	// i8042_check_mux: an active multiplexer would answer 0xA4 with its
	// version; a plain controller echoes it.
	for _, v := range []byte{0xF0, 0x56, 0xA4} {
		r, _ := h.command(i8042CmdWriteAuxOut, v)
		assert.Equal(t, v, r)
	}

	// atkbd probe with no keyboard: the command byte gets 0xFE at once,
	// flagged as a timeout.
	h.command(i8042CmdWriteRAM, i8042CtrKbdInt|i8042CtrSys)
	out8(h.data, 0, 0xF2) // ATKBD_CMD_GETID
	assert.Equal(t, byte(i8042StrOBF|i8042StrTimeout), h.status()&(i8042StrOBF|i8042StrTimeout|i8042StrAuxData))
	assert.True(t, h.kbdIRQ.Level())
	assert.Equal(t, byte(i8042NoDeviceReply), in8(h.data, 0))
	assert.False(t, h.kbdIRQ.Level())
	assert.Zero(t, h.status()&i8042StrTimeout, "the timeout flag goes with the byte")

	// psmouse probe with no mouse, through 0xD4.
	r, ok = h.command(i8042CmdWriteAux, 0xFF)
	require.True(t, ok)
	assert.Equal(t, byte(i8042NoDeviceReply), r)

	assert.Empty(t, h.power.get())
}

func TestI8042QueuedBytesEachGetAnEdge(t *testing.T) {
	h := newKBCHarness()
	out8(h.cmd, 0, i8042CmdWriteKbdOut)
	out8(h.data, 0, 0x1C)
	out8(h.cmd, 0, i8042CmdWriteKbdOut)
	out8(h.data, 0, 0x9C)
	assert.Equal(t, byte(0x1C), in8(h.data, 0))
	assert.Equal(t, byte(0x9C), in8(h.data, 0))
	assert.Equal(t, 2, h.kbdIRQ.RisingEdges())
	assert.False(t, h.kbdIRQ.Level())
	assert.Equal(t, byte(0x9C), in8(h.data, 0), "an empty buffer reads the last byte")

	// The queue is bounded.
	out8(h.cmd, 0, i8042CmdWriteRAM)
	out8(h.data, 0, 0) // interrupts off
	for range 2 * i8042OutputQueue {
		out8(h.cmd, 0, i8042CmdWriteKbdOut)
		out8(h.data, 0, 0x02)
	}
	assert.Equal(t, i8042OutputQueue, h.flush())
}

func TestI8042Reset(t *testing.T) {
	h := newKBCHarness()
	// Linux reboot=k: kb_wait, then pulse the reset line.
	require.Zero(t, h.status()&i8042StrIBF)
	out8(h.cmd, 0, 0xFE)
	assert.Equal(t, []powerCall{{Reset, "i8042 reset"}}, h.power.get())

	out8(h.cmd, 0, 0xFF) // pulse nothing
	out8(h.cmd, 0, 0xF1) // pulse lines 1-3, not reset
	assert.Len(t, h.power.get(), 1)

	out8(h.cmd, 0, i8042CmdWriteOutput)
	out8(h.data, 0, i8042OutDefault) // reset line high: nothing
	assert.Len(t, h.power.get(), 1)
	r, _ := h.command(i8042CmdReadOutput)
	assert.Equal(t, byte(i8042OutDefault&^i8042OutIRQBits), r&^i8042OutIRQBits)
	out8(h.cmd, 0, i8042CmdWriteOutput)
	out8(h.data, 0, i8042OutDefault&^i8042OutResetN)
	assert.Equal(t, []powerCall{{Reset, "i8042 reset"}, {Reset, "i8042 reset"}}, h.power.get())

	// A 16-bit OUT to 0x64 is two commands; reset still happens once.
	h.cmd.WritePort(0, []byte{0xFE, 0xFE})
	assert.Len(t, h.power.get(), 3)
}

func TestI8042UnknownCommandsAndNilWiring(t *testing.T) {
	c := NewI8042(nil, nil, nil)
	for cmd := range 256 {
		out8(c.CommandPort(), 0, byte(cmd))
		out8(c.DataPort(), 0, byte(cmd))
		in8(c.DataPort(), 0)
	}
	data := []byte{0, 0, 0, 0}
	c.CommandPort().ReadPort(0, data)
	assert.Equal(t, []byte{0xFF, 0xFF, 0xFF}, data[1:])
}

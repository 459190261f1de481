package kvm

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openOrSkip opens /dev/kvm. KVM smoke tests need it; a machine without it
// is reported as a skip naming the reason, never as a pass.
func openOrSkip(t *testing.T) *System {
	t.Helper()
	if _, err := os.Stat(DevicePath); err != nil {
		t.Skipf("KVM smoke test needs %s: %v", DevicePath, err)
	}
	s, err := Open()
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

// realModeGuest sets up a VM with one page of RAM at guestBase holding code,
// and one vCPU in real mode about to execute it.
func realModeGuest(t testing.TB, s *System, code []byte) (*VM, *VCPU) {
	t.Helper()
	const guestBase = 0x1000
	vm, err := s.CreateVM()
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	mem, err := unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Munmap(mem) })
	copy(mem, code)
	require.NoError(t, vm.SetUserMemoryRegion(0, guestBase, mem, 0))
	v, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	sregs, err := v.GetSregs()
	require.NoError(t, err)
	// After reset CS points at the BIOS (base 0xFFFF0000); real mode with a
	// zero base lets RIP address the code directly.
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	require.NoError(t, v.SetSregs(sregs))
	require.NoError(t, v.SetRegs(Regs{RIP: guestBase, RFLAGS: 2}))
	return vm, v
}

func TestSystemBasics(t *testing.T) {
	s := openOrSkip(t)
	assert.Greater(t, s.VCPUMmapSize(), 0)
	assert.NotZero(t, s.CheckExtension(CapUserMemory))
	entries, err := s.SupportedCPUID()
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	var sawLeaf0 bool
	for _, e := range entries {
		if e.Function == 0 {
			sawLeaf0 = true
			assert.NotZero(t, e.EAX, "leaf 0 reports the highest basic leaf")
		}
	}
	assert.True(t, sawLeaf0)
	msrs, err := s.MSRIndexList()
	require.NoError(t, err)
	assert.NotEmpty(t, msrs)
}

func TestOpenMissingDevice(t *testing.T) {
	_, err := OpenPath("/nonexistent/kvm")
	require.ErrorIs(t, err, ErrNoKVM)
}

func TestRealModeOutAndHalt(t *testing.T) {
	s := openOrSkip(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, v := realModeGuest(t, s, []byte{
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xB0, 'K', //        mov al, 'K'
		0xEE, //             out dx, al
		0xF4, //             hlt
	})
	require.NoError(t, v.Run())
	require.Equal(t, ExitIO, v.ExitReason())
	io, err := v.IO()
	require.NoError(t, err)
	assert.True(t, io.Out)
	assert.EqualValues(t, 0x3f8, io.Port)
	assert.Equal(t, 1, io.Size)
	assert.Equal(t, []byte{'K'}, io.Data)

	require.NoError(t, v.Run())
	assert.Equal(t, ExitHLT, v.ExitReason(), "without an in-kernel irqchip HLT exits to userspace")
}

func TestKickInterruptsRun(t *testing.T) {
	s := openOrSkip(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_, v := realModeGuest(t, s, []byte{0xEB, 0xFE}) // jmp $ (spin forever)
	v.BindThread()
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(50 * time.Millisecond)
		v.Kick()
	}()
	err := v.Run()
	<-done
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrInterrupted), "got %v", err)
	assert.True(t, errors.Is(err, unix.EINTR))

	// immediate_exit stays set until cleared: the next Run returns at once.
	err = v.Run()
	assert.ErrorIs(t, err, ErrInterrupted)
	v.ClearImmediateExit()
}

// TestCoalescedPIO: writes to a coalesced port do not exit; they wait in
// the ring, in order, until userspace drains it at the next exit.
func TestCoalescedPIO(t *testing.T) {
	s := openOrSkip(t)
	off := s.CheckExtension(CapCoalescedMMIO)
	if off == 0 || s.CheckExtension(CapCoalescedPIO) == 0 {
		t.Skip("this host's KVM lacks coalesced PIO")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vm, v := realModeGuest(t, s, []byte{
		0xB0, 0x11, //       mov al, 0x11
		0xE6, 0x70, //       out 0x70, al   ; coalesced
		0xB0, 0x22, //       mov al, 0x22
		0xE6, 0x70, //       out 0x70, al   ; coalesced
		0xE6, 0x80, //       out 0x80, al   ; exits
		0xF4, //             hlt
	})
	require.NoError(t, vm.RegisterCoalescedPIO(0x70, 1))
	ring := v.CoalescedRing(off)
	require.NotNil(t, ring)
	require.NoError(t, v.Run())
	require.Equal(t, ExitIO, v.ExitReason())
	io, err := v.IO()
	require.NoError(t, err)
	assert.EqualValues(t, 0x80, io.Port, "the first exit is the uncoalesced port")
	var got []byte
	n := ring.Drain(func(w CoalescedWrite) {
		assert.True(t, w.PIO)
		assert.EqualValues(t, 0x70, w.Addr)
		got = append(got, w.Data...)
	})
	assert.Equal(t, 2, n)
	assert.Equal(t, []byte{0x11, 0x22}, got, "in guest order")
	assert.Zero(t, ring.Drain(func(CoalescedWrite) { t.Fatal("drained twice") }))
}

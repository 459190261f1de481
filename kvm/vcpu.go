package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runHeader is the fixed start of struct kvm_run, the page KVM shares with
// userspace for each vCPU. Exit holds the union describing the last exit.
type runHeader struct {
	RequestInterruptWindow     uint8
	ImmediateExit              uint8
	_                          [6]uint8
	ExitReason                 uint32
	ReadyForInterruptInjection uint8
	IFFlag                     uint8
	Flags                      uint16
	CR8                        uint64
	APICBase                   uint64
	Exit                       [256]byte
}

// VCPU is a KVM virtual CPU fd and its mapped kvm_run area.
//
// All methods except Kick must be called from the goroutine that runs the
// vCPU, which should be locked to its OS thread: KVM ties a vCPU to the
// thread that last ran it, and a vCPU ioctl from another thread would wait
// for KVM_RUN to return.
type VCPU struct {
	fd  int
	id  int
	run []byte
	hdr *runHeader
	tid atomic.Int32 // OS thread running the vCPU, for Kick
}

// ID returns the vCPU's index (its initial APIC ID).
func (v *VCPU) ID() int { return v.id }

// Close unmaps kvm_run and closes the vCPU fd.
func (v *VCPU) Close() error {
	err := unix.Munmap(v.run)
	if cerr := unix.Close(v.fd); err == nil {
		err = cerr
	}
	return err
}

// KickSignal is the signal Kick sends to a vCPU thread to make KVM_RUN
// return EINTR. The Go runtime catches SIGUSR1 and, with no os/signal
// subscriber, does nothing else with it (os/signal package doc), which is
// exactly what is needed: the signal only has to interrupt the ioctl.
const KickSignal = unix.SIGUSR1

// BindThread records the calling OS thread as the one running this vCPU, so
// that Kick can reach it. Call it after runtime.LockOSThread.
func (v *VCPU) BindThread() { v.tid.Store(int32(unix.Gettid())) }

// Kick forces the vCPU out of KVM_RUN soon: it sets kvm_run.immediate_exit,
// so a KVM_RUN that has not started yet returns EINTR at once, and signals
// the vCPU thread, so one that is running (or halted in the kernel) returns
// EINTR too (api.rst, "immediate_exit"). Safe to call from any goroutine.
func (v *VCPU) Kick() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&v.run[0])), v.immediateExitWord())
	if tid := v.tid.Load(); tid != 0 {
		_ = unix.Tgkill(unix.Getpid(), int(tid), KickSignal)
	}
}

// immediateExitWord is the first 32-bit word of kvm_run with
// immediate_exit = 1 and request_interrupt_window unchanged. Writing the
// whole word atomically avoids a torn byte store racing with the kernel.
func (v *VCPU) immediateExitWord() uint32 {
	var b [4]byte
	b[0] = v.hdr.RequestInterruptWindow
	b[1] = 1
	return binary.LittleEndian.Uint32(b[:])
}

// ClearImmediateExit re-arms KVM_RUN after a Kick was handled.
func (v *VCPU) ClearImmediateExit() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&v.run[0])), uint32(v.hdr.RequestInterruptWindow))
}

// ErrInterrupted is returned by Run when KVM_RUN returned EINTR: a signal
// (usually Kick) arrived. It is not a failure; the caller checks why it was
// kicked and either stops or calls Run again.
var ErrInterrupted = errors.New("KVM_RUN interrupted")

// Run enters the guest until the next exit that KVM hands to userspace.
// It returns ErrInterrupted (which wraps EINTR) when kicked, and an error
// naming KVM_RUN for real failures. The exit itself is read with ExitReason
// and the accessors below.
//
// An application processor waiting for INIT/SIPI blocks inside KVM_RUN;
// when the IPIs arrive KVM returns EAGAIN so that userspace can look at the
// new state. govmm has nothing to do there, so Run simply enters again.
func (v *VCPU) Run() error {
	for {
		_, err := ioctl(v.fd, "KVM_RUN", ioctlRun, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			return errors.Join(ErrInterrupted, err)
		case errors.Is(err, unix.EAGAIN):
			continue
		}
		return err
	}
}

// ExitReason returns why the last Run returned.
func (v *VCPU) ExitReason() ExitReason { return ExitReason(v.hdr.ExitReason) }

// IFFlag reports whether the guest had interrupts enabled at the exit.
func (v *VCPU) IFFlag() bool { return v.hdr.IFFlag != 0 }

func (v *VCPU) exitU32(off int) uint32 { return binary.LittleEndian.Uint32(v.hdr.Exit[off:]) }
func (v *VCPU) exitU64(off int) uint64 { return binary.LittleEndian.Uint64(v.hdr.Exit[off:]) }

// IOExit describes a KVM_EXIT_IO: an IN or OUT (possibly REP INS/OUTS) to
// an I/O port that KVM could not handle in the kernel.
type IOExit struct {
	Out  bool   // KVM_EXIT_IO_OUT: the guest wrote
	Size int    // bytes per access: 1, 2 or 4
	Port uint16 // first port
	// Data is the payload inside kvm_run: Count accesses of Size bytes
	// each. For an IN, userspace fills it before the next Run.
	Data  []byte
	Count int
}

// Offsets inside kvm_run's exit union (struct kvm_run in <linux/kvm.h>).
const (
	ioDirectionOff  = 0
	ioSizeOff       = 1
	ioPortOff       = 2
	ioCountOff      = 4
	ioDataOffsetOff = 8

	mmioPhysAddrOff = 0
	mmioDataOff     = 8
	mmioLenOff      = 16
	mmioIsWriteOff  = 20
	mmioMaxLen      = 8

	exitIODirectionOut = 1 // KVM_EXIT_IO_OUT
)

// IO returns the current KVM_EXIT_IO. The layout comes from the kernel, but
// it is still checked against the mapping so that a bad value can never make
// govmm index outside kvm_run.
func (v *VCPU) IO() (IOExit, error) {
	e := IOExit{
		Out:   v.hdr.Exit[ioDirectionOff] == exitIODirectionOut,
		Size:  int(v.hdr.Exit[ioSizeOff]),
		Port:  binary.LittleEndian.Uint16(v.hdr.Exit[ioPortOff:]),
		Count: int(v.exitU32(ioCountOff)),
	}
	off := v.exitU64(ioDataOffsetOff)
	n := uint64(e.Size) * uint64(e.Count)
	if off > uint64(len(v.run)) || n > uint64(len(v.run))-off {
		return e, errorf("KVM_EXIT_IO", "data at %#x+%d outside the kvm_run area", off, n)
	}
	e.Data = v.run[off : off+n]
	return e, nil
}

// MMIOExit describes a KVM_EXIT_MMIO: a load or store to guest-physical
// memory that no memory slot backs.
type MMIOExit struct {
	Addr  uint64
	Write bool
	// Data aliases kvm_run: for a read, userspace fills it before the next
	// Run; for a write it holds the stored bytes.
	Data []byte
}

// MMIO returns the current KVM_EXIT_MMIO.
func (v *VCPU) MMIO() MMIOExit {
	n := int(v.exitU32(mmioLenOff))
	if n > mmioMaxLen {
		n = mmioMaxLen
	}
	return MMIOExit{
		Addr:  v.exitU64(mmioPhysAddrOff),
		Write: v.hdr.Exit[mmioIsWriteOff] != 0,
		Data:  v.hdr.Exit[mmioDataOff : mmioDataOff+n : mmioDataOff+n],
	}
}

// FailEntry returns the hardware reason of a KVM_EXIT_FAIL_ENTRY (the VMX
// exit reason or SVM exit code of the failed VM entry) and the host CPU.
func (v *VCPU) FailEntry() (reason uint64, cpu uint32) { return v.exitU64(0), v.exitU32(8) }

// InternalError returns a KVM_EXIT_INTERNAL_ERROR's suberror and its extra
// data words (at most 16).
func (v *VCPU) InternalError() (suberror uint32, data []uint64) {
	suberror = v.exitU32(0)
	n := v.exitU32(4)
	if n > 16 {
		n = 16
	}
	for i := uint32(0); i < n; i++ {
		data = append(data, v.exitU64(8+8*int(i)))
	}
	return suberror, data
}

// Internal error suberrors (KVM_INTERNAL_ERROR_*).
const (
	InternalErrorEmulation     = 1 // KVM could not emulate an instruction
	InternalErrorSimulEx       = 2 // an exception while delivering another
	InternalErrorDeliveryEvent = 3 // an event could not be delivered
)

// SystemEvent returns a KVM_EXIT_SYSTEM_EVENT's type (SystemEventShutdown,
// SystemEventReset, SystemEventCrash).
func (v *VCPU) SystemEvent() uint32 { return v.exitU32(0) }

// System event types.
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// GetRegs reads the general-purpose registers.
func (v *VCPU) GetRegs() (Regs, error) {
	var r Regs
	err := ioctlPtr(v.fd, "KVM_GET_REGS", ioctlGetRegs, unsafe.Pointer(&r))
	return r, err
}

// SetRegs writes the general-purpose registers.
func (v *VCPU) SetRegs(r Regs) error {
	return ioctlPtr(v.fd, "KVM_SET_REGS", ioctlSetRegs, unsafe.Pointer(&r))
}

// GetSregs reads the special registers.
func (v *VCPU) GetSregs() (Sregs, error) {
	var s Sregs
	err := ioctlPtr(v.fd, "KVM_GET_SREGS", ioctlGetSregs, unsafe.Pointer(&s))
	return s, err
}

// SetSregs writes the special registers.
func (v *VCPU) SetSregs(s Sregs) error {
	return ioctlPtr(v.fd, "KVM_SET_SREGS", ioctlSetSregs, unsafe.Pointer(&s))
}

// GetFPU reads the x87/SSE state.
func (v *VCPU) GetFPU() (FPU, error) {
	var f FPU
	err := ioctlPtr(v.fd, "KVM_GET_FPU", ioctlGetFPU, unsafe.Pointer(&f))
	return f, err
}

// SetFPU writes the x87/SSE state.
func (v *VCPU) SetFPU(f FPU) error {
	return ioctlPtr(v.fd, "KVM_SET_FPU", ioctlSetFPU, unsafe.Pointer(&f))
}

// msrsIoctl passes struct kvm_msrs { u32 nmsrs; u32 pad; entries[] } and
// returns how many entries the kernel processed.
func (v *VCPU) msrsIoctl(op string, req uintptr, entries []MSREntry) (int, error) {
	const headerWords = 1
	entryWords := int(unsafe.Sizeof(MSREntry{}) / 8)
	buf := make([]uint64, headerWords+len(entries)*entryWords)
	*(*uint32)(unsafe.Pointer(&buf[0])) = uint32(len(entries))
	var dst []MSREntry
	if len(entries) > 0 {
		dst = unsafe.Slice((*MSREntry)(unsafe.Pointer(&buf[headerWords])), len(entries))
		copy(dst, entries)
	}
	n, err := ioctl(v.fd, op, req, uintptr(unsafe.Pointer(&buf[0])))
	if err != nil {
		return 0, err
	}
	copy(entries, dst)
	return int(n), nil
}

// SetMSRs writes MSRs. KVM stops at the first MSR it refuses, so a short
// count is an error naming that MSR.
func (v *VCPU) SetMSRs(entries []MSREntry) error {
	n, err := v.msrsIoctl("KVM_SET_MSRS", ioctlSetMSRs, entries)
	if err != nil {
		return err
	}
	if n != len(entries) {
		return &Error{Op: "KVM_SET_MSRS", Err: &RefusedMSRError{Index: entries[n].Index, Count: n}}
	}
	return nil
}

// RefusedMSRError says which MSR KVM_SET_MSRS stopped at: the first Count
// entries were written, entry Count (MSR Index) was refused.
type RefusedMSRError struct {
	Index uint32
	Count int
}

func (e *RefusedMSRError) Error() string {
	return fmt.Sprintf("MSR %#x was refused after %d were set", e.Index, e.Count)
}

// GetMSRs reads the MSRs whose Index fields are set, filling Data.
func (v *VCPU) GetMSRs(entries []MSREntry) error {
	n, err := v.msrsIoctl("KVM_GET_MSRS", ioctlGetMSRs, entries)
	if err != nil {
		return err
	}
	if n != len(entries) {
		return errorf("KVM_GET_MSRS", "MSR %#x could not be read", entries[n].Index)
	}
	return nil
}

// SetCPUID2 sets the CPUID results the guest will see (KVM_SET_CPUID2).
func (v *VCPU) SetCPUID2(entries []CPUIDEntry) error {
	_, err := cpuid2Ioctl(v.fd, "KVM_SET_CPUID2", ioctlSetCPUID2, entries)
	return err
}

// GetLAPIC reads the in-kernel local APIC registers.
func (v *VCPU) GetLAPIC() (LAPICState, error) {
	var l LAPICState
	err := ioctlPtr(v.fd, "KVM_GET_LAPIC", ioctlGetLAPIC, unsafe.Pointer(&l))
	return l, err
}

// SetLAPIC writes the in-kernel local APIC registers.
func (v *VCPU) SetLAPIC(l LAPICState) error {
	return ioctlPtr(v.fd, "KVM_SET_LAPIC", ioctlSetLAPIC, unsafe.Pointer(&l))
}

// GetMPState reads the vCPU's multiprocessing state.
func (v *VCPU) GetMPState() (MPState, error) {
	var s MPState
	err := ioctlPtr(v.fd, "KVM_GET_MP_STATE", ioctlGetMPState, unsafe.Pointer(&s))
	return s, err
}

// SetMPState sets the vCPU's multiprocessing state.
func (v *VCPU) SetMPState(s MPState) error {
	return ioctlPtr(v.fd, "KVM_SET_MP_STATE", ioctlSetMPState, unsafe.Pointer(&s))
}

// GetVCPUEvents reads pending events.
func (v *VCPU) GetVCPUEvents() (VCPUEvents, error) {
	var e VCPUEvents
	err := ioctlPtr(v.fd, "KVM_GET_VCPU_EVENTS", ioctlGetVCPUEvents, unsafe.Pointer(&e))
	return e, err
}

// SetVCPUEvents writes pending events.
func (v *VCPU) SetVCPUEvents(e VCPUEvents) error {
	return ioctlPtr(v.fd, "KVM_SET_VCPU_EVENTS", ioctlSetVCPUEvents, unsafe.Pointer(&e))
}

// SetGuestDebug configures single-stepping and hardware breakpoints.
func (v *VCPU) SetGuestDebug(d GuestDebug) error {
	return ioctlPtr(v.fd, "KVM_SET_GUEST_DEBUG", ioctlSetGuestDebug, unsafe.Pointer(&d))
}

// Translate translates a guest-virtual address with the vCPU's current
// page tables (KVM_TRANSLATE).
func (v *VCPU) Translate(gva uint64) (Translation, error) {
	t := Translation{LinearAddress: gva}
	err := ioctlPtr(v.fd, "KVM_TRANSLATE", ioctlTranslate, unsafe.Pointer(&t))
	return t, err
}

package machine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/govmm/govmm/kvm"
)

// Local APIC register offsets and LVT delivery modes (Intel SDM Vol. 3A
// §11.5.1, Figure 11-8).
const (
	lapicLVT0         = 0x350 // LVT LINT0
	lapicLVT1         = 0x360 // LVT LINT1
	lvtDeliveryShift  = 8
	lvtDeliveryMask   = 0x7 << lvtDeliveryShift
	lvtDeliveryNMI    = 0x4 << lvtDeliveryShift
	lvtDeliveryExtINT = 0x7 << lvtDeliveryShift
	lvtMasked         = 1 << 16
)

// Default x87/SSE control words after FNINIT and at power-up (Intel SDM
// Vol. 1 §8.1.5 and §10.2.3.1): all exceptions masked, round to nearest.
const (
	fpuControlWordDefault = 0x37F
	mxcsrDefault          = 0x1F80
)

// vcpu is one virtual CPU and the goroutine that runs it.
type vcpu struct {
	*kvm.VCPU
	m *Machine

	// halted is set by the vCPU goroutine when a halt check finds it
	// unable to ever run again without outside help: halted with
	// interrupts disabled, or an application processor never started.
	// checkGen is the halt-check generation that state belongs to.
	halted   atomic.Bool
	checkGen atomic.Uint64
	// round is the last haltedTogether round this vCPU joined; only its
	// goroutine touches it.
	round *haltRound
	// inspectedGen is the last InspectVCPUs request this vCPU answered;
	// only its goroutine touches it.
	inspectedGen uint64

	// rec holds this vCPU's exit statistics; only its goroutine
	// touches it while the machine runs.
	rec *exitRecorder
}

// setLINT programs LINT0 as ExtINT on the bootstrap processor (the 8259
// PIC's output reaches the CPU through it: "virtual wire mode", Intel MP
// spec §3.6.2.2) and LINT1 as NMI on every CPU, which is how PC firmware
// hands the local APICs over.
func (v *vcpu) setLINT(bsp bool) error {
	st, err := v.GetLAPIC()
	if err != nil {
		return err
	}
	set := func(off int, mode uint32) {
		val := binary.LittleEndian.Uint32(st.Regs[off:])
		binary.LittleEndian.PutUint32(st.Regs[off:], val&^(lvtDeliveryMask|lvtMasked)|mode)
	}
	if bsp {
		set(lapicLVT0, lvtDeliveryExtINT)
	}
	set(lapicLVT1, lvtDeliveryNMI)
	return v.SetLAPIC(st)
}

// run is the vCPU goroutine: the userspace half of the VM exit loop. It
// enters the guest with KVM_RUN, handles the exit that KVM could not
// handle in the kernel, and goes back in, until the machine stops.
func (v *vcpu) run() {
	// KVM ties a vCPU to a host thread; Go goroutines migrate between
	// threads, so the goroutine is pinned for its whole life. The thread
	// is never unlocked: it exits with the goroutine.
	runtime.LockOSThread()
	v.BindThread()
	defer v.m.vcpuWG.Done()
	for !v.m.stopping.Load() {
		// With a debugger, the vCPU waits here while the machine is
		// stopped for it.
		if d := v.m.debugger; d != nil && !d.gate(v) {
			return
		}
		entered := time.Now()
		err := v.Run()
		exited := time.Now()
		v.rec.inGuest += exited.Sub(entered)
		// Writes KVM coalesced while the guest ran happened before this
		// exit, so they are replayed before it is handled.
		v.m.drainCoalesced()
		if errors.Is(err, kvm.ErrInterrupted) {
			// Kicked: the machine is stopping (checked by the loop
			// condition), the halt watchdog wants a status, or
			// InspectVCPUs a description.
			v.ClearImmediateExit()
			v.reportHaltState()
			v.joinHaltRound()
			v.answerInspect()
			continue
		}
		if err != nil {
			v.m.fail(fmt.Errorf("vCPU %d: %w", v.ID(), err))
			return
		}
		reason := v.ExitReason()
		var ev exitEvent
		keep := v.handleExit(reason, &ev)
		v.rec.exit(reason, &ev, time.Since(exited))
		if t := v.m.tracer; t != nil {
			t.record(v.ID(), exited, reason, &ev)
		}
		if !keep {
			return
		}
	}
}

// handleExit handles one exit, describes it in ev, and reports whether to
// keep running.
func (v *vcpu) handleExit(reason kvm.ExitReason, ev *exitEvent) bool {
	m := v.m
	switch reason {
	case kvm.ExitIO:
		io, err := v.IO()
		if err != nil {
			m.fail(fmt.Errorf("vCPU %d: %w", v.ID(), err))
			return false
		}
		*ev = exitEvent{kind: eventIO, write: io.Out, port: io.Port, size: io.Size, count: io.Count, data: io.Data}
		// A REP INS/OUTS arrives as Count accesses packed in Data.
		for i := 0; i < io.Count; i++ {
			d := io.Data[i*io.Size : (i+1)*io.Size]
			if io.Out {
				m.ports.Write(io.Port, d)
			} else {
				m.ports.Read(io.Port, d)
			}
		}
	case kvm.ExitMMIO:
		mmio := v.MMIO()
		*ev = exitEvent{kind: eventMMIO, write: mmio.Write, addr: mmio.Addr, size: len(mmio.Data), data: mmio.Data}
		if mmio.Write {
			m.mmio.Write(mmio.Addr, mmio.Data)
		} else {
			m.mmio.Read(mmio.Addr, mmio.Data)
		}
	case kvm.ExitHLT:
		// Only without an in-kernel irqchip does HLT come to userspace;
		// govmm always has one, so this is a guest that stopped for good.
		m.finish(Result{Reason: Halted, Detail: fmt.Sprintf("vCPU %d executed HLT", v.ID())})
		return false
	case kvm.ExitShutdown:
		// A triple fault: the CPU shuts down, and on a PC the chipset
		// turns that into a reset (Intel SDM Vol. 3A §6.15, "Interrupt
		// 8—Double Fault Exception", and the chipset's shutdown cycle).
		// Linux triple-faults on purpose as its last reboot method
		// (reboot=t), but a guest that crashes that hard ends the same
		// way, so the state it died in is kept for --log-level info.
		m.log.Info("triple fault", "vcpu", v.ID(), "registers", v.dump())
		m.finish(Result{Reason: Reset, Detail: "triple fault (KVM_EXIT_SHUTDOWN)"})
		return false
	case kvm.ExitSystemEvent:
		switch t := v.SystemEvent(); t {
		case kvm.SystemEventShutdown:
			m.finish(Result{Reason: PowerOff, Detail: "KVM system event: shutdown"})
		case kvm.SystemEventReset:
			m.finish(Result{Reason: Reset, Detail: "KVM system event: reset"})
		default:
			m.fail(fmt.Errorf("vCPU %d: KVM system event %d (crash)\n%s", v.ID(), t, v.dump()))
		}
		return false
	case kvm.ExitDebug:
		if m.debugger == nil {
			m.fail(fmt.Errorf("vCPU %d: %v without a debugger\n%s", v.ID(), reason, v.dump()))
			return false
		}
		return m.debugger.debugExit(v)
	case kvm.ExitIntr:
		// A signal arrived just as the guest exited; nothing to do.
	case kvm.ExitFailEntry:
		hw, cpu := v.FailEntry()
		m.fail(fmt.Errorf("vCPU %d: %v: hardware entry failure reason %#x on host CPU %d\n%s",
			v.ID(), reason, hw, cpu, v.dump()))
		return false
	case kvm.ExitInternalError:
		sub, data := v.InternalError()
		m.fail(fmt.Errorf("vCPU %d: %v: %s (suberror %d, data %#x)\n%s",
			v.ID(), reason, internalErrorName(sub), sub, data, v.dump()))
		return false
	default:
		m.fail(fmt.Errorf("vCPU %d: unexpected exit %v\n%s", v.ID(), reason, v.dump()))
		return false
	}
	return true
}

func internalErrorName(sub uint32) string {
	switch sub {
	case kvm.InternalErrorEmulation:
		return "KVM could not emulate an instruction"
	case kvm.InternalErrorSimulEx:
		return "exception while delivering an exception"
	case kvm.InternalErrorDeliveryEvent:
		return "could not deliver an event"
	}
	return "internal error"
}

// reportHaltState answers the halt watchdog: it records whether this vCPU
// can never run again by itself (stoppedForGood), as of this moment.
func (v *vcpu) reportHaltState() {
	gen := v.m.haltCheckGen.Load()
	if v.checkGen.Load() == gen {
		return
	}
	v.halted.Store(v.stoppedForGood())
	v.checkGen.Store(gen)
}

// dump formats the vCPU's registers for an error report.
func (v *vcpu) dump() string {
	var b strings.Builder
	r, err := v.GetRegs()
	if err != nil {
		return "registers unavailable: " + err.Error()
	}
	s, err := v.GetSregs()
	if err != nil {
		return "special registers unavailable: " + err.Error()
	}
	fmt.Fprintf(&b, "  RIP=%016x RFLAGS=%016x RSP=%016x RBP=%016x\n", r.RIP, r.RFLAGS, r.RSP, r.RBP)
	fmt.Fprintf(&b, "  RAX=%016x RBX=%016x RCX=%016x RDX=%016x\n", r.RAX, r.RBX, r.RCX, r.RDX)
	fmt.Fprintf(&b, "  RSI=%016x RDI=%016x R8 =%016x R9 =%016x\n", r.RSI, r.RDI, r.R8, r.R9)
	fmt.Fprintf(&b, "  R10=%016x R11=%016x R12=%016x R13=%016x\n", r.R10, r.R11, r.R12, r.R13)
	fmt.Fprintf(&b, "  R14=%016x R15=%016x\n", r.R14, r.R15)
	fmt.Fprintf(&b, "  CR0=%016x CR2=%016x CR3=%016x CR4=%016x EFER=%016x\n", s.CR0, s.CR2, s.CR3, s.CR4, s.EFER)
	seg := func(name string, g kvm.Segment) {
		fmt.Fprintf(&b, "  %-3s sel=%04x base=%016x limit=%08x type=%x dpl=%d l=%d db=%d\n",
			name, g.Selector, g.Base, g.Limit, g.Type, g.DPL, g.L, g.DB)
	}
	seg("CS", s.CS)
	seg("SS", s.SS)
	seg("DS", s.DS)
	seg("TR", s.TR)
	fmt.Fprintf(&b, "  GDT=%016x/%04x IDT=%016x/%04x", s.GDT.Base, s.GDT.Limit, s.IDT.Base, s.IDT.Limit)
	return b.String()
}

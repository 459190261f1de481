package machine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/govmm/govmm/gdbstub"
	"github.com/govmm/govmm/kvm"
	"github.com/govmm/govmm/machine/memory"
)

// debugger is the machine as gdbstub sees it (gdbstub.Target). With a
// debugger, every vCPU passes through gate before each KVM_RUN: there it
// parks while the debugger holds the machine stopped, runs the debugger's
// register and memory requests on its own thread (the kvm package wants
// vCPU ioctls there), and applies the debug setup of the current run with
// KVM_SET_GUEST_DEBUG. The machine starts stopped, so that GDB can set
// breakpoints before the first instruction.
type debugger struct {
	m        *Machine
	stops    chan gdbstub.StopEvent
	blockIRQ bool          // KVM accepts KVM_GUESTDBG_BLOCKIRQ
	reqs     []chan func() // per vCPU: work for its parked goroutine

	mu       sync.Mutex
	halt     bool          // vCPUs must park
	reported bool          // the current run's StopEvent was sent
	dbg      gdbstub.Debug // the current run's setup
	gen      uint64        // bumped by each Resume
	applied  []uint64      // per vCPU: the gen whose setup it runs with
	wake     chan struct{} // closed to make parked vCPUs look again
}

var errMachineEnded = errors.New("the machine has ended")

func newDebugger(m *Machine) *debugger {
	d := &debugger{
		m:        m,
		stops:    make(chan gdbstub.StopEvent, 1),
		blockIRQ: m.sys.CheckExtension(kvm.CapSetGuestDebug2)&gdbstub.GuestDbgBlockIRQ != 0,
		halt:     true,
		reported: true, // the stub knows the machine starts stopped
		dbg:      gdbstub.Debug{Step: gdbstub.NoStep},
		applied:  make([]uint64, len(m.vcpus)),
		wake:     make(chan struct{}),
	}
	for range m.vcpus {
		d.reqs = append(d.reqs, make(chan func()))
	}
	return d
}

// Debugger returns the machine's gdbstub.Target, or nil when Config.Debug
// is off.
func (m *Machine) Debugger() gdbstub.Target {
	if m.debugger == nil {
		return nil
	}
	return m.debugger
}

// gate is called by vCPU v before each KVM_RUN. It returns false when the
// machine is ending.
func (d *debugger) gate(v *vcpu) bool {
	id := v.ID()
	for {
		d.mu.Lock()
		if d.m.stopping.Load() {
			d.mu.Unlock()
			return false
		}
		if d.halt && !d.reported {
			// Interrupt asked for a stop; the first vCPU to arrive
			// reports it.
			d.reported = true
			d.send(gdbstub.StopEvent{CPU: id, Reason: gdbstub.StopInterrupted})
		}
		if !d.halt && d.dbg.Runs(id) {
			var apply *gdbstub.Debug
			if d.applied[id] != d.gen {
				d.applied[id] = d.gen
				dbg := d.dbg
				apply = &dbg
			}
			d.mu.Unlock()
			if apply != nil {
				control, regs := apply.GuestDebug(id, d.blockIRQ)
				if err := v.SetGuestDebug(kvm.GuestDebug{Control: control, DebugReg: regs}); err != nil {
					d.m.fail(fmt.Errorf("vCPU %d: %w", id, err))
					return false
				}
			}
			return true
		}
		wake := d.wake
		d.mu.Unlock()
		select {
		case f := <-d.reqs[id]:
			f()
		case <-wake:
		case <-d.m.done:
			return false
		}
	}
}

// send queues a StopEvent; the lock is held. There is at most one per
// run, and the channel holds one.
func (d *debugger) send(ev gdbstub.StopEvent) {
	select {
	case d.stops <- ev:
	default:
	}
}

// stop ends the current run with ev, unless another stop came first: all
// vCPUs are kicked out of KVM_RUN and park at their gates.
func (d *debugger) stop(ev gdbstub.StopEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reported {
		return
	}
	d.reported = true
	d.halt = true
	d.send(ev)
	for _, v := range d.m.vcpus {
		v.Kick()
	}
}

// exited tells a debugger waiting for a stop that the machine ended.
func (d *debugger) exited(r Result) {
	status := uint8(0)
	if r.Reason == Failed {
		status = 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.reported {
		d.reported = true
		d.send(gdbstub.StopEvent{Reason: gdbstub.StopExited, Status: status})
	}
}

// debugExit handles a KVM_EXIT_DEBUG on vCPU v and reports whether to keep
// running.
func (d *debugger) debugExit(v *vcpu) bool {
	e := v.DebugExit()
	d.mu.Lock()
	ev, ours := d.dbg.Classify(v.ID(), e.Exception, e.PC, e.DR6)
	dbg := d.dbg
	d.mu.Unlock()
	if ours {
		d.stop(ev)
		return true
	}
	inject := uint32(gdbstub.GuestDbgInjectDB)
	if e.Exception == gdbstub.VectorBP {
		if !v.int3At(e.PC) {
			// The debugger took its int3 out while this vCPU was on
			// its way here: run the restored instruction.
			return true
		}
		inject = gdbstub.GuestDbgInjectBP
	}
	// The guest's own #BP or #DB (Linux patches its code with int3s):
	// hand it back to the guest.
	control, regs := dbg.GuestDebug(v.ID(), d.blockIRQ)
	if err := v.SetGuestDebug(kvm.GuestDebug{Control: control | inject, DebugReg: regs}); err != nil {
		d.m.fail(fmt.Errorf("vCPU %d: reinjecting exception %d: %w", v.ID(), e.Exception, err))
		return false
	}
	return true
}

// int3At reports whether the guest has an int3 at linear address pc.
func (v *vcpu) int3At(pc uint64) bool {
	var b [1]byte
	n, _ := v.accessVirtual(pc, b[:], false)
	return n == 1 && b[0] == int3Opcode
}

const int3Opcode = 0xCC

// onVCPU runs f on vCPU cpu's goroutine, parked at its gate, and waits.
func (d *debugger) onVCPU(cpu int, f func(v *vcpu) error) error {
	if cpu < 0 || cpu >= len(d.m.vcpus) {
		return fmt.Errorf("no vCPU %d", cpu)
	}
	v := d.m.vcpus[cpu]
	done := make(chan error, 1)
	select {
	case d.reqs[cpu] <- func() { done <- f(v) }:
	case <-d.m.done:
		return errMachineEnded
	}
	select {
	case err := <-done:
		return err
	case <-d.m.done:
		return errMachineEnded
	}
}

// accessVirtual reads or writes guest-virtual memory as this vCPU sees it,
// one page at a time: KVM_TRANSLATE walks the vCPU's page tables (or
// returns the address itself with paging off), then the bytes are copied
// in guest RAM directly, ignoring page protections. It stops at the first
// page that is not mapped, or not RAM.
func (v *vcpu) accessVirtual(addr uint64, p []byte, write bool) (int, error) {
	n := 0
	for n < len(p) {
		va := addr + uint64(n)
		t, err := v.Translate(va)
		if err != nil {
			return n, err
		}
		if t.Valid == 0 {
			return n, fmt.Errorf("guest-virtual address %#x is not mapped", va)
		}
		chunk := min(len(p)-n, memory.PageSize-int(va%memory.PageSize))
		host, err := v.m.mem.Slice(t.PhysicalAddress, uint64(chunk))
		if err != nil {
			return n, err
		}
		if write {
			copy(host, p[n:n+chunk])
		} else {
			copy(p[n:n+chunk], host)
		}
		n += chunk
	}
	return n, nil
}

// The gdbstub.Target methods.

func (d *debugger) NumCPUs() int { return len(d.m.vcpus) }

func (d *debugger) Stops() <-chan gdbstub.StopEvent { return d.stops }

func (d *debugger) Resume(dbg gdbstub.Debug) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dbg = dbg
	d.gen++
	d.halt = false
	d.reported = false
	close(d.wake)
	d.wake = make(chan struct{})
	return nil
}

func (d *debugger) Interrupt() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halt {
		return
	}
	d.halt = true
	// Running vCPUs leave KVM_RUN; parked ones (during a step) look
	// again. The first to reach its gate reports the stop.
	for _, v := range d.m.vcpus {
		v.Kick()
	}
	close(d.wake)
	d.wake = make(chan struct{})
}

func (d *debugger) Kill() { d.m.finish(Result{Reason: Stopped, Detail: "killed by the debugger"}) }

func (d *debugger) ReadMemory(cpu int, addr uint64, p []byte) (n int, err error) {
	err = d.onVCPU(cpu, func(v *vcpu) error {
		var aerr error
		n, aerr = v.accessVirtual(addr, p, false)
		return aerr
	})
	return n, err
}

func (d *debugger) WriteMemory(cpu int, addr uint64, p []byte) (n int, err error) {
	err = d.onVCPU(cpu, func(v *vcpu) error {
		var aerr error
		n, aerr = v.accessVirtual(addr, p, true)
		return aerr
	})
	return n, err
}

// x87 last instruction and operand pointers: FXSAVE's 64-bit FPU IP and
// DP, which GDB shows as fiseg:fioff and foseg:fooff (high and low halves).
const halfShift = 32

func (d *debugger) ReadRegisters(cpu int, r *gdbstub.Registers) error {
	return d.onVCPU(cpu, func(v *vcpu) error {
		g, err := v.GetRegs()
		if err != nil {
			return err
		}
		s, err := v.GetSregs()
		if err != nil {
			return err
		}
		f, err := v.GetFPU()
		if err != nil {
			return err
		}
		*r = gdbstub.Registers{
			RAX: g.RAX, RBX: g.RBX, RCX: g.RCX, RDX: g.RDX,
			RSI: g.RSI, RDI: g.RDI, RBP: g.RBP, RSP: g.RSP,
			R8: g.R8, R9: g.R9, R10: g.R10, R11: g.R11,
			R12: g.R12, R13: g.R13, R14: g.R14, R15: g.R15,
			RIP: g.RIP, EFLAGS: uint32(g.RFLAGS),
			CS: uint32(s.CS.Selector), SS: uint32(s.SS.Selector), DS: uint32(s.DS.Selector),
			ES: uint32(s.ES.Selector), FS: uint32(s.FS.Selector), GS: uint32(s.GS.Selector),
			FCTRL: uint32(f.FCW), FSTAT: uint32(f.FSW),
			FIOFF: uint32(f.LastIP), FISEG: uint32(f.LastIP >> halfShift),
			FOOFF: uint32(f.LastDP), FOSEG: uint32(f.LastDP >> halfShift),
			FOP: uint32(f.LastOpcode), MXCSR: f.MXCSR, XMM: f.XMM,
			FSBase: s.FS.Base, GSBase: s.GS.Base,
			CR0: s.CR0, CR2: s.CR2, CR3: s.CR3, CR4: s.CR4, CR8: s.CR8, EFER: s.EFER,
		}
		for i := range r.ST {
			copy(r.ST[i][:], f.FPR[i][:])
		}
		r.FTAG = uint32(gdbstub.FullTagWord(f.FTWX, f.FSW, r.ST))
		return nil
	})
}

// WriteRegisters sets what GDB may change: the general registers, RIP,
// the low half of RFLAGS, the x87/SSE state, the FS and GS bases and the
// control registers. Segment selectors are not written: loading one means
// loading its descriptor, which the g packet does not carry.
func (d *debugger) WriteRegisters(cpu int, r *gdbstub.Registers) error {
	return d.onVCPU(cpu, func(v *vcpu) error {
		g, err := v.GetRegs()
		if err != nil {
			return err
		}
		g.RAX, g.RBX, g.RCX, g.RDX = r.RAX, r.RBX, r.RCX, r.RDX
		g.RSI, g.RDI, g.RBP, g.RSP = r.RSI, r.RDI, r.RBP, r.RSP
		g.R8, g.R9, g.R10, g.R11 = r.R8, r.R9, r.R10, r.R11
		g.R12, g.R13, g.R14, g.R15 = r.R12, r.R13, r.R14, r.R15
		g.RIP = r.RIP
		g.RFLAGS = g.RFLAGS>>halfShift<<halfShift | uint64(r.EFLAGS)
		if err := v.SetRegs(g); err != nil {
			return err
		}
		f, err := v.GetFPU()
		if err != nil {
			return err
		}
		for i := range r.ST {
			copy(f.FPR[i][:], r.ST[i][:])
		}
		f.FCW, f.FSW = uint16(r.FCTRL), uint16(r.FSTAT)
		f.FTWX = gdbstub.AbridgedTag(uint16(r.FTAG))
		f.LastIP = uint64(r.FISEG)<<halfShift | uint64(r.FIOFF)
		f.LastDP = uint64(r.FOSEG)<<halfShift | uint64(r.FOOFF)
		f.LastOpcode = uint16(r.FOP)
		f.XMM, f.MXCSR = r.XMM, r.MXCSR
		if err := v.SetFPU(f); err != nil {
			return err
		}
		s, err := v.GetSregs()
		if err != nil {
			return err
		}
		old := s
		s.FS.Base, s.GS.Base = r.FSBase, r.GSBase
		s.CR0, s.CR2, s.CR3, s.CR4, s.CR8, s.EFER = r.CR0, r.CR2, r.CR3, r.CR4, r.CR8, r.EFER
		if s != old {
			return v.SetSregs(s)
		}
		return nil
	})
}

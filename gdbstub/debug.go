package gdbstub

import (
	"errors"
	"fmt"
	"slices"
)

// KVM_SET_GUEST_DEBUG takes struct kvm_guest_debug { __u32 control; __u32
// pad; struct kvm_guest_debug_arch arch; }, where on x86 arch is
// { __u64 debugreg[8]; } (<linux/kvm.h>, <asm/kvm.h>; api.rst
// "KVM_SET_GUEST_DEBUG"). These are the control flags.
const (
	// GuestDbgEnable turns guest debugging on; without it the other flags
	// are ignored and KVM leaves #DB and #BP to the guest.
	GuestDbgEnable = 0x00000001 // KVM_GUESTDBG_ENABLE
	// GuestDbgSingleStep makes the vCPU exit with KVM_EXIT_DEBUG after one
	// instruction (KVM sets RFLAGS.TF behind the guest's back).
	GuestDbgSingleStep = 0x00000002 // KVM_GUESTDBG_SINGLESTEP
	// GuestDbgUseSWBP makes an int3 (#BP) in the guest exit to userspace
	// instead of being delivered to the guest.
	GuestDbgUseSWBP = 0x00010000 // KVM_GUESTDBG_USE_SW_BP
	// GuestDbgUseHWBP loads debugreg[0..3] and debugreg[7] into the real
	// DR0-DR3 and DR7 while the guest runs; matches exit with
	// KVM_EXIT_DEBUG. The guest's own debug registers are shadowed.
	GuestDbgUseHWBP = 0x00020000 // KVM_GUESTDBG_USE_HW_BP
	// GuestDbgInjectDB and GuestDbgInjectBP queue a #DB or #BP into the
	// guest: how the VMM hands back an exception that was the guest's own,
	// not the debugger's.
	GuestDbgInjectDB = 0x00040000 // KVM_GUESTDBG_INJECT_DB
	GuestDbgInjectBP = 0x00080000 // KVM_GUESTDBG_INJECT_BP
	// GuestDbgBlockIRQ keeps interrupts from being injected while single
	// stepping, so that a step lands on the next instruction and not in
	// the timer interrupt handler. Only valid where KVM_CAP_SET_GUEST_DEBUG2
	// lists it (Linux 5.15 and later).
	GuestDbgBlockIRQ = 0x00100000 // KVM_GUESTDBG_BLOCKIRQ
)

// Indices into kvm_guest_debug_arch.debugreg: DR0-DR3 at 0-3 (the
// breakpoint addresses), 4 and 5 unused (DR4/DR5 only alias DR6/DR7),
// DR6 at 6 (ignored by KVM_SET_GUEST_DEBUG) and DR7 at 7.
const (
	DebugRegDR7  = 7
	NumDebugRegs = 4 // DR0-DR3: x86 has four hardware breakpoints
	numDebugRegs = 8 // length of kvm_guest_debug_arch.debugreg
)

// KVM_EXIT_DEBUG fills struct kvm_debug_exit_arch { __u32 exception; __u32
// pad; __u64 pc; __u64 dr6; __u64 dr7; } (<asm/kvm.h>). exception is the
// x86 vector that was intercepted; pc is the linear address of the
// instruction: for #BP the int3 itself (KVM intercepts the exception
// before the guest sees it, so RIP has not moved past it), for #DB the
// next instruction to execute.
const (
	VectorDB = 1 // #DB, debug exception: single step, DR0-DR3 matches
	VectorBP = 3 // #BP, breakpoint exception: int3
)

// int3 is the one-byte breakpoint instruction, opcode 0xCC (SDM Vol. 2A,
// "INT n/INTO/INT3/INT1"). It raises #BP.
const int3 = 0xCC

// DR6 is the debug status register (SDM Vol. 3B §18.2.3 "Debug Status
// Register (DR6)"): B0-B3 say which of DR0-DR3 matched, BS that the #DB
// came from single-stepping (RFLAGS.TF).
const (
	dr6B0         = 1 << 0  // B0; B1-B3 follow at bits 1-3
	dr6SingleStep = 1 << 14 // BS
)

// DR7 is the debug control register (SDM Vol. 3B §18.2.4 "Debug Control
// Register (DR7)"):
//
//	bit 0+2n   Ln    local enable of breakpoint n (cleared on task switch)
//	bit 1+2n   Gn    global enable of breakpoint n
//	bit 8, 9   LE GE "exact breakpoint": recommended for data breakpoints
//	bit 10           reserved, reads as 1
//	bits 16+4n R/Wn  00 execute, 01 data write, 10 I/O, 11 data read/write
//	bits 18+4n LENn  00 1 byte, 01 2 bytes, 10 8 bytes, 11 4 bytes
//
// govmm sets the G bits (the guest's task switches must not clear them)
// and GE, as QEMU does.
const (
	dr7GlobalEnableShift = 1 // Gn is bit 2n+1
	dr7EnableStride      = 2
	dr7GE                = 1 << 9
	dr7Reserved1         = 1 << 10
	dr7RWShift           = 16 // R/Wn is bits 16+4n..17+4n
	dr7LenShift          = 18 // LENn is bits 18+4n..19+4n
	dr7FieldStride       = 4

	dr7RWExecute   = 0b00
	dr7RWWrite     = 0b01
	dr7RWReadWrite = 0b11

	dr7Len1 = 0b00
	dr7Len2 = 0b01
	dr7Len8 = 0b10 // 8 bytes in IA-32e mode, undefined outside it (SDM §18.2.4)
	dr7Len4 = 0b11
)

// BreakType is a kind of breakpoint, numbered as in GDB's Z and z packets
// (RSP "Packets", "z type,addr,kind").
type BreakType int

const (
	BreakSW     BreakType = 0 // Z0: software breakpoint (int3)
	BreakHW     BreakType = 1 // Z1: hardware instruction breakpoint
	BreakWrite  BreakType = 2 // Z2: write watchpoint
	BreakRead   BreakType = 3 // Z3: read watchpoint (x86 has none: unsupported)
	BreakAccess BreakType = 4 // Z4: access (read or write) watchpoint
)

func (t BreakType) String() string {
	switch t {
	case BreakSW:
		return "software breakpoint"
	case BreakHW:
		return "hardware breakpoint"
	case BreakWrite:
		return "write watchpoint"
	case BreakRead:
		return "read watchpoint"
	case BreakAccess:
		return "access watchpoint"
	}
	return fmt.Sprintf("breakpoint type %d", int(t))
}

// HWBreakpoint is what one debug register (DR0-DR3) watches. A slot with
// Len 0 is free.
type HWBreakpoint struct {
	// Type is BreakHW for an instruction breakpoint, BreakWrite or
	// BreakAccess for a watchpoint, or BreakSW for a software breakpoint
	// the stub placed in a debug register because its address could not
	// be written (see Server).
	Type BreakType
	Addr uint64 // linear address
	Len  uint64 // 1 for instructions; 1, 2, 4 or 8 for data, Addr aligned to it
}

// Active reports whether the slot is in use.
func (b HWBreakpoint) Active() bool { return b.Len != 0 }

// isExec reports whether the slot matches instruction fetches.
func (b HWBreakpoint) isExec() bool { return b.Type == BreakSW || b.Type == BreakHW }

// EncodeDR7 computes DR7 for the four debug-register slots (SDM Vol. 3B
// §18.2.4): slot n is enabled with Gn, its R/Wn and LENn fields say what
// and how much it watches. An instruction breakpoint must have LEN 00
// (one byte) and a data breakpoint must be aligned to its length (§18.2.5
// "Breakpoint Field Recognition"); anything else is an error. With no
// active slot the result is 0: DR7 fully off.
func EncodeDR7(slots [NumDebugRegs]HWBreakpoint) (uint64, error) {
	var dr7 uint64
	for n, b := range slots {
		if !b.Active() {
			continue
		}
		var rw, length uint64
		switch b.Type {
		case BreakSW, BreakHW:
			if b.Len != 1 {
				return 0, fmt.Errorf("DR%d: an instruction breakpoint is 1 byte, not %d", n, b.Len)
			}
			rw, length = dr7RWExecute, dr7Len1
		case BreakWrite, BreakAccess:
			rw = dr7RWWrite
			if b.Type == BreakAccess {
				rw = dr7RWReadWrite
			}
			switch b.Len {
			case 1:
				length = dr7Len1
			case 2:
				length = dr7Len2
			case 4:
				length = dr7Len4
			case 8:
				length = dr7Len8
			default:
				return 0, fmt.Errorf("DR%d: a data breakpoint covers 1, 2, 4 or 8 bytes, not %d", n, b.Len)
			}
			if b.Addr%b.Len != 0 {
				return 0, fmt.Errorf("DR%d: address %#x is not aligned to its length %d", n, b.Addr, b.Len)
			}
		default:
			return 0, fmt.Errorf("DR%d: x86 debug registers cannot implement a %v", n, b.Type)
		}
		dr7 |= 1 << (dr7GlobalEnableShift + dr7EnableStride*n)
		dr7 |= rw << (dr7RWShift + dr7FieldStride*n)
		dr7 |= length << (dr7LenShift + dr7FieldStride*n)
	}
	if dr7 != 0 {
		dr7 |= dr7GE | dr7Reserved1
	}
	return dr7, nil
}

// NoStep is Debug.Step when no vCPU single-steps.
const NoStep = -1

// Debug is what the debugger wants from the vCPUs until the next stop. The
// stub hands one to Target.Resume; the machine applies it with
// KVM_SET_GUEST_DEBUG on each vCPU (GuestDebug), and uses Classify to
// decide whether a KVM_EXIT_DEBUG is the debugger's.
type Debug struct {
	// Step is the vCPU to single-step, or NoStep. While one vCPU steps
	// the others stay stopped (what GDB calls scheduler locking): a step
	// is one instruction of that vCPU and nothing else.
	Step int
	// SW lists, sorted, the addresses where the stub planted an int3.
	SW []uint64
	// HW is the contents of DR0-DR3.
	HW [NumDebugRegs]HWBreakpoint
}

// Runs reports whether vCPU cpu runs under this setup.
func (d *Debug) Runs(cpu int) bool { return d.Step == NoStep || d.Step == cpu }

// Idle reports whether the setup debugs nothing: no breakpoint, no step.
// The guest then runs exactly as without a debugger.
func (d *Debug) Idle() bool {
	if d.Step != NoStep || len(d.SW) > 0 {
		return false
	}
	for _, b := range d.HW {
		if b.Active() {
			return false
		}
	}
	return true
}

// GuestDebug returns struct kvm_guest_debug's control and debugreg for
// vCPU cpu. blockIRQ adds GuestDbgBlockIRQ to a single step; pass it only
// when KVM_CAP_SET_GUEST_DEBUG2 reports that flag.
//
// int3 exits are asked for (GuestDbgUseSWBP) only while the stub has
// planted some, so that a guest's own int3s (Linux uses them to patch its
// code: text_poke_bp) cost nothing otherwise. The slots must be valid for
// EncodeDR7; invalid ones were refused when GDB asked for them, so here
// they only turn the hardware breakpoints off.
func (d *Debug) GuestDebug(cpu int, blockIRQ bool) (control uint32, debugreg [numDebugRegs]uint64) {
	if len(d.SW) > 0 {
		control |= GuestDbgUseSWBP
	}
	if dr7, err := EncodeDR7(d.HW); err == nil && dr7 != 0 {
		control |= GuestDbgUseHWBP
		for n, b := range d.HW {
			if b.Active() {
				debugreg[n] = b.Addr
			}
		}
		debugreg[DebugRegDR7] = dr7
	}
	if d.Step == cpu {
		control |= GuestDbgSingleStep
		if blockIRQ {
			control |= GuestDbgBlockIRQ
		}
	}
	if control != 0 {
		control |= GuestDbgEnable
	}
	return control, debugreg
}

// IsSWBreakpoint reports whether the stub planted an int3 at addr.
func (d *Debug) IsSWBreakpoint(addr uint64) bool {
	_, found := slices.BinarySearch(d.SW, addr)
	return found
}

// Classify interprets a KVM_EXIT_DEBUG on vCPU cpu: the exception vector,
// pc and DR6 of struct kvm_debug_exit_arch. It returns the stop to report
// and true when the exit is the debugger's, or false when it is the
// guest's own #BP or #DB, which the machine must hand back to the guest
// (GuestDbgInjectBP or GuestDbgInjectDB) and keep running.
func (d *Debug) Classify(cpu int, exception uint32, pc, dr6 uint64) (StopEvent, bool) {
	ev := StopEvent{CPU: cpu, Addr: pc}
	switch exception {
	case VectorBP:
		if d.IsSWBreakpoint(pc) {
			ev.Reason = StopSWBreakpoint
			return ev, true
		}
	case VectorDB:
		// B0-B3 may be set for slots that are not enabled (SDM §18.2.3),
		// so only active slots count. A watchpoint that fires during a
		// step wins over the step: GDB wants to know about it.
		for n, b := range d.HW {
			if !b.Active() || dr6&(dr6B0<<n) == 0 {
				continue
			}
			switch b.Type {
			case BreakSW:
				ev.Reason = StopSWBreakpoint
			case BreakHW:
				ev.Reason = StopHWBreakpoint
			default:
				ev.Reason = StopWatchpoint
				ev.Watch = b.Type
				ev.Addr = b.Addr
			}
			return ev, true
		}
		// KVM reports the step with BS set in DR6. Only the stepping vCPU
		// runs, so any other #DB on it is the step too; a BS on a vCPU
		// that was not asked to step is the guest's own RFLAGS.TF.
		if d.Step == cpu {
			ev.Reason = StopStep
			return ev, true
		}
	}
	return StopEvent{}, false
}

// StopReason says why the guest stopped.
type StopReason int

const (
	// StopInterrupted: Target.Interrupt stopped the guest (Ctrl-C).
	StopInterrupted StopReason = iota
	// StopStep: the single step asked for in Debug.Step finished.
	StopStep
	// StopSWBreakpoint: a breakpoint GDB asked for with Z0 (an int3, or a
	// debug register standing in for one); Addr is the PC.
	StopSWBreakpoint
	// StopHWBreakpoint: a Z1 instruction breakpoint; Addr is the PC.
	StopHWBreakpoint
	// StopWatchpoint: a Z2 or Z4 data breakpoint; Addr is the watched
	// address and Watch the kind. Data breakpoints are traps: the access
	// has happened and the PC is past the instruction.
	StopWatchpoint
	// StopExited: the machine ended (power off, reset, failure); Status
	// is the exit status GDB is told.
	StopExited

	// stopAttached is the stop the stub reports when GDB attaches: not a
	// reason the machine ever gives.
	stopAttached StopReason = -1
)

func (r StopReason) String() string {
	switch r {
	case StopInterrupted:
		return "interrupted"
	case StopStep:
		return "single step"
	case StopSWBreakpoint:
		return "software breakpoint"
	case StopHWBreakpoint:
		return "hardware breakpoint"
	case StopWatchpoint:
		return "watchpoint"
	case StopExited:
		return "exited"
	case stopAttached:
		return "attached"
	}
	return fmt.Sprintf("stop reason %d", int(r))
}

// StopEvent tells the stub that the guest stopped and why.
type StopEvent struct {
	CPU    int // the vCPU that stopped (the one that hit the breakpoint)
	Reason StopReason
	Addr   uint64    // see StopReason
	Watch  BreakType // StopWatchpoint: BreakWrite or BreakAccess
	Status uint8     // StopExited: the exit status
}

// ErrNoDebugRegister is returned when all four debug registers are taken.
var ErrNoDebugRegister = errors.New("all four debug registers DR0-DR3 are in use")

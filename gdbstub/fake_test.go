package gdbstub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// fakeTarget is a Target with a toy CPU, standing in for the machine. It
// behaves like KVM where the stub can tell: the debug setup reaches it
// only as kvm_guest_debug's control and debugreg (Debug.GuestDebug), DR7
// is decoded bit by bit as the CPU would, int3 stops with the PC on the
// int3, instruction breakpoints fault before the instruction unless
// RFLAGS.RF, watchpoints trap after it, and exits are judged with
// Debug.Classify, all as the machine will do.
//
// It runs synchronously: Resume executes up to budget instructions and
// either queues the StopEvent or leaves the guest "running" (idle) until
// Interrupt. It checks the Target contract: a call that needs a stopped
// guest while it runs is recorded in violation.
//
// The toy instruction set, one opcode byte each:
//
//	0xCC         int3
//	0xF4         hlt: the machine powers off (StopExited, status 0)
//	0xA2 imm64   mov [imm64], al: stores the low byte of RAX
//	anything     a one-byte no-op
//
// Running off the end of memory idles the vCPU until Interrupt.
type fakeTarget struct {
	mu        sync.Mutex
	base      uint64
	mem       []byte
	cpus      []Registers
	idle      []bool // ran off the end of memory
	stops     chan StopEvent
	running   bool
	budget    int
	control   []uint32 // per vCPU, from the last Resume
	debugreg  [numDebugRegs]uint64
	debug     Debug // the last Resume's setup
	resumes   int
	interrupt int
	killed    bool
	violation error
}

const (
	fakeBase   = 0x1000
	fakeMemLen = 0x10000

	opHLT      = 0xF4
	opStoreAL  = 0xA2 // MOV moffs8, AL with a 64-bit offset (SDM Vol. 2B, "MOV")
	opStoreLen = 9
	opNOP      = 0x90

	// How many instructions a Resume runs before the toy CPU idles.
	fakeBudget = 1 << 16
)

var errFakeFault = errors.New("fake: address not mapped")

func newFakeTarget(ncpu int) *fakeTarget {
	f := &fakeTarget{
		base:    fakeBase,
		mem:     bytes.Repeat([]byte{opNOP}, fakeMemLen),
		cpus:    make([]Registers, ncpu),
		idle:    make([]bool, ncpu),
		stops:   make(chan StopEvent, 1),
		budget:  fakeBudget,
		control: make([]uint32, ncpu),
	}
	for i := range f.cpus {
		r := &f.cpus[i]
		r.RIP = fakeBase + uint64(i)*0x100
		r.RSP = 0x8000
		r.EFLAGS = 0x202 // IF, and bit 1, which is always 1
		r.CS = 0x10
		r.CR0 = 0x80000011
		r.RAX = 0x1111111111111100 + uint64(i)
	}
	return f
}

func (f *fakeTarget) violate(format string, args ...any) {
	if f.violation == nil {
		f.violation = fmt.Errorf(format, args...)
	}
}

// stopped checks that the guest is stopped and cpu exists; the lock is
// held.
func (f *fakeTarget) stopped(what string, cpu int) bool {
	if f.running {
		f.violate("%s while the guest runs", what)
		return false
	}
	if cpu < 0 || cpu >= len(f.cpus) {
		f.violate("%s of vCPU %d, which does not exist", what, cpu)
		return false
	}
	return true
}

func (f *fakeTarget) NumCPUs() int { return len(f.cpus) }

func (f *fakeTarget) ReadRegisters(cpu int, r *Registers) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped("ReadRegisters", cpu) {
		return errors.New("fake: bad call")
	}
	*r = f.cpus[cpu]
	return nil
}

func (f *fakeTarget) WriteRegisters(cpu int, r *Registers) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped("WriteRegisters", cpu) {
		return errors.New("fake: bad call")
	}
	f.cpus[cpu] = *r
	return nil
}

// slice returns mem for [addr, addr+n) up to the first unmapped byte.
func (f *fakeTarget) slice(addr uint64, n int) []byte {
	off := addr - f.base
	if addr < f.base || off >= uint64(len(f.mem)) {
		return nil
	}
	end := min(uint64(len(f.mem)), off+uint64(n))
	if off+uint64(n) < off { // wrapped
		end = uint64(len(f.mem))
	}
	return f.mem[off:end]
}

func (f *fakeTarget) ReadMemory(cpu int, addr uint64, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped("ReadMemory", cpu) {
		return 0, errors.New("fake: bad call")
	}
	n := copy(p, f.slice(addr, len(p)))
	if n < len(p) {
		return n, errFakeFault
	}
	return n, nil
}

func (f *fakeTarget) WriteMemory(cpu int, addr uint64, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped("WriteMemory", cpu) {
		return 0, errors.New("fake: bad call")
	}
	n := copy(f.slice(addr, len(p)), p)
	if n < len(p) {
		return n, errFakeFault
	}
	return n, nil
}

func (f *fakeTarget) Stops() <-chan StopEvent { return f.stops }

func (f *fakeTarget) Kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		f.violate("Kill while the guest runs")
	}
	f.killed = true
}

func (f *fakeTarget) Interrupt() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.interrupt++
	if f.running {
		f.stop(StopEvent{CPU: 0, Reason: StopInterrupted})
	}
}

// stop ends the run with ev; the lock is held.
func (f *fakeTarget) stop(ev StopEvent) {
	f.running = false
	select {
	case f.stops <- ev:
	default:
		f.violate("a second stop before the stub took the first")
	}
}

func (f *fakeTarget) Resume(d Debug) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		f.violate("Resume while the guest runs")
		return errors.New("fake: already running")
	}
	if f.killed {
		f.violate("Resume after Kill")
	}
	if d.Step != NoStep && (d.Step < 0 || d.Step >= len(f.cpus)) {
		f.violate("Resume stepping vCPU %d, which does not exist", d.Step)
		return errors.New("fake: bad step")
	}
	f.resumes++
	f.debug = d
	for cpu := range f.cpus {
		f.control[cpu], f.debugreg = d.GuestDebug(cpu, true)
	}
	f.running = true
	for range f.budget {
		progressed := false
		for cpu := range f.cpus {
			if !d.Runs(cpu) || f.idle[cpu] {
				continue
			}
			progressed = true
			if ev, stop := f.exec(cpu); stop {
				f.stop(ev)
				return nil
			}
		}
		if !progressed {
			break
		}
	}
	return nil // idle: running until Interrupt
}

// Bits of DR7 the toy CPU decodes, named apart from the encoder's so that
// the test does not merely mirror it.
const (
	fakeDR7EnableBits = 0b11 // Ln and Gn of one breakpoint
	fakeRWExec        = 0b00
	fakeRWWrite       = 0b01
	fakeRWAccess      = 0b11
)

// dr returns debug register n's address, condition and length as the CPU
// sees them in DR0-DR3 and DR7, and whether it is enabled.
func (f *fakeTarget) dr(cpu, n int) (addr uint64, rw uint64, length uint64, on bool) {
	if f.control[cpu]&(GuestDbgEnable|GuestDbgUseHWBP) != GuestDbgEnable|GuestDbgUseHWBP {
		return 0, 0, 0, false
	}
	dr7 := f.debugreg[DebugRegDR7]
	on = dr7>>(2*n)&fakeDR7EnableBits != 0
	rw = dr7 >> (16 + 4*n) & 0b11
	length = [4]uint64{1, 2, 8, 4}[dr7>>(18+4*n)&0b11]
	return f.debugreg[n], rw, length, on
}

// debugExit is a KVM_EXIT_DEBUG: judged by Classify as the machine will.
// When it is the guest's own, the fake "injects" it: for int3 the guest's
// handler would run and return after the int3; the toy skips it.
func (f *fakeTarget) debugExit(cpu int, vector uint32, pc, dr6 uint64) (StopEvent, bool) {
	return f.debug.Classify(cpu, vector, pc, dr6)
}

// exec runs one instruction of vCPU cpu; the lock is held.
func (f *fakeTarget) exec(cpu int) (StopEvent, bool) {
	r := &f.cpus[cpu]
	const dr6Fixed = 0xffff0ff0 // DR6's reads-as-one bits, as KVM reports them
	if r.EFLAGS&eflagsRF == 0 {
		for n := range NumDebugRegs {
			if a, rw, _, on := f.dr(cpu, n); on && rw == fakeRWExec && a == r.RIP {
				if ev, ok := f.debugExit(cpu, VectorDB, r.RIP, dr6Fixed|1<<n); ok {
					return ev, true
				}
			}
		}
	}
	r.EFLAGS &^= eflagsRF
	code := f.slice(r.RIP, opStoreLen)
	if len(code) == 0 {
		f.idle[cpu] = true
		return StopEvent{}, false
	}
	var watched uint64 // DR6 B bits of data breakpoints hit
	switch code[0] {
	case int3:
		if f.control[cpu]&(GuestDbgEnable|GuestDbgUseSWBP) == GuestDbgEnable|GuestDbgUseSWBP {
			if ev, ok := f.debugExit(cpu, VectorBP, r.RIP, dr6Fixed); ok {
				return ev, true
			}
		}
		r.RIP++
	case opHLT:
		return StopEvent{CPU: cpu, Reason: StopExited}, true
	case opStoreAL:
		if len(code) < opStoreLen {
			f.idle[cpu] = true
			return StopEvent{}, false
		}
		addr := binary.LittleEndian.Uint64(code[1:])
		if dst := f.slice(addr, 1); len(dst) == 1 {
			dst[0] = byte(r.RAX)
		}
		for n := range NumDebugRegs {
			a, rw, l, on := f.dr(cpu, n)
			if on && (rw == fakeRWWrite || rw == fakeRWAccess) && addr&^(l-1) == a {
				watched |= 1 << n
			}
		}
		r.RIP += opStoreLen
	default:
		r.RIP++
	}
	if watched != 0 {
		if ev, ok := f.debugExit(cpu, VectorDB, r.RIP, dr6Fixed|watched); ok {
			return ev, true
		}
	}
	if f.control[cpu]&GuestDbgSingleStep != 0 {
		const bs = 1 << 14
		if ev, ok := f.debugExit(cpu, VectorDB, r.RIP, dr6Fixed|bs); ok {
			return ev, true
		}
	}
	return StopEvent{}, false
}

// memAt returns a copy of n bytes of fake memory at addr (for checks).
func (f *fakeTarget) memAt(addr uint64, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.slice(addr, n)...)
}

func (f *fakeTarget) setMem(addr uint64, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	copy(f.slice(addr, len(b)), b)
}

func (f *fakeTarget) regs(cpu int) Registers {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cpus[cpu]
}

func (f *fakeTarget) state() (running bool, resumes, interrupts int, d Debug, violation error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running, f.resumes, f.interrupt, f.debug, f.violation
}

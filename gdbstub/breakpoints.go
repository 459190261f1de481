package gdbstub

import (
	"errors"
	"maps"
	"slices"
)

// Where breakpoints live.
//
// Software breakpoints (Z0) are int3 bytes the stub writes over the first
// byte of the instruction, through Target.WriteMemory, remembering the
// byte it replaced. The target runs with GuestDbgUseSWBP so that the int3
// exits to govmm instead of reaching the guest's #BP handler, and KVM
// reports the int3's own address as the PC (Debug.Classify), which is
// what GDB expects from a stub that announces swbreak+. While an int3 is
// in place the stub hides it: memory reads show the original byte, and
// writes over it update the saved byte instead (gdbserver does the same).
// GDB removes and re-inserts its breakpoints around every stop and step,
// so an int3 never has to be stepped over by the stub.
//
// An int3 can only go where the address translates to RAM, and early in
// a Linux boot the kernel's virtual addresses (start_kernel at
// 0xffffffff8...) are not mapped yet: the boot page tables only identity
// map low memory. Such a Z0 goes into a debug register instead, which
// matches the linear address whenever it becomes mapped. That is why
// "break start_kernel" works from the very first instruction.
//
// Some targets cannot trap int3 at all: on a software KVM (kvm_pvm) guest
// kernel code runs in KVM's instruction emulator, which cannot emulate
// int3. With Options.HardwareBreakpointsFirst a Z0 takes a free debug
// register first, and only the fifth and later become int3s.
//
// Hardware breakpoints (Z1) and watchpoints (Z2 write, Z4 access) take
// debug registers DR0-DR3 (EncodeDR7). x86 has no read-only watchpoint, so
// Z3 is unsupported, as GDB's own x86 code says. A watchpoint that is not
// one aligned 1, 2, 4 or 8-byte block is split into aligned blocks, one
// register each, as GDB's x86 native code does.

// maxSWBreakpoints bounds the int3 table: a client cannot make it grow
// without end.
const maxSWBreakpoints = 4096

// Errors of breakpoint and memory requests; reply maps them to E codes.
var (
	errUnsupported = errors.New("not supported")
	errInvalid     = errors.New("invalid request")
	errFault       = errors.New("memory not accessible")
	errNoSpace     = errors.New("no room for another breakpoint")
)

// swBreakpoint is one planted int3.
type swBreakpoint struct {
	orig byte // the guest's byte under the int3
	cpu  int  // the vCPU whose page tables translated the address
}

// bpKey identifies a Z request, so that z removes exactly what Z added.
type bpKey struct {
	typ          BreakType
	addr, length uint64
}

// breakpoints is the stub's breakpoint bookkeeping.
type breakpoints struct {
	sw    map[uint64]swBreakpoint
	hw    [NumDebugRegs]HWBreakpoint
	owner [NumDebugRegs]bpKey // the request each active slot serves
}

// debug returns the setup to hand to Target.Resume.
func (b *breakpoints) debug(step int) Debug {
	return Debug{Step: step, SW: slices.Sorted(maps.Keys(b.sw)), HW: b.hw}
}

// hasKey reports whether some slot serves key.
func (b *breakpoints) hasKey(key bpKey) bool {
	for n := range b.hw {
		if b.hw[n].Active() && b.owner[n] == key {
			return true
		}
	}
	return false
}

// claimSlots puts pieces into free debug registers, all or none.
func (b *breakpoints) claimSlots(key bpKey, pieces []HWBreakpoint) error {
	var free []int
	for n := range b.hw {
		if !b.hw[n].Active() {
			free = append(free, n)
		}
	}
	if len(pieces) > len(free) {
		return errNoSpace
	}
	for i, p := range pieces {
		b.hw[free[i]] = p
		b.owner[free[i]] = key
	}
	return nil
}

// releaseSlots frees the debug registers serving key.
func (b *breakpoints) releaseSlots(key bpKey) {
	for n := range b.hw {
		if b.hw[n].Active() && b.owner[n] == key {
			b.hw[n] = HWBreakpoint{}
			b.owner[n] = bpKey{}
		}
	}
}

// maxWatchLen is the most a watchpoint can cover: four registers of 8
// bytes.
const maxWatchLen = NumDebugRegs * 8

// splitWatch cuts [addr, addr+length) into naturally aligned blocks of 1,
// 2, 4 or 8 bytes, the only shapes a debug register can watch (SDM Vol.
// 3B §18.2.5 "Breakpoint Field Recognition").
func splitWatch(typ BreakType, addr, length uint64) ([]HWBreakpoint, error) {
	if length == 0 || length > maxWatchLen || addr+length-1 < addr {
		return nil, errInvalid
	}
	var pieces []HWBreakpoint
	for length > 0 {
		size := uint64(8)
		for size > 1 && (addr%size != 0 || size > length) {
			size /= 2
		}
		pieces = append(pieces, HWBreakpoint{Type: typ, Addr: addr, Len: size})
		addr += size
		length -= size
	}
	if len(pieces) > NumDebugRegs {
		return nil, errNoSpace
	}
	return pieces, nil
}

// insert handles Z: add a breakpoint of type typ at addr, kind (for Z0
// and Z1, the breakpoint instruction's length: 1 on x86) or length (for
// watchpoints). It is idempotent, as RSP "Packets" asks of Z and z.
func (s *stub) insert(typ BreakType, addr, kind uint64, cpu int) error {
	switch typ {
	case BreakSW:
		if kind != 1 {
			return errInvalid
		}
		key := bpKey{typ, addr, 1}
		if _, ok := s.bp.sw[addr]; ok || s.bp.hasKey(key) {
			return nil
		}
		slot := []HWBreakpoint{{Type: BreakSW, Addr: addr, Len: 1}}
		if s.hwFirst && s.bp.claimSlots(key, slot) == nil {
			return nil
		}
		if len(s.bp.sw) >= maxSWBreakpoints {
			return errNoSpace
		}
		if err := s.plantInt3(addr, cpu); err != nil {
			// Not writable (not mapped yet): use a debug register.
			if s.bp.claimSlots(key, slot) != nil {
				return errFault
			}
		}
		return nil
	case BreakHW:
		if kind != 1 {
			return errInvalid
		}
		key := bpKey{typ, addr, 1}
		if s.bp.hasKey(key) {
			return nil
		}
		return s.bp.claimSlots(key, []HWBreakpoint{{Type: BreakHW, Addr: addr, Len: 1}})
	case BreakWrite, BreakAccess:
		key := bpKey{typ, addr, kind}
		if s.bp.hasKey(key) {
			return nil
		}
		pieces, err := splitWatch(typ, addr, kind)
		if err != nil {
			return err
		}
		return s.bp.claimSlots(key, pieces)
	}
	return errUnsupported
}

// remove handles z. Removing what is not there succeeds (idempotence).
func (s *stub) remove(typ BreakType, addr, kind uint64) error {
	switch typ {
	case BreakSW:
		if kind != 1 {
			return errInvalid
		}
		if bp, ok := s.bp.sw[addr]; ok {
			if n, _ := s.t.WriteMemory(bp.cpu, addr, []byte{bp.orig}); n != 1 {
				// Keep it: it is still an int3 in the guest, and a
				// later z0 or the clean-up on detach tries again.
				return errFault
			}
			delete(s.bp.sw, addr)
			return nil
		}
		s.bp.releaseSlots(bpKey{typ, addr, 1})
		return nil
	case BreakHW:
		if kind != 1 {
			return errInvalid
		}
		s.bp.releaseSlots(bpKey{typ, addr, 1})
		return nil
	case BreakWrite, BreakAccess:
		s.bp.releaseSlots(bpKey{typ, addr, kind})
		return nil
	}
	return errUnsupported
}

// plantInt3 saves the byte at addr and writes an int3 over it.
func (s *stub) plantInt3(addr uint64, cpu int) error {
	var orig [1]byte
	if n, _ := s.t.ReadMemory(cpu, addr, orig[:]); n != 1 {
		return errFault
	}
	if n, _ := s.t.WriteMemory(cpu, addr, []byte{int3}); n != 1 {
		return errFault
	}
	if s.bp.sw == nil {
		s.bp.sw = make(map[uint64]swBreakpoint)
	}
	s.bp.sw[addr] = swBreakpoint{orig: orig[0], cpu: cpu}
	return nil
}

// removeAll takes every breakpoint out, as when GDB detaches. An int3 that
// cannot be restored (its page is no longer mapped) is forgotten: there is
// nothing more the stub can do about it.
func (s *stub) removeAll() {
	for addr, bp := range s.bp.sw {
		s.t.WriteMemory(bp.cpu, addr, []byte{bp.orig})
	}
	s.bp = breakpoints{}
}

// within reports whether a lies in [addr, addr+n), wrapping around the
// top of the address space like the addresses do.
func within(a, addr uint64, n int) bool { return a-addr < uint64(n) }

// hideInt3s replaces planted int3s in p, read from addr, by the bytes they
// stand for, so that GDB sees the guest's code.
func (b *breakpoints) hideInt3s(addr uint64, p []byte) {
	for a, bp := range b.sw {
		if within(a, addr, len(p)) {
			p[a-addr] = bp.orig
		}
	}
}

// keepInt3s returns what to write for data at addr: the same bytes, except
// that planted int3s stay in place.
func (b *breakpoints) keepInt3s(addr uint64, data []byte) []byte {
	out := slices.Clone(data)
	for a := range b.sw {
		if within(a, addr, len(data)) {
			out[a-addr] = int3
		}
	}
	return out
}

// saveUnderInt3s records, after n bytes of data were written at addr, the
// new bytes that the int3s now stand for.
func (b *breakpoints) saveUnderInt3s(addr uint64, data []byte) {
	for a, bp := range b.sw {
		if within(a, addr, len(data)) {
			bp.orig = data[a-addr]
			b.sw[a] = bp
		}
	}
}

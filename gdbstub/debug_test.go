package gdbstub

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKVMGuestDebugConstants(t *testing.T) {
	// From <linux/kvm.h> and <asm/kvm.h> (Linux 6.1 UAPI headers).
	assert.EqualValues(t, 0x1, GuestDbgEnable)
	assert.EqualValues(t, 0x2, GuestDbgSingleStep)
	assert.EqualValues(t, 0x10000, GuestDbgUseSWBP)
	assert.EqualValues(t, 0x20000, GuestDbgUseHWBP)
	assert.EqualValues(t, 0x40000, GuestDbgInjectDB)
	assert.EqualValues(t, 0x80000, GuestDbgInjectBP)
	assert.EqualValues(t, 0x100000, GuestDbgBlockIRQ)
}

func TestEncodeDR7(t *testing.T) {
	hw := func(typ BreakType, addr, n uint64) HWBreakpoint { return HWBreakpoint{Type: typ, Addr: addr, Len: n} }
	for _, c := range []struct {
		name  string
		slots [NumDebugRegs]HWBreakpoint
		want  uint64
	}{
		{"nothing: DR7 off", [4]HWBreakpoint{}, 0},
		// G0, R/W0=00 LEN0=00, GE, bit 10: QEMU's 0x600 | 2<<0.
		{"DR0 execute", [4]HWBreakpoint{hw(BreakHW, 0x1000, 1)}, 0x602},
		{"DR0 software stand-in", [4]HWBreakpoint{hw(BreakSW, 0x1000, 1)}, 0x602},
		// The KVM selftest debug_regs.c writes 0x400 | 1<<1 | 0xd0000
		// for a 4-byte write watchpoint in DR0; with GE that is:
		{"DR0 write 4", [4]HWBreakpoint{hw(BreakWrite, 0x2000, 4)}, 0xd0602},
		// G1 (bit 3), R/W1=01 (bit 20), LEN1=11 (bits 22-23).
		{"DR1 write 4", [4]HWBreakpoint{{}, hw(BreakWrite, 0x2000, 4)}, 0x8 | 0x100000 | 0xc00000 | 0x600},
		// G2 (bit 5), R/W2=01 (bit 24), LEN2=01 (bit 26).
		{"DR2 write 2", [4]HWBreakpoint{{}, {}, hw(BreakWrite, 0x2002, 2)}, 0x20 | 0x1000000 | 0x4000000 | 0x600},
		// G3 (bit 7), R/W3=11 (bits 28-29), LEN3=10 (bit 31): 8 bytes.
		{"DR3 access 8", [4]HWBreakpoint{{}, {}, {}, hw(BreakAccess, 0x2008, 8)}, 0x80 | 0x30000000 | 0x80000000 | 0x600},
		{"DR1 access 1", [4]HWBreakpoint{{}, hw(BreakAccess, 0x2001, 1)}, 0x8 | 0x300000 | 0x600},
		{"all four", [4]HWBreakpoint{
			hw(BreakHW, 0xffffffff81000000, 1),
			hw(BreakWrite, 0x2000, 4),
			hw(BreakWrite, 0x2002, 2),
			hw(BreakAccess, 0x2008, 8),
		}, 0x2 | 0x8 | 0x100000 | 0xc00000 | 0x20 | 0x1000000 | 0x4000000 | 0x80 | 0x30000000 | 0x80000000 | 0x600},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := EncodeDR7(c.slots)
			require.NoError(t, err)
			assert.Equal(t, c.want, got, "DR7 = %#x, want %#x", got, c.want)
		})
	}
}

func TestEncodeDR7RefusesWhatDebugRegistersCannotDo(t *testing.T) {
	for _, b := range []HWBreakpoint{
		{Type: BreakHW, Addr: 0x1000, Len: 2},     // instruction breakpoints are 1 byte
		{Type: BreakWrite, Addr: 0x1000, Len: 3},  // 1, 2, 4 or 8
		{Type: BreakWrite, Addr: 0x1002, Len: 4},  // misaligned
		{Type: BreakAccess, Addr: 0x1004, Len: 8}, // misaligned
		{Type: BreakRead, Addr: 0x1000, Len: 1},   // x86 has no read-only breakpoint
	} {
		_, err := EncodeDR7([4]HWBreakpoint{{}, {}, b})
		assert.Error(t, err, "%+v", b)
	}
}

func TestGuestDebug(t *testing.T) {
	idle := Debug{Step: NoStep}
	assert.True(t, idle.Idle())
	c, regs := idle.GuestDebug(0, true)
	assert.Zero(t, c, "an idle setup turns guest debugging off")
	assert.Zero(t, regs)

	sw := Debug{Step: NoStep, SW: []uint64{0x1234}}
	c, _ = sw.GuestDebug(0, true)
	assert.EqualValues(t, GuestDbgEnable|GuestDbgUseSWBP, c)

	step := Debug{Step: 1}
	assert.False(t, step.Runs(0))
	assert.True(t, step.Runs(1))
	c, _ = step.GuestDebug(0, true)
	assert.Zero(t, c, "only the stepping vCPU single-steps")
	c, _ = step.GuestDebug(1, true)
	assert.EqualValues(t, GuestDbgEnable|GuestDbgSingleStep|GuestDbgBlockIRQ, c)
	c, _ = step.GuestDebug(1, false)
	assert.EqualValues(t, GuestDbgEnable|GuestDbgSingleStep, c, "no BLOCKIRQ where KVM lacks it")

	hw := Debug{Step: NoStep}
	hw.HW[2] = HWBreakpoint{Type: BreakHW, Addr: 0xffffffff81000000, Len: 1}
	c, regs = hw.GuestDebug(0, false)
	assert.EqualValues(t, GuestDbgEnable|GuestDbgUseHWBP, c)
	assert.Equal(t, uint64(0xffffffff81000000), regs[2])
	assert.Equal(t, uint64(0x20|0x600), regs[DebugRegDR7])
}

func TestClassify(t *testing.T) {
	d := Debug{Step: NoStep, SW: []uint64{0x1100, 0x1234}}
	d.HW[0] = HWBreakpoint{Type: BreakHW, Addr: 0x1300, Len: 1}
	d.HW[1] = HWBreakpoint{Type: BreakSW, Addr: 0xffffffff81000000, Len: 1}
	d.HW[3] = HWBreakpoint{Type: BreakAccess, Addr: 0x2000, Len: 4}
	const fixed = 0xffff0ff0 // DR6 as KVM reports it, with no cause bit
	for _, c := range []struct {
		name   string
		d      Debug
		cpu    int
		vector uint32
		pc     uint64
		dr6    uint64
		want   StopEvent
		ours   bool
	}{
		{"our int3", d, 1, VectorBP, 0x1234, fixed, StopEvent{CPU: 1, Reason: StopSWBreakpoint, Addr: 0x1234}, true},
		{"the guest's own int3", d, 0, VectorBP, 0x1235, fixed, StopEvent{}, false},
		{"DR0 instruction breakpoint", d, 0, VectorDB, 0x1300, fixed | 1, StopEvent{Reason: StopHWBreakpoint, Addr: 0x1300}, true},
		{"DR1 standing in for an int3", d, 0, VectorDB, 0xffffffff81000000, fixed | 2, StopEvent{Reason: StopSWBreakpoint, Addr: 0xffffffff81000000}, true},
		{"DR3 watchpoint reports the data address", d, 0, VectorDB, 0x1400, fixed | 8, StopEvent{Reason: StopWatchpoint, Addr: 0x2000, Watch: BreakAccess}, true},
		{"B2 of an unused slot", d, 0, VectorDB, 0x1400, fixed | 4, StopEvent{}, false},
		{"a single step nobody asked for", d, 0, VectorDB, 0x1400, fixed | dr6SingleStep, StopEvent{}, false},
		{"the step", Debug{Step: 1}, 1, VectorDB, 0x1401, fixed | dr6SingleStep, StopEvent{CPU: 1, Reason: StopStep, Addr: 0x1401}, true},
		{"a watchpoint during the step wins", func() Debug { e := d; e.Step = 0; return e }(), 0, VectorDB, 0x1409, fixed | dr6SingleStep | 8, StopEvent{Reason: StopWatchpoint, Addr: 0x2000, Watch: BreakAccess}, true},
		{"another vector", d, 0, 6, 0x1234, fixed, StopEvent{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ours := c.d.Classify(c.cpu, c.vector, c.pc, c.dr6)
			assert.Equal(t, c.ours, ours)
			assert.Equal(t, c.want, got)
		})
	}
}

func TestSplitWatch(t *testing.T) {
	p, err := splitWatch(BreakWrite, 0x1001, 4)
	require.NoError(t, err)
	assert.Equal(t, []HWBreakpoint{
		{BreakWrite, 0x1001, 1}, {BreakWrite, 0x1002, 2}, {BreakWrite, 0x1004, 1},
	}, p)
	p, err = splitWatch(BreakAccess, 0x1000, 16)
	require.NoError(t, err)
	assert.Equal(t, []HWBreakpoint{{BreakAccess, 0x1000, 8}, {BreakAccess, 0x1008, 8}}, p)
	for _, pc := range p {
		_, err := EncodeDR7([4]HWBreakpoint{pc})
		assert.NoError(t, err, "every piece must be encodable")
	}
	_, err = splitWatch(BreakWrite, 0x1000, 0)
	assert.ErrorIs(t, err, errInvalid)
	_, err = splitWatch(BreakWrite, 0x1000, maxWatchLen+1)
	assert.ErrorIs(t, err, errInvalid)
	_, err = splitWatch(BreakWrite, 0x1001, maxWatchLen)
	assert.ErrorIs(t, err, errNoSpace, "misaligned 32 bytes need more than four registers")
	_, err = splitWatch(BreakWrite, ^uint64(0)-1, 4)
	assert.ErrorIs(t, err, errInvalid, "wrapping around the address space")
}

func TestRegisterLayoutIsGDBs(t *testing.T) {
	assert.Equal(t, 600, registersSize)
	require.Len(t, regs, numRegs)
	r := Registers{RBP: 0x1111, RSP: 0x2222, RIP: 0x3333, EFLAGS: 0x246, CS: 0x10, GS: 0x18,
		FCTRL: 0x37f, MXCSR: 0x1f80, FSBase: 0x4444, GSBase: 0x5555, CR0: 0x80000011, CR3: 0x9000, EFER: 0xd01}
	r.ST[0][9] = 0x3f
	r.XMM[0][0] = 0xaa
	r.XMM[15][15] = 0xbb
	b := r.marshal()
	require.Len(t, b, registersSize)
	// Offsets follow from GDB's amd64 order: 16 general registers of 8
	// bytes, rip, eflags (4), six selectors (4), eight 10-byte st, eight
	// 4-byte x87 control registers, sixteen 16-byte xmm, mxcsr, ...
	le64 := func(off int) uint64 {
		var v uint64
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint64(b[off+i])
		}
		return v
	}
	assert.Equal(t, uint64(0x1111), le64(6*8), "rbp is register 6")
	assert.Equal(t, uint64(0x2222), le64(7*8), "rsp is register 7")
	assert.Equal(t, uint64(0x3333), le64(128), "rip")
	assert.Equal(t, uint64(0x246), le64(136)&0xffffffff, "eflags")
	assert.Equal(t, byte(0x10), b[140], "cs")
	assert.Equal(t, byte(0x18), b[160], "gs")
	assert.Equal(t, byte(0x3f), b[164+9], "st0's top byte")
	assert.Equal(t, uint64(0x37f), le64(244)&0xffffffff, "fctrl")
	assert.Equal(t, byte(0xaa), b[276], "xmm0")
	assert.Equal(t, byte(0xbb), b[276+16*16-1], "xmm15's last byte")
	assert.Equal(t, uint64(0x1f80), le64(532)&0xffffffff, "mxcsr")
	assert.Equal(t, uint64(0x4444), le64(536), "fs_base")
	assert.Equal(t, uint64(0x5555), le64(544), "gs_base")
	assert.Equal(t, uint64(0x80000011), le64(552), "cr0")
	assert.Equal(t, uint64(0x9000), le64(568), "cr3")
	assert.Equal(t, uint64(0xd01), le64(592), "efer")

	var back Registers
	require.NoError(t, back.unmarshal(b))
	assert.Equal(t, r, back)
	assert.Error(t, back.unmarshal(b[1:]))
}

func TestTargetXMLDescribesTheGPacket(t *testing.T) {
	var doc struct {
		Arch     string `xml:"architecture"`
		Features []struct {
			Name string `xml:"name,attr"`
			Regs []struct {
				Name   string `xml:"name,attr"`
				Bits   int    `xml:"bitsize,attr"`
				Regnum int    `xml:"regnum,attr"`
			} `xml:"reg"`
		} `xml:"feature"`
	}
	require.NoError(t, xml.Unmarshal([]byte(TargetXML), &doc))
	assert.Equal(t, "i386:x86-64", doc.Arch)
	var names []string
	bits := 0
	n := 0
	for _, f := range doc.Features {
		for _, r := range f.Regs {
			assert.Equal(t, n, r.Regnum)
			names = append(names, r.Name)
			bits += r.Bits
			n++
		}
	}
	assert.Equal(t, registersSize*8, bits, "the description must add up to the g packet")
	assert.Equal(t, "org.gnu.gdb.i386.core", doc.Features[0].Name)
	assert.Equal(t, "org.gnu.gdb.i386.sse", doc.Features[1].Name)
	assert.Equal(t, "org.gnu.gdb.i386.segments", doc.Features[2].Name)
	// GDB's i386 code checks the core and SSE registers by name, in this
	// order (i386-tdep.c, i386_validate_tdesc_p).
	assert.Equal(t, "rax rbx rcx rdx rsi rdi rbp rsp r8 r9 r10 r11 r12 r13 r14 r15 rip eflags cs ss ds es fs gs "+
		"st0 st1 st2 st3 st4 st5 st6 st7 fctrl fstat ftag fiseg fioff foseg fooff fop", strings.Join(names[:40], " "))
	assert.Equal(t, "xmm0", names[40])
	assert.Equal(t, "mxcsr", names[56])
	assert.Equal(t, []string{"fs_base", "gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer"}, names[57:])
}

func TestX87TagWord(t *testing.T) {
	var st [8][10]byte
	one := [10]byte{7: 0x80, 8: 0xff, 9: 0x3f} // 1.0: J set, exponent 0x3fff
	nan := [10]byte{7: 0xc0, 8: 0xff, 9: 0x7f}
	denormal := [10]byte{0: 1}
	assert.Equal(t, uint16(0xffff), FullTagWord(0, 0, st), "all empty")

	st[0] = one // ST(0), with TOP = 0 that is R0
	assert.Equal(t, uint16(0xfffc), FullTagWord(0x01, 0, st), "R0 valid")
	// TOP = 7: ST(0) is R7, ST(1) is R0.
	const top7 = 7 << 11
	st[1] = nan
	assert.Equal(t, uint16(0x3ffe), FullTagWord(0x81, top7, st), "R7 valid (00), R0 special (10)")
	st[0], st[1] = [10]byte{}, denormal
	assert.Equal(t, uint16(0x7ffe), FullTagWord(0x81, top7, st), "R7 zero (01), R0 special (10)")

	for _, ftw := range []uint16{0xffff, 0xfffc, 0x3ffe, 0x0000} {
		a := AbridgedTag(ftw)
		for phys := range 8 {
			empty := ftw>>(2*phys)&3 == 3
			assert.Equal(t, !empty, a&(1<<phys) != 0, "ftw %#x R%d", ftw, phys)
		}
	}
}

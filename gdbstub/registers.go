package gdbstub

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Registers is one vCPU's register file as the stub shows it to GDB. The
// order of the fields is the order of the g packet, which is the order of
// the registers in the target description (TargetXML): GDB's standard
// amd64 features org.gnu.gdb.i386.core (general, segment and x87
// registers), org.gnu.gdb.i386.sse and org.gnu.gdb.i386.segments (GDB
// manual, "Target Descriptions" appendix, "i386 Features"), then govmm's org.govmm.x86.system with
// the control registers and EFER, in GDB's "system" register group.
//
// Every value travels in the target's byte order, little-endian.
type Registers struct {
	// General-purpose registers, in GDB's order (which is neither the
	// encoding order nor struct kvm_regs's: rbp comes before rsp).
	RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP                                    uint64
	// EFLAGS is the low half of RFLAGS; the upper half is reserved
	// (SDM Vol. 1 §3.4.3.4 "RFLAGS Register in 64-Bit Mode").
	EFLAGS uint32
	// Segment selectors, zero-extended to 32 bits. GDB does not see the
	// hidden descriptor parts, except the FS and GS bases below.
	CS, SS, DS, ES, FS, GS uint32

	// x87 state as FXSAVE stores it (SDM Vol. 1 §10.5.1 "FXSAVE Area"):
	// ST holds the 80-bit registers in stack order, ST(0) first.
	ST [8][10]byte
	// FCTRL and FSTAT are the control and status words. FTAG is the full
	// tag word (two bits per physical register: FullTagWord converts from
	// FXSAVE's abridged form). FISEG:FIOFF and FOSEG:FOOFF are the last
	// instruction and operand pointers: in 64-bit mode, the high and low
	// halves of FXSAVE's 64-bit FPU IP and DP. FOP is the last opcode.
	FCTRL, FSTAT, FTAG, FISEG, FIOFF, FOSEG, FOOFF, FOP uint32

	XMM   [16][16]byte // XMM0-XMM15, little-endian 128-bit values
	MXCSR uint32

	FSBase, GSBase uint64 // the hidden bases of FS and GS

	CR0, CR2, CR3, CR4, CR8, EFER uint64
}

// Register numbers: positions in the g packet, and the numbers of the p
// and P packets.
const (
	regRAX = iota
	regRBX
	regRCX
	regRDX
	regRSI
	regRDI
	regRBP
	regRSP
	regR8
	regR15    = regR8 + 7
	regRIP    = regR15 + 1
	regEFLAGS = regRIP + 1
	regCS     = regEFLAGS + 1 // cs ss ds es fs gs
	numSegs   = 6
	regST0    = regCS + numSegs // st0-st7
	numST     = 8
	regFCTRL  = regST0 + numST // fctrl fstat ftag fiseg fioff foseg fooff fop
	numFPCtl  = 8
	regXMM0   = regFCTRL + numFPCtl // xmm0-xmm15
	numXMM    = 16
	regMXCSR  = regXMM0 + numXMM
	regFSBase = regMXCSR + 1
	regGSBase = regFSBase + 1
	regCR0    = regGSBase + 1 // cr0 cr2 cr3 cr4 cr8 efer
	numSys    = 6
	numRegs   = regCR0 + numSys
)

// Sizes in bytes of the register kinds.
const (
	size32  = 4
	size64  = 8
	sizeST  = 10 // x87 double extended precision (SDM Vol. 1 §4.2.2)
	sizeXMM = 16
)

// A regInfo describes one register in the target description.
type regInfo struct {
	name    string
	size    int    // bytes
	typ     string // GDB type name (GDB manual, "Predefined Target Types") or one defined in the feature
	group   string // register group, "" for GDB's default
	feature int    // index into features
}

// The features of the target description, in order.
const (
	featCore = iota
	featSSE
	featSegments
	featSystem
)

// features lists each feature's name and the type definitions its
// registers use, copied from GDB's own 64bit-core.xml and 64bit-sse.xml so
// that eflags and mxcsr print as flags and xmm registers as vectors.
var features = []struct{ name, types string }{
	featCore: {"org.gnu.gdb.i386.core", `<flags id="i386_eflags" size="4">
<field name="CF" start="0" end="0"/><field name="" start="1" end="1"/>
<field name="PF" start="2" end="2"/><field name="AF" start="4" end="4"/>
<field name="ZF" start="6" end="6"/><field name="SF" start="7" end="7"/>
<field name="TF" start="8" end="8"/><field name="IF" start="9" end="9"/>
<field name="DF" start="10" end="10"/><field name="OF" start="11" end="11"/>
<field name="NT" start="14" end="14"/><field name="RF" start="16" end="16"/>
<field name="VM" start="17" end="17"/><field name="AC" start="18" end="18"/>
<field name="VIF" start="19" end="19"/><field name="VIP" start="20" end="20"/>
<field name="ID" start="21" end="21"/>
</flags>
`},
	featSSE: {"org.gnu.gdb.i386.sse", `<vector id="v4f" type="ieee_single" count="4"/>
<vector id="v2d" type="ieee_double" count="2"/>
<vector id="v16i8" type="int8" count="16"/>
<vector id="v8i16" type="int16" count="8"/>
<vector id="v4i32" type="int32" count="4"/>
<vector id="v2i64" type="int64" count="2"/>
<union id="vec128">
<field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/>
<field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/>
<field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/>
<field name="uint128" type="uint128"/>
</union>
<flags id="i386_mxcsr" size="4">
<field name="IE" start="0" end="0"/><field name="DE" start="1" end="1"/>
<field name="ZE" start="2" end="2"/><field name="OE" start="3" end="3"/>
<field name="UE" start="4" end="4"/><field name="PE" start="5" end="5"/>
<field name="DAZ" start="6" end="6"/><field name="IM" start="7" end="7"/>
<field name="DM" start="8" end="8"/><field name="ZM" start="9" end="9"/>
<field name="OM" start="10" end="10"/><field name="UM" start="11" end="11"/>
<field name="PM" start="12" end="12"/><field name="FZ" start="15" end="15"/>
</flags>
`},
	featSegments: {"org.gnu.gdb.i386.segments", ""},
	featSystem:   {"org.govmm.x86.system", ""},
}

// regs is the register table, indexed by register number.
var regs = buildRegTable()

func buildRegTable() []regInfo {
	t := make([]regInfo, 0, numRegs)
	for _, n := range []string{"rax", "rbx", "rcx", "rdx", "rsi", "rdi"} {
		t = append(t, regInfo{n, size64, "int64", "", featCore})
	}
	t = append(t,
		regInfo{"rbp", size64, "data_ptr", "", featCore},
		regInfo{"rsp", size64, "data_ptr", "", featCore})
	for i := 8; i <= 15; i++ {
		t = append(t, regInfo{fmt.Sprintf("r%d", i), size64, "int64", "", featCore})
	}
	t = append(t,
		regInfo{"rip", size64, "code_ptr", "", featCore},
		regInfo{"eflags", size32, "i386_eflags", "", featCore})
	for _, n := range []string{"cs", "ss", "ds", "es", "fs", "gs"} {
		t = append(t, regInfo{n, size32, "int32", "", featCore})
	}
	for i := range numST {
		t = append(t, regInfo{fmt.Sprintf("st%d", i), sizeST, "i387_ext", "", featCore})
	}
	for _, n := range []string{"fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"} {
		t = append(t, regInfo{n, size32, "int", "float", featCore})
	}
	for i := range numXMM {
		t = append(t, regInfo{fmt.Sprintf("xmm%d", i), sizeXMM, "vec128", "", featSSE})
	}
	t = append(t,
		regInfo{"mxcsr", size32, "i386_mxcsr", "vector", featSSE},
		regInfo{"fs_base", size64, "int", "", featSegments},
		regInfo{"gs_base", size64, "int", "", featSegments})
	for _, n := range []string{"cr0", "cr2", "cr3", "cr4", "cr8", "efer"} {
		t = append(t, regInfo{n, size64, "int", "system", featSystem})
	}
	return t
}

// registersSize is the length in bytes of the whole register file, the
// g reply being twice that in hex digits.
var registersSize = func() int {
	n := 0
	for _, r := range regs {
		n += r.size
	}
	return n
}()

// TargetXML is the target description the stub serves as target.xml (GDB
// manual, Appendix G "Target Descriptions"). It names the architecture,
// i386:x86-64, and lists every register in g-packet order with its size
// and type: this is how GDB learns the layout of g and the numbers of p/P.
var TargetXML = buildTargetXML()

func buildTargetXML() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>
<!DOCTYPE target SYSTEM "gdb-target.dtd">
<target version="1.0">
<architecture>i386:x86-64</architecture>
`)
	feat := -1
	for i, r := range regs {
		if r.feature != feat {
			if feat >= 0 {
				b.WriteString("</feature>\n")
			}
			feat = r.feature
			fmt.Fprintf(&b, "<feature name=%q>\n%s", features[feat].name, features[feat].types)
		}
		fmt.Fprintf(&b, `<reg name="%s" bitsize="%d" type="%s" regnum="%d"`, r.name, r.size*8, r.typ, i)
		if r.group != "" {
			fmt.Fprintf(&b, ` group="%s"`, r.group)
		}
		b.WriteString("/>\n")
	}
	b.WriteString("</feature>\n</target>\n")
	return b.String()
}

// field returns where register n lives in r: a 64-bit or 32-bit integer,
// or raw little-endian bytes.
func (r *Registers) field(n int) (u64 *uint64, u32 *uint32, raw []byte) {
	switch {
	case n >= regRAX && n <= regR15:
		return [...]*uint64{&r.RAX, &r.RBX, &r.RCX, &r.RDX, &r.RSI, &r.RDI, &r.RBP, &r.RSP,
			&r.R8, &r.R9, &r.R10, &r.R11, &r.R12, &r.R13, &r.R14, &r.R15}[n], nil, nil
	case n == regRIP:
		return &r.RIP, nil, nil
	case n == regEFLAGS:
		return nil, &r.EFLAGS, nil
	case n >= regCS && n < regST0:
		return nil, [...]*uint32{&r.CS, &r.SS, &r.DS, &r.ES, &r.FS, &r.GS}[n-regCS], nil
	case n >= regST0 && n < regFCTRL:
		return nil, nil, r.ST[n-regST0][:]
	case n >= regFCTRL && n < regXMM0:
		return nil, [...]*uint32{&r.FCTRL, &r.FSTAT, &r.FTAG, &r.FISEG,
			&r.FIOFF, &r.FOSEG, &r.FOOFF, &r.FOP}[n-regFCTRL], nil
	case n >= regXMM0 && n < regMXCSR:
		return nil, nil, r.XMM[n-regXMM0][:]
	case n == regMXCSR:
		return nil, &r.MXCSR, nil
	case n == regFSBase:
		return &r.FSBase, nil, nil
	case n == regGSBase:
		return &r.GSBase, nil, nil
	case n >= regCR0 && n < numRegs:
		return [...]*uint64{&r.CR0, &r.CR2, &r.CR3, &r.CR4, &r.CR8, &r.EFER}[n-regCR0], nil, nil
	}
	return nil, nil, nil
}

// appendReg appends register n's value as little-endian bytes.
func (r *Registers) appendReg(dst []byte, n int) []byte {
	u64, u32, raw := r.field(n)
	switch {
	case u64 != nil:
		return binary.LittleEndian.AppendUint64(dst, *u64)
	case u32 != nil:
		return binary.LittleEndian.AppendUint32(dst, *u32)
	}
	return append(dst, raw...)
}

// setReg sets register n from little-endian bytes, exactly its size.
func (r *Registers) setReg(n int, b []byte) {
	u64, u32, raw := r.field(n)
	switch {
	case u64 != nil:
		*u64 = binary.LittleEndian.Uint64(b)
	case u32 != nil:
		*u32 = binary.LittleEndian.Uint32(b)
	default:
		copy(raw, b)
	}
}

// marshal returns the whole register file in g-packet order.
func (r *Registers) marshal() []byte {
	b := make([]byte, 0, registersSize)
	for n := range regs {
		b = r.appendReg(b, n)
	}
	return b
}

// unmarshal sets the whole register file from g-packet order.
func (r *Registers) unmarshal(b []byte) error {
	if len(b) != registersSize {
		return fmt.Errorf("register file is %d bytes, not %d", len(b), registersSize)
	}
	for n, ri := range regs {
		r.setReg(n, b[:ri.size])
		b = b[ri.size:]
	}
	return nil
}

// x87 tags (SDM Vol. 1 §8.1.7 "x87 FPU Tag Word"): two bits per physical
// register R0-R7.
const (
	tagValid   = 0b00
	tagZero    = 0b01
	tagSpecial = 0b10 // NaN, infinity, denormal, unsupported
	tagEmpty   = 0b11
	tagBits    = 2
	tagMask    = 0b11

	fswTopShift = 11 // FSW bits 11-13: TOP, the physical number of ST(0)
	fswTopMask  = 0b111
	numX87Regs  = 8

	// An 80-bit register is a 64-bit significand, whose top bit is the
	// explicit integer bit J, then a 15-bit exponent and the sign (SDM
	// Vol. 1 §4.2.2, "Floating-Point Data Types").
	x87ExpOffset  = 8
	x87ExpMask    = 0x7fff
	x87ExpSpecial = 0x7fff // infinities and NaNs
	x87IntegerBit = 1 << 63
)

// FullTagWord rebuilds the x87 tag word GDB shows as ftag from what
// FXSAVE (and so KVM_GET_FPU) keeps: the abridged tag, one bit per
// physical register, 1 meaning "not empty" (SDM Vol. 1 §10.5.1.1 "x87
// State"). The class of a non-empty register comes from its value; st is
// in stack order and fsw's TOP says which physical register ST(0) is.
func FullTagWord(abridged uint8, fsw uint16, st [8][10]byte) uint16 {
	top := int(fsw>>fswTopShift) & fswTopMask
	var ftw uint16
	for phys := range numX87Regs {
		tag := uint16(tagEmpty)
		if abridged&(1<<phys) != 0 {
			tag = x87Class(st[(phys-top+numX87Regs)%numX87Regs])
		}
		ftw |= tag << (tagBits * phys)
	}
	return ftw
}

// AbridgedTag converts a full tag word back to FXSAVE's abridged form.
func AbridgedTag(ftw uint16) uint8 {
	var a uint8
	for phys := range numX87Regs {
		if ftw>>(tagBits*phys)&tagMask != tagEmpty {
			a |= 1 << phys
		}
	}
	return a
}

func x87Class(v [10]byte) uint16 {
	significand := binary.LittleEndian.Uint64(v[:x87ExpOffset])
	exp := binary.LittleEndian.Uint16(v[x87ExpOffset:]) & x87ExpMask
	switch {
	case exp == x87ExpSpecial:
		return tagSpecial
	case exp == 0 && significand == 0:
		return tagZero
	case exp == 0:
		return tagSpecial // denormal
	case significand&x87IntegerBit == 0:
		return tagSpecial // unnormal: not supported since the 387
	}
	return tagValid
}

// Package aml encodes ACPI Machine Language, the byte code inside the DSDT
// and SSDT definition blocks (ACPI 6.5 §20, "ACPI Machine Language (AML)
// Specification"). An operating system's AML interpreter (ACPICA in Linux,
// drivers/acpi/acpica) loads those bytes into the ACPI namespace, a tree of
// named objects such as \_SB.PCI0._CRS.
//
// The package is an encoder only. Each ASL construct that govmm needs is a
// Node, and a Node encodes itself to bytes; nodes nest the way ASL source
// does:
//
//	aml.Scope(`\_SB`,
//		aml.Device("PCI0",
//			aml.Name("_HID", aml.EISAID("PNP0A08")),
//			aml.Name("_CRS", aml.ResourceTemplate(
//				aml.WordBusNumber(0x00, 0xFF),
//			)),
//		),
//	)
//
// The encodings match what the reference compiler, iasl, produces for the
// same ASL, so `iasl -d` turns govmm's tables back into readable source.
//
// Names are program constants, so the constructors panic on a malformed name
// or EISA ID, the way regexp.MustCompile panics on a malformed expression.
package aml

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Opcodes and prefixes, ACPI 6.5 §20.2 ("AML Grammar Definition"). The name
// after each constant is the grammar's.
const (
	zeroOp       = 0x00 // ZeroOp: the constant 0
	oneOp        = 0x01 // OneOp: the constant 1
	nameOp       = 0x08 // NameOp: DefName := NameOp NameString DataRefObject
	bytePrefix   = 0x0A // BytePrefix: ByteConst := BytePrefix ByteData
	wordPrefix   = 0x0B // WordPrefix: WordConst := WordPrefix WordData
	dwordPrefix  = 0x0C // DWordPrefix: DWordConst := DWordPrefix DWordData
	stringPrefix = 0x0D // StringPrefix: String := StringPrefix AsciiCharList NullChar
	qwordPrefix  = 0x0E // QWordPrefix: QWordConst := QWordPrefix QWordData
	scopeOp      = 0x10 // ScopeOp: DefScope := ScopeOp PkgLength NameString TermList
	bufferOp     = 0x11 // BufferOp: DefBuffer := BufferOp PkgLength BufferSize ByteList
	packageOp    = 0x12 // PackageOp: DefPackage := PackageOp PkgLength NumElements PackageElementList
	varPackageOp = 0x13 // VarPackageOp: as PackageOp, with a TermArg element count
	methodOp     = 0x14 // MethodOp: DefMethod := MethodOp PkgLength NameString MethodFlags TermList
	extOpPrefix  = 0x5B // ExtOpPrefix: first byte of the two-byte opcodes
	deviceOp     = 0x82 // DeviceOp (after ExtOpPrefix): DefDevice := DeviceOp PkgLength NameString TermList
	returnOp     = 0xA4 // ReturnOp: DefReturn := ReturnOp ArgObject
	onesOp       = 0xFF // OnesOp: all bits set

	nullName        = 0x00 // NullName: a NamePath of no segments
	dualNamePrefix  = 0x2E // DualNamePrefix: two NameSegs follow
	multiNamePrefix = 0x2F // MultiNamePrefix: SegCount (one byte) NameSegs follow
	rootChar        = '\\' // RootChar (0x5C): the path starts at the namespace root
	parentPrefix    = '^'  // ParentPrefixChar (0x5E): the path starts one scope up
	nameSegLen      = 4    // a NameSeg is exactly four characters
	namePad         = '_'  // ASL pads a short NameSeg with underscores: _SB -> _SB_
)

// Limits of the encodings.
const (
	// maxPkgLength is the largest PkgLength: four bytes hold 4+8+8+8 = 28
	// bits (ACPI 6.5 §20.2.4).
	maxPkgLength = 1<<28 - 1
	// maxPackageElements is the most elements a DefPackage can count in its
	// one-byte NumElements; larger packages need DefVarPackage.
	maxPackageElements = math.MaxUint8
	// maxMethodArgs is the most arguments a method can take: ArgCount,
	// bits 0-2 of MethodFlags, is 0 to 7, reaching Arg0 to Arg6.
	maxMethodArgs = 7
	// methodSerialized is bit 3 of MethodFlags, SerializeFlag.
	methodSerialized = 1 << 3
)

// Node is a piece of AML: a term such as Name, Scope or Device, or a data
// object such as an Integer or a Package.
type Node interface {
	// AppendAML appends the node's AML encoding to b and returns the
	// extended slice.
	AppendAML(b []byte) []byte
}

// Encode returns the encoding of the nodes one after another: an AML
// TermList, which is what the body of a definition block is.
func Encode(nodes ...Node) []byte {
	return appendAll(nil, nodes)
}

func appendAll(b []byte, nodes []Node) []byte {
	for _, n := range nodes {
		b = n.AppendAML(b)
	}
	return b
}

// appendPkgLength appends the PkgLength for n bytes of content that follow
// it (ACPI 6.5 §20.2.4, "Package Length Encoding"). The encoded value counts
// the PkgLength bytes themselves as well as the content. Values up to 63 fit
// in one byte (bits 0-5). Longer ones use 2, 3 or 4 bytes: bits 6-7 of the
// lead byte say how many bytes follow, its bits 0-3 hold the low nibble of
// the value, and each following byte holds the next 8 bits (bits 4-5 of the
// lead byte stay zero).
func appendPkgLength(b []byte, n int) []byte {
	const oneByteMax = 1<<6 - 1 // six bits in the single-byte form
	if n+1 <= oneByteMax {
		return append(b, byte(n+1))
	}
	for follow := 1; follow <= 3; follow++ {
		total := n + 1 + follow
		if total < 1<<(4+8*follow) {
			b = append(b, byte(follow<<6)|byte(total&0x0F))
			for i := 0; i < follow; i++ {
				b = append(b, byte(total>>(4+8*i)))
			}
			return b
		}
	}
	panic(fmt.Sprintf("aml: %d bytes exceed the largest PkgLength (%d)", n, maxPkgLength))
}

// appendPkg appends PkgLength and then content.
func appendPkg(b, content []byte) []byte {
	return append(appendPkgLength(b, len(content)), content...)
}

// nameString encodes an ASL name path as an AML NameString (ACPI 6.5
// §20.2.2): an optional root (`\`) or any number of parent (`^`) prefixes,
// then dot-separated segments. Each segment is one to four characters, a
// letter or underscore then letters, digits or underscores, padded to four
// with underscores. It panics on a malformed path.
func nameString(path string) []byte {
	b, err := parseNameString(path)
	if err != nil {
		panic(err)
	}
	return b
}

func parseNameString(path string) ([]byte, error) {
	var b []byte
	rest := path
	switch {
	case len(rest) > 0 && rest[0] == rootChar:
		b = append(b, rootChar)
		rest = rest[1:]
	default:
		for len(rest) > 0 && rest[0] == parentPrefix {
			b = append(b, parentPrefix)
			rest = rest[1:]
		}
	}

	var segs [][nameSegLen]byte
	if rest != "" {
		start := 0
		for i := 0; i <= len(rest); i++ {
			if i < len(rest) && rest[i] != '.' {
				continue
			}
			seg, err := nameSeg(rest[start:i])
			if err != nil {
				return nil, fmt.Errorf("aml: bad name %q: %v", path, err)
			}
			segs = append(segs, seg)
			start = i + 1
		}
	}

	switch n := len(segs); {
	case n == 0:
		if len(b) == 0 {
			return nil, fmt.Errorf("aml: empty name")
		}
		b = append(b, nullName)
	case n == 1:
	case n == 2:
		b = append(b, dualNamePrefix)
	case n <= math.MaxUint8:
		b = append(b, multiNamePrefix, byte(n))
	default:
		return nil, fmt.Errorf("aml: name %q has more than %d segments", path, math.MaxUint8)
	}
	for _, s := range segs {
		b = append(b, s[:]...)
	}
	return b, nil
}

// nameSeg validates and pads one NameSeg (ACPI 6.5 §20.2.2: LeadNameChar is
// 'A'-'Z' or '_'; later characters may also be digits).
func nameSeg(s string) ([nameSegLen]byte, error) {
	seg := [nameSegLen]byte{namePad, namePad, namePad, namePad}
	if len(s) == 0 || len(s) > nameSegLen {
		return seg, fmt.Errorf("segment %q is not 1 to %d characters", s, nameSegLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || ('A' <= c && c <= 'Z') || (i > 0 && '0' <= c && c <= '9')
		if !ok {
			return seg, fmt.Errorf("segment %q: character %q not allowed here", s, c)
		}
		seg[i] = c
	}
	return seg, nil
}

// Integer is an integer constant. It encodes in the fewest bytes, as iasl
// does: ZeroOp, OneOp or OnesOp for 0, 1 and all-ones, else BytePrefix,
// WordPrefix, DWordPrefix or QWordPrefix and the little-endian value (ACPI
// 6.5 §20.2.3, ComputationalData). Integers are 64 bits wide in a definition
// block of revision 2 or later; in a revision-1 block the interpreter keeps
// only the low 32 bits (ACPI 6.5 §5.2.11.1) and OnesOp means 0xFFFFFFFF.
type Integer uint64

// AppendAML implements Node.
func (i Integer) AppendAML(b []byte) []byte {
	switch {
	case i == 0:
		return append(b, zeroOp)
	case i == 1:
		return append(b, oneOp)
	case i == math.MaxUint64:
		return append(b, onesOp)
	case i <= math.MaxUint8:
		return append(b, bytePrefix, byte(i))
	case i <= math.MaxUint16:
		return binary.LittleEndian.AppendUint16(append(b, wordPrefix), uint16(i))
	case i <= math.MaxUint32:
		return binary.LittleEndian.AppendUint32(append(b, dwordPrefix), uint32(i))
	default:
		return binary.LittleEndian.AppendUint64(append(b, qwordPrefix), uint64(i))
	}
}

// String is a string constant: StringPrefix, the ASCII characters, and a
// NUL (ACPI 6.5 §20.2.3). AML strings hold characters 0x01-0x7F only;
// AppendAML panics on anything else.
type String string

// AppendAML implements Node.
func (s String) AppendAML(b []byte) []byte {
	b = append(b, stringPrefix)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7F {
			panic(fmt.Sprintf("aml: string %q: byte %#x is not an AML AsciiChar", string(s), s[i]))
		}
	}
	return append(append(b, s...), 0)
}

// Buffer is a buffer of bytes: BufferOp PkgLength BufferSize ByteList, where
// BufferSize is an Integer (ACPI 6.5 §20.2.5.4, DefBuffer).
type Buffer []byte

// AppendAML implements Node.
func (buf Buffer) AppendAML(b []byte) []byte {
	content := Integer(len(buf)).AppendAML(nil)
	content = append(content, buf...)
	return appendPkg(append(b, bufferOp), content)
}

// Package is a package (an ordered list) of data objects: integers,
// strings, buffers, other packages, or name references made with Path
// (ACPI 6.5 §20.2.5.4, DefPackage). A package of more than 255 elements is
// encoded as DefVarPackage, whose element count is an Integer.
type Package []Node

// AppendAML implements Node.
func (p Package) AppendAML(b []byte) []byte {
	op := byte(packageOp)
	var content []byte
	if len(p) <= maxPackageElements {
		content = append(content, byte(len(p)))
	} else {
		op = varPackageOp
		content = Integer(len(p)).AppendAML(content)
	}
	content = appendAll(content, p)
	return appendPkg(append(b, op), content)
}

// path is a reference to a named object.
type path []byte

// Path returns a reference to the object with the given ASL name path,
// such as `\_SB.LNKA`; in a Package it names an object rather than holding a
// value. It panics on a malformed path.
func Path(name string) Node { return path(nameString(name)) }

// AppendAML implements Node.
func (p path) AppendAML(b []byte) []byte { return append(b, p...) }

// defName is DefName.
type defName struct {
	name  []byte
	value Node
}

// Name declares a named data object, ASL Name(name, value) (ACPI 6.5
// §20.2.5.1, DefName := NameOp NameString DataRefObject). It panics on a
// malformed name.
func Name(name string, value Node) Node {
	return defName{name: nameString(name), value: value}
}

// AppendAML implements Node.
func (n defName) AppendAML(b []byte) []byte {
	b = append(append(b, nameOp), n.name...)
	return n.value.AppendAML(b)
}

// block is the shape shared by Scope, Device and Method: an opcode, a
// PkgLength covering everything after it, a NameString, optional fixed
// bytes (MethodFlags), and a TermList.
type block struct {
	op    []byte
	name  []byte
	flags []byte
	terms []Node
}

// AppendAML implements Node.
func (blk block) AppendAML(b []byte) []byte {
	content := append([]byte(nil), blk.name...)
	content = append(content, blk.flags...)
	content = appendAll(content, blk.terms)
	return appendPkg(append(b, blk.op...), content)
}

// Scope opens an existing scope, ASL Scope(name) { terms } (ACPI 6.5
// §20.2.5.1, DefScope). It panics on a malformed name.
func Scope(name string, terms ...Node) Node {
	return block{op: []byte{scopeOp}, name: nameString(name), terms: terms}
}

// Device declares a device object, ASL Device(name) { terms } (ACPI 6.5
// §20.2.5.2, DefDevice). It panics on a malformed name.
func Device(name string, terms ...Node) Node {
	return block{op: []byte{extOpPrefix, deviceOp}, name: nameString(name), terms: terms}
}

// Method declares a control method, ASL Method(name, args, Serialized or
// NotSerialized) { terms } with sync level 0 (ACPI 6.5 §20.2.5.2,
// DefMethod; MethodFlags bits 0-2 are ArgCount, bit 3 SerializeFlag). It
// panics on a malformed name or an argument count above 7.
func Method(name string, args int, serialized bool, terms ...Node) Node {
	if args < 0 || args > maxMethodArgs {
		panic(fmt.Sprintf("aml: method %s: %d arguments, want 0 to %d", name, args, maxMethodArgs))
	}
	flags := byte(args)
	if serialized {
		flags |= methodSerialized
	}
	return block{op: []byte{methodOp}, name: nameString(name), flags: []byte{flags}, terms: terms}
}

// defReturn is DefReturn.
type defReturn struct{ value Node }

// Return returns value from a method, ASL Return(value) (ACPI 6.5
// §20.2.5.3, DefReturn := ReturnOp ArgObject).
func Return(value Node) Node { return defReturn{value} }

// AppendAML implements Node.
func (r defReturn) AppendAML(b []byte) []byte {
	return r.value.AppendAML(append(b, returnOp))
}

// eisaID is a compressed EISA ID, always a DWordConst.
type eisaID uint32

// EISAID returns the compressed form of a seven-character EISA/PNP ID such
// as "PNP0A08", as the ASL EISAID() macro does. The ID is a three-letter
// manufacturer code and four hex digits of product number (ACPI 6.5 §6.1.5,
// _HID). Each letter becomes five bits ('A' = 1), packed big-endian into two
// bytes after a zero bit; the product number fills the other two bytes,
// also big-endian. The four bytes are then read as a little-endian 32-bit
// integer, so "PNP0A08" → bytes 41 D0 0A 08 → 0x080AD041. Like iasl, the
// value is always encoded as a DWordConst. EISAID panics on a malformed ID.
func EISAID(id string) Node {
	v, err := compressEISAID(id)
	if err != nil {
		panic(err)
	}
	return eisaID(v)
}

// AppendAML implements Node.
func (e eisaID) AppendAML(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(append(b, dwordPrefix), uint32(e))
}

func compressEISAID(id string) (uint32, error) {
	const (
		idLen      = 7
		letters    = 3
		letterBits = 5
		letterBase = 'A' - 1 // 'A' encodes as 1
	)
	if len(id) != idLen {
		return 0, fmt.Errorf("aml: EISA ID %q is not %d characters", id, idLen)
	}
	var vendor uint16
	for i := 0; i < letters; i++ {
		c := id[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("aml: EISA ID %q: %q is not an upper-case letter", id, c)
		}
		vendor = vendor<<letterBits | uint16(c-letterBase)
	}
	var product uint16
	for i := letters; i < idLen; i++ {
		c := id[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("aml: EISA ID %q: %q is not an upper-case hex digit", id, c)
		}
		product = product<<4 | uint16(d)
	}
	bytes := [4]byte{byte(vendor >> 8), byte(vendor), byte(product >> 8), byte(product)}
	return binary.LittleEndian.Uint32(bytes[:]), nil
}

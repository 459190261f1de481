package aml

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Resource is one resource data descriptor (ACPI 6.5 §6.4, "Resource Data
// Types for ACPI"): the binary records that _CRS, _PRS and similar objects
// return to describe the I/O ports, memory ranges, interrupts and bus
// numbers a device decodes or forwards.
type Resource interface {
	// AppendResource appends the descriptor's bytes to b and returns the
	// extended slice.
	AppendResource(b []byte) []byte
}

// Descriptor tags (ACPI 6.5 §6.4.1). A small descriptor starts with one
// byte: bit 7 clear, the item name in bits 3-6 and the length of the rest in
// bits 0-2. A large descriptor starts with bit 7 set and the item name in
// bits 0-6, then a 16-bit length of the rest.
const (
	smallIRQ     = 0x04 // IRQ Descriptor, §6.4.2.1
	smallIO      = 0x08 // I/O Port Descriptor, §6.4.2.5
	smallEndTag  = 0x0F // End Tag, §6.4.2.9
	largeTag     = 0x80
	largeMem32F  = 0x06 // 32-Bit Fixed Memory Range Descriptor, §6.4.3.4
	largeDWordAS = 0x07 // DWord Address Space Descriptor, §6.4.3.5.2
	largeWordAS  = 0x08 // Word Address Space Descriptor, §6.4.3.5.3
	largeQWordAS = 0x0A // QWord Address Space Descriptor, §6.4.3.5.1

	irqNoFlagsLen = 2 // IRQ mask only
	irqFlagsLen   = 3 // IRQ mask and information byte
	ioLen         = 7 // information, _MIN, _MAX, _ALN, _LEN
	endTagLen     = 1 // checksum
	mem32FixedLen = 9 // information, _BAS, _LEN
	maxISAIRQ     = 15

	// IRQ information byte (§6.4.2.1).
	irqEdge      = 1 << 0 // _HE: 1 = edge-triggered, 0 = level-triggered
	irqActiveLow = 1 << 3 // _LL: 1 = active-low, 0 = active-high
	irqShared    = 1 << 4 // _SHR: 1 = shared with other devices

	// Fixed memory range information byte (§6.4.3.4).
	memWritable = 1 << 0 // _RW: 1 = read/write, 0 = read-only

	// I/O port information byte (§6.4.2.5).
	ioDecode16 = 1 << 0 // _DEC: 1 = the device decodes all 16 address bits

	// General flags of an address space descriptor (§6.4.3.5.1).
	asConsumer    = 1 << 0 // 1 = this device consumes the range, 0 = it produces it
	asSubtractive = 1 << 1 // _DEC: 1 = subtractive decode, 0 = positive
	asMinFixed    = 1 << 2 // _MIF: the minimum address is fixed
	asMaxFixed    = 1 << 3 // _MAF: the maximum address is fixed
)

// ResourceTemplate returns a Buffer holding the descriptors followed by an
// End Tag, as the ASL ResourceTemplate() macro builds. The End Tag's
// checksum byte is 0, which means "treat the checksum as valid" (ACPI 6.5
// §6.4.2.9), exactly what iasl emits.
func ResourceTemplate(resources ...Resource) Node {
	var b []byte
	for _, r := range resources {
		b = r.AppendResource(b)
	}
	b = append(b, smallEndTag<<3|endTagLen, 0)
	return Buffer(b)
}

// IO is an I/O Port Descriptor (ACPI 6.5 §6.4.2.5), ASL IO(): Length ports
// whose base may lie anywhere from Min to Max in steps of Alignment; a
// fixed range has Min == Max.
type IO struct {
	Decode16  bool // the device decodes all 16 address bits (else only 10, ISA style)
	Min, Max  uint16
	Alignment uint8
	Length    uint8
}

// AppendResource implements Resource.
func (io IO) AppendResource(b []byte) []byte {
	var info byte
	if io.Decode16 {
		info |= ioDecode16
	}
	b = append(b, smallIO<<3|ioLen, info)
	b = binary.LittleEndian.AppendUint16(b, io.Min)
	b = binary.LittleEndian.AppendUint16(b, io.Max)
	return append(b, io.Alignment, io.Length)
}

// Memory32Fixed is a 32-Bit Fixed Memory Range Descriptor (ACPI 6.5
// §6.4.3.4), ASL Memory32Fixed(ReadWrite|ReadOnly, Base, Length): Length
// bytes of registers at a fixed address that the device decodes, as a
// platform device's _CRS lists them.
type Memory32Fixed struct {
	ReadWrite    bool // writable (else read-only)
	Base, Length uint32
}

// AppendResource implements Resource.
func (m Memory32Fixed) AppendResource(b []byte) []byte {
	var info byte
	if m.ReadWrite {
		info |= memWritable
	}
	b = append(b, largeTag|largeMem32F)
	b = binary.LittleEndian.AppendUint16(b, mem32FixedLen)
	b = append(b, info)
	b = binary.LittleEndian.AppendUint32(b, m.Base)
	return binary.LittleEndian.AppendUint32(b, m.Length)
}

// IRQ is an IRQ Descriptor with its information byte (ACPI 6.5 §6.4.2.1),
// ASL IRQ(Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared) {IRQs}. The
// zero value of each flag is the ISA default: edge, active-high, exclusive.
type IRQ struct {
	IRQs      []uint8 // ISA IRQ numbers, 0 to 15
	Level     bool    // level-triggered rather than edge-triggered
	ActiveLow bool    // active-low rather than active-high
	Shared    bool    // shared with other devices
}

// AppendResource implements Resource. It panics on an IRQ above 15.
func (irq IRQ) AppendResource(b []byte) []byte {
	var info byte
	if !irq.Level {
		info |= irqEdge
	}
	if irq.ActiveLow {
		info |= irqActiveLow
	}
	if irq.Shared {
		info |= irqShared
	}
	b = append(b, smallIRQ<<3|irqFlagsLen)
	b = binary.LittleEndian.AppendUint16(b, irqMask(irq.IRQs))
	return append(b, info)
}

// IRQNoFlags is the short IRQ Descriptor without an information byte (ACPI
// 6.5 §6.4.2.1), ASL IRQNoFlags() {IRQs}: edge-triggered, active-high,
// exclusive, as ISA interrupts are.
type IRQNoFlags []uint8

// AppendResource implements Resource. It panics on an IRQ above 15.
func (irqs IRQNoFlags) AppendResource(b []byte) []byte {
	b = append(b, smallIRQ<<3|irqNoFlagsLen)
	return binary.LittleEndian.AppendUint16(b, irqMask(irqs))
}

// irqMask turns IRQ numbers into the descriptor's 16-bit mask, bit n for
// IRQ n.
func irqMask(irqs []uint8) uint16 {
	var mask uint16
	for _, irq := range irqs {
		if irq > maxISAIRQ {
			panic(fmt.Sprintf("aml: IRQ descriptor: IRQ %d is not 0 to %d", irq, maxISAIRQ))
		}
		mask |= 1 << irq
	}
	return mask
}

// AddressSpaceType is the resource type of an address space descriptor
// (ACPI 6.5 §6.4.3.5.1, byte 3).
type AddressSpaceType uint8

// Resource types.
const (
	MemoryRange    AddressSpaceType = 0
	IORange        AddressSpaceType = 1
	BusNumberRange AddressSpaceType = 2
)

// Type-specific flags of an address space descriptor (ACPI 6.5 §6.4.3.5.5,
// "Resource Type Specific Flags").
const (
	// For MemoryRange: bit 0 is _RW, bits 1-2 are _MEM.
	MemoryReadWrite      = 1 << 0 // read/write (else read-only)
	MemoryCacheable      = 1 << 1 // _MEM = 1
	MemoryWriteCombining = 2 << 1 // _MEM = 2
	MemoryPrefetchable   = 3 << 1 // _MEM = 3
	// For IORange: bits 0-1 are _RNG, which ISA-alias ranges are decoded.
	IONonISAOnly  = 1
	IOISAOnly     = 2
	IOEntireRange = 3
)

// AddressSpace is a Word, DWord or QWord Address Space Descriptor (ACPI 6.5
// §6.4.3.5.1-3), the descriptor a bridge uses to describe the windows of
// memory, I/O ports or bus numbers it forwards to its children. The
// optional resource source fields are not encoded.
//
// WordBusNumber, WordIO, DWordMemory and QWordMemory return the common
// shape (a producer with a fixed window); change fields of the result for
// anything else, for example:
//
//	m := aml.QWordMemory(lo, hi)
//	m.TypeFlags |= aml.MemoryPrefetchable
type AddressSpace struct {
	// Width is the size of the numeric fields: 16 (Word), 32 (DWord) or
	// 64 (QWord) bits.
	Width int
	Type  AddressSpaceType
	// Consumer says the device itself uses the range; a bridge window is
	// produced for the devices below it, so Consumer is false there.
	Consumer bool
	// SubtractiveDecode says the bridge claims every otherwise unclaimed
	// access in the range.
	SubtractiveDecode bool
	// MinFixed and MaxFixed say the window cannot be moved or resized.
	MinFixed, MaxFixed bool
	// TypeFlags are the type-specific flags (MemoryReadWrite | ...,
	// IOEntireRange, or 0 for bus numbers).
	TypeFlags uint8
	// Granularity (_GRA), Min (_MIN), Max (_MAX), Translation (_TRA) and
	// Length (_LEN). For a fixed window, ACPI 6.5 §6.4.3.5 ("Valid
	// combination of Address Space Descriptor fields") requires Length ==
	// Max-Min+1.
	Granularity, Min, Max, Translation, Length uint64
}

// WordBusNumber returns the descriptor for the fixed range of bus numbers
// [min, max] that a bridge produces, ASL WordBusNumber(ResourceProducer,
// MinFixed, MaxFixed, PosDecode, 0, min, max, 0, max-min+1).
func WordBusNumber(min, max uint16) AddressSpace {
	return fixedWindow(16, BusNumberRange, 0, uint64(min), uint64(max))
}

// WordIO returns the descriptor for the fixed I/O window [min, max] that a
// bridge produces, ASL WordIO(ResourceProducer, MinFixed, MaxFixed,
// PosDecode, EntireRange, 0, min, max, 0, max-min+1).
func WordIO(min, max uint16) AddressSpace {
	return fixedWindow(16, IORange, IOEntireRange, uint64(min), uint64(max))
}

// DWordMemory returns the descriptor for the fixed, read/write,
// non-cacheable memory window [min, max] that a bridge produces, ASL
// DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed,
// NonCacheable, ReadWrite, 0, min, max, 0, max-min+1).
func DWordMemory(min, max uint32) AddressSpace {
	return fixedWindow(32, MemoryRange, MemoryReadWrite, uint64(min), uint64(max))
}

// QWordMemory is DWordMemory with 64-bit fields, for windows above 4 GiB.
func QWordMemory(min, max uint64) AddressSpace {
	return fixedWindow(64, MemoryRange, MemoryReadWrite, min, max)
}

func fixedWindow(width int, typ AddressSpaceType, flags uint8, min, max uint64) AddressSpace {
	return AddressSpace{
		Width:     width,
		Type:      typ,
		MinFixed:  true,
		MaxFixed:  true,
		TypeFlags: flags,
		Min:       min,
		Max:       max,
		Length:    max - min + 1,
	}
}

// AppendResource implements Resource. It panics on a Width other than 16,
// 32 or 64, or on a field that does not fit in Width bits.
func (as AddressSpace) AppendResource(b []byte) []byte {
	var item byte
	var limit uint64
	switch as.Width {
	case 16:
		item, limit = largeWordAS, math.MaxUint16
	case 32:
		item, limit = largeDWordAS, math.MaxUint32
	case 64:
		item, limit = largeQWordAS, math.MaxUint64
	default:
		panic(fmt.Sprintf("aml: address space descriptor: width %d is not 16, 32 or 64", as.Width))
	}
	fields := []uint64{as.Granularity, as.Min, as.Max, as.Translation, as.Length}
	for _, f := range fields {
		if f > limit {
			panic(fmt.Sprintf("aml: address space descriptor: %#x does not fit in %d bits", f, as.Width))
		}
	}

	var general byte
	if as.Consumer {
		general |= asConsumer
	}
	if as.SubtractiveDecode {
		general |= asSubtractive
	}
	if as.MinFixed {
		general |= asMinFixed
	}
	if as.MaxFixed {
		general |= asMaxFixed
	}

	const fixedLen = 3 // resource type, general flags, type-specific flags
	length := fixedLen + len(fields)*as.Width/8
	b = append(b, largeTag|item)
	b = binary.LittleEndian.AppendUint16(b, uint16(length))
	b = append(b, byte(as.Type), general, as.TypeFlags)
	for _, f := range fields {
		switch as.Width {
		case 16:
			b = binary.LittleEndian.AppendUint16(b, uint16(f))
		case 32:
			b = binary.LittleEndian.AppendUint32(b, uint32(f))
		case 64:
			b = binary.LittleEndian.AppendUint64(b, f)
		}
	}
	return b
}

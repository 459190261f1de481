// Package mptable builds the Intel MultiProcessor Specification 1.4 tables,
// the pre-ACPI way for firmware to tell an operating system about its
// processors, buses, I/O APIC and interrupt wiring. Linux reads them when
// it finds no ACPI MADT, for example when booted with acpi=off
// (arch/x86/kernel/mpparse.c).
//
// Build returns the MP Floating Pointer Structure (MP spec §4.1) followed
// directly by the MP Configuration Table (§4.2-4.3):
//
//	base+0   MPFloatingPointer  16 bytes, "_MP_", points at base+16
//	base+16  MPConfigTable      "PCMP" header, then the entries
//
// Linux looks for the floating pointer on 16-byte boundaries in the first
// KiB of memory, the last KiB below 640 KiB, the BIOS area 0xF0000-0xFFFFF
// and the EBDA (mpparse.c, default_find_smp_config, following MP spec §4);
// govmm puts it at 0xF0000.
//
// The configuration table says: processors 0 to NumCPUs-1 with local APIC
// IDs equal to their index, processor 0 boots; one ISA bus; one I/O APIC;
// ISA IRQs 0, 1 and 3-15 wired to the I/O APIC input of the same number;
// the 8259 PIC's output on every local APIC's LINT0 (ExtINT) and NMI on
// LINT1. Config.Buses and Config.Interrupts add more buses and interrupt
// sources, such as a PCI bus and its INTx lines.
package mptable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
)

// Limits and defaults.
const (
	// MaxCPUs is the most processors the table describes. Local APIC IDs
	// are 8 bits, 0xFF is the broadcast ID, and the I/O APIC needs an ID
	// of its own (see Config.IOAPICID), so IDs 0-253 go to processors.
	MaxCPUs = 254

	// DefaultSizeLimit is the room Build may use when Config.SizeLimit is
	// zero: 64 KiB, [0xF0000, 0x100000) in govmm's memory map.
	DefaultSizeLimit = 64 << 10

	// DefaultOEMID and DefaultProductID fill the configuration table
	// header's identification strings when Config leaves them empty (MP
	// spec §4.2, Table 4-2).
	DefaultOEMID     = "GOVMM   "
	DefaultProductID = "GOVMMVM     "
)

// Bus types (MP spec §4.3.2, Table 4-8), as they appear in a bus entry,
// blank-padded to six characters.
const (
	BusISA = "ISA"
	BusPCI = "PCI"
)

// InterruptType says what an interrupt source delivers (MP spec §4.3.4,
// Table 4-11).
type InterruptType uint8

// Interrupt types.
const (
	INT    InterruptType = 0 // a vectored interrupt; the vector is in the APIC's redirection entry
	NMI    InterruptType = 1 // a non-maskable interrupt
	SMI    InterruptType = 2 // a system management interrupt
	ExtINT InterruptType = 3 // a vectored interrupt whose vector comes from an external 8259A PIC
)

// Interrupt polarity (PO, bits 0-1) and trigger mode (EL, bits 2-3) of an
// interrupt entry's flags (MP spec §4.3.4, Table 4-10). Conforming means
// "as the source bus's specification says": active-high and edge-triggered
// for ISA, active-low and level-triggered for PCI.
const (
	PolarityConforming = 0
	ActiveHigh         = 1
	ActiveLow          = 3
	TriggerConforming  = 0 << 2
	EdgeTriggered      = 1 << 2
	LevelTriggered     = 3 << 2

	flagsMask        = 0x0F
	reservedPolarity = 2      // PO = 10b is reserved
	reservedTrigger  = 2 << 2 // EL = 10b is reserved
)

// Config describes the machine. The machine must program its devices to
// match: the table only describes the wiring.
type Config struct {
	// NumCPUs is the number of processors, 1 to MaxCPUs; processor i has
	// local APIC ID i and processor 0 is the bootstrap processor.
	NumCPUs int

	// CPUSignature and CPUFeatures are what CPUID leaf 1 returns in EAX
	// (stepping, model, family; MP spec Table 4-5) and EDX (feature flags;
	// Table 4-6) on the vCPUs, as the machine sets it up with
	// KVM_SET_CPUID2.
	CPUSignature uint32
	CPUFeatures  uint32

	// LAPICAddr and IOAPICAddr are the physical bases of the local APICs
	// and the I/O APIC. IOAPICID is the I/O APIC's ID: local and I/O APICs
	// share one ID space on an MP system (§4.3.1: APIC IDs must be
	// unique; 32-bit Linux enforces it, io_apic.c io_apic_get_unique_id),
	// so it must not be one of 0 to NumCPUs-1; NumCPUs itself is the
	// natural choice. Use the same ID in the ACPI MADT.
	LAPICAddr  uint32
	IOAPICAddr uint32
	IOAPICID   uint8

	// ISABusID is the bus ID of the ISA bus, to which the legacy IRQs and
	// the local interrupts are attributed. Firmware usually numbers PCI
	// buses first, from 0, and the ISA bus after them.
	ISABusID uint8

	// Buses are more buses, such as {ID: 0, Type: BusPCI}. IDs must be
	// unique, ISABusID included.
	Buses []Bus

	// Interrupts are more I/O interrupt assignment entries, listed after
	// the ISA IRQs, for example a PCI device's INTA# line.
	Interrupts []Interrupt

	// OEMID (up to 8 characters) and ProductID (up to 12) identify the
	// table, blank-padded; empty means DefaultOEMID and DefaultProductID.
	OEMID     string
	ProductID string

	// SizeLimit is the most bytes the result may take; 0 means
	// DefaultSizeLimit.
	SizeLimit int
}

// Bus is a bus entry (MP spec §4.3.2, Table 4-7).
type Bus struct {
	ID   uint8
	Type string // BusPCI, BusISA, ...: up to 6 characters
}

// Interrupt is an I/O interrupt assignment entry (MP spec §4.3.4, Table
// 4-10): interrupt SourceIRQ of bus SourceBus arrives on input Pin of the
// I/O APIC. On a PCI bus, SourceIRQ is device<<2 | pin, with pin 0 for
// INTA# to 3 for INTD#, the encoding Linux reads and writes
// (arch/x86/kernel/acpi/boot.c, mp_config_acpi_gsi).
type Interrupt struct {
	Type      InterruptType
	Flags     uint16 // a polarity | a trigger mode
	SourceBus uint8
	SourceIRQ uint8
	Pin       uint8
}

// Structure layouts (MP spec §4.1-4.3).
const (
	specRevision = 4 // SPEC_REV 04h: version 1.4

	// MP Floating Pointer Structure (§4.1, Table 4-1).
	fpSignature     = "_MP_"
	fpLength        = 16
	fpAlign         = 16 // found by scanning 16-byte boundaries
	fpPhysPtr       = 4  // u32: PHYSICAL ADDRESS POINTER, the configuration table
	fpLengthField   = 8  // u8: LENGTH in 16-byte paragraphs
	paragraph       = 16 // bytes
	fpLengthParas   = fpLength / paragraph
	fpSpecRev       = 9  // u8: SPEC_REV
	fpChecksum      = 10 // u8: the 16 bytes sum to zero
	fpFeature1      = 11 // u8: 0 = a configuration table is present, else a default configuration number
	fpFeature2      = 12 // u8: bit 7 IMCRP
	configPresent   = 0
	virtualWireMode = 0 // IMCRP clear: no IMCR, virtual wire mode from reset

	// MP Configuration Table Header (§4.2, Table 4-2).
	ctSignature       = "PCMP"
	ctHeaderLength    = 44
	ctBaseLength      = 4  // u16: BASE TABLE LENGTH, header included
	ctSpecRev         = 6  // u8
	ctChecksum        = 7  // u8: the base table sums to zero
	ctOEMID           = 8  // 8 bytes
	ctProductID       = 16 // 12 bytes
	ctOEMTablePointer = 28 // u32: 0, no OEM table
	ctOEMTableSize    = 32 // u16: 0
	ctEntryCount      = 34 // u16
	ctLAPICAddr       = 36 // u32
	ctExtTableLength  = 40 // u16: 0, no extended entries
	ctExtChecksum     = 42 // u8: 0
	oemIDLength       = 8
	productIDLength   = 12

	// Entry types and lengths (§4.3, Table 4-3). Entries are sorted by
	// type, ascending.
	entryProcessor      = 0
	entryBus            = 1
	entryIOAPIC         = 2
	entryIOInterrupt    = 3
	entryLocalInterrupt = 4
	processorLength     = 20
	entryLength         = 8 // every other entry type

	// Processor entry (§4.3.1, Table 4-4).
	cpuEnabled = 1 << 0 // CPU FLAGS: EN, the processor is usable
	cpuBSP     = 1 << 1 // CPU FLAGS: BP, the bootstrap processor
	// lapicVersion is the local APIC version register's low byte: 0x14,
	// an integrated xAPIC, is what KVM's local APIC reports
	// (arch/x86/kvm/lapic.c, APIC_VERSION); Linux treats >= 0x14 as xAPIC
	// (APIC_XAPIC in arch/x86/include/asm/apicdef.h).
	lapicVersion = 0x14

	// I/O APIC entry (§4.3.3, Table 4-9).
	ioapicEnabled = 1 << 0 // I/O APIC FLAGS: EN
	// ioapicVersion is the I/O APIC version register's low byte: 0x11,
	// as on the Intel 82093AA and KVM's in-kernel I/O APIC
	// (arch/x86/kvm/ioapic.h, IOAPIC_VERSION_ID).
	ioapicVersion = 0x11

	// Local interrupt entry (§4.3.5, Table 4-12).
	allLocalAPICs = 0xFF // DESTINATION LOCAL APIC ID: every processor
	lint0         = 0    // LINTIN0: the 8259's INTR output in virtual wire mode
	lint1         = 1    // LINTIN1: NMI

	broadcastAPICID = 0xFF
	busTypeLength   = 6
	isaIRQs         = 16
	isaCascadeIRQ   = 2 // IRQ 2 is where the slave 8259 cascades into the master: no device raises it
)

// Build encodes the floating pointer and the configuration table for cfg,
// laid out from guest-physical address base, which must be 16-byte aligned
// and keep the tables below 4 GiB (the pointer is 32 bits).
func Build(cfg Config, base uint64) ([]byte, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if base%fpAlign != 0 {
		return nil, fmt.Errorf("mptable: base %#x is not %d-byte aligned", base, fpAlign)
	}

	table := buildConfigTable(cfg)
	if len(table) > math.MaxUint16 {
		return nil, fmt.Errorf("mptable: configuration table of %d bytes overflows its 16-bit length", len(table))
	}
	size := fpLength + len(table)
	if size > cfg.SizeLimit {
		return nil, fmt.Errorf("mptable: tables need %d bytes, more than the %d-byte limit", size, cfg.SizeLimit)
	}
	if base+uint64(size) > math.MaxUint32+1 {
		return nil, fmt.Errorf("mptable: tables at %#x+%#x do not fit below 4 GiB", base, size)
	}

	blob := make([]byte, 0, size)
	blob = append(blob, buildFloatingPointer(base+fpLength)...)
	return append(blob, table...), nil
}

// buildFloatingPointer encodes the MP Floating Pointer Structure (MP spec
// §4.1, Table 4-1) pointing at a configuration table at tableAddr.
func buildFloatingPointer(tableAddr uint64) []byte {
	fp := make([]byte, fpLength)
	copy(fp, fpSignature)
	binary.LittleEndian.PutUint32(fp[fpPhysPtr:], uint32(tableAddr))
	fp[fpLengthField] = fpLengthParas
	fp[fpSpecRev] = specRevision
	// No default configuration: the table describes the machine.
	fp[fpFeature1] = configPresent
	// IMCRP clear: there is no IMCR to switch from PIC mode; the machine
	// runs in virtual wire mode, the 8259's output on the local APICs'
	// LINT0, which is how KVM's in-kernel LAPIC takes PIC interrupts.
	fp[fpFeature2] = virtualWireMode
	fp[fpChecksum] = checksum(fp)
	return fp
}

// buildConfigTable encodes the MP Configuration Table (MP spec §4.2-4.3).
func buildConfigTable(cfg Config) []byte {
	le := binary.LittleEndian
	t := make([]byte, ctHeaderLength)
	copy(t, ctSignature)
	t[ctSpecRev] = specRevision
	copy(t[ctOEMID:], cfg.OEMID)
	copy(t[ctProductID:], cfg.ProductID)
	le.PutUint32(t[ctLAPICAddr:], cfg.LAPICAddr)
	// OEM table pointer and size, extended table length and checksum
	// stay zero: there is neither an OEM table nor extended entries.

	entries := 0
	// Processor entries (§4.3.1, Table 4-4), the boot processor first.
	for i := 0; i < cfg.NumCPUs; i++ {
		flags := byte(cpuEnabled)
		if i == 0 {
			flags |= cpuBSP
		}
		t = append(t, entryProcessor, byte(i), lapicVersion, flags)
		t = le.AppendUint32(t, cfg.CPUSignature)
		t = le.AppendUint32(t, cfg.CPUFeatures)
		t = append(t, make([]byte, processorLength-12)...) // reserved
		entries++
	}

	// Bus entries (§4.3.2, Table 4-7), in bus ID order.
	buses := append([]Bus{{ID: cfg.ISABusID, Type: BusISA}}, cfg.Buses...)
	sort.Slice(buses, func(i, j int) bool { return buses[i].ID < buses[j].ID })
	for _, b := range buses {
		t = append(t, entryBus, b.ID)
		t = append(t, fmt.Sprintf("%-*s", busTypeLength, b.Type)...)
		entries++
	}

	// The I/O APIC entry (§4.3.3, Table 4-9).
	t = append(t, entryIOAPIC, cfg.IOAPICID, ioapicVersion, ioapicEnabled)
	t = le.AppendUint32(t, cfg.IOAPICAddr)
	entries++

	// I/O interrupt assignment entries (§4.3.4, Table 4-10): ISA IRQ n on
	// I/O APIC input n. KVM's default GSI routing sends GSI n (n < 16) to
	// both 8259 input n and I/O APIC input n, and govmm's PIT raises GSI 0,
	// so IRQ 0 really is on input 0 (real PCs wire it to input 2). IRQ 2
	// is skipped: it is the 8259 cascade, which no device raises.
	for _, in := range append(isaInterrupts(cfg.ISABusID), cfg.Interrupts...) {
		t = append(t, entryIOInterrupt, byte(in.Type))
		t = le.AppendUint16(t, in.Flags)
		t = append(t, in.SourceBus, in.SourceIRQ, cfg.IOAPICID, in.Pin)
		entries++
	}

	// Local interrupt assignment entries (§4.3.5, Table 4-12): in virtual
	// wire mode the 8259's output reaches LINT0 as ExtINT, and NMI comes
	// in on LINT1, on every local APIC. Linux's default table has the same
	// two (mpparse.c, construct_default_ISA_mptable).
	for _, l := range []struct {
		typ  InterruptType
		lint byte
	}{{ExtINT, lint0}, {NMI, lint1}} {
		t = append(t, entryLocalInterrupt, byte(l.typ))
		t = le.AppendUint16(t, PolarityConforming|TriggerConforming)
		t = append(t, cfg.ISABusID, 0, allLocalAPICs, l.lint)
		entries++
	}

	le.PutUint16(t[ctBaseLength:], uint16(len(t)))
	le.PutUint16(t[ctEntryCount:], uint16(entries))
	t[ctChecksum] = checksum(t)
	return t
}

// isaInterrupts are the ISA IRQs 0, 1 and 3-15, identity-mapped, with
// polarity and trigger conforming to ISA (active-high, edge).
func isaInterrupts(bus uint8) []Interrupt {
	var ins []Interrupt
	for irq := uint8(0); irq < isaIRQs; irq++ {
		if irq == isaCascadeIRQ {
			continue
		}
		ins = append(ins, Interrupt{
			Type:      INT,
			Flags:     PolarityConforming | TriggerConforming,
			SourceBus: bus,
			SourceIRQ: irq,
			Pin:       irq,
		})
	}
	return ins
}

// checksum returns the byte that, stored in a zero checksum field, makes
// all of b sum to zero modulo 256 (MP spec §4.1 and §4.2).
func checksum(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return -sum
}

// withDefaults validates cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("mptable: "+format, args...))
	}

	if cfg.NumCPUs < 1 || cfg.NumCPUs > MaxCPUs {
		bad("NumCPUs is %d, want 1 to %d", cfg.NumCPUs, MaxCPUs)
	}
	if cfg.LAPICAddr == 0 {
		bad("LAPICAddr is not set")
	}
	if cfg.IOAPICAddr == 0 {
		bad("IOAPICAddr is not set")
	}
	switch {
	case cfg.IOAPICID == broadcastAPICID:
		bad("IOAPICID %#x is the broadcast ID", cfg.IOAPICID)
	case int(cfg.IOAPICID) < cfg.NumCPUs:
		bad("IOAPICID %d is also processor %d's local APIC ID; APIC IDs must be unique (use %d or above)",
			cfg.IOAPICID, cfg.IOAPICID, cfg.NumCPUs)
	}

	busIDs := map[uint8]string{cfg.ISABusID: BusISA}
	for _, b := range cfg.Buses {
		if len(b.Type) == 0 || len(b.Type) > busTypeLength || !printable(b.Type) {
			bad("bus %d: type %q is not 1 to %d printable characters", b.ID, b.Type, busTypeLength)
		}
		if prev, dup := busIDs[b.ID]; dup {
			bad("bus ID %d is used by both %s and %s", b.ID, prev, b.Type)
		}
		busIDs[b.ID] = b.Type
	}

	type source struct{ bus, irq uint8 }
	sources := map[source]bool{}
	for _, in := range isaInterrupts(cfg.ISABusID) {
		sources[source{in.SourceBus, in.SourceIRQ}] = true
	}
	for i, in := range cfg.Interrupts {
		if in.Type > ExtINT {
			bad("Interrupts[%d]: type %d is not INT, NMI, SMI or ExtINT", i, in.Type)
		}
		if in.Flags&^flagsMask != 0 || in.Flags&3 == reservedPolarity || in.Flags&(3<<2) == reservedTrigger {
			bad("Interrupts[%d]: flags %#x are not a polarity | a trigger mode", i, in.Flags)
		}
		if _, ok := busIDs[in.SourceBus]; !ok {
			bad("Interrupts[%d]: source bus %d has no bus entry", i, in.SourceBus)
		}
		s := source{in.SourceBus, in.SourceIRQ}
		if sources[s] {
			bad("Interrupts[%d]: bus %d IRQ %d is already assigned", i, in.SourceBus, in.SourceIRQ)
		}
		sources[s] = true
	}

	var err error
	if cfg.OEMID, err = padID("OEMID", cfg.OEMID, DefaultOEMID, oemIDLength); err != nil {
		errs = append(errs, err)
	}
	if cfg.ProductID, err = padID("ProductID", cfg.ProductID, DefaultProductID, productIDLength); err != nil {
		errs = append(errs, err)
	}

	switch {
	case cfg.SizeLimit == 0:
		cfg.SizeLimit = DefaultSizeLimit
	case cfg.SizeLimit < 0:
		bad("SizeLimit is %d", cfg.SizeLimit)
	}
	return cfg, errors.Join(errs...)
}

// padID blank-pads an identification string, or returns def for an empty
// one.
func padID(field, id, def string, n int) (string, error) {
	if id == "" {
		return def, nil
	}
	if len(id) > n || !printable(id) {
		return "", fmt.Errorf("mptable: %s %q is not up to %d printable characters", field, id, n)
	}
	return fmt.Sprintf("%-*s", n, id), nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

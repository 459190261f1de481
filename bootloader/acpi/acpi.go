// Package acpi builds the ACPI tables that describe a govmm machine to the
// guest: how many processors it has and where its interrupt controllers are
// (MADT), where the fixed power-management hardware sits and how to reset
// the machine (FADT), and the AML namespace with the soft-off sleep state
// (DSDT). The tables follow ACPI 6.5.
//
// Build lays every table out contiguously in one blob, to be copied into
// guest memory at the base address it was built for:
//
//	RSDP  Root System Description Pointer (ACPI 6.5 §5.2.5), first, at base
//	XSDT  Extended System Description Table (§5.2.8): 64-bit table pointers
//	RSDT  Root System Description Table (§5.2.7): the same, 32-bit
//	FADT  Fixed ACPI Description Table (§5.2.9), signature "FACP"
//	FACS  Firmware ACPI Control Structure (§5.2.10), 64-byte aligned
//	DSDT  Differentiated System Description Table (§5.2.11.1): AML
//	MADT  Multiple APIC Description Table (§5.2.12), signature "APIC"
//	...   extra tables from Config.Tables (an MCFG, for example)
//
// The XSDT and RSDT list the FADT, the MADT and the extra tables; the FADT
// points at the FACS and the DSDT. Every table after the RSDP starts on a
// 16-byte boundary.
//
// The guest finds the RSDP in two ways: govmm passes its address in
// boot_params.acpi_rsdp_addr (Linux Documentation/arch/x86/zero-page.rst),
// and Linux also scans 0xE0000-0xFFFFF on 16-byte boundaries for the
// signature "RSD PTR " (ACPI 6.5 §5.2.5.1; drivers/acpi/acpica/tbxfroot.c,
// acpi_find_root_pointer). Putting the RSDP first at memory.BIOSROMStart
// satisfies both.
package acpi

import (
	"errors"
	"fmt"
	"math"

	"github.com/govmm/govmm/bootloader/acpi/aml"
)

// Limits and defaults.
const (
	// MaxCPUs is the most processors the tables describe. Each gets a
	// Processor Local APIC structure, whose APIC ID and ACPI processor UID
	// are 8 bits (ACPI 6.5 §5.2.12.2, Table 5.22). APIC ID 0xFF is the
	// xAPIC broadcast ID and UID 0xFF means "all processors" in the Local
	// APIC NMI structure (§5.2.12.7), so both stop at 0xFE; 254 processors
	// (IDs 0-253) also leave ID 254 free for the I/O APIC in the MP table,
	// where local and I/O APICs share one ID space. More processors would
	// need Processor Local x2APIC structures (type 9, §5.2.12.12) with
	// 32-bit IDs, which Linux only honours for APIC IDs of 255 and up when
	// xAPIC entries are also present (arch/x86/kernel/acpi/boot.c,
	// acpi_parse_x2apic), and an x2APIC-enabled guest.
	MaxCPUs = 254

	// DefaultSizeLimit is the room Build may use when Config.SizeLimit is
	// zero: 64 KiB, [0xE0000, 0xF0000) in govmm's memory map, below the MP
	// table at 0xF0000.
	DefaultSizeLimit = 64 << 10

	// DefaultOEMID and DefaultOEMTableID fill the OEM fields of every
	// header when Config leaves them empty (ACPI 6.5 §5.2.6, Table 5.4).
	DefaultOEMID      = "GOVMM "
	DefaultOEMTableID = "GOVMMVM "
)

// Config describes the machine the tables are built for. The machine must
// wire the same values into its devices: the tables only describe hardware,
// they do not create it.
type Config struct {
	// NumCPUs is the number of processors, 1 to MaxCPUs. Processor i has
	// local APIC ID i and ACPI processor UID i; processor 0 boots.
	NumCPUs int

	// LAPICAddr is the physical base of the local APICs, IOAPICAddr that of
	// the I/O APIC, and IOAPICID the I/O APIC's ID (0 to 0xFE); the I/O
	// APIC's inputs are GSIs 0 and up. Use the same ID as the MP table.
	LAPICAddr  uint32
	IOAPICAddr uint32
	IOAPICID   uint8

	// SCIIRQ is the ISA IRQ on which the power-management device raises
	// the System Control Interrupt, level-triggered and active-high; with
	// identity-mapped ISA IRQs it is also the GSI and the I/O APIC pin.
	// It must be 1 or 3 to 15 (not the timer's IRQ 0 or the cascade, 2).
	SCIIRQ uint8

	// PM1aEventBlock, PM1aControlBlock and PMTimerBlock are the I/O ports
	// of the fixed-hardware register blocks: PM1_STS then PM1_EN (2 bytes
	// each), PM1_CNT (2 bytes) and PM_TMR (4 bytes), the lengths the FADT
	// declares (ACPI 6.5 Table 5.9). PMTimerBlock 0 means there is no PM
	// timer. PMTimer32Bit says the timer counts 32 bits rather than 24.
	//
	// The PM1 control register must read back SCI_EN (bit 0) set: the FADT
	// has no SMI_CMD port, so the machine is always in ACPI mode.
	PM1aEventBlock   uint16
	PM1aControlBlock uint16
	PMTimerBlock     uint16
	PMTimer32Bit     bool

	// ResetPort and ResetValue are the reset register: writing ResetValue
	// to I/O port ResetPort resets the machine (for example 0x06 to the
	// PC reset control register at 0xCF9).
	ResetPort  uint16
	ResetValue uint8

	// S5SleepType is the SLP_TYP value (0 to 7) that, written to PM1_CNT
	// together with SLP_EN, powers the machine off.
	S5SleepType uint8

	// OEMID (up to 6 characters) and OEMTableID (up to 8) go into every
	// table header, space-padded; empty means DefaultOEMID and
	// DefaultOEMTableID.
	OEMID      string
	OEMTableID string

	// SystemBus holds extra AML placed inside Scope (\_SB) of the DSDT:
	// devices on the system bus, such as a PCI host bridge. Root holds
	// extra AML placed at the root of the namespace, after \_SB.
	SystemBus []aml.Node
	Root      []aml.Node

	// Tables are extra tables, listed in the XSDT and RSDT after the MADT.
	Tables []Table

	// SizeLimit is the most bytes the blob may take; 0 means
	// DefaultSizeLimit.
	SizeLimit int
}

// Table is a system description table for Build to add: a header (ACPI 6.5
// §5.2.6) with the given signature and revision, followed by Body. Build
// fills in the rest of the header (length, checksum, OEM and creator IDs).
// An MCFG (PCI Firmware Specification 3.0 §4.1.2), for example, is
// Table{Signature: "MCFG", Revision: 1, Body: ...}, whose body starts with
// eight reserved bytes and then one 16-byte entry per ECAM segment.
type Table struct {
	Signature string
	Revision  uint8
	Body      []byte
}

// reservedSignatures are the tables Build writes itself.
var reservedSignatures = map[string]bool{
	sigXSDT: true, sigRSDT: true, sigFADT: true, sigFACS: true, sigDSDT: true, sigMADT: true,
}

// Build encodes the tables for cfg, laid out from guest-physical address
// base, which must be 16-byte aligned and leave the blob below 4 GiB (the
// RSDT and FADT hold 32-bit pointers). It returns the blob and the address
// of the RSDP, which is base.
func Build(cfg Config, base uint64) (blob []byte, rsdpAddr uint64, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, 0, err
	}
	if base%rsdpAlign != 0 {
		return nil, 0, fmt.Errorf("acpi: base %#x is not %d-byte aligned", base, rsdpAlign)
	}
	ids := oemIDs{oemID: cfg.OEMID, oemTableID: cfg.OEMTableID}

	// Tables that do not point at other tables are encoded first; the
	// rest are reserved at their final size and filled in once every
	// address is known.
	dsdt := buildDSDT(ids, cfg)
	madt := buildMADT(ids, cfg)
	facs := buildFACS()
	var extras [][]byte
	for _, t := range cfg.Tables {
		extras = append(extras, ids.encode(t))
	}
	nEntries := 2 + len(extras) // FADT, MADT, extras

	l := layout{base: base}
	rsdpOff := l.place(rsdpLength, rsdpAlign)
	xsdtOff := l.place(headerLength+xsdtEntrySize*nEntries, tableAlign)
	rsdtOff := l.place(headerLength+rsdtEntrySize*nEntries, tableAlign)
	fadtOff := l.place(fadtLength, tableAlign)
	facsOff := l.place(len(facs), facsAlign)
	dsdtOff := l.place(len(dsdt), tableAlign)
	madtOff := l.place(len(madt), tableAlign)
	extraOffs := make([]int, len(extras))
	for i, t := range extras {
		extraOffs[i] = l.place(len(t), tableAlign)
	}

	if l.size > cfg.SizeLimit {
		return nil, 0, fmt.Errorf("acpi: tables need %d bytes, more than the %d-byte limit", l.size, cfg.SizeLimit)
	}
	if base+uint64(l.size) > math.MaxUint32+1 {
		return nil, 0, fmt.Errorf("acpi: tables at %#x+%#x do not fit below 4 GiB", base, l.size)
	}

	addr := func(off int) uint64 { return base + uint64(off) }
	entries := []uint64{addr(fadtOff), addr(madtOff)}
	for _, off := range extraOffs {
		entries = append(entries, addr(off))
	}

	blob = make([]byte, l.size)
	copy(blob[rsdpOff:], buildRSDP(ids, addr(rsdtOff), addr(xsdtOff)))
	copy(blob[xsdtOff:], buildXSDT(ids, entries))
	copy(blob[rsdtOff:], buildRSDT(ids, entries))
	copy(blob[fadtOff:], buildFADT(ids, cfg, addr(facsOff), addr(dsdtOff)))
	copy(blob[facsOff:], facs)
	copy(blob[dsdtOff:], dsdt)
	copy(blob[madtOff:], madt)
	for i, t := range extras {
		copy(blob[extraOffs[i]:], t)
	}
	return blob, addr(rsdpOff), nil
}

// layout hands out offsets in the blob for structures whose guest-physical
// addresses must be aligned.
type layout struct {
	base uint64
	size int
}

// place reserves n bytes at the first offset whose address is a multiple
// of align and returns that offset.
func (l *layout) place(n, align int) int {
	a := uint64(align)
	addr := (l.base + uint64(l.size) + a - 1) / a * a
	off := int(addr - l.base)
	l.size = off + n
	return off
}

// withDefaults validates cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("acpi: "+format, args...))
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
	if cfg.IOAPICID == broadcastAPICID {
		bad("IOAPICID %#x is the broadcast ID", cfg.IOAPICID)
	}
	if cfg.SCIIRQ == timerIRQ || cfg.SCIIRQ == cascadeIRQ || cfg.SCIIRQ > maxISAIRQ {
		bad("SCIIRQ is %d, want an ISA IRQ other than %d (timer) and %d (cascade)", cfg.SCIIRQ, timerIRQ, cascadeIRQ)
	}
	checkBlock := func(name string, port uint16, length int, required bool) {
		switch {
		case port == 0 && required:
			bad("%s is not set", name)
		case int(port)+length > math.MaxUint16+1:
			bad("%s %#x+%d runs past the end of I/O space", name, port, length)
		}
	}
	checkBlock("PM1aEventBlock", cfg.PM1aEventBlock, pm1EventLength, true)
	checkBlock("PM1aControlBlock", cfg.PM1aControlBlock, pm1ControlLength, true)
	checkBlock("PMTimerBlock", cfg.PMTimerBlock, pmTimerLength, false)
	if cfg.PMTimer32Bit && cfg.PMTimerBlock == 0 {
		bad("PMTimer32Bit is set but there is no PMTimerBlock")
	}
	if cfg.ResetPort == 0 {
		bad("ResetPort is not set")
	}
	if cfg.S5SleepType > maxSleepType {
		bad("S5SleepType is %d, want 0 to %d (SLP_TYP is 3 bits)", cfg.S5SleepType, maxSleepType)
	}

	var err error
	if cfg.OEMID, err = padID("OEMID", cfg.OEMID, DefaultOEMID, oemIDLength); err != nil {
		errs = append(errs, err)
	}
	if cfg.OEMTableID, err = padID("OEMTableID", cfg.OEMTableID, DefaultOEMTableID, oemTableIDLength); err != nil {
		errs = append(errs, err)
	}

	for i, t := range cfg.Tables {
		switch {
		case !validSignature(t.Signature):
			bad("Tables[%d]: signature %q is not 4 upper-case letters, digits or underscores", i, t.Signature)
		case reservedSignatures[t.Signature]:
			bad("Tables[%d]: Build writes the %s itself", i, t.Signature)
		}
	}

	switch {
	case cfg.SizeLimit == 0:
		cfg.SizeLimit = DefaultSizeLimit
	case cfg.SizeLimit < 0:
		bad("SizeLimit is %d", cfg.SizeLimit)
	}
	return cfg, errors.Join(errs...)
}

// padID space-pads an OEM ID field, or returns def for an empty one.
func padID(field, id, def string, n int) (string, error) {
	if id == "" {
		return def, nil
	}
	if len(id) > n {
		return "", fmt.Errorf("acpi: %s %q is longer than %d characters", field, id, n)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < ' ' || id[i] > '~' {
			return "", fmt.Errorf("acpi: %s %q is not printable ASCII", field, id)
		}
	}
	for len(id) < n {
		id += " "
	}
	return id, nil
}

func validSignature(s string) bool {
	if len(s) != signatureLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')) {
			return false
		}
	}
	return true
}

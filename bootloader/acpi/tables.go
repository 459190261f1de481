package acpi

import (
	"encoding/binary"

	"github.com/govmm/govmm/bootloader/acpi/aml"
)

var le = binary.LittleEndian

// Signatures (ACPI 6.5 §5.2.5.3 and Table 5.5).
const (
	sigRSDP = "RSD PTR " // note the trailing space: eight bytes
	sigXSDT = "XSDT"
	sigRSDT = "RSDT"
	sigFADT = "FACP" // not "FADT"
	sigFACS = "FACS"
	sigDSDT = "DSDT"
	sigMADT = "APIC" // not "MADT"
)

// Alignment of the structures in the blob.
const (
	// rsdpAlign: OSPM looks for the RSDP on 16-byte boundaries (ACPI 6.5
	// §5.2.5.1).
	rsdpAlign = 16
	// facsAlign: the FACS must start on a 64-byte boundary (ACPI 6.5
	// §5.2.10).
	facsAlign = 64
	// tableAlign is govmm's choice for every other table: nothing requires
	// it, but it keeps tables on the same grid as the RSDP scan and makes
	// hex dumps readable.
	tableAlign = 16
)

// System description table header (ACPI 6.5 §5.2.6, Table 5.4).
const (
	headerLength     = 36
	signatureLength  = 4
	oemIDLength      = 6
	oemTableIDLength = 8

	hdrLength          = 4  // u32: length of the whole table, header included
	hdrRevision        = 8  // u8
	hdrChecksum        = 9  // u8: the whole table sums to zero
	hdrOEMID           = 10 // 6 bytes
	hdrOEMTableID      = 16 // 8 bytes
	hdrOEMRevision     = 24 // u32
	hdrCreatorID       = 28 // 4 bytes: the tool that made the table
	hdrCreatorRevision = 32 // u32

	// oemRevision, creatorID and creatorRevision identify govmm's tables.
	// For AML tables the creator is normally the ASL compiler; govmm's
	// encoder stands in for it.
	oemRevision     = 1
	creatorID       = "GVMM"
	creatorRevision = 1
)

// checksum returns the byte that, stored in a checksum field holding zero,
// makes all of b sum to zero modulo 256 (ACPI 6.5 §5.2.5.3 and §5.2.6).
func checksum(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return -sum
}

// oemIDs are the identifiers every header carries, already space-padded.
type oemIDs struct {
	oemID, oemTableID string
}

// header returns a table header with the length and checksum left zero
// for seal.
func (ids oemIDs) header(signature string, revision uint8) []byte {
	h := make([]byte, headerLength)
	copy(h, signature)
	h[hdrRevision] = revision
	copy(h[hdrOEMID:], ids.oemID)
	copy(h[hdrOEMTableID:], ids.oemTableID)
	le.PutUint32(h[hdrOEMRevision:], oemRevision)
	copy(h[hdrCreatorID:], creatorID)
	le.PutUint32(h[hdrCreatorRevision:], creatorRevision)
	return h
}

// seal stores the table's length and checksum in its header.
func seal(t []byte) []byte {
	le.PutUint32(t[hdrLength:], uint32(len(t)))
	t[hdrChecksum] = 0
	t[hdrChecksum] = checksum(t)
	return t
}

// encode returns an extra table with its header.
func (ids oemIDs) encode(t Table) []byte {
	return seal(append(ids.header(t.Signature, t.Revision), t.Body...))
}

// Root System Description Pointer (ACPI 6.5 §5.2.5.3, Table 5.3).
const (
	rsdpRevision = 2 // ACPI 2.0 and later: has Length, XsdtAddress and the extended checksum

	rsdpChecksum    = 8  // u8: checksum of the first 20 bytes (the ACPI 1.0 structure)
	rsdpOEMID       = 9  // 6 bytes
	rsdpRev         = 15 // u8
	rsdpRSDTAddress = 16 // u32
	rsdpLengthField = 20 // u32: length of the whole structure
	rsdpXSDTAddress = 24 // u64
	rsdpExtChecksum = 32 // u8: checksum of all 36 bytes
	rsdpV1Length    = 20
	rsdpLength      = 36
)

func buildRSDP(ids oemIDs, rsdt, xsdt uint64) []byte {
	r := make([]byte, rsdpLength)
	copy(r, sigRSDP)
	copy(r[rsdpOEMID:], ids.oemID)
	r[rsdpRev] = rsdpRevision
	le.PutUint32(r[rsdpRSDTAddress:], uint32(rsdt))
	le.PutUint32(r[rsdpLengthField:], rsdpLength)
	le.PutUint64(r[rsdpXSDTAddress:], xsdt)
	// The ACPI 1.0 checksum covers the first 20 bytes, the extended one
	// all 36, including the first checksum; so compute them in that order.
	r[rsdpChecksum] = checksum(r[:rsdpV1Length])
	r[rsdpExtChecksum] = checksum(r)
	return r
}

// XSDT and RSDT (ACPI 6.5 §5.2.8 and §5.2.7, Tables 5.8 and 5.7): a header
// followed by the physical addresses of the other tables, 64-bit in the
// XSDT and 32-bit in the RSDT. ACPI 2.0+ operating systems use the XSDT;
// the RSDT is for ACPI 1.0 ones. The FADT comes first by convention.
const (
	xsdtRevision  = 1
	rsdtRevision  = 1
	xsdtEntrySize = 8
	rsdtEntrySize = 4
)

func buildXSDT(ids oemIDs, entries []uint64) []byte {
	t := ids.header(sigXSDT, xsdtRevision)
	for _, e := range entries {
		t = le.AppendUint64(t, e)
	}
	return seal(t)
}

func buildRSDT(ids oemIDs, entries []uint64) []byte {
	t := ids.header(sigRSDT, rsdtRevision)
	for _, e := range entries {
		t = le.AppendUint32(t, uint32(e))
	}
	return seal(t)
}

// Generic Address Structure (ACPI 6.5 §5.2.3.2, Table 5.1): how the FADT's
// X_ fields locate a register.
const (
	gasLength      = 12
	gasSystemIO    = 1 // Address Space ID: system I/O
	gasAccessByte  = 1 // Access Size
	gasAccessWord  = 2
	gasAccessDWord = 3
	gasSpaceID     = 0 // u8
	gasBitWidth    = 1 // u8: register width in bits
	gasBitOffset   = 2 // u8
	gasAccessSize  = 3 // u8
	gasAddress     = 4 // u64
	bitsPerByte    = 8
)

// putGAS writes a system I/O register of length bytes at port into the GAS
// at t[off:]. A zero port leaves the GAS all zero, meaning "no register".
// ACPICA checks that BitWidth equals the legacy length field times 8
// (drivers/acpi/acpica/tbfadt.c, acpi_tb_convert_fadt) and, for FADT
// registers, takes the access width from BitWidth rather than AccessSize
// (hwregs.c, acpi_hw_get_access_bit_width); AccessSize still names the
// width of the individual registers in the block for other readers.
func putGAS(t []byte, off int, port uint16, length int, access byte) {
	if port == 0 {
		return
	}
	g := t[off : off+gasLength]
	g[gasSpaceID] = gasSystemIO
	g[gasBitWidth] = byte(length * bitsPerByte)
	g[gasBitOffset] = 0
	g[gasAccessSize] = access
	le.PutUint64(g[gasAddress:], uint64(port))
}

// Fixed ACPI Description Table (ACPI 6.5 §5.2.9, Table 5.9). Offsets are
// from the start of the table, header included.
const (
	fadtRevision      = 6 // ACPI 6.x ...
	fadtMinorRevision = 5 // ... .5
	fadtLength        = 276

	fadtFirmwareCtrl       = 36  // u32: FIRMWARE_CTRL, the FACS
	fadtDSDT               = 40  // u32: DSDT
	fadtPreferredPMProfile = 45  // u8
	fadtSCIInt             = 46  // u16: SCI_INT
	fadtSMICmd             = 48  // u32: SMI_CMD
	fadtPM1aEvtBlk         = 56  // u32: PM1a_EVT_BLK
	fadtPM1aCntBlk         = 64  // u32: PM1a_CNT_BLK
	fadtPMTmrBlk           = 76  // u32: PM_TMR_BLK
	fadtPM1EvtLen          = 88  // u8: PM1_EVT_LEN
	fadtPM1CntLen          = 89  // u8: PM1_CNT_LEN
	fadtPMTmrLen           = 91  // u8: PM_TMR_LEN
	fadtPLvl2Lat           = 96  // u16: P_LVL2_LAT
	fadtPLvl3Lat           = 98  // u16: P_LVL3_LAT
	fadtIAPCBootArch       = 109 // u16: IAPC_BOOT_ARCH
	fadtFlags              = 112 // u32: Flags
	fadtResetReg           = 116 // GAS: RESET_REG
	fadtResetValue         = 128 // u8: RESET_VALUE
	fadtMinorVersion       = 131 // u8: FADT Minor Version
	fadtXFirmwareCtrl      = 132 // u64: X_FIRMWARE_CTRL
	fadtXDSDT              = 140 // u64: X_DSDT
	fadtXPM1aEvtBlk        = 148 // GAS: X_PM1a_EVT_BLK
	fadtXPM1aCntBlk        = 172 // GAS: X_PM1a_CNT_BLK
	fadtXPMTmrBlk          = 208 // GAS: X_PM_TMR_BLK

	// Register block lengths in bytes. PM1_EVT_LEN covers PM1_STS and
	// PM1_EN, 2 bytes each (the spec asks for at least 4); PM1_CNT_LEN
	// must be at least 2; PM_TMR_LEN is 4 if there is a PM timer and 0
	// otherwise.
	pm1EventLength   = 4
	pm1ControlLength = 2
	pmTimerLength    = 4
	resetRegLength   = 1

	// pmProfileUnspecified: Preferred_PM_Profile 0, no preference. A VM
	// is not any one of the listed platform types.
	pmProfileUnspecified = 0

	// P_LVL2_LAT above 100 µs and P_LVL3_LAT above 1000 µs mean C2 and C3
	// are not supported. The vCPUs only have C1 (HLT).
	c2NotSupported = 101
	c3NotSupported = 1001

	// IAPC_BOOT_ARCH flags (ACPI 6.5 §5.2.9.3, Table 5.11). Linux's
	// acpi_parse_fadt (arch/x86/kernel/acpi/boot.c) reads them: without
	// 8042 it decides there is no i8042 keyboard controller; with "CMOS
	// RTC not present" it would not register the RTC; with "VGA not
	// present" it stops probing the legacy VGA ports.
	bootArchLegacyDevices  = 1 << 0 // LEGACY_DEVICES: ISA-style devices (serial, RTC, PIT) exist
	bootArch8042           = 1 << 1 // 8042: a keyboard controller at ports 0x60/0x64
	bootArchVGANotPresent  = 1 << 2 // VGA Not Present: do not probe VGA
	bootArchMSINotSupport  = 1 << 3 // MSI Not Supported: left clear, MSI works
	bootArchPCIeASPM       = 1 << 4 // PCIe ASPM Controls: left clear
	bootArchCMOSNotPresent = 1 << 5 // CMOS RTC Not Present: left clear, there is an RTC
	govmmBootArch          = bootArchLegacyDevices | bootArch8042 | bootArchVGANotPresent

	// Fixed feature flags (ACPI 6.5 Table 5.10).
	flagWBINVD      = 1 << 0  // WBINVD works: caches can be flushed before sleep
	flagProcC1      = 1 << 2  // PROC_C1: C1 (HLT) works on all processors
	flagPwrButton   = 1 << 4  // PWR_BUTTON: 1 = no fixed-feature power button
	flagSlpButton   = 1 << 5  // SLP_BUTTON: 1 = no fixed-feature sleep button
	flagTmrValExt   = 1 << 8  // TMR_VAL_EXT: the PM timer counts 32 bits, not 24
	flagResetRegSup = 1 << 10 // RESET_REG_SUP: RESET_REG and RESET_VALUE are valid
	flagHWReduced   = 1 << 20 // HW_REDUCED_ACPI: left clear, govmm has the fixed hardware
	govmmFADTFlags  = flagWBINVD | flagProcC1 | flagPwrButton | flagSlpButton | flagResetRegSup
)

// buildFADT encodes the FADT. Every register block is given twice,
// consistently: as a 32-bit port with a length (the ACPI 1.0 fields) and
// as a Generic Address Structure (the X_ fields); ACPICA prefers the X_
// form and warns if the two disagree (tbfadt.c, acpi_tb_convert_fadt). The
// FACS and DSDT addresses are likewise in both FIRMWARE_CTRL/DSDT and
// X_FIRMWARE_CTRL/X_DSDT; a usable 64-bit address supersedes the 32-bit
// one (tbfadt.c, acpi_tb_select_address).
func buildFADT(ids oemIDs, cfg Config, facs, dsdt uint64) []byte {
	t := ids.header(sigFADT, fadtRevision)
	t = append(t, make([]byte, fadtLength-headerLength)...)

	le.PutUint32(t[fadtFirmwareCtrl:], uint32(facs))
	le.PutUint32(t[fadtDSDT:], uint32(dsdt))
	le.PutUint64(t[fadtXFirmwareCtrl:], facs)
	le.PutUint64(t[fadtXDSDT:], dsdt)
	t[fadtPreferredPMProfile] = pmProfileUnspecified

	// SCI_INT is the SCI's 8259 vector on a PIC system, its GSI on an APIC
	// one; with identity-mapped ISA IRQs they are the same number. The
	// MADT adds an override making it level-triggered, active-high.
	le.PutUint16(t[fadtSCIInt:], uint16(cfg.SCIIRQ))

	// SMI_CMD = 0, and so ACPI_ENABLE = ACPI_DISABLE = 0: there is no
	// legacy (SMM-owned) mode to leave. ACPICA then assumes the machine is
	// already in ACPI mode and never writes a mode switch
	// (drivers/acpi/acpica/hwacpi.c, acpi_hw_get_mode and
	// acpi_hw_set_mode). The PM1 control register reads SCI_EN = 1 to match.
	le.PutUint32(t[fadtSMICmd:], 0)

	le.PutUint32(t[fadtPM1aEvtBlk:], uint32(cfg.PM1aEventBlock))
	t[fadtPM1EvtLen] = pm1EventLength
	putGAS(t, fadtXPM1aEvtBlk, cfg.PM1aEventBlock, pm1EventLength, gasAccessWord)

	le.PutUint32(t[fadtPM1aCntBlk:], uint32(cfg.PM1aControlBlock))
	t[fadtPM1CntLen] = pm1ControlLength
	putGAS(t, fadtXPM1aCntBlk, cfg.PM1aControlBlock, pm1ControlLength, gasAccessWord)

	flags := uint32(govmmFADTFlags)
	if cfg.PMTimerBlock != 0 {
		le.PutUint32(t[fadtPMTmrBlk:], uint32(cfg.PMTimerBlock))
		t[fadtPMTmrLen] = pmTimerLength
		putGAS(t, fadtXPMTmrBlk, cfg.PMTimerBlock, pmTimerLength, gasAccessDWord)
		if cfg.PMTimer32Bit {
			flags |= flagTmrValExt
		}
	}

	// No PM1b, PM2 or GPE blocks: their fields stay zero.

	le.PutUint16(t[fadtPLvl2Lat:], c2NotSupported)
	le.PutUint16(t[fadtPLvl3Lat:], c3NotSupported)
	le.PutUint16(t[fadtIAPCBootArch:], govmmBootArch)
	le.PutUint32(t[fadtFlags:], flags)

	// The reset register: Linux's preferred reboot method on x86 writes
	// RESET_VALUE to it (drivers/acpi/reboot.c, acpi_reboot; ACPICA
	// hwxface.c, acpi_reset, always with an 8-bit access).
	putGAS(t, fadtResetReg, cfg.ResetPort, resetRegLength, gasAccessByte)
	t[fadtResetValue] = cfg.ResetValue

	t[fadtMinorVersion] = fadtMinorRevision
	return seal(t)
}

// Firmware ACPI Control Structure (ACPI 6.5 §5.2.10, Table 5.13). It has no
// standard header and no checksum. OSPM writes to it (the waking vector
// and the global lock), so it must be in writable memory; govmm's BIOS
// area is ordinary guest RAM marked reserved in the e820 map.
const (
	facsLength      = 64
	facsVersion     = 2 // the version ACPI 6.5 defines
	facsLengthField = 4
	facsVersionOff  = 32
)

func buildFACS() []byte {
	f := make([]byte, facsLength)
	copy(f, sigFACS)
	le.PutUint32(f[facsLengthField:], facsLength)
	// Hardware signature, waking vectors, global lock and flags are all
	// zero: no S4BIOS, no 64-bit wake, nothing owned yet.
	f[facsVersionOff] = facsVersion
	return f
}

// Multiple APIC Description Table (ACPI 6.5 §5.2.12, Tables 5.19-5.28).
const (
	madtRevision         = 6 // ACPI 6.5
	madtLocalAPICAddress = 36
	madtFlags            = 40
	madtPCATCompat       = 1 << 0 // PCAT_COMPAT: there are also dual 8259 PICs to mask

	// Interrupt controller structure types and lengths (Table 5.21).
	madtTypeLocalAPIC   = 0
	madtLenLocalAPIC    = 8
	madtTypeIOAPIC      = 1
	madtLenIOAPIC       = 12
	madtTypeISO         = 2 // Interrupt Source Override
	madtLenISO          = 10
	madtTypeLocalAPICNM = 4 // Local APIC NMI
	madtLenLocalAPICNMI = 6

	localAPICEnabled = 1 << 0 // Local APIC Flags (Table 5.23): Enabled

	// MPS INTI flags (ACPI 6.5 §5.2.12.5, Table 5.26): bits 0-1 polarity,
	// bits 2-3 trigger mode; 0 in either means "conforms to the bus".
	intiActiveHigh = 1 << 0 // polarity 01
	intiLevel      = 3 << 2 // trigger mode 11
	intiConforming = 0

	isaBus          = 0    // Bus 0 in an override means ISA
	ioapicGSIBase   = 0    // the one I/O APIC's input 0 is GSI 0
	allProcessors   = 0xFF // ACPI processor UID meaning "every processor"
	lint1           = 1    // the LINTn input the NMI is wired to
	broadcastAPICID = 0xFF
	timerIRQ        = 0
	cascadeIRQ      = 2
	maxISAIRQ       = 15
)

// buildMADT encodes the MADT: one Processor Local APIC structure per CPU,
// boot processor first (§5.2.12.1), then the I/O APIC, the SCI override and
// the NMI wiring.
//
// ISA IRQs are identity-mapped to GSIs, so there is no override for IRQ 0.
// Real PCs wire the PIT to I/O APIC input 2 and need "IRQ 0 → GSI 2"; in
// govmm the userspace PIT raises GSI 0, and KVM's default routing sends
// GSIs 0-15 to both PIC input n and I/O APIC input n
// (kvm_setup_default_irq_routing in arch/x86/kvm/irq_comm.c, irq.c in
// newer kernels), so IRQ 0 arrives on input 0. Linux fills in identity mappings for
// every ISA IRQ without an override (boot.c, mp_config_acpi_legacy_irqs).
func buildMADT(ids oemIDs, cfg Config) []byte {
	t := ids.header(sigMADT, madtRevision)
	t = le.AppendUint32(t, cfg.LAPICAddr)
	t = le.AppendUint32(t, madtPCATCompat)

	// Processor Local APIC (§5.2.12.2, Table 5.22). Up to MaxCPUs these
	// xAPIC structures suffice; see MaxCPUs for what more would need.
	for i := 0; i < cfg.NumCPUs; i++ {
		uid, apicID := byte(i), byte(i)
		t = append(t, madtTypeLocalAPIC, madtLenLocalAPIC, uid, apicID)
		t = le.AppendUint32(t, localAPICEnabled)
	}

	// I/O APIC (§5.2.12.3, Table 5.24).
	t = append(t, madtTypeIOAPIC, madtLenIOAPIC, cfg.IOAPICID, 0)
	t = le.AppendUint32(t, cfg.IOAPICAddr)
	t = le.AppendUint32(t, ioapicGSIBase)

	// Interrupt Source Override for the SCI (§5.2.12.5, Table 5.25). It
	// maps the IRQ to itself, but changes the polarity and trigger: an ISA
	// IRQ conforms to the bus (edge, active-high), and without an override
	// Linux would assume the SCI is level, active-low
	// (boot.c, acpi_sci_ioapic_setup). govmm's PM device raises it level,
	// active-high, as QEMU's does.
	t = append(t, madtTypeISO, madtLenISO, isaBus, cfg.SCIIRQ)
	t = le.AppendUint32(t, uint32(cfg.SCIIRQ))
	t = le.AppendUint16(t, intiActiveHigh|intiLevel)

	// Local APIC NMI (§5.2.12.7, Table 5.28): NMI arrives on LINT1 of
	// every processor, as on PCs (Linux warns "NMI not connected to LINT
	// 1!" otherwise).
	t = append(t, madtTypeLocalAPICNM, madtLenLocalAPICNMI, allProcessors)
	t = le.AppendUint16(t, intiConforming)
	t = append(t, lint1)

	return seal(t)
}

// Differentiated System Description Table (ACPI 6.5 §5.2.11.1, Table 5.17):
// a header and an AML definition block.
const (
	// dsdtRevision 2 makes AML integers 64 bits wide (ACPI 6.5
	// §5.2.11.1; revision 1 would truncate them to 32).
	dsdtRevision = 2
	maxSleepType = 7 // SLP_TYP is 3 bits of PM1_CNT (bits 10-12)
	reserved     = 0
)

// buildDSDT encodes the DSDT:
//
//	Name (\_S5, Package (4) {S5SleepType, S5SleepType, 0, 0})
//	Scope (\_SB) { cfg.SystemBus... }
//	cfg.Root...
//
// \_S5 is the soft-off state object (ACPI 6.5 chapter 7, "\_Sx System
// States"): its first two elements are the SLP_TYP values for the PM1a and
// PM1b control registers, the other two are reserved. To power off, Linux's
// ACPICA evaluates it (drivers/acpi/acpica/hwxface.c,
// acpi_get_sleep_type_data) and writes SLP_TYPa | SLP_EN to PM1a_CNT
// (hwsleep.c, acpi_hw_legacy_sleep). \_SB is the predefined system-bus
// scope (ACPI 6.5 §5.3.1) where devices belong.
func buildDSDT(ids oemIDs, cfg Config) []byte {
	s5 := aml.Integer(cfg.S5SleepType)
	body := []aml.Node{
		aml.Name("_S5", aml.Package{s5, s5, aml.Integer(reserved), aml.Integer(reserved)}),
		aml.Scope(`\_SB`, cfg.SystemBus...),
	}
	body = append(body, cfg.Root...)
	return seal(append(ids.header(sigDSDT, dsdtRevision), aml.Encode(body...)...))
}

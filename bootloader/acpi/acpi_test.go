package acpi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/govmm/govmm/bootloader/acpi/aml"
	"github.com/govmm/govmm/machine/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests read the tables back with their own small parser, written from
// the spec's offsets rather than from the constants in tables.go, so a wrong
// constant cannot hide behind itself.

func testConfig(cpus int) Config {
	return Config{
		NumCPUs:          cpus,
		LAPICAddr:        memory.LAPICAddr,
		IOAPICAddr:       memory.IOAPICAddr,
		IOAPICID:         uint8(cpus),
		SCIIRQ:           9,
		PM1aEventBlock:   0x600,
		PM1aControlBlock: 0x604,
		PMTimerBlock:     0x608,
		PMTimer32Bit:     true,
		ResetPort:        0xCF9,
		ResetValue:       0x06,
		S5SleepType:      5,
	}
}

// guest is the blob as the guest sees it: bytes at guest-physical addresses.
type guest struct {
	base uint64
	blob []byte
}

func (g guest) at(t *testing.T, addr uint64, n int) []byte {
	t.Helper()
	require.GreaterOrEqual(t, addr, g.base, "address %#x below the blob", addr)
	off := addr - g.base
	require.LessOrEqual(t, off+uint64(n), uint64(len(g.blob)), "%#x+%d runs past the blob", addr, n)
	return g.blob[off : off+uint64(n)]
}

func sum8(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

// scanRSDP looks for the RSDP the way ACPICA does
// (tbxfroot.c, acpi_tb_scan_memory_for_rsdp and acpi_tb_validate_rsdp):
// every 16-byte boundary of 0xE0000-0xFFFFF that holds "RSD PTR ", a
// valid 20-byte checksum and, for revision 2 and up, a valid 36-byte one.
func scanRSDP(g guest) (uint64, bool) {
	const lo, hi = 0xE0000, 0x100000
	for addr := uint64(lo); addr+36 <= hi; addr += 16 {
		if addr < g.base || addr+36 > g.base+uint64(len(g.blob)) {
			continue
		}
		p := g.blob[addr-g.base : addr-g.base+36]
		if string(p[:8]) != "RSD PTR " || sum8(p[:20]) != 0 {
			continue
		}
		if p[15] >= 2 && sum8(p[:36]) != 0 {
			continue
		}
		return addr, true
	}
	return 0, false
}

// table is one system description table read back from the blob.
type table struct {
	sig  string
	addr uint64
	data []byte
}

func (tb table) u8(off int) uint8   { return tb.data[off] }
func (tb table) u16(off int) uint16 { return binary.LittleEndian.Uint16(tb.data[off:]) }
func (tb table) u32(off int) uint32 { return binary.LittleEndian.Uint32(tb.data[off:]) }
func (tb table) u64(off int) uint64 { return binary.LittleEndian.Uint64(tb.data[off:]) }

// readTable reads the table at addr and checks its header: its length
// covers at least the header, fits in the blob, and it checksums to zero.
func readTable(t *testing.T, g guest, addr uint64) table {
	t.Helper()
	hdr := g.at(t, addr, 36)
	n := binary.LittleEndian.Uint32(hdr[4:])
	require.GreaterOrEqual(t, n, uint32(36))
	data := g.at(t, addr, int(n))
	assert.Zero(t, sum8(data), "%s checksum", hdr[:4])
	assert.Equal(t, "GOVMM ", string(data[10:16]), "%s OEMID", hdr[:4])
	assert.Equal(t, "GOVMMVM ", string(data[16:24]), "%s OEM table ID", hdr[:4])
	return table{sig: string(hdr[:4]), addr: addr, data: data}
}

// parsed is everything reachable from the RSDP.
type parsed struct {
	rsdp   []byte
	xsdt   table
	rsdt   table
	tables []table // from the XSDT, in order
	facs   []byte
	dsdt   table
}

func (p parsed) find(sig string) (table, bool) {
	for _, tb := range p.tables {
		if tb.sig == sig {
			return tb, true
		}
	}
	return table{}, false
}

func build(t *testing.T, cfg Config) (guest, parsed) {
	t.Helper()
	base := uint64(memory.BIOSROMStart)
	blob, rsdpAddr, err := Build(cfg, base)
	require.NoError(t, err)
	require.LessOrEqual(t, len(blob), 0x10000, "the tables must fit in [0xE0000, 0xF0000)")
	g := guest{base: base, blob: blob}

	found, ok := scanRSDP(g)
	require.True(t, ok, "no RSDP found by a 16-byte scan")
	require.Equal(t, rsdpAddr, found, "the scan finds the RSDP Build reports")

	var p parsed
	p.rsdp = g.at(t, rsdpAddr, 36)
	require.Equal(t, uint8(2), p.rsdp[15], "RSDP revision")
	require.Equal(t, uint32(36), binary.LittleEndian.Uint32(p.rsdp[20:]), "RSDP length")
	assert.Equal(t, "GOVMM ", string(p.rsdp[9:15]), "RSDP OEMID")

	p.rsdt = readTable(t, g, uint64(binary.LittleEndian.Uint32(p.rsdp[16:])))
	p.xsdt = readTable(t, g, binary.LittleEndian.Uint64(p.rsdp[24:]))
	require.Equal(t, "RSDT", p.rsdt.sig)
	require.Equal(t, "XSDT", p.xsdt.sig)
	require.Zero(t, (len(p.xsdt.data)-36)%8, "XSDT entries are 8 bytes")
	require.Zero(t, (len(p.rsdt.data)-36)%4, "RSDT entries are 4 bytes")
	n := (len(p.xsdt.data) - 36) / 8
	require.Equal(t, n, (len(p.rsdt.data)-36)/4, "RSDT and XSDT list as many tables")
	for i := 0; i < n; i++ {
		x := p.xsdt.u64(36 + 8*i)
		require.Equal(t, x, uint64(p.rsdt.u32(36+4*i)), "RSDT and XSDT entry %d", i)
		p.tables = append(p.tables, readTable(t, g, x))
	}

	fadt, ok := p.find("FACP")
	require.True(t, ok, "no FADT")
	facs := fadt.u64(132)
	require.Zero(t, facs%64, "FACS at %#x is not 64-byte aligned", facs)
	p.facs = g.at(t, facs, 64)
	p.dsdt = readTable(t, g, fadt.u64(140))
	require.Equal(t, "DSDT", p.dsdt.sig)
	return g, p
}

func TestBuildLayout(t *testing.T) {
	g, p := build(t, testConfig(4))
	assert.Equal(t, uint64(memory.BIOSROMStart), g.base)
	var sigs []string
	for _, tb := range p.tables {
		sigs = append(sigs, tb.sig)
		assert.Zero(t, tb.addr%16, "%s is 16-byte aligned", tb.sig)
	}
	assert.Equal(t, []string{"FACP", "APIC"}, sigs)
	assert.Equal(t, uint8(1), p.xsdt.u8(8), "XSDT revision")
	assert.Equal(t, uint8(1), p.rsdt.u8(8), "RSDT revision")

	// The RSDP's ACPI 1.0 part and the whole structure both sum to zero.
	assert.Zero(t, sum8(p.rsdp[:20]))
	assert.Zero(t, sum8(p.rsdp))
}

// TestFADT checks fields at their offsets in ACPI 6.5 Table 5.9.
func TestFADT(t *testing.T) {
	_, p := build(t, testConfig(2))
	f, _ := p.find("FACP")

	assert.Len(t, f.data, 276, "FADT length for revision 6")
	assert.Equal(t, uint8(6), f.u8(8), "revision")
	assert.Equal(t, uint8(5), f.u8(131), "minor version")

	assert.Equal(t, uint32(p.dsdt.addr), f.u32(40), "DSDT")
	assert.Equal(t, p.dsdt.addr, f.u64(140), "X_DSDT")
	assert.Equal(t, uint64(f.u32(36)), f.u64(132), "FIRMWARE_CTRL == X_FIRMWARE_CTRL")
	assert.Equal(t, uint16(9), f.u16(46), "SCI_INT")
	assert.Equal(t, uint32(0), f.u32(48), "SMI_CMD")
	assert.Equal(t, uint8(0), f.u8(52), "ACPI_ENABLE")
	assert.Equal(t, uint8(0), f.u8(53), "ACPI_DISABLE")
	assert.Equal(t, uint32(0x600), f.u32(56), "PM1a_EVT_BLK")
	assert.Equal(t, uint32(0), f.u32(60), "PM1b_EVT_BLK")
	assert.Equal(t, uint32(0x604), f.u32(64), "PM1a_CNT_BLK")
	assert.Equal(t, uint32(0x608), f.u32(76), "PM_TMR_BLK")
	assert.Equal(t, uint32(0), f.u32(80), "GPE0_BLK")
	assert.Equal(t, uint8(4), f.u8(88), "PM1_EVT_LEN")
	assert.Equal(t, uint8(2), f.u8(89), "PM1_CNT_LEN")
	assert.Equal(t, uint8(4), f.u8(91), "PM_TMR_LEN")
	assert.Greater(t, f.u16(96), uint16(100), "P_LVL2_LAT: no C2")
	assert.Greater(t, f.u16(98), uint16(1000), "P_LVL3_LAT: no C3")

	// IAPC_BOOT_ARCH: LEGACY_DEVICES | 8042 | VGA Not Present, and neither
	// MSI Not Supported (bit 3) nor CMOS RTC Not Present (bit 5).
	assert.Equal(t, uint16(1<<0|1<<1|1<<2), f.u16(109), "IAPC_BOOT_ARCH")

	// Flags: WBINVD(0) PROC_C1(2) PWR_BUTTON(4) SLP_BUTTON(5) TMR_VAL_EXT(8)
	// RESET_REG_SUP(10); not HW_REDUCED_ACPI(20).
	assert.Equal(t, uint32(1<<0|1<<2|1<<4|1<<5|1<<8|1<<10), f.u32(112), "Flags")

	// RESET_REG: system I/O, 8 bits at offset 0, byte access, port 0xCF9.
	assert.Equal(t, []byte{1, 8, 0, 1, 0xF9, 0x0C, 0, 0, 0, 0, 0, 0}, f.data[116:128], "RESET_REG")
	assert.Equal(t, uint8(0x06), f.u8(128), "RESET_VALUE")

	// Each X_ block agrees with its 32-bit address and length.
	for _, blk := range []struct {
		name         string
		addr32, len8 int
		gas          int
	}{
		{"PM1a_EVT_BLK", 56, 88, 148},
		{"PM1b_EVT_BLK", 60, 88, 160},
		{"PM1a_CNT_BLK", 64, 89, 172},
		{"PM1b_CNT_BLK", 68, 89, 184},
		{"PM2_CNT_BLK", 72, 90, 196},
		{"PM_TMR_BLK", 76, 91, 208},
		{"GPE0_BLK", 80, 92, 220},
		{"GPE1_BLK", 84, 93, 232},
	} {
		addr := f.u32(blk.addr32)
		gas := f.data[blk.gas : blk.gas+12]
		if addr == 0 {
			assert.Equal(t, make([]byte, 12), gas, "X_%s of an absent block", blk.name)
			continue
		}
		assert.Equal(t, uint8(1), gas[0], "X_%s space: system I/O", blk.name)
		assert.Equal(t, 8*f.u8(blk.len8), gas[1], "X_%s bit width", blk.name)
		assert.Equal(t, uint8(0), gas[2], "X_%s bit offset", blk.name)
		assert.Equal(t, uint64(addr), binary.LittleEndian.Uint64(gas[4:]), "X_%s address", blk.name)
	}
	assert.Equal(t, uint8(2), f.u8(148+3), "X_PM1a_EVT_BLK: word access")
	assert.Equal(t, uint8(3), f.u8(208+3), "X_PM_TMR_BLK: dword access")
}

func TestFADTWithoutPMTimer(t *testing.T) {
	cfg := testConfig(1)
	cfg.PMTimerBlock = 0
	cfg.PMTimer32Bit = false
	_, p := build(t, cfg)
	f, _ := p.find("FACP")
	assert.Equal(t, uint32(0), f.u32(76), "PM_TMR_BLK")
	assert.Equal(t, uint8(0), f.u8(91), "PM_TMR_LEN")
	assert.Equal(t, make([]byte, 12), f.data[208:220], "X_PM_TMR_BLK")
	assert.Zero(t, f.u32(112)&(1<<8), "no TMR_VAL_EXT")

	cfg = testConfig(1)
	cfg.PMTimer32Bit = false
	_, p = build(t, cfg)
	f, _ = p.find("FACP")
	assert.Zero(t, f.u32(112)&(1<<8), "24-bit timer: no TMR_VAL_EXT")
}

func TestFACS(t *testing.T) {
	_, p := build(t, testConfig(1))
	assert.Equal(t, "FACS", string(p.facs[:4]))
	assert.Equal(t, uint32(64), binary.LittleEndian.Uint32(p.facs[4:]))
	assert.Equal(t, uint8(2), p.facs[32], "version")
	assert.Equal(t, make([]byte, 64-36), p.facs[36:], "OSPM flags and reserved bytes")
}

func TestDSDT(t *testing.T) {
	_, p := build(t, testConfig(1))
	assert.Equal(t, uint8(2), p.dsdt.u8(8), "revision 2: 64-bit integers")
	// Name (_S5, Package (0x04) {0x05, 0x05, Zero, Zero}) and Scope (\_SB) {}.
	want := []byte{
		0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x0A, 0x05, 0x00, 0x00,
		0x10, 0x06, '\\', '_', 'S', 'B', '_',
	}
	assert.Equal(t, want, p.dsdt.data[36:])

	cfg := testConfig(1)
	cfg.S5SleepType = 7
	_, p = build(t, cfg)
	assert.Equal(t, []byte{0x0A, 7, 0x0A, 7}, p.dsdt.data[36+8:36+12], "SLP_TYPa and SLP_TYPb")
}

// madtEntry is one interrupt controller structure.
type madtEntry struct {
	typ  uint8
	data []byte
}

func parseMADT(t *testing.T, m table) []madtEntry {
	t.Helper()
	var es []madtEntry
	for off := 44; off < len(m.data); {
		require.LessOrEqual(t, off+2, len(m.data))
		n := int(m.data[off+1])
		require.GreaterOrEqual(t, n, 2)
		require.LessOrEqual(t, off+n, len(m.data), "entry runs past the MADT")
		es = append(es, madtEntry{typ: m.data[off], data: m.data[off : off+n]})
		off += n
	}
	return es
}

func TestMADT(t *testing.T) {
	for _, cpus := range []int{1, 2, 64, MaxCPUs} {
		t.Run(fmt.Sprint(cpus), func(t *testing.T) {
			_, p := build(t, testConfig(cpus))
			m, ok := p.find("APIC")
			require.True(t, ok)
			assert.Equal(t, uint8(6), m.u8(8), "revision")
			assert.Equal(t, uint32(memory.LAPICAddr), m.u32(36), "local APIC address")
			assert.Equal(t, uint32(1), m.u32(40), "flags: PCAT_COMPAT")

			count := map[uint8]int{}
			var lapics, isos, nmis [][]byte
			for i, e := range parseMADT(t, m) {
				count[e.typ]++
				switch e.typ {
				case 0:
					require.Len(t, e.data, 8)
					lapics = append(lapics, e.data)
					assert.Equal(t, i, len(lapics)-1, "processors come first, boot processor first")
				case 1:
					require.Len(t, e.data, 12)
					assert.Equal(t, uint8(cpus), e.data[2], "I/O APIC ID")
					assert.Equal(t, uint32(memory.IOAPICAddr), binary.LittleEndian.Uint32(e.data[4:]))
					assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(e.data[8:]), "GSI base")
				case 2:
					require.Len(t, e.data, 10)
					isos = append(isos, e.data)
				case 4:
					require.Len(t, e.data, 6)
					nmis = append(nmis, e.data)
				default:
					t.Errorf("unexpected MADT entry type %d", e.typ)
				}
			}
			assert.Equal(t, map[uint8]int{0: cpus, 1: 1, 2: 1, 4: 1}, count)

			for i, l := range lapics {
				assert.Equal(t, uint8(i), l[2], "ACPI processor UID")
				assert.Equal(t, uint8(i), l[3], "APIC ID")
				assert.Equal(t, uint32(1), binary.LittleEndian.Uint32(l[4:]), "enabled")
			}
			// The only override is the SCI: ISA IRQ 9 -> GSI 9, level, active-high.
			require.Len(t, isos, 1)
			assert.Equal(t, []byte{2, 10, 0, 9, 9, 0, 0, 0, 0x0D, 0}, isos[0])
			// NMI on LINT1 of every processor.
			assert.Equal(t, []byte{4, 6, 0xFF, 0, 0, 1}, nmis[0])
		})
	}
}

// TestExtras adds what a PCI host bridge will need: an MCFG and a PCI0
// device in \_SB.
func TestExtras(t *testing.T) {
	cfg := testConfig(2)
	// PCI Firmware Specification 3.0 §4.1.2: 8 reserved bytes, then per
	// ECAM region its base (u64), segment (u16), first and last bus (u8s)
	// and 4 reserved bytes.
	mcfg := make([]byte, 8+16)
	alloc := mcfg[8:]
	binary.LittleEndian.PutUint64(alloc[0:], 0xB000_0000)
	alloc[10], alloc[11] = 0, 0xFF
	cfg.Tables = []Table{{Signature: "MCFG", Revision: 1, Body: mcfg}}
	pci0 := aml.Device("PCI0",
		aml.Name("_HID", aml.EISAID("PNP0A08")),
		aml.Name("_CID", aml.EISAID("PNP0A03")),
		aml.Name("_CRS", aml.ResourceTemplate(aml.WordBusNumber(0, 0xFF))),
	)
	cfg.SystemBus = []aml.Node{pci0}
	cfg.Root = []aml.Node{aml.Name("ROOT", aml.Integer(1))}

	_, p := build(t, cfg)
	var sigs []string
	for _, tb := range p.tables {
		sigs = append(sigs, tb.sig)
	}
	assert.Equal(t, []string{"FACP", "APIC", "MCFG"}, sigs)
	m, _ := p.find("MCFG")
	assert.Equal(t, uint8(1), m.u8(8))
	assert.Equal(t, mcfg, m.data[36:])

	body := p.dsdt.data[36:]
	scope := aml.Encode(aml.Scope(`\_SB`, pci0))
	assert.True(t, bytes.Contains(body, scope), "\\_SB holds PCI0")
	assert.True(t, bytes.HasSuffix(body, aml.Encode(cfg.Root...)), "root objects come last")
}

func TestValidation(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no CPUs", func(c *Config) { c.NumCPUs = 0 }, "NumCPUs"},
		{"too many CPUs", func(c *Config) { c.NumCPUs = MaxCPUs + 1 }, "NumCPUs"},
		{"no LAPIC", func(c *Config) { c.LAPICAddr = 0 }, "LAPICAddr"},
		{"no IOAPIC", func(c *Config) { c.IOAPICAddr = 0 }, "IOAPICAddr"},
		{"broadcast IOAPIC ID", func(c *Config) { c.IOAPICID = 0xFF }, "IOAPICID"},
		{"SCI on timer", func(c *Config) { c.SCIIRQ = 0 }, "SCIIRQ"},
		{"SCI on cascade", func(c *Config) { c.SCIIRQ = 2 }, "SCIIRQ"},
		{"SCI not ISA", func(c *Config) { c.SCIIRQ = 16 }, "SCIIRQ"},
		{"no PM1a event", func(c *Config) { c.PM1aEventBlock = 0 }, "PM1aEventBlock"},
		{"no PM1a control", func(c *Config) { c.PM1aControlBlock = 0 }, "PM1aControlBlock"},
		{"PM1a event past 64K", func(c *Config) { c.PM1aEventBlock = 0xFFFE }, "PM1aEventBlock"},
		{"timer past 64K", func(c *Config) { c.PMTimerBlock = 0xFFFD }, "PMTimerBlock"},
		{"32-bit timer without timer", func(c *Config) { c.PMTimerBlock = 0 }, "PMTimer32Bit"},
		{"no reset port", func(c *Config) { c.ResetPort = 0 }, "ResetPort"},
		{"sleep type", func(c *Config) { c.S5SleepType = 8 }, "S5SleepType"},
		{"long OEMID", func(c *Config) { c.OEMID = "TOOLONG" }, "OEMID"},
		{"long table ID", func(c *Config) { c.OEMTableID = "MUCHTOOLONG" }, "OEMTableID"},
		{"bad OEMID", func(c *Config) { c.OEMID = "a\x00" }, "OEMID"},
		{"bad signature", func(c *Config) { c.Tables = []Table{{Signature: "mcfg"}} }, "signature"},
		{"short signature", func(c *Config) { c.Tables = []Table{{Signature: "MCF"}} }, "signature"},
		{"reserved signature", func(c *Config) { c.Tables = []Table{{Signature: "APIC"}} }, "APIC"},
		{"negative limit", func(c *Config) { c.SizeLimit = -1 }, "SizeLimit"},
		{"over the limit", func(c *Config) { c.SizeLimit = 512 }, "limit"},
		{"over 64 KiB", func(c *Config) { c.Tables = []Table{{Signature: "SSDT", Body: make([]byte, 64<<10)}} }, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(4)
			tt.modify(&cfg)
			_, _, err := Build(cfg, memory.BIOSROMStart)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	_, _, err := Build(testConfig(1), memory.BIOSROMStart+8)
	assert.ErrorContains(t, err, "aligned")
	_, _, err = Build(testConfig(1), 1<<32-16)
	assert.ErrorContains(t, err, "4 GiB")
}

func TestDefaultsAndPadding(t *testing.T) {
	cfg := testConfig(1)
	cfg.OEMID = "AB"
	cfg.OEMTableID = "XYZ"
	blob, _, err := Build(cfg, memory.BIOSROMStart)
	require.NoError(t, err)
	assert.Equal(t, "AB    ", string(blob[9:15]), "RSDP OEMID is space-padded")
}

func TestChecksum(t *testing.T) {
	for _, b := range [][]byte{{}, {1}, {0xFF, 0x01, 0x80}, bytes.Repeat([]byte{0xAB}, 1000)} {
		c := checksum(b)
		assert.Zero(t, sum8(append(append([]byte(nil), b...), c)))
	}
}

package mptable

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/govmm/govmm/machine/memory"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mpBase is where govmm puts the tables: the start of the 64 KiB BIOS area
// Linux scans (memory.BIOSROMStart + 64 KiB).
const mpBase = 0xF0000

func testConfig(cpus int) Config {
	return Config{
		NumCPUs:      cpus,
		CPUSignature: 0x000806F8, // family 6, model 0x8F, stepping 8
		CPUFeatures:  0x178BFBFF,
		LAPICAddr:    memory.LAPICAddr,
		IOAPICAddr:   memory.IOAPICAddr,
		IOAPICID:     uint8(cpus),
	}
}

// The parser below follows Linux's arch/x86/kernel/mpparse.c rather than
// this package's constants: smp_scan_config for the floating pointer,
// smp_check_mpc for the header, smp_read_mpc for the entries.

type entry struct {
	typ  byte
	data []byte
}

type mp struct {
	fp      []byte
	table   []byte
	entries []entry
}

func sum8(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return s
}

func parse(t *testing.T, blob []byte, base uint64) mp {
	t.Helper()
	le := binary.LittleEndian
	require.LessOrEqual(t, len(blob), 0x10000, "must fit in [0xF0000, 0x100000)")

	// smp_scan_config(0xF0000, 0x10000): 16-byte steps, "_MP_", length 1
	// paragraph, checksum, spec 1 or 4.
	var m mp
	for off := 0; off+16 <= len(blob); off += 16 {
		p := blob[off : off+16]
		if string(p[:4]) == "_MP_" && p[8] == 1 && sum8(p) == 0 && (p[9] == 1 || p[9] == 4) {
			m.fp = p
			break
		}
	}
	require.NotNil(t, m.fp, "no MP floating pointer found")
	require.Zero(t, m.fp[11], "feature byte 1: a configuration table, not a default configuration")
	assert.Zero(t, m.fp[12]&0x80, "IMCRP clear: virtual wire mode")
	assert.Equal(t, []byte{0, 0, 0}, m.fp[13:16], "reserved feature bytes")

	phys := uint64(le.Uint32(m.fp[4:]))
	require.NotZero(t, phys)
	require.GreaterOrEqual(t, phys, base)
	off := phys - base
	require.LessOrEqual(t, off+44, uint64(len(blob)))
	length := uint64(le.Uint16(blob[off+4:]))
	require.LessOrEqual(t, off+length, uint64(len(blob)), "table runs past the blob")
	m.table = blob[off : off+length]

	// smp_check_mpc.
	require.Equal(t, "PCMP", string(m.table[:4]))
	require.Zero(t, sum8(m.table), "configuration table checksum")
	require.Contains(t, []byte{1, 4}, m.table[6], "spec revision")
	require.NotZero(t, le.Uint32(m.table[36:]), "local APIC address")
	assert.Zero(t, le.Uint16(m.table[40:]), "extended table length")
	assert.Zero(t, le.Uint32(m.table[28:]), "OEM table pointer")

	// smp_read_mpc: walk entries by type until the length is used up.
	sizes := map[byte]int{0: 20, 1: 8, 2: 8, 3: 8, 4: 8}
	prev := byte(0)
	for p := 44; p < len(m.table); {
		typ := m.table[p]
		n, ok := sizes[typ]
		require.True(t, ok, "unknown entry type %d at %d: Linux would say \"Your mptable is wrong\"", typ, p)
		require.LessOrEqual(t, p+n, len(m.table), "entry runs past the table")
		require.GreaterOrEqual(t, typ, prev, "entries are sorted by type")
		prev = typ
		m.entries = append(m.entries, entry{typ, m.table[p : p+n]})
		p += n
	}
	assert.Equal(t, int(le.Uint16(m.table[34:])), len(m.entries), "ENTRY COUNT")
	return m
}

func (m mp) of(typ byte) [][]byte {
	var out [][]byte
	for _, e := range m.entries {
		if e.typ == typ {
			out = append(out, e.data)
		}
	}
	return out
}

func TestBuild(t *testing.T) {
	for _, cpus := range []int{1, 2, 64, MaxCPUs} {
		t.Run(fmt.Sprint(cpus), func(t *testing.T) {
			cfg := testConfig(cpus)
			blob, err := Build(cfg, mpBase)
			require.NoError(t, err)
			m := parse(t, blob, mpBase)
			le := binary.LittleEndian

			assert.Equal(t, uint32(mpBase+16), le.Uint32(m.fp[4:]), "table right after the pointer")
			assert.Equal(t, byte(4), m.fp[9], "MP spec 1.4")
			assert.Equal(t, "GOVMM   ", string(m.table[8:16]))
			assert.Equal(t, "GOVMMVM     ", string(m.table[16:28]))
			assert.Equal(t, uint32(memory.LAPICAddr), le.Uint32(m.table[36:]))

			cpusSeen := m.of(0)
			require.Len(t, cpusSeen, cpus)
			for i, c := range cpusSeen {
				assert.Equal(t, byte(i), c[1], "local APIC ID")
				assert.Equal(t, byte(0x14), c[2], "local APIC version")
				want := byte(1) // EN
				if i == 0 {
					want |= 2 // BP
				}
				assert.Equal(t, want, c[3], "CPU flags of CPU %d", i)
				assert.Equal(t, cfg.CPUSignature, le.Uint32(c[4:]))
				assert.Equal(t, cfg.CPUFeatures, le.Uint32(c[8:]))
				assert.Equal(t, make([]byte, 8), c[12:20], "reserved")
			}

			buses := m.of(1)
			require.Len(t, buses, 1)
			assert.Equal(t, []byte{1, 0, 'I', 'S', 'A', ' ', ' ', ' '}, buses[0])

			ioapics := m.of(2)
			require.Len(t, ioapics, 1)
			assert.Equal(t, []byte{2, byte(cpus), 0x11, 1}, ioapics[0][:4], "ID, version, enabled")
			assert.Equal(t, uint32(memory.IOAPICAddr), le.Uint32(ioapics[0][4:]))

			ints := m.of(3)
			require.Len(t, ints, 15, "ISA IRQs 0, 1, 3-15")
			var irqs []byte
			for _, in := range ints {
				assert.Equal(t, byte(0), in[1], "type INT")
				assert.Equal(t, uint16(0), le.Uint16(in[2:]), "conforming polarity and trigger")
				assert.Equal(t, byte(0), in[4], "source bus: ISA")
				assert.Equal(t, in[5], in[7], "IRQ %d identity-mapped", in[5])
				assert.Equal(t, byte(cpus), in[6], "destination I/O APIC")
				irqs = append(irqs, in[5])
			}
			assert.Equal(t, []byte{0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, irqs)

			lints := m.of(4)
			assert.Equal(t, [][]byte{
				{4, 3, 0, 0, 0, 0, 0xFF, 0}, // ExtINT -> LINT0 of all
				{4, 1, 0, 0, 0, 0, 0xFF, 1}, // NMI -> LINT1 of all
			}, lints)

			assert.Equal(t, 16+44+20*cpus+8*(1+1+15+2), len(blob))
		})
	}
}

// TestPCI adds what a PCI bus will add: a PCI bus 0, ISA after it, and
// INTx entries.
func TestPCI(t *testing.T) {
	cfg := testConfig(2)
	cfg.ISABusID = 1
	cfg.Buses = []Bus{{ID: 0, Type: BusPCI}}
	for dev := uint8(1); dev <= 2; dev++ {
		cfg.Interrupts = append(cfg.Interrupts, Interrupt{
			Type:      INT,
			Flags:     ActiveLow | LevelTriggered,
			SourceBus: 0,
			SourceIRQ: dev<<2 | 0, // INTA#
			Pin:       15 + dev,
		})
	}
	blob, err := Build(cfg, mpBase)
	require.NoError(t, err)
	m := parse(t, blob, mpBase)

	assert.Equal(t, [][]byte{
		{1, 0, 'P', 'C', 'I', ' ', ' ', ' '},
		{1, 1, 'I', 'S', 'A', ' ', ' ', ' '},
	}, m.of(1), "buses in ID order")
	ints := m.of(3)
	require.Len(t, ints, 17)
	assert.Equal(t, byte(1), ints[0][4], "ISA IRQs name the ISA bus")
	assert.Equal(t, []byte{3, 0, 0x0F, 0, 0, 1 << 2, 2, 16}, ints[15])
	assert.Equal(t, []byte{3, 0, 0x0F, 0, 0, 2 << 2, 2, 17}, ints[16])
	for _, l := range m.of(4) {
		assert.Equal(t, byte(1), l[4], "local interrupts name the ISA bus")
	}
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
		{"IOAPIC ID clash", func(c *Config) { c.IOAPICID = 0 }, "unique"},
		{"IOAPIC ID clash high", func(c *Config) { c.IOAPICID = 3 }, "unique"},
		{"broadcast IOAPIC", func(c *Config) { c.IOAPICID = 0xFF }, "broadcast"},
		{"duplicate bus", func(c *Config) { c.Buses = []Bus{{ID: 0, Type: BusPCI}} }, "bus ID 0"},
		{"bad bus type", func(c *Config) { c.Buses = []Bus{{ID: 1, Type: "TOOLONG"}} }, "type"},
		{"empty bus type", func(c *Config) { c.Buses = []Bus{{ID: 1}} }, "type"},
		{"unknown source bus", func(c *Config) { c.Interrupts = []Interrupt{{SourceBus: 7, Pin: 16}} }, "source bus 7"},
		{"bad type", func(c *Config) { c.Interrupts = []Interrupt{{Type: 4, Pin: 16, SourceIRQ: 40}} }, "type 4"},
		{"bad flags", func(c *Config) { c.Interrupts = []Interrupt{{Flags: 2, SourceIRQ: 40}} }, "flags"},
		{"bad trigger", func(c *Config) { c.Interrupts = []Interrupt{{Flags: 2 << 2, SourceIRQ: 40}} }, "flags"},
		{"stray flag bits", func(c *Config) { c.Interrupts = []Interrupt{{Flags: 0x10, SourceIRQ: 40}} }, "flags"},
		{"ISA IRQ again", func(c *Config) { c.Interrupts = []Interrupt{{SourceIRQ: 4, Pin: 4}} }, "already assigned"},
		{"long OEM ID", func(c *Config) { c.OEMID = "NINECHARS" }, "OEMID"},
		{"long product", func(c *Config) { c.ProductID = "THIRTEENCHARS" }, "ProductID"},
		{"negative limit", func(c *Config) { c.SizeLimit = -1 }, "SizeLimit"},
		{"over the limit", func(c *Config) { c.SizeLimit = 100 }, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(4)
			tt.modify(&cfg)
			_, err := Build(cfg, mpBase)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	_, err := Build(testConfig(1), mpBase+8)
	assert.ErrorContains(t, err, "aligned")
	_, err = Build(testConfig(1), 1<<32-32)
	assert.ErrorContains(t, err, "4 GiB")
}

func TestIDPadding(t *testing.T) {
	cfg := testConfig(1)
	cfg.OEMID = "ACME"
	cfg.ProductID = "VM"
	blob, err := Build(cfg, mpBase)
	require.NoError(t, err)
	m := parse(t, blob, mpBase)
	assert.Equal(t, "ACME    ", string(m.table[8:16]))
	assert.Equal(t, "VM          ", string(m.table[16:28]))
}

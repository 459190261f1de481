package machine

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/govmm/govmm/bootloader/acpi"
	"github.com/govmm/govmm/bootloader/acpi/aml"
	"github.com/govmm/govmm/devices/pci"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMCFGTable(t *testing.T) {
	tb := mcfgTable()
	require.Len(t, tb.Body, mcfgReserved+mcfgEntrySize)
	e := tb.Body[mcfgReserved:]
	assert.Equal(t, pci.ECAMBase, binary.LittleEndian.Uint64(e[0:]))
	assert.Equal(t, uint16(pci.ECAMSegment), binary.LittleEndian.Uint16(e[8:]))
	assert.Equal(t, []byte{pci.ECAMStartBus, pci.ECAMEndBus}, e[10:12])
}

// TestPCIDSDTDisassembles checks the PCI part of the DSDT with iasl, the
// ACPICA disassembler: the host bridge's identity, its windows, the
// routing of every slot's pins and the ECAM reservation.
func TestPCIDSDTDisassembles(t *testing.T) {
	blob := buildACPI(t, pciDSDT())
	s := disassemble(t, blob, "DSDT")
	assert.Contains(t, s, `Device (PCI0)`)
	assert.Contains(t, s, `EisaId ("PNP0A08")`)
	assert.Contains(t, s, `EisaId ("PNP0C02")`)
	assert.Contains(t, s, "0x0000,             // Range Minimum\n                    0x00FF,")
	assert.Contains(t, s, "0xC0000000,         // Range Minimum\n                    0xDFFFFFFF,")
	assert.Contains(t, s, "0xE0000000,         // Range Minimum\n                    0xEFFFFFFF,")
	// 32 slots × 4 pins; slot 1's INTA# is on GSI 17 (0x11).
	assert.Contains(t, s, "Name (_PRT, Package (0x80)")
	assert.Regexp(t, `Package \(0x04\)\s*\{\s*0x0001FFFF,\s*Zero,\s*Zero,\s*0x11\s*\}`, s)

	m := disassemble(t, blob, "MCFG")
	assert.Contains(t, m, "Base Address : 00000000E0000000")
	assert.Contains(t, m, "End Bus Number : FF")
}

// buildACPI builds the machine's ACPI tables, with systemBus in the DSDT's
// \_SB, at acpiTablesAddr.
func buildACPI(t *testing.T, systemBus []aml.Node) []byte {
	t.Helper()
	blob, rsdp, err := acpi.Build(acpi.Config{
		NumCPUs: 2, LAPICAddr: 0xFEE0_0000, IOAPICAddr: 0xFEC0_0000, IOAPICID: 2, SCIIRQ: irqSCI,
		PM1aEventBlock: 0x600, PM1aControlBlock: 0x604, ResetPort: 0xCF9, ResetValue: 6,
		SystemBus: systemBus, Tables: []acpi.Table{mcfgTable()},
	}, acpiTablesAddr)
	require.NoError(t, err)
	require.Equal(t, uint64(acpiTablesAddr), rsdp)
	return blob
}

// disassemble finds the table with signature sig in blob and returns iasl's
// disassembly of it (ACPICA's disassembler, Debian's acpica-tools). It skips
// the test where iasl is missing.
func disassemble(t *testing.T, blob []byte, sig string) string {
	t.Helper()
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not found; install acpica-tools")
	}
	var tbl []byte
	for off := 0; off+8 <= len(blob); off++ {
		if string(blob[off:off+4]) == sig {
			n := int(binary.LittleEndian.Uint32(blob[off+4:]))
			if n >= 36 && off+n <= len(blob) {
				tbl = blob[off : off+n]
				break
			}
		}
	}
	require.NotNil(t, tbl, "%s not found", sig)
	dir := t.TempDir()
	dat := filepath.Join(dir, sig+".dat")
	require.NoError(t, os.WriteFile(dat, tbl, 0o644))
	out, err := exec.Command(iasl, "-d", dat).CombinedOutput()
	require.NoError(t, err, "%s", out)
	src, err := os.ReadFile(filepath.Join(dir, sig+".dsl"))
	require.NoError(t, err)
	return string(src)
}

func TestPCIDSDTRoutesEveryPin(t *testing.T) {
	routes := pci.INTxRoutingTable()
	require.Len(t, routes, pci.MaxSlots*4)
	seen := map[uint32]int{}
	for _, r := range routes {
		seen[r.GSI]++
	}
	for gsi := uint32(pci.INTxGSIBase); gsi < pci.INTxGSIBase+pci.NumINTxGSIs; gsi++ {
		assert.Equal(t, pci.MaxSlots, seen[gsi], "GSI %d", gsi)
	}
}

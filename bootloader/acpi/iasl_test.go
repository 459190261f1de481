package acpi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/govmm/govmm/bootloader/acpi/aml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// iaslProblem matches what iasl prints, or writes into a disassembly, when
// a table is wrong: "Firmware Warning (ACPI): Incorrect checksum ...",
// "Invalid zero length subtable", "**** ..." markers, compiler errors.
var iaslProblem = regexp.MustCompile(`(?i)warning|error|invalid|incorrect|\*\*\*\*`)

// iaslSummary is iasl's last line after a clean compile.
var iaslSummary = regexp.MustCompile(`Compilation successful\. 0 Errors, 0 Warnings`)

// TestIASL disassembles every table with iasl, the ACPICA reference
// compiler (Debian package acpica-tools), fails on anything it complains
// about, then compiles the disassembly again and checks that it gives back
// the same bytes: iasl read every field the way it was meant.
func TestIASL(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not found; install acpica-tools (apt-get install acpica-tools) to check the tables with the reference disassembler")
	}

	for _, cpus := range []int{1, 8, MaxCPUs} {
		t.Run(fmt.Sprintf("%dcpus", cpus), func(t *testing.T) {
			_, p := build(t, pciConfig(cpus))
			dir := t.TempDir()
			files := map[string][]byte{
				"xsdt": p.xsdt.data,
				"rsdt": p.rsdt.data,
				"facs": p.facs,
				"dsdt": p.dsdt.data,
			}
			for _, tb := range p.tables {
				files[tb.sig] = tb.data
			}
			for name, data := range files {
				t.Run(name, func(t *testing.T) {
					dat := filepath.Join(dir, name+".dat")
					dsl := filepath.Join(dir, name+".dsl")
					require.NoError(t, os.WriteFile(dat, data, 0o644))

					out, err := exec.Command(iasl, "-d", dat).CombinedOutput()
					require.NoError(t, err, "iasl -d:\n%s", out)
					src, err := os.ReadFile(dsl)
					require.NoError(t, err, "iasl -d wrote no disassembly:\n%s", out)
					assert.False(t, iaslProblem.Match(stripBanner(out)), "iasl -d complained:\n%s", out)
					assert.False(t, iaslProblem.Match(src), "disassembly flags a problem:\n%s", src)

					// -on: keep name paths as written (\_SB, not _SB_).
					rt := filepath.Join(dir, "rt-"+name)
					out, err = exec.Command(iasl, "-on", "-p", rt, dsl).CombinedOutput()
					require.NoError(t, err, "recompiling the disassembly:\n%s", out)
					assert.Regexp(t, iaslSummary, string(out))
					again, err := os.ReadFile(rt + ".aml")
					require.NoError(t, err)
					assert.Equal(t, maskCreator(data), maskCreator(again),
						"recompiled disassembly differs (creator ID and checksum ignored)\n%s", src)
				})
			}
		})
	}
}

// stripBanner drops iasl's banner, whose "Compiler/Disassembler" line
// would otherwise not matter but whose copyright line might.
func stripBanner(out []byte) []byte {
	var keep [][]byte
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.Contains(line, []byte("Intel ACPI Component Architecture")) ||
			bytes.Contains(line, []byte("Copyright")) ||
			bytes.Contains(line, []byte("Compiler/Disassembler version")) {
			continue
		}
		keep = append(keep, line)
	}
	return bytes.Join(keep, []byte("\n"))
}

// maskCreator zeroes the checksum and the creator ID and revision, which
// iasl replaces with its own when it recompiles a table. The FACS has no
// such header.
func maskCreator(table []byte) []byte {
	t := append([]byte(nil), table...)
	if len(t) >= 36 && string(t[:4]) != "FACS" {
		t[9] = 0
		copy(t[28:36], make([]byte, 8))
	}
	return t
}

// pciConfig adds to testConfig what the PCI work will add: an MCFG and a
// PCI host bridge in \_SB with _CRS and _PRT.
func pciConfig(cpus int) Config {
	cfg := testConfig(cpus)
	mcfg := make([]byte, 8+16)
	alloc := mcfg[8:]
	binary.LittleEndian.PutUint64(alloc[0:], 0xB000_0000)
	alloc[10], alloc[11] = 0, 0xFF
	cfg.Tables = []Table{{Signature: "MCFG", Revision: 1, Body: mcfg}}

	prefetch := aml.QWordMemory(0x80_0000_0000, 0xFF_FFFF_FFFF)
	prefetch.TypeFlags |= aml.MemoryPrefetchable
	var prt aml.Package
	for slot := 1; slot < 4; slot++ {
		for pin := 0; pin < 4; pin++ {
			prt = append(prt, aml.Package{
				aml.Integer(slot<<16 | 0xFFFF), aml.Integer(pin), aml.Integer(0),
				aml.Integer(16 + (slot+pin)%8),
			})
		}
	}
	cfg.SystemBus = []aml.Node{
		aml.Device("PCI0",
			aml.Name("_HID", aml.EISAID("PNP0A08")),
			aml.Name("_CID", aml.EISAID("PNP0A03")),
			aml.Name("_SEG", aml.Integer(0)),
			aml.Name("_BBN", aml.Integer(0)),
			aml.Name("_UID", aml.Integer(0)),
			aml.Name("_CRS", aml.ResourceTemplate(
				aml.WordBusNumber(0x00, 0xFF),
				aml.IO{Decode16: true, Min: 0xCF8, Max: 0xCF8, Alignment: 1, Length: 8},
				aml.WordIO(0x0000, 0x0CF7),
				aml.WordIO(0x0D00, 0xFFFF),
				aml.DWordMemory(0xC000_0000, 0xFEBF_FFFF),
				prefetch,
			)),
			aml.Name("_PRT", prt),
			aml.Method("_STA", 0, false, aml.Return(aml.Integer(0x0F))),
		),
	}
	return cfg
}

// TestACPIExec loads the tables into acpiexec, which runs ACPICA (the same
// table and AML code as Linux's drivers/acpi/acpica) in user space, and
// evaluates \_S5 the way the kernel does before powering off.
func TestACPIExec(t *testing.T) {
	acpiexec, err := exec.LookPath("acpiexec")
	if err != nil {
		t.Skip("acpiexec not found; install acpica-tools (apt-get install acpica-tools) to load the tables into ACPICA")
	}
	_, p := build(t, pciConfig(4))
	dir := t.TempDir()
	// acpiexec wraps the tables it is given in its own RSDP and XSDT and
	// supplies the FACS itself.
	var args []string
	args = append(args, "-b", `evaluate \_S5; evaluate \_SB.PCI0._HID; evaluate \_SB.PCI0._STA`)
	files := map[string][]byte{"dsdt": p.dsdt.data}
	for _, tb := range p.tables {
		files[tb.sig] = tb.data
	}
	for name, data := range files {
		f := filepath.Join(dir, name+".dat")
		require.NoError(t, os.WriteFile(f, data, 0o644))
		args = append(args, f)
	}
	out, err := exec.Command(acpiexec, args...).CombinedOutput()
	require.NoError(t, err, "acpiexec:\n%s", out)

	// acpiexec's own hardware self-test pokes registers govmm does not
	// have (PM2_CNT's ARB_DIS, GPE blocks) and reports "Unexpected
	// AE_BAD_..." for them; anything else that warns is a table problem.
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("Unexpected AE_BAD_")) {
			continue
		}
		assert.NotRegexp(t, `(?i)(ACPI|Firmware) (Error|Warning)|Exception|Failure`, string(line))
	}
	text := string(out)
	assert.Contains(t, text, "1 ACPI AML tables successfully acquired and loaded")
	assert.Regexp(t, `(?s)Evaluating \\_S5.*\[Package\] Contains 4 Elements:\s+`+
		`\[Integer\] = 0000000000000005\s+\[Integer\] = 0000000000000005\s+`+
		`\[Integer\] = 0000000000000000\s+\[Integer\] = 0000000000000000`, text)
	assert.Regexp(t, `(?s)Evaluating \\_SB.PCI0._HID.*\[Integer\] = 00000000080AD041`, text)
	assert.Regexp(t, `(?s)Evaluating \\_SB.PCI0._STA.*\[Integer\] = 000000000000000F`, text)
}

package aml

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

func TestPkgLength(t *testing.T) {
	// n is the content length; the encoded value is n plus the PkgLength's
	// own bytes (ACPI 6.5 §20.2.4).
	tests := []struct {
		n    int
		want string
	}{
		{0, "01"},
		{62, "3f"},               // value 63: the largest one-byte form
		{63, "41 04"},            // value 65 = 0x041: the first two-byte form
		{64, "42 04"},            // value 66
		{4093, "4f ff"},          // value 4095 = 0xFFF: the largest two-byte form
		{4094, "81 00 01"},       // value 4097 = 0x1001: the first three-byte form
		{4096, "83 00 01"},       // value 4099
		{0xFFFFC, "8f ff ff"},    // value 0xFFFFF: the largest three-byte form
		{0xFFFFD, "c1 00 00 01"}, // value 0x100001: the first four-byte form
		{maxPkgLength - 4, "cf ff ff ff"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			got := appendPkgLength(nil, tt.n)
			assert.Equal(t, unhex(t, tt.want), got)
			assert.Equal(t, tt.n+len(got), decodePkgLength(got), "decoded value")
		})
	}
	assert.Panics(t, func() { appendPkgLength(nil, maxPkgLength-3) })
}

// decodePkgLength is an independent decoder, written from the grammar's
// prose rather than from appendPkgLength.
func decodePkgLength(b []byte) int {
	follow := int(b[0] >> 6)
	if follow == 0 {
		return int(b[0] & 0x3F)
	}
	v := int(b[0] & 0x0F)
	for i := 1; i <= follow; i++ {
		v |= int(b[i]) << (4 + 8*(i-1))
	}
	return v
}

func TestInteger(t *testing.T) {
	tests := []struct {
		v    uint64
		want string
	}{
		{0, "00"},
		{1, "01"},
		{2, "0a 02"},
		{0xFF, "0a ff"},
		{0x100, "0b 00 01"},
		{0xFFFF, "0b ff ff"},
		{0x10000, "0c 00 00 01 00"},
		{0xFFFFFFFF, "0c ff ff ff ff"},
		{0x1_0000_0000, "0e 00 00 00 00 01 00 00 00"},
		{0xFFFF_FFFF_FFFF_FFFE, "0e fe ff ff ff ff ff ff ff"},
		{0xFFFF_FFFF_FFFF_FFFF, "ff"},
	}
	for _, tt := range tests {
		assert.Equal(t, unhex(t, tt.want), Encode(Integer(tt.v)), "%#x", tt.v)
	}
}

func TestNameString(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"_S5", "5f 53 35 5f"},
		{"PCI0", "50 43 49 30"},
		{`\_SB`, "5c 5f 53 42 5f"},
		{`\_SB.PCI0`, "5c 2e 5f 53 42 5f 50 43 49 30"},
		{`\_SB.PCI0.S08`, "5c 2f 03 5f 53 42 5f 50 43 49 30 53 30 38 5f"},
		{"^^X", "5e 5e 58 5f 5f 5f"},
		{`\`, "5c 00"},
	}
	for _, tt := range tests {
		got, err := parseNameString(tt.path)
		require.NoError(t, err, tt.path)
		assert.Equal(t, unhex(t, tt.want), got, tt.path)
	}
	for _, bad := range []string{"", "TOOLONG", "1ABC", "_sb", "A..B", "A.", `\^A`, "A-B"} {
		_, err := parseNameString(bad)
		assert.Error(t, err, "%q", bad)
	}
	assert.Panics(t, func() { Name("bad name", Integer(0)) })
}

// TestS5 checks \_S5 against iasl's encoding of
// Name (_S5, Package (0x04) {0x05, 0x05, 0x00, 0x00}), taken apart by hand:
// NameOp, "_S5_", PackageOp, PkgLength 8 (itself, NumElements and six bytes
// of elements), NumElements 4, BytePrefix 5 twice, ZeroOp twice.
func TestS5(t *testing.T) {
	got := Encode(Name("_S5", Package{Integer(5), Integer(5), Integer(0), Integer(0)}))
	assert.Equal(t, unhex(t, "08 5f 53 35 5f 12 08 04 0a 05 0a 05 00 00"), got)
}

func TestEISAID(t *testing.T) {
	v, err := compressEISAID("PNP0A08")
	require.NoError(t, err)
	assert.Equal(t, uint32(0x080AD041), v)
	v, err = compressEISAID("PNP0A03")
	require.NoError(t, err)
	assert.Equal(t, uint32(0x030AD041), v)
	assert.Equal(t, unhex(t, "0c 41 d0 0a 08"), Encode(EISAID("PNP0A08")))
	// Always a DWordConst, even when the value would fit a word.
	assert.Equal(t, unhex(t, "0c 04 21 00 00"), Encode(EISAID("AAA0000")))
	for _, bad := range []string{"PNP0A0", "pnp0A08", "PNP0a08", "PNP0G08", "1NP0A08"} {
		_, err := compressEISAID(bad)
		assert.Error(t, err, bad)
	}
	assert.Panics(t, func() { EISAID("nope") })
}

func TestDataObjects(t *testing.T) {
	assert.Equal(t, unhex(t, "0d 47 56 00"), Encode(String("GV")))
	assert.Equal(t, unhex(t, "0d 00"), Encode(String("")))
	assert.Panics(t, func() { Encode(String("caf\xc3\xa9")) })
	assert.Equal(t, unhex(t, "11 05 0a 02 aa bb"), Encode(Buffer{0xAA, 0xBB}))
	assert.Equal(t, unhex(t, "11 02 00"), Encode(Buffer{}))
	assert.Equal(t, unhex(t, "12 02 00"), Encode(Package{}))
	assert.Equal(t, unhex(t, "12 08 02 5c 58 5f 5f 5f 01"), Encode(Package{Path(`\X`), Integer(1)}))

	// More than 255 elements: VarPackageOp with an Integer count.
	big := make(Package, 256)
	for i := range big {
		big[i] = Integer(0)
	}
	got := Encode(big)
	assert.Equal(t, byte(varPackageOp), got[0])
	pl := appendPkgLength(nil, 3+256) // WordConst count, 256 ZeroOps
	assert.Equal(t, pl, got[1:1+len(pl)])
	assert.Equal(t, unhex(t, "0b 00 01"), got[1+len(pl):1+len(pl)+3])
}

func TestNamedObjects(t *testing.T) {
	// Method (_STA, 0, NotSerialized) { Return (0x0F) }, from iasl.
	assert.Equal(t, unhex(t, "14 09 5f 53 54 41 00 a4 0a 0f"),
		Encode(Method("_STA", 0, false, Return(Integer(0x0F)))))
	assert.Equal(t, byte(0x0B), Encode(Method("_OSC", 3, true))[6], "MethodFlags: 3 args | Serialized")
	assert.Panics(t, func() { Method("M", 8, false) })
	// Scope (\_SB) {}
	assert.Equal(t, unhex(t, "10 06 5c 5f 53 42 5f"), Encode(Scope(`\_SB`)))
	// Device (PCI0) { Name (_UID, Zero) }
	assert.Equal(t, unhex(t, "5b 82 0b 50 43 49 30 08 5f 55 49 44 00"),
		Encode(Device("PCI0", Name("_UID", Integer(0)))))
}

// crsASL and crsAML are a PCI host bridge style _CRS: the ASL below
// compiled by iasl 20200925, the buffer's bytes copied from its output.
const crsAML = "114d070a79" + // Buffer: PkgLength 0x74, BufferSize 0x79
	"880d00020c0000000000ff0000000001" + // WordBusNumber 0-0xFF
	"4701f80cf80c0108" + // IO (Decode16, 0xCF8, 0xCF8, 1, 8)
	"880d00010c0300000000f70c0000f80c" + // WordIO 0-0xCF7
	"871700000c0100000000000000c0ffffbffe000000000000c03e" + // DWordMemory 0xC0000000-0xFEBFFFFF
	"8a2b00000c0300000000000000000000000080000000ffffffffff00000000000000000000000000000080000000" + // QWordMemory 0x80_0000_0000-0xFF_FFFF_FFFF
	"220200" + // IRQNoFlags () {1}
	"23200218" + // IRQ (Level, ActiveLow, Shared) {5, 9}
	"7900" // EndTag

func crsNodes() Node {
	qm := QWordMemory(0x80_0000_0000, 0xFF_FFFF_FFFF)
	qm.TypeFlags |= MemoryCacheable
	return ResourceTemplate(
		WordBusNumber(0x00, 0xFF),
		IO{Decode16: true, Min: 0xCF8, Max: 0xCF8, Alignment: 1, Length: 8},
		WordIO(0x0000, 0x0CF7),
		DWordMemory(0xC000_0000, 0xFEBF_FFFF),
		qm,
		IRQNoFlags{1},
		IRQ{IRQs: []uint8{5, 9}, Level: true, ActiveLow: true, Shared: true},
	)
}

const crsASL = `ResourceTemplate () {
          WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0x0000, 0x0000, 0x00FF, 0x0000, 0x0100)
          IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
          WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8)
          DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000)
          QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, 0x0, 0x8000000000, 0xFFFFFFFFFF, 0x0, 0x8000000000)
          IRQNoFlags () {1}
          IRQ (Level, ActiveLow, Shared) {5, 9}
        }`

func TestResourceTemplate(t *testing.T) {
	assert.Equal(t, unhex(t, crsAML), Encode(crsNodes()))
	assert.Equal(t, unhex(t, "11 05 0a 02 79 00"), Encode(ResourceTemplate()))
	// The zero IRQ is edge-triggered, active-high, exclusive: _HE set.
	assert.Equal(t, unhex(t, "23 00 00 01"), IRQ{}.AppendResource(nil))
	assert.Equal(t, unhex(t, "86 09 00 01 00 00 b0 fe 00 10 00 00"),
		Memory32Fixed{ReadWrite: true, Base: 0xFEB0_0000, Length: 0x1000}.AppendResource(nil))
	assert.Equal(t, unhex(t, "86 09 00 00 78 56 34 12 10 00 00 00"),
		Memory32Fixed{Base: 0x1234_5678, Length: 0x10}.AppendResource(nil), "read-only")
	assert.Panics(t, func() { IRQNoFlags{16}.AppendResource(nil) })
	assert.Panics(t, func() { AddressSpace{Width: 8}.AppendResource(nil) })
	assert.Panics(t, func() { WordIO(0, 0xFFFF).AppendResource(nil) }, "length 0x10000 does not fit a word")
}

// TestAgainstIASL compiles ASL with iasl and compares its AML with this
// package's encoding of the same objects. iasl comes from Debian's
// acpica-tools package.
func TestAgainstIASL(t *testing.T) {
	iasl, err := exec.LookPath("iasl")
	if err != nil {
		t.Skip("iasl not found; install acpica-tools (apt-get install acpica-tools) to compare with the reference compiler")
	}

	hexBytes := func(n int) (string, Buffer) {
		var asl []string
		buf := make(Buffer, n)
		for i := range buf {
			buf[i] = byte(i)
			asl = append(asl, fmt.Sprintf("0x%02X", byte(i)))
		}
		return strings.Join(asl, ", "), buf
	}
	bigPkg := func(n int) (string, Package) {
		var asl []string
		pkg := make(Package, n)
		for i := range pkg {
			pkg[i] = Integer(i)
			asl = append(asl, fmt.Sprint(i))
		}
		return fmt.Sprintf("Package (%d) {%s}", n, strings.Join(asl, ", ")), pkg
	}

	type tc struct {
		name  string
		asl   string
		nodes []Node
	}
	var tests []tc
	for _, n := range []int{0, 1, 58, 59, 60, 61, 62, 63, 4088, 4089, 4090, 4091, 4092, 4093} {
		asl, buf := hexBytes(n)
		tests = append(tests, tc{
			name:  fmt.Sprintf("buffer%d", n),
			asl:   fmt.Sprintf("Name (BUF, Buffer (%d) {%s})", n, asl),
			nodes: []Node{Name("BUF", buf)},
		})
	}
	for _, n := range []int{255, 256, 300} {
		asl, pkg := bigPkg(n)
		tests = append(tests, tc{
			name:  fmt.Sprintf("package%d", n),
			asl:   fmt.Sprintf("Name (PKG, %s)", asl),
			nodes: []Node{Name("PKG", pkg)},
		})
	}
	tests = append(tests,
		tc{"s5", "Name (_S5, Package (0x04) {0x05, 0x05, 0x00, 0x00})",
			[]Node{Name("_S5", Package{Integer(5), Integer(5), Integer(0), Integer(0)})}},
		tc{"integers", `Name (INTS, Package () {0, 1, 2, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFFFFF,
				0x100000000, 0xFFFFFFFFFFFFFFFE, 0xFFFFFFFFFFFFFFFF})`,
			[]Node{Name("INTS", Package{Integer(0), Integer(1), Integer(2), Integer(0xFF),
				Integer(0x100), Integer(0xFFFF), Integer(0x10000), Integer(0xFFFFFFFF),
				Integer(0x1_0000_0000), Integer(0xFFFF_FFFF_FFFF_FFFE), Integer(0xFFFF_FFFF_FFFF_FFFF)})}},
		tc{"string", `Name (STR, "govmm")`, []Node{Name("STR", String("govmm"))}},
		tc{"platform-device", `Device (VR00) {
            Name (_HID, "LNRO0005")
            Name (_UID, 0)
            Name (_CRS, ResourceTemplate () {
                Memory32Fixed (ReadWrite, 0xFEB00000, 0x00001000)
                IRQ (Edge, ActiveHigh, Exclusive) {5}
            })
        }
        Device (VR01) {
            Name (_CRS, ResourceTemplate () {
                Memory32Fixed (ReadOnly, 0x12345678, 0x00000010)
                IRQ (Edge, ActiveHigh, Shared) {15}
            })
        }`,
			[]Node{
				Device("VR00",
					Name("_HID", String("LNRO0005")),
					Name("_UID", Integer(0)),
					Name("_CRS", ResourceTemplate(
						Memory32Fixed{ReadWrite: true, Base: 0xFEB0_0000, Length: 0x1000},
						IRQ{IRQs: []uint8{5}},
					)),
				),
				Device("VR01",
					Name("_CRS", ResourceTemplate(
						Memory32Fixed{Base: 0x1234_5678, Length: 0x10},
						IRQ{IRQs: []uint8{15}, Shared: true},
					)),
				),
			}},
		tc{"pci", `Scope (\_SB) {
        Device (PCI0) {
            Name (_HID, EisaId ("PNP0A08"))
            Name (_CID, EisaId ("PNP0A03"))
            Name (_UID, Zero)
            Name (_CRS, ` + crsASL + `)
            Method (_STA, 0, NotSerialized) { Return (0x0F) }
            Method (_OSC, 4, Serialized) { Return (Arg3) }
            Name (_PRT, Package () {
                Package () {0xFFFF, 0, \_SB.PCI0.LNKA, 0},
                Package () {0x0001FFFF, 1, Zero, 17},
            })
            Device (LNKA) { Name (_HID, EisaId ("PNP0C0F")) }
        }
    }
    Scope (\_SB.PCI0) { Name (ABCD, One) }
    Scope (\_SB.PCI0.LNKA) { Name (_UID, One) }`,
			[]Node{
				Scope(`\_SB`,
					Device("PCI0",
						Name("_HID", EISAID("PNP0A08")),
						Name("_CID", EISAID("PNP0A03")),
						Name("_UID", Integer(0)),
						Name("_CRS", crsNodes()),
						Method("_STA", 0, false, Return(Integer(0x0F))),
						Method("_OSC", 4, true, Return(arg3{})),
						Name("_PRT", Package{
							Package{Integer(0xFFFF), Integer(0), Path(`\_SB.PCI0.LNKA`), Integer(0)},
							Package{Integer(0x0001FFFF), Integer(1), Integer(0), Integer(17)},
						}),
						Device("LNKA", Name("_HID", EISAID("PNP0C0F"))),
					),
				),
				Scope(`\_SB.PCI0`, Name("ABCD", Integer(1))),
				Scope(`\_SB.PCI0.LNKA`, Name("_UID", Integer(1))),
			}},
	)

	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(dir, tt.name+".asl")
			asl := fmt.Sprintf("DefinitionBlock (\"\", \"SSDT\", 2, \"GOVMM \", \"TEST\", 1)\n{\n%s\n}\n", tt.asl)
			require.NoError(t, os.WriteFile(src, []byte(asl), 0o644))
			// -on keeps name paths as written (no \_SB -> _SB_ shortening).
			out, err := exec.Command(iasl, "-on", "-p", filepath.Join(dir, tt.name), src).CombinedOutput()
			require.NoError(t, err, "iasl:\n%s", out)
			aml, err := os.ReadFile(filepath.Join(dir, tt.name+".aml"))
			require.NoError(t, err)
			const headerLen = 36
			want := aml[headerLen:]
			got := Encode(tt.nodes...)
			if !bytes.Equal(want, got) {
				t.Errorf("AML differs from iasl's\niasl: %x\nours: %x", want, got)
			}
		})
	}
}

// arg3 is Arg3 (Arg0Op + 3, ACPI 6.5 §20.2.6.1), only for the test above.
type arg3 struct{}

func (arg3) AppendAML(b []byte) []byte { return append(b, 0x68+3) }

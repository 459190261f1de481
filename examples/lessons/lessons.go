// Package lessons holds govmm's lesson guests: tiny bare-metal programs,
// each showing one idea of how a PC and a hypervisor work, assembled from
// the GNU as sources in this directory and run with
//
//	govmm lesson NAME
//	govmm boot --raw --kernel build/lessons/NAME.bin   (an image built by hand)
//
// Each guest executes only a few thousand instructions, so it runs on any
// /dev/kvm, including a software KVM such as kvm_pvm. See README.md for the
// lessons in order.
//
// The sources and the linker script are embedded, so a program built from
// this package (`govmm lesson NAME`) can assemble a lesson anywhere GNU
// binutils is installed; BuildFile assembles a source file instead, such
// as a lesson changed for an exercise. The flat binaries themselves are
// build outputs and are never committed.
package lessons

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Lesson describes one lesson guest.
type Lesson struct {
	// Name is the lesson's directory and the base name of its source,
	// NAME/NAME.S.
	Name string
	// Summary is what a student learns from it, in one line.
	Summary string
}

// All lists the lessons in teaching order.
var All = []Lesson{
	{"hello", "real mode at 0000:7C00, the 16550 UART by polling LSR.THRE, power off through ACPI S5"},
	{"longmode", "real mode → 32-bit protected mode → 64-bit long mode: GDT, CR0.PE, PAE paging, EFER.LME, CR0.PG"},
	{"pit-irq", "the 8259 PIC and the 8254 PIT: a 100 Hz timer interrupt through the real-mode IVT, HLT until it fires"},
	{"virtio-rng", "a virtio device by hand: PCI scan, virtio-pci capabilities, feature negotiation, one split virtqueue"},
}

// Lookup returns the lesson called name.
func Lookup(name string) (Lesson, bool) {
	for _, l := range All {
		if l.Name == name {
			return l, true
		}
	}
	return Lesson{}, false
}

// Names returns the lessons' names in teaching order.
func Names() []string {
	names := make([]string, len(All))
	for i, l := range All {
		names[i] = l.Name
	}
	return names
}

//go:embed lesson.ld hello/hello.S longmode/longmode.S pit-irq/pit-irq.S virtio-rng/virtio-rng.S
var files embed.FS

// linkerScript is the embedded file every lesson is linked with.
const linkerScript = "lesson.ld"

// SourcePath is where a lesson's source lives, relative to this package's
// directory (examples/lessons in the repository).
func SourcePath(name string) string { return name + "/" + name + ".S" }

// Source returns the assembly source of the lesson called name.
func Source(name string) ([]byte, error) {
	if _, ok := Lookup(name); !ok {
		return nil, unknownLesson(name)
	}
	return files.ReadFile(SourcePath(name))
}

// ErrNoToolchain is returned (wrapped) by Build when GNU as or ld is not
// installed.
var ErrNoToolchain = errors.New("the lessons are assembled with GNU as and ld from binutils (Debian and Ubuntu: apt-get install binutils)")

// Toolchain returns the paths of GNU as and ld, or an error wrapping
// ErrNoToolchain.
func Toolchain() (as, ld string, err error) {
	if as, err = exec.LookPath("as"); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoToolchain, err)
	}
	if ld, err = exec.LookPath("ld"); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNoToolchain, err)
	}
	return as, ld, nil
}

// Build assembles and links the lesson called name into outDir/NAME.bin, a
// flat image to load at 0000:7C00 (govmm boot --raw), and returns its
// path. outDir is created if needed. It runs
//
//	as --64 --fatal-warnings -o NAME.o NAME.S
//	ld -m elf_x86_64 -z noexecstack -T lesson.ld -o NAME.bin NAME.o
//
// on the embedded source; assembler messages name the source's path in
// the repository.
func Build(name, outDir string) (path string, err error) {
	src, err := Source(name)
	if err != nil {
		return "", err
	}
	return assemble(name, "examples/lessons/"+SourcePath(name), src, outDir)
}

// BuildFile assembles and links the source file at srcPath, such as a
// lesson changed for an exercise, into outDir/BASE.bin, where BASE is the
// file's name without its extension, and returns that path. The file is
// linked with the lessons' linker script, so it must define start.
func BuildFile(srcPath, outDir string) (path string, err error) {
	src, err := os.ReadFile(srcPath)
	if err != nil {
		return "", err
	}
	name := strings.TrimSuffix(filepath.Base(srcPath), filepath.Ext(srcPath))
	if name == "" || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("%s: cannot name an image after this file", srcPath)
	}
	return assemble(name, srcPath, src, outDir)
}

// assemble turns src into outDir/name.bin; srcName is what the assembler's
// messages call the source.
func assemble(name, srcName string, src []byte, outDir string) (path string, err error) {
	as, ld, err := Toolchain()
	if err != nil {
		return "", err
	}
	script, err := files.ReadFile(linkerScript)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(outDir, "."+name+"-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	scriptPath := filepath.Join(tmp, linkerScript)
	if err := os.WriteFile(scriptPath, script, 0o644); err != nil {
		return "", err
	}
	obj := filepath.Join(tmp, name+".o")
	// The source goes in on stdin, so the assembler reads exactly these
	// bytes; its messages call it "{standard input}", which is put back
	// to the source's name.
	if err := runTool(as, src, srcName, "--64", "--fatal-warnings", "-o", obj, "-"); err != nil {
		return "", fmt.Errorf("lesson %s: assembling: %w", name, err)
	}
	path = filepath.Join(outDir, name+".bin")
	if err := runTool(ld, nil, "", "-m", "elf_x86_64", "-z", "noexecstack",
		"-T", scriptPath, "-o", path, obj); err != nil {
		return "", fmt.Errorf("lesson %s: linking: %w", name, err)
	}
	return path, nil
}

// runTool runs a tool with stdin and returns its messages as the error if it
// fails. srcName replaces the assembler's name for its standard input.
func runTool(tool string, stdin []byte, srcName string, args ...string) error {
	cmd := exec.Command(tool, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var msgs bytes.Buffer
	cmd.Stdout = &msgs
	cmd.Stderr = &msgs
	err := cmd.Run()
	if err == nil {
		return nil
	}
	out := strings.TrimSpace(msgs.String())
	if srcName != "" {
		out = strings.ReplaceAll(out, "{standard input}", srcName)
	}
	if out == "" {
		return fmt.Errorf("%s: %w", filepath.Base(tool), err)
	}
	return fmt.Errorf("%s: %w\n%s", filepath.Base(tool), err, out)
}

func unknownLesson(name string) error {
	return fmt.Errorf("no lesson called %q (the lessons are %s)", name, strings.Join(Names(), ", "))
}

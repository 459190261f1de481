package lessons

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/govmm/govmm/kvm"
	"github.com/govmm/govmm/machine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Each lesson is assembled from its source and run in-process on the
// local /dev/kvm, and its console output is compared byte for byte with
// what its README promises. The guests execute a few thousand
// instructions, so they run on a software KVM (kvm_pvm) too.

// guestTimeout bounds one lesson run; each finishes in well under a second
// (pit-irq waits for five 10 ms timer ticks).
const guestTimeout = 60 * time.Second

// virtioEnv, set to 1, makes the virtio-rng lesson's test fail instead of
// skipping on a machine without a virtio-rng device (see TestVirtioRNG).
const virtioEnv = "GOVMM_LESSON_VIRTIO"

// needToolchain skips a test on a machine without GNU binutils.
func needToolchain(t *testing.T) {
	t.Helper()
	if _, _, err := Toolchain(); err != nil {
		t.Skipf("skipping: cannot assemble the lessons: %v", err)
	}
}

// needKVM skips a test on a machine without a usable /dev/kvm.
func needKVM(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(kvm.DevicePath, os.O_RDWR, 0)
	if err != nil {
		t.Skipf("skipping: the lessons run on %s: %v", kvm.DevicePath, err)
	}
	f.Close()
}

// runLesson builds the lesson called name and runs it (see runImage).
func runLesson(t *testing.T, name string) (machine.Result, string, map[kvm.ExitReason]uint64, machine.Stats) {
	t.Helper()
	needToolchain(t)
	needKVM(t)
	bin, err := Build(name, t.TempDir())
	require.NoError(t, err)
	return runImage(t, bin)
}

// runImage runs the flat image at path on a 1-vCPU machine with the
// smallest RAM govmm allows. It returns how the run ended, the console
// output, and the exits that reached userspace by reason and, in the
// statistics, by port and address.
func runImage(t *testing.T, path string) (machine.Result, string, map[kvm.ExitReason]uint64, machine.Stats) {
	t.Helper()
	image, err := os.ReadFile(path)
	require.NoError(t, err)
	var out devicetest.Buffer
	m, err := machine.New(machine.Config{
		Kernel:   image,
		RealMode: true,
		MemSize:  64 << 20, // memory.MinRAM, the least ValidateShape accepts
		CPUs:     1,
		Console:  &out,
		Stats:    true,
	})
	require.NoError(t, err)
	defer m.Close()
	done := make(chan machine.Result, 1)
	go func() { done <- m.Run() }()
	select {
	case r := <-done:
		return r, out.String(), m.ExitCounts(), m.Stats()
	case <-time.After(guestTimeout):
		m.Stop("test timeout")
		<-done
		t.Fatalf("%s did not finish within %v; console so far: %q", path, guestTimeout, out.String())
	}
	return machine.Result{}, "", nil, machine.Stats{}
}

// uartInitExits is the number of port writes with which every lesson
// programs COM1 (LCR, DLL, DLM, LCR, IER).
const uartInitExits = 5

// printExits is the KVM_EXIT_IO count of printing s: an IN from LSR and an
// OUT to THR per byte, since govmm's transmitter is never busy.
func printExits(s string) uint64 { return 2 * uint64(len(s)) }

func TestHello(t *testing.T) {
	r, out, exits, _ := runLesson(t, "hello")
	require.NoError(t, r.Err)
	want := "Hello from a real-mode guest at 0000:7C00!\r\n" +
		"Powering off through ACPI: SLP_TYP=5|SLP_EN to PM1a_CNT (port 0x604).\r\n"
	assert.Equal(t, want, out)
	assert.Equal(t, machine.PowerOff, r.Reason, r.Detail)
	assert.Equal(t, "ACPI S5", r.Detail)
	// The README's count: every port access of this guest is one exit to
	// govmm, and nothing else leaves KVM.
	assert.Equal(t, uartInitExits+printExits(want)+1, exits[kvm.ExitIO], "KVM_EXIT_IO count")
	assert.Zero(t, exits[kvm.ExitMMIO], "KVM_EXIT_MMIO count")
	assert.Zero(t, exits[kvm.ExitHLT], "KVM_EXIT_HLT count")
}

func TestLongMode(t *testing.T) {
	r, out, exits, _ := runLesson(t, "longmode")
	require.NoError(t, r.Err)
	want := "[16-bit] real mode at 0000:7C00, CR0.PE=0\r\n" +
		"[32-bit] protected mode, flat segments from the GDT, CR0.PE=1\r\n" +
		"[64-bit] long mode, 2 MiB identity-mapped page, EFER=0x0000000000000500 (LME=bit 8, LMA=bit 10)\r\n" +
		"Powering off.\r\n"
	assert.Equal(t, want, out)
	assert.Equal(t, machine.PowerOff, r.Reason, r.Detail)
	assert.Equal(t, "ACPI S5", r.Detail)
	// The mode switches themselves (LGDT, MOV to CR0/CR3/CR4, WRMSR to
	// EFER, far jumps) are handled inside KVM: only port I/O reaches govmm.
	assert.Equal(t, uartInitExits+printExits(want)+1, exits[kvm.ExitIO], "KVM_EXIT_IO count")
	assert.Zero(t, exits[kvm.ExitMMIO], "KVM_EXIT_MMIO count")
}

func TestPITIRQ(t *testing.T) {
	r, out, exits, _ := runLesson(t, "pit-irq")
	require.NoError(t, r.Err)
	want := "PIC remapped to vectors 0x20-0x2F; PIT channel 0 at 100 Hz\r\n" +
		"ticks: .....\r\n" +
		"5 timer interrupts through IVT entry 0x20; powering off.\r\n"
	assert.Equal(t, want, out)
	assert.Equal(t, machine.PowerOff, r.Reason, r.Detail)
	assert.Equal(t, "ACPI S5", r.Detail)
	// The PIT is emulated by govmm, so its three port writes (mode, count
	// low, count high) exit to userspace; the PIC is KVM's in-kernel 8259,
	// so its initialisation, masks and EOIs never do, and neither do the
	// HLTs nor the interrupts themselves.
	const pitExits = 3
	assert.Equal(t, uartInitExits+pitExits+printExits(want)+1, exits[kvm.ExitIO], "KVM_EXIT_IO count")
	assert.Zero(t, exits[kvm.ExitHLT], "KVM_EXIT_HLT count")
	assert.Zero(t, exits[kvm.ExitMMIO], "KVM_EXIT_MMIO count")
}

// virtioRNGOutput is what the virtio-rng lesson prints when it finds the
// device and gets 16 random bytes: the slot, the BAR's address, the
// structures' offsets and the queue size depend on the machine, the bytes
// on chance.
var virtioRNGOutput = regexp.MustCompile(`^` +
	`virtio-rng lesson, in 32-bit protected mode\r\n` +
	`PCI 00:[0-9a-f]{2}\.0: 1af4:1044, a virtio entropy device\r\n` +
	`COMMON at BAR[0-5]\+0x[0-9a-f]{8}, NOTIFY at BAR[0-5]\+0x[0-9a-f]{8}, notify_off_multiplier 0x[0-9a-f]{8}\r\n` +
	`(?:BAR[0-5] = (?:0x[0-9a-f]{8}|port 0x[0-9a-f]{4})\r\n){1,2}` +
	`features: VIRTIO_F_VERSION_1 offered; FEATURES_OK accepted\r\n` +
	`queue 0: max size 0x[0-9a-f]{4}, using 8; DRIVER_OK\r\n` +
	`used ring: id 0x00000000, len 0x00000010\r\n` +
	`random bytes:((?: [0-9a-f]{2}){16})\r\n` +
	`powering off\.\r\n$`)

// virtioMMIOExits is the number of the lesson's accesses to the common
// configuration: 12 to initialise the device (§3.1.1 steps 1-6), 12 to set
// up queue 0 and set DRIVER_OK, and 1 to reset the device at the end. Each
// is one KVM_EXIT_MMIO. The notification is not among them: govmm puts an
// ioeventfd on the notify port, so that write stays inside KVM.
const virtioMMIOExits = 12 + 12 + 1

// TestVirtioRNG runs the virtio-rng lesson. It needs a machine with
// govmm's virtio-rng device on PCI bus 0; on one without, the guest says
// "no virtio device found" and the test is skipped, unless
// GOVMM_LESSON_VIRTIO=1 demands the device.
func TestVirtioRNG(t *testing.T) {
	r, out, exits, stats := runLesson(t, "virtio-rng")
	require.NoError(t, r.Err)
	if strings.HasPrefix(out, "virtio-rng lesson, in 32-bit protected mode\r\nno virtio device found") {
		if os.Getenv(virtioEnv) == "1" {
			t.Fatalf("%s=1 but the machine has no virtio-rng device:\n%s", virtioEnv, out)
		}
		t.Skipf("skipping: this govmm's machine has no virtio-rng device on PCI bus 0 (set %s=1 to make that a failure)", virtioEnv)
	}
	m := virtioRNGOutput.FindStringSubmatch(out)
	require.NotNil(t, m, "output does not match %s:\n%s", virtioRNGOutput, out)
	assert.NotEqual(t, strings.Repeat(" 00", 16), m[1], "the device left the buffer zeroed")
	assert.NotEqual(t, strings.Repeat(" aa", 16), m[1], "the device did not write the buffer")
	assert.Equal(t, machine.PowerOff, r.Reason, r.Detail)
	assert.Equal(t, "ACPI S5", r.Detail)
	assert.Equal(t, uint64(virtioMMIOExits), exits[kvm.ExitMMIO], "KVM_EXIT_MMIO count")
	// govmm lists the notify port first, so the driver notified through
	// it, and KVM's ioeventfd took the write: no port exit reached the
	// device.
	assert.Contains(t, out, " = port 0x", "the notify structure in an I/O BAR")
	for _, d := range stats.Devices {
		if d.Device == "virtio-rng" {
			assert.NotEqual(t, "pio", d.Kind, "the notification exited to userspace (%d exits)", d.Exits)
		}
	}
}

// TestBuildAll checks that every lesson assembles and fits where govmm
// loads a raw image.
func TestBuildAll(t *testing.T) {
	needToolchain(t)
	dir := t.TempDir()
	for _, l := range All {
		bin, err := Build(l.Name, dir)
		require.NoError(t, err, l.Name)
		assert.Equal(t, filepath.Join(dir, l.Name+".bin"), bin)
		fi, err := os.Stat(bin)
		require.NoError(t, err)
		assert.NotZero(t, fi.Size(), l.Name)
		assert.LessOrEqual(t, fi.Size(), int64(machine.MaxRealModeImage), l.Name)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, len(All), "Build leaves only the images behind")
}

func TestBuildUnknownLesson(t *testing.T) {
	_, err := Build("no-such-lesson", t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "hello, longmode, pit-irq, virtio-rng")
}

// TestAssemblerErrorsNameTheSource: a mistake in a lesson is reported at
// its line in the repository file, not in "{standard input}".
func TestAssemblerErrorsNameTheSource(t *testing.T) {
	needToolchain(t)
	_, err := assemble("hello", "examples/lessons/hello/hello.S", []byte(".intel_syntax noprefix\n.code16\nmov ax, bogus register\n"), t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "examples/lessons/hello/hello.S:3:")
	assert.NotContains(t, err.Error(), "{standard input}")
}

// TestBuildFileForExercises does what a student does: change a lesson's
// source and run it. The new greeting must come out, with two more exits
// per added byte.
func TestBuildFileForExercises(t *testing.T) {
	needToolchain(t)
	needKVM(t)
	src, err := Source("hello")
	require.NoError(t, err)
	const old, changed = "Hello from a real-mode guest", "Hi from my own real-mode guest"
	require.Contains(t, string(src), old)
	path := filepath.Join(t.TempDir(), "my-hello.S")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(src), old, changed, 1)), 0o644))

	bin, err := BuildFile(path, t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, "my-hello.bin", filepath.Base(bin))
	r, out, exits, _ := runImage(t, bin)
	require.NoError(t, r.Err)
	want := changed + " at 0000:7C00!\r\n" +
		"Powering off through ACPI: SLP_TYP=5|SLP_EN to PM1a_CNT (port 0x604).\r\n"
	assert.Equal(t, want, out)
	assert.Equal(t, uartInitExits+printExits(want)+1, exits[kvm.ExitIO], "KVM_EXIT_IO count")
}

func TestBuildFileErrors(t *testing.T) {
	needToolchain(t)
	dir := t.TempDir()
	_, err := BuildFile(filepath.Join(dir, "missing.S"), dir)
	assert.Error(t, err)
	bad := filepath.Join(dir, "bad.S")
	require.NoError(t, os.WriteFile(bad, []byte(".intel_syntax noprefix\n.code16\nstart: jmp nowhere\n"), 0o644))
	_, err = BuildFile(bad, dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "linking")
	noStart := filepath.Join(dir, "nostart.S")
	require.NoError(t, os.WriteFile(noStart, []byte(".code16\nhlt\n"), 0o644))
	_, err = BuildFile(noStart, dir)
	require.Error(t, err, "a file without start must not link")
}

func TestToolchainMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Build("hello", t.TempDir())
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrNoToolchain), err)
}

func TestEverySourceIsEmbedded(t *testing.T) {
	for _, l := range All {
		src, err := Source(l.Name)
		require.NoError(t, err, l.Name)
		assert.Contains(t, string(src), ".intel_syntax noprefix", l.Name)
		onDisk, err := os.ReadFile(SourcePath(l.Name))
		require.NoError(t, err)
		assert.Equal(t, string(onDisk), string(src), l.Name)
	}
}

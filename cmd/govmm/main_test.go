package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// runCLI runs govmm with args and returns its status, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	status := run(args, nil, &out, &errb)
	return status, out.String(), errb.String()
}

func TestCLIBadInputsGetOneClearLine(t *testing.T) {
	dir := t.TempDir()
	notBz := filepath.Join(dir, "notes.txt")
	assert.NoError(t, os.WriteFile(notBz, bytes.Repeat([]byte("hello\n"), 200), 0o644))
	empty := filepath.Join(dir, "empty")
	assert.NoError(t, os.WriteFile(empty, nil, 0o644))
	elf := filepath.Join(dir, "vmlinux")
	assert.NoError(t, os.WriteFile(elf, append([]byte("\x7fELF"), make([]byte, 4096)...), 0o644))

	for _, c := range []struct {
		name string
		args []string
		want string // a fragment the message must contain
	}{
		{"no kernel flag", []string{"boot"}, "--kernel is required"},
		{"missing kernel", []string{"boot", "--kernel", filepath.Join(dir, "nope")}, "cannot read kernel " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"kernel is a directory", []string{"boot", "--kernel", dir}, "is a directory"},
		{"empty kernel", []string{"boot", "--kernel", empty}, "is empty"},
		{"not a bzImage", []string{"boot", "--kernel", notBz}, "not a Linux bzImage"},
		{"ELF vmlinux", []string{"boot", "--kernel", elf}, "ELF"},
		{"missing initrd", []string{"boot", "--kernel", notBz, "--initrd", filepath.Join(dir, "nope")}, "not a Linux bzImage"},
		{"malformed size", []string{"boot", "--kernel", notBz, "--mem", "12X"}, `invalid size "12X"`},
		{"too little memory", []string{"boot", "--kernel", notBz, "--mem", "16M"}, "at least 64 MiB"},
		{"zero CPUs", []string{"boot", "--kernel", notBz, "--cpus", "0"}, "--cpus 0: must be between 1 and 64"},
		{"too many CPUs", []string{"boot", "--kernel", notBz, "--cpus", "65"}, "--cpus 65: must be between 1 and 64"},
		{"bad log level", []string{"boot", "--kernel", notBz, "--log-level", "loud"}, "invalid --log-level"},
		{"unknown flag", []string{"boot", "--frobnicate"}, "unknown flag"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"raw with initrd", []string{"boot", "--raw", "--kernel", notBz, "--initrd", notBz}, "--initrd cannot be used with --raw"},
		{"unknown trace reason", []string{"boot", "--kernel", notBz, "--trace", filepath.Join(dir, "t"), "--trace-reason", "io,bogus"}, `unknown exit reason "bogus"`},
		{"net without tap", []string{"boot", "--kernel", notBz, "--net", "mac=02:00:00:00:00:01"}, "--net"},
		{"net with a multicast MAC", []string{"boot", "--kernel", notBz, "--net", "tap=t0,mac=01:00:5e:00:00:01"}, "multicast"},
		{"net with an unknown option", []string{"boot", "--kernel", notBz, "--net", "tap=t0,speed=10G"}, "speed"},
		{"gdb on a bad address", []string{"boot", "--raw", "--kernel", notBz, "--gdb", "127.0.0.1:notaport"}, "--gdb"},
		{"unknown virtio transport", []string{"boot", "--kernel", notBz, "--virtio-transport", "ccw"}, `--virtio-transport: virtio transport "ccw": want pci or mmio`},
		{"trace filter without trace", []string{"boot", "--kernel", notBz, "--trace-device", "uart"}, "need --trace FILE"},
		{"trace file in a missing directory", []string{"boot", "--raw", "--kernel", notBz, "--trace", filepath.Join(dir, "no", "t")}, "--trace: open"},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, stdout, stderr := runCLI(t, c.args...)
			assert.NotZero(t, status)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, c.want)
			assert.NotContains(t, stderr, "goroutine", "no Go stack trace")
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			assert.True(t, strings.HasPrefix(lines[len(lines)-1], "govmm: "), "the error is a govmm: line: %q", stderr)
		})
	}
}

func TestCLIVersionAndHelp(t *testing.T) {
	status, out, _ := runCLI(t, "version")
	assert.Zero(t, status)
	assert.True(t, strings.HasPrefix(out, "govmm "))
	status, out, _ = runCLI(t, "help")
	assert.Zero(t, status)
	assert.Contains(t, out, "govmm boot --kernel PATH")
	status, _, _ = runCLI(t)
	assert.Equal(t, exitUsage, status)
}

// TestCLIStats boots a real-mode guest that prints "HI" and resets, with
// every statistics and tracing output on.
func TestCLIStats(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("needs /dev/kvm")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "hi.bin")
	assert.NoError(t, os.WriteFile(img, []byte{
		0xBA, 0xF8, 0x03, // mov dx, 0x3f8
		0xB0, 'H', 0xEE, //  mov al, 'H'; out dx, al
		0xB0, 'I', 0xEE, //  mov al, 'I'; out dx, al
		0xB0, 0xFE, 0xE6, 0x64, // mov al, 0xfe; out 0x64, al: reset
		0xF4, // hlt
	}, 0o644))
	trace, js := filepath.Join(dir, "trace"), filepath.Join(dir, "stats.json")
	status, stdout, stderr := runCLI(t, "boot", "--raw", "--kernel", img, "--mem", "64M",
		"--stats", "--stats-json", js, "--trace", trace, "--trace-device", "uart")
	assert.Zero(t, status, stderr)
	assert.Equal(t, "HI", stdout)
	assert.Regexp(t, `KVM_EXIT_IO\s+3\s+100\.0`, stderr)
	assert.Regexp(t, `0x03f8\s+COM1 16550A UART\s+0\s+2`, stderr)
	tr, err := os.ReadFile(trace)
	assert.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(tr), `dev="COM1 16550A UART"`), "%s", tr)
	assert.NotContains(t, string(tr), "i8042", "filtered out")
	j, err := os.ReadFile(js)
	assert.NoError(t, err)
	assert.Contains(t, string(j), `"reason": "KVM_EXIT_IO"`)
	assert.Contains(t, string(j), `"device": "i8042 command/status"`)
}

// TestCLIDiskErrors: each bad --disk is refused before the guest starts,
// with a message naming the image.
func TestCLIDiskErrors(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("needs /dev/kvm")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "guest.bin")
	assert.NoError(t, os.WriteFile(img, []byte{0xF4}, 0o644)) // hlt
	disk := filepath.Join(dir, "disk.img")
	assert.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	empty := filepath.Join(dir, "empty.img")
	assert.NoError(t, os.WriteFile(empty, nil, 0o644))
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing image", []string{"--disk", filepath.Join(dir, "nope.img")}, filepath.Join(dir, "nope.img")},
		{"bad option", []string{"--disk", disk + ",rx"}, `unknown option "rx"`},
		{"directory", []string{"--disk", dir}, "directory"},
		{"empty image", []string{"--disk", empty}, empty},
		{"same image twice", []string{"--disk", disk, "--disk", disk}, "lock"},
		{"read-only and read-write", []string{"--disk", disk + ",ro", "--disk", disk}, "lock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"boot", "--raw", "--kernel", img, "--mem", "64M"}, c.args...)
			status, stdout, stderr := runCLI(t, args...)
			assert.NotZero(t, status)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, c.want)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
		})
	}
	data, err := os.ReadFile(disk)
	assert.NoError(t, err)
	assert.Equal(t, make([]byte, 1<<20), data, "a refused run leaves the image alone")
}

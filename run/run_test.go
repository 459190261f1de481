package run

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/internal/clitest"
	"github.com/govmm/govmm/internal/tinykernel"
	"github.com/govmm/govmm/machine"
	"github.com/govmm/govmm/run/wire"
)

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// tinyKernel writes a synthetic bzImage that passes the setup header
// checks (it has no release string, so no modules are looked for).
func tinyKernel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bzImage")
	require.NoError(t, os.WriteFile(p, tinykernel.BzImage(tinykernel.PrintCmdlineAndPowerOff), 0o644))
	return p
}

// tempFiles lists the console logs left in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "govmm-run-*"))
	require.NoError(t, err)
	return m
}

func TestRunSetupErrors(t *testing.T) {
	kernel := tinyKernel(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-bzImage")
	notKernel := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notKernel, bytes.Repeat([]byte("hello\n"), 200), 0o644))

	base := func() Options {
		return Options{
			Kernel:  kernel,
			Args:    []string{"true"},
			MemSize: 256 << 20,
			CPUs:    1,
			KVMPath: "/nonexistent/kvm",
		}
	}
	for _, c := range []struct {
		name string
		edit func(*Options)
		want []string
	}{
		{"no KVM device", func(*Options) {}, []string{"/dev/kvm", "/nonexistent/kvm"}},
		{"missing kernel", func(o *Options) { o.Kernel = missing },
			[]string{"cannot read kernel " + missing + ": no such file or directory"}},
		{"no kernel", func(o *Options) { o.Kernel = "" }, []string{"--kernel is required"}},
		{"not a kernel", func(o *Options) { o.Kernel = notKernel }, []string{notKernel}},
		{"rootfs and disk", func(o *Options) {
			o.RootFS = "/"
			o.Disk = &machine.Disk{Path: filepath.Join(dir, "disk.img")}
		}, []string{"--rootfs and --disk"}},
		{"missing initrd", func(o *Options) { o.Initrd = filepath.Join(dir, "no-initrd") },
			[]string{"--initrd", filepath.Join(dir, "no-initrd")}},
		{"modules for a kernel without a release", func(o *Options) { o.Modules = dir },
			[]string{"kernel " + kernel, "--modules"}},
		{"no command", func(o *Options) { o.Args = nil }, nil},
		{"console log in a missing directory", func(o *Options) { o.ConsoleLog = filepath.Join(dir, "no", "c.log") },
			[]string{"the console log", filepath.Join(dir, "no", "c.log")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			o := base()
			c.edit(&o)
			var stdout, stderr bytes.Buffer
			o.Stdout, o.Stderr, o.Log = &stdout, &stderr, discardLog
			status := Run(o)
			assert.Equal(t, StatusError, status)
			assert.Empty(t, stdout.String())
			clitest.AssertOneLine(t, stderr.String(), c.want...)
			assert.Empty(t, tempFiles(t, tmp), "a run that never started leaves no console log behind")
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	base := "console=ttyS0 quiet panic=-1 reboot=k rdinit=/govmm-init"
	assert.Equal(t, base, kernelCmdline(""))
	assert.Equal(t, base+" loglevel=7 foo=bar", kernelCmdline("loglevel=7 foo=bar"))
	assert.Contains(t, kernelCmdline(""), "rdinit="+wire.InitPath)
}

func TestVerdict(t *testing.T) {
	hello := func(r *runner) { r.helloSeen.Store(true) }
	exit := func(st wire.ExitStatus) func(*runner) {
		return func(r *runner) {
			r.helloSeen.Store(true)
			r.exit.Store(&st)
		}
	}
	started := func(r *runner) {
		r.console.Write([]byte("[    1.0] " + wire.StartedLine + "\r\n"))
	}
	powerOff := machine.Result{Reason: machine.PowerOff, Detail: "ACPI S5"}
	stopped := machine.Result{Reason: machine.Stopped, Detail: "timeout"}

	for _, c := range []struct {
		name    string
		opts    Options
		setup   func(*runner)
		res     machine.Result
		status  int
		want    []string // fragments of stderr; none for a clean run
		success bool     // the console log is to be removed
	}{
		{name: "command succeeded", setup: exit(wire.ExitStatus{Status: 0}), res: powerOff,
			status: 0, success: true},
		{name: "command failed", setup: exit(wire.ExitStatus{Status: 3}), res: machine.Result{Reason: machine.Stopped, Detail: "the command ended"},
			status: 3, success: true},
		{name: "command killed by a signal", setup: exit(wire.ExitStatus{Status: 137, Signal: 9}), res: powerOff,
			status: 137, success: true},
		{name: "command not found", setup: exit(wire.ExitStatus{Status: StatusNotFound}), res: powerOff,
			status: 127, success: true},
		{name: "exit status wins over a later timeout", opts: Options{Timeout: time.Second},
			setup: func(r *runner) { exit(wire.ExitStatus{Status: 5})(r); r.timedOut.Store(true) },
			res:   stopped, status: 5, success: true},
		{name: "init error", setup: exit(wire.ExitStatus{Status: wire.StatusInitError, InitError: "mount /newroot: no such device"}),
			res: powerOff, status: StatusError,
			want: []string{"govmm's init in the guest failed", "mount /newroot: no such device"}},
		{name: "protocol error", setup: func(r *runner) {
			hello(r)
			err := errors.New("the guest's control port: wire: malformed frame: type 99")
			r.protoErr.Store(&err)
		}, res: stopped, status: StatusError, want: []string{"malformed frame"}},
		{name: "pvpanic", setup: func(r *runner) { started(r); hello(r); r.panicked.Store(true) },
			res:    machine.Result{Reason: machine.Stopped, Detail: "the guest kernel panicked"},
			status: StatusPanic, want: []string{"panicked"}},
		{name: "panic on the console, then a reset before the watcher looked", setup: func(r *runner) {
			started(r)
			hello(r)
			r.console.Write([]byte("[    3.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\r\n"))
		}, res: machine.Result{Reason: machine.Reset, Detail: "i8042 reset"},
			status: StatusPanic, want: []string{"panicked", "Attempted to kill init!"}},
		{name: "machine failed", setup: hello,
			res:    machine.Result{Reason: machine.Failed, Detail: "KVM_RUN: bad address", Err: errors.New("KVM_RUN: bad address")},
			status: StatusError, want: []string{"KVM_RUN: bad address"}},
		{name: "boot timeout", opts: Options{BootTimeout: 7 * time.Second},
			setup: func(r *runner) { r.timedOut.Store(true) }, res: stopped,
			status: StatusNoInit, want: []string{"did not reach govmm's init within 7s", "hung"}},
		{name: "default boot timeout", setup: func(r *runner) { r.timedOut.Store(true) }, res: stopped,
			status: StatusNoInit, want: []string{"within 3m0s"}},
		{name: "--timeout before init", opts: Options{Timeout: 5 * time.Second},
			setup: func(r *runner) { r.timedOut.Store(true) }, res: stopped,
			status: StatusNoInit, want: []string{"did not reach govmm's init within 5s"}},
		{name: "--timeout after init", opts: Options{Timeout: 5 * time.Second},
			setup: func(r *runner) { hello(r); r.timedOut.Store(true) }, res: stopped,
			status: StatusTimeout, want: []string{"--timeout 5s", "killed"}},
		{name: "--timeout after the init printed its first line", opts: Options{Timeout: 5 * time.Second},
			setup: func(r *runner) { started(r); r.timedOut.Store(true) }, res: stopped,
			status: StatusTimeout, want: []string{"--timeout 5s"}},
		{name: "ended before init", setup: func(*runner) {},
			res:    machine.Result{Reason: machine.Reset, Detail: "triple fault"},
			status: StatusNoInit, want: []string{"never reached govmm's init", "reset: triple fault"}},
		{name: "init started, no hello", setup: started, res: powerOff,
			status: StatusError, want: []string{"control port never came up", "power off"}},
		{name: "hello, then the guest ended without a status", setup: func(r *runner) { started(r); hello(r) },
			res:    powerOff,
			status: StatusError, want: []string{"before the command reported its status", "power off: ACPI S5"}},
		{name: "SIGTERM", setup: func(r *runner) { hello(r); r.signal.Store(syscall.SIGTERM) },
			res:    machine.Result{Reason: machine.Stopped, Detail: "received terminated"},
			status: 128 + 15, want: []string{"stopped by terminated"}},
		{name: "SIGINT before init", setup: func(r *runner) { r.signal.Store(syscall.SIGINT) },
			res:    machine.Result{Reason: machine.Stopped, Detail: "received interrupt"},
			status: 128 + 2, want: []string{"stopped by interrupt"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			var stderr, echo bytes.Buffer
			cons, err := newConsoleLog("", false, &echo)
			require.NoError(t, err)
			t.Cleanup(func() { os.Remove(cons.path) })
			cons.Write([]byte("[    0.0] Linux version 6.1.0\r\n"))
			c.opts.Stderr = &stderr
			r := &runner{opts: c.opts, log: discardLog, console: cons}
			c.setup(r)

			status := r.verdict(c.res)
			assert.Equal(t, c.status, status)
			require.NoError(t, cons.Close())
			if c.success {
				assert.Empty(t, stderr.String())
				assert.NoFileExists(t, cons.path, "a successful run's console log is removed")
				return
			}
			s := stderr.String()
			assert.True(t, strings.HasPrefix(s, "govmm: "), "%q", s)
			require.NotEmpty(t, c.want)
			first, _, _ := strings.Cut(s, "\n")
			assert.Contains(t, first, c.want[0], "the first line names the situation")
			for _, w := range c.want {
				assert.Contains(t, s, w)
			}
			assert.NotContains(t, s, "goroutine")
			assert.FileExists(t, cons.path, "a failed run's console log is kept")
			if c.status != 128+15 && c.status != 128+2 {
				// explain: the console's tail and where the log is.
				assert.Contains(t, s, "the last lines of the guest's console:\n  | [    0.0] Linux version 6.1.0\n")
				assert.Contains(t, s, "the guest's whole console is in "+cons.path+"\n")
			}
			assert.Empty(t, echo.String())
		})
	}
}

// TestVerdictFirstLineNamesTheSituation: the first line says what
// happened, before the console's tail.
func TestVerdictFirstLineNamesTheSituation(t *testing.T) {
	cons, err := newConsoleLog(filepath.Join(t.TempDir(), "c.log"), false, io.Discard)
	require.NoError(t, err)
	defer cons.Close()
	cons.Write([]byte("Kernel panic - not syncing: VFS: Unable to mount root fs\n"))
	var stderr bytes.Buffer
	r := &runner{opts: Options{Stderr: &stderr}, log: discardLog, console: cons}
	r.panicked.Store(true)
	assert.Equal(t, StatusPanic, r.verdict(machine.Result{Reason: machine.Stopped}))
	lines := strings.Split(stderr.String(), "\n")
	require.GreaterOrEqual(t, len(lines), 4)
	assert.Equal(t, "govmm: the guest kernel panicked", lines[0])
	assert.Equal(t, "govmm: the last lines of the guest's console:", lines[1])
	assert.Equal(t, "  | Kernel panic - not syncing: VFS: Unable to mount root fs", lines[2])
	assert.Equal(t, "govmm: the guest's whole console is in "+cons.path, lines[3])
}

// TestVerdictWithConsoleShown: with --console the user saw the console
// already; only the failure and the log's place are printed.
func TestVerdictWithConsoleShown(t *testing.T) {
	var stderr bytes.Buffer
	cons, err := newConsoleLog(filepath.Join(t.TempDir(), "c.log"), true, &stderr)
	require.NoError(t, err)
	defer cons.Close()
	cons.Write([]byte("booting\r\n"))
	r := &runner{opts: Options{Stderr: &stderr, Console: true}, log: discardLog, console: cons}
	status := r.verdict(machine.Result{Reason: machine.Halted, Detail: "all vCPUs halted"})
	assert.Equal(t, StatusNoInit, status)
	assert.Equal(t, "booting\r\n"+
		"govmm: the guest never reached govmm's init: it ended early (halted: all vCPUs halted)\n"+
		"govmm: the guest's whole console is in "+cons.path+"\n", stderr.String())
}

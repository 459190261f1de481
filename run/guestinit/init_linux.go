//go:build linux

package guestinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// Main runs the init, as described in the package comment, and powers
// the VM off at the end. It never returns.
//
// The kernel starts PID 1 with /dev/console open as its descriptors 0, 1
// and 2 when the initramfs has a /dev/console node, which the host puts
// there; without it they are closed, and Go's runtime, which opens
// /dev/null in their place, stops the program before Main.
func Main() {
	in := &initProc{console: os.Stderr}
	// First of all, so the host knows the init was reached even if
	// nothing else works.
	fmt.Fprintln(in.console, wire.StartedLine)
	in.catchSignals()
	st := in.run()
	if in.finish(st) {
		// The host stops the VM when it reads the Exit frame. A write
		// to a virtio-console port returns once the data is queued,
		// not once the host has it, so powering off at once could end
		// the VM with the frame (and the output before it) still in
		// the transmit queue; the init leaves the ending to the host,
		// and powers off itself only if the host never does.
		time.Sleep(hostStopGrace)
	}
	powerOff(in.consolef)
}

// hostStopGrace is how long the init waits for the host to stop the VM
// after sending the command's status.
const hostStopGrace = 30 * time.Second

// initProc is the state the init's steps share.
type initProc struct {
	console io.Writer // the kernel console (the init's fd 2)
	stdin   *os.File  // the stdin port, or /dev/null; nil until opened
	ctlFile *os.File  // the control port; nil until opened
	modules []string  // the modules loaded, for error messages

	mu    sync.Mutex   // guards ctl and early: signals are logged from another goroutine
	ctl   *wire.Writer // frames to ctlFile; nil until Hello went out
	early []string     // log lines from before ctl, sent after Hello
}

// consolef prints a line on the console, after wire.ConsolePrefix.
func (in *initProc) consolef(format string, args ...any) {
	fmt.Fprintf(in.console, "%s%s\n", wire.ConsolePrefix, fmt.Sprintf(format, args...))
}

// logf prints a line on the console and sends it in a Log frame, or
// keeps it to send once the control port is open.
func (in *initProc) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	in.consolef("%s", line)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.ctl == nil {
		in.early = append(in.early, line)
		return
	}
	// A control port that fails is reported once, by finish; the
	// line is on the console anyway.
	_ = in.ctl.Logf("%s", line)
}

// initError logs err as the init's failure and returns the exit status
// that reports it.
func (in *initProc) initError(err error) wire.ExitStatus {
	in.logf("error: %v", err)
	return initFailure(err)
}

// catchSignals keeps signals from ending the init. Go's runtime exits the
// program on SIGTERM, SIGINT, SIGHUP and the like when nobody asked for
// them, and PID 1 exiting panics the kernel; so the init asks for them,
// with signal.Notify, and only logs them. Notify installs a handler, and
// execve(2) resets handled signals to their defaults, so the command
// still dies of a SIGTERM as usual (man 7 signal, "Signal disposition");
// signal.Ignore would have passed SIG_IGN on to it.
func (in *initProc) catchSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM,
		unix.SIGUSR1, unix.SIGUSR2, unix.SIGPWR)
	go func() {
		for s := range ch {
			in.logf("ignoring signal %v sent to PID 1", s)
		}
	}()
}

// run carries out the init's steps up to the command's exit and returns
// the status to report.
func (in *initProc) run() (st wire.ExitStatus) {
	defer func() {
		// The init must not die of a bug either: report it and let
		// Main power off.
		if r := recover(); r != nil {
			st = in.initError(fmt.Errorf("internal error: %v", r))
		}
	}()

	for _, m := range earlyMounts() {
		err := in.mount(m)
		if errors.Is(err, unix.EBUSY) && m.fstype == "devtmpfs" {
			// The kernel mounted it already
			// (CONFIG_DEVTMPFS_MOUNT).
			continue
		}
		if err != nil {
			return in.initError(err)
		}
	}

	cfg, err := readConfig(wire.ConfigPath)
	if err != nil {
		return in.initError(err)
	}
	in.loadModules(cfg.Modules)
	if err := in.openPorts(); err != nil {
		return in.initError(err)
	}

	steps, newRoot := planMounts(cfg)
	for _, s := range steps {
		if err := in.mount(s); err != nil {
			return in.initError(err)
		}
	}
	if newRoot != "" {
		if err := switchRoot(newRoot); err != nil {
			return in.initError(err)
		}
	}

	if cfg.Hostname != "" {
		if err := sethostname(cfg.Hostname); err != nil {
			return in.initError(err)
		}
	}
	if err := checkWorkDir(cfg.Dir); err != nil {
		return in.initError(err)
	}
	if cfg.Dir != "" {
		// The command inherits the init's working directory.
		if err := unix.Chdir(cfg.Dir); err != nil {
			return in.initError(fmt.Errorf("changing to the working directory %s: %w", cfg.Dir, err))
		}
	}

	in.mu.Lock()
	w := in.ctl
	in.mu.Unlock()
	st = runCommand(w, cfg.Args, buildEnv(cfg.Env), in.stdin, outputGrace, in.logf)
	_ = in.stdin.Close()
	if st.InitError != "" {
		in.logf("error: %s", st.InitError)
	}
	if cfg.Root != nil && cfg.Root.Kind == wire.RootBlock && !cfg.Root.ReadOnly {
		leaveDiskClean(in.logf)
	}
	return st
}

// leaveDiskClean remounts a disk root read-only once the command has
// ended. The host stops the VM without a shutdown, so this is the
// shutdown's last step: the remount writes back every dirty buffer and
// marks the file system clean (for ext4, the journal is empty and no
// recovery is needed), so the image on the host is consistent and fsck
// finds nothing. A process still writing (a daemon the command left
// behind) makes it fail with EBUSY; then the sync before the status
// report is all there is.
func leaveDiskClean(logf func(string, ...any)) {
	unix.Sync()
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		logf("could not remount the root disk read-only before the end (%v); it was synced, but may need a journal replay", err)
	}
}

// readConfig reads and validates the host's config file.
func readConfig(path string) (*wire.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the config: %w", err)
	}
	cfg, err := wire.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// loadModules loads the kernel modules in order. A module that fails is
// logged and skipped: if it was needed, a later step fails with an error
// of its own (a port or a file system type that is missing), and the log
// line explains it.
func (in *initProc) loadModules(paths []string) {
	start := time.Now()
	for _, p := range paths {
		err := loadModule(p)
		if err != nil && !errors.Is(err, errAlreadyLoaded) {
			in.logf("%v", err)
			continue
		}
		in.modules = append(in.modules, filepath.Base(p))
	}
	if len(paths) > 0 {
		in.logf("loaded %d of %d modules in %v", len(in.modules), len(paths), time.Since(start).Round(time.Millisecond))
	}
}

// moduleList names the modules loaded, for error messages.
func (in *initProc) moduleList() string {
	if len(in.modules) == 0 {
		return "none"
	}
	return strings.Join(in.modules, ", ")
}

// openPorts finds the control and stdin ports, opens them, and sends
// Hello. Without the control port the init cannot report anything but on
// the console, so that is an error; without the stdin port the command
// reads from /dev/null, and a Log line says why.
func (in *initProc) openPorts() error {
	ctl, err := in.openNamedPort(wire.ControlPort, unix.O_WRONLY)
	if err != nil {
		return err
	}
	w := wire.NewWriter(ctl)
	if err := w.Hello(kernelRelease()); err != nil {
		_ = ctl.Close()
		return fmt.Errorf("control port: sending Hello: %w", err)
	}
	in.ctlFile = ctl
	in.mu.Lock()
	in.ctl = w
	early := in.early
	in.early = nil
	in.mu.Unlock()
	for _, line := range early {
		_ = w.Logf("%s", line)
	}

	stdin, err := in.openNamedPort(wire.StdinPort, unix.O_RDONLY)
	if err != nil {
		in.logf("%v; the command's standard input is /dev/null", err)
		stdin, err = os.Open(os.DevNull)
		if err != nil {
			return fmt.Errorf("opening %s for the command's standard input: %w", os.DevNull, err)
		}
	}
	in.stdin = stdin
	return nil
}

// openNamedPort waits for the virtio-console port called name and opens
// its device node with flags.
func (in *initProc) openNamedPort(name string, flags int) (*os.File, error) {
	dev, err := waitForPort(virtioPortsClass, name, deviceTimeout, pollInterval)
	if err != nil {
		return nil, fmt.Errorf("%w; modules loaded: %s", err, in.moduleList())
	}
	// devtmpfs makes the node when the port is added, before the host
	// names it, but wait for it all the same.
	path := devDir + "/" + dev
	if err := waitForPath(path, fmt.Sprintf("device node of port %q:", name), deviceTimeout, pollInterval); err != nil {
		return nil, err
	}
	return openPort(path, flags)
}

// mount carries out one mount step: it creates the mount point, waits
// for the source device if it has to, and mounts. The error names the
// step; optional steps, and mount points that cannot be made when the
// step may be skipped, are logged and return nil.
func (in *initProc) mount(s mountStep) error {
	if err := os.MkdirAll(s.target, 0o755); err != nil {
		if s.optional || s.onMissing == skipIfNoDir {
			in.logf("skipping %s: cannot create the mount point %s: %v", s.what, s.path, err)
			return nil
		}
		if errors.Is(err, unix.EROFS) {
			return fmt.Errorf("%s: cannot create the mount point %s, as the guest's root is read-only: %w; mount it on a directory that exists in the root, or under a tmpfs such as /tmp", s.what, s.path, err)
		}
		return fmt.Errorf("%s: cannot create the mount point %s: %w", s.what, s.path, err)
	}
	if s.waitSource {
		if err := waitForPath(s.source, "block device", deviceTimeout, pollInterval); err != nil {
			return fmt.Errorf("mounting %s: %w; modules loaded: %s", s.what, err, in.moduleList())
		}
	}
	err := doMount(s)
	if err == nil {
		return nil
	}
	switch {
	case s.flags&unix.MS_MOVE != 0:
		err = fmt.Errorf("moving %s into the new root: %w", s.what, err)
	case errors.Is(err, unix.ENODEV):
		err = fmt.Errorf("mounting %s: the kernel has no %s file system (is its module loaded? modules loaded: %s): %w",
			s.what, s.fstype, in.moduleList(), err)
	case s.fstype == "9p" && errors.Is(err, unix.ENOENT):
		err = fmt.Errorf("mounting %s: no virtio-9p device has the mount tag %q: %w", s.what, s.source, err)
	default:
		err = fmt.Errorf("mounting %s (%s %s on %s): %w", s.what, s.fstype, s.source, s.path, err)
	}
	if s.optional {
		in.logf("%v", err)
		return nil
	}
	return err
}

// finish syncs the file systems, so that what the command wrote to a
// block root or a 9p share is on the host before the host hears of the
// exit, then sends the Exit frame and closes the control port.
func (in *initProc) finish(st wire.ExitStatus) (sent bool) {
	unix.Sync()
	in.mu.Lock()
	w := in.ctl
	in.mu.Unlock()
	if w == nil {
		in.consolef("no control port: cannot send the exit status (%d) to the host", st.Status)
		return false
	}
	if err := w.Exit(st); err != nil {
		in.consolef("sending the exit status: %v", err)
		return false
	}
	return true
}

// Package run is the host side of `govmm run`: it boots a throwaway VM
// whose init is govmm itself (package guestinit), runs one command in it,
// streams the command's stdin, stdout and stderr, and turns the way the run
// ended into an exit status (status.go).
//
// # The VM
//
//   - The kernel is the user's. Its initramfs is built on the fly
//     (initramfs.go): govmm's own static binary as /govmm-init, the run's
//     configuration (wire.Config), /dev/console, and the kernel modules
//     the guest needs, found for the kernel's release (package kmod). A
//     user's --initrd goes first; the kernel unpacks both archives into
//     the same root file system, ours last.
//   - A multiport virtio console carries the command's I/O on two named
//     ports (wire.StdinPort and wire.ControlPort). The guest's serial
//     console stays the kernel's: it goes to a log file, and to stderr
//     with Options.Console.
//   - The root is a host directory over virtio-9p (Options.RootFS), a disk
//     image (Options.Disk), or the initramfs itself; Options.Shares add
//     9p mounts.
//   - A pvpanic device reports a kernel panic at once.
//
// When the init reports the command's status (wire.Exit), the VM is
// stopped at once: the init synced the guest's file systems before, so the
// guest needs no shutdown.
package run

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/govmm/govmm/bootloader"
	"github.com/govmm/govmm/machine"
	"github.com/govmm/govmm/run/kmod"
	"github.com/govmm/govmm/run/wire"
	"github.com/govmm/govmm/virtio/console"
	"github.com/govmm/govmm/virtio/p9"
)

// Options describe one run.
type Options struct {
	Kernel  string // bzImage path (required)
	Initrd  string // a user's initramfs, unpacked before govmm's
	Modules string // --modules: a lib/modules tree; "" finds the installed one
	Append  string // extra kernel command line

	RootFS   string        // host directory to use as the guest's root (read-only), or ""
	Disk     *machine.Disk // root disk image, or nil
	Shares   []Share
	NICs     []machine.NIC
	Env      []string // K=V for the command
	Args     []string // the command and its arguments
	MemSize  uint64
	CPUs     int
	Hostname string

	// Timeout bounds the whole run (0: none). BootTimeout bounds the time
	// until the guest's init reports in; 0 means DefaultBootTimeout.
	Timeout     time.Duration
	BootTimeout time.Duration

	// Console copies the guest's serial console to Stderr as well.
	Console bool
	// ConsoleLog is where the serial console is kept; "" makes a
	// temporary file, removed after a successful run.
	ConsoleLog string

	// KVMPath is the KVM device; "" is /dev/kvm.
	KVMPath string

	Stdin          io.Reader // nil: the command's stdin is empty
	Stdout, Stderr io.Writer
	Log            *slog.Logger
}

// DefaultBootTimeout is how long a guest may take to reach govmm's init.
// Debian's kernels get there in seconds, even in the nested test bed; the
// bound makes a kernel that hangs fail instead of hanging CI.
const DefaultBootTimeout = 3 * time.Minute

// Tmpfs directories: the writable places a program expects, on a
// read-only shared root.
var rootfsTmpfs = []string{"/tmp", "/run", "/var/tmp", "/var/log", "/var/cache"}

// Mount tags of the 9p devices.
const (
	rootTag        = "govmm-root"
	shareTagPrefix = "govmm-share"
)

// consoleTailLines is how much of the kernel console a failure prints.
const consoleTailLines = 40

// panicLine is how Linux's panic() starts its message (kernel/panic.c),
// printed even with "quiet".
const panicLine = "Kernel panic - not syncing"

// Run runs the command in a new VM and returns the exit status for govmm;
// it writes what went wrong, if anything, to opts.Stderr.
func Run(opts Options) int {
	r := &runner{opts: opts, log: opts.Log}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r.run()
}

type runner struct {
	opts Options
	log  *slog.Logger

	console *consoleLog

	// Set by the control port's reader.
	helloSeen atomic.Bool
	exit      atomic.Pointer[wire.ExitStatus]
	protoErr  atomic.Pointer[error]
	panicked  atomic.Bool
	timedOut  atomic.Bool
	signal    atomic.Value // os.Signal that stopped the run
}

// fail prints a setup error and returns StatusError.
func (r *runner) fail(err error) int {
	fmt.Fprintf(r.opts.Stderr, "govmm: %v\n", err)
	return StatusError
}

func (r *runner) run() int {
	o := r.opts
	if o.RootFS != "" && o.Disk != nil {
		return r.fail(errors.New("--rootfs and --disk both name a root; give one"))
	}
	kernel, err := readKernel(o.Kernel)
	if err != nil {
		return r.fail(err)
	}
	var userInitrd []byte
	if o.Initrd != "" {
		if userInitrd, err = os.ReadFile(o.Initrd); err != nil {
			return r.fail(fmt.Errorf("--initrd: %w", err))
		}
	}

	mods, err := r.modules(kernel)
	if err != nil {
		return r.fail(err)
	}
	cfg := &wire.Config{
		Args:     o.Args,
		Env:      o.Env,
		Hostname: o.Hostname,
	}
	cwd, _ := os.Getwd()
	if hiddenByTmpfs(cwd, o.RootFS, o.Shares) {
		// The guest would get a fresh tmpfs where the current
		// directory is: share it, read-only like the rest of the root,
		// so the command starts where it was asked to.
		r.log.Info("sharing the current directory read-only: it is under a tmpfs of the guest", "dir", cwd)
		o.Shares = append(o.Shares, Share{Host: cwd, Guest: cwd, ReadOnly: true})
	}
	cfg.Dir = guestDir(cwd, o.RootFS, o.Shares)
	switch {
	case o.RootFS != "":
		cfg.Root = &wire.Root{Kind: wire.Root9P, Source: rootTag, ReadOnly: true}
		cfg.Tmpfs = rootfsTmpfs
	case o.Disk != nil:
		cfg.Root = &wire.Root{Kind: wire.RootBlock, Source: "/dev/vda", ReadOnly: o.Disk.ReadOnly}
	}

	// The devices. p9 and console devices are ours to close.
	var devices []machine.VirtioDevice
	var closers []func() error
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if o.RootFS != "" {
		d, err := p9.New(o.RootFS, p9.Options{Tag: rootTag, ReadOnly: true})
		if err != nil {
			return r.fail(fmt.Errorf("--rootfs: %w", err))
		}
		closers = append(closers, d.Close)
		devices = append(devices, machine.VirtioDevice{Name: "virtio-9p root " + o.RootFS, Device: d})
	}
	for i, sh := range o.Shares {
		tag := fmt.Sprintf("%s%d", shareTagPrefix, i)
		d, err := p9.New(sh.Host, p9.Options{Tag: tag, ReadOnly: sh.ReadOnly})
		if err != nil {
			return r.fail(fmt.Errorf("--share %s: %w", sh.Host, err))
		}
		closers = append(closers, d.Close)
		devices = append(devices, machine.VirtioDevice{Name: "virtio-9p " + sh.Host, Device: d})
		cfg.Shares = append(cfg.Shares, wire.Share{Tag: tag, Path: sh.Guest, ReadOnly: sh.ReadOnly})
	}
	ctlRead, ctlWrite := io.Pipe()
	stdin := o.Stdin
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	cons, err := console.New([]console.Port{
		{Name: wire.StdinPort, In: stdin},
		{Name: wire.ControlPort, Out: ctlWrite},
	})
	if err != nil {
		return r.fail(err)
	}
	closers = append(closers, cons.Close)
	devices = append(devices, machine.VirtioDevice{Name: "virtio-console", Device: cons})

	cfg.Modules = mods.guestPaths
	if err := cfg.Validate(); err != nil {
		return r.fail(err)
	}
	initrd, err := buildInitramfs(userInitrd, cfg, mods)
	if err != nil {
		return r.fail(fmt.Errorf("building the initramfs: %w", err))
	}

	if r.console, err = newConsoleLog(o.ConsoleLog, o.Console, o.Stderr); err != nil {
		return r.fail(err)
	}
	defer r.console.Close()

	mcfg := machine.Config{
		Kernel:  kernel,
		Initrd:  initrd,
		Cmdline: kernelCmdline(o.Append),
		MemSize: o.MemSize,
		CPUs:    o.CPUs,
		Console: r.console,
		KVMPath: o.KVMPath,
		Log:     r.log,
		NICs:    o.NICs,
		Devices: devices,
		OnPanic: func(uint8) { r.panicked.Store(true) },
	}
	if o.Disk != nil {
		mcfg.Disks = []machine.Disk{*o.Disk}
	}
	m, err := machine.New(mcfg)
	if err != nil {
		// No guest ran: the console log is empty, and fail does not
		// say where it is; do not leave it behind.
		r.console.succeeded()
		return r.fail(err)
	}
	defer m.Close()

	// The control port: frames from the guest's init.
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		r.readControl(ctlRead, m)
	}()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, machine.InspectSignal)
	defer signal.Stop(sigs)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go r.watch(m, sigs, stopWatch)

	res := m.Run()
	r.log.Debug("guest ended", "reason", res.Reason.String(), "detail", res.Detail)
	// Everything the guest wrote before it stopped has reached the pipe
	// (the devices are reset by now); the reader finishes with it.
	ctlWrite.Close()
	<-ctlDone
	return r.verdict(res)
}

// panicPoll is how often the watcher looks for a panic reported by the
// pvpanic device or the console.
const panicPoll = 20 * time.Millisecond

// watch ends the run on a signal, a timeout, or a guest panic, and
// describes the vCPUs on machine.InspectSignal.
func (r *runner) watch(m *machine.Machine, sigs <-chan os.Signal, done <-chan struct{}) {
	start := time.Now()
	bootTimeout := r.bootTimeout()
	tick := time.NewTicker(panicPoll)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case s := <-sigs:
			if s == machine.InspectSignal {
				// A look at a guest that seems stuck; the run goes on.
				m.InspectVCPUs(r.opts.Stderr, machine.InspectTimeout)
				continue
			}
			r.signal.Store(s)
			m.Stop("received " + s.String())
		case <-tick.C:
			elapsed := time.Since(start)
			switch {
			case r.panicked.Load() || r.console.panicked():
				r.panicked.Store(true)
				m.Stop("the guest kernel panicked")
			case r.opts.Timeout > 0 && elapsed > r.opts.Timeout:
				r.timedOut.Store(true)
				m.Stop("timeout")
			case !r.initReached() && elapsed > bootTimeout:
				r.timedOut.Store(true)
				m.Stop("boot timeout")
			}
		}
	}
}

// initReached reports whether govmm's init has started: it said so on the
// console, or over the control port.
func (r *runner) initReached() bool {
	return r.helloSeen.Load() || r.console.started()
}

// readControl copies the command's output from the control port's frames
// and records the init's Hello and Exit. A malformed frame stops the run:
// the guest is not trusted.
func (r *runner) readControl(ctl io.ReadCloser, m *machine.Machine) {
	// Whatever happens, drain the pipe, so the console device's writer
	// never blocks on it.
	defer io.Copy(io.Discard, ctl)
	fr := wire.NewReader(ctl)
	stdout := &stickyWriter{w: r.opts.Stdout}
	stderr := &stickyWriter{w: r.opts.Stderr}
	for {
		f, err := fr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			err = fmt.Errorf("the guest's control port: %w", err)
			r.protoErr.Store(&err)
			m.Stop(err.Error())
			return
		}
		switch f.Type {
		case wire.Hello:
			r.helloSeen.Store(true)
			if h, err := wire.DecodeHello(f.Payload); err == nil {
				r.log.Debug("the guest's init is up", "kernel", h.Kernel)
			}
		case wire.Stdout:
			stdout.Write(f.Payload)
		case wire.Stderr:
			stderr.Write(f.Payload)
		case wire.Log:
			r.console.note(string(f.Payload))
			r.log.Debug("guest init", "msg", string(bytes.TrimSpace(f.Payload)))
		case wire.Exit:
			st, err := wire.DecodeExit(f.Payload)
			if err != nil {
				err = fmt.Errorf("the guest's control port: %w", err)
				r.protoErr.Store(&err)
			} else {
				r.exit.Store(&st)
			}
			m.Stop("the command ended")
			return
		}
	}
}

// verdict turns how the run ended into govmm's exit status, and explains
// any failure on stderr.
func (r *runner) verdict(res machine.Result) int {
	o := r.opts
	if st := r.exit.Load(); st != nil {
		if st.InitError != "" {
			r.explain("govmm's init in the guest failed: %s", st.InitError)
			return StatusError
		}
		r.console.succeeded()
		return st.Status
	}
	if p := r.protoErr.Load(); p != nil {
		r.explain("%v", *p)
		return StatusError
	}
	if s, ok := r.signal.Load().(syscall.Signal); ok {
		fmt.Fprintf(o.Stderr, "govmm: stopped by %s\n", s)
		return 128 + int(s)
	}
	// The console too: with panic=-1 the guest resets right after the
	// panic line, usually before the watcher's next look.
	if r.panicked.Load() || r.console.panicked() {
		r.explain("the guest kernel panicked")
		return StatusPanic
	}
	if res.Reason == machine.Failed {
		r.explain("%v", res.Err)
		return StatusError
	}
	if r.timedOut.Load() {
		if !r.initReached() {
			r.explain("the guest did not reach govmm's init within %v; the kernel hung while booting", r.bootTimeout())
			return StatusNoInit
		}
		r.explain("the command did not finish within --timeout %v; the VM was killed", o.Timeout)
		return StatusTimeout
	}
	if !r.initReached() {
		r.explain("the guest never reached govmm's init: it ended early (%s: %s)", res.Reason, res.Detail)
		return StatusNoInit
	}
	if !r.helloSeen.Load() {
		r.explain("govmm's init started but its control port never came up (the virtio console driver did not load?); the guest ended (%s)", res.Reason)
		return StatusError
	}
	r.explain("the guest ended (%s: %s) before the command reported its status", res.Reason, res.Detail)
	return StatusError
}

func (r *runner) bootTimeout() time.Duration {
	d := r.opts.BootTimeout
	if d == 0 {
		d = DefaultBootTimeout
	}
	if r.opts.Timeout > 0 && r.opts.Timeout < d {
		d = r.opts.Timeout
	}
	return d
}

// explain prints a failure, the tail of the kernel console and where the
// whole console is kept.
func (r *runner) explain(format string, args ...any) {
	w := r.opts.Stderr
	fmt.Fprintf(w, "govmm: %s\n", fmt.Sprintf(format, args...))
	if r.console == nil {
		return
	}
	if !r.opts.Console {
		if t := r.console.tail(consoleTailLines); t != "" {
			fmt.Fprintf(w, "govmm: the last lines of the guest's console:\n%s", t)
		}
	}
	if p := r.console.path; p != "" {
		fmt.Fprintf(w, "govmm: the guest's whole console is in %s\n", p)
	}
}

// stickyWriter writes to w until the first error, then discards: a closed
// stdout must not stop the run or the reading of stderr and the status.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
}

// kernelCmdline is the guest's command line: the serial console, quiet,
// an immediate reboot on panic (panic=-1, after pvpanic has reported it),
// govmm's init as the initramfs init (rdinit=), and the user's additions.
func kernelCmdline(extra string) string {
	s := "console=ttyS0 quiet panic=-1 reboot=k rdinit=" + wire.InitPath
	if extra != "" {
		s += " " + extra
	}
	return s
}

// readKernel reads and checks the kernel image.
func readKernel(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("--kernel is required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read kernel %s: %w", path, err)
	}
	if _, err := bootloader.ParseSetupHeader(b); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", path, err)
	}
	return b, nil
}

// modulePlan is the modules packed into the initramfs.
type modulePlan struct {
	files      []kmod.Module
	guestPaths []string // where each is in the initramfs, in load order
}

// modules finds the kernel modules the guest needs for its devices.
func (r *runner) modules(kernel []byte) (*modulePlan, error) {
	o := r.opts
	release, err := kmod.KernelRelease(kernel)
	if err != nil {
		if o.Modules != "" {
			return nil, fmt.Errorf("kernel %s: %w; cannot match it with --modules", o.Kernel, err)
		}
		r.log.Info("no release in the kernel image; assuming its drivers are built in", "err", err)
		return &modulePlan{}, nil
	}
	tree, err := kmod.Find(o.Modules, release)
	if err != nil {
		if o.Modules != "" {
			return nil, err
		}
		// No installed modules for this kernel: fine for a kernel with
		// the drivers built in. The init says so if one is missing.
		r.log.Info("no modules found for the kernel; assuming its drivers are built in (pass --modules DIR if not)", "release", release)
		return &modulePlan{}, nil
	}
	want := []string{"virtio_pci", "virtio_console"}
	if o.RootFS != "" || len(o.Shares) > 0 {
		if !tree.Has("9p") || !tree.Has("9pnet_virtio") {
			return nil, fmt.Errorf("kernel %s has no 9p file system (modules 9p and 9pnet_virtio in %s), which --rootfs and --share need; Debian's cloud kernel lacks it, its generic one (linux-image-amd64) has it", release, tree.Dir())
		}
		want = append(want, "9pnet_virtio", "9p")
	}
	if o.Disk != nil {
		// ext4 and jbd2 need a crc32c implementation when they mount,
		// a soft dependency ("softdep ext4 pre: crypto-crc32c" in
		// modules.softdep) that modules.dep leaves out; crc32c_generic
		// provides it wherever it is a module.
		if tree.Has("crc32c_generic") {
			want = append(want, "crc32c_generic")
		}
		want = append(want, "virtio_blk", "ext4")
	}
	if len(o.NICs) > 0 {
		want = append(want, "virtio_net")
	}
	// pvpanic is a bonus: without it a panic still shows on the console.
	for _, opt := range []string{"pvpanic_pci"} {
		if tree.Has(opt) {
			want = append(want, opt)
		}
	}
	plan, err := tree.Resolve(want...)
	if err != nil {
		return nil, err
	}
	p := &modulePlan{files: plan.Load}
	for i, m := range plan.Load {
		p.guestPaths = append(p.guestPaths, guestModulePath(i, m))
	}
	return p, nil
}

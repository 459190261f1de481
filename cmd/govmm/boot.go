package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	gonet "net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/govmm/govmm/bootloader"
	"github.com/govmm/govmm/gdbstub"
	"github.com/govmm/govmm/kvm"
	"github.com/govmm/govmm/machine"
	"github.com/govmm/govmm/virtio/blk"
	"github.com/govmm/govmm/virtio/net"
	"github.com/spf13/pflag"
)

// defaultMem is the guest RAM when --mem is not given.
const defaultMem = "512M"

// exitSignalBase + signal number is the status after a stopping signal, as
// shells report it.
const exitSignalBase = 128

func cmdBoot(args []string, stdin *os.File, stdout, stderr io.Writer) (int, error) {
	fs := pflag.NewFlagSet("boot", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	kernel := fs.String("kernel", "", "Linux kernel `bzImage` to boot (required)")
	initrd := fs.String("initrd", "", "initial ramdisk `file`")
	cmdline := fs.String("append", machine.DefaultCmdline, "kernel command line")
	mem := fs.String("mem", defaultMem, "guest RAM `size`, like 256M or 2G")
	cpus := fs.Int("cpus", 1, "number of vCPUs (1-64)")
	disks := fs.StringArray("disk", nil, "attach a raw disk image as virtio-blk, `PATH[,ro]`; repeat for /dev/vda, /dev/vdb, ... (adds root=/dev/vda rw to a command line without root=)")
	nets := fs.StringArray("net", nil, "attach a virtio-net card on a tap device, `tap=NAME[,mac=MAC]`; govmm creates the tap if needed (repeatable)")
	transport := fs.String("virtio-transport", machine.VirtioPCI.String(), "how virtio devices reach the guest: `pci` (every kernel with virtio_pci, Debian's included) or mmio (register windows described in ACPI and on the command line, for kernels with virtio_mmio)")
	gdbAddr := fs.String("gdb", "", "wait for GDB on `ADDR` before the first instruction: PORT or :PORT listens on 127.0.0.1 only, HOST:PORT on HOST (then: gdb vmlinux -ex 'target remote :PORT')")
	raw := fs.Bool("raw", false, "treat --kernel as a flat real-mode image, loaded and entered at 0000:7C00 like a boot sector")
	logLevel := fs.String("log-level", "warn", "diagnostics `level`: debug, info, warn or error")
	stats := fs.Bool("stats", false, "print VM exit statistics (by reason, device, port and MMIO address) to stderr when the guest ends")
	statsJSON := fs.String("stats-json", "", "write the exit statistics as JSON to `file`")
	trace := fs.String("trace", "", "write one line per VM exit to `file` (time, vCPU, reason, port or address, size, data, device)")
	traceReasons := fs.StringSlice("trace-reason", nil, "trace only these exit `reasons` (io, mmio, hlt, shutdown, ...; repeat or comma-separate)")
	traceDevices := fs.StringSlice("trace-device", nil, "trace only exits handled by devices whose `name` contains one of these (uart, pci, virtio-blk, ...)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: govmm boot --kernel PATH [options]\n\nBoots a Linux bzImage. The guest's serial console (COM1) is govmm's\nstdin/stdout; on a terminal, Ctrl-A X quits.\n\nOptions:\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK, err
		}
		return exitUsage, usageError{err}
	}
	if fs.NArg() > 0 {
		return exitUsage, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *kernel == "" {
		return exitUsage, usageError{errors.New("--kernel is required")}
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return exitUsage, err
	}
	memSize, err := parseSize(*mem)
	if err != nil {
		return exitUsage, usageError{fmt.Errorf("--mem: %w", err)}
	}
	if *cpus < machine.MinCPUs || *cpus > machine.MaxCPUs {
		return exitUsage, usageError{fmt.Errorf("--cpus %d: must be between %d and %d", *cpus, machine.MinCPUs, machine.MaxCPUs)}
	}
	if err := machine.ValidateShape(memSize, *cpus); err != nil {
		return exitUsage, usageError{fmt.Errorf("--mem %s: %w", *mem, err)}
	}
	cfg := machine.Config{
		Cmdline:     *cmdline,
		MemSize:     memSize,
		CPUs:        *cpus,
		RealMode:    *raw,
		Console:     stdout,
		Stdin:       stdin,
		Log:         log,
		Stats:       *stats || *statsJSON != "",
		TraceFilter: machine.TraceFilter{Reasons: *traceReasons, Devices: *traceDevices},
	}
	if err := machine.ValidateTraceFilter(cfg.TraceFilter); err != nil {
		return exitUsage, usageError{fmt.Errorf("--trace-reason: %w", err)}
	}
	if cfg.VirtioTransport, err = machine.ParseVirtioTransport(*transport); err != nil {
		return exitUsage, usageError{fmt.Errorf("--virtio-transport: %w", err)}
	}
	for _, d := range *disks {
		path, ro, err := blk.ParseDiskFlag(d)
		if err != nil {
			return exitUsage, usageError{err}
		}
		cfg.Disks = append(cfg.Disks, machine.Disk{Path: path, ReadOnly: ro})
	}
	for _, n := range *nets {
		o, err := net.ParseNetFlag(n)
		if err != nil {
			return exitUsage, usageError{err}
		}
		cfg.NICs = append(cfg.NICs, machine.NIC{Tap: o.TapName, MAC: o.MAC})
	}
	if !*raw {
		cfg.Cmdline = machine.WithRootDisk(cfg.Cmdline, len(cfg.Disks))
	}
	if (len(*traceReasons) > 0 || len(*traceDevices) > 0) && *trace == "" {
		return exitUsage, usageError{errors.New("--trace-reason and --trace-device need --trace FILE")}
	}
	if cfg.Kernel, err = readInput("kernel", *kernel); err != nil {
		return exitError, err
	}
	if !*raw {
		// Checked here too so the message can name the file.
		if _, err := bootloader.ParseSetupHeader(cfg.Kernel); err != nil {
			return exitError, fmt.Errorf("kernel %s: %w", *kernel, err)
		}
	}
	if *initrd != "" && *raw {
		return exitUsage, usageError{errors.New("--initrd cannot be used with --raw")}
	}
	if *initrd != "" {
		if cfg.Initrd, err = readInput("initrd", *initrd); err != nil {
			return exitError, err
		}
	}

	var gdbListener gonet.Listener
	if *gdbAddr != "" {
		// Bound before the machine is built, so that a busy port fails
		// fast, with nothing to undo.
		if gdbListener, err = gdbstub.Listen(*gdbAddr); err != nil {
			return exitUsage, usageError{fmt.Errorf("--gdb: %w", err)}
		}
		defer gdbListener.Close()
		cfg.Debug = true
	}
	if *trace != "" {
		f, err := os.Create(*trace)
		if err != nil {
			return exitError, fmt.Errorf("--trace: %w", err)
		}
		defer f.Close()
		cfg.Trace = f
	}

	m, err := machine.New(cfg)
	if err != nil {
		return exitError, err
	}
	defer m.Close()
	if gdbListener != nil {
		// Deferred after m.Close, so it runs first: the stub tells GDB
		// how the machine ended before the machine goes away.
		srv := gdbstub.NewServer(m.Debugger(), gdbstub.Options{
			Log:                      log,
			HardwareBreakpointsFirst: !kvm.DetectBackend("/sys", "/proc").HardwareAssisted(),
		})
		go srv.Serve(gdbListener)
		defer srv.Close()
		a := gdbListener.Addr().String()
		fmt.Fprintf(stderr, "govmm: the guest waits for GDB on %s: gdb vmlinux -ex 'target remote %s'\n", a, a)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, machine.InspectSignal)
	defer signal.Stop(sigs)
	var caught atomic.Value // the os.Signal that stopped the guest
	go func() {
		for s := range sigs {
			if s == machine.InspectSignal {
				fmt.Fprintf(stderr, "govmm: %s: the vCPUs' state\n", s)
				m.InspectVCPUs(stderr, machine.InspectTimeout)
				continue
			}
			caught.Store(s)
			m.Stop("received " + s.String())
		}
	}()

	res := m.Run()
	log.Info("guest ended", "reason", res.Reason.String(), "detail", res.Detail)
	if *stats {
		writeStatsTable(stderr, m.Stats())
	}
	if *statsJSON != "" {
		if err := writeStatsJSON(*statsJSON, m.Stats()); err != nil {
			return exitError, err
		}
	}
	if hint := driverHint(res.Reason, m.DevicesWithoutDriver(), cfg.VirtioTransport); hint != "" && !*raw {
		fmt.Fprintln(stderr, hint)
	}
	switch res.Reason {
	case machine.Failed:
		// The whole error, with the register dump that follows its
		// first line.
		fmt.Fprintf(stderr, "govmm: %s\n", res.Err)
		return exitError, nil
	case machine.Stopped:
		if s, ok := caught.Load().(syscall.Signal); ok {
			fmt.Fprintf(stderr, "govmm: stopped by %s\n", s)
			return exitSignalBase + int(s), nil
		}
	}
	return exitOK, nil
}

// readInput reads a user-supplied file, with an error that says which
// input it was and what is wrong with it.
func readInput(what, path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s %s: is a directory, not a file", what, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot read %s %s: %w", what, path, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%s %s is empty", what, path)
	}
	return b, nil
}

// driverHint explains, after a run that the guest ended itself, the
// devices that no driver in it started, with the Linux drivers they need.
// It says nothing after a run that the host stopped or that failed: that
// guest may not have reached its drivers yet.
func driverHint(r machine.Reason, unclaimed []machine.UnclaimedDevice, t machine.VirtioTransport) string {
	if len(unclaimed) == 0 || r == machine.Stopped || r == machine.Failed {
		return ""
	}
	names := make([]string, len(unclaimed))
	var drivers []string
	for i, u := range unclaimed {
		names[i] = u.Name
		if u.Driver != "" && !slices.Contains(drivers, u.Driver) {
			drivers = append(drivers, u.Driver)
		}
	}
	msg := "govmm: no driver in the guest started " + strings.Join(names, ", ") + ": "
	if t == machine.VirtioMMIO {
		// A kernel with ACPI finds the windows in the DSDT; one without
		// has only the virtio_mmio.device= parameters, which virtio_mmio
		// parses only when built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES
		// (drivers/virtio/Kconfig).
		return msg + "the guest kernel needs " + joinAnd(append([]string{"virtio_mmio"}, drivers...)) +
			", built in or loaded from its initramfs (--initrd); a kernel without ACPI finds virtio-mmio devices only with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y"
	}
	return msg + "the guest kernel needs " + joinAnd(append([]string{"virtio_pci"}, drivers...)) +
		", built in or loaded from its initramfs (--initrd)"
}

// joinAnd joins words as English lists them: "a", "a and b", "a, b and c".
func joinAnd(words []string) string {
	if len(words) <= 1 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " and " + words[len(words)-1]
}

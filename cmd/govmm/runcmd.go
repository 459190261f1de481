package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/govmm/govmm/machine"
	vmrun "github.com/govmm/govmm/run"
	"github.com/govmm/govmm/virtio/blk"
	"github.com/govmm/govmm/virtio/net"
	"github.com/spf13/pflag"
)

// defaultRunMem is the guest RAM of `govmm run`: enough for Debian's
// generic kernel and a test. Guest RAM is only backed as the guest
// touches it, so the size costs little.
const defaultRunMem = "1G"

const runUsage = `Usage: govmm run --kernel PATH [options] -- COMMAND [ARGS...]

Boots a throwaway VM, runs COMMAND in it and exits with its status.
COMMAND's stdout and stderr come back on govmm's stdout and stderr;
govmm's stdin is COMMAND's. The kernel's console is kept in a log file,
printed in part when something fails (--console shows it live).

The guest's init is govmm itself. It loads the kernel modules the VM needs
(from --modules, or /lib/modules/RELEASE for an installed kernel), mounts
the root and the shares, and runs COMMAND as root.

Roots: --rootfs DIR shares a host directory read-only as / (--rootfs /
gives the guest the host's own userland), with fresh tmpfs on /tmp, /run,
/var/tmp, /var/log and /var/cache; --disk IMG[,ro] boots an ext4 image;
with neither, COMMAND runs in the initramfs (--initrd brings its files).
COMMAND starts in the current directory when the guest sees it (under
--rootfs /, or in a share), else in /; under --rootfs /, a current
directory below one of those tmpfs is shared read-only to keep it visible.

Exit status:
  0-255  COMMAND's status (128+N if signal N killed it)
  121    the guest never reached govmm's init (the kernel failed or hung)
  122    the guest kernel panicked
  124    COMMAND ran past --timeout; the VM was killed
  125    a govmm or setup error (bad options, missing files, no /dev/kvm, ...)
  126    COMMAND is not executable in the guest
  127    COMMAND was not found in the guest

Options:
`

func cmdRun(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	// Flags end at COMMAND: its own options are its own.
	fs.SetInterspersed(false)
	kernel := fs.String("kernel", "", "Linux kernel `bzImage` to boot (required)")
	initrd := fs.String("initrd", "", "an initramfs `file` to unpack before govmm's")
	modules := fs.String("modules", "", "the kernel's modules: a lib/modules/RELEASE `DIR` (or a tree holding one); default /lib/modules/RELEASE")
	rootfs := fs.String("rootfs", "", "share host `DIR` read-only as the guest's root (e.g. /)")
	disk := fs.String("disk", "", "boot from an ext4 disk image, `IMG[,ro]`")
	shares := fs.StringArray("share", nil, "share a host directory, `HOST[:GUEST][:ro]` (repeatable; read-write unless :ro)")
	env := fs.StringArray("env", nil, "set `K=V` in COMMAND's environment (K alone copies govmm's value; repeatable)")
	timeout := fs.String("timeout", "0", "kill the VM after this `duration` (like 30s or 5m; 0: never), with status 124")
	bootTimeout := fs.Duration("boot-timeout", vmrun.DefaultBootTimeout, "fail with status 121 if the guest has not reached govmm's init after this `duration`")
	mem := fs.String("mem", defaultRunMem, "guest RAM `size`, like 512M or 2G")
	cpus := fs.Int("cpus", 1, "number of vCPUs (1-64)")
	nets := fs.StringArray("net", nil, "a virtio-net card on a tap device, `tap=NAME[,mac=MAC]` (repeatable)")
	showConsole := fs.Bool("console", false, "show the guest kernel's console on stderr as it runs")
	consoleLog := fs.String("console-log", "", "keep the guest kernel's console in `file` (default: a temporary file, kept only on failure)")
	appendArgs := fs.String("append", "", "extra kernel command line `arguments`")
	logLevel := fs.String("log-level", "warn", "diagnostics `level`: debug, info, warn or error")
	fs.Usage = func() { fmt.Fprintf(stderr, "%s%s", runUsage, fs.FlagUsages()) }

	bad := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "govmm: %s\n", fmt.Sprintf(format, a...))
		return vmrun.StatusError
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return exitOK
		}
		return bad("%v", err)
	}
	if fs.NArg() == 0 {
		return bad("no command to run: govmm run --kernel PATH [options] -- COMMAND [ARGS...]")
	}
	if *kernel == "" {
		return bad("--kernel is required")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return bad("%v", err)
	}
	o := vmrun.Options{
		Kernel:      *kernel,
		Initrd:      *initrd,
		Modules:     *modules,
		Append:      *appendArgs,
		RootFS:      *rootfs,
		Args:        fs.Args(),
		CPUs:        *cpus,
		BootTimeout: *bootTimeout,
		Console:     *showConsole,
		ConsoleLog:  *consoleLog,
		Stdout:      stdout,
		Stderr:      stderr,
		Log:         log,
	}
	if stdin != nil {
		o.Stdin = stdin
	}
	if o.Timeout, err = parseTimeout(*timeout); err != nil {
		return bad("%v", err)
	}
	if *bootTimeout <= 0 {
		return bad("--boot-timeout %v: must be positive", *bootTimeout)
	}
	if o.MemSize, err = parseSize(*mem); err != nil {
		return bad("--mem: %v", err)
	}
	if *cpus < machine.MinCPUs || *cpus > machine.MaxCPUs {
		return bad("--cpus %d: must be between %d and %d", *cpus, machine.MinCPUs, machine.MaxCPUs)
	}
	if err := machine.ValidateShape(o.MemSize, *cpus); err != nil {
		return bad("--mem %s: %v", *mem, err)
	}
	if *rootfs != "" {
		fi, err := os.Stat(*rootfs)
		if err != nil || !fi.IsDir() {
			return bad("--rootfs %s: not a directory on the host", *rootfs)
		}
	}
	if *disk != "" {
		path, ro, err := blk.ParseDiskFlag(*disk)
		if err != nil {
			return bad("%v", err)
		}
		o.Disk = &machine.Disk{Path: path, ReadOnly: ro}
	}
	for _, s := range *shares {
		sh, err := vmrun.ParseShare(s)
		if err != nil {
			return bad("%v", err)
		}
		o.Shares = append(o.Shares, sh)
	}
	for _, e := range *env {
		kv, err := envEntry(e)
		if err != nil {
			return bad("%v", err)
		}
		o.Env = append(o.Env, kv)
	}
	for _, n := range *nets {
		no, err := net.ParseNetFlag(n)
		if err != nil {
			return bad("%v", err)
		}
		o.NICs = append(o.NICs, machine.NIC{Tap: no.TapName, MAC: no.MAC})
	}
	return vmrun.Run(o)
}

// parseTimeout parses --timeout: a Go duration, or 0 for none.
func parseTimeout(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("--timeout %q: not a duration; write it like 30s, 5m or 1h30m", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("--timeout %q: must not be negative", s)
	}
	return d, nil
}

// envEntry checks an --env value: K=V, or K alone for govmm's own value
// of K.
func envEntry(e string) (string, error) {
	k, _, hasValue := strings.Cut(e, "=")
	if k == "" || strings.ContainsAny(k, "\x00") {
		return "", fmt.Errorf("--env %q: want K=V", e)
	}
	if hasValue {
		return e, nil
	}
	v, ok := os.LookupEnv(k)
	if !ok {
		return "", fmt.Errorf("--env %s: not set in govmm's environment; write %s=VALUE", k, k)
	}
	return k + "=" + v, nil
}

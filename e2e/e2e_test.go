// Package e2e holds govmm's end-to-end tests: they boot real Linux kernels
// with bin/govmm and check that each reaches its initramfs init, prints its
// markers and ends cleanly with exit status 0.
//
// They need hardware-assisted KVM and the guest assets from
// scripts/guest-assets.sh. scripts/e2e.sh (make e2e) runs them directly on
// a VMX/SVM host and inside the nested test bed elsewhere, with GOVMM_E2E=1:
// then a missing prerequisite is a failure, not a skip. A plain `go test
// ./...` without GOVMM_E2E skips them, naming what is missing.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/govmm/govmm/kvm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bootTimeout bounds one guest boot. Stock kernels boot in seconds even in
// the nested test bed; the bound only keeps a hung guest from hanging CI.
const bootTimeout = 4 * time.Minute

// repoRoot finds the repository root (the directory holding go.mod).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("cannot find the repository root (go.mod) above the working directory")
		}
		dir = parent
	}
}

// hardwareKVM reports whether /dev/kvm is hardware-assisted here, by the
// same rule as `govmm probe`.
func hardwareKVM() bool {
	return kvm.DetectBackend("/sys", "/proc").HardwareAssisted()
}

// need checks the prerequisites: outside GOVMM_E2E=1 a missing one skips
// the test, inside it fails the test.
func need(t *testing.T, files ...string) {
	t.Helper()
	strict := os.Getenv("GOVMM_E2E") == "1"
	miss := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if strict {
			t.Fatal(msg)
		}
		t.Skip(msg + " (end-to-end tests run with `make e2e`)")
	}
	if !hardwareKVM() {
		miss("needs hardware-assisted KVM (VMX/SVM); this host's /dev/kvm is not")
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			miss("needs %s: %v", f, err)
		}
	}
}

// guest is a kernel and initramfs from scripts/guest-assets.sh.
type guest struct {
	name, kernel, initrd string
}

func guestAssets(t *testing.T, name string) guest {
	root := repoRoot(t)
	dir := filepath.Join(root, "build", "guests", name)
	k := filepath.Join(dir, "vmlinuz")
	if name == "minimal" {
		k = filepath.Join(dir, "bzImage")
	}
	g := guest{name: name, kernel: k, initrd: filepath.Join(dir, "initramfs.cpio.gz")}
	need(t, filepath.Join(root, "bin", "govmm"), g.kernel, g.initrd)
	return g
}

// bootResult is one govmm run.
type bootResult struct {
	console string // stdout: the guest's serial console
	stderr  string
	status  int
	elapsed time.Duration
}

// defaultAppend is the test command line less govmm.action: quiet keeps the
// console short, reboot=k reboots through the keyboard controller.
const defaultAppend = "console=ttyS0 reboot=k panic=-1 quiet"

// boot runs bin/govmm boot with the guest, the init's action and extra
// arguments.
func boot(t *testing.T, g guest, action string, extra ...string) bootResult {
	t.Helper()
	return bootAppend(t, g, defaultAppend, action, extra...)
}

// bootAppend is boot with a command line of its own.
//
// In QEMU TCG's nested SVM (the test bed), about one boot in a hundred
// hangs or dies before the guest's init, for reasons not run down (see
// tcgNestedSVM); there a run that did not reach the init is logged and
// tried once more, so that such a flake fails only if it happens twice in a
// row. Elsewhere every attempt counts.
func bootAppend(t *testing.T, g guest, cmdline, action string, extra ...string) bootResult {
	t.Helper()
	r, hung := bootOnce(t, g, cmdline, action, extra...)
	if lostBoot(t, r, hung) {
		r, hung = bootOnce(t, g, cmdline, action, extra...)
	}
	if hung {
		t.Fatalf("govmm did not finish within %v; it was sent SIGQUIT, and its goroutines are on stderr\nconsole:\n%s\nstderr:\n%s", bootTimeout, tail(r.console), r.stderr)
	}
	return r
}

// lostBoot reports whether a boot should be tried once more: in the test
// bed only (see bootAppend), when the guest hung or never reached its
// init. It logs the lost attempt in full.
func lostBoot(t *testing.T, r bootResult, hung bool) bool {
	t.Helper()
	if (hung || !strings.Contains(r.console, "GOVMM_INIT_OK")) && tcgNestedSVM() {
		t.Logf("the guest did not reach its init (hung: %v, status %d); trying once more, as the test bed loses a boot now and then\nconsole:\n%s\nstderr:\n%s",
			hung, r.status, tail(r.console), r.stderr)
		return true
	}
	return false
}

// bootOnce runs govmm once; hung reports that it did not end within
// bootTimeout.
func bootOnce(t *testing.T, g guest, cmdline, action string, extra ...string) (r bootResult, hung bool) {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	// --log-level info: how the guest ended (and a triple fault's
	// registers) goes to stderr, so a boot that ends early says why.
	args := append([]string{"boot", "--log-level", "info", "--kernel", g.kernel, "--initrd", g.initrd,
		"--append", cmdline + " govmm.action=" + action}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "govmm"), args...)
	cmd.Cancel = quitForStacks(cmd)
	cmd.WaitDelay = killGrace
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r = bootResult{console: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, true
	case errors.As(err, &ee):
		r.status = ee.ExitCode()
	case err != nil:
		t.Fatalf("running govmm: %v", err)
	}
	t.Logf("%s %s %v: status %d after %v", g.name, action, extra, r.status, r.elapsed.Round(time.Millisecond))
	return r, false
}

// quitForStacks is an exec.Cmd.Cancel that first sends SIGUSR2, on which
// govmm prints each vCPU's state (where it is, halted or not, the local
// APIC's pending vectors: what a stuck guest is doing), and then SIGQUIT
// instead of SIGKILL: a Go program then prints every goroutine's stack and
// exits, so a hung govmm shows whether it was stuck in itself (a deadlock)
// or waiting in KVM_RUN for a guest that made no progress. exec kills it
// after WaitDelay if it does not go.
func quitForStacks(cmd *exec.Cmd) func() error {
	return func() error {
		if cmd.Process.Signal(syscall.SIGUSR2) == nil {
			time.Sleep(inspectWait)
		}
		return cmd.Process.Signal(syscall.SIGQUIT)
	}
}

// inspectWait is how long govmm gets to print its vCPUs' state: it gives
// each vCPU 2 s to answer.
const inspectWait = 3 * time.Second

// inspectedCR3 matches a vCPU's header and its CR3 in the state govmm prints
// on SIGUSR2 (machine.InspectVCPUs).
var inspectedCR3 = regexp.MustCompile(`(?m)^vCPU (\d+): [^\n]*\n(?:  [^\n]*\n)*?  CR0=[0-9a-f]+ CR2=[0-9a-f]+ CR3=([0-9a-f]+)`)

// cr3Address masks CR3 down to the page-directory base (Intel SDM Vol. 3A
// §4.5, Table 4-12): bits 51:12; the low bits are flags or the PCID.
const cr3Address = 0x000F_FFFF_FFFF_F000

// foreignVCPUState looks at the vCPU state govmm printed before it was
// stopped (stderr) for the test bed's known corruption: a vCPU whose CR3
// points outside the guest's RAM, mem bytes, all of it below the 32-bit
// PCI hole. No guest can run like that: each instruction fetch faults.
// Seen in the nested test bed, where QEMU TCG's emulation of SVM left one
// of an L2 guest's vCPUs with L1's own registers (RIP in L1's kvm_amd
// module, CR3 and RSP in L1's memory) and the guest hung. It returns a
// description of the first such vCPU.
func foreignVCPUState(stderr string, mem uint64) (string, bool) {
	for _, m := range inspectedCR3.FindAllStringSubmatch(stderr, -1) {
		cr3, err := strconv.ParseUint(m[2], 16, 64)
		if err == nil && cr3&cr3Address >= mem {
			return fmt.Sprintf("vCPU %s runs with CR3=%#x, outside the guest's %d MiB of RAM: "+
				"not this guest's state (in the nested test bed, QEMU TCG's SVM has put L1's own registers into an L2 vCPU)",
				m[1], cr3, mem>>20), true
		}
	}
	return "", false
}

func tail(s string) string {
	const keep = 4000
	if len(s) > keep {
		return "..." + s[len(s)-keep:]
	}
	return s
}

var cpusRE = regexp.MustCompile(`GOVMM_CPUS=(\d+)`)

// checkBoot asserts a clean run that reached init, saw cpus CPUs and
// performed action.
func checkBoot(t *testing.T, r bootResult, cpus int, action string) {
	t.Helper()
	ok := assert.Equal(t, 0, r.status, "govmm exit status")
	ok = assert.Contains(t, r.console, "GOVMM_INIT_OK", "the initramfs init ran") && ok
	m := cpusRE.FindStringSubmatch(r.console)
	if assert.NotNil(t, m, "init printed GOVMM_CPUS") {
		ok = assert.Equal(t, fmt.Sprint(cpus), m[1], "CPUs the guest sees") && ok
	} else {
		ok = false
	}
	ok = assert.Contains(t, r.console, "GOVMM_ACTION="+action) && ok
	if !ok {
		t.Logf("console:\n%s\nstderr:\n%s", tail(r.console), r.stderr)
	}
	assert.NotContains(t, r.stderr, "panic:", "govmm must never panic")
}

// TestBoot boots each guest kind with govmm and checks that its init ran,
// saw the vCPUs it was given, and ended the run cleanly with exit status 0.
//
// The minimal kernel has no ACPI: it finds its CPUs in the MP table, and its
// "poweroff" halts every CPU, which govmm recognises as the end. --mem spans
// 64M to 8G: the Debian kernels need more than 64 MiB (they decompress at
// 16 MiB and need init_size above it), so the small end is the minimal
// kernel's (and the large end is TestCloudKernel8G).
func TestBoot(t *testing.T) {
	for _, c := range []struct {
		guest  string
		action string
		cpus   int
		mem    string
	}{
		{"debian-cloud", "poweroff", 1, "512M"},
		{"debian-cloud", "poweroff", 2, "512M"},
		{"debian-cloud", "reboot", 2, "512M"},
		{"debian-generic", "poweroff", 2, "768M"},
		{"debian-generic", "reboot", 1, "768M"},
		{"minimal", "poweroff", 2, "256M"},
		{"minimal", "reboot", 1, "256M"},
		{"minimal", "poweroff", 1, "64M"},
	} {
		t.Run(fmt.Sprintf("%s/%s/%dcpu/%s", c.guest, c.action, c.cpus, c.mem), func(t *testing.T) {
			g := guestAssets(t, c.guest)
			r := boot(t, g, c.action, "--cpus", fmt.Sprint(c.cpus), "--mem", c.mem)
			checkBoot(t, r, c.cpus, c.action)
		})
	}
}

// Linux's other reboot methods (arch/x86/kernel/reboot.c, reboot= in
// Documentation/admin-guide/kernel-parameters.txt) each end govmm cleanly:
// triple fault (t), the ACPI reset register (a) and port 0xCF9 (p).
func TestCloudKernelRebootMethods(t *testing.T) {
	g := guestAssets(t, "debian-cloud")
	for _, method := range []string{"t", "a", "p"} {
		t.Run("reboot="+method, func(t *testing.T) {
			r := bootAppend(t, g, "console=ttyS0 panic=-1 quiet reboot="+method, "reboot", "--cpus", "1", "--mem", "512M")
			checkBoot(t, r, 1, "reboot")
		})
	}
}

// The large end of --mem puts most RAM above the 32-bit MMIO hole, which
// checks the e820 split.
func TestCloudKernel8G(t *testing.T) {
	g := guestAssets(t, "debian-cloud")
	r := boot(t, g, "poweroff", "--cpus", "2", "--mem", "8G")
	checkBoot(t, r, 2, "poweroff")
	m := regexp.MustCompile(`(\d+) MiB of memory`).FindStringSubmatch(r.console)
	if assert.NotNil(t, m, "init reported the memory size") {
		mib, _ := strconv.Atoi(m[1])
		assert.Greater(t, mib, 7*1024, "the guest sees most of its 8 GiB")
	}
}

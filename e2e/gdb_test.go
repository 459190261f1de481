package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcgNestedSVM reports whether this machine is the nested test bed's L1:
// QEMU's TCG names the CPU it emulates "QEMU TCG CPU". Its emulated SVM
// delivers neither the #BP intercept of an int3 nor debug-register hits in
// the L2 guest to L1's KVM, so breakpoints cannot fire there; stepping
// (the trap flag) works. QEMU as the L2 VMM, with its own gdbstub on the
// same KVM, fares no better: its hardware breakpoint at start_kernel does
// not fire in the test bed either (checked 2026-11-22).
func tcgNestedSVM() bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	return err == nil && bytes.Contains(b, []byte("QEMU TCG CPU"))
}

// TestGDBStub boots the minimal kernel stopped for GDB, and drives it with
// gdb and the kernel's vmlinux: registers at the 64-bit entry point, memory
// through the guest's page tables, single steps, and, where breakpoints
// can fire, a breakpoint at start_kernel; then detaches and lets the boot
// finish. In the test bed a session whose guest then ended with a triple
// fault before its init was done (tripleFaultedInTestBed; seen once in
// CI, the console cut off during the boot messages) is run once more.
func TestGDBStub(t *testing.T) {
	root := repoRoot(t)
	g := guestAssets(t, "minimal")
	// scripts/guest-assets.sh builds the minimal kernel there, with its
	// symbols.
	vmlinux := filepath.Join(root, "build/kernel-src/minimal/vmlinux")
	need(t, vmlinux)
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		if os.Getenv("GOVMM_E2E") == "1" {
			t.Fatal("needs gdb (apt-get install gdb; scripts/install-deps.sh tests)")
		}
		t.Skip("needs gdb")
	}
	console := gdbSession(t, g, gdb, vmlinux)
	if r := (bootResult{console: console, stderr: console}); tripleFaultedInTestBed(r) {
		t.Logf("the guest triple-faulted after gdb detached; once more, as the test bed loses a guest that way now and then:\n%s", tail(console))
		console = gdbSession(t, g, gdb, vmlinux)
	}
	assert.True(t, strings.Contains(console, "GOVMM_ACTION=reboot"), "the boot went on after detach:\n%s", console)
}

// gdbSession boots g stopped for GDB, runs TestGDBStub's gdb commands
// against it and checks what gdb printed, waits for the guest to end, and
// returns everything govmm wrote (its console and its log).
func gdbSession(t *testing.T, g guest, gdb, vmlinux string) string {
	t.Helper()
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	var console syncBuffer
	// --log-level info, so that a boot that ends early says how.
	vm := exec.CommandContext(ctx, filepath.Join(root, "bin/govmm"), "boot", "--log-level", "info",
		"--kernel", g.kernel, "--initrd", g.initrd, "--gdb", "127.0.0.1:0",
		"--append", "console=ttyS0 reboot=k panic=-1 nokaslr govmm.action=reboot")
	vm.Stdout, vm.Stderr = &console, &console
	require.NoError(t, vm.Start())
	vmDone := make(chan error, 1)
	go func() { vmDone <- vm.Wait() }()

	// govmm says where the stub listens, on the port the kernel chose.
	// (Probing the port would count as a debugger that came and left,
	// which resumes the guest.)
	listening := regexp.MustCompile(`waits for GDB on (127\.0\.0\.1:[0-9]+):`)
	deadline := time.Now().Add(30 * time.Second)
	var addr string
	for {
		if m := listening.FindStringSubmatch(console.String()); m != nil {
			addr = m[1]
			break
		}
		require.True(t, time.Now().Before(deadline), "govmm never said where GDB should connect:\n%s", console.String())
		time.Sleep(50 * time.Millisecond)
	}

	args := []string{"-batch", "-nx",
		"-ex", "target remote " + addr,
		"-ex", "info registers rip",
		"-ex", "x/2i $pc",
		"-ex", "stepi",
		"-ex", "info registers rip",
	}
	breakpoints := !tcgNestedSVM()
	if breakpoints {
		args = append(args, "-ex", "break start_kernel", "-ex", "continue", "-ex", "bt 1", "-ex", "next")
	}
	args = append(args, "-ex", "detach", vmlinux)
	out, err := exec.CommandContext(ctx, gdb, args...).CombinedOutput()
	t.Logf("gdb:\n%s", out)
	require.NoError(t, err)
	s := string(out)
	// The 64-bit boot protocol enters at the protected-mode kernel's
	// start + 0x200, which govmm loads at 1 MiB (boot.rst).
	assert.Regexp(t, `rip\s+0x100200\s`, s, "stopped at the 64-bit entry point")
	assert.Contains(t, s, "cld", "the first instruction of startup_64, read through the page tables")
	assert.Regexp(t, `rip\s+0x100201\s`, s, "one instruction later after stepi")
	if breakpoints {
		assert.Contains(t, s, "Breakpoint 1, start_kernel", "stopped at start_kernel")
	} else {
		t.Log("breakpoints not tried: this is QEMU TCG's nested SVM, which does not deliver them (see tcgNestedSVM)")
	}

	select {
	case err := <-vmDone:
		require.NoError(t, err, "govmm:\n%s", console.String())
	case <-ctx.Done():
		t.Fatalf("the guest did not finish after gdb detached:\n%s", console.String())
	}
	return console.String()
}

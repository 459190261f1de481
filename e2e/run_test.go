package e2e

// End-to-end tests of `govmm run`: a command in a throwaway VM, with
// Debian's generic kernel and its modules (the host's own userland as the
// guest's root, over 9p) and with the minimal kernel (virtio built in; the
// command runs in its busybox initramfs).

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Exit statuses of govmm run (run/status.go), written out here so that a
// change there is a visible change of the command's interface.
const (
	runStatusNoInit  = 121
	runStatusPanic   = 122
	runStatusTimeout = 124
	runStatusError   = 125
)

// runTimeout bounds one govmm run in the tests.
const runTimeout = 4 * time.Minute

// runResult is one govmm run.
type runResult struct {
	stdout, stderr []byte
	status         int
	elapsed        time.Duration
}

// govmmRun runs bin/govmm run with args, feeding stdin. In QEMU TCG's
// nested SVM, which now and then loses a boot (see bootAppend), a run
// whose guest never reached govmm's init is logged and tried once more.
func govmmRun(t *testing.T, stdin []byte, args ...string) runResult {
	t.Helper()
	r := govmmRunOnce(t, stdin, args...)
	if r.status == runStatusNoInit && tcgNestedSVM() {
		t.Logf("the guest never reached govmm's init; trying once more, as the test bed loses a boot now and then\nstderr:\n%s", r.stderr)
		r = govmmRunOnce(t, stdin, args...)
	}
	return r
}

// govmmRunOnce is govmmRun without the retry.
func govmmRunOnce(t *testing.T, stdin []byte, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "bin", "govmm"), append([]string{"run"}, args...)...)
	cmd.Cancel = quitForStacks(cmd)
	cmd.WaitDelay = killGrace
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	start := time.Now()
	err := cmd.Run()
	r := runResult{stdout: stdout.Bytes(), stderr: stderr.Bytes(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("govmm run did not finish within %v\nstdout:\n%s\nstderr:\n%s", runTimeout, tail(stdout.String()), stderr.String())
	case errors.As(err, &ee):
		r.status = ee.ExitCode()
	case err != nil:
		t.Fatalf("running govmm: %v", err)
	}
	t.Logf("govmm run %s: status %d after %v", strings.Join(args, " "), r.status, r.elapsed.Round(time.Millisecond))
	assert.NotContains(t, string(r.stderr), "panic:", "govmm must never panic")
	return r
}

// genericRun is the start of a govmm run command line with Debian's
// generic kernel, its modules, and the host's root as the guest's.
func genericRun(t *testing.T) []string {
	t.Helper()
	g := guestAssets(t, "debian-generic")
	rel, err := os.ReadFile(filepath.Join(filepath.Dir(g.kernel), "kernel-release"))
	require.NoError(t, err)
	mods, _ := filepath.Glob(filepath.Join(repoRoot(t), "build/cache/unpacked/linux-image-*/lib/modules", strings.TrimSpace(string(rel))))
	if len(mods) == 0 {
		need(t, filepath.Join(repoRoot(t), "build/cache/unpacked/linux-image-.../lib/modules", strings.TrimSpace(string(rel))))
	}
	return []string{"--kernel", g.kernel, "--modules", mods[0], "--rootfs", "/"}
}

// minimalRun is the start of a govmm run command line with the minimal
// kernel and its busybox initramfs as the guest's root.
func minimalRun(t *testing.T) []string {
	t.Helper()
	g := guestAssets(t, "minimal")
	return []string{"--kernel", g.kernel, "--initrd", g.initrd}
}

// explain logs a run's output after a failed assertion.
func explain(t *testing.T, ok bool, r runResult) {
	t.Helper()
	if !ok {
		t.Logf("stdout:\n%s\nstderr:\n%s", tail(string(r.stdout)), tail(string(r.stderr)))
	}
}

// TestRunExitStatus: the command's status is govmm's, and its stdout and
// stderr come back apart. This is the headline command, with each
// kernel.
func TestRunExitStatus(t *testing.T) {
	for _, c := range []struct {
		kernel string
		status int
	}{
		{"debian-generic", 3},
		{"debian-generic", 0},
		{"debian-generic", 1},
		{"debian-generic", 42},
		{"minimal", 0},
		{"minimal", 1},
		{"minimal", 42},
	} {
		t.Run(fmt.Sprintf("%s/exit%d", c.kernel, c.status), func(t *testing.T) {
			args := minimalRun(t)
			if c.kernel == "debian-generic" {
				args = genericRun(t)
			}
			script := fmt.Sprintf("echo hi; echo oops >&2; exit %d", c.status)
			r := govmmRun(t, nil, append(args, "--", "sh", "-c", script)...)
			ok := assert.Equal(t, c.status, r.status, "govmm's status is the command's")
			ok = assert.Equal(t, "hi\n", string(r.stdout), "stdout") && ok
			ok = assert.Equal(t, "oops\n", string(r.stderr), "stderr, and nothing else from govmm") && ok
			explain(t, ok, r)
		})
	}
}

// TestRunBinaryOutput: megabytes of binary data come back byte for byte on
// stdout, and different data on stderr, read from a share.
func TestRunBinaryOutput(t *testing.T) {
	dir := t.TempDir()
	out := make([]byte, 3<<20+17)
	errData := make([]byte, 1<<20+3)
	rand.Read(out)
	rand.Read(errData)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "out.bin"), out, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "err.bin"), errData, 0o644))
	// The share is where the host has it (the default), which is under
	// the guest's tmpfs /tmp.
	args := append(genericRun(t), "--share", dir+":ro", "--",
		"sh", "-c", "cat "+dir+"/out.bin; cat "+dir+"/err.bin >&2")
	r := govmmRun(t, nil, args...)
	ok := assert.Equal(t, 0, r.status)
	ok = assert.True(t, bytes.Equal(out, r.stdout), "stdout: %d bytes back of %d, equal %v", len(r.stdout), len(out), sha256Hex(r.stdout) == sha256Hex(out)) && ok
	ok = assert.True(t, bytes.Equal(errData, r.stderr), "stderr: %d bytes back of %d", len(r.stderr), len(errData)) && ok
	if !ok {
		t.Logf("stderr starts: %q", r.stderr[:min(len(r.stderr), 2000)])
	}
}

// TestRunStdin: govmm's stdin reaches the command, all of it, and its end
// too (sha256sum only prints after EOF).
func TestRunStdin(t *testing.T) {
	in := make([]byte, 1<<20+5)
	rand.Read(in)
	r := govmmRun(t, in, append(genericRun(t), "--", "sha256sum")...)
	ok := assert.Equal(t, 0, r.status)
	ok = assert.Equal(t, sha256Hex(in)+"  -\n", string(r.stdout)) && ok
	explain(t, ok, r)
}

// TestRunShares: a file written to a read-write share is on the host
// afterwards; a read-only share refuses writes.
func TestRunShares(t *testing.T) {
	rw, ro := t.TempDir(), t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(ro, "keep"), []byte("original"), 0o644))
	script := `echo written-in-guest > /tmp/rw/new.txt && cat /tmp/ro/keep && ` +
		`if echo changed > /tmp/ro/keep 2>/dev/null; then echo RO-WRITE-SUCCEEDED; fi; ` +
		`touch /tmp/ro/other 2>&1; exit 0`
	// Shares mounted at guest paths of their own; on a read-only root
	// those must exist or be under a tmpfs such as /tmp.
	r := govmmRun(t, nil, append(genericRun(t), "--share", rw+":/tmp/rw", "--share", ro+":/tmp/ro:ro", "--", "sh", "-c", script)...)
	ok := assert.Equal(t, 0, r.status)
	got, err := os.ReadFile(filepath.Join(rw, "new.txt"))
	ok = assert.NoError(t, err, "the file written in the guest is on the host") && ok
	ok = assert.Equal(t, "written-in-guest\n", string(got)) && ok
	ok = assert.Contains(t, string(r.stdout), "original") && ok
	ok = assert.NotContains(t, string(r.stdout), "RO-WRITE-SUCCEEDED", "a write to a read-only share") && ok
	ok = assert.Contains(t, string(r.stdout), "Read-only file system", "touch's error on the ro share") && ok
	keep, _ := os.ReadFile(filepath.Join(ro, "keep"))
	ok = assert.Equal(t, "original", string(keep), "the read-only share's file is unchanged") && ok
	ok = assert.NoFileExists(t, filepath.Join(ro, "other")) && ok
	explain(t, ok, r)
}

// TestRunPanic: a guest kernel panic ends the run with the panic status,
// reported through pvpanic (the init loads Debian's pvpanic-pci module).
// The minimal kernel has no magic SysRq to panic it on demand.
func TestRunPanic(t *testing.T) {
	r := govmmRun(t, nil, append(genericRun(t), "--", "sh", "-c", "echo c > /proc/sysrq-trigger; sleep 60")...)
	ok := assert.Equal(t, runStatusPanic, r.status)
	ok = assert.Contains(t, string(r.stderr), "panicked") && ok
	ok = assert.Less(t, r.elapsed, time.Minute, "ended at the panic, not after the sleep") && ok
	explain(t, ok, r)
}

// TestRunTimeout: a command that sleeps past --timeout is killed with the
// timeout status, long before it would have ended.
func TestRunTimeout(t *testing.T) {
	r := govmmRun(t, nil, append(minimalRun(t), "--timeout", "20s", "--", "sleep", "600")...)
	ok := assert.Equal(t, runStatusTimeout, r.status)
	ok = assert.Contains(t, string(r.stderr), "--timeout") && ok
	ok = assert.Less(t, r.elapsed, 2*time.Minute, "killed at the timeout, not at the end of the sleep") && ok
	explain(t, ok, r)
}

// TestRunBrokenKernel: a kernel whose compressed payload is corrupt stops
// in its decompressor; govmm fails fast with the never-reached-init status
// and shows the console's last lines.
func TestRunBrokenKernel(t *testing.T) {
	g := guestAssets(t, "minimal")
	img, err := os.ReadFile(g.kernel)
	require.NoError(t, err)
	// Corrupt the second half of the image: the compressed kernel.
	for i := len(img) / 2; i < len(img)-4096; i += 512 {
		img[i] ^= 0xA5
	}
	broken := filepath.Join(t.TempDir(), "broken-bzImage")
	require.NoError(t, os.WriteFile(broken, img, 0o644))
	r := govmmRunOnce(t, nil, "--kernel", broken, "--initrd", g.initrd, "--timeout", "3m", "--", "true")
	ok := assert.Equal(t, runStatusNoInit, r.status)
	ok = assert.Contains(t, string(r.stderr), "never reached govmm's init") && ok
	ok = assert.Contains(t, string(r.stderr), "the guest's whole console is in") && ok
	ok = assert.Less(t, r.elapsed, time.Minute, "fails fast, not at the timeout") && ok
	explain(t, ok, r)
}

// TestRunDisk: the root on a disk image instead of a share. With Debian's
// kernel (the init loads virtio-blk, crc32c and ext4) a file written to
// the root is in the host's image afterwards; with the minimal kernel a
// read-only disk refuses writes and stays byte for byte the same.
func TestRunDisk(t *testing.T) {
	t.Run("debian-generic", func(t *testing.T) {
		img := rootfsCopy(t)
		args := genericRun(t)
		args = append(args[:len(args)-2], "--disk", img, "--", "sh", "-c",
			"echo from-govmm-run > /root/run.txt && grep -c . /etc/passwd >/dev/null && echo ok")
		r := govmmRun(t, nil, args...)
		ok := assert.Equal(t, 0, r.status)
		ok = assert.Equal(t, "ok\n", string(r.stdout)) && ok
		explain(t, ok, r)
		assert.Equal(t, "from-govmm-run\n", catFromImage(t, img, "/root/run.txt"), "the guest's write is in the image")
		fsck(t, img)
	})
	t.Run("minimal/ro", func(t *testing.T) {
		img := rootfsCopy(t)
		before := sha256File(t, img)
		r := govmmRun(t, nil, append(minimalRun(t)[:2], "--disk", img+",ro", "--", "sh", "-c",
			"if touch /new 2>/dev/null; then echo WROTE; fi; cat /proc/mounts | grep -c ' / ext4 ro'")...)
		ok := assert.Equal(t, 0, r.status)
		ok = assert.Equal(t, "1\n", string(r.stdout), "the root is ext4, read-only, and refused the write") && ok
		explain(t, ok, r)
		assert.Equal(t, before, sha256File(t, img), "a read-only disk is unchanged")
	})
}

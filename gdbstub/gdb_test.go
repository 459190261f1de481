package gdbstub

import (
	"context"
	"encoding/binary"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gdbTimeout bounds one batch run of GDB.
const gdbTimeout = 60 * time.Second

// runGDB serves f on a loopback port and runs GDB in batch mode with the
// given commands after connecting. It returns GDB's output.
func runGDB(t *testing.T, f *fakeTarget, cmds ...string) string {
	t.Helper()
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("gdb is not installed")
	}
	l, err := Listen("127.0.0.1:0")
	require.NoError(t, err)
	srv := NewServer(f, Options{Log: testLogger(t)})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		assert.NoError(t, <-served)
		_, _, _, _, violation := f.state()
		assert.NoError(t, violation, "the stub broke the Target contract")
	}()

	args := []string{"-batch", "-nx",
		"-ex", "set architecture i386:x86-64",
		"-ex", "target remote " + l.Addr().String()}
	for _, c := range cmds {
		args = append(args, "-ex", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), gdbTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, gdb, args...).CombinedOutput()
	t.Logf("gdb output:\n%s", out)
	require.NoError(t, err, "gdb failed")
	return string(out)
}

func TestGDBBreakStepDetach(t *testing.T) {
	f := newFakeTarget(1)
	out := runGDB(t, f,
		"info registers rip",
		"x/4xb 0x1000",
		"break *0x1234",
		"continue",
		"stepi",
		"info registers rip",
		"x/1xb 0x1234",
		"detach")
	assert.Regexp(t, `rip\s+0x1000\s`, out)
	assert.Contains(t, out, "0x1000:\t0x90\t0x90\t0x90\t0x90")
	assert.Contains(t, out, "Breakpoint 1 at 0x1234")
	assert.Regexp(t, `Breakpoint 1, 0x0+1234 in \?\? \(\)`, out)
	assert.Regexp(t, `0x0+1235 in \?\? \(\)`, out, "stepi went one instruction further")
	assert.Regexp(t, `rip\s+0x1235\s`, out)
	assert.Contains(t, out, "0x1234:\t0x90", "GDB sees the guest's byte, not an int3")
	assert.Contains(t, out, "detached")
	assert.NotContains(t, out, "Remote communication error")

	assert.Equal(t, []byte{opNOP}, f.memAt(0x1234, 1), "the int3 is gone")
	running, _, _, d, _ := f.state()
	assert.True(t, running, "after detach the guest runs on")
	assert.True(t, d.Idle())
}

func TestGDBThreadsRegistersWatchpointsAndHardwareBreakpoints(t *testing.T) {
	f := newFakeTarget(2)
	// mov [0x2000], al at 0x1500.
	f.setMem(0x1500, binary.LittleEndian.AppendUint64([]byte{opStoreAL}, 0x2000))
	out := runGDB(t, f,
		"info threads",
		"set $rax = 0x1234abcd",
		"p/x $rax",
		"p/x $cr0",
		"p $eflags",
		"set {char}0x3000 = 0x5a",
		"x/1xb 0x3000",
		"hbreak *0x1300",
		"continue",
		"delete",
		"watch *(char *)0x2000",
		"continue",
		"delete",
		"thread 1",
		"stepi",
		"info threads",
		"break *0xffffffff81000000",
		"set $pc = 0xffffffff81000000",
		"continue",
		"kill")
	assert.Regexp(t, `\* 1\s+Thread 1 \(vCPU 0\)`, out)
	assert.Regexp(t, `\s2\s+Thread 2 \(vCPU 1\)`, out)
	assert.Contains(t, out, "$1 = 0x1234abcd")
	assert.Contains(t, out, "$2 = 0x80000011")
	assert.Contains(t, out, "$3 = [ IF ]", "eflags prints as flags: the target description's types reached GDB")
	assert.Contains(t, out, "0x3000:\t0x5a")
	assert.Contains(t, out, "Hardware assisted breakpoint 1 at 0x1300")
	assert.Regexp(t, `Thread 2 hit Breakpoint 1, 0x0+1300`, out)
	assert.Regexp(t, `Thread 2 hit Hardware watchpoint 2: \*\(char \*\)0x2000\s+Old value = -112 '\\220'\s+New value = 1 '\\001'`, out)
	assert.Regexp(t, `0x0+1\d{3} in \?\? \(\)`, out)
	assert.Regexp(t, `Thread 1 hit Breakpoint 3, 0xffffffff81000000`, out, "a breakpoint where nothing is mapped")
	assert.NotContains(t, out, "Remote communication error")
	assert.True(t, f.killed)
	assert.Equal(t, byte(0x01), f.memAt(0x2000, 1)[0], "vCPU 1's AL")
	assert.Equal(t, uint64(0x1234abcd), f.regs(0).RAX)
}

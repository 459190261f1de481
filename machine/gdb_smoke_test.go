package machine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/govmm/govmm/gdbstub"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGDBOnARealVCPU(t *testing.T) {
	needKVM(t)
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("no gdb")
	}
	var out devicetest.Buffer
	m, err := New(Config{Kernel: realModeUARTPITReset, RealMode: true, MemSize: 64 << 20, CPUs: 1, Console: &out, Debug: true})
	require.NoError(t, err)
	defer m.Close()
	l, err := gdbstub.Listen("127.0.0.1:0")
	require.NoError(t, err)
	srv := gdbstub.NewServer(m.Debugger(), gdbstub.Options{HardwareBreakpointsFirst: true, Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	go srv.Serve(l)
	defer srv.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gdb, "-batch", "-nx",
		"-ex", "target remote "+l.Addr().String(),
		"-ex", "hbreak *0x7c05",
		"-ex", "continue",
		"-ex", "p/x $rax & 0xff",
		"-ex", "delete",
		"-ex", "break *0x7c08",
		"-ex", "continue",
		"-ex", "info registers rip",
		"-ex", "detach")
	b, err := cmd.CombinedOutput()
	t.Logf("gdb:\n%s", b)
	require.NoError(t, err)
	o := string(b)
	assert.Regexp(t, `Breakpoint 1, 0x0+7c05`, o)
	assert.Contains(t, o, "$1 = 0x48")
	assert.Regexp(t, `Breakpoint 2, 0x0+7c08`, o)
	assert.Regexp(t, `rip\s+0x7c08`, o)
	select {
	case r := <-done:
		t.Logf("result %v %s, console %q", r.Reason, r.Detail, out.String())
		assert.Equal(t, Reset, r.Reason)
		assert.Equal(t, "HIP", out.String())
	case <-time.After(60 * time.Second):
		m.Stop("timeout")
		t.Fatalf("guest did not end after detach; console %q", out.String())
	}
}

func TestGDBLongModeInt3(t *testing.T) {
	needKVM(t)
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		t.Skip("no gdb")
	}
	var out devicetest.Buffer
	m, err := New(Config{Kernel: bzImage(printCmdlineAndPowerOff), Cmdline: "hello", MemSize: 64 << 20, CPUs: 2, Console: &out, Debug: true})
	require.NoError(t, err)
	defer m.Close()
	l, err := gdbstub.Listen("127.0.0.1:0")
	require.NoError(t, err)
	srv := gdbstub.NewServer(m.Debugger(), gdbstub.Options{HardwareBreakpointsFirst: true, Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	go srv.Serve(l)
	defer srv.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, gdb, "-batch", "-nx",
		"-ex", "target remote "+l.Addr().String(),
		"-ex", "info registers rip cr0 cr3 efer cs",
		"-ex", "info threads",
		"-ex", "set $entry = $pc",
		"-ex", "break *($entry+0x13)",
		"-ex", "continue",
		"-ex", "p/c $rax",
		"-ex", "x/1xb $pc",
		"-ex", "continue",
		"-ex", "p/c $rax",
		"-ex", "delete",
		"-ex", "break *0xffffffff81000000",
		"-ex", "stepi",
		"-ex", "stepi",
		"-ex", "info registers rip",
		"-ex", "detach")
	b, err := cmd.CombinedOutput()
	t.Logf("gdb:\n%s", b)
	if err != nil {
		r := <-done
		t.Fatalf("result %v: %s; console %q", r.Reason, r.Detail, out.String())
	}
	select {
	case r := <-done:
		t.Logf("result %v: %s; console %q", r.Reason, r.Detail, out.String())
		assert.Equal(t, PowerOff, r.Reason)
		assert.Equal(t, "hello\r\n", out.String())
	case <-time.After(30 * time.Second):
		m.Stop("timeout")
		t.Fatalf("guest did not end after detach; console %q", out.String())
	}
	o := string(b)
	assert.Contains(t, o, "$1 = 104 'h'")
	assert.Contains(t, o, "$2 = 101 'e'")
	assert.Contains(t, o, "0xee")
}

func rspFrame(s string) string {
	var sum byte
	for i := 0; i < len(s); i++ {
		sum += s[i]
	}
	return fmt.Sprintf("$%s#%02x", s, sum)
}

func rspRead(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	for {
		s, err := r.ReadString('#')
		require.NoError(t, err)
		if i := strings.IndexByte(s, '$'); i >= 0 {
			r.Discard(2)
			return s[i+1 : len(s)-1]
		}
	}
}

func TestGDBCtrlCAndExitOnARealVCPU(t *testing.T) {
	needKVM(t)
	var out devicetest.Buffer
	// jmp $ forever on vCPU 0.
	m, err := New(Config{Kernel: bzImage([]byte{0xEB, 0xFE}), MemSize: 64 << 20, CPUs: 2, Console: &out, Debug: true})
	require.NoError(t, err)
	defer m.Close()
	l, err := gdbstub.Listen("127.0.0.1:0")
	require.NoError(t, err)
	srv := gdbstub.NewServer(m.Debugger(), gdbstub.Options{HardwareBreakpointsFirst: true})
	go srv.Serve(l)
	defer srv.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()

	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	io.WriteString(c, rspFrame("QStartNoAckMode"))
	assert.Equal(t, "OK", rspRead(t, r))
	io.WriteString(c, rspFrame("vCont;c"))
	time.Sleep(300 * time.Millisecond)
	io.WriteString(c, "\x03")
	stop := rspRead(t, r)
	assert.Regexp(t, `^T02thread:[12];$`, stop)
	io.WriteString(c, rspFrame("Hg1"))
	assert.Equal(t, "OK", rspRead(t, r))
	io.WriteString(c, rspFrame("p10"))
	assert.Equal(t, "000210*'", rspRead(t, r), "vCPU 0 spins at its jmp $ (0x100200), run-length encoded")
	// Interrupt again, then let the machine end while running: W.
	io.WriteString(c, rspFrame("vCont;c"))
	time.Sleep(100 * time.Millisecond)
	io.WriteString(c, "\x03")
	assert.Regexp(t, `^T02thread:[12];$`, rspRead(t, r))
	io.WriteString(c, rspFrame("c"))
	time.Sleep(100 * time.Millisecond)
	m.Stop("test")
	assert.Equal(t, "W00", rspRead(t, r))
	res := <-done
	assert.Equal(t, Stopped, res.Reason)
}

//go:build linux

package guestinit

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// These tests run commands with runCommand on the host, as an ordinary
// user would: it needs no privileges, only /bin/sh. runCommand waits for
// every child of the test process, so the tests do not run in parallel.

// result is what a command run produced.
type result struct {
	st     wire.ExitStatus
	stdout string
	stderr string
	logs   []string
}

// logSink collects log lines; runCommand logs from its goroutines too.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// run runs args under runCommand with input on its standard input.
func run(t *testing.T, input string, grace time.Duration, env []string, args ...string) result {
	t.Helper()
	stdin, err := os.CreateTemp(t.TempDir(), "stdin")
	require.NoError(t, err)
	_, err = stdin.WriteString(input)
	require.NoError(t, err)
	_, err = stdin.Seek(0, 0)
	require.NoError(t, err)
	defer stdin.Close()

	var buf bytes.Buffer
	var logs logSink
	if env == nil {
		env = buildEnv(nil)
	}
	st := runCommand(wire.NewWriter(&buf), args, env, stdin, grace, logs.logf)
	fs := frames(t, buf.Bytes())
	for _, f := range fs {
		require.Contains(t, []wire.Type{wire.Stdout, wire.Stderr}, f.Type)
	}
	return result{st: st, stdout: payloads(fs, wire.Stdout), stderr: payloads(fs, wire.Stderr), logs: logs.lines}
}

func TestRunCommandOutputAndStatus(t *testing.T) {
	r := run(t, "", time.Second, nil, "sh", "-c", "echo out; echo err >&2; printf 'bin\\000ary'; exit 3")
	assert.Equal(t, wire.ExitStatus{Status: 3}, r.st)
	assert.Equal(t, "out\nbin\x00ary", r.stdout)
	assert.Equal(t, "err\n", r.stderr)
}

func TestRunCommandBigOutput(t *testing.T) {
	// More than a pipe buffer and several frames; the order of each
	// stream is kept.
	r := run(t, "", time.Second, nil, "sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done")
	require.Equal(t, 0, r.st.Status)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 20000)
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, l)
		}
	}
}

func TestRunCommandStdin(t *testing.T) {
	r := run(t, "hello from the host\n", time.Second, nil, "cat")
	assert.Equal(t, wire.ExitStatus{}, r.st)
	assert.Equal(t, "hello from the host\n", r.stdout)
}

func TestRunCommandSignal(t *testing.T) {
	r := run(t, "", time.Second, nil, "sh", "-c", "kill -KILL $$")
	assert.Equal(t, wire.ExitStatus{Status: 137, Signal: 9}, r.st)
}

func TestRunCommandEnv(t *testing.T) {
	env := buildEnv([]string{"GREETING=hi"})
	r := run(t, "", time.Second, env, "sh", "-c", `echo "$GREETING $HOME $TERM"`)
	require.Equal(t, 0, r.st.Status, r.stderr)
	assert.Equal(t, "hi /root dumb\n", r.stdout)
}

func TestRunCommandSetsid(t *testing.T) {
	// /proc/self/stat field 6 is the session id; for a session leader
	// it equals the pid (field 1). The shell's own $$ is its pid.
	r := run(t, "", time.Second, nil, "sh", "-c", `read -r pid _ _ _ _ sid _ < /proc/$$/stat; [ "$pid" = "$sid" ] && echo leader`)
	assert.Equal(t, "leader\n", r.stdout)
}

func TestRunCommandNotFound(t *testing.T) {
	r := run(t, "", time.Second, nil, "no-such-command-here")
	assert.Equal(t, wire.ExitStatus{Status: wire.StatusNotFound}, r.st, "not an init error")
	assert.Equal(t, "govmm-init: no-such-command-here: not found\n", r.stderr)
	assert.Empty(t, r.stdout)

	// The search uses the command's PATH, not the init's.
	r = run(t, "", time.Second, []string{"PATH=/nonexistent"}, "sh", "-c", "true")
	assert.Equal(t, wire.StatusNotFound, r.st.Status)
}

func TestRunCommandNotExecutable(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "script", 0o644)
	r := run(t, "", time.Second, nil, p)
	assert.Equal(t, wire.ExitStatus{Status: wire.StatusNotExecutable}, r.st)
	assert.Equal(t, "govmm-init: "+p+": permission denied\n", r.stderr)

	// Executable, but its interpreter is missing: execve says ENOENT.
	bad := dir + "/bad"
	require.NoError(t, os.WriteFile(bad, []byte("#!/no/such/interpreter\n"), 0o755))
	r = run(t, "", time.Second, nil, bad)
	assert.Equal(t, wire.StatusNotFound, r.st.Status)
	assert.Contains(t, r.stderr, "missing #! interpreter")

	// Executable, but not a program: ENOEXEC.
	junk := dir + "/junk"
	require.NoError(t, os.WriteFile(junk, []byte{0x7f, 'E', 'L', 'F', 0, 0}, 0o755))
	r = run(t, "", time.Second, nil, junk)
	assert.Equal(t, wire.StatusNotExecutable, r.st.Status)
	assert.Contains(t, r.stderr, "exec format error")
}

func TestRunCommandBackgroundChildHoldsOutput(t *testing.T) {
	// The command exits at once, but leaves a process holding its
	// stdout: runCommand returns after the grace period, with what
	// was written before.
	const grace = 300 * time.Millisecond
	start := time.Now()
	r := run(t, "", grace, nil, "sh", "-c", "echo before; sleep 5 & exit 0")
	elapsed := time.Since(start)
	assert.Equal(t, wire.ExitStatus{}, r.st)
	assert.Equal(t, "before\n", r.stdout)
	assert.GreaterOrEqual(t, elapsed, grace)
	assert.Less(t, elapsed, 4*time.Second, "waited for the background process")
	// sleep holds both streams.
	require.Len(t, r.logs, 2)
	assert.Contains(t, r.logs[0], "the command's Stdout was still open 300ms after it exited")
	assert.Contains(t, r.logs[1], "the command's Stderr was still open")
}

func TestRunCommandReapsOrphans(t *testing.T) {
	// Make the test process a child subreaper (man 2 prctl,
	// PR_SET_CHILD_SUBREAPER): orphans in its tree are reparented to
	// it, as they are to PID 1 in the guest.
	require.NoError(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })

	// The inner shell leaves five background processes and exits; they
	// become orphans, then exit (with status 7) while the command
	// still runs. runCommand reaps them and still reports the
	// command's own status.
	r := run(t, "", time.Second, nil, "sh", "-c", `sh -c 'for i in 1 2 3 4 5; do (exit 7) & done'; sleep 0.3; exit 4`)
	assert.Equal(t, wire.ExitStatus{Status: 4}, r.st)

	// No zombie is left: the process has no children at all.
	_, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
	assert.ErrorIs(t, err, unix.ECHILD)
}

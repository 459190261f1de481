package run

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/run/wire"
)

// newTestConsole makes a console log kept in the test's directory.
func newTestConsole(t *testing.T, echo bool, stderr *bytes.Buffer) *consoleLog {
	t.Helper()
	c, err := newConsoleLog(filepath.Join(t.TempDir(), "c.log"), echo, stderr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// writeChunks writes s to c in pieces of the given sizes, cycling.
func writeChunks(t *testing.T, c *consoleLog, s string, sizes ...int) {
	t.Helper()
	for i := 0; len(s) > 0; i++ {
		n := min(sizes[i%len(sizes)], len(s))
		k, err := c.Write([]byte(s[:n]))
		require.NoError(t, err)
		require.Equal(t, n, k)
		s = s[n:]
	}
}

func TestConsoleLogLinesInChunks(t *testing.T) {
	text := "[    0.000000] Linux version 6.1\r\n[    0.1] second line\r\nthird\nunterminated"
	for _, sizes := range [][]int{{1}, {2}, {3, 7}, {5, 1, 11}, {len(text)}} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) {
			c := newTestConsole(t, false, nil)
			writeChunks(t, c, text, sizes...)
			assert.Equal(t,
				"  | [    0.000000] Linux version 6.1\n  | [    0.1] second line\n  | third\n  | unterminated\n",
				c.tail(10))
			assert.Equal(t, "  | third\n  | unterminated\n", c.tail(2))
			assert.Equal(t, "  | unterminated\n", c.tail(1))

			// The file holds the bytes as written, \r included.
			require.NoError(t, c.f.Sync())
			got, err := os.ReadFile(c.path)
			require.NoError(t, err)
			assert.Equal(t, text, string(got))
		})
	}
}

func TestConsoleLogTail(t *testing.T) {
	c := newTestConsole(t, false, nil)
	assert.Empty(t, c.tail(5), "nothing written")

	for i := range 100 {
		fmt.Fprintf(c, "line %d\n", i)
	}
	lines := strings.Split(strings.TrimSuffix(c.tail(3), "\n"), "\n")
	assert.Equal(t, []string{"  | line 97", "  | line 98", "  | line 99"}, lines)

	// Memory holds at most consoleTailLines lines.
	all := strings.Split(strings.TrimSuffix(c.tail(1000), "\n"), "\n")
	require.Len(t, all, consoleTailLines)
	assert.Equal(t, fmt.Sprintf("  | line %d", 100-consoleTailLines), all[0])
	assert.Equal(t, "  | line 99", all[len(all)-1])

	// An unterminated last line is part of the tail, and does not
	// become a complete line by being shown.
	fmt.Fprint(c, "partial")
	assert.Equal(t, "  | line 99\n  | partial\n", c.tail(2))
	assert.Equal(t, "  | line 99\n  | partial\n", c.tail(2), "tail does not change the log")
	fmt.Fprint(c, " more\n")
	assert.Equal(t, "  | line 99\n  | partial more\n", c.tail(2))

	// An empty line is a line.
	fmt.Fprint(c, "\n")
	assert.Equal(t, "  | partial more\n  | \n", c.tail(2))
}

func TestConsoleLogStartedAndPanicked(t *testing.T) {
	c := newTestConsole(t, false, nil)
	assert.False(t, c.started())
	assert.False(t, c.panicked())

	writeChunks(t, c, "[    1.2] Run /govmm-init as init process\r\n", 4)
	assert.False(t, c.started(), "the kernel's own line is not the init's")
	writeChunks(t, c, "[    1.3] "+wire.StartedLine+"\r\n", 3)
	assert.True(t, c.started())
	assert.False(t, c.panicked())

	writeChunks(t, c, "[    2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\r\n", 6)
	assert.True(t, c.panicked())
	assert.True(t, c.started())

	// "Kernel panic" alone (say, in the command's messages) is no panic.
	c2 := newTestConsole(t, false, nil)
	fmt.Fprint(c2, "no Kernel panic here\n")
	assert.False(t, c2.panicked())
	assert.False(t, c2.started())
	fmt.Fprint(c2, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n")
	assert.True(t, c2.panicked())
	assert.False(t, c2.started())
}

func TestConsoleLogLongLineIsBounded(t *testing.T) {
	c := newTestConsole(t, false, nil)
	long := strings.Repeat("x", 50*maxLineLen)
	writeChunks(t, c, long, 1000, 4097, 1)
	assert.Len(t, c.line, maxLineLen, "the line in memory is cut")
	fmt.Fprint(c, "\nnext\n")
	require.Len(t, c.lines, 2)
	assert.Equal(t, strings.Repeat("x", maxLineLen), c.lines[0])
	assert.Equal(t, "next", c.lines[1])
	assert.Empty(t, c.line)

	// The file has it all.
	require.NoError(t, c.f.Sync())
	fi, err := os.Stat(c.path)
	require.NoError(t, err)
	assert.Equal(t, int64(len(long)+len("\nnext\n")), fi.Size())
}

func TestConsoleLogEcho(t *testing.T) {
	var echoed bytes.Buffer
	c := newTestConsole(t, true, &echoed)
	fmt.Fprint(c, "boot\r\nmore")
	assert.Equal(t, "boot\r\nmore", echoed.String())

	var quiet bytes.Buffer
	c2 := newTestConsole(t, false, &quiet)
	fmt.Fprint(c2, "boot\r\n")
	assert.Empty(t, quiet.String())
	assert.Equal(t, "  | boot\n", c2.tail(1))
}

func TestConsoleLogNote(t *testing.T) {
	c := newTestConsole(t, false, nil)
	fmt.Fprint(c, "kernel line\n")
	c.note("mounting /newroot\n")
	require.NoError(t, c.f.Sync())
	got, err := os.ReadFile(c.path)
	require.NoError(t, err)
	assert.Equal(t, "kernel line\n[govmm-init over the control port] mounting /newroot\n", string(got))
	assert.Equal(t, "  | kernel line\n", c.tail(5), "notes are not console lines")
}

func TestConsoleLogClose(t *testing.T) {
	t.Run("temporary, failed run: kept", func(t *testing.T) {
		t.Setenv("TMPDIR", t.TempDir())
		c, err := newConsoleLog("", false, nil)
		require.NoError(t, err)
		assert.Equal(t, os.Getenv("TMPDIR"), filepath.Dir(c.path))
		assert.Regexp(t, `^govmm-run-.*\.console\.log$`, filepath.Base(c.path))
		fmt.Fprint(c, "x\n")
		require.NoError(t, c.Close())
		assert.FileExists(t, c.path)
	})
	t.Run("temporary, succeeded: removed", func(t *testing.T) {
		t.Setenv("TMPDIR", t.TempDir())
		c, err := newConsoleLog("", false, nil)
		require.NoError(t, err)
		fmt.Fprint(c, "x\n")
		assert.FileExists(t, c.path)
		c.succeeded()
		assert.FileExists(t, c.path, "removed on Close, not before")
		require.NoError(t, c.Close())
		assert.NoFileExists(t, c.path)
	})
	for _, ok := range []bool{false, true} {
		t.Run(fmt.Sprintf("named, succeeded=%v: kept", ok), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "console.log")
			c, err := newConsoleLog(path, false, nil)
			require.NoError(t, err)
			assert.Equal(t, path, c.path)
			fmt.Fprint(c, "x\n")
			if ok {
				c.succeeded()
			}
			require.NoError(t, c.Close())
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, "x\n", string(got))
		})
	}
	t.Run("named in a missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "no", "console.log")
		_, err := newConsoleLog(path, false, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "the console log")
		assert.Contains(t, err.Error(), path)
	})
}

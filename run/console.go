package run

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/govmm/govmm/run/wire"
)

// maxLineLen bounds a console line kept in memory: a guest that never
// ends its line must not grow govmm.
const maxLineLen = 4096

// consoleLog keeps the guest's serial console: in a file, optionally on
// stderr too, and its last lines in memory. It notices govmm's init
// starting (wire.StartedLine) and a kernel panic (panicLine).
type consoleLog struct {
	mu   sync.Mutex
	f    *os.File
	path string
	// keep keeps the file after Close: the user named it, or the run
	// failed (the default until the command's status arrives).
	keep  bool
	named bool
	echo  io.Writer // stderr with --console, or nil

	line               []byte   // the line being written
	lines              []string // the last complete lines, at most consoleTailLines
	sawStart, sawPanic bool
}

// newConsoleLog opens the log: path, or a new temporary file if path is
// empty.
func newConsoleLog(path string, echo bool, stderr io.Writer) (*consoleLog, error) {
	c := &consoleLog{keep: true, named: path != ""}
	var err error
	if path != "" {
		c.f, err = os.Create(path)
	} else {
		c.f, err = os.CreateTemp("", "govmm-run-*.console.log")
	}
	if err != nil {
		return nil, fmt.Errorf("the console log: %w", err)
	}
	c.path = c.f.Name()
	if echo {
		c.echo = stderr
	}
	return c, nil
}

// Write takes console output from the UART.
func (c *consoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.f.Write(p)
	if c.echo != nil {
		c.echo.Write(p)
	}
	for _, b := range p {
		switch b {
		case '\n':
			c.endLine()
		case '\r':
		default:
			if len(c.line) < maxLineLen {
				c.line = append(c.line, b)
			}
		}
	}
	return len(p), nil
}

func (c *consoleLog) endLine() {
	l := string(c.line)
	c.line = c.line[:0]
	if strings.Contains(l, wire.StartedLine) {
		c.sawStart = true
	}
	if strings.Contains(l, panicLine) {
		c.sawPanic = true
	}
	c.lines = append(c.lines, l)
	if len(c.lines) > consoleTailLines {
		c.lines = c.lines[len(c.lines)-consoleTailLines:]
	}
}

// note adds a line from the init's control port to the log file, so the
// log has the whole story.
func (c *consoleLog) note(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.f, "[govmm-init over the control port] %s\n", strings.TrimRight(s, "\n"))
}

func (c *consoleLog) started() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sawStart
}

func (c *consoleLog) panicked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sawPanic
}

// tail returns the last n lines, each ending in a newline.
func (c *consoleLog) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.lines
	if len(c.line) > 0 {
		lines = append(lines[:len(lines):len(lines)], string(c.line))
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("  | ")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

// succeeded marks the run a success: the file is removed on Close unless
// the user named it.
func (c *consoleLog) succeeded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keep = false
}

// Close closes the file, and removes it unless it is to be kept.
func (c *consoleLog) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.f.Close()
	if !c.keep && !c.named {
		os.Remove(c.path)
	}
	return err
}

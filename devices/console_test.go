package devices

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// waitTimeout bounds waits for goroutines in these tests. It is a safety
// net against hangs, not an assertion about speed.
const waitTimeout = 10 * time.Second

// countingWriter records the writes it receives.
type countingWriter struct {
	mu    sync.Mutex
	calls int
	buf   bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	return w.buf.Write(p)
}

func (w *countingWriter) stats() (int, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls, w.buf.String()
}

func requireClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		require.FailNow(t, what+" did not happen")
	}
}

func TestBufferedWriterBatchesAndCloseFlushes(t *testing.T) {
	cw := &countingWriter{}
	w := NewBufferedWriter(cw, time.Hour) // only size and Close flush
	var want []byte
	for i := range 1000 {
		b := []byte{byte(i)}
		want = append(want, b...)
		n, err := w.Write(b)
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	calls, _ := cw.stats()
	assert.Zero(t, calls, "nothing written before the buffer fills or the delay passes")
	require.NoError(t, w.Close())
	calls, got := cw.stats()
	assert.Equal(t, 1, calls)
	assert.Equal(t, string(want), got)

	requireClosed(t, w.done, "flusher exit")
	_, err := w.Write([]byte("late"))
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, w.Close(), "Close is idempotent")
}

func TestBufferedWriterFlushesWhenFull(t *testing.T) {
	cw := &countingWriter{}
	w := NewBufferedWriter(cw, time.Hour)
	for range 3*flushSize - 1 {
		_, err := w.Write([]byte{'a'})
		require.NoError(t, err)
	}
	calls, got := cw.stats()
	assert.Equal(t, 2, calls)
	assert.Len(t, got, 2*flushSize)
	require.NoError(t, w.Flush())
	calls, got = cw.stats()
	assert.Equal(t, 3, calls)
	assert.Len(t, got, 3*flushSize-1)
	require.NoError(t, w.Close())
	calls, _ = cw.stats()
	assert.Equal(t, 3, calls, "nothing left to write")
}

func TestBufferedWriterFlushesAfterDelay(t *testing.T) {
	cw := &countingWriter{}
	w := NewBufferedWriter(cw, time.Millisecond)
	defer w.Close()
	_, err := w.Write([]byte("login: "))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, got := cw.stats()
		return got == "login: "
	}, waitTimeout, time.Millisecond)
	_, err = w.Write([]byte("root"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, got := cw.stats()
		return got == "login: root"
	}, waitTimeout, time.Millisecond)
}

func TestBufferedWriterConcurrentWriters(t *testing.T) {
	cw := &countingWriter{}
	w := NewBufferedWriter(cw, 100*time.Microsecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				_, _ = w.Write([]byte{byte('a' + g)})
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())
	calls, got := cw.stats()
	assert.Len(t, got, 8*2000)
	assert.Less(t, calls, 8*2000)
	for g := range 8 {
		assert.Equal(t, 2000, strings.Count(got, string(rune('a'+g))))
	}
}

func TestBufferedWriterReportsWriteErrors(t *testing.T) {
	captureLogs(t)
	w := NewBufferedWriter(failingWriter{}, time.Hour)
	_, err := w.Write([]byte("x"))
	require.NoError(t, err)
	assert.ErrorIs(t, w.Close(), assert.AnError)
}

func TestEscapeParser(t *testing.T) {
	type step struct {
		in      byte
		out     byte
		forward bool
		act     escapeAction
	}
	cases := map[string][]step{
		"plain":        {{'a', 'a', true, escapeNone}, {'\r', '\r', true, escapeNone}},
		"quit":         {{EscapeChar, 0, false, escapeNone}, {'x', 0, false, escapeQuit}, {'x', 'x', true, escapeNone}},
		"quit upper":   {{EscapeChar, 0, false, escapeNone}, {'X', 0, false, escapeQuit}},
		"help":         {{EscapeChar, 0, false, escapeNone}, {'h', 0, false, escapeHelp}},
		"help upper":   {{EscapeChar, 0, false, escapeNone}, {'H', 0, false, escapeHelp}},
		"help ?":       {{EscapeChar, 0, false, escapeNone}, {'?', 0, false, escapeHelp}},
		"literal C-a":  {{EscapeChar, 0, false, escapeNone}, {EscapeChar, EscapeChar, true, escapeNone}, {EscapeChar, 0, false, escapeNone}, {'x', 0, false, escapeQuit}},
		"unknown":      {{EscapeChar, 0, false, escapeNone}, {'z', 0, false, escapeNone}, {'z', 'z', true, escapeNone}},
		"C-c passes":   {{0x03, 0x03, true, escapeNone}},
		"x after text": {{'x', 'x', true, escapeNone}},
	}
	for name, steps := range cases {
		var p escapeParser
		for i, s := range steps {
			out, forward, act := p.feed(s.in)
			assert.Equal(t, s.forward, forward, "%s step %d", name, i)
			assert.Equal(t, s.out, out, "%s step %d", name, i)
			assert.Equal(t, s.act, act, "%s step %d", name, i)
		}
	}
}

// fakeSink is an InputSink that takes at most limit bytes (negative: any)
// until grant adds room.
type fakeSink struct {
	mu    sync.Mutex
	got   []byte
	limit int
	room  chan struct{}
}

func newFakeSink(limit int) *fakeSink { return &fakeSink{limit: limit, room: make(chan struct{}, 1)} }

func (s *fakeSink) Receive(p []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	if s.limit >= 0 {
		n = min(n, s.limit)
		s.limit -= n
	}
	s.got = append(s.got, p[:n]...)
	return n
}

func (s *fakeSink) Room() <-chan struct{} { return s.room }

func (s *fakeSink) received() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.got)
}

func (s *fakeSink) grant(n int) {
	s.mu.Lock()
	s.limit += n
	s.mu.Unlock()
	select {
	case s.room <- struct{}{}:
	default:
	}
}

func TestConsolePipeInput(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	sink := newFakeSink(-1)
	c, err := NewConsole(ConsoleConfig{In: r, Sink: sink, OnQuit: func() { t.Error("no escapes on a pipe") }})
	require.NoError(t, err)
	assert.False(t, c.IsTerminal())

	_, err = w.Write([]byte("echo hi\n\x01x\x01\x01"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	requireClosed(t, c.Done(), "end of input")
	assert.Equal(t, "echo hi\n\x01x\x01\x01", sink.received(), "pipe input passes through untouched")
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
}

func TestConsoleDevNull(t *testing.T) {
	null, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer null.Close()
	sink := newFakeSink(-1)
	c, err := NewConsole(ConsoleConfig{In: null, Sink: sink})
	require.NoError(t, err)
	requireClosed(t, c.Done(), "end of input")
	assert.Empty(t, sink.received())
	require.NoError(t, c.Close())
}

func TestConsoleCloseDoesNotHang(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close() // stdin stays open and silent

	c, err := NewConsole(ConsoleConfig{In: r, Sink: newFakeSink(-1)})
	require.NoError(t, err)
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	requireClosed(t, closed, "Close")
	requireClosed(t, c.Done(), "input goroutine exit")
	requireClosed(t, c.roomFwd, "room forwarder exit")

	// Also while the guest is not taking input.
	r2, w2, err := os.Pipe()
	require.NoError(t, err)
	defer r2.Close()
	defer w2.Close()
	sink := newFakeSink(0)
	c2, err := NewConsole(ConsoleConfig{In: r2, Sink: sink})
	require.NoError(t, err)
	_, err = w2.Write([]byte("pending"))
	require.NoError(t, err)
	sink.grant(1)
	require.Eventually(t, func() bool { return sink.received() == "p" }, waitTimeout, time.Millisecond)
	require.NoError(t, c2.Close())
	requireClosed(t, c2.Done(), "input goroutine exit")
}

// TestConsoleBackpressureIntoUART pushes more input than the console's own
// buffer holds through a UART that the "guest" drains slowly: every byte
// must arrive, in order.
func TestConsoleBackpressureIntoUART(t *testing.T) {
	u := NewUART(io.Discard, nil)
	out8(u, uartFCR, fcrEnable)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	c, err := NewConsole(ConsoleConfig{In: r, Sink: u})
	require.NoError(t, err)
	defer c.Close()

	input := make([]byte, maxPendingInput+3*inputChunk+7)
	for i := range input {
		input[i] = byte(i * 7)
	}
	writeErr := make(chan error, 1)
	go func() {
		_, err := w.Write(input)
		writeErr <- err
		w.Close()
	}()

	got := make([]byte, 0, len(input))
	deadline := time.Now().Add(waitTimeout)
	for len(got) < len(input) && time.Now().Before(deadline) {
		if in8(u, uartLSR)&lsrDR != 0 {
			got = append(got, in8(u, uartRBR))
		} else {
			runtime.Gosched()
		}
	}
	require.NoError(t, <-writeErr)
	require.Equal(t, len(input), len(got))
	assert.True(t, bytes.Equal(input, got), "input arrived intact and in order")
	requireClosed(t, c.Done(), "end of input")
}

// openPTY returns the two ends of a new pseudo-terminal, or skips.
func openPTY(t *testing.T) (master, slave *os.File) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("cannot open the pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func TestConsoleTerminalRawModeAndEscapes(t *testing.T) {
	master, slave := openPTY(t)
	fd := int(slave.Fd())
	before, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	require.NotZero(t, before.Lflag&unix.ICANON, "a new pty starts in canonical mode")

	sink := newFakeSink(-1)
	var quits atomic.Int32
	help := &syncBuffer{}
	c, err := NewConsole(ConsoleConfig{In: slave, Sink: sink, Out: help, OnQuit: func() { quits.Add(1) }})
	require.NoError(t, err)
	assert.True(t, c.IsTerminal())

	raw, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	assert.Zero(t, raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG|unix.IEXTEN))
	assert.Zero(t, raw.Iflag&(unix.ICRNL|unix.IXON))
	assert.NotZero(t, raw.Oflag&unix.OPOST)
	assert.Equal(t, uint32(unix.CS8), raw.Cflag&unix.CSIZE)

	// Ctrl-C is a byte for the guest now; Ctrl-A Ctrl-A sends one Ctrl-A.
	_, err = master.Write([]byte("ls\r\x03\x01\x01\x01h\x01z\x01x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return quits.Load() == 1 }, waitTimeout, time.Millisecond)
	assert.Equal(t, "ls\r\x03\x01", sink.received())
	assert.Contains(t, help.String(), "C-a x")

	require.NoError(t, c.Close())
	after, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	assert.Equal(t, before.Iflag, after.Iflag)
	assert.Equal(t, before.Oflag, after.Oflag)
	assert.Equal(t, before.Cflag, after.Cflag)
	assert.Equal(t, before.Lflag, after.Lflag)
	assert.Equal(t, before.Cc, after.Cc)
}

func TestConsoleRejectsMissingConfig(t *testing.T) {
	_, err := NewConsole(ConsoleConfig{})
	assert.Error(t, err)
}

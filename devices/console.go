package devices

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultFlushDelay is how long guest output may wait in a BufferedWriter
// before it is written out: short enough that an interactive shell feels
// immediate, long enough that a burst of boot messages becomes a few large
// writes instead of one system call per byte.
const DefaultFlushDelay = 15 * time.Millisecond

// flushSize is the amount of buffered output that is written out at once,
// without waiting for the delay. It also bounds the buffer: a guest that
// prints faster than the host can take it is slowed down by the write.
const flushSize = 4096

// maxSpareBuffer is the largest buffer a BufferedWriter keeps for reuse; a
// buffer grown by one huge Write is dropped after its flush.
const maxSpareBuffer = 64 << 10

// ErrClosed is returned by writes to a closed BufferedWriter.
var ErrClosed = errors.New("devices: writer is closed")

// BufferedWriter collects the guest's console output (the UART writes it a
// byte at a time) and writes it to the host in chunks: when flushSize bytes
// have collected, after the flush delay, and on Flush and Close. A
// background goroutine does the delayed flush; Close stops it and writes out
// everything, so no output is lost at exit. Writes to the underlying writer
// happen in order and one at a time. It is safe for concurrent use.
type BufferedWriter struct {
	w     io.Writer
	delay time.Duration

	wmu sync.Mutex // held across each write to w; taken before mu

	mu     sync.Mutex
	buf    []byte
	spare  []byte // the previous flush's buffer, reused
	closed bool

	kick    chan struct{} // data arrived in an empty buffer
	quit    chan struct{}
	done    chan struct{} // the flusher goroutine has returned
	errOnce sync.Once
}

// NewBufferedWriter returns a BufferedWriter that writes to w, holding data
// for at most delay (DefaultFlushDelay if delay <= 0). Close it when done.
func NewBufferedWriter(w io.Writer, delay time.Duration) *BufferedWriter {
	if delay <= 0 {
		delay = DefaultFlushDelay
	}
	b := &BufferedWriter{
		w:     w,
		delay: delay,
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go b.flusher()
	return b
}

// Write buffers p. It writes through to the underlying writer, on the
// caller's goroutine, only when the buffer is full.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, ErrClosed
	}
	if len(b.buf) == 0 && len(p) > 0 {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= flushSize
	b.mu.Unlock()
	if full {
		if err := b.Flush(); err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

// Flush writes out everything buffered so far.
func (b *BufferedWriter) Flush() error {
	b.wmu.Lock()
	defer b.wmu.Unlock()

	b.mu.Lock()
	data := b.buf
	b.buf = b.spare[:0]
	b.spare = nil
	b.mu.Unlock()

	var err error
	if len(data) > 0 {
		_, err = b.w.Write(data)
		if err != nil {
			b.errOnce.Do(func() {
				slog.Warn("console: writing guest output failed; output is dropped, further errors are not logged", "err", err)
			})
		}
	}
	if cap(data) <= maxSpareBuffer {
		b.mu.Lock()
		b.spare = data[:0]
		b.mu.Unlock()
	}
	return err
}

// Close stops the background flusher, writes out everything buffered and
// makes further writes fail with ErrClosed. It does not close the
// underlying writer. Close is idempotent.
func (b *BufferedWriter) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.quit)
	<-b.done
	return b.Flush()
}

// flusher writes out buffered data once it has waited for the delay.
func (b *BufferedWriter) flusher() {
	defer close(b.done)
	for {
		select {
		case <-b.kick:
		case <-b.quit:
			return
		}
		t := time.NewTimer(b.delay)
		select {
		case <-t.C:
			_ = b.Flush() // errors are logged by Flush
		case <-b.quit:
			t.Stop()
			return
		}
	}
}

// InputSink is where the console puts the bytes typed for the guest: a
// UART. Receive takes what fits without blocking and reports how much;
// Room signals when there may be space again. *UART implements it.
type InputSink interface {
	Receive(p []byte) int
	Room() <-chan struct{}
}

// ConsoleConfig configures NewConsole.
type ConsoleConfig struct {
	// In is the host input, normally os.Stdin: a terminal, a pipe, a file
	// or /dev/null.
	In *os.File
	// Sink receives the input for the guest, normally the COM1 UART.
	Sink InputSink
	// Out receives the console's own messages (the escape help). Normally
	// the BufferedWriter that carries guest output to the same terminal;
	// if it has a Flush method, the console calls it after a message. Nil
	// discards them.
	Out io.Writer
	// OnQuit is called when the user types the quit escape (Ctrl-A X). It
	// runs on the console's input goroutine, so it must not call Close
	// synchronously (that would wait for itself); it should signal the
	// machine to stop, which then closes the console.
	OnQuit func()
}

// Console is the host side of the serial console's input: it reads the
// host's stdin and feeds the guest's UART.
//
// If stdin is a terminal, Console puts it in raw mode, the way QEMU's
// "-serial stdio" does (qemu chardev/char-stdio.c,
// qemu_chr_set_echo_stdio): no echo, no line editing, no signals (Ctrl-C
// goes to the guest), 8-bit characters; output post-processing stays on so
// that govmm's own log lines on the same terminal still render. Close
// always restores the saved terminal settings. On a terminal the QEMU-style
// escape is active: Ctrl-A X quits, Ctrl-A H (or ?) prints help and Ctrl-A
// Ctrl-A sends one Ctrl-A. Input from a pipe, file or /dev/null is passed
// through untouched, and end of file just ends input.
//
// Exit: the input goroutine never blocks in read(2). It waits in poll(2) on
// stdin and an eventfd, and reads only when stdin is readable. Close
// signals the eventfd, so the goroutine returns promptly and Close does not
// hang whatever stdin is doing. When the guest does not take its input, the
// goroutine keeps up to maxPendingInput bytes and then stops reading stdin
// (backpressure) until the UART signals Room, while still watching for
// Close.
type Console struct {
	cfg     ConsoleConfig
	fd      int
	escape  bool
	saved   *unix.Termios // terminal settings to restore, nil if not a terminal
	wakeFd  int           // eventfd that interrupts poll
	closing atomic.Bool
	stop    chan struct{}
	done    chan struct{} // the input goroutine has returned
	roomFwd chan struct{} // the Room forwarder has returned
	once    sync.Once
}

// maxPendingInput bounds the input read from stdin but not yet taken by the
// guest. While it is full, stdin is not read. On a terminal the escape keys
// are read and acted on until then, even if the guest never reads.
const maxPendingInput = 64 << 10

// inputChunk is the size of one read from stdin.
const inputChunk = 4096

// NewConsole starts reading cfg.In into cfg.Sink. Close the console to stop
// reading and to restore the terminal.
func NewConsole(cfg ConsoleConfig) (*Console, error) {
	if cfg.In == nil || cfg.Sink == nil {
		return nil, errors.New("console: In and Sink are required")
	}
	c := &Console{
		cfg:     cfg,
		fd:      int(cfg.In.Fd()),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		roomFwd: make(chan struct{}),
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("console: eventfd: %w", err)
	}
	c.wakeFd = wake

	if t, err := unix.IoctlGetTermios(c.fd, unix.TCGETS); err == nil {
		saved := *t
		raw := *t
		makeRaw(&raw)
		if err := unix.IoctlSetTermios(c.fd, unix.TCSETS, &raw); err != nil {
			unix.Close(wake)
			return nil, fmt.Errorf("console: setting raw mode on the terminal: %w", err)
		}
		c.saved = &saved
		c.escape = true
	}

	go c.forwardRoom()
	go c.readInput()
	return c, nil
}

// makeRaw changes terminal settings to the raw mode described at Console
// (termios(3), "Raw mode", except OPOST).
func makeRaw(t *unix.Termios) {
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP |
		unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag |= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.IEXTEN | unix.ISIG
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1 // read returns as soon as one byte is there
	t.Cc[unix.VTIME] = 0
}

// IsTerminal reports whether the console's input is a terminal (and so in
// raw mode with the escape keys active).
func (c *Console) IsTerminal() bool { return c.saved != nil }

// Done returns a channel that is closed when input has ended: stdin
// reached end of file and everything read was delivered, or Close ran.
func (c *Console) Done() <-chan struct{} { return c.done }

// Close stops reading input, waits for the input goroutines to return and
// restores the terminal settings. It is idempotent and never hangs on
// stdin. It does not close cfg.In.
func (c *Console) Close() error {
	var err error
	c.once.Do(func() {
		c.closing.Store(true)
		close(c.stop)
		c.wake()
		<-c.done
		<-c.roomFwd
		if c.saved != nil {
			if e := unix.IoctlSetTermios(c.fd, unix.TCSETS, c.saved); e != nil {
				err = fmt.Errorf("console: restoring the terminal: %w", e)
			}
		}
		unix.Close(c.wakeFd)
	})
	return err
}

// eventfdCounterSize is the size of an eventfd's counter: reads and writes
// transfer exactly 8 bytes (eventfd(2)).
const eventfdCounterSize = 8

// eventfdIncrement is the counter increment written to wake the eventfd:
// 1 in host (little-endian x86) byte order.
var eventfdIncrement = [eventfdCounterSize]byte{1}

// wake interrupts the input goroutine's poll.
func (c *Console) wake() {
	// EAGAIN means the counter is already non-zero: poll will return.
	_, _ = unix.Write(c.wakeFd, eventfdIncrement[:])
}

// forwardRoom turns the sink's Room signals into eventfd wakeups, since
// poll cannot wait on a channel.
func (c *Console) forwardRoom() {
	defer close(c.roomFwd)
	for {
		select {
		case <-c.cfg.Sink.Room():
			c.wake()
		case <-c.stop:
			return
		}
	}
}

// readInput is the input goroutine.
func (c *Console) readInput() {
	defer close(c.done)
	var (
		pending []byte // read from stdin, not yet taken by the sink
		eof     bool
		parser  escapeParser
		buf     = make([]byte, inputChunk)
		drain   [eventfdCounterSize]byte
	)
	for !c.closing.Load() {
		if len(pending) > 0 {
			// Drop what was taken from the front; later appends
			// reuse the tail or move only what is left.
			n := min(max(c.cfg.Sink.Receive(pending), 0), len(pending))
			pending = pending[n:]
			if len(pending) == 0 {
				pending = nil
			}
		}
		if eof && len(pending) == 0 {
			return
		}
		// fds[0] is the wake eventfd, fds[1] (if present) stdin.
		fds := []unix.PollFd{{Fd: int32(c.wakeFd), Events: unix.POLLIN}}
		readInput := !eof && len(pending) < maxPendingInput
		if readInput {
			fds = append(fds, unix.PollFd{Fd: int32(c.fd), Events: unix.POLLIN})
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			slog.Warn("console: poll failed, input stops", "err", err)
			return
		}
		if fds[0].Revents != 0 {
			_, _ = unix.Read(c.wakeFd, drain[:])
		}
		if !readInput || fds[1].Revents == 0 {
			continue
		}
		n, err := unix.Read(c.fd, buf)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			slog.Warn("console: reading input failed, input stops", "err", err)
			eof = true
		case n == 0:
			eof = true // end of file: a closed pipe, /dev/null
		case !c.escape:
			pending = append(pending, buf[:n]...)
		default:
			for _, b := range buf[:n] {
				out, forward, act := parser.feed(b)
				if forward {
					pending = append(pending, out)
				}
				c.act(act)
			}
		}
	}
}

// act carries out an escape command.
func (c *Console) act(a escapeAction) {
	switch a {
	case escapeQuit:
		if c.cfg.OnQuit != nil {
			c.cfg.OnQuit()
		}
	case escapeHelp:
		if c.cfg.Out == nil {
			return
		}
		_, _ = io.WriteString(c.cfg.Out, escapeHelpText)
		if f, ok := c.cfg.Out.(interface{ Flush() error }); ok {
			_ = f.Flush()
		}
	}
}

// EscapeChar is the console escape character, Ctrl-A (ASCII SOH), as in
// QEMU's character device multiplexer (qemu chardev/char-mux.c).
const EscapeChar = 0x01

// escapeHelpText is printed for Ctrl-A H. Lines end in CR LF so that they
// render in raw mode whatever the output settings.
const escapeHelpText = "\r\n" +
	"C-a h    print this help\r\n" +
	"C-a x    exit govmm\r\n" +
	"C-a C-a  send C-a to the guest\r\n"

// escapeAction is what an escape sequence asks the console to do.
type escapeAction int

const (
	escapeNone escapeAction = iota
	escapeQuit
	escapeHelp
)

// escapeParser recognises the console escape sequences in the input
// stream, one byte at a time, like QEMU's mux_proc_byte: after EscapeChar
// the next byte is a command; unknown commands are dropped.
type escapeParser struct {
	armed bool // the previous byte was an unpaired EscapeChar
}

// feed takes one input byte and returns the byte to send to the guest, if
// forward is true, and the action to carry out.
func (p *escapeParser) feed(b byte) (out byte, forward bool, act escapeAction) {
	if !p.armed {
		if b == EscapeChar {
			p.armed = true
			return 0, false, escapeNone
		}
		return b, true, escapeNone
	}
	p.armed = false
	switch b {
	case EscapeChar:
		return EscapeChar, true, escapeNone
	case 'x', 'X':
		return 0, false, escapeQuit
	case 'h', 'H', '?':
		return 0, false, escapeHelp
	}
	return 0, false, escapeNone
}

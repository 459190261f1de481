package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Type is the kind of a frame: the first byte of its header.
type Type uint8

// Frame types. The zero value is not a type, so a stream of zero bytes is
// rejected at once.
const (
	// Hello is sent once, when the init has opened the control port. Its
	// payload is JSON HelloInfo.
	Hello Type = 1

	// Stdout carries raw bytes the command wrote to its standard output.
	Stdout Type = 2

	// Stderr carries raw bytes the command wrote to its standard error.
	Stderr Type = 3

	// Log carries one line of text from the init itself, for diagnostics.
	Log Type = 4

	// Exit is the last frame. Its payload is JSON ExitStatus.
	Exit Type = 5
)

// String returns the type's name, or its number for an unknown type.
func (t Type) String() string {
	switch t {
	case Hello:
		return "Hello"
	case Stdout:
		return "Stdout"
	case Stderr:
		return "Stderr"
	case Log:
		return "Log"
	case Exit:
		return "Exit"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Valid reports whether t is one of the frame types above.
func (t Type) Valid() bool { return t >= Hello && t <= Exit }

// HeaderSize is the size of a frame header: the type byte and the
// little-endian uint32 payload length.
const HeaderSize = 1 + 4

// MaxPayload is the largest payload one frame carries. Writer splits
// longer Stdout and Stderr data into several frames; Reader rejects a
// header that declares more, before allocating anything.
const MaxPayload = 64 << 10

// ErrMalformed is wrapped by the errors Reader returns for a header it
// rejects: an unknown type or a length over MaxPayload. After one, the
// stream is out of step and cannot be read further.
var ErrMalformed = errors.New("wire: malformed frame")

// Frame is one frame read from the control port.
type Frame struct {
	// Type is the frame's type, always one of the types above.
	Type Type
	// Payload is the frame's payload, at most MaxPayload bytes.
	Payload []byte
}

// Writer writes frames to a byte stream. It is safe for concurrent use:
// each frame goes to the underlying writer in one Write call under one
// mutex, so frames from several goroutines never interleave, and the
// frames of one goroutine keep their order.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte // header and payload of the frame being written; guarded by mu
}

// NewWriter returns a Writer that writes frames to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteFrame writes a frame of type t carrying p. Stdout and Stderr data
// longer than MaxPayload goes out as several frames, in order; for the
// other types a longer payload is an error. An empty p writes a frame
// with an empty payload.
func (w *Writer) WriteFrame(t Type, p []byte) error {
	if !t.Valid() {
		return fmt.Errorf("wire: cannot write a frame of unknown type %v", t)
	}
	if len(p) > MaxPayload && t != Stdout && t != Stderr {
		return fmt.Errorf("wire: %v payload of %d bytes is longer than MaxPayload (%d)", t, len(p), MaxPayload)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		n := min(len(p), MaxPayload)
		if err := w.writeOne(t, p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
	}
}

// writeOne writes one frame with a payload of at most MaxPayload bytes in
// one Write call. The caller holds w.mu.
func (w *Writer) writeOne(t Type, p []byte) error {
	w.buf = append(w.buf[:0], byte(t), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(w.buf[1:HeaderSize], uint32(len(p)))
	w.buf = append(w.buf, p...)
	// io.Writer promises an error when it writes less than asked, so a
	// nil error means the whole frame went out.
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("wire: writing a %v frame: %w", t, err)
	}
	return nil
}

// Hello writes the Hello frame, naming the guest kernel's release
// (uname -r).
func (w *Writer) Hello(kernel string) error {
	p, err := jsonPayload(HelloInfo{Kernel: kernel})
	if err != nil {
		return err
	}
	return w.WriteFrame(Hello, p)
}

// Exit writes the Exit frame. It should be the last frame written. An
// InitError longer than MaxInitError bytes is cut to that length.
func (w *Writer) Exit(s ExitStatus) error {
	if len(s.InitError) > MaxInitError {
		s.InitError = s.InitError[:MaxInitError]
	}
	p, err := jsonPayload(s)
	if err != nil {
		return err
	}
	return w.WriteFrame(Exit, p)
}

// Logf formats a line of text and writes it as a Log frame, cut to
// MaxPayload bytes if it is longer.
func (w *Writer) Logf(format string, args ...any) error {
	p := []byte(fmt.Sprintf(format, args...))
	if len(p) > MaxPayload {
		p = p[:MaxPayload]
	}
	return w.WriteFrame(Log, p)
}

// Reader reads frames from a byte stream written by a Writer, which it
// does not trust.
type Reader struct {
	r   io.Reader
	err error // sticky: once a header is rejected, the stream is out of step
}

// NewReader returns a Reader that reads frames from r. Wrap r in a
// bufio.Reader if its reads are costly; Reader reads each header and
// payload with io.ReadFull.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next reads the next frame. It returns io.EOF when the stream ends at a
// frame boundary and io.ErrUnexpectedEOF when it ends inside a frame. A
// header with an unknown type or a length over MaxPayload is an error
// wrapping ErrMalformed, returned again by every later call. The payload
// is a new slice the caller may keep.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	var hdr [HeaderSize]byte
	// ReadFull returns io.EOF only if it read nothing, and
	// io.ErrUnexpectedEOF if the stream ended part way: just the
	// distinction Next promises.
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		return Frame{}, err
	}
	t := Type(hdr[0])
	n := binary.LittleEndian.Uint32(hdr[1:])
	if !t.Valid() {
		r.err = fmt.Errorf("%w: unknown frame type %d", ErrMalformed, hdr[0])
		return Frame{}, r.err
	}
	if n > MaxPayload {
		r.err = fmt.Errorf("%w: %v frame declares %d bytes of payload, more than MaxPayload (%d)", ErrMalformed, t, n, MaxPayload)
		return Frame{}, r.err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			// The header promised a payload: ending before
			// it is ending inside the frame.
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Type: t, Payload: p}, nil
}

package guestinit

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/govmm/govmm/run/wire"
)

// copyBufSize is how much a copier reads at once: 32 KiB, the most one
// write(2) to a virtio-console port passes on (port_fops_write in
// drivers/char/virtio_console.c caps a write at 32 KiB), so a full read
// still fits in one frame of wire.MaxPayload.
const copyBufSize = 32 << 10

// outputGrace is how long the init keeps copying the command's output
// after the command has exited. The pipes reach end of file only when
// every process holding their write ends has closed them, and a
// background process the command started (`daemon &`) may hold them for
// ever; the init must not wait for it, so after outputGrace it cuts the
// output off and reports the exit.
const outputGrace = 2 * time.Second

// copier copies one of the command's output pipes into frames.
type copier struct {
	t    wire.Type
	r    io.ReadCloser
	done chan struct{} // closed when the copy has stopped
	err  error         // why it stopped, if not end of file; read after done
}

// startCopier starts a goroutine that reads r until end of file, writing
// what it reads to w as frames of type t. Each read becomes one frame, so
// the frames keep the stream's order.
func startCopier(w *wire.Writer, t wire.Type, r io.ReadCloser) *copier {
	c := &copier{t: t, r: r, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = copyFrames(w, t, r)
	}()
	return c
}

// copyFrames reads r until end of file, writing each read to w as one
// frame of type t.
func copyFrames(w *wire.Writer, t wire.Type, r io.Reader) error {
	buf := make([]byte, copyBufSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := w.WriteFrame(t, buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the command's %v: %w", t, err)
		}
	}
}

// waitOutput waits until every copier has reached end of file, or until
// grace has passed. Then it closes the read ends of the pipes still being
// copied, which makes their blocked reads return, and waits for those
// copiers to stop, so that no output frame can follow the Exit frame. It
// returns the types of the streams it cut off, and the errors of copiers
// that failed otherwise.
func waitOutput(grace time.Duration, cs ...*copier) (cut []wire.Type, errs []error) {
	// A closed channel stays ready, so once grace has passed no
	// copier is waited for again.
	expired := make(chan struct{})
	timer := time.AfterFunc(grace, func() { close(expired) })
	defer timer.Stop()
	for _, c := range cs {
		select {
		case <-c.done:
		case <-expired:
		}
		select {
		case <-c.done:
		default:
			// Still copying after the grace period: cut it off.
			// Closing the read end makes the blocked Read return
			// os.ErrClosed, which is not an error worth reporting.
			cut = append(cut, c.t)
			_ = c.r.Close()
			<-c.done
			continue
		}
		if c.err != nil {
			errs = append(errs, c.err)
		}
	}
	return cut, errs
}

package console

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/virtio"
)

// loop is the goroutine behind a data queue. Unlike a virtio.Worker it can
// wait for something other than the queue's Kick (a Write to finish, a
// Read to return), so it has a channel that Reset closes as well.
type loop struct {
	kick    *eventfd.EventFD
	stopped atomic.Bool
	stopCh  chan struct{}
	done    chan struct{}
}

// startLoop runs body on a goroutine of its own until it returns.
func (r *run) startLoop(q *virtio.Queue, body func(*loop)) {
	l := &loop{kick: q.Kick, stopCh: make(chan struct{}), done: make(chan struct{})}
	r.loops = append(r.loops, l)
	go func() {
		defer close(l.done)
		body(l)
	}()
}

// stop asks the loop to return, wakes it wherever it waits and waits until
// it has returned.
func (l *loop) stop() {
	if !l.stopped.Swap(true) {
		close(l.stopCh)
	}
	_ = l.kick.Signal()
	<-l.done
}

// wait sleeps until the queue is kicked, and reports whether the loop
// should go on (false once stopped or if the Kick is closed).
func (l *loop) wait() bool {
	if l.stopped.Load() {
		return false
	}
	if _, err := l.kick.Wait(); err != nil {
		return false // os.ErrClosed: the transport is gone
	}
	return !l.stopped.Load()
}

// transmitLoop serves p's transmitq: guest-to-host data (§5.3.6, "For
// output, a buffer containing the characters is placed in the port's
// transmitq"). Each chain's readable bytes go to Out in order; the chain
// goes back to the driver once Out has taken them, so a blocked Out holds
// the guest back. After each drain it hands the writer the opens and
// closes the driver reported (PORT_OPEN) before the drain began, so that
// each report follows every byte the guest wrote before it: Linux adds data
// to the transmitq before it sends the PORT_OPEN(0) of the close that
// follows.
func (r *run) transmitLoop(l *loop, p *port, q *virtio.Queue) {
	var c virtio.DescChain
	var buf []byte // the copy handed to the writer, allocated on first use
	for !l.stopped.Load() {
		reports := r.d.takeGuestChanges(p)
		err := r.drainTransmitq(l, p, q, &c, &buf)
		// Even if the drain was cut short: the reports follow whatever
		// data the writer got.
		for _, open := range reports {
			p.out.pushEvent(open)
		}
		if err != nil {
			if !errors.Is(err, errStopped) {
				r.fail(err)
			}
			return
		}
		if !l.wait() {
			return
		}
	}
}

// drainTransmitq serves chains until the ring is empty with notifications
// enabled (the loop of virtio.Drain, publishing each chain on its own so
// the driver gets buffers back while Out is slow).
func (r *run) drainTransmitq(l *loop, p *port, q *virtio.Queue, c *virtio.DescChain, buf *[]byte) error {
	for {
		q.DisableNotifications()
		for {
			ok, err := q.Pop(c)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if err := r.transmit(l, p, c, buf); err != nil {
				return err
			}
			// A transmitq buffer is device-readable only: nothing
			// written (§5.3.6.1, "The driver MUST NOT put a
			// device-writable buffer in a transmitq").
			if err := complete(q, c.Head, 0); err != nil {
				return err
			}
		}
		more, err := q.EnableNotifications()
		if err != nil || !more {
			return err
		}
	}
}

// transmit writes the readable bytes of c to p's Out, ioChunk bytes at a
// time, each copied out of guest RAM first so that the writer never
// touches guest memory. Device-writable buffers, which a transmitq must
// not have, are ignored.
func (r *run) transmit(l *loop, p *port, c *virtio.DescChain, buf *[]byte) error {
	if p.cfg.Out == nil || p.outBroken.Load() {
		return nil // discarded
	}
	for {
		if *buf == nil {
			*buf = make([]byte, ioChunk)
		}
		n, _ := c.Read(*buf)
		if n == 0 {
			return nil
		}
		err := p.out.write((*buf)[:n], l.stopCh)
		if errors.Is(err, errStopped) {
			return err
		}
		if err != nil {
			if !p.outBroken.Swap(true) {
				r.log.Warn("virtio-console: writing a port's output failed; its output is discarded from now on",
					"port", p.id, "name", p.cfg.Name, "err", err)
			}
			return nil
		}
	}
}

// receiveLoop serves p's receiveq: host-to-guest data. It holds at most
// one chain the driver posted and asks the reader for at most that chain's
// size, only while the guest has the port open (Linux discards data for a
// closed port, in_intr). What the reader returns stays in p.in until it is
// delivered, across a Reset too. When In has ended and everything read is
// delivered, the host end is closed (hostClosed) and the loop idles.
func (r *run) receiveLoop(l *loop, p *port, q *virtio.Queue) {
	in := p.in
	var c virtio.DescChain
	held := false // c is a chain popped and not yet used
	for !l.stopped.Load() {
		if in.eof && len(in.pending) == 0 || !r.connected(p) {
			if !l.wait() {
				return
			}
			continue
		}
		if !held {
			ok, err := q.Pop(&c)
			if err != nil {
				r.fail(err)
				return
			}
			if !ok {
				// Pop asked for a notification (see
				// virtio.Virtqueue.Pop); notifications are never
				// disabled on this queue.
				if !l.wait() {
					return
				}
				continue
			}
			if c.WritableLen() == 0 {
				// Room for nothing: give it back empty.
				if err := complete(q, c.Head, 0); err != nil {
					r.fail(err)
					return
				}
				continue
			}
			held = true
		}
		if len(in.pending) == 0 {
			if !in.reading {
				in.req <- int(min(c.WritableLen(), ioChunk))
				in.reading = true
			}
			select {
			case res := <-in.res:
				in.reading = false
				in.pending = in.buf[:res.n]
				if res.err != nil {
					in.eof = true
					if !errors.Is(res.err, io.EOF) {
						r.log.Warn("virtio-console: reading a port's input failed; treated as end of file",
							"port", p.id, "name", p.cfg.Name, "err", res.err)
					}
				}
			case <-l.stopCh:
				return
			}
			if in.eof && len(in.pending) == 0 {
				r.hostClosed(p)
			}
			continue // the guest may have closed the port meanwhile
		}
		n, _ := c.Write(in.pending) // fills the chain if pending is larger
		in.pending = in.pending[n:]
		held = false
		if err := complete(q, c.Head, uint32(n)); err != nil {
			r.fail(err)
			return
		}
		if in.eof && len(in.pending) == 0 {
			r.hostClosed(p)
		}
	}
}

// connected reports whether host-to-guest data for p may go to the guest.
func (r *run) connected(p *port) bool {
	return !r.multiport || p.guestConnected.Load()
}

// outPipe is a port's writer: a goroutine that writes data to Out and
// reports GuestConnected states, strictly in the order they were queued.
// The queue holds at most one data item at a time (a token guards it), and
// consecutive reports collapse into the last, so it stays a few items long
// whatever the guest does.
type outPipe struct {
	w      io.Writer
	notify func(bool)
	token  chan struct{} // capacity 1: full while a data item is queued or being written
	wake   chan struct{} // capacity 1: items were queued, or close was called
	done   chan struct{} // closed when the goroutine has exited

	mu     sync.Mutex
	items  []outItem
	state  bool // the state after the queued reports
	closed bool
}

type outItem struct {
	data      []byte
	result    chan error // a data item's Write error, capacity 1
	report    bool       // a GuestConnected report instead of data
	connected bool
}

func newOutPipe(w io.Writer, notify func(bool)) *outPipe {
	p := &outPipe{
		w:      w,
		notify: notify,
		token:  make(chan struct{}, 1),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	go p.run()
	return p
}

// errClosed is the error of a write after Close.
var errClosed = errors.New("virtio-console: device closed")

// write has data written, waiting until it has been or until stop is
// closed (then it returns errStopped, and the writer still writes data:
// the caller must not reuse it).
func (p *outPipe) write(data []byte, stop <-chan struct{}) error {
	select {
	case p.token <- struct{}{}:
	case <-stop:
		return errStopped
	}
	it := outItem{data: data, result: make(chan error, 1)}
	if !p.push(it) {
		<-p.token
		return errClosed
	}
	select {
	case err := <-it.result:
		return err
	case <-stop:
		return errStopped
	}
}

// pushEvent queues a GuestConnected report; it never blocks. A report of
// the state already queued is dropped. The reports queued after the last
// data item alternate, and like changes they are kept to two: a third
// cancels the second.
func (p *outPipe) pushEvent(connected bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || connected == p.state {
		return
	}
	p.state = connected
	if n := len(p.items); n >= 2 && p.items[n-1].report && p.items[n-2].report {
		p.items = p.items[:n-1]
		return
	}
	p.items = append(p.items, outItem{report: true, connected: connected})
	p.signal()
}

// push queues a data item unless the pipe is closed.
func (p *outPipe) push(it outItem) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.items = append(p.items, it)
	p.signal()
	return true
}

// signal wakes the goroutine.
func (p *outPipe) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// close makes the goroutine exit once it has handled what is queued.
func (p *outPipe) close() {
	p.mu.Lock()
	p.closed = true
	p.signal()
	p.mu.Unlock()
}

func (p *outPipe) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		for len(p.items) == 0 && !p.closed {
			p.mu.Unlock()
			<-p.wake
			p.mu.Lock()
		}
		if len(p.items) == 0 {
			p.mu.Unlock()
			return // closed and drained
		}
		it := p.items[0]
		p.items[0] = outItem{}
		p.items = p.items[1:]
		p.mu.Unlock()

		if it.report {
			if p.notify != nil {
				p.notify(it.connected)
			}
			continue
		}
		_, err := p.w.Write(it.data)
		it.result <- err
		<-p.token
	}
}

// inPipe is a port's reader: a goroutine that reads In only when asked,
// into a buffer it then lends to the receiveq worker.
type inPipe struct {
	r    io.Reader
	buf  []byte        // the reader's between a request and its result, then the worker's
	req  chan int      // capacity 1: read up to this many bytes
	res  chan inResult // capacity 1
	quit chan struct{}
	once sync.Once

	// Owned by the receiveq worker of the current activation (Reset
	// waits for one to exit before Activate starts the next).
	pending []byte // read and not yet delivered, in buf
	reading bool   // a request is outstanding
	eof     bool   // In returned an error: it is not read again
}

type inResult struct {
	n   int
	err error
}

func newInPipe(r io.Reader) *inPipe {
	p := &inPipe{
		r:    r,
		buf:  make([]byte, ioChunk),
		req:  make(chan int, 1),
		res:  make(chan inResult, 1),
		quit: make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *inPipe) run() {
	for {
		select {
		case n := <-p.req:
			k, err := p.r.Read(p.buf[:n])
			k = max(0, min(k, n)) // a Reader that breaks its contract
			p.res <- inResult{n: k, err: err}
			if err != nil {
				return
			}
		case <-p.quit:
			return
		}
	}
}

// close makes the goroutine exit, at once if it is not in a Read.
func (p *inPipe) close() { p.once.Do(func() { close(p.quit) }) }

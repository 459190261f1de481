package gdbstub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultHost is where Listen binds when the address names only a port:
// the loopback interface. Whoever reaches the stub can read and write all
// of guest memory, so it is only reachable from other hosts when asked
// for by name ("0.0.0.0:1234").
const DefaultHost = "127.0.0.1"

// ListenAddress turns a --gdb argument into a TCP address: "1234" and
// ":1234" mean DefaultHost:1234; "host:port" ("0.0.0.0:1234",
// "[::1]:1234", "localhost:1234") is used as given. The port must be a
// number (0 picks a free one).
func ListenAddress(addr string) (string, error) {
	host, port := "", addr
	if strings.Contains(addr, ":") {
		var err error
		if host, port, err = net.SplitHostPort(addr); err != nil {
			return "", fmt.Errorf("gdb address %q: %w", addr, err)
		}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return "", fmt.Errorf("gdb address %q: the port must be a number from 0 to 65535", addr)
	}
	if host == "" {
		host = DefaultHost
	}
	return net.JoinHostPort(host, port), nil
}

// Listen opens the TCP socket GDB connects to, at ListenAddress(addr).
func Listen(addr string) (net.Listener, error) {
	a, err := ListenAddress(addr)
	if err != nil {
		return nil, err
	}
	return net.Listen("tcp", a)
}

// ErrBusy is returned by ServeConn when a debugger is already connected.
var ErrBusy = errors.New("gdbstub: a debugger is already connected")

// closeGrace is how long Close lets a session finish writing (a stop
// reply saying the machine ended) before the connection is cut.
const closeGrace = time.Second

// Server serves GDB connections for one Target, one at a time.
//
// The guest must be stopped when the Server is created (govmm holds the
// vCPUs before their first instruction), so that GDB can set its
// breakpoints before anything runs. When a debugger leaves, by detach or
// by closing the connection, its breakpoints are removed and the guest
// runs on; a debugger that connects later stops it again.
type Server struct {
	st   *stub
	log  *slog.Logger
	busy atomic.Bool // a session is running

	mu        sync.Mutex
	closed    bool
	done      chan struct{}
	listeners []net.Listener
	conn      net.Conn // the current session's connection
	wg        sync.WaitGroup
}

// Options configure a Server.
type Options struct {
	// Log receives connection events at Info level and every packet at
	// Debug level; nil discards them.
	Log *slog.Logger
	// HardwareBreakpointsFirst puts software breakpoints (Z0) in free
	// debug registers before resorting to int3. For targets that cannot
	// trap int3, such as a software KVM (kvm_pvm) whose instruction
	// emulator runs guest kernel code and cannot emulate int3.
	HardwareBreakpointsFirst bool
}

// NewServer returns a Server for t.
func NewServer(t Target, opts Options) *Server {
	st := newStub(t, opts.Log)
	st.hwFirst = opts.HardwareBreakpointsFirst
	return &Server{st: st, log: st.log, done: make(chan struct{})}
}

// Serve accepts connections on l until Close. A connection that arrives
// while another debugger is connected is closed at once. It returns nil
// after Close, or the error that stopped Accept.
func (srv *Server) Serve(l net.Listener) error {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		l.Close()
		return nil
	}
	srv.listeners = append(srv.listeners, l)
	srv.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			if srv.isClosed() {
				return nil
			}
			return err
		}
		if !srv.start() {
			srv.log.Warn("gdb: refusing a second debugger", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		go func() {
			defer srv.finish()
			srv.serve(c)
		}()
	}
}

// ServeConn runs one session on c and returns when it ends. It returns
// ErrBusy, closing c, if a debugger is already connected.
func (srv *Server) ServeConn(c net.Conn) error {
	if !srv.start() {
		c.Close()
		return ErrBusy
	}
	defer srv.finish()
	srv.serve(c)
	return nil
}

// start claims the Server for a session.
func (srv *Server) start() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed || !srv.busy.CompareAndSwap(false, true) {
		return false
	}
	srv.wg.Add(1)
	return true
}

func (srv *Server) finish() {
	srv.busy.Store(false)
	srv.wg.Done()
}

func (srv *Server) isClosed() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closed
}

// Close stops accepting connections and ends the session, if any, after
// it has sent a stop already reported by the target (such as the machine
// having ended). It does not resume the guest: Close is for when the
// machine itself goes away.
func (srv *Server) Close() error {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		return nil
	}
	srv.closed = true
	close(srv.done)
	for _, l := range srv.listeners {
		l.Close()
	}
	if srv.conn != nil {
		srv.conn.SetDeadline(time.Now().Add(closeGrace))
	}
	srv.mu.Unlock()
	srv.wg.Wait()
	return nil
}

// serve is one session: it reads GDB's bytes on a goroutine of their own,
// so that it can wait for them and for the guest's stops at once.
func (srv *Server) serve(c net.Conn) {
	defer c.Close()
	srv.mu.Lock()
	srv.conn = c
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		srv.conn = nil
		srv.mu.Unlock()
	}()
	srv.log.Info("gdb: debugger connected", "remote", c.RemoteAddr().String())
	defer srv.log.Info("gdb: debugger disconnected", "remote", c.RemoteAddr().String())

	inputs := make(chan input)
	quit := make(chan struct{})
	defer close(quit)
	go readInputs(c, inputs, quit)

	s := newSession(srv.st, c)
	stops := srv.st.t.Stops()
	if !s.attach(stops, srv.done) {
		return
	}
	for !s.end {
		if s.err != nil {
			// The connection broke under a write: like a disconnect.
			s.release(stops, srv.done)
			return
		}
		var running <-chan StopEvent
		if s.running {
			running = stops
		}
		select {
		case in := <-inputs:
			if in.kind == inEOF {
				s.release(stops, srv.done)
				return
			}
			s.handleInput(in)
		case ev := <-running:
			s.onStop(ev)
		case <-srv.done:
			// The machine is going away; tell GDB if it already said so.
			if s.running {
				select {
				case ev := <-stops:
					s.onStop(ev)
				default:
				}
			}
			return
		}
	}
}

// readInputs decodes the byte stream from GDB and hands each input to the
// session, until the connection ends or quit closes.
func readInputs(r io.Reader, out chan<- input, quit <-chan struct{}) {
	br := bufio.NewReader(r)
	d := newDecoder(PacketSize)
	for {
		c, err := br.ReadByte()
		if err != nil {
			select {
			case out <- input{kind: inEOF}:
			case <-quit:
			}
			return
		}
		if in, ok := d.feed(c); ok {
			select {
			case out <- in:
			case <-quit:
				return
			}
		}
	}
}

package p9

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Server is a 9P2000.L file server for one host directory, the share. It
// knows nothing of virtio: HandleBuffers takes a T-message and returns the
// R-message, so the server can be driven by a test or a fuzzer as well as
// by the device.
//
// A Server holds one session (the state from one Tversion to the next): the
// fid table and the negotiated msize. Requests of a session may be served
// concurrently; the guest tells them apart by their tags, which the server
// copies into the replies.
type Server struct {
	root     node // the share's root; root.fd is O_PATH|O_DIRECTORY
	procFD   int  // /proc/self/fd, for reopening O_PATH descriptors
	readOnly bool
	openat2  bool // openat2(2) works; otherwise lookup falls back
	maxFids  int  // MaxFids, or less where descriptors are scarce

	devMu    sync.Mutex
	devIndex map[uint64]uint64 // st_dev → number, for qidPath

	// life is held for reading by every request and for writing by
	// Close, which so waits for requests in progress before closing the
	// descriptors they use.
	life   sync.RWMutex
	closed bool // guarded by life

	mu    sync.Mutex
	fids  map[uint32]*fid // guarded by mu
	msize atomic.Uint32   // negotiated by Tversion; MaxMsize before
}

// fid is the server's side of a fid, the number by which the client refers
// to a file (intro(5): "a fid ... identifies a 'current file' on the
// server"). Its node pins the file; Tlopen or Tlcreate add an open
// descriptor.
//
// A fid is reference counted: the fid table holds one reference, and
// every request that uses the fid holds one while it runs, so a Tclunk that
// races with a Tread of the same fid (which no sane client sends, but a
// hostile one may) never lets the read use a descriptor number that was
// closed and perhaps reused for another file.
type fid struct {
	refs atomic.Int32
	node            // fd, mode, dev, ino and opaque never change; path does
	mu   sync.Mutex // guards path, file, fileFlags and dirNext
	file int        // descriptor from Tlopen or Tlcreate, or -1
	// fileFlags are the open(2) flags of file.
	fileFlags int
	// dirNext is where the next Treaddir continues without a seek: the
	// offset of the last entry the previous one returned.
	dirNext uint64
}

func newFid(n *node) *fid {
	f := &fid{node: *n, file: -1}
	f.refs.Store(1)
	return f
}

// release drops a reference and closes the descriptors with the last one.
func (f *fid) release() {
	if f.refs.Add(-1) != 0 {
		return
	}
	unix.Close(f.fd)
	if f.file >= 0 {
		unix.Close(f.file)
	}
}

// openFile returns the fid's open descriptor and its flags, or EBADF if
// the fid is not open. The descriptor stays valid while the caller holds
// its reference to the fid: it is closed only by release.
func (f *fid) openFile() (int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file < 0 {
		return -1, 0, unix.EBADF
	}
	return f.file, f.fileFlags, nil
}

// currentNode returns a copy of the fid's node with its current path. The
// descriptor in the copy is the fid's own: valid while the caller holds
// its reference, and not to be closed.
func (f *fid) currentNode() node {
	f.mu.Lock()
	n := f.node
	f.mu.Unlock()
	return n
}

// Options configure a share.
type Options struct {
	// Tag is the mount tag, which the guest names the share by:
	// mount -t 9p -o trans=virtio TAG /mnt. Only the device uses it.
	Tag string
	// ReadOnly refuses every modification with EROFS and opens files
	// for reading only.
	ReadOnly bool
}

// NewServer returns a server for the directory root. The error names root
// if it does not exist, is not a directory, or is on a file system the
// server refuses to share (see pseudoFS).
func NewServer(root string, opts Options) (*Server, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		if errors.Is(err, unix.ENOTDIR) || (unix.Stat(root, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR) {
			return nil, fmt.Errorf("9p: share %s: not a directory", root)
		}
		return nil, fmt.Errorf("9p: share %s: %w", root, &os.PathError{Op: "open", Path: root, Err: err})
	}
	s := &Server{
		root:     node{fd: fd, mode: unix.S_IFDIR},
		procFD:   -1,
		readOnly: opts.ReadOnly,
		devIndex: make(map[uint64]uint64),
		fids:     make(map[uint32]*fid),
	}
	s.msize.Store(MaxMsize)
	fail := func(err error) (*Server, error) {
		unix.Close(fd)
		if s.procFD >= 0 {
			unix.Close(s.procFD)
		}
		return nil, err
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return fail(fmt.Errorf("9p: share %s: %w", root, err))
	}
	s.root.dev, s.root.ino = st.Dev, st.Ino
	if pseudo, err := isPseudoFS(fd); err != nil || pseudo {
		return fail(fmt.Errorf("9p: share %s: a kernel pseudo file system (proc, sysfs, ...) cannot be shared", root))
	}
	// /proc/self/fd is how the server reopens a file it holds an O_PATH
	// descriptor of (see reopen).
	s.procFD, err = unix.Open("/proc/self/fd", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail(fmt.Errorf("9p: share %s: /proc/self/fd is needed to serve files: %w", root, err))
	}
	s.openat2 = probeOpenat2(fd)
	s.maxFids = fidBudget()
	return s, nil
}

// fidBudget is how many fids a session may hold: MaxFids, but no more than
// half the descriptors govmm may open (RLIMIT_NOFILE, which Go raises to
// the hard limit at startup), so that a guest that walks to many files
// runs out of fids (EMFILE, which Linux passes on) before govmm runs out
// of descriptors for everything else. A fid holds one descriptor, two
// while open.
func fidBudget() int {
	const minFids = 256
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return MaxFids
	}
	return int(min(MaxFids, max(minFids, rl.Cur/2)))
}

// ReadOnly reports whether the share is read-only.
func (s *Server) ReadOnly() bool { return s.readOnly }

// Close clunks every fid and closes the share. It waits for requests in
// progress; later requests get Rlerror EIO.
func (s *Server) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.ResetSession()
	unix.Close(s.root.fd)
	unix.Close(s.procFD)
	return nil
}

// ResetSession ends the session as a Tversion does (version(5): "all
// outstanding I/O on the connection is aborted; all active fids are freed
// ('clunked') automatically"), releasing every fid. The device calls it
// when the driver resets it.
func (s *Server) ResetSession() {
	s.mu.Lock()
	fids := s.fids
	s.fids = make(map[uint32]*fid)
	s.mu.Unlock()
	for _, f := range fids {
		f.release()
	}
	s.msize.Store(MaxMsize)
}

// getFid returns fid id with a reference the caller must release.
func (s *Server) getFid(id uint32) (*fid, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fids[id]
	if f == nil {
		return nil, unix.EBADF
	}
	f.refs.Add(1)
	return f, nil
}

// addFid enters a new fid under id, which must be free, taking over f's
// reference. On error f is released.
func (s *Server) addFid(id uint32, f *fid) error {
	s.mu.Lock()
	var err error
	switch {
	case id == NOFID:
		err = unix.EBADF
	case s.fids[id] != nil:
		// The client must pick an unused number (walk(5): "newfid must
		// not be in use unless it is the same as fid").
		err = unix.EBADF
	case len(s.fids) >= s.maxFids:
		err = unix.EMFILE
	default:
		s.fids[id] = f
	}
	s.mu.Unlock()
	if err != nil {
		f.release()
	}
	return err
}

// replaceFid puts f under id in place of whatever fid was there (Twalk
// with newfid equal to fid, Tlcreate), taking over f's reference.
func (s *Server) replaceFid(id uint32, f *fid) {
	s.mu.Lock()
	old := s.fids[id]
	s.fids[id] = f
	s.mu.Unlock()
	if old != nil {
		old.release()
	}
}

// removeFid takes fid id out of the table and releases the table's
// reference.
func (s *Server) removeFid(id uint32) error {
	s.mu.Lock()
	f := s.fids[id]
	delete(s.fids, id)
	s.mu.Unlock()
	if f == nil {
		return unix.EBADF
	}
	f.release()
	return nil
}

// Fids returns the number of fids in use, for tests and diagnostics.
func (s *Server) Fids() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fids)
}

// Msize returns the negotiated maximum message size.
func (s *Server) Msize() uint32 { return s.msize.Load() }

// call is one request being served.
type call struct {
	s   *Server
	typ uint8
	tag uint16
	d   decoder // the body of the T-message, after the header
	// in is the whole T-message, for the data of a Twrite, which is not
	// copied into d: it goes from in straight to pwritev(2).
	in       [][]byte
	writeLen uint32 // Twrite: the bytes of data after the fixed part
	// out receives the R-message; limit is the most bytes it may have:
	// the negotiated msize or the writable room, whichever is smaller.
	out   [][]byte
	limit int
	r     encoder // the body of the R-message
	// inline is the number of data bytes Rread has already put into out
	// after the ioHeaderSize bytes of its header and count.
	inline int
}

// Buffer pools: bodies of T-messages (which the server copies out of the
// transport before decoding, so that a guest changing them meanwhile
// cannot make the server use a value other than the one it checked) and
// bodies of R-messages. Most messages are small; the buffers grow up to
// msize for the few that are not.
const smallBuffer = 8 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, smallBuffer); return &b }}

func getBuf(n int) *[]byte {
	p := bufPool.Get().(*[]byte)
	if cap(*p) < n {
		*p = make([]byte, 0, n)
	}
	*p = (*p)[:n]
	return p
}

func putBuf(p *[]byte) {
	if cap(*p) > MaxMsize {
		return
	}
	*p = (*p)[:0]
	bufPool.Put(p)
}

// Handle serves one T-message held in req and writes the R-message into
// resp. It returns the R-message's length, or 0 if there is no reply: req
// is too short to hold a tag, or resp too small for even an Rlerror.
func (s *Server) Handle(req, resp []byte) int {
	return int(s.HandleBuffers([][]byte{req}, [][]byte{resp}))
}

// HandleBuffers serves the T-message held in the concatenation of in and
// writes the R-message into the concatenation of out: the readable and the
// writable buffers of a virtio descriptor chain. It returns the length of
// the R-message, which starts at the beginning of out, or 0 if there is no
// reply.
//
// The data of Twrite goes from in and the data of Rread into out by one
// pwritev(2) or preadv(2) with no copy in between (see Twrite, Tread); all
// other fields are copied and checked.
//
// A malformed message — shorter than its size field says, longer than
// msize, with fields missing, of a type the server does not know — gets
// an Rlerror (EINVAL, EMSGSIZE, EOPNOTSUPP); no message makes the server
// panic.
func (s *Server) HandleBuffers(in, out [][]byte) uint32 {
	s.life.RLock()
	defer s.life.RUnlock()

	var hdr [headerSize]byte
	if readAt(in, hdr[:], 0) < headerSize {
		return 0 // not even a tag to answer to
	}
	size := binary.LittleEndian.Uint32(hdr[0:])
	c := call{
		s:   s,
		typ: hdr[4],
		tag: binary.LittleEndian.Uint16(hdr[5:]),
		in:  in,
		out: out,
	}
	msize := s.msize.Load()
	c.limit = int(min(uint64(msize), totalLen(out)))

	var err error
	switch {
	case s.closed:
		err = unix.EIO
	case uint64(size) > totalLen(in) || size < headerSize:
		// The size field lies: the message cannot be parsed.
		err = unix.EINVAL
	case size > msize:
		err = unix.EMSGSIZE
	}
	if err != nil {
		return c.finish(err)
	}

	bodyLen := int(size) - headerSize
	if c.typ == Twrite && size >= twriteFixedSize {
		c.writeLen = size - twriteFixedSize
		bodyLen = twriteFixedSize - headerSize
	}
	body := getBuf(bodyLen)
	defer putBuf(body)
	readAt(in, *body, headerSize)
	c.d = decoder{b: *body}

	reply := getBuf(0)
	defer putBuf(reply)
	c.r = encoder{b: *reply, max: c.limit - headerSize}

	h := handlers[c.typ]
	if h == nil {
		// 9P2000 and 9P2000.u messages (Topen, Tcreate, Tstat, Twstat),
		// Tauth (no authentication is needed), R-messages and unknown
		// types: QEMU answers the same for what it does not implement.
		err = unix.EOPNOTSUPP
	} else {
		err = h(&c)
	}
	n := c.finish(err)
	*reply = c.r.b // keep a grown buffer for the pool
	return n
}

// finish writes the header and body of the reply, or an Rlerror for err,
// into out and returns the reply's length.
func (c *call) finish(err error) uint32 {
	if err == nil && (c.r.overflow || headerSize+len(c.r.b)+c.inline > c.limit) {
		// The reply does not fit the client's buffer or msize.
		err = unix.EMSGSIZE
	}
	var hdr [rlerrorSize]byte
	if err != nil {
		if totalLen(c.out) < rlerrorSize {
			return 0 // no room for any reply
		}
		binary.LittleEndian.PutUint32(hdr[0:], rlerrorSize)
		hdr[4] = Rlerror
		binary.LittleEndian.PutUint16(hdr[5:], c.tag)
		binary.LittleEndian.PutUint32(hdr[7:], uint32(errno(err)))
		writeAt(c.out, hdr[:], 0)
		return rlerrorSize
	}
	size := headerSize + len(c.r.b) + c.inline
	binary.LittleEndian.PutUint32(hdr[0:], uint32(size))
	hdr[4] = c.typ + 1
	binary.LittleEndian.PutUint16(hdr[5:], c.tag)
	writeAt(c.out, hdr[:headerSize], 0)
	writeAt(c.out, c.r.b, headerSize)
	return uint32(size)
}

// totalLen is the length of the concatenation of bufs.
func totalLen(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// readAt copies bytes from offset off of the concatenation of bufs into p
// and returns how many it copied.
func readAt(bufs [][]byte, p []byte, off int) int {
	n := 0
	for _, b := range bufs {
		if n == len(p) {
			break
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(p[n:], b[off:])
		off = 0
	}
	return n
}

// writeAt copies p to offset off of the concatenation of bufs, as far as
// it fits.
func writeAt(bufs [][]byte, p []byte, off int) {
	n := 0
	for _, b := range bufs {
		if n == len(p) {
			return
		}
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(b[off:], p[n:])
		off = 0
	}
}

// sliceBuffers appends to dst the bytes [off, off+n) of the concatenation
// of bufs as sub-slices of bufs, cut short where bufs end (the same as
// virtio.SliceBuffers; this package does not otherwise need virtio).
func sliceBuffers(dst, bufs [][]byte, off, n uint64) [][]byte {
	for _, b := range bufs {
		if n == 0 {
			break
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		end := min(l, off+n)
		dst = append(dst, b[off:end])
		n -= end - off
		off = 0
	}
	return dst
}

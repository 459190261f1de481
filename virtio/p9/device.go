package p9

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"

	"github.com/govmm/govmm/virtio"
)

// VIRTIO_ID_9P is the device ID of the 9P transport (virtio 1.2 §5, device
// ID 9, "9P transport"; include/uapi/linux/virtio_ids.h). The spec body
// has no section for it: the device is defined by Linux's driver
// (net/9p/trans_virtio.c) and QEMU's device (hw/9pfs/virtio-9p-device.c).
const VIRTIO_ID_9P = 9

// VIRTIO_9P_MOUNT_TAG is the one feature bit (include/uapi/linux/
// virtio_9p.h): the configuration space holds the mount tag. Linux's
// driver requires it (p9_virtio_probe fails without it).
const VIRTIO_9P_MOUNT_TAG = 0

// The configuration space (include/uapi/linux/virtio_9p.h):
//
//	struct virtio_9p_config {
//		__virtio16 tag_len;  /* length of the tag name */
//		__u8 tag[];          /* non-NUL-terminated tag name */
//	} __attribute__((packed));
//
// With VIRTIO_F_VERSION_1, tag_len is little-endian (§2.5.1).
const (
	configTagLenOff = 0
	configTagOff    = 2
)

// MaxTagLen is the longest mount tag New accepts. Linux reads a tag of
// any length tag_len can give (p9_virtio_probe allocates tag_len + 1),
// but the tag is typed on kernel and mount command lines; 64 bytes is
// plenty and twice kvmtool's MAX_TAG_LEN of 32.
const MaxTagLen = 64

// QueueSize is the maximum size of the request queue. Linux's driver uses
// the size the device offers; QEMU offers 128 (MAX_REQ), which is also the
// number of scatter-gather entries Linux packs per request
// (VIRTQUEUE_NUM).
const QueueSize = 128

// Workers is the number of goroutines that serve requests. The guest
// keeps one request in flight per waiting task, each with its own tag;
// with several workers, a slow request (a large read from disk) does not
// hold up a stat from another task.
const Workers = 8

// requestQ is the device's one virtqueue: the guest puts each T-message in
// the device-readable buffers of a chain and room for the R-message in its
// device-writable ones (net/9p/trans_virtio.c, p9_virtio_request).
const requestQ = 0

// Device is a virtio 9P transport device serving one host directory. The
// zero value is not usable; call New.
//
// # Requests and replies
//
// Each chain holds one request. A popper goroutine (the queue's
// virtio.Worker) takes chains from the available ring and hands them to
// Workers goroutines, which serve them with the Server and return them
// through the used ring; the used length is the R-message's size, which
// Linux checks against the size field (net/9p/client.c, p9_parse_header).
// The Virtqueue is not safe for concurrent use, so the popper and the
// workers take turns on it under a mutex. At most as many chains as the
// queue has entries are in flight: a driver cannot have more (each needs a
// descriptor), and the bound keeps a hostile one that re-posts heads from
// making the device queue work without end.
//
// # Tflush
//
// Linux's virtio transport cannot take a request back from the device, so
// when it flushes a request (a signal to the waiting task) it sends Tflush
// and, once Rflush arrives, assumes "reply won't come" for the old
// request (p9_virtio_cancelled) — unless the old reply arrived first. So
// the reply to a request must reach the used ring before the Rflush that
// flushes it, as flush(5) asks ("the server should answer the flush
// message only after the original request's reply"). The device keeps the
// tags of the requests in flight; a Tflush for one of them waits, without
// holding a worker, until that request completes, and its Rflush is put
// on the used ring right after the request's reply. A Tflush for a tag not
// in flight is answered at once.
type Device struct {
	srv *Server
	tag string
	cfg []byte // struct virtio_9p_config

	mu  sync.Mutex
	run *runner // while active

	serve serveFunc // tests replace srv.HandleBuffers with it
}

// New returns a device serving the directory root under the mount tag
// opts.Tag. The error names root if it is missing or not a directory, and
// says what is wrong with a tag that is empty, longer than MaxTagLen or
// not printable ASCII without spaces.
func New(root string, opts Options) (*Device, error) {
	if err := checkTag(opts.Tag); err != nil {
		return nil, err
	}
	srv, err := NewServer(root, opts)
	if err != nil {
		return nil, err
	}
	cfg := make([]byte, configTagOff+len(opts.Tag))
	binary.LittleEndian.PutUint16(cfg[configTagLenOff:], uint16(len(opts.Tag)))
	copy(cfg[configTagOff:], opts.Tag)
	return &Device{srv: srv, tag: opts.Tag, cfg: cfg}, nil
}

// checkTag checks a mount tag: it goes on mount and kernel command lines,
// so it must be non-empty printable ASCII without spaces.
func checkTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("9p: empty mount tag")
	}
	if len(tag) > MaxTagLen {
		return fmt.Errorf("9p: mount tag %.20q... is %d bytes, longer than %d", tag, len(tag), MaxTagLen)
	}
	for _, r := range []byte(tag) {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("9p: mount tag %q: only printable ASCII without spaces", tag)
		}
	}
	return nil
}

// Tag returns the mount tag.
func (d *Device) Tag() string { return d.tag }

// Server returns the file server behind the device.
func (d *Device) Server() *Server { return d.srv }

// Close stops the device and closes the share.
func (d *Device) Close() error {
	d.Reset()
	return d.srv.Close()
}

// DeviceID returns VIRTIO_ID_9P.
func (d *Device) DeviceID() uint16 { return VIRTIO_ID_9P }

// Features returns VIRTIO_9P_MOUNT_TAG.
func (d *Device) Features() virtio.Features {
	return virtio.Features(0).With(VIRTIO_9P_MOUNT_TAG)
}

// QueueMaxSizes returns the size of the one request queue.
func (d *Device) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig reads struct virtio_9p_config; bytes past its end read as
// zero.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset < uint64(len(d.cfg)) {
		copy(data, d.cfg[offset:])
	}
}

// WriteConfig ignores writes: the configuration is read-only.
func (d *Device) WriteConfig(uint64, []byte) {}

// Activate starts serving the request queue. A driver that did not enable
// it gets a device that does nothing.
func (d *Device) Activate(a *virtio.Activation) error {
	if len(a.Queues) <= requestQ || a.Queues[requestQ] == nil {
		return nil
	}
	d.Reset() // a second Activate without Reset restarts cleanly
	log := a.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	serve := d.serve
	if serve == nil {
		serve = d.srv.HandleBuffers
	}
	r := newRunner(a.Queues[requestQ], serve, a.Fail, log)
	d.mu.Lock()
	d.run = r
	d.mu.Unlock()
	r.start()
	return nil
}

// Reset stops serving: it returns once no goroutine of the device touches
// the queue or guest memory, and ends the 9P session, clunking every fid
// (a driver that comes back starts with Tversion).
func (d *Device) Reset() {
	d.mu.Lock()
	r := d.run
	d.run = nil
	d.mu.Unlock()
	if r != nil {
		r.stop()
		d.srv.ResetSession()
	}
}

// serveFunc serves one request: the Server's HandleBuffers, replaced in
// tests.
type serveFunc func(in, out [][]byte) uint32

// request is a chain in flight.
type request struct {
	chain   virtio.DescChain
	tag     uint16
	tracked bool       // in runner.tags
	flushes []*request // Tflush chains waiting for this request
}

// runner serves one activation of the request queue.
type runner struct {
	q     *virtio.Queue
	serve serveFunc
	fail  func(error)
	log   *slog.Logger

	mu       sync.Mutex // guards q's Virtqueue and everything below
	inflight int        // chains popped and not yet returned
	limit    int        // the most chains in flight: the queue size
	free     []*request
	tags     map[uint16]*request // requests in flight by tag, but Tflush
	stopping bool
	failed   bool

	work    chan *request
	popper  *virtio.Worker
	workers sync.WaitGroup
}

func newRunner(q *virtio.Queue, serve serveFunc, fail func(error), log *slog.Logger) *runner {
	limit := int(q.Size())
	return &runner{
		q:     q,
		serve: serve,
		fail:  fail,
		log:   log,
		limit: limit,
		tags:  make(map[uint16]*request),
		// Room for every chain that can be in flight, so the popper
		// never blocks on it.
		work: make(chan *request, limit),
	}
}

func (r *runner) start() {
	for range Workers {
		r.workers.Add(1)
		go r.worker()
	}
	r.popper = virtio.StartWorker(r.q, r.drain, r.failOnce)
}

// stop stops the popper, lets the workers finish the requests they are
// serving without starting others, and waits for them.
func (r *runner) stop() {
	r.popper.Stop()
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	close(r.work)
	r.workers.Wait()
}

// failOnce reports a broken queue once.
func (r *runner) failOnce(err error) {
	r.mu.Lock()
	first := !r.failed && !r.stopping
	r.failed = true
	r.mu.Unlock()
	if first {
		r.fail(err)
	}
}

// drain takes every available chain, up to the in-flight limit, and hands
// it to the workers. It runs on the popper goroutine after each kick.
func (r *runner) drain() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed || r.stopping {
		return nil
	}
	for {
		r.q.DisableNotifications()
		for r.inflight < r.limit {
			req := r.alloc()
			ok, err := r.q.Pop(&req.chain)
			if err != nil || !ok {
				r.free = append(r.free, req)
				if err != nil {
					return err // the popper reports it with failOnce
				}
				break
			}
			r.inflight++
			r.dispatch(req)
		}
		if r.inflight >= r.limit {
			// Full: notifications stay off, and the worker that
			// brings inflight below the limit kicks the popper.
			return nil
		}
		more, err := r.q.EnableNotifications()
		if err != nil || !more {
			return err
		}
	}
}

func (r *runner) alloc() *request {
	if n := len(r.free); n > 0 {
		req := r.free[n-1]
		r.free = r.free[:n-1]
		return req
	}
	return new(request)
}

// dispatch looks at a new request's header: a Tflush of a request in
// flight waits for it; anything else goes to the workers. r.mu is held.
func (r *runner) dispatch(req *request) {
	req.tracked, req.flushes = false, req.flushes[:0]
	var hdr [headerSize + 2]byte // the header and Tflush's oldtag[2]
	n, _ := req.chain.ReadAt(hdr[:], 0)
	if n >= headerSize {
		size := binary.LittleEndian.Uint32(hdr[0:])
		req.tag = binary.LittleEndian.Uint16(hdr[5:])
		if hdr[4] == Tflush {
			if n == len(hdr) && size >= uint32(len(hdr)) {
				oldTag := binary.LittleEndian.Uint16(hdr[headerSize:])
				if old := r.tags[oldTag]; old != nil {
					old.flushes = append(old.flushes, req)
					return
				}
			}
		} else {
			// A guest that reuses a tag in flight breaks the
			// protocol; the newest request is the one a flush of the
			// tag waits for.
			r.tags[req.tag] = req
			req.tracked = true
		}
	}
	r.work <- req
}

// worker serves requests until the channel closes.
func (r *runner) worker() {
	defer r.workers.Done()
	for req := range r.work {
		r.mu.Lock()
		skip := r.stopping || r.failed
		r.mu.Unlock()
		var n uint32
		if !skip {
			n = r.serve(req.chain.ReadableBuffers(), req.chain.WritableBuffers())
		}
		r.complete(req, n)
	}
}

// complete returns req with n bytes written, and after it any Tflush that
// waited for it with its Rflush, then interrupts the driver if it wants.
func (r *runner) complete(req *request, n uint32) {
	r.mu.Lock()
	if req.tracked && r.tags[req.tag] == req {
		delete(r.tags, req.tag)
	}
	wasFull := r.inflight >= r.limit
	var err error
	notify := false
	if !r.stopping && !r.failed {
		err = r.q.AddUsed(req.chain.Head, n)
		for _, f := range req.flushes {
			if err != nil {
				break
			}
			err = r.q.AddUsed(f.chain.Head, writeRflush(&f.chain))
		}
		if err == nil {
			notify = r.q.Publish()
		}
	}
	r.inflight -= 1 + len(req.flushes)
	for _, f := range req.flushes {
		r.release(f)
	}
	r.release(req)
	kick := wasFull && r.inflight < r.limit && !r.stopping
	r.mu.Unlock()

	if notify {
		r.q.Interrupt()
	}
	if err != nil {
		r.failOnce(err)
	}
	if kick {
		// The popper stopped at the limit with notifications off;
		// wake it to take more.
		_ = r.q.Kick.Signal()
	}
}

// release puts a request back on the free list; its DescChain keeps its
// capacity for the next Pop. r.mu is held.
func (r *runner) release(req *request) {
	clear(req.flushes)
	req.flushes = req.flushes[:0]
	r.free = append(r.free, req)
}

// writeRflush writes Rflush, the reply to the Tflush in c, and returns its
// length: size[4] Rflush tag[2].
func writeRflush(c *virtio.DescChain) uint32 {
	var hdr [headerSize + 2]byte
	n, _ := c.ReadAt(hdr[:headerSize], 0)
	if n < headerSize || c.WritableLen() < headerSize {
		return 0
	}
	binary.LittleEndian.PutUint32(hdr[0:], headerSize)
	hdr[4] = Rflush
	if _, err := c.WriteAt(hdr[:headerSize], 0); err != nil {
		return 0
	}
	return headerSize
}

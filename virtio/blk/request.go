package blk

import (
	"encoding/binary"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/virtio"
)

// worker serves one request queue. Its goroutine is the only one that
// touches its fields after newWorker, so they need no lock; what it shares
// with the other queues' workers (the descriptor, the capacity, the
// serial) does not change while workers run.
type worker struct {
	d   *Device
	fd  int
	q   *virtio.Queue
	log *slog.Logger

	// From the negotiated features (§5.2.3).
	discard     bool // VIRTIO_BLK_F_DISCARD
	writeZeroes bool // VIRTIO_BLK_F_WRITE_ZEROES
	// writethrough: the driver did not accept VIRTIO_BLK_F_FLUSH, so it
	// cannot ask for completed writes to be made stable, and a write is
	// stable as soon as it completes (§5.2.6: "neither
	// VIRTIO_BLK_F_CONFIG_WCE nor VIRTIO_BLK_F_FLUSH feature were
	// negotiated, but VIRTIO_BLK_F_FLUSH was offered by the device"), which
	// the device must then make true (§5.2.6.2).
	writethrough bool

	// Reused for every request, so that serving one allocates nothing.
	chain virtio.DescChain
	serve virtio.ServeFunc // w.serveChain, bound once
	hdr   [reqHeaderSize]byte
	segs  [maxDiscardSeg * segSize]byte
	iov   []unix.Iovec
}

func newWorker(d *Device, fd int, q *virtio.Queue, f virtio.Features, log *slog.Logger) *worker {
	w := &worker{
		d:            d,
		fd:           fd,
		q:            q,
		log:          log.With("queue", q.Index),
		discard:      f.Has(VIRTIO_BLK_F_DISCARD),
		writeZeroes:  f.Has(VIRTIO_BLK_F_WRITE_ZEROES),
		writethrough: !f.Has(VIRTIO_BLK_F_FLUSH),
		iov:          make([]unix.Iovec, 0, segMax),
	}
	w.serve = w.serveChain
	return w
}

// drain serves every request on the queue; the worker goroutine calls it
// on every notification.
func (w *worker) drain() error {
	return virtio.Drain(w.q, &w.chain, w.serve)
}

// serveChain serves one request (§5.2.6) and returns the number of bytes
// written for the used ring. A request always completes: whatever is wrong
// with it becomes its status, and no request breaks the queue.
//
// The status is the last device-writable byte, wherever the descriptors
// split the chain (§2.6.4: the device must not assume a particular
// arrangement). The used length is all of the writable bytes: a driver may
// only trust the first len bytes (§2.7.8.3), so len must reach the status
// byte; and the device writes every one of them (§2.7.8.2: it MUST write
// at least len bytes): the data of a successful IN or GET_ID fills the
// bytes before the status, and when a request fails they are zeroed.
func (w *worker) serveChain(c *virtio.DescChain) (uint32, error) {
	n := c.WritableLen()
	if n == 0 {
		// No byte for the status: the device cannot answer. Returning
		// the chain with nothing written keeps the queue going; the
		// driver learns nothing, as it asked.
		if ok, suppressed := w.d.warn.allow(); ok {
			w.log.Warn("virtio-blk: request without a status byte; returned unanswered",
				"head", c.Head, "suppressed", suppressed)
		}
		return 0, nil
	}
	dataIn := uint64(n) - reqStatusSize
	status := w.handle(c, dataIn)
	if status != VIRTIO_BLK_S_OK {
		zeroWritable(c, dataIn)
	}
	setStatus(c, status)
	return n, nil
}

// handle serves the request in c whose device-writable part has dataIn
// bytes before the status byte, and returns its status.
func (w *worker) handle(c *virtio.DescChain, dataIn uint64) byte {
	// The header is the first 16 device-readable bytes. It is copied out
	// of guest memory before it is looked at, so that the guest cannot
	// change it between the checks and its use.
	if c.ReadableLen() < reqHeaderSize {
		return VIRTIO_BLK_S_IOERR
	}
	_, _ = c.ReadAt(w.hdr[:], 0) // cannot fail: the bytes are there
	typ := binary.LittleEndian.Uint32(w.hdr[reqTypeOff:])
	sector := binary.LittleEndian.Uint64(w.hdr[reqSectorOff:])
	// The device-readable bytes after the header.
	dataOut := uint64(c.ReadableLen()) - reqHeaderSize

	// Each type's data goes one way (§5.2.6): data the other way makes
	// the request malformed.
	switch typ {
	case VIRTIO_BLK_T_IN:
		if dataOut != 0 {
			return VIRTIO_BLK_S_IOERR
		}
		return w.read(c, sector, dataIn)
	case VIRTIO_BLK_T_OUT:
		if dataIn != 0 {
			return VIRTIO_BLK_S_IOERR
		}
		if w.d.ro {
			// §5.2.6.2: "A device MUST set the status byte to
			// VIRTIO_BLK_S_IOERR for a write request if the
			// VIRTIO_BLK_F_RO feature if offered, and MUST NOT write
			// any data."
			return VIRTIO_BLK_S_IOERR
		}
		return w.write(c, sector, dataOut)
	case VIRTIO_BLK_T_FLUSH:
		if dataIn != 0 || dataOut != 0 {
			return VIRTIO_BLK_S_IOERR
		}
		return w.flush()
	case VIRTIO_BLK_T_GET_ID:
		// The data is exactly VIRTIO_BLK_ID_BYTES (§5.2.6.1).
		if dataOut != 0 || dataIn != VIRTIO_BLK_ID_BYTES {
			return VIRTIO_BLK_S_IOERR
		}
		_, _ = c.WriteAt(w.d.serial[:], 0) // NUL-padded, fits
		return VIRTIO_BLK_S_OK
	case VIRTIO_BLK_T_DISCARD:
		if !w.discard {
			return VIRTIO_BLK_S_UNSUPP
		}
		return w.discardWriteZeroes(c, typ, dataIn, dataOut)
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if !w.writeZeroes {
			return VIRTIO_BLK_S_UNSUPP
		}
		return w.discardWriteZeroes(c, typ, dataIn, dataOut)
	default:
		// "VIRTIO_BLK_S_UNSUPP for a request unsupported by device"
		// (§5.2.6): GET_LIFETIME, SECURE_ERASE, the zoned requests and
		// any unknown type.
		return VIRTIO_BLK_S_UNSUPP
	}
}

// sectorRange checks that n bytes from sector are whole sectors inside the
// disk, and returns their offset in the image. The driver "MUST NOT submit
// a request which would cause a read or write beyond capacity", and the
// data of IN and OUT "MUST be a multiple of 512 bytes" (§5.2.6.1); the
// device answers a request that breaks either with VIRTIO_BLK_S_IOERR. The
// comparison is written so that nothing overflows.
func (w *worker) sectorRange(sector, n uint64) (off int64, ok bool) {
	if n%SectorSize != 0 || sector > w.d.capacity || n/SectorSize > w.d.capacity-sector {
		return 0, false
	}
	// capacity*SectorSize is the image size, an int64.
	return int64(sector * SectorSize), true
}

// read serves VIRTIO_BLK_T_IN: one preadv(2) from the image into the
// writable buffers, all but the status byte at their end.
func (w *worker) read(c *virtio.DescChain, sector, n uint64) byte {
	off, ok := w.sectorRange(sector, n)
	if !ok {
		return VIRTIO_BLK_S_IOERR
	}
	// seg_max bounds the data segments (§5.2.4).
	iov, ok := appendIovecs(w.iov[:0], c.WritableBuffers(), 0, n, segMax)
	if !ok {
		return VIRTIO_BLK_S_IOERR
	}
	if err := rwFull(preadv, w.fd, iov, off); err != nil {
		w.hostError("read", off, n, err)
		return VIRTIO_BLK_S_IOERR
	}
	return VIRTIO_BLK_S_OK
}

// write serves VIRTIO_BLK_T_OUT: one pwritev(2) of the readable buffers
// after the header.
func (w *worker) write(c *virtio.DescChain, sector, n uint64) byte {
	off, ok := w.sectorRange(sector, n)
	if !ok {
		return VIRTIO_BLK_S_IOERR
	}
	iov, ok := appendIovecs(w.iov[:0], c.ReadableBuffers(), reqHeaderSize, n, segMax)
	if !ok {
		return VIRTIO_BLK_S_IOERR
	}
	if err := rwFull(pwritev, w.fd, iov, off); err != nil {
		w.hostError("write", off, n, err)
		return VIRTIO_BLK_S_IOERR
	}
	return w.stable()
}

// flush serves VIRTIO_BLK_T_FLUSH: writes completed before it was
// submitted become stable when it completes (§5.2.6.2). fdatasync(2)
// commits the image's data, and the metadata needed to read it back, to
// storage. A read-only device has nothing to flush.
func (w *worker) flush() byte {
	if w.d.ro {
		return VIRTIO_BLK_S_OK
	}
	if err := fdatasyncFn(w.fd); err != nil {
		w.hostError("flush", 0, 0, err)
		return VIRTIO_BLK_S_IOERR
	}
	return VIRTIO_BLK_S_OK
}

// stable makes a completed write stable at once when the driver has no
// FLUSH to ask for it (writethrough), and returns the status.
func (w *worker) stable() byte {
	if !w.writethrough {
		return VIRTIO_BLK_S_OK
	}
	return w.flush()
}

// discardWriteZeroes serves VIRTIO_BLK_T_DISCARD and
// VIRTIO_BLK_T_WRITE_ZEROES: the readable data after the header is an
// array of struct virtio_blk_discard_write_zeroes (§5.2.6). Every segment
// is copied and checked before any is carried out, so a request either
// fails as a whole or runs.
func (w *worker) discardWriteZeroes(c *virtio.DescChain, typ uint32, dataIn, dataOut uint64) byte {
	maxSeg, maxSectors := uint64(maxDiscardSeg), uint32(maxDiscardSectors)
	if typ == VIRTIO_BLK_T_WRITE_ZEROES {
		maxSeg, maxSectors = maxWriteZeroesSeg, maxWriteZeroesSectors
	}
	// §5.2.6.1: the data is a whole number of segments, no more than
	// max_discard_seg or max_write_zeroes_seg of them (§5.2.4).
	if dataIn != 0 || dataOut == 0 || dataOut%segSize != 0 || dataOut/segSize > maxSeg {
		return VIRTIO_BLK_S_IOERR
	}
	if w.d.ro {
		return VIRTIO_BLK_S_IOERR // §5.2.6.2, as for OUT
	}
	segs := w.segs[:dataOut]
	_, _ = c.ReadAt(segs, reqHeaderSize) // the bytes are there
	for s := segs; len(s) > 0; s = s[segSize:] {
		sector := binary.LittleEndian.Uint64(s[segSectorOff:])
		num := binary.LittleEndian.Uint32(s[segNumSectorsOff:])
		flags := binary.LittleEndian.Uint32(s[segFlagsOff:])
		// §5.2.6.2: "The device MUST set the status byte to
		// VIRTIO_BLK_S_UNSUPP for discard and write zeroes commands if
		// any unknown flag is set. Furthermore, the device MUST set the
		// status byte to VIRTIO_BLK_S_UNSUPP for discard commands if the
		// unmap flag is set."
		if flags&^VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0 ||
			typ == VIRTIO_BLK_T_DISCARD && flags != 0 {
			return VIRTIO_BLK_S_UNSUPP
		}
		// num_sectors is at most max_discard_sectors or
		// max_write_zeroes_sectors (§5.2.6.1).
		if num > maxSectors {
			return VIRTIO_BLK_S_IOERR
		}
		if _, ok := w.sectorRange(sector, uint64(num)*SectorSize); !ok {
			return VIRTIO_BLK_S_IOERR
		}
	}
	for s := segs; len(s) > 0; s = s[segSize:] {
		sector := binary.LittleEndian.Uint64(s[segSectorOff:])
		num := binary.LittleEndian.Uint32(s[segNumSectorsOff:])
		flags := binary.LittleEndian.Uint32(s[segFlagsOff:])
		if num == 0 {
			continue // nothing to do; fallocate(2) refuses a length of 0
		}
		off, n := int64(sector*SectorSize), int64(num)*SectorSize
		var err error
		switch {
		case typ == VIRTIO_BLK_T_DISCARD:
			// §5.2.6.2: "the device MAY deallocate the specified range
			// of sectors": a hint, so a file system without holes
			// (EOPNOTSUPP) simply keeps them.
			if err = punchHole(w.fd, off, n); err == unix.EOPNOTSUPP {
				err = nil
			}
		case flags&VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0:
			// §5.2.6.2: with unmap the device MAY deallocate, as for a
			// discard; either way the sectors MUST read as zeroes
			// afterwards, which a hole does.
			if err = punchHole(w.fd, off, n); err == unix.EOPNOTSUPP {
				err = zeroRange(w.fd, off, n)
			}
		default:
			// Without unmap the guest wants the space kept allocated.
			err = zeroRange(w.fd, off, n)
		}
		if err != nil {
			w.hostError("discard or write zeroes", off, uint64(n), err)
			return VIRTIO_BLK_S_IOERR
		}
	}
	return w.stable()
}

// hostError logs an I/O error of the host, rate limited: the guest only
// sees VIRTIO_BLK_S_IOERR, the host's operator needs the reason.
func (w *worker) hostError(op string, off int64, n uint64, err error) {
	if ok, suppressed := w.d.warn.allow(); ok {
		w.log.Warn("virtio-blk: I/O error", "op", op, "offset", off, "bytes", n, "err", err,
			"suppressed", suppressed)
	}
}

// setStatus stores the status in the last device-writable byte. The chain
// has at least one.
func setStatus(c *virtio.DescChain, status byte) {
	bufs := c.WritableBuffers()
	for i := len(bufs) - 1; i >= 0; i-- {
		if b := bufs[i]; len(b) > 0 {
			b[len(b)-1] = status
			return
		}
	}
}

// zeroWritable zeroes the first n device-writable bytes.
func zeroWritable(c *virtio.DescChain, n uint64) {
	for _, b := range c.WritableBuffers() {
		if n == 0 {
			return
		}
		k := min(uint64(len(b)), n)
		clear(b[:k])
		n -= k
	}
}

// warnInterval is the least time between two warnings of one device, so
// that a guest that keeps sending broken requests cannot flood the log.
const warnInterval = 10 * time.Second

// rateLimiter lets one event through per warnInterval and counts the
// others.
type rateLimiter struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (r *rateLimiter) allow() (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Before(r.next) {
		r.suppressed++
		return false, 0
	}
	suppressed, r.suppressed = r.suppressed, 0
	r.next = now.Add(warnInterval)
	return true, suppressed
}

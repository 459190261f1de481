// Package blk is the virtio block device (virtio 1.2 §5.2, device ID 2): a
// disk for the guest, backed by a raw image file (or a host block device)
// whose bytes are the disk's sectors one to one. The guest sees it as
// /dev/vda, /dev/vdb, … in the order the disks are given.
//
// # Requests
//
// The driver puts each request on a request queue as one descriptor chain
// (§5.2.6): a 16-byte device-readable header (type, sector), the data
// (device-readable for a write, device-writable for a read), and one
// device-writable status byte at the very end. The device answers reads
// (IN), writes (OUT), FLUSH, GET_ID, DISCARD and WRITE_ZEROES; anything else
// gets VIRTIO_BLK_S_UNSUPP. A malformed request (a short header, sectors
// past the end of the disk, a length that is not a whole number of sectors,
// too many segments) gets VIRTIO_BLK_S_IOERR: no guest input makes the
// device panic, break its queue, or read or write outside the image.
//
// Data moves straight between guest RAM and the file: the chain's buffers
// are the iovec of one preadv(2) or pwritev(2), so the kernel copies
// between the page cache and the guest's pages and govmm never touches the
// data. FLUSH is fdatasync(2); DISCARD punches a hole in the file and
// WRITE_ZEROES punches a hole or zeroes the range with fallocate(2).
//
// # Queues and concurrency
//
// Each request queue has one worker goroutine (virtio.StartWorker) that
// drains it (virtio.Drain): it takes every available request and serves them
// one after the other while the driver's notifications stay suppressed, so a
// batch of requests costs the guest one notification. Each completion is
// published as soon as it is served; the interrupt goes when the driver's
// used_event asks for it (at most one per batch without event indexes).
// With VIRTIO_BLK_F_MQ (Options.NumQueues > 1) Linux gives each vCPU its own
// queue, so requests from different vCPUs are served in parallel.
//
// Within one queue requests are served in order. Serving a batch with
// several goroutines was measured (bench_test.go) and does not pay for an
// image in the page cache, where a request is a system call and a memory
// copy and the hand-off costs as much; it does for reads that go to the
// disk (about 1.6 times the throughput with 32 reads in flight on the
// development machine's virtual disk). Requests of different vCPUs already
// run in parallel on their own queues; reads of uncached data on one queue
// are the case a later version could hand to helper goroutines, trying
// preadv2(RWF_NOWAIT) inline first so that cached reads keep the fast path.
//
// # The image
//
// Open checks the image before the guest starts: it must exist, be
// readable (and writable unless read-only), be a regular file or a block
// device, and hold at least one sector. The capacity is the size rounded
// down to whole 512-byte sectors; the bytes of a last partial sector are
// never read or written (Activate logs a warning about them once). A file
// that is not a whole number of sectors is not refused: images downloaded
// or cut by hand often are not, and QEMU and Firecracker accept them too.
// Open takes a flock(2) lock on the image, exclusive
// for a read-write disk and shared for a read-only one, so that two VMs
// cannot write one image at once and none reads an image another writes.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/virtio"
)

// Sizes and limits the device advertises in its configuration space
// (§5.2.4).
const (
	// QueueSize is the maximum size of each request queue, QEMU's default
	// for virtio-blk.
	QueueSize = 256
	// segMax (seg_max) is the most data segments in one request. A chain
	// without indirect descriptors needs two more descriptors, for the
	// header and the status, and must fit in the descriptor table. It is
	// also well below the most iovecs one preadv(2) takes (UIO_MAXIOV,
	// 1024).
	segMax = QueueSize - 2
	// blkSize (blk_size) is the logical block size: the sector size, so
	// that partition tables written for 512-byte sectors work.
	blkSize = SectorSize
	// hostPageSize is the unit in which the host's page cache holds the
	// image: a write of part of a page that is not cached makes the host
	// read the rest of it first.
	hostPageSize = 4096
	// physicalBlockExp (topology.physical_block_exp) is log2 of logical
	// blocks per physical block: one host page is 8 = 2^3 sectors, which
	// makes the guest align its file systems to pages.
	physicalBlockExp = 3
	// minIOSize (topology.min_io_size) is the suggested smallest I/O, in
	// logical blocks: one host page.
	minIOSize = hostPageSize / blkSize
	// maxDiscardSectors and maxWriteZeroesSectors bound one segment of a
	// discard or write zeroes request to 2 GiB, which bounds the time one
	// request holds its queue (write zeroes may have to write the zeros).
	maxDiscardSectors     = 1 << 22
	maxWriteZeroesSectors = 1 << 22
	// maxDiscardSeg is the most segments in one discard request: the
	// most Linux ever sends (MAX_DISCARD_SEGMENTS in virtio_blk.c).
	maxDiscardSeg = 256
	// maxWriteZeroesSeg: Linux sends one range per write zeroes request.
	maxWriteZeroesSeg = 1
	// discardSectorAlignment is the discard granularity, in sectors: one
	// host page, the unit in which a file system frees space.
	discardSectorAlignment = hostPageSize / SectorSize
	// MaxQueues is the most request queues a device can have: one per
	// vCPU of the largest machine govmm builds.
	MaxQueues = 64
)

// Errors of Open, wrapped with the path; test them with errors.Is. A
// missing or unreadable image gives an error that wraps the system's
// (fs.ErrNotExist, fs.ErrPermission).
var (
	// ErrLocked: another process (or another Device in this one) holds a
	// conflicting lock on the image.
	ErrLocked = errors.New("another process holds a lock on it (is another VM using it, or is it given twice?)")
	// ErrEmpty: the image is smaller than one 512-byte sector.
	ErrEmpty = errors.New("a disk image needs at least one 512-byte sector")
	// ErrNotImage: the path is neither a regular file nor a block device.
	ErrNotImage = errors.New("not a regular file or a block device")
	// ErrClosed: the device was used after Close.
	ErrClosed = errors.New("virtio-blk: device is closed")
)

// Options configure a block device.
type Options struct {
	// ReadOnly opens the image read-only and offers VIRTIO_BLK_F_RO:
	// the device fails every write with VIRTIO_BLK_S_IOERR.
	ReadOnly bool
	// Serial is the device ID string the guest reads with GET_ID (Linux
	// shows it as /sys/block/vda/serial and /dev/disk/by-id/virtio-*):
	// printable ASCII, at most 20 bytes. The default is the image's file
	// name, cut to 20 bytes.
	Serial string
	// NumQueues is the number of request queues, 1 to MaxQueues; 0 means
	// 1. With more than one the device offers VIRTIO_BLK_F_MQ; one per
	// vCPU lets every vCPU submit without contention.
	NumQueues int
}

// Device is a virtio block device backed by an image file. It implements
// virtio.Device. Open creates one; Close releases the image.
type Device struct {
	path      string
	ro        bool
	numQueues int
	capacity  uint64 // in sectors
	tail      int64  // bytes past the last whole sector, never used
	serial    [VIRTIO_BLK_ID_BYTES]byte
	config    [configSize]byte // immutable after Open
	warn      rateLimiter      // host-side problems, logged at most every few seconds

	mu       sync.Mutex
	fd       int // -1 once closed
	workers  virtio.WorkerGroup
	warnedSz bool // the partial last sector has been logged
}

// Open opens and locks the image at path and returns the device that
// serves it. The error names the path and says what is wrong: the image is
// missing, unreadable, not writable (without ReadOnly), a directory, empty,
// or locked by another process.
func Open(path string, opts Options) (*Device, error) {
	if path == "" {
		return nil, errors.New("disk: empty path")
	}
	nq := opts.NumQueues
	if nq == 0 {
		nq = 1
	}
	if nq < 1 || nq > MaxQueues {
		return nil, fmt.Errorf("disk %s: %d queues: must be between 1 and %d", path, opts.NumQueues, MaxQueues)
	}
	serial := opts.Serial
	if serial == "" {
		serial = defaultSerial(path)
	}
	if err := checkSerial(serial); err != nil {
		return nil, fmt.Errorf("disk %s: serial %q: %w", path, serial, err)
	}

	fd, size, err := openImage(path, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	d := &Device{
		path:      path,
		ro:        opts.ReadOnly,
		numQueues: nq,
		capacity:  uint64(size) / SectorSize,
		tail:      size % SectorSize,
		fd:        fd,
	}
	copy(d.serial[:], serial)
	d.fillConfig()
	return d, nil
}

// openImage opens path, checks that it is a disk image and locks it. It
// returns the descriptor and the image's size in bytes.
func openImage(path string, ro bool) (fd int, size int64, err error) {
	// O_NONBLOCK so that a FIFO cannot block the open (it is refused
	// below, and the flag cleared); O_NOCTTY so that a terminal does not
	// become govmm's controlling terminal on the way.
	flags := unix.O_RDWR
	if ro {
		flags = unix.O_RDONLY
	}
	for {
		fd, err = unix.Open(path, flags|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		if !ro && (err == unix.EACCES || err == unix.EROFS) {
			return -1, 0, fmt.Errorf("disk %s: cannot open for writing: %w (add ,ro for a read-only disk)", path, err)
		}
		if err == unix.EISDIR {
			return -1, 0, fmt.Errorf("disk %s: is a directory: %w", path, ErrNotImage)
		}
		return -1, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	size, err = imageSize(fd)
	if err == nil {
		err = setBlocking(fd)
	}
	if err == nil {
		err = lockImage(fd, ro)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("disk %s: %w", path, err)
	}
	return fd, size, nil
}

// imageSize returns the size of the open image: the file size of a
// regular file, the device size of a block device (the BLKGETSIZE64
// ioctl). Anything else is refused.
func imageSize(fd int) (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	var size int64
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		size = st.Size
	case unix.S_IFBLK:
		n, err := blockDeviceSize(fd)
		if err != nil {
			return 0, fmt.Errorf("size of block device: %w", err)
		}
		size = n
	case unix.S_IFDIR:
		return 0, fmt.Errorf("is a directory: %w", ErrNotImage)
	default:
		return 0, ErrNotImage
	}
	if size == 0 {
		return 0, fmt.Errorf("is empty: %w", ErrEmpty)
	}
	if size < SectorSize {
		return 0, fmt.Errorf("only %d bytes: %w", size, ErrEmpty)
	}
	return size, nil
}

// setBlocking clears the O_NONBLOCK Open used.
func setBlocking(fd int) error {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
	return err
}

// lockImage takes a flock(2) lock on the image without waiting: exclusive
// for read-write, shared for read-only, so that any number of read-only
// users can share an image but a writer excludes everyone else. The lock
// belongs to the open file description: it conflicts with a lock taken
// through another open(2) of the image, in this process too, and goes away
// when the descriptor is closed (also when govmm dies).
func lockImage(fd int, ro bool) error {
	how := unix.LOCK_EX
	if ro {
		how = unix.LOCK_SH
	}
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
			return ErrLocked
		default:
			return fmt.Errorf("lock: %w", err)
		}
	}
}

// defaultSerial derives the device ID from the image's file name: its
// printable ASCII characters, at most VIRTIO_BLK_ID_BYTES of them.
func defaultSerial(path string) string {
	var b []byte
	for _, c := range []byte(filepath.Base(path)) {
		if len(b) == VIRTIO_BLK_ID_BYTES {
			break
		}
		if isPrintableASCII(c) {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

func checkSerial(s string) error {
	if len(s) > VIRTIO_BLK_ID_BYTES {
		return fmt.Errorf("longer than %d bytes", VIRTIO_BLK_ID_BYTES)
	}
	for i := range len(s) {
		if !isPrintableASCII(s[i]) {
			return errors.New("not printable ASCII")
		}
	}
	return nil
}

func isPrintableASCII(c byte) bool { return c >= ' ' && c <= '~' }

// fillConfig lays out struct virtio_blk_config (§5.2.4). The fields of
// features the device does not offer stay zero.
func (d *Device) fillConfig() {
	c := d.config[:]
	le := binary.LittleEndian
	// capacity: "The capacity of the device (expressed in 512-byte
	// sectors) is always present."
	le.PutUint64(c[cfgCapacity:], d.capacity)
	le.PutUint32(c[cfgSegMax:], segMax)
	le.PutUint32(c[cfgBlkSize:], blkSize)
	c[cfgPhysicalBlockExp] = physicalBlockExp
	c[cfgAlignmentOffset] = 0 // sector 0 starts a physical block
	le.PutUint16(c[cfgMinIOSize:], minIOSize)
	le.PutUint32(c[cfgOptIOSize:], 0) // no optimal size to suggest
	// writeback is only meaningful with VIRTIO_BLK_F_CONFIG_WCE, which
	// the device does not offer: with VIRTIO_BLK_F_FLUSH the driver knows
	// that the device has a write cache (§5.2.5).
	le.PutUint16(c[cfgNumQueues:], uint16(d.numQueues))
	le.PutUint32(c[cfgMaxDiscardSectors:], maxDiscardSectors)
	le.PutUint32(c[cfgMaxDiscardSeg:], maxDiscardSeg)
	le.PutUint32(c[cfgDiscardSectorAlignment:], discardSectorAlignment)
	le.PutUint32(c[cfgMaxWriteZeroesSectors:], maxWriteZeroesSectors)
	le.PutUint32(c[cfgMaxWriteZeroesSeg:], maxWriteZeroesSeg)
	// write_zeroes_may_unmap: a write zeroes request with the UNMAP flag
	// punches a hole in the image, deallocating its blocks.
	c[cfgWriteZeroesMayUnmap] = 1
}

// Path returns the image's path as given to Open.
func (d *Device) Path() string { return d.path }

// ReadOnly reports whether the device is read-only.
func (d *Device) ReadOnly() bool { return d.ro }

// Capacity returns the size of the disk in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.capacity }

// DeviceID implements virtio.Device: VIRTIO_ID_BLOCK (§5.2.1).
func (d *Device) DeviceID() uint16 { return virtio.VIRTIO_ID_BLOCK }

// Features implements virtio.Device (§5.2.3).
func (d *Device) Features() virtio.Features {
	f := virtio.Features(0).
		With(VIRTIO_BLK_F_SEG_MAX).
		With(VIRTIO_BLK_F_BLK_SIZE).
		With(VIRTIO_BLK_F_FLUSH).
		With(VIRTIO_BLK_F_TOPOLOGY).
		With(VIRTIO_BLK_F_DISCARD).
		With(VIRTIO_BLK_F_WRITE_ZEROES)
	if d.ro {
		f = f.With(VIRTIO_BLK_F_RO)
	}
	if d.numQueues > 1 {
		f = f.With(VIRTIO_BLK_F_MQ)
	}
	return f
}

// QueueMaxSizes implements virtio.Device: the request queues (§5.2.2),
// requestq1 … requestqN.
func (d *Device) QueueMaxSizes() []uint16 {
	s := make([]uint16, d.numQueues)
	for i := range s {
		s[i] = QueueSize
	}
	return s
}

// ReadConfig implements virtio.Device: any offset and length; bytes past
// struct virtio_blk_config read as zero.
func (d *Device) ReadConfig(offset uint64, data []byte) {
	clear(data)
	if offset < configSize {
		copy(data, d.config[offset:])
	}
}

// WriteConfig implements virtio.Device. Only writeback is writable, and
// only with VIRTIO_BLK_F_CONFIG_WCE (§5.2.4), which the device does not
// offer: writes are ignored.
func (d *Device) WriteConfig(offset uint64, data []byte) {}

// Activate implements virtio.Device: it starts one worker per enabled
// request queue.
func (d *Device) Activate(a *virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return ErrClosed
	}
	d.workers.Stop() // a second Activate without Reset restarts cleanly
	log := a.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("disk", d.path)
	if d.tail != 0 && !d.warnedSz {
		d.warnedSz = true
		log.Warn("virtio-blk: image size is not a multiple of 512 bytes; the guest does not see the last partial sector",
			"bytes", d.tail)
	}
	fail := a.Fail
	if fail == nil {
		fail = func(err error) { log.Error("virtio-blk: queue failed", "err", err) }
	}
	for _, q := range a.Queues {
		if q == nil {
			continue // not enabled by the driver
		}
		w := newWorker(d, d.fd, q, a.Features, log)
		d.workers.Add(virtio.StartWorker(q, w.drain, fail))
	}
	return nil
}

// Reset implements virtio.Device: it stops the workers, waiting for the
// requests they are serving, after which the device is as before Activate.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.workers.Stop()
}

// Close stops the device (as Reset) and closes the image, which releases
// its lock. Later calls return nil; Activate after Close fails.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.workers.Stop()
	if d.fd < 0 {
		return nil
	}
	err := unix.Close(d.fd)
	d.fd = -1
	if err != nil {
		return fmt.Errorf("disk %s: close: %w", d.path, err)
	}
	return nil
}

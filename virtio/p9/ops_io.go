package p9

import (
	"encoding/binary"
	"math"
	"strings"

	"golang.org/x/sys/unix"
)

// The messages that move data: Tread, Twrite and Treaddir.

// read: size[4] Tread tag[2] fid[4] offset[8] count[4]
// → size[4] Rread tag[2] count[4] data[count]
//
// The data goes from the file into the reply's buffers by one preadv(2):
// on virtio those are guest RAM, so the kernel copies from the page cache
// straight to the guest. count is cut to what fits in msize and in the
// buffers.
func (c *call) read() error {
	id := c.d.u32()
	offset := c.d.u64()
	count := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	if offset > math.MaxInt64 {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	fd, _, err := f.openFile()
	if err != nil {
		return err
	}
	n := min(uint64(count), uint64(max(c.limit-ioHeaderSize, 0)))
	iov := iovecs(sliceBuffers(nil, c.out, ioHeaderSize, n))
	got := 0
	if len(iov) > 0 {
		for {
			got, err = preadv(fd, iov, int64(offset))
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	c.r.u32(uint32(got))
	c.inline = got
	return nil
}

// write: size[4] Twrite tag[2] fid[4] offset[8] count[4] data[count]
// → size[4] Rwrite tag[2] count[4]
//
// The data goes from the request's buffers to the file by pwritev(2), with
// no copy: on virtio, from guest RAM to the page cache. A short write
// (disk full after some bytes) is answered with the count written, as
// write(2) would.
func (c *call) write() error {
	id := c.d.u32()
	offset := c.d.u64()
	count := c.d.u32()
	if c.malformed() || count > c.writeLen || offset > math.MaxInt64 {
		return unix.EINVAL
	}
	if err := c.modifies(); err != nil {
		return err
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	fd, _, err := f.openFile()
	if err != nil {
		return err
	}
	iov := iovecs(sliceBuffers(nil, c.in, twriteFixedSize, uint64(count)))
	done := 0
	for len(iov) > 0 {
		n, err := pwritev(fd, iov, int64(offset)+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if done > 0 {
				break
			}
			return err
		}
		if n == 0 {
			break
		}
		done += n
		iov = advance(iov, n)
	}
	c.r.u32(uint32(done))
	return nil
}

// readdir: size[4] Treaddir tag[2] fid[4] offset[8] count[4]
// → size[4] Rreaddir tag[2] count[4] data[count]
//
// data is a run of entries, each qid[13] offset[8] type[1] name[s]: offset
// is where the next entry after this one starts (the d_off of
// getdents64(2), which lseek(2) on the directory understands), type is
// the d_type. The first Treaddir has offset 0; each next one passes the
// offset of the last entry it got. The entries are those of getdents64,
// "." and ".." included; ".." of the share's root gets the root's qid, not
// that of the directory above the share.
func (c *call) readdir() error {
	id := c.d.u32()
	offset := c.d.u64()
	count := c.d.u32()
	if c.malformed() {
		return unix.EINVAL
	}
	if offset > math.MaxInt64 {
		return unix.EINVAL
	}
	f, err := c.s.getFid(id)
	if err != nil {
		return err
	}
	defer f.release()
	fd, _, err := f.openFile()
	if err != nil {
		return err
	}
	if !f.isDir() {
		return unix.ENOTDIR
	}
	room := min(int(min(count, math.MaxInt32)), c.limit-ioHeaderSize)
	c.r.u32(0) // count, filled in below
	if f.opaque || room <= 0 {
		return nil // a pseudo file system's directory reads as empty
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := c.s.readEntries(f, fd, offset, &c.r, room); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(c.r.b[0:], uint32(len(c.r.b)-4))
	return nil
}

// readEntries encodes directory entries from fd, starting at offset, into
// e until max bytes are used. f.mu is held.
func (s *Server) readEntries(f *fid, fd int, offset uint64, e *encoder, max int) error {
	if offset != f.dirNext {
		if _, err := unix.Seek(fd, int64(offset), unix.SEEK_SET); err != nil {
			return err
		}
		f.dirNext = offset
	}
	buf := getBuf(direntBufSize)
	defer putBuf(buf)
	used := 0
	for {
		n, err := getdents(fd, *buf)
		if err != nil {
			if used > 0 {
				return nil // the guest gets what was read, and the error next time
			}
			return err
		}
		if n == 0 {
			return nil // the end of the directory
		}
		for pos := 0; pos < n; {
			d, ok := parseDirent((*buf)[pos:n])
			if !ok {
				return unix.EIO
			}
			need := direntFixedSize + len(d.name)
			if used+need > max {
				// No room: the next Treaddir starts at this entry.
				// getdents has read past it, so seek back.
				_, err := unix.Seek(fd, int64(f.dirNext), unix.SEEK_SET)
				return err
			}
			ino := d.ino
			if d.name == ".." && f.path == "" {
				ino = s.root.ino // not the directory above the share
			}
			e.qid(Qid{Type: direntQidType(d.typ), Path: s.qidPath(f.dev, ino)})
			e.u64(d.off)
			e.u8(d.typ)
			e.str(d.name)
			used += need
			f.dirNext = d.off
			pos += d.reclen
		}
	}
}

// direntBufSize is the buffer getdents64 reads into.
const direntBufSize = 32 << 10

// dirent is one struct linux_dirent64 (getdents64(2)):
//
//	u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[];
type dirent struct {
	ino    uint64
	off    uint64
	reclen int
	typ    uint8
	name   string
}

// direntNameOff is the offset of d_name in struct linux_dirent64.
const direntNameOff = 8 + 8 + 2 + 1

func parseDirent(b []byte) (dirent, bool) {
	if len(b) < direntNameOff {
		return dirent{}, false
	}
	d := dirent{
		ino:    binary.NativeEndian.Uint64(b[0:]),
		off:    binary.NativeEndian.Uint64(b[8:]),
		reclen: int(binary.NativeEndian.Uint16(b[16:])),
		typ:    b[18],
	}
	if d.reclen < direntNameOff || d.reclen > len(b) {
		return dirent{}, false
	}
	name := b[direntNameOff:d.reclen]
	if i := strings.IndexByte(string(name), 0); i >= 0 {
		name = name[:i]
	}
	d.name = string(name)
	return d, true
}

// direntQidType is the qid type for a d_type.
func direntQidType(t uint8) uint8 {
	switch t {
	case unix.DT_DIR:
		return P9_QTDIR
	case unix.DT_LNK:
		return P9_QTSYMLINK
	}
	return P9_QTFILE
}

func getdents(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

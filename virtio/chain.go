package virtio

import "io"

// MaxChainBytes is the most bytes a descriptor chain may describe, readable
// and writable buffers together. Drivers "MUST NOT add a descriptor chain
// longer than 2^32 bytes in total" (§2.7.5.2); the device takes one byte
// less, so that every length, the used element's le32 len included, fits in
// 32 bits. QueueConfig.MaxChainBytes can lower it for a queue.
const MaxChainBytes = 1<<32 - 1

// MaxChainDescriptors is the most descriptors a chain may have, the ones in
// an indirect table included. A driver "MUST NOT create a descriptor chain
// longer than the Queue Size of the device" (§2.7.5.3.1), and the device
// "MAY have a reasonable limit of descriptors it will allow in a chain"
// (§2.7.4.1). Linux does not hold indirect chains to the queue size, so the
// device allows up to the largest queue size whatever the queue's own.
const MaxChainDescriptors = MaxQueueSize

// DescChain is a descriptor chain taken from the available ring: the head
// index the device returns through the used ring, and the chain's buffers as
// slices of guest RAM, device-readable ones first, then device-writable ones
// (§2.7.4, §2.7.5).
//
// The slices alias guest memory, so the guest can change them at any time:
// copy what must not change under you (headers you validate) before using
// it, which Read does. A device must not write to the readable buffers
// (§2.7.5.1).
//
// Read and Write walk the readable and writable buffers as one stream each;
// the buffer lists serve devices that hand them to vectored I/O system calls
// (preadv, writev) without a copy. A DescChain is filled by Virtqueue.Pop and
// can be reused for the next Pop: its slices keep their capacity, so a
// steady-state device loop allocates nothing.
type DescChain struct {
	// Head is the index of the chain's first descriptor, the id that
	// Virtqueue.Push returns to the driver (§2.7.8).
	Head uint16

	readable    [][]byte
	writable    [][]byte
	readableLen uint32
	writableLen uint32
	descs       int  // descriptors walked, for MaxChainDescriptors
	sawWritable bool // a device-writable descriptor came already

	// Read cursor: buffer index and offset in it.
	rbuf, roff int
	// Write cursor, and the bytes Write has written.
	wbuf, woff int
	written    uint32
}

// reset empties c for a new chain, keeping the capacity of its lists.
func (c *DescChain) reset(head uint16) {
	clear(c.readable) // drop references to the previous chain's memory
	clear(c.writable)
	*c = DescChain{Head: head, readable: c.readable[:0], writable: c.writable[:0]}
}

// ReadableBuffers returns the chain's device-readable buffers in order. The
// device must not write to them.
func (c *DescChain) ReadableBuffers() [][]byte { return c.readable }

// WritableBuffers returns the chain's device-writable buffers in order.
func (c *DescChain) WritableBuffers() [][]byte { return c.writable }

// ReadableLen returns the total length of the readable buffers.
func (c *DescChain) ReadableLen() uint32 { return c.readableLen }

// WritableLen returns the total length of the writable buffers.
func (c *DescChain) WritableLen() uint32 { return c.writableLen }

// Read copies the next bytes of the readable buffers into p, as an
// io.Reader over their concatenation. It returns io.EOF once all have been
// read. Use io.ReadFull to read a fixed-size header that may span buffers.
func (c *DescChain) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && c.rbuf < len(c.readable) {
		b := c.readable[c.rbuf][c.roff:]
		k := copy(p[n:], b)
		n += k
		c.roff += k
		if c.roff == len(c.readable[c.rbuf]) {
			c.rbuf++
			c.roff = 0
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write copies p into the writable buffers after what earlier Writes put
// there, as an io.Writer over their concatenation. If p does not fit, Write
// fills the buffers and returns io.ErrShortWrite.
func (c *DescChain) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) && c.wbuf < len(c.writable) {
		b := c.writable[c.wbuf][c.woff:]
		k := copy(b, p[n:])
		n += k
		c.woff += k
		if c.woff == len(c.writable[c.wbuf]) {
			c.wbuf++
			c.woff = 0
		}
	}
	c.written += uint32(n) // at most writableLen, which fits in 32 bits
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// Written returns how many bytes Write has written: the length to return
// with Virtqueue.Push when the device filled the chain through Write.
func (c *DescChain) Written() uint32 { return c.written }

// ReadAt copies the readable bytes at offset off of their concatenation
// into p (io.ReaderAt). It does not move the Read cursor.
func (c *DescChain) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.EOF
	}
	n := 0
	for _, b := range c.readable {
		if n == len(p) {
			break
		}
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		n += copy(p[n:], b[off:])
		off = 0
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt copies p into the writable buffers at offset off of their
// concatenation (io.WriterAt), for a device that fills the writable part out
// of order, such as a status byte at its end. It neither moves the Write
// cursor nor counts in Written. If p does not fit it writes what does and
// returns io.ErrShortWrite.
func (c *DescChain) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrShortWrite
	}
	n := 0
	for _, b := range c.writable {
		if n == len(p) {
			break
		}
		if off >= int64(len(b)) {
			off -= int64(len(b))
			continue
		}
		n += copy(b[off:], p[n:])
		off = 0
	}
	if n < len(p) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// SliceBuffers appends to dst the bytes [off, off+n) of the concatenation of
// bufs, as sub-slices of bufs (no copying), and returns the extended slice.
// The range is cut short where bufs end. Devices use it to hand a part of a
// chain to a vectored system call: for a block read, all of the writable
// buffers but the status byte at their end.
func SliceBuffers(dst, bufs [][]byte, off, n uint64) [][]byte {
	for _, b := range bufs {
		if n == 0 {
			break
		}
		l := uint64(len(b))
		if off >= l {
			off -= l
			continue
		}
		end := l
		if n < l-off {
			end = off + n
		}
		dst = append(dst, b[off:end])
		n -= end - off
		off = 0
	}
	return dst
}

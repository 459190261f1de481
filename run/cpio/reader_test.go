package cpio

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// This file holds a strict newc reader, written from buffer-format.rst
// independently of the writer, so the tests check the bytes rather than
// trust the writer's own constants.

// entryT is one parsed entry.
type entryT struct {
	name                      string
	ino, mode, uid, gid       uint32
	nlink, mtime, size        uint32
	maj, min, rmaj, rmin, chk uint32
	data                      []byte
}

// readArchive parses a whole archive and checks, for every entry: the
// magic 070701, 13 fields of exactly 8 hex digits, the name's NUL, the
// 4-byte alignment of header, name padding and data, and that padding is
// NULs; then that the archive ends right after the "TRAILER!!!" entry. The
// trailer is returned last.
func readArchive(b []byte) ([]entryT, error) {
	var out []entryT
	off := 0
	for {
		if off%4 != 0 {
			return nil, fmt.Errorf("entry at %d is not 4-byte aligned", off)
		}
		if len(b)-off < 110 {
			return nil, fmt.Errorf("header at %d: only %d bytes left", off, len(b)-off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("header at %d: magic %q", off, h[:6])
		}
		var f [13]uint32
		for i := range f {
			s := string(h[6+8*i : 6+8*i+8])
			for _, c := range s {
				if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
					return nil, fmt.Errorf("header at %d: field %d %q is not 8 hex digits", off, i, s)
				}
			}
			v, err := strconv.ParseUint(s, 16, 32)
			if err != nil {
				return nil, fmt.Errorf("header at %d: field %d: %v", off, i, err)
			}
			f[i] = uint32(v)
		}
		e := entryT{ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5], size: f[6],
			maj: f[7], min: f[8], rmaj: f[9], rmin: f[10], chk: f[12]}
		namesize := int(f[11])
		off += 110
		if namesize < 1 || len(b)-off < namesize {
			return nil, fmt.Errorf("entry at %d: namesize %d", off-110, namesize)
		}
		if b[off+namesize-1] != 0 {
			return nil, fmt.Errorf("entry at %d: name not NUL-terminated", off-110)
		}
		e.name = string(b[off : off+namesize-1])
		if bytes.IndexByte([]byte(e.name), 0) >= 0 {
			return nil, fmt.Errorf("entry %q: NUL inside the name", e.name)
		}
		off += namesize
		var err error
		off, err = skipPad(b, off)
		if err != nil {
			return nil, fmt.Errorf("entry %q, after the name: %v", e.name, err)
		}
		if len(b)-off < int(e.size) {
			return nil, fmt.Errorf("entry %q: size %d, only %d bytes left", e.name, e.size, len(b)-off)
		}
		e.data = b[off : off+int(e.size)]
		off += int(e.size)
		off, err = skipPad(b, off)
		if err != nil {
			return nil, fmt.Errorf("entry %q, after the data: %v", e.name, err)
		}
		out = append(out, e)
		if e.name == "TRAILER!!!" {
			if off != len(b) {
				return nil, fmt.Errorf("%d bytes after the trailer", len(b)-off)
			}
			return out, nil
		}
	}
}

// skipPad checks that the padding after off (up to the next multiple of
// 4) is there and is NULs, and returns the aligned offset.
func skipPad(b []byte, off int) (int, error) {
	for off%4 != 0 {
		if off >= len(b) {
			return 0, fmt.Errorf("archive ends inside padding at %d", off)
		}
		if b[off] != 0 {
			return 0, fmt.Errorf("padding byte at %d is %#x, not NUL", off, b[off])
		}
		off++
	}
	return off, nil
}

package cpio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Format constants from buffer-format.rst ("cpio_header").
const (
	// magicNewc is c_magic of the "newc" format without checksums. Its
	// sibling 070702 ("crc") would make the kernel verify c_chksum; with
	// 070701 the field "must be zero".
	magicNewc = "070701"
	// fieldDigits: every numeric field is 8 ASCII hexadecimal digits.
	fieldDigits = 8
	// headerFields counts the numeric fields, c_ino to c_chksum.
	headerFields = 13
	// headerSize is the fixed part of an entry: 6 + 13*8 = 110 bytes.
	headerSize = len(magicNewc) + headerFields*fieldDigits
	// alignment: buffer-format.rst pads the name ("0-3 bytes") and the data
	// ("0-3 bytes") so that each part starts on a multiple of 4.
	alignment = 4
	// trailerName ends the archive (buffer-format.rst: "TRAILER!!!").
	trailerName = "TRAILER!!!"
)

// Limits the kernel imposes while unpacking (init/initramfs.c).
const (
	// pathMax is PATH_MAX (include/uapi/linux/limits.h). do_header() skips
	// an entry whose c_namesize, which counts the NUL, exceeds it, and
	// symlink(2) fails with ENAMETOOLONG on a target that, with its NUL,
	// does not fit.
	pathMax = 4096
	// maxFileSize is the largest c_filesize 8 hex digits hold.
	maxFileSize = 1<<32 - 1
	// minorBits and majorBits: the kernel builds the device number with
	// MKDEV(c_rmaj, c_rmin) (include/linux/kdev_t.h, MINORBITS 20), and
	// dev_t is 32 bits, which leaves 12 bits for the major number.
	minorBits = 20
	majorBits = 32 - minorBits
)

// File type bits of c_mode: S_IFMT and friends, from
// include/uapi/linux/stat.h (the same octal values as POSIX <sys/stat.h>).
const (
	modeIFDIR = 0o040000
	modeIFCHR = 0o020000
	modeIFREG = 0o100000
	modeIFLNK = 0o120000
	modeISUID = 0o4000
	modeISGID = 0o2000
	modeISVTX = 0o1000
	// unixSpecialBits are S_ISUID|S_ISGID|S_ISVTX where C puts them.
	unixSpecialBits = modeISUID | modeISGID | modeISVTX
	// modeSymlinkPerm: symlinks carry rwxrwxrwx, as lstat(2) shows them on
	// Linux; the kernel ignores a symlink's permission bits.
	modeSymlinkPerm = 0o777
)

// Link counts written into c_nlink. The kernel treats a regular file with
// c_nlink >= 2 as one name of a hard link and looks it up by
// (c_maj, c_min, c_ino) (init/initramfs.c, maybe_link()), so files must say
// 1. A directory has 2, its name in its parent and its own "." entry, what
// stat(2) reports for an empty directory.
const (
	nlinkFile = 1
	nlinkDir  = 2
	// nlinkTrailer: GNU cpio writes 1 for the trailer; the kernel ignores it.
	nlinkTrailer = 1
)

// ErrClosed is returned by every method of a Writer after Close.
var ErrClosed = errors.New("cpio: archive already closed")

// Writer writes a newc archive to an io.Writer, entry by entry.
//
// Writer does not buffer: each entry is one or a few Write calls. Wrap a
// file in a bufio.Writer (and flush it after Close) when that matters. A
// Writer is not safe for concurrent use.
//
// Errors about an argument (a bad name, a missing parent directory) leave
// the archive as it was and the Writer usable. An error from the underlying
// writer, or a FileFrom whose reader yields the wrong number of bytes,
// leaves a damaged archive: every later call returns that error.
type Writer struct {
	w io.Writer
	// off counts the bytes written, to compute the padding.
	off int64
	// nextIno is the inode number of the next entry.
	nextIno uint32
	// entries maps each name written to whether it is a directory.
	entries map[string]bool
	// err is the first error that damaged the archive.
	err    error
	closed bool
}

// NewWriter returns a Writer that writes an archive to w. Call Close to
// finish the archive; it does not close w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, nextIno: 1, entries: make(map[string]bool)}
}

// header holds the numeric fields of one entry in the order they are
// written. Fields Writer always writes as 0 (c_uid, c_gid, c_mtime, c_maj,
// c_min, c_chksum) are not listed.
type header struct {
	ino, mode, nlink, filesize, rmajor, rminor uint32
}

// Dir adds a directory. mode holds its permission bits (fs.ModeDir may be
// set, other type bits may not); its parent must already be in the archive.
func (w *Writer) Dir(name string, mode fs.FileMode) error {
	name, perm, err := w.prepare(name, mode, fs.ModeDir)
	if err != nil {
		return err
	}
	return w.entry(name, header{mode: modeIFDIR | perm, nlink: nlinkDir}, true, nil)
}

// MkdirAll adds name and each of its parents that the archive does not
// hold yet, outermost first, all with permission bits mode. Directories
// already written are left as they are; a parent written as something else
// is an error.
func (w *Writer) MkdirAll(name string, mode fs.FileMode) error {
	name, err := cleanName(name)
	if err != nil {
		return err
	}
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		dir := name[:i]
		isDir, exists := w.entries[dir]
		switch {
		case exists && isDir:
			continue
		case exists:
			return fmt.Errorf("cpio: cannot create directory %q: %q is already in the archive and is not a directory",
				name, dir)
		}
		if err := w.Dir(dir, mode); err != nil {
			return err
		}
	}
	return nil
}

// File adds a regular file holding data. mode holds its permission bits
// (including setuid, setgid and sticky); its parent must already be in the
// archive.
func (w *Writer) File(name string, mode fs.FileMode, data []byte) error {
	name, perm, err := w.prepare(name, mode, 0)
	if err != nil {
		return err
	}
	if int64(len(data)) > maxFileSize {
		return fmt.Errorf("cpio: file %q is %d bytes; a newc entry holds at most %d (c_filesize has 8 hex digits)",
			name, len(data), int64(maxFileSize))
	}
	h := header{mode: modeIFREG | perm, nlink: nlinkFile, filesize: uint32(len(data))}
	return w.entry(name, h, false, data)
}

// FileFrom adds a regular file of size bytes read from r, without holding
// it in memory. It is an error, and the archive is damaged, if r yields
// fewer or more than size bytes. mode is as for File.
func (w *Writer) FileFrom(name string, mode fs.FileMode, size int64, r io.Reader) error {
	name, perm, err := w.prepare(name, mode, 0)
	if err != nil {
		return err
	}
	if size < 0 || size > maxFileSize {
		return fmt.Errorf("cpio: file %q: size %d is outside [0, %d], what c_filesize (8 hex digits) holds",
			name, size, int64(maxFileSize))
	}
	h := header{mode: modeIFREG | perm, nlink: nlinkFile, filesize: uint32(size)}
	if err := w.entry(name, h, false, nil); err != nil {
		return err
	}
	// The header promised size bytes: copy exactly that many.
	n, err := io.Copy(writerFunc(w.write), io.LimitReader(r, size))
	if w.err != nil {
		return w.err // the underlying writer failed
	}
	if err != nil {
		return w.fail(fmt.Errorf("cpio: reading the data of %q after %d of %d bytes: %w", name, n, size, err))
	}
	if n < size {
		return w.fail(fmt.Errorf("cpio: the data of %q ended after %d bytes, but its size was given as %d",
			name, n, size))
	}
	var extra [1]byte
	if k, err := io.ReadFull(r, extra[:]); k > 0 {
		return w.fail(fmt.Errorf("cpio: the data of %q goes on past the %d bytes its size was given as",
			name, size))
	} else if err != io.EOF {
		return w.fail(fmt.Errorf("cpio: reading the data of %q past its %d bytes: %w", name, size, err))
	}
	return w.pad()
}

// Symlink adds a symbolic link named name that points at target. The
// target is stored as given (relative or absolute, in the guest's view);
// the link's parent must already be in the archive.
func (w *Writer) Symlink(name, target string) error {
	name, _, err := w.prepare(name, 0, 0)
	if err != nil {
		return err
	}
	switch {
	case target == "":
		return fmt.Errorf("cpio: symlink %q has an empty target", name)
	case strings.IndexByte(target, 0) >= 0:
		return fmt.Errorf("cpio: the target of symlink %q contains a NUL byte", name)
	case len(target) >= pathMax:
		return fmt.Errorf("cpio: the target of symlink %q is %d bytes; Linux allows at most %d (PATH_MAX with the NUL)",
			name, len(target), pathMax-1)
	}
	// buffer-format.rst: a symlink's "file data" is its target, without
	// a terminating NUL.
	h := header{mode: modeIFLNK | modeSymlinkPerm, nlink: nlinkFile, filesize: uint32(len(target))}
	return w.entry(name, h, false, []byte(target))
}

// CharDevice adds a character device node with device number major:minor,
// such as /dev/console (5:1), which the kernel opens in the initramfs as
// init's stdin, stdout and stderr (init/main.c, console_on_rootfs()).
// mode holds its permission bits (fs.ModeDevice and fs.ModeCharDevice may
// be set); its parent must already be in the archive.
func (w *Writer) CharDevice(name string, mode fs.FileMode, major, minor uint32) error {
	name, perm, err := w.prepare(name, mode, fs.ModeDevice|fs.ModeCharDevice)
	if err != nil {
		return err
	}
	if major >= 1<<majorBits || minor >= 1<<minorBits {
		return fmt.Errorf("cpio: device %q: %d:%d does not fit Linux's dev_t (major below %d, minor below %d)",
			name, major, minor, 1<<majorBits, 1<<minorBits)
	}
	h := header{mode: modeIFCHR | perm, nlink: nlinkFile, rmajor: major, rminor: minor}
	return w.entry(name, h, false, nil)
}

// Close writes the "TRAILER!!!" entry that ends the archive. It does not
// close the underlying writer.
//
// The archive ends right after the trailer, on a multiple of 4 bytes. The
// kernel needs no more: buffer-format.rst lets an initramfs be archives and
// runs of 4 NUL bytes in any order, so there is no 512-byte block to fill
// as cpio(1) does for tapes. Calling Close again returns nil, or the error
// that damaged the archive.
func (w *Writer) Close() error {
	if w.closed || w.err != nil {
		return w.err
	}
	if err := w.writeHeader(trailerName, header{nlink: nlinkTrailer}); err != nil {
		return err
	}
	w.closed = true
	return nil
}

// prepare checks that an entry named name with mode may be added now:
// the Writer is usable, name is valid and new, its parent is a directory
// in the archive, and mode has no bits besides the permissions and the
// type bits in allowedType. It returns the cleaned name and the
// permission bits for c_mode.
func (w *Writer) prepare(name string, mode fs.FileMode, allowedType fs.FileMode) (string, uint32, error) {
	if w.err != nil {
		return "", 0, w.err
	}
	if w.closed {
		return "", 0, ErrClosed
	}
	name, err := cleanName(name)
	if err != nil {
		return "", 0, err
	}
	if _, exists := w.entries[name]; exists {
		return "", 0, fmt.Errorf("cpio: %q is already in the archive", name)
	}
	if parent := path.Dir(name); parent != "." {
		isDir, exists := w.entries[parent]
		if !exists {
			return "", 0, fmt.Errorf("cpio: the directory %q of %q is not in the archive yet: "+
				"the kernel would skip the entry; write the directory first (Dir or MkdirAll)", parent, name)
		}
		if !isDir {
			return "", 0, fmt.Errorf("cpio: %q cannot hold %q: it is in the archive, but not as a directory",
				parent, name)
		}
	}
	const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
	if extra := mode &^ (permBits | allowedType); extra&unixSpecialBits != 0 {
		// A C-style 0o4755 sets bits that fs.FileMode does not use.
		return "", 0, fmt.Errorf("cpio: %q: mode %#o has the C bits %#o, which fs.FileMode does not use; "+
			"use fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky", name, uint32(mode), uint32(extra&unixSpecialBits))
	} else if extra != 0 {
		return "", 0, fmt.Errorf("cpio: %q: mode %v has bits (%v) this kind of entry cannot have; "+
			"pass permission bits such as 0o755", name, mode, extra)
	}
	perm := uint32(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		perm |= modeISUID
	}
	if mode&fs.ModeSetgid != 0 {
		perm |= modeISGID
	}
	if mode&fs.ModeSticky != 0 {
		perm |= modeISVTX
	}
	return name, perm, nil
}

// cleanName turns name into the form stored in the archive: relative
// (leading slashes dropped, as `cpio --no-absolute-filenames` would), no
// "." or empty components, and checks it is one the kernel will unpack.
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("cpio: empty entry name")
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("cpio: entry name %q contains a NUL byte, which would end it early", name)
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == ".." {
			return "", fmt.Errorf("cpio: entry name %q has a \"..\" component; "+
				"names must stay inside the archive's root", name)
		}
	}
	clean := strings.TrimLeft(path.Clean("/"+name), "/")
	switch {
	case clean == "":
		return "", fmt.Errorf("cpio: entry name %q names the root directory, which the kernel already has", name)
	case len(clean)+1 > pathMax:
		return "", fmt.Errorf("cpio: entry name %q... is %d bytes; the kernel skips names over %d bytes with the NUL (PATH_MAX)",
			clean[:32], len(clean), pathMax)
	}
	return clean, nil
}

// entry writes one entry: a fresh inode number, the header and name, and
// data if it is not nil, padded.
func (w *Writer) entry(name string, h header, isDir bool, data []byte) error {
	if w.nextIno == 0 {
		return fmt.Errorf("cpio: %q: the archive already holds 2^32-1 entries, all inode numbers are used", name)
	}
	h.ino = w.nextIno
	if err := w.writeHeader(name, h); err != nil {
		return err
	}
	w.nextIno++
	w.entries[name] = isDir
	if data == nil {
		return nil // no data, or FileFrom streams it
	}
	if err := w.write(data); err != nil {
		return err
	}
	return w.pad()
}

// writeHeader writes the header of an entry named name, its name and the
// padding after the name.
func (w *Writer) writeHeader(name string, h header) error {
	fields := [headerFields]uint32{
		h.ino,
		h.mode,
		0, // c_uid: root
		0, // c_gid: root
		h.nlink,
		0, // c_mtime: the epoch, so archives are reproducible
		h.filesize,
		0, // c_maj: the device the file came from; only used for hard links
		0, // c_min
		h.rmajor,
		h.rminor,
		uint32(len(name) + 1), // c_namesize counts the terminating NUL
		0,                     // c_chksum: must be 0 with magic 070701
	}
	buf := make([]byte, 0, headerSize+len(name)+1+alignment)
	buf = append(buf, magicNewc...)
	for _, f := range fields {
		buf = fmt.Appendf(buf, "%0*X", fieldDigits, f)
	}
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, padding(w.off+int64(len(buf)))...)
	return w.write(buf)
}

// pad writes the NULs that bring the archive to a multiple of alignment.
func (w *Writer) pad() error {
	if p := padding(w.off); len(p) > 0 {
		return w.write(p)
	}
	return nil
}

// zeros is the longest padding ever needed.
var zeros [alignment - 1]byte

// padding returns the NULs that bring an archive of n bytes to a multiple
// of alignment.
func padding(n int64) []byte {
	return zeros[:(alignment-n%alignment)%alignment]
}

// write writes p to the underlying writer and counts it. A failure is
// sticky: the archive is cut short.
func (w *Writer) write(p []byte) error {
	if w.err != nil {
		return w.err
	}
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return w.fail(fmt.Errorf("cpio: writing the archive: %w", err))
	}
	return nil
}

// fail records err as the error that damaged the archive and returns it.
func (w *Writer) fail(err error) error {
	w.err = err
	return err
}

// writerFunc adapts a write function to io.Writer for io.Copy.
type writerFunc func(p []byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

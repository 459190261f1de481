package p9

import (
	"encoding/binary"
	"math"
)

// The constants in this file keep the names that the 9P2000.L
// documentation and Linux's include/net/9p/9p.h give them (the message
// types as the protocol writes them, Tversion, Rlerror, …; the rest with
// their P9_ prefix), so that they can be looked up there as they are
// written here.
//
// The 9P2000.L message formats are documented in diod's protocol.md
// ("9P2000.L protocol", github.com/chaos/diod) and, authoritatively for
// what a guest sends, by the format strings in Linux's net/9p/client.c
// (p9_client_rpc(clnt, P9_TLOPEN, "dd", ...)) and the decoders in
// net/9p/protocol.c. The 9P2000 base messages (version, attach, walk,
// read, write, clunk, remove, flush) are in Plan 9's intro(5) and the
// individual manual pages (walk(5), read(5), ...).

// Message types (include/net/9p/9p.h, enum p9_msg_t). Every T-message
// (request) has an even number and its R-message (reply) the next one.
// 9P2000.L replaces the 9P2000 Rerror (a string) with Rlerror (a Linux
// errno) and adds the Linux-flavoured messages below 100.
const (
	Tlerror      = 6 // not used: there is no request for an error
	Rlerror      = 7
	Tstatfs      = 8
	Rstatfs      = 9
	Tlopen       = 12
	Rlopen       = 13
	Tlcreate     = 14
	Rlcreate     = 15
	Tsymlink     = 16
	Rsymlink     = 17
	Tmknod       = 18
	Rmknod       = 19
	Trename      = 20
	Rrename      = 21
	Treadlink    = 22
	Rreadlink    = 23
	Tgetattr     = 24
	Rgetattr     = 25
	Tsetattr     = 26
	Rsetattr     = 27
	Txattrwalk   = 30
	Rxattrwalk   = 31
	Txattrcreate = 32
	Rxattrcreate = 33
	Treaddir     = 40
	Rreaddir     = 41
	Tfsync       = 50
	Rfsync       = 51
	Tlock        = 52
	Rlock        = 53
	Tgetlock     = 54
	Rgetlock     = 55
	Tlink        = 70
	Rlink        = 71
	Tmkdir       = 72
	Rmkdir       = 73
	Trenameat    = 74
	Rrenameat    = 75
	Tunlinkat    = 76
	Runlinkat    = 77
	Tversion     = 100
	Rversion     = 101
	Tauth        = 102
	Rauth        = 103
	Tattach      = 104
	Rattach      = 105
	Terror       = 106 // 9P2000 only, and never sent
	Rerror       = 107 // 9P2000 and 9P2000.u; 9P2000.L uses Rlerror
	Tflush       = 108
	Rflush       = 109
	Twalk        = 110
	Rwalk        = 111
	Topen        = 112 // 9P2000; 9P2000.L uses Tlopen
	Ropen        = 113
	Tcreate      = 114 // 9P2000; 9P2000.L uses Tlcreate
	Rcreate      = 115
	Tread        = 116
	Rread        = 117
	Twrite       = 118
	Rwrite       = 119
	Tclunk       = 120
	Rclunk       = 121
	Tremove      = 122
	Rremove      = 123
	Tstat        = 124 // 9P2000; 9P2000.L uses Tgetattr
	Rstat        = 125
	Twstat       = 126 // 9P2000; 9P2000.L uses Tsetattr
	Rwstat       = 127
)

// Version is the protocol version the server speaks, the version string of
// Tversion and Rversion. A client that asks for anything else gets
// VersionUnknown (version(5): "If the server does not understand the
// client's version string, it should respond with an Rversion message (not
// Rerror) with the version string the 7 characters "unknown"").
const (
	Version        = "9P2000.L"
	VersionUnknown = "unknown"
)

// Special tag and fid values (version(5), attach(5)).
const (
	// NOTAG is the tag of Tversion, which comes before any other request.
	NOTAG = 0xFFFF
	// NOFID is "no fid": the afid of a Tattach without authentication.
	NOFID = 0xFFFFFFFF
)

// Sizes of the fixed parts of messages, in bytes. Every message starts
// with size[4] type[1] tag[2]; size counts the whole message, itself
// included (intro(5)).
const (
	// headerSize is size[4] type[1] tag[2]; Linux refuses a reply
	// shorter than this (net/9p/client.c, p9_parse_header: "r_size < 7").
	headerSize = 4 + 1 + 2
	// qidSize is a qid on the wire: type[1] version[4] path[8].
	qidSize = 1 + 4 + 8
	// ioHeaderSize is the header of Rread and Rreaddir: the message
	// header and count[4]. Linux puts exactly these 11 bytes in the
	// first device-writable buffer of a zero-copy read and the data in
	// the pages after it (net/9p/trans_virtio.c, p9_virtio_zc_request:
	// "For example TREAD have 11").
	ioHeaderSize = headerSize + 4
	// twriteFixedSize is the part of Twrite before its data: the header,
	// fid[4] offset[8] count[4].
	twriteFixedSize = headerSize + 4 + 8 + 4
	// rlerrorSize is a whole Rlerror: the header and ecode[4].
	rlerrorSize = headerSize + 4
	// direntFixedSize is a directory entry of Rreaddir without its name:
	// qid[13] offset[8] type[1] and the name's len[2].
	direntFixedSize = qidSize + 8 + 1 + 2
	// rgetattrBodySize is the body of Rgetattr: valid[8] qid[13]
	// mode[4] uid[4] gid[4] and fifteen 8-byte fields (nlink ...
	// data_version), as protocol.c decodes it ("qQdugqqqqqqqqqqqqqqq").
	rgetattrBodySize = 8 + qidSize + 4 + 4 + 4 + 15*8
)

// Limits on what a client may send.
const (
	// MaxWalkElements is MAXWELEM: Twalk carries at most 16 names
	// (walk(5): "To simplify the implementation of the servers, a
	// maximum of sixteen name elements ... may be packed in a single
	// message"); Linux splits longer walks (P9_MAXWELEM).
	MaxWalkElements = 16
	// MaxMsize is the largest msize the server agrees to: the largest
	// message either side may send. Linux's virtio transport is limited to
	// PAGE_SIZE × (VIRTQUEUE_NUM - 3) = 512000 bytes with 4 KiB pages
	// (net/9p/trans_virtio.c, .maxsize), so 1 MiB never limits it.
	MaxMsize = 1 << 20
	// MinMsize is the smallest msize the server accepts. Linux refuses
	// anything below 4096 too (net/9p/client.c: "msize should be at least
	// 4k").
	MinMsize = 4096
	// MaxFids is the most fids a session may hold at once. Each holds one
	// or two host file descriptors, so this also bounds the descriptors a
	// guest can make govmm open; the server allows fewer where
	// RLIMIT_NOFILE is low (fidBudget).
	MaxFids = 1 << 16
	// maxNameLen is the longest name accepted in a path component, the
	// NAME_MAX of Linux (include/uapi/linux/limits.h).
	maxNameLen = 255
	// maxSymlinkLen is the longest symlink target: PATH_MAX including the
	// terminating NUL that the wire form does not carry.
	maxSymlinkLen = 4096 - 1
)

// Qid types, the type byte of a qid (intro(5); P9_QT* in
// include/net/9p/9p.h): the high bits of a 9P file's mode.
const (
	P9_QTDIR     = 0x80
	P9_QTAPPEND  = 0x40
	P9_QTEXCL    = 0x20
	P9_QTMOUNT   = 0x10
	P9_QTAUTH    = 0x08
	P9_QTTMP     = 0x04
	P9_QTSYMLINK = 0x02
	P9_QTLINK    = 0x01
	P9_QTFILE    = 0x00
)

// Qid is the server's identity of a file (intro(5)): type tells what kind
// of file it is, version changes when the file does, and path is unique
// among the files of the server — the guest uses it as the inode number.
type Qid struct {
	Type    uint8
	Version uint32
	Path    uint64
}

// Tgetattr request_mask and Rgetattr valid bits (P9_STATS_* in
// include/net/9p/9p.h): which fields the client wants and which the
// server filled.
const (
	P9_STATS_MODE         = 0x00000001
	P9_STATS_NLINK        = 0x00000002
	P9_STATS_UID          = 0x00000004
	P9_STATS_GID          = 0x00000008
	P9_STATS_RDEV         = 0x00000010
	P9_STATS_ATIME        = 0x00000020
	P9_STATS_MTIME        = 0x00000040
	P9_STATS_CTIME        = 0x00000080
	P9_STATS_INO          = 0x00000100
	P9_STATS_SIZE         = 0x00000200
	P9_STATS_BLOCKS       = 0x00000400
	P9_STATS_BTIME        = 0x00000800
	P9_STATS_GEN          = 0x00001000
	P9_STATS_DATA_VERSION = 0x00002000
	// P9_STATS_BASIC is what stat(2) returns: everything up to BLOCKS.
	P9_STATS_BASIC = 0x000007ff
	P9_STATS_ALL   = 0x00003fff
)

// Tsetattr valid bits (P9_ATTR_* in include/net/9p/9p.h, the same values
// as Linux's ATTR_* in include/linux/fs.h, which v9fs passes through).
const (
	P9_ATTR_MODE = 1 << 0
	P9_ATTR_UID  = 1 << 1
	P9_ATTR_GID  = 1 << 2
	P9_ATTR_SIZE = 1 << 3
	// P9_ATTR_ATIME and P9_ATTR_MTIME ask to change a time: to the
	// current time unless the matching _SET bit is set too, in which
	// case to the time in the message.
	P9_ATTR_ATIME     = 1 << 4
	P9_ATTR_MTIME     = 1 << 5
	P9_ATTR_CTIME     = 1 << 6
	P9_ATTR_ATIME_SET = 1 << 7
	P9_ATTR_MTIME_SET = 1 << 8
)

// Tlopen and Tlcreate flags (P9_DOTL_* in include/net/9p/9p.h). They have
// the values of the x86 O_* flags, but are defined by the protocol, so the
// server translates them rather than passing them to open(2).
const (
	P9_DOTL_RDONLY    = 00000000
	P9_DOTL_WRONLY    = 00000001
	P9_DOTL_RDWR      = 00000002
	P9_DOTL_NOACCESS  = 00000003
	P9_DOTL_CREATE    = 00000100
	P9_DOTL_EXCL      = 00000200
	P9_DOTL_NOCTTY    = 00000400
	P9_DOTL_TRUNC     = 00001000
	P9_DOTL_APPEND    = 00002000
	P9_DOTL_NONBLOCK  = 00004000
	P9_DOTL_DSYNC     = 00010000
	P9_DOTL_FASYNC    = 00020000
	P9_DOTL_DIRECT    = 00040000
	P9_DOTL_LARGEFILE = 00100000
	P9_DOTL_DIRECTORY = 00200000
	P9_DOTL_NOFOLLOW  = 00400000
	P9_DOTL_NOATIME   = 01000000
	P9_DOTL_CLOEXEC   = 02000000
	P9_DOTL_SYNC      = 04000000

	// p9DotlAccMode masks the access mode (O_ACCMODE).
	p9DotlAccMode = 00000003
)

// P9_DOTL_AT_REMOVEDIR is the Tunlinkat flag that removes a directory
// (include/net/9p/9p.h; Linux's AT_REMOVEDIR).
const P9_DOTL_AT_REMOVEDIR = 0x200

// Tlock types and Rlock statuses (include/net/9p/9p.h).
const (
	P9_LOCK_TYPE_RDLCK = 0
	P9_LOCK_TYPE_WRLCK = 1
	P9_LOCK_TYPE_UNLCK = 2

	P9_LOCK_SUCCESS = 0
	P9_LOCK_BLOCKED = 1
	P9_LOCK_ERROR   = 2
	P9_LOCK_GRACE   = 3
)

// decoder reads the fields of a message body in order (intro(5): integers
// are little-endian; a string s is len[2] followed by len bytes of UTF-8,
// without a terminating NUL). A read past the end sets err and returns
// zero values from then on, so a handler decodes all its fields and checks
// once: a short message is never a panic.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) take(n int) []byte {
	if d.err || n > len(d.b) {
		d.err = true
		d.b = nil
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.LittleEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.LittleEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.LittleEndian.Uint64(p)
	}
	return 0
}

// str reads a string. Its length comes from the message, but the bytes
// must be in the message too, so a string is never longer than the message
// it came in.
func (d *decoder) str() string {
	n := d.u16()
	return string(d.take(int(n)))
}

// encoder appends the fields of a reply body to b. It never grows b past
// max bytes: a reply that would not fit sets overflow, and the server
// answers with an error instead.
type encoder struct {
	b        []byte
	max      int
	overflow bool
}

func (e *encoder) room(n int) bool {
	if e.overflow || len(e.b)+n > e.max {
		e.overflow = true
		return false
	}
	return true
}

func (e *encoder) u8(v uint8) {
	if e.room(1) {
		e.b = append(e.b, v)
	}
}

func (e *encoder) u16(v uint16) {
	if e.room(2) {
		e.b = binary.LittleEndian.AppendUint16(e.b, v)
	}
}

func (e *encoder) u32(v uint32) {
	if e.room(4) {
		e.b = binary.LittleEndian.AppendUint32(e.b, v)
	}
}

func (e *encoder) u64(v uint64) {
	if e.room(8) {
		e.b = binary.LittleEndian.AppendUint64(e.b, v)
	}
}

func (e *encoder) str(s string) {
	if len(s) > math.MaxUint16 {
		e.overflow = true
		return
	}
	if e.room(2 + len(s)) {
		e.b = binary.LittleEndian.AppendUint16(e.b, uint16(len(s)))
		e.b = append(e.b, s...)
	}
}

func (e *encoder) qid(q Qid) {
	if e.room(qidSize) {
		e.b = append(e.b, q.Type)
		e.b = binary.LittleEndian.AppendUint32(e.b, q.Version)
		e.b = binary.LittleEndian.AppendUint64(e.b, q.Path)
	}
}

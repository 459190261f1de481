package gdbstub

import (
	"errors"
	"strconv"
)

// The remote serial protocol's framing (RSP "Overview"): a packet is
//
//	$packet-data#checksum
//
// where checksum is the sum of the packet-data bytes modulo 256, as two
// lowercase hex digits. The receiver answers each packet with + (good) or
// - (bad checksum, please retransmit), until both sides agree to stop
// acknowledging (RSP "Packet Acknowledgment", QStartNoAckMode). Outside a
// packet, a lone 0x03 byte is the Ctrl-C interrupt (RSP "Interrupts").
const (
	packetStart    = '$'
	packetEnd      = '#'
	ackByte        = '+'
	nackByte       = '-'
	interruptByte  = 0x03
	checksumDigits = 2

	// Binary data (the X packet, qXfer replies) escapes the bytes that
	// would be taken for framing: '}' then the byte XOR 0x20 (RSP
	// "Overview", binary data). '$', '#', '}' and '*' must be escaped.
	escapeByte = '}'
	escapeXor  = 0x20

	// Run-length encoding of replies (RSP "Overview", run-length encoding): a
	// character followed by '*' and a count character means "repeat the
	// character n more times", the count character being n+29. Counts
	// must stay printable, below 127, and must avoid '#' (n = 6) and
	// '$' (n = 7), so runs are written in pieces of at most 97.
	rleByte     = '*'
	rleBias     = 29
	rleMinExtra = 3                   // ' ' (32) is the smallest printable count character
	rleMaxExtra = '~' - rleBias       // 97: '~' (126) is the largest
	rleAvoidLo  = packetEnd - rleBias // 6 would be sent as '#'
	rleAvoidHi  = packetStart - rleBias
)

// checksum is the modulo-256 sum of a packet's data (RSP "Overview").
func checksum(data []byte) byte {
	var s byte
	for _, c := range data {
		s += c
	}
	return s
}

// needsEscape reports whether c must be escaped inside binary data.
func needsEscape(c byte) bool {
	return c == packetStart || c == packetEnd || c == escapeByte || c == rleByte
}

// appendEscaped appends binary data with '$', '#', '}' and '*' escaped.
func appendEscaped(dst, data []byte) []byte {
	for _, c := range data {
		if needsEscape(c) {
			dst = append(dst, escapeByte, c^escapeXor)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

var errBadEscape = errors.New("escape character at the end of binary data")

// unescape decodes escaped binary data (the payload of an X packet) in
// place and returns the decoded bytes.
func unescape(data []byte) ([]byte, error) {
	out := data[:0]
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == escapeByte {
			i++
			if i == len(data) {
				return nil, errBadEscape
			}
			c = data[i] ^ escapeXor
		}
		out = append(out, c)
	}
	return out, nil
}

// appendRLE appends data run-length encoded. Escaped binary data may be
// encoded too: GDB expands runs before it unescapes (remote.c read_frame,
// then remote_unescape_input), and a raw '*' never occurs in escaped data.
func appendRLE(dst, data []byte) []byte {
	for i := 0; i < len(data); {
		c := data[i]
		run := 1
		for i+run < len(data) && data[i+run] == c {
			run++
		}
		i += run
		dst = append(dst, c)
		extra := run - 1
		for extra > 0 {
			n := min(extra, rleMaxExtra)
			if n == rleAvoidLo || n == rleAvoidHi {
				n = rleAvoidLo - 1
			}
			if n < rleMinExtra {
				// Too short to encode: send the characters as they are.
				for range extra {
					dst = append(dst, c)
				}
				break
			}
			dst = append(dst, rleByte, byte(n+rleBias))
			extra -= n
		}
	}
	return dst
}

var (
	errRLEAtStart  = errors.New("run-length marker with no character to repeat")
	errRLETruncate = errors.New("run-length marker without a count")
	errRLECount    = errors.New("run-length count out of range")
	errRLETooLong  = errors.New("run-length expansion too long")
)

// expandRLE decodes run-length encoding, refusing to grow beyond max
// bytes. GDB never run-length encodes what it sends, so the stub only uses
// this on replies (in tests, to read its own output like GDB does).
func expandRLE(data []byte, max int) ([]byte, error) {
	var out []byte
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c != rleByte {
			if len(out) == max {
				return nil, errRLETooLong
			}
			out = append(out, c)
			continue
		}
		if len(out) == 0 {
			return nil, errRLEAtStart
		}
		i++
		if i == len(data) {
			return nil, errRLETruncate
		}
		n := int(data[i]) - rleBias
		if n < rleMinExtra || n > rleMaxExtra {
			return nil, errRLECount
		}
		if len(out)+n > max {
			return nil, errRLETooLong
		}
		prev := out[len(out)-1]
		for range n {
			out = append(out, prev)
		}
	}
	return out, nil
}

// appendPacket appends a framed packet: '$', the data run-length encoded,
// '#' and the checksum of what was sent.
func appendPacket(dst, data []byte) []byte {
	dst = append(dst, packetStart)
	start := len(dst)
	dst = appendRLE(dst, data)
	sum := checksum(dst[start:])
	dst = append(dst, packetEnd)
	return appendHexByte(dst, sum)
}

const hexDigits = "0123456789abcdef"

func appendHexByte(dst []byte, b byte) []byte {
	return append(dst, hexDigits[b>>4], hexDigits[b&0xf])
}

// appendHex appends bytes as pairs of hex digits, the protocol's encoding
// of memory and register contents.
func appendHex(dst, data []byte) []byte {
	for _, b := range data {
		dst = appendHexByte(dst, b)
	}
	return dst
}

// unhexDigit returns the value of one hex digit (either case).
func unhexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

var (
	errOddHex = errors.New("odd number of hex digits")
	errBadHex = errors.New("not a hex digit")
	errNoHex  = errors.New("missing hex number")
	errBigHex = errors.New("hex number does not fit in 64 bits")
)

// decodeHex decodes pairs of hex digits.
func decodeHex(src []byte) ([]byte, error) {
	if len(src)%2 != 0 {
		return nil, errOddHex
	}
	out := make([]byte, len(src)/2)
	for i := range out {
		hi, ok1 := unhexDigit(src[2*i])
		lo, ok2 := unhexDigit(src[2*i+1])
		if !ok1 || !ok2 {
			return nil, errBadHex
		}
		out[i] = hi<<4 | lo
	}
	return out, nil
}

// parseHex parses a big-endian hex number (addresses, lengths, register
// numbers, thread ids), rejecting empty input and anything over 64 bits.
func parseHex(s []byte) (uint64, error) {
	if len(s) == 0 {
		return 0, errNoHex
	}
	var v uint64
	for _, c := range s {
		d, ok := unhexDigit(c)
		if !ok {
			return 0, errBadHex
		}
		if v>>60 != 0 {
			return 0, errBigHex
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}

// appendHexNum appends a number in hex without leading zeros.
func appendHexNum(dst []byte, v uint64) []byte {
	return strconv.AppendUint(dst, v, 16)
}

// decoderState is where the decoder is in the byte stream.
type decoderState int

const (
	stateIdle     decoderState = iota // between packets
	stateData                         // after '$', before '#'
	stateChecksum                     // after '#', reading the two digits
)

// inputKind classifies what the decoder found in the byte stream.
type inputKind int

const (
	inPacket      inputKind = iota // a packet with a good checksum
	inBadChecksum                  // a packet with a wrong or unreadable checksum
	inTooLong                      // a good packet longer than the stub accepts
	inInterrupt                    // Ctrl-C (0x03) between packets
	inAck                          // '+'
	inNack                         // '-'
	inEOF                          // the connection ended
)

// input is one thing the decoder found.
type input struct {
	kind inputKind
	data []byte // inPacket: the packet data, owned by the receiver
}

// decoder splits the byte stream from GDB into packets, acknowledgments
// and interrupts, one byte at a time so that it never needs more memory
// than one packet of max bytes, whatever the peer sends.
type decoder struct {
	max      int
	state    decoderState
	buf      []byte
	sum      byte // checksum of the data so far, including bytes beyond max
	overflow bool // the data went beyond max
	digits   [checksumDigits]byte
	ndigits  int
}

func newDecoder(max int) *decoder {
	return &decoder{max: max}
}

// feed consumes one byte and reports what it completed, if anything.
func (d *decoder) feed(c byte) (input, bool) {
	switch d.state {
	case stateIdle:
		switch c {
		case packetStart:
			d.startPacket()
		case interruptByte:
			return input{kind: inInterrupt}, true
		case ackByte:
			return input{kind: inAck}, true
		case nackByte:
			return input{kind: inNack}, true
		}
		// Anything else between packets is line noise and is dropped.
	case stateData:
		switch c {
		case packetEnd:
			d.state = stateChecksum
			d.ndigits = 0
		case packetStart:
			// A new packet started before this one ended: GDB's own
			// reader does the same and starts over (remote.c read_frame).
			d.startPacket()
		default:
			d.sum += c
			if len(d.buf) < d.max {
				d.buf = append(d.buf, c)
			} else {
				d.overflow = true
			}
		}
	case stateChecksum:
		d.digits[d.ndigits] = c
		d.ndigits++
		if d.ndigits < checksumDigits {
			return input{}, false
		}
		d.state = stateIdle
		hi, ok1 := unhexDigit(d.digits[0])
		lo, ok2 := unhexDigit(d.digits[1])
		if !ok1 || !ok2 || hi<<4|lo != d.sum {
			return input{kind: inBadChecksum}, true
		}
		if d.overflow {
			return input{kind: inTooLong}, true
		}
		data := make([]byte, len(d.buf))
		copy(data, d.buf)
		return input{kind: inPacket, data: data}, true
	}
	return input{}, false
}

func (d *decoder) startPacket() {
	d.state = stateData
	d.buf = d.buf[:0]
	d.sum = 0
	d.overflow = false
}

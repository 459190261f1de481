package gdbstub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChecksumMatchesTheManualsExamples(t *testing.T) {
	// Packets as GDB sends them, with the checksums it computes.
	for _, c := range []struct {
		data string
		sum  byte
	}{
		{"", 0x00},
		{"g", 0x67},
		{"?", 0x3f},
		{"OK", 0x9a},
		{"qSupported", 0x37},
		{"vMustReplyEmpty", 0x3a},
	} {
		assert.Equal(t, c.sum, checksum([]byte(c.data)), c.data)
	}
	assert.Equal(t, "$OK#9a", string(appendPacket(nil, []byte("OK"))))
}

func TestEscapeRoundTripsEveryByte(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	esc := appendEscaped(nil, all)
	for _, special := range []byte{'$', '#', '*'} {
		assert.NotContains(t, string(esc), string(special), "escaped data must not contain %q", special)
	}
	assert.Equal(t, len(all)+4, len(esc), "exactly $ # } * are escaped")
	got, err := unescape(bytes.Clone(esc))
	require.NoError(t, err)
	assert.Equal(t, all, got)

	// The manual's example: 0x7d is sent as 0x7d 0x5d.
	assert.Equal(t, []byte{0x7d, 0x5d}, appendEscaped(nil, []byte{0x7d}))
	_, err = unescape([]byte("ab}"))
	assert.Error(t, err, "escape at the end")
}

func TestRLEEncoding(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"000", "000"},                    // 2 extra: too short to encode
		{"0000", "0* "},                   // 3 extra: ' ' is 3+29
		{"00000", "0*!"},                  // 4 extra
		{"0000000", "0*\"0"},              // 6 extra would be '#': 5 then one more
		{"00000000", "0*\"00"},            // 7 extra would be '$': 5 then two more
		{"000000000", "0*%"},              // 8 extra: '%'
		{strings.Repeat("f", 99), "f*~f"}, // 97 extra is the most, then one
		{"a0000b", "a0* b"},
	} {
		got := string(appendRLE(nil, []byte(c.in)))
		assert.Equal(t, c.want, got, "encoding %q", c.in)
		assert.NotContains(t, got, "#")
		assert.NotContains(t, got, "$")
		back, err := expandRLE([]byte(got), 1000)
		require.NoError(t, err)
		assert.Equal(t, c.in, string(back), "round trip of %q", c.in)
	}
	// The manual's example: "0* " is "0000".
	got, err := expandRLE([]byte("0* "), 10)
	require.NoError(t, err)
	assert.Equal(t, "0000", string(got))
}

func TestRLEDecodingRejectsNonsense(t *testing.T) {
	for _, in := range []string{"*a", "a*", "a*\x01", "a*\x7f"} {
		_, err := expandRLE([]byte(in), 100)
		assert.Error(t, err, "%q", in)
	}
	_, err := expandRLE([]byte("a*~"), 50)
	assert.Error(t, err, "expansion beyond the limit")
}

func TestRLEOfEscapedDataDecodesLikeGDB(t *testing.T) {
	// GDB expands runs first and unescapes second; a run right after an
	// escape must survive that order.
	data := []byte("}]]]]]]$$$$$$***")
	wire := appendRLE(nil, appendEscaped(nil, data))
	exp, err := expandRLE(wire, 1000)
	require.NoError(t, err)
	got, err := unescape(exp)
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

func TestParseHex(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"1234", 0x1234, true},
		{"ffffffff81000000", 0xffffffff81000000, true},
		{"FFFFFFFFFFFFFFFF", ^uint64(0), true},
		{"0000000000000000000001", 1, true},
		{"10000000000000000", 0, false}, // 65 bits
		{"", 0, false},
		{"12g4", 0, false},
		{"-1", 0, false},
	} {
		v, err := parseHex([]byte(c.in))
		if c.ok {
			require.NoError(t, err, c.in)
			assert.Equal(t, c.want, v, c.in)
		} else {
			assert.Error(t, err, c.in)
		}
	}
	b, err := decodeHex([]byte("00ff7A"))
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 0xff, 0x7a}, b)
	_, err = decodeHex([]byte("abc"))
	assert.Error(t, err)
	_, err = decodeHex([]byte("zz"))
	assert.Error(t, err)
}

// decodeAll feeds a byte stream to a decoder and returns what it found.
func decodeAll(max int, stream string) []input {
	d := newDecoder(max)
	var out []input
	for i := 0; i < len(stream); i++ {
		if in, ok := d.feed(stream[i]); ok {
			out = append(out, in)
		}
	}
	return out
}

func TestDecoderFraming(t *testing.T) {
	pkt := func(s string) input { return input{kind: inPacket, data: []byte(s)} }
	for _, c := range []struct {
		name   string
		stream string
		want   []input
	}{
		{"one packet", "$g#67", []input{pkt("g")}},
		{"empty packet", "$#00", []input{pkt("")}},
		{"acks and interrupt", "+-\x03", []input{{kind: inAck}, {kind: inNack}, {kind: inInterrupt}}},
		{"noise between packets is dropped", "xyz\r\n$g#67", []input{pkt("g")}},
		{"uppercase checksum digits", "$OK#9A", []input{pkt("OK")}},
		{"wrong checksum", "$g#68", []input{{kind: inBadChecksum}}},
		{"checksum not hex", "$g#6x", []input{{kind: inBadChecksum}}},
		{"restart on a new $", "$ab$g#67", []input{pkt("g")}},
		{"0x03 inside a packet is data", "$X0,1:\x03#" + hex2(checksum([]byte("X0,1:\x03"))), []input{pkt("X0,1:\x03")}},
		{"truncated packet yields nothing", "$g#6", nil},
		{"too long, good checksum", "$" + strings.Repeat("a", 9) + "#" + hex2(checksum([]byte(strings.Repeat("a", 9)))), []input{{kind: inTooLong}}},
		{"too long, bad checksum", "$" + strings.Repeat("a", 9) + "#00", []input{{kind: inBadChecksum}}},
		{"packets back to back", "$g#67+$?#3f", []input{pkt("g"), {kind: inAck}, pkt("?")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, decodeAll(8, c.stream))
		})
	}
}

func TestDecoderNeverHoldsMoreThanOnePacket(t *testing.T) {
	d := newDecoder(16)
	d.feed('$')
	for range 1 << 20 {
		d.feed('a')
	}
	assert.LessOrEqual(t, cap(d.buf), 64, "the buffer must stay bounded")
}

func hex2(b byte) string { return string(appendHexByte(nil, b)) }

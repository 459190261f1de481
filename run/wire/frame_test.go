package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readAll reads frames until the stream ends and returns them with the
// error that ended it.
func readAll(r io.Reader) ([]Frame, error) {
	fr := NewReader(r)
	var frames []Frame
	for {
		f, err := fr.Next()
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// header encodes a frame header by hand, independently of Writer.
func header(t Type, n uint32) []byte {
	h := []byte{byte(t), 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(h[1:], n)
	return h
}

func TestRoundTrip(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	want := []Frame{
		{Type: Stdout, Payload: []byte("hello\n")},
		{Type: Stderr, Payload: binary},
		{Type: Stdout, Payload: []byte{}},
		{Type: Log, Payload: []byte("loaded 3 modules")},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Hello("6.1.0-56-amd64"))
	for _, f := range want {
		require.NoError(t, w.WriteFrame(f.Type, f.Payload))
	}
	require.NoError(t, w.Exit(ExitStatus{Status: 137, Signal: 9}))

	// Read it back one byte at a time: the device may split a write
	// anywhere, and Reader must not care.
	got, err := readAll(iotest.OneByteReader(bytes.NewReader(buf.Bytes())))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, got, len(want)+2)

	require.Equal(t, Hello, got[0].Type)
	h, err := DecodeHello(got[0].Payload)
	require.NoError(t, err)
	assert.Equal(t, "6.1.0-56-amd64", h.Kernel)
	assert.Equal(t, want, got[1:len(want)+1])
	last := got[len(got)-1]
	require.Equal(t, Exit, last.Type)
	s, err := DecodeExit(last.Payload)
	require.NoError(t, err)
	assert.Equal(t, ExitStatus{Status: 137, Signal: 9}, s)
}

func TestWireFormat(t *testing.T) {
	// The layout the package comment documents, byte for byte.
	var buf bytes.Buffer
	require.NoError(t, NewWriter(&buf).WriteFrame(Stderr, []byte("ab")))
	assert.Equal(t, []byte{3, 2, 0, 0, 0, 'a', 'b'}, buf.Bytes())
}

// recorder keeps each Write call separately.
type recorder struct{ writes [][]byte }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func TestWriterSplitsLongOutput(t *testing.T) {
	for _, typ := range []Type{Stdout, Stderr} {
		data := bytes.Repeat([]byte("0123456789abcdef"), (3*MaxPayload+100)/16)
		rec := &recorder{}
		require.NoError(t, NewWriter(rec).WriteFrame(typ, data))

		// One Write call per frame, each a whole frame.
		require.Len(t, rec.writes, 4)
		var joined []byte
		for i, wr := range rec.writes {
			frames, err := readAll(bytes.NewReader(wr))
			require.ErrorIs(t, err, io.EOF)
			require.Len(t, frames, 1, "write %d", i)
			assert.Equal(t, typ, frames[0].Type)
			if i < 3 {
				assert.Len(t, frames[0].Payload, MaxPayload)
			}
			joined = append(joined, frames[0].Payload...)
		}
		assert.Equal(t, data, joined)
	}
}

func TestWriterRejects(t *testing.T) {
	w := NewWriter(io.Discard)
	long := make([]byte, MaxPayload+1)
	for _, typ := range []Type{Hello, Log, Exit} {
		err := w.WriteFrame(typ, long)
		require.Error(t, err)
		assert.Contains(t, err.Error(), typ.String())
		assert.Contains(t, err.Error(), "MaxPayload")
	}
	require.NoError(t, w.WriteFrame(Log, long[:MaxPayload]))
	for _, typ := range []Type{0, Exit + 1, 255} {
		err := w.WriteFrame(typ, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "unknown type")
	}
}

func TestWriterCutsLongText(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	require.NoError(t, w.Logf("%s", strings.Repeat("x", MaxPayload+10)))
	require.NoError(t, w.Exit(ExitStatus{Status: StatusInitError, InitError: strings.Repeat("e", MaxInitError+10)}))
	frames, err := readAll(&buf)
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, frames, 2)
	assert.Len(t, frames[0].Payload, MaxPayload)
	s, err := DecodeExit(frames[1].Payload)
	require.NoError(t, err)
	assert.Len(t, s.InitError, MaxInitError)
}

// errWriter fails every write.
type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("port gone") }

func TestWriterReportsErrors(t *testing.T) {
	err := NewWriter(errWriter{}).WriteFrame(Stdout, []byte("x"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Stdout")
	assert.Contains(t, err.Error(), "port gone")
}

// chunkWriter writes each call to the buffer in small pieces, as an
// os.File might on a port that takes 32 KiB per write(2); it checks the
// pieces of one call are never interleaved with another's by counting
// calls in flight.
type chunkWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	inFlight int
	overlap  bool
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	total := len(p)
	c.mu.Lock()
	c.inFlight++
	if c.inFlight > 1 {
		c.overlap = true
	}
	c.mu.Unlock()
	for len(p) > 0 {
		n := min(len(p), 7)
		c.mu.Lock()
		c.buf.Write(p[:n])
		c.mu.Unlock()
		p = p[n:]
	}
	c.mu.Lock()
	c.inFlight--
	c.mu.Unlock()
	return total, nil
}

func TestWriterConcurrent(t *testing.T) {
	const writers, perWriter = 8, 200
	cw := &chunkWriter{}
	w := NewWriter(cw)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			typ := []Type{Stdout, Stderr, Log}[g%3]
			for i := range perWriter {
				// Payloads of varying length, naming writer and
				// sequence number.
				p := fmt.Sprintf("%d:%d:%s", g, i, strings.Repeat("z", i%50))
				if err := w.WriteFrame(typ, []byte(p)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.False(t, cw.overlap, "two frames were written at the same time")

	frames, err := readAll(&cw.buf)
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, frames, writers*perWriter)
	next := make([]int, writers)
	for _, f := range frames {
		var g, i int
		_, err := fmt.Sscanf(string(f.Payload), "%d:%d:", &g, &i)
		require.NoError(t, err, "payload %q", f.Payload)
		assert.Equal(t, []Type{Stdout, Stderr, Log}[g%3], f.Type)
		assert.Equal(t, next[g], i, "writer %d's frames out of order", g)
		next[g]++
		assert.Equal(t, fmt.Sprintf("%d:%d:%s", g, i, strings.Repeat("z", i%50)), string(f.Payload))
	}
}

func TestReaderEOF(t *testing.T) {
	whole := append(header(Stdout, 3), "abc"...)
	for name, tc := range map[string]struct {
		in   []byte
		want error
		n    int // frames read before the error
	}{
		"empty":              {nil, io.EOF, 0},
		"at boundary":        {whole, io.EOF, 1},
		"half header":        {whole[:3], io.ErrUnexpectedEOF, 0},
		"header only":        {whole[:HeaderSize], io.ErrUnexpectedEOF, 0},
		"half payload":       {whole[:HeaderSize+1], io.ErrUnexpectedEOF, 0},
		"second frame short": {append(bytes.Clone(whole), whole[:2]...), io.ErrUnexpectedEOF, 1},
		"empty payload":      {header(Log, 0), io.EOF, 1},
	} {
		t.Run(name, func(t *testing.T) {
			frames, err := readAll(iotest.HalfReader(bytes.NewReader(tc.in)))
			assert.Equal(t, tc.want, err) // the bare sentinel, as documented
			assert.Len(t, frames, tc.n)
		})
	}
}

func TestReaderMalformed(t *testing.T) {
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"type 0":          {header(0, 1), "unknown frame type 0"},
		"type 6":          {header(Exit+1, 1), "unknown frame type 6"},
		"type 255":        {header(255, 0), "unknown frame type 255"},
		"one byte over":   {header(Stdout, MaxPayload+1), "declares 65537 bytes"},
		"4 GiB":           {header(Stderr, 0xFFFFFFFF), "declares 4294967295 bytes"},
		"after good one":  {append(append(header(Log, 1), 'x'), header(9, 0)...), "unknown frame type 9"},
		"zeros (no type)": {make([]byte, 64), "unknown frame type 0"},
	} {
		t.Run(name, func(t *testing.T) {
			// The stream goes on with valid-looking bytes: the
			// reader must not try to read the declared payload.
			in := append(bytes.Clone(tc.in), bytes.Repeat([]byte{1}, 16)...)
			r := NewReader(bytes.NewReader(in))
			var err error
			for range 3 {
				if _, err = r.Next(); err != nil {
					break
				}
			}
			require.ErrorIs(t, err, ErrMalformed)
			assert.Contains(t, err.Error(), tc.want)
			// Sticky: the stream is out of step.
			_, again := r.Next()
			assert.Equal(t, err, again)
		})
	}
}

func TestReaderRejectsBeforeAllocating(t *testing.T) {
	in := header(Stdout, 0xFFFFFFFF)
	next := func() { _, _ = NewReader(bytes.NewReader(in)).Next() }
	next() // warm up: first-use allocations are not the Reader's

	// Bytes, not a count of allocations: how many small objects the
	// Reader, the bytes.Reader and the error take depends on the Go
	// release and the race detector, and MemStats counts every
	// goroutine's allocations, not only this one's. What must hold is
	// that no payload buffer is made, not 4 GiB and not even one of
	// MaxPayload: the average over many runs stays far below it.
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		next()
	}
	runtime.ReadMemStats(&after)
	perRun := (after.TotalAlloc - before.TotalAlloc) / runs
	assert.Less(t, perRun, uint64(MaxPayload/16), "bytes allocated per rejected header")
}

func TestReaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := NewReader(iotest.ErrReader(boom)).Next()
	assert.ErrorIs(t, err, boom)

	in := io.MultiReader(bytes.NewReader(header(Stdout, 4)), iotest.ErrReader(boom))
	_, err = NewReader(in).Next()
	assert.ErrorIs(t, err, boom)
}

func TestTypeString(t *testing.T) {
	assert.Equal(t, "Hello", Hello.String())
	assert.Equal(t, "Exit", Exit.String())
	assert.Equal(t, "Type(42)", Type(42).String())
}

// FuzzReader feeds arbitrary bytes to Reader: it must never panic, never
// return an invalid frame, and every frame it returns must re-encode to
// exactly the bytes it was read from.
func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	_ = w.Hello("6.1.0")
	_ = w.WriteFrame(Stdout, []byte("out"))
	_ = w.WriteFrame(Stderr, nil)
	_ = w.Exit(ExitStatus{Status: 1})
	f.Add(buf.Bytes())
	f.Add(header(Stdout, MaxPayload+1))
	f.Add(header(0, 0))
	f.Add([]byte{2, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		var again bytes.Buffer
		rw := NewWriter(&again)
		for {
			fr, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if !fr.Type.Valid() || len(fr.Payload) > MaxPayload {
				t.Fatalf("invalid frame %v of %d bytes", fr.Type, len(fr.Payload))
			}
			if err := rw.WriteFrame(fr.Type, fr.Payload); err != nil {
				t.Fatal(err)
			}
			// The decoders must not panic on any payload.
			switch fr.Type {
			case Exit:
				_, _ = DecodeExit(fr.Payload)
			case Hello:
				_, _ = DecodeHello(fr.Payload)
			}
		}
		if !bytes.HasPrefix(in, again.Bytes()) {
			t.Fatalf("frames re-encode to %x, not a prefix of the input %x", again.Bytes(), in)
		}
	})
}

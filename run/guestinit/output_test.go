package guestinit

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/run/wire"
)

// frames reads every frame from b; the stream must end at a frame
// boundary.
func frames(t *testing.T, b []byte) []wire.Frame {
	t.Helper()
	r := wire.NewReader(bytes.NewReader(b))
	var fs []wire.Frame
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			return fs
		}
		require.NoError(t, err)
		fs = append(fs, f)
	}
}

// payloads joins the payloads of the frames of type typ.
func payloads(fs []wire.Frame, typ wire.Type) string {
	var b bytes.Buffer
	for _, f := range fs {
		if f.Type == typ {
			b.Write(f.Payload)
		}
	}
	return b.String()
}

func TestCopyFrames(t *testing.T) {
	data := bytes.Repeat([]byte("binary\x00\xff"), 20000) // 160 KB
	var buf bytes.Buffer
	// HalfReader: reads come back short, as they do from a pipe.
	require.NoError(t, copyFrames(wire.NewWriter(&buf), wire.Stderr, iotest.HalfReader(bytes.NewReader(data))))
	fs := frames(t, buf.Bytes())
	require.NotEmpty(t, fs)
	for _, f := range fs {
		assert.Equal(t, wire.Stderr, f.Type)
		assert.LessOrEqual(t, len(f.Payload), copyBufSize)
		assert.NotEmpty(t, f.Payload, "no empty frames")
	}
	assert.Equal(t, string(data), payloads(fs, wire.Stderr))
}

func TestCopyFramesReportsErrors(t *testing.T) {
	boom := errors.New("boom")
	err := copyFrames(wire.NewWriter(io.Discard), wire.Stdout, iotest.ErrReader(boom))
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "reading the command's Stdout")
}

func TestWaitOutputAtEOF(t *testing.T) {
	var buf bytes.Buffer // wire.Writer serialises the copiers' writes
	w := wire.NewWriter(&buf)
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	errR, errW, err := os.Pipe()
	require.NoError(t, err)
	out := startCopier(w, wire.Stdout, outR)
	errc := startCopier(w, wire.Stderr, errR)

	_, _ = outW.WriteString("one ")
	_, _ = errW.WriteString("warning\n")
	_, _ = outW.WriteString("two\n")
	require.NoError(t, outW.Close())
	require.NoError(t, errW.Close())

	start := time.Now()
	cut, errs := waitOutput(10*time.Second, out, errc)
	assert.Less(t, time.Since(start), 5*time.Second, "did not wait for the grace period")
	assert.Empty(t, cut)
	assert.Empty(t, errs)
	fs := frames(t, buf.Bytes())
	assert.Equal(t, "one two\n", payloads(fs, wire.Stdout))
	assert.Equal(t, "warning\n", payloads(fs, wire.Stderr))
}

func TestWaitOutputCutsOffHeldPipe(t *testing.T) {
	var buf bytes.Buffer // wire.Writer serialises the copiers' writes
	w := wire.NewWriter(&buf)
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	errR, errW, err := os.Pipe()
	require.NoError(t, err)
	defer outW.Close()
	out := startCopier(w, wire.Stdout, outR)
	errc := startCopier(w, wire.Stderr, errR)

	// stdout stays open, as if a background process held it; stderr
	// is closed.
	_, _ = outW.WriteString("before\n")
	require.NoError(t, errW.Close())

	const grace = 100 * time.Millisecond
	start := time.Now()
	cut, errs := waitOutput(grace, out, errc)
	assert.GreaterOrEqual(t, time.Since(start), grace)
	assert.Equal(t, []wire.Type{wire.Stdout}, cut)
	assert.Empty(t, errs)

	// Nothing reaches w after waitOutput returns: a late write finds
	// the pipe's read end closed.
	n := buf.Len()
	_, err = outW.WriteString("after\n")
	assert.Error(t, err)
	time.Sleep(10 * time.Millisecond)
	assert.Equal(t, n, buf.Len())
	assert.Equal(t, "before\n", payloads(frames(t, buf.Bytes()), wire.Stdout))
}

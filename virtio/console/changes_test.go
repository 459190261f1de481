package console

import (
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestChanges(t *testing.T) {
	for _, tc := range []struct {
		adds []bool
		want []bool
	}{
		{nil, nil},
		{[]bool{false}, nil}, // closed already
		{[]bool{true}, []bool{true}},
		{[]bool{true, true}, []bool{true}},
		{[]bool{true, false}, []bool{true, false}},
		{[]bool{true, false, true}, []bool{true}},
		{[]bool{true, false, true, false}, []bool{true, false}},
		{[]bool{true, false, true, false, true, false, true}, []bool{true}},
	} {
		var c changes
		for _, s := range tc.adds {
			c.add(s)
		}
		assert.Equal(t, tc.want, c.take(), "%v", tc.adds)
		assert.Empty(t, c.take(), "taken")
	}
	// After a take, changes are relative to the last state.
	var c changes
	c.add(true)
	c.take()
	c.add(true)
	assert.Empty(t, c.take())
	c.add(false)
	assert.Equal(t, []bool{false}, c.take())
}

// TestOutPipeReports checks the writer's queue: data and reports in
// order, repeated states dropped, long runs of reports cut to two.
func TestOutPipeReports(t *testing.T) {
	var mu sync.Mutex
	var got []any
	block, started := make(chan struct{}), make(chan struct{})
	w := writerFunc(func(p []byte) (int, error) {
		close(started)
		<-block
		mu.Lock()
		got = append(got, string(p))
		mu.Unlock()
		return len(p), nil
	})
	p := newOutPipe(w, func(open bool) {
		mu.Lock()
		got = append(got, open)
		mu.Unlock()
	})
	p.pushEvent(false) // the state already: dropped
	p.pushEvent(true)
	errc := make(chan error, 1)
	go func() { errc <- p.write([]byte("a"), nil) }()
	<-started // the writer has reported true and now writes "a"
	for _, s := range []bool{false, true, false, true, true} {
		p.pushEvent(s)
	}
	close(block)
	assert.NoError(t, <-errc)
	p.close()
	<-p.done
	assert.Equal(t, []any{true, "a", false, true}, got)
	assert.ErrorIs(t, p.write([]byte("late"), nil), errClosed)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)

package devices

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// regDevice is a device with plain byte registers that records accesses.
type regDevice struct {
	mu       sync.Mutex
	regs     []byte
	accesses []access
}

type access struct {
	write  bool
	offset uint16
	n      int
}

func newRegDevice(size int) *regDevice { return &regDevice{regs: make([]byte, size)} }

func (d *regDevice) ReadPort(offset uint16, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accesses = append(d.accesses, access{false, offset, len(data)})
	readBytes(uint16(len(d.regs)), offset, data, func(off uint16) byte { return d.regs[off] })
}

func (d *regDevice) WritePort(offset uint16, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accesses = append(d.accesses, access{true, offset, len(data)})
	writeBytes(uint16(len(d.regs)), offset, data, func(off uint16, v byte) { d.regs[off] = v })
}

func TestBusRegisterRejectsBadRanges(t *testing.T) {
	b := NewPortBus()
	require.NoError(t, b.Register("com1", 0x3F8, 8, newRegDevice(8)))

	err := b.Register("clash", 0x3FF, 2, newRegDevice(2))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"clash"`)
	assert.Contains(t, err.Error(), `"com1"`)

	err = b.Register("below", 0x3F0, 9, newRegDevice(9))
	require.ErrorContains(t, err, `"com1"`)
	err = b.Register("inside", 0x3FA, 1, newRegDevice(1))
	require.ErrorContains(t, err, `"com1"`)
	require.ErrorContains(t, b.Register("zero", 0x100, 0, newRegDevice(1)), "zero size")
	require.ErrorContains(t, b.Register("wrap", 0xFFFF, 2, newRegDevice(2)), "past the last port")
	require.ErrorContains(t, b.Register("nil", 0x100, 1, nil), "nil device")

	// Adjacent ranges and the very last port are fine.
	require.NoError(t, b.Register("after", 0x400, 1, newRegDevice(1)))
	require.NoError(t, b.Register("before", 0x3F7, 1, newRegDevice(1)))
	require.NoError(t, b.Register("last", 0xFFFF, 1, newRegDevice(1)))
	require.NoError(t, b.Register("first", 0, 1, newRegDevice(1)))
}

func TestBusDispatch(t *testing.T) {
	b := NewPortBus()
	com := newRegDevice(8)
	pit := newRegDevice(4)
	last := newRegDevice(1)
	require.NoError(t, b.Register("com1", 0x3F8, 8, com))
	require.NoError(t, b.Register("pit", 0x40, 4, pit))
	require.NoError(t, b.Register("last", 0xFFFF, 1, last))

	b.Write(0x3FB, []byte{0x83})
	assert.Equal(t, byte(0x83), com.regs[3])
	b.Write(0x42, []byte{1, 2})
	assert.Equal(t, []byte{0, 0, 1, 2}, pit.regs)

	data := make([]byte, 4)
	b.Read(0x3FE, data)
	assert.Equal(t, []byte{0, 0, 0xFF, 0xFF}, data, "an access is routed by its first port")
	assert.Equal(t, access{false, 6, 4}, com.accesses[len(com.accesses)-1])

	b.Read(0xFFFF, data)
	assert.Equal(t, []byte{0, 0xFF, 0xFF, 0xFF}, data)

	// Unclaimed ports float high and swallow writes.
	for _, port := range []uint16{0, 0x3F, 0x44, 0x3F7, 0x400, 0xFFFE} {
		data := []byte{1, 2, 3, 4}
		b.Read(port, data)
		assert.Equal(t, []byte{0xFF, 0xFF, 0xFF, 0xFF}, data, "port %#x", port)
		b.Write(port, []byte{0})
	}

	for port, want := range map[uint16]string{0x40: "pit", 0x43: "pit", 0x3F8: "com1", 0x3FF: "com1", 0xFFFF: "last"} {
		name, ok := b.Lookup(port)
		assert.True(t, ok)
		assert.Equal(t, want, name, "port %#x", port)
	}
	for _, port := range []uint16{0x44, 0x3F7, 0x400, 0} {
		_, ok := b.Lookup(port)
		assert.False(t, ok, "port %#x", port)
	}
}

// Unregister removes exactly one registration, so that a PCI I/O BAR can
// move, and frees its ports for the next.
func TestBusUnregister(t *testing.T) {
	b := NewPortBus()
	bar := newRegDevice(4)
	next := newRegDevice(4)
	require.NoError(t, b.Register("bar", 0xC000, 4, bar))
	require.NoError(t, b.Register("next", 0xC004, 4, next))

	assert.False(t, b.Unregister(0xC000, 8), "the size must match")
	assert.False(t, b.Unregister(0xC001, 4), "the base must match")
	assert.True(t, b.Unregister(0xC000, 4))
	assert.False(t, b.Unregister(0xC000, 4), "already gone")

	data := []byte{0}
	b.Read(0xC000, data)
	assert.Equal(t, []byte{0xFF}, data, "the ports float again")
	_, ok := b.Lookup(0xC003)
	assert.False(t, ok)
	b.Write(0xC004, []byte{7})
	assert.Equal(t, byte(7), next.regs[0], "the neighbour stays")

	require.NoError(t, b.Register("moved", 0xC000, 4, bar), "the ports can be claimed again")
}

// recordHandler is a slog.Handler that keeps the records it gets.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m []string
	for _, r := range h.records {
		m = append(m, r.Message)
	}
	return m
}

// captureLogs routes slog's default logger to a recorder for one test.
func captureLogs(t *testing.T) *recordHandler {
	h := &recordHandler{}
	old := slog.Default()
	slog.SetDefault(slog.New(h))
	t.Cleanup(func() { slog.SetDefault(old) })
	return h
}

func TestBusLogsEachUnclaimedPortOnce(t *testing.T) {
	logs := captureLogs(t)
	b := NewPortBus()
	require.NoError(t, b.Register("post", POSTPort, 1, Ignore{}))

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write(0x87, []byte{0})
				b.Read(0x87, []byte{0})
				b.Read(0x2F8, []byte{0, 0})
				b.Write(POSTPort, []byte{0x55}) // ignored silently
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, []string{"unclaimed I/O port", "unclaimed I/O port"}, logs.messages())

	data := []byte{0, 0}
	b.Read(POSTPort, data)
	assert.Equal(t, []byte{0xFF, 0xFF}, data)
}

func TestBusConcurrentRegisterAndDispatch(t *testing.T) {
	b := NewPortBus()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 64 {
			require.NoError(t, b.Register("dev", uint16(0x1000+i*4), 4, newRegDevice(4)))
		}
	}()
	go func() {
		defer wg.Done()
		for range 1000 {
			b.Read(0x1010, []byte{0})
		}
	}()
	wg.Wait()
	name, ok := b.Lookup(0x10FF)
	assert.True(t, ok)
	assert.Equal(t, "dev", name)
}

package devices

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// device that starts one (timers, the console) must stop it in Close.
func TestMain(m *testing.M) {
	code := m.Run()
	fuzzing := flag.Lookup("test.fuzz").Value.String() != "" ||
		flag.Lookup("test.fuzzworker").Value.String() == "true"
	if code == 0 && !fuzzing {
		if leaked := leakedGoroutines(); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left running after the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines of this package still
// alive, after giving exiting ones a moment to finish.
func leakedGoroutines() string {
	var leaked []string
	for range 100 {
		buf := make([]byte, 1<<20)
		all := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
		leaked = leaked[:0]
		for _, g := range all {
			// Only goroutines running or started by this package's
			// code count; the main one runs TestMain itself.
			if !strings.Contains(g, "govmm/devices") || strings.Contains(g, "devices.TestMain") {
				continue
			}
			leaked = append(leaked, g)
		}
		if len(leaked) == 0 {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
	return strings.Join(leaked, "\n\n")
}

// testEpoch is the fake clocks' start: a Friday afternoon, UTC.
var testEpoch = time.Date(2024, time.March, 15, 13, 45, 30, 0, time.UTC)

func newFakeClock() *devicetest.FakeClock { return devicetest.NewFakeClock(testEpoch) }

// in8 reads one byte from a device register.
func in8(d PortDevice, off uint16) byte {
	b := []byte{0}
	d.ReadPort(off, b)
	return b[0]
}

// out8 writes one byte to a device register.
func out8(d PortDevice, off uint16, v byte) { d.WritePort(off, []byte{v}) }

// powerCall is one recorded PowerHandler call.
type powerCall struct {
	ev     PowerEvent
	reason string
}

// powerLog records power events.
type powerLog struct {
	mu    sync.Mutex
	calls []powerCall
}

func (p *powerLog) handler() PowerHandler {
	return func(ev PowerEvent, reason string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.calls = append(p.calls, powerCall{ev, reason})
	}
}

func (p *powerLog) get() []powerCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]powerCall(nil), p.calls...)
}

func TestPowerEventString(t *testing.T) {
	assert.Equal(t, "power off", PowerOff.String())
	assert.Equal(t, "reset", Reset.String())
	assert.Equal(t, "PowerEvent(42)", PowerEvent(42).String())
}

func TestReadWriteBytesSplitAndClip(t *testing.T) {
	regs := []byte{10, 11, 12, 13}
	var got []uint16
	data := make([]byte, 4)
	readBytes(4, 2, data, func(off uint16) byte { got = append(got, off); return regs[off] })
	assert.Equal(t, []byte{12, 13, openBus, openBus}, data)
	assert.Equal(t, []uint16{2, 3}, got)

	var writes [][2]int
	writeBytes(4, 3, []byte{1, 2, 3, 4}, func(off uint16, v byte) { writes = append(writes, [2]int{int(off), int(v)}) })
	assert.Equal(t, [][2]int{{3, 1}}, writes, "bytes past the device are dropped")

	// An offset near the top of the port space must not wrap.
	readBytes(1, 0xFFFF, data, func(uint16) byte { t.Fatal("read past the device"); return 0 })
	assert.Equal(t, []byte{openBus, openBus, openBus, openBus}, data)
}

func TestIRQOutputOnlyCallsOnChange(t *testing.T) {
	var rec devicetest.IRQRecorder
	o := irqOutput{line: &rec}
	o.set(false)
	o.set(true)
	o.set(true)
	o.set(false)
	o.pulse()
	assert.Equal(t, []bool{true, false, true, false}, rec.Calls())
	assert.Equal(t, 2, rec.RisingEdges())

	var unwired irqOutput
	require.NotPanics(t, func() { unwired.set(true); unwired.pulse() })
}

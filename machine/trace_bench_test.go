package machine

import (
	"io"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/require"
)

// exitLoopCount is how many port writes exitLoopGuest makes.
const exitLoopCount = 5000

// exitLoopGuest writes the POST code port exitLoopCount times, one exit
// each, then resets through the i8042.
var exitLoopGuest = []byte{
	0xB9, exitLoopCount & 0xFF, exitLoopCount >> 8, // mov cx, exitLoopCount
	0xE6, 0x80, //  again: out 0x80, al
	0xE2, 0xFC, //         loop again
	0xB0, 0xFE, //         mov al, 0xFE
	0xE6, 0x64, //         out 0x64, al
	0xF4, //               hlt
}

// BenchmarkExitLoop measures the cost of one PIO exit through the whole
// run loop, with statistics and tracing in their three states. "plain" is
// the default (exits counted by reason only); with tracing off the loop
// pays one nil-pointer check for the tracer, so "plain" is also the cost
// of having the tracing feature at all. Compare the ns/exit metrics:
//
//	go test -run XXX -bench ExitLoop ./machine/
func BenchmarkExitLoop(b *testing.B) {
	if testing.Short() {
		b.Skip("boots a guest")
	}
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"plain", Config{}},
		{"stats", Config{Stats: true}},
		{"trace", Config{Trace: io.Discard}},
		{"trace-filtered-out", Config{Trace: io.Discard, TraceFilter: TraceFilter{Reasons: []string{"mmio"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var exits uint64
			var inLoop time.Duration
			for b.Loop() {
				cfg := bc.cfg
				cfg.Kernel, cfg.RealMode, cfg.MemSize, cfg.CPUs = exitLoopGuest, true, 64<<20, 1
				cfg.Console = &devicetest.Buffer{}
				m, err := New(cfg)
				require.NoError(b, err)
				start := time.Now()
				r := m.Run()
				inLoop += time.Since(start)
				require.Equal(b, Reset, r.Reason, "%v", r.Err)
				for _, n := range m.ExitCounts() {
					exits += n
				}
				m.Close()
			}
			b.ReportMetric(float64(inLoop.Nanoseconds())/float64(exits), "ns/exit")
		})
	}
}

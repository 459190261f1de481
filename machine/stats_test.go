package machine

import (
	"bytes"
	"strings"
	"testing"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runForStats runs realModeUARTPITReset with cfg's statistics and trace
// settings and returns the machine's statistics.
func runForStats(t *testing.T, cfg Config) Stats {
	t.Helper()
	needKVM(t)
	cfg.Kernel, cfg.RealMode = realModeUARTPITReset, true
	cfg.MemSize, cfg.CPUs = 64<<20, 1
	cfg.Console = &devicetest.Buffer{}
	m, err := New(cfg)
	require.NoError(t, err)
	defer m.Close()
	r := m.Run()
	require.Equal(t, Reset, r.Reason, "%v", r.Err)
	return m.Stats()
}

func TestStatsByReasonAndPort(t *testing.T) {
	s := runForStats(t, Config{Stats: true})
	require.NotEmpty(t, s.Exits)
	assert.Equal(t, "KVM_EXIT_IO", s.Exits[0].Reason, "a port-I/O guest exits mostly for I/O")
	assert.Positive(t, s.Wall)

	byPort := map[uint64]AccessStats{}
	for _, p := range s.Ports {
		byPort[p.Addr] = p
	}
	uart := byPort[0x3F8]
	assert.Equal(t, "COM1 16550A UART", uart.Device)
	assert.Equal(t, uint64(3), uart.Writes, "H, I and P")
	assert.Zero(t, uart.Reads)
	assert.Equal(t, uint64(2), byPort[0x42].Writes, "the two count bytes")
	assert.GreaterOrEqual(t, byPort[0x61].Reads, uint64(2), "port B: once to set the gate, then polled")
	assert.Equal(t, uint64(1), byPort[0x64].Writes, "the reset command")

	var io uint64
	for _, e := range s.Exits {
		if e.Reason == "KVM_EXIT_IO" {
			io = e.Count
		}
	}
	var sum uint64
	for _, p := range s.Ports {
		sum += p.Reads + p.Writes
	}
	assert.Equal(t, io, sum, "every I/O exit is attributed to a port")
	var devs uint64
	for _, d := range s.Devices {
		devs += d.Exits
	}
	assert.Equal(t, sum, devs, "and every port to a device")
}

func TestStatsOffRecordsReasonsOnly(t *testing.T) {
	s := runForStats(t, Config{})
	assert.NotEmpty(t, s.Exits)
	assert.Empty(t, s.Ports)
}

func TestTrace(t *testing.T) {
	var all bytes.Buffer
	runForStats(t, Config{Trace: &all})
	lines := strings.Split(strings.TrimSpace(all.String()), "\n")
	assert.Regexp(t, `^\d+\.\d{6} cpu0 IO out port=0x3f8 size=1 data=48 dev="COM1 16550A UART"$`, lines[0])
	assert.Regexp(t, `cpu0 IO out port=0x64 size=1 data=fe dev="i8042 command/status"$`, lines[len(lines)-1])

	var uart bytes.Buffer
	runForStats(t, Config{Trace: &uart, TraceFilter: TraceFilter{Devices: []string{"uart"}}})
	assert.Equal(t, 3, strings.Count(uart.String(), "\n"), "only the UART's three writes:\n%s", uart.String())

	var none bytes.Buffer
	runForStats(t, Config{Trace: &none, TraceFilter: TraceFilter{Reasons: []string{"mmio"}}})
	assert.Empty(t, none.String(), "the guest does no MMIO")
}

func TestTraceFilterValidation(t *testing.T) {
	assert.NoError(t, ValidateTraceFilter(TraceFilter{Reasons: []string{"io", "MMIO", "kvm_exit_hlt"}}))
	assert.ErrorContains(t, ValidateTraceFilter(TraceFilter{Reasons: []string{"iox"}}), `unknown exit reason "iox"`)
}

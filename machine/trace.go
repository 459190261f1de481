package machine

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/govmm/govmm/kvm"
)

// eventKind says what an exit accessed.
type eventKind uint8

const (
	eventOther eventKind = iota
	eventIO              // an IN or OUT: port
	eventMMIO            // a load or store: addr
)

// exitEvent is what one exit did, for statistics and the trace. data
// aliases kvm_run and is valid until the vCPU re-enters the guest.
type exitEvent struct {
	kind  eventKind
	write bool
	port  uint16
	addr  uint64
	size  int
	count int // accesses of a string I/O instruction (REP INS/OUTS)
	data  []byte
}

// TraceFilter selects the exits a trace records. An empty list selects
// everything.
type TraceFilter struct {
	// Reasons are exit reasons without the KVM_EXIT_ prefix, in any case:
	// "io", "mmio", "hlt", "shutdown", ...
	Reasons []string
	// Devices are device names or parts of them, in any case: "uart",
	// "pci", "virtio-blk", ... An exit matches if the device that
	// handled it does; exits that access no device never match.
	Devices []string
}

// tracer writes one line per exit to a file:
//
//	<seconds since start> cpu<N> <reason> [in|out|read|write] [port=0x..|addr=0x..] [size=N] [data=hex] [dev="name"]
//
// It exists only while tracing: the run loop checks one pointer per exit
// and does nothing else when tracing is off.
type tracer struct {
	m       *Machine
	start   time.Time
	reasons map[string]bool
	devices []string

	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

func newTracer(m *Machine, w io.Writer, f TraceFilter) *tracer {
	t := &tracer{m: m, w: bufio.NewWriter(w)}
	if len(f.Reasons) > 0 {
		t.reasons = map[string]bool{}
		for _, r := range f.Reasons {
			t.reasons[strings.ToUpper(strings.TrimPrefix(strings.ToUpper(r), "KVM_EXIT_"))] = true
		}
	}
	for _, d := range f.Devices {
		t.devices = append(t.devices, strings.ToLower(d))
	}
	return t
}

// ValidateTraceFilter checks that every reason in f names an exit reason.
func ValidateTraceFilter(f TraceFilter) error {
	for _, r := range f.Reasons {
		if _, ok := kvm.ParseExitReason(strings.TrimPrefix(strings.ToUpper(r), "KVM_EXIT_")); !ok {
			return fmt.Errorf("unknown exit reason %q (examples: io, mmio, hlt, shutdown, system_event)", r)
		}
	}
	return nil
}

// device names the device an event reached.
func (t *tracer) device(ev *exitEvent) string {
	switch ev.kind {
	case eventIO:
		return t.m.portDevice(ev.port)
	case eventMMIO:
		return t.m.mmioDevice(ev.addr)
	}
	return ""
}

// record writes the line for one exit, if the filter selects it.
func (t *tracer) record(cpu int, at time.Time, reason kvm.ExitReason, ev *exitEvent) {
	name := strings.TrimPrefix(reason.String(), "KVM_EXIT_")
	if t.reasons != nil && !t.reasons[name] {
		return
	}
	dev := t.device(ev)
	if t.devices != nil {
		match := false
		low := strings.ToLower(dev)
		for _, d := range t.devices {
			if dev != "" && strings.Contains(low, d) {
				match = true
				break
			}
		}
		if !match {
			return
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%.6f cpu%d %s", at.Sub(t.start).Seconds(), cpu, name)
	switch ev.kind {
	case eventIO:
		dir := "in"
		if ev.write {
			dir = "out"
		}
		fmt.Fprintf(&b, " %s port=%#x size=%d", dir, ev.port, ev.size)
		if ev.count > 1 {
			fmt.Fprintf(&b, " count=%d", ev.count)
		}
	case eventMMIO:
		dir := "read"
		if ev.write {
			dir = "write"
		}
		fmt.Fprintf(&b, " %s addr=%#x size=%d", dir, ev.addr, ev.size)
	}
	if len(ev.data) > 0 {
		b.WriteString(" data=")
		b.WriteString(hex.EncodeToString(ev.data))
	}
	if dev != "" {
		fmt.Fprintf(&b, " dev=%q", dev)
	}
	b.WriteByte('\n')
	t.mu.Lock()
	if t.err == nil {
		_, t.err = t.w.WriteString(b.String())
	}
	t.mu.Unlock()
}

// flush writes out what is buffered and reports the first write error.
func (t *tracer) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = t.w.Flush()
	}
	return t.err
}

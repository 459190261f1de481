package main

import (
	"bytes"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// A session as the host records it: every phase once, with counter deltas.
func fakeSession(scale float64) *session {
	s := &session{hello: "kernel=test cpus=1 disk=536870912", phases: map[string]*phaseResult{}}
	for _, p := range phases {
		s.phases[p] = &phaseResult{
			ops: 100, bytes: uint64(100 * seqBlock * scale), elapsed: time.Second,
			delta: map[string]uint64{"exits": 500, "io_exits": 10, "mmio_exits": 20, "halt_exits": 100},
		}
	}
	s.phases["rand-read"].bytes = 100 * randBlock
	s.phases["rand-read"].ops = uint64(1000 * scale)
	return s
}

func TestReport(t *testing.T) {
	a := &vmmCase{name: "govmm", runs: []*session{fakeSession(2), fakeSession(2)}}
	b := &vmmCase{name: "qemu", runs: []*session{fakeSession(1)}, failures: []string{"run 2: boom\nconsole..."}}
	var out bytes.Buffer
	report(&out, caseList{a, b}, "qemu", &hostConfig{seconds: 5, threads: 4, haveCounters: true, phases: phases})
	got := out.String()
	for _, want := range []string{
		"| figure | govmm | qemu | govmm/qemu |",
		"| sequential write, 1 MiB O_DIRECT | 210 MB/s | 105 MB/s | 2.00 | 5.0 | 0.1 | 0.2 | 1.0 |",
		"| random read, 4 KiB O_DIRECT | 2000 IOPS | 1000 IOPS | 2.00 | 0.2 | 0.0 | 0.0 | 0.1 |",
		"qemu: 1 runs ok",
		"  failed run 2: boom\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n| ") != len(phases)+2 {
		t.Errorf("want a header, its rule and one row per phase:\n%s", got)
	}
}

func TestFields(t *testing.T) {
	f := fields("end seq-read ops=3 bytes=3145728 ns=12")
	if f["ops"] != "3" || f["bytes"] != "3145728" || f["ns"] != "12" || len(f) != 3 {
		t.Errorf("fields: %v", f)
	}
	if m := median([]float64{3, 1, 2, 10}); m != 2.5 {
		t.Errorf("median: %v", m)
	}
}

func TestInetChecksum(t *testing.T) {
	// RFC 1071 §3's example: the words 0001 f203 f4f5 f6f7 sum to ddf2
	// (with the carries folded), so the checksum is its complement.
	if got := inetChecksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != ^uint16(0xddf2) {
		t.Errorf("inetChecksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
	// A message with its checksum in place sums to zero.
	msg := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'g', 'o', 'v', 'm', 'm'}
	c := inetChecksum(msg)
	msg[2], msg[3] = byte(c>>8), byte(c)
	if got := inetChecksum(msg); got != 0 {
		t.Errorf("checksum over a checksummed message = %#04x, want 0", got)
	}
}

// addProcCounters reads this process's own CPU time and context switches,
// and they only grow.
func TestAddProcCounters(t *testing.T) {
	before := map[string]uint64{}
	addProcCounters(before, "p_", os.Getpid())
	for _, k := range []string{"p_user_us", "p_sys_us", "p_guest_us", "p_nonvcpu_us", "p_vol_cs", "p_invol_cs"} {
		if _, ok := before[k]; !ok {
			t.Fatalf("no %s in %v", k, before)
		}
	}
	// Burn CPU time, well past a 10 ms clock tick, and sleep (a
	// voluntary switch).
	for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
	}
	time.Sleep(10 * time.Millisecond)
	after := map[string]uint64{}
	addProcCounters(after, "p_", os.Getpid())
	if after["p_user_us"]+after["p_sys_us"] <= before["p_user_us"]+before["p_sys_us"] {
		t.Errorf("CPU time did not grow: %v then %v", before, after)
	}
	if after["p_nonvcpu_us"] <= before["p_nonvcpu_us"] {
		t.Errorf("no vCPU threads here, yet nonvcpu_us did not grow: %v then %v", before, after)
	}
	if after["p_guest_us"] != 0 {
		t.Errorf("guest time without a guest: %v", after)
	}
	if after["p_vol_cs"] <= before["p_vol_cs"] {
		t.Errorf("voluntary switches did not grow: %v then %v", before, after)
	}
	empty := map[string]uint64{}
	addProcCounters(empty, "p_", -1)
	if len(empty) != 0 {
		t.Errorf("a missing process gave %v", empty)
	}
}

func TestParsePhases(t *testing.T) {
	all, err := parsePhases("")
	if err != nil || !slices.Equal(all, phases) {
		t.Errorf(`parsePhases("") = %v, %v; want every phase`, all, err)
	}
	got, err := parsePhases("tcp-rx,seq-write,tcp-rx")
	if want := []string{"seq-write", "tcp-rx"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parsePhases = %v, %v; want %v in the benchmark's order", got, err, want)
	}
	for _, bad := range []string{"tcp", "seq-write,", ",", "TCP-TX"} {
		if _, err := parsePhases(bad); err == nil || !strings.Contains(err.Error(), "unknown phase") {
			t.Errorf("parsePhases(%q) = %v; want an unknown-phase error", bad, err)
		}
	}
}

func TestVirtioInterrupts(t *testing.T) {
	const before = `           CPU0       CPU1       
  0:         40          0   IO-APIC   2-edge      timer
 24:          0          0  PCI-MSIX-0000:00:02.0   0-edge      virtio0-config
 25:       1234         10  PCI-MSIX-0000:00:02.0   1-edge      virtio0-input.0
 26:        567          0  PCI-MSIX-0000:00:02.0   2-edge      virtio0-output.0
NMI:          0          0   Non-maskable interrupts
RES:          5          4   Rescheduling interrupts
ERR:          0
`
	got := parseInterrupts(before)
	want := map[string]uint64{"timer": 40, "virtio0-config": 0, "virtio0-input.0": 1244, "virtio0-output.0": 567, "NMI": 0, "RES": 9, "ERR": 0}
	if !maps.Equal(got, want) {
		t.Errorf("parseInterrupts = %v, want %v", got, want)
	}
	after := map[string]uint64{"virtio0-config": 0, "virtio0-input.0": 1300, "virtio0-output.0": 600}
	if d, want := irqDeltas(got, after), " guest_irq_virtio0-input.0=56 guest_irq_virtio0-output.0=33"; d != want {
		t.Errorf("irqDeltas = %q, want %q", d, want)
	}
	if d := irqDeltas(nil, nil); d != "" {
		t.Errorf("irqDeltas without /proc/interrupts = %q, want nothing", d)
	}
}

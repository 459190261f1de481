package main

// -trace: what stops the vCPU, traced rather than counted. KVM's debugfs
// counters say how many exits of each kind a workload cost, not why an
// "interrupt" exit happened: a timer of the host, an interrupt the VMM sent
// the guest (KVM kicks a running vCPU out of guest mode to inject it), or
// the scheduler taking the vCPU's CPU for another thread. For a phase named
// in -trace, the host records the scheduler's and KVM's tracepoints on
// every CPU with perf(1) for a window in the middle of the phase, then
// replays them in order and follows each of the VMM's vCPU threads.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// traceEvents are the tracepoints the window records: the scheduler's
// wakeups and context switches, KVM's guest entries and exits, the
// interrupts it injects and the MSIs it receives (an irqfd write ends in
// kvm_set_msi), and the host's local APIC timer with the hrtimers it
// expires. All exist in Linux 6.1 (include/trace/events/sched.h,
// arch/x86/kvm/trace.h, include/trace/events/kvm.h,
// arch/x86/include/asm/trace/irq_vectors.h, include/trace/events/timer.h).
var traceEvents = []string{
	"sched:sched_waking", "sched:sched_switch",
	"kvm:kvm_entry", "kvm:kvm_exit", "kvm:kvm_inj_virq", "kvm:kvm_msi_set_irq",
	"irq_vectors:local_timer_entry", "timer:hrtimer_expire_entry",
}

// Why an interrupt exit happened, judged by what the vCPU's CPU did between
// the exit and the vCPU's next entry.
const (
	causeInject  = "an interrupt to inject"    // KVM injected one before entering again
	causePreempt = "the vCPU thread preempted" // the scheduler switched the thread out
	causeTimer   = "a host timer"              // the host's local APIC timer fired
	causeNone    = "nothing traced"            // no host event at all
)

// traceReport is what one traced window showed, as counts.
type traceReport struct {
	events      int
	exits       map[string]int // the vCPUs' exits by reason
	irqExits    map[string]int // the "interrupt" exits by cause
	msis        int            // MSIs KVM delivered to the VM
	preemptedBy map[string]int // who ran when the vCPU thread was preempted
	// wakeupsIntoGuest counts wakeups that another CPU aimed at a CPU
	// where a vCPU was in guest mode: each needs an IPI there, and the
	// IPI an exit.
	wakeupsIntoGuest int
}

// perfScriptFields is the output format analyzeTrace reads.
const perfScriptFields = "comm,pid,tid,cpu,time,event,trace"

// perfLine is one line of `perf script -F comm,pid,tid,cpu,time,event,trace`:
// "COMM PID/TID [CPU] SECONDS: EVENT: FIELDS". A task's name may contain
// spaces, so the pattern anchors on what follows it. perf prints events in
// time order, across CPUs.
var perfLine = regexp.MustCompile(`^\s*.*?\s+(-?\d+)/(-?\d+)\s+\[(\d+)\]\s+[\d.]+:\s+([^\s:]+:[^\s:]+):\s*(.*)$`)

// traceField returns the value of "key=value" in a tracepoint's fields.
func traceField(fields, key string) string {
	for _, f := range strings.Fields(fields) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// vcpuState follows one vCPU thread through the trace.
type vcpuState struct {
	inGuest bool
	cpu     int
	// pending is set from an interrupt exit until the vCPU's next entry,
	// while its cause is not yet known.
	pending bool
}

// analyzeTrace replays perf script output for the VMM whose process ID is
// vmm. A thread of the VMM that exits from a guest is a vCPU.
func analyzeTrace(r io.Reader, vmm int) (*traceReport, error) {
	rep := &traceReport{exits: map[string]int{}, irqExits: map[string]int{}, preemptedBy: map[string]int{}}
	vcpus := map[int]*vcpuState{}
	// The VMM's threads, known from any event they run.
	vmmThreads := map[int]bool{}
	// whoIs names the task tid, called comm, as the report counts it.
	whoIs := func(tid int, comm string) string {
		if vcpus[tid] != nil {
			return "a vCPU thread"
		}
		if vmmThreads[tid] || tid == vmm {
			return "another VMM thread"
		}
		return comm
	}
	// settle gives the pending interrupt exit of any vCPU that last ran
	// on cpu the cause an event there reveals.
	settle := func(cpu int, cause string) {
		for _, v := range vcpus {
			if v.pending && v.cpu == cpu {
				v.pending = false
				rep.irqExits[cause]++
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		m := perfLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		rep.events++
		pid, _ := strconv.Atoi(m[1])
		tid, _ := strconv.Atoi(m[2])
		cpu, _ := strconv.Atoi(m[3])
		event, fields := m[4], m[5]
		if pid == vmm {
			vmmThreads[tid] = true
		}
		switch event {
		case "kvm:kvm_exit":
			if pid != vmm {
				continue
			}
			v := vcpus[tid]
			if v == nil {
				v = &vcpuState{}
				vcpus[tid] = v
			}
			v.inGuest, v.cpu = false, cpu
			// "vcpu 0 reason io rip 0x... info1 ...": the word after "reason".
			reason := "?"
			if _, rest, ok := strings.Cut(fields, "reason "); ok {
				reason, _, _ = strings.Cut(rest, " ")
			}
			rep.exits[reason]++
			// SVM names it "interrupt", VMX "EXTERNAL_INTERRUPT".
			v.pending = reason == "interrupt" || reason == "EXTERNAL_INTERRUPT"
		case "kvm:kvm_entry":
			if v := vcpus[tid]; v != nil {
				if v.pending {
					v.pending = false
					rep.irqExits[causeNone]++
				}
				v.inGuest, v.cpu = true, cpu
			}
		case "kvm:kvm_inj_virq":
			if v := vcpus[tid]; v != nil && v.pending {
				v.pending = false
				rep.irqExits[causeInject]++
			}
		case "kvm:kvm_msi_set_irq":
			rep.msis++
		case "irq_vectors:local_timer_entry", "timer:hrtimer_expire_entry":
			settle(cpu, causeTimer)
		case "sched:sched_switch":
			prev, _ := strconv.Atoi(traceField(fields, "prev_pid"))
			v := vcpus[prev]
			if v == nil {
				continue
			}
			state := traceField(fields, "prev_state")
			if v.pending {
				v.pending = false
				rep.irqExits[causePreempt]++
			}
			// R (or R+): switched out while runnable, so preempted; any
			// other state is a sleep (a halted vCPU waits in S).
			if strings.HasPrefix(state, "R") {
				next, _ := strconv.Atoi(traceField(fields, "next_pid"))
				rep.preemptedBy[whoIs(next, traceField(fields, "next_comm"))]++
			}
		case "sched:sched_waking":
			target, err := strconv.Atoi(traceField(fields, "target_cpu"))
			if err != nil || target == cpu {
				continue
			}
			for _, v := range vcpus {
				if v.inGuest && v.cpu == target {
					rep.wakeupsIntoGuest++
					break
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(vcpus) == 0 {
		return nil, fmt.Errorf("no guest exits of process %d in the trace", vmm)
	}
	return rep, nil
}

// maxPreempters is how many of the threads that preempted the vCPU the
// report names; the rest are summed.
const maxPreempters = 3

// format prints the report per request, given how many requests the
// window held.
func (rep *traceReport) format(phase string, requests float64) string {
	per := func(n int) string { return strconv.FormatFloat(float64(n)/requests, 'f', 2, 64) }
	// sorted lists the largest counts of m first, at most limit of them
	// (0: all), and the rest as "others".
	sorted := func(m map[string]int, limit int) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if m[keys[i]] != m[keys[j]] {
				return m[keys[i]] > m[keys[j]]
			}
			return keys[i] < keys[j]
		})
		var parts []string
		others := 0
		for i, k := range keys {
			if limit > 0 && i >= limit {
				others += m[k]
				continue
			}
			parts = append(parts, fmt.Sprintf("%s %s", per(m[k]), k))
		}
		if others > 0 {
			parts = append(parts, per(others)+" others")
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	}
	total := 0
	for _, n := range rep.exits {
		total += n
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "guestbench host: trace %s, per request (%.0f requests, %d events):\n", phase, requests, rep.events)
	fmt.Fprintf(&sb, "  exits %s: %s\n", per(total), sorted(rep.exits, 0))
	fmt.Fprintf(&sb, "  interrupt exits, by what came before the next entry: %s\n", sorted(rep.irqExits, 0))
	fmt.Fprintf(&sb, "  MSIs delivered %s; wakeups aimed at a CPU running the guest %s\n", per(rep.msis), per(rep.wakeupsIntoGuest))
	fmt.Fprintf(&sb, "  vCPU thread preempted by: %s\n", sorted(rep.preemptedBy, maxPreempters))
	return sb.String()
}

// tracer records and analyzes windows of the phases named in -trace.
type tracer struct {
	phases map[string]bool
	dir    string // where perf's data files go
}

// traceWindow returns when to start recording after a phase begins, and
// for how long: the middle of the phase, away from its ramp-up and its end.
func traceWindow(phase time.Duration) (delay, length time.Duration) {
	const maxLength = 4 * time.Second
	length = min(phase/2, maxLength)
	return (phase - length) / 2, length
}

// perfRecord returns the perf command that records the tracepoints on
// every CPU into file while it runs "sleep length".
func perfRecord(file string, length time.Duration) *exec.Cmd {
	return exec.Command("perf", "record", "-q", "-a", "-o", file, "-e", strings.Join(traceEvents, ","),
		"--", "sleep", strconv.FormatFloat(length.Seconds(), 'f', 3, 64))
}

// window is one recording in progress.
type window struct {
	file   string
	length time.Duration
	done   chan error
}

// record starts recording the window of a phase that begins now, into
// NAME.data in the tracer's directory.
func (t *tracer) record(name string, phase time.Duration) *window {
	delay, length := traceWindow(phase)
	w := &window{file: filepath.Join(t.dir, name+".data"), length: length, done: make(chan error, 1)}
	go func() {
		time.Sleep(delay)
		out, err := perfRecord(w.file, length).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("perf record: %v: %s", err, strings.TrimSpace(string(out)))
		}
		w.done <- err
	}()
	return w
}

// report waits for the recording and analyzes it. The window's share of
// the phase's requests is taken from the phase's average rate.
func (w *window) report(phase string, vmm int, ops uint64, elapsed time.Duration) (string, error) {
	if err := <-w.done; err != nil {
		return "", err
	}
	if elapsed <= 0 || ops == 0 {
		return "", fmt.Errorf("the phase reported no requests")
	}
	rep, err := analyzeFile(w.file, vmm)
	if err != nil {
		return "", err
	}
	return rep.format(phase, float64(ops)*w.length.Seconds()/elapsed.Seconds()), nil
}

// analyzeFile runs perf script on a recorded file and analyzes its output.
func analyzeFile(file string, vmm int) (*traceReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "perf", "script", "-i", file, "-F", perfScriptFields)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf script: %v", err)
	}
	rep, aerr := analyzeTrace(out, vmm)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil && aerr == nil {
		aerr = fmt.Errorf("perf script: %v", err)
	}
	return rep, aerr
}

// check fails early, before any VMM runs, if perf cannot record the
// tracepoints here (perf missing, no tracefs, not root).
func (t *tracer) check() error {
	if _, err := exec.LookPath("perf"); err != nil {
		return fmt.Errorf("perf is missing (scripts/install-deps.sh bench): %v", err)
	}
	file := filepath.Join(t.dir, "check.data")
	defer os.Remove(file)
	if out, err := perfRecord(file, 0).CombinedOutput(); err != nil {
		return fmt.Errorf("perf record cannot trace %s: %v: %s", strings.Join(traceEvents, ","), err, strings.TrimSpace(string(out)))
	}
	return nil
}

package main

// The host half: launch each VMM in turn, serve its guest, sample KVM's
// exit counters around every workload, print the table.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// KVM's statistics in debugfs that the table uses. Each file is the sum
// over every vCPU of every VM on the machine (Documentation/virt/kvm/api.rst,
// "KVM statistics"): "exits" counts every VM exit, including those the
// kernel handles itself (an ioeventfd doorbell, an in-kernel APIC access);
// io_exits counts every port I/O exit, also those an ioeventfd absorbs in
// the kernel (Linux 6.1 arch/x86/kvm/svm/svm.c io_interception and
// vmx/vmx.c handle_io count on entry); mmio_exits counts only the MMIO
// exits that reach the VMM's userspace (x86.c, x86_emulate_instruction);
// halt_exits the guest's HLTs.
var counters = []string{"exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits"}

type vmmCase struct {
	name, command string
	runs          []*session
	failures      []string
}

type caseList []*vmmCase

func (c *caseList) String() string { return fmt.Sprint(len(*c)) }
func (c *caseList) Set(s string) error {
	name, cmd, ok := strings.Cut(s, "=")
	if !ok || name == "" || cmd == "" {
		return fmt.Errorf("case %q: want NAME=COMMAND", s)
	}
	*c = append(*c, &vmmCase{name: name, command: cmd})
	return nil
}

// session is what one guest run reported.
type session struct {
	hello  string
	phases map[string]*phaseResult
}

type phaseResult struct {
	ops, bytes uint64
	elapsed    time.Duration
	delta      map[string]uint64 // counter increase during the phase
}

type hostConfig struct {
	seconds       float64
	threads       int
	txPort        int
	rxPort        int
	kvmStats      string
	bootTimeout   time.Duration
	exitTimeout   time.Duration
	logDir        string
	ctl, tx, rx   net.Listener
	haveCounters  bool
	detail        bool     // print every counter's delta per phase
	phases        []string // the workloads to run, in the order of phases
	counterMissed string
	trace         *tracer // nil without -trace
}

func hostMain(args []string) int {
	var cases caseList
	fs := flag.NewFlagSet("guestbench host", flag.ContinueOnError)
	runs := fs.Int("runs", 3, "runs of each case, interleaved")
	listen := fs.String("listen", "192.0.2.1", "address to listen on (the host end of the guests' network)")
	port := fs.Int("port", 5200, "control port; the TCP streams use the next two")
	baseline := fs.String("baseline", "qemu", "the case the others are compared with")
	cfg := hostConfig{}
	fs.Float64Var(&cfg.seconds, "seconds", 5, "duration of each workload")
	fs.IntVar(&cfg.threads, "threads", 4, "concurrent random readers (queue depth)")
	fs.StringVar(&cfg.kvmStats, "kvm-stats", "/sys/kernel/debug/kvm", "KVM's debugfs statistics directory")
	fs.DurationVar(&cfg.bootTimeout, "boot-timeout", 3*time.Minute, "how long a guest may take to call in")
	fs.DurationVar(&cfg.exitTimeout, "exit-timeout", time.Minute, "how long a VMM may take to exit after its guest is done")
	fs.StringVar(&cfg.logDir, "logs", "", "keep each run's console output in this directory")
	fs.BoolVar(&cfg.detail, "detail", false, "also print every KVM counter that moved, per request, after each phase")
	traceList := fs.String("trace", "", "comma-separated workloads to trace with perf in the middle of each run's phase (see trace.go)")
	traceDir := fs.String("trace-dir", os.TempDir(), "where -trace keeps perf's data files")
	phaseList := fs.String("phases", "", "comma-separated workloads to run (default all: "+strings.Join(phases, ",")+")")
	fs.Var(&cases, "case", "NAME=COMMAND: a VMM command booting the benchmark guest (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(cases) == 0 {
		fmt.Fprintln(os.Stderr, "guestbench host: no -case given")
		return 2
	}
	var err error
	if cfg.phases, err = parsePhases(*phaseList); err != nil {
		fmt.Fprintf(os.Stderr, "guestbench host: -phases: %v\n", err)
		return 2
	}
	if *traceList != "" {
		traced, err := parsePhases(*traceList)
		if err != nil {
			fmt.Fprintf(os.Stderr, "guestbench host: -trace: %v\n", err)
			return 2
		}
		cfg.trace = &tracer{phases: map[string]bool{}, dir: *traceDir}
		for _, p := range traced {
			cfg.trace.phases[p] = true
		}
		if err := cfg.trace.check(); err != nil {
			fmt.Fprintf(os.Stderr, "guestbench host: -trace: %v\n", err)
			return 1
		}
	}
	cfg.txPort, cfg.rxPort = *port+1, *port+2
	if cfg.ctl, err = net.Listen("tcp", net.JoinHostPort(*listen, strconv.Itoa(*port))); err != nil {
		fmt.Fprintf(os.Stderr, "guestbench host: %v (is the tap up with address %s?)\n", err, *listen)
		return 1
	}
	if cfg.tx, err = net.Listen("tcp", net.JoinHostPort(*listen, strconv.Itoa(cfg.txPort))); err != nil {
		fmt.Fprintf(os.Stderr, "guestbench host: %v\n", err)
		return 1
	}
	if cfg.rx, err = net.Listen("tcp", net.JoinHostPort(*listen, strconv.Itoa(cfg.rxPort))); err != nil {
		fmt.Fprintf(os.Stderr, "guestbench host: %v\n", err)
		return 1
	}
	go serveTx(cfg.tx)
	go serveRx(cfg.rx, time.Duration(cfg.seconds*float64(time.Second)))
	if _, err := readCounters(cfg.kvmStats); err != nil {
		cfg.counterMissed = err.Error()
		fmt.Fprintf(os.Stderr, "guestbench host: no KVM exit counters (%v); exits are left out\n", err)
	} else {
		cfg.haveCounters = true
	}

	for run := 0; run < *runs; run++ {
		order := append(caseList(nil), cases...)
		if run%2 == 1 { // alternate which VMM goes first
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, c := range order {
			s, err := cfg.once(c, run)
			if err != nil {
				c.failures = append(c.failures, fmt.Sprintf("run %d: %v", run+1, err))
				fmt.Fprintf(os.Stderr, "guestbench host: run %d %s: FAILED: %v\n", run+1, c.name, err)
				continue
			}
			c.runs = append(c.runs, s)
			fmt.Fprintf(os.Stderr, "guestbench host: run %d %s: %s\n", run+1, c.name, s.summary())
		}
	}
	report(os.Stdout, cases, *baseline, &cfg)
	for _, c := range cases {
		if len(c.runs) == 0 {
			return 1
		}
	}
	return 0
}

// once boots one guest with c's VMM and runs the workloads with it.
func (cfg *hostConfig) once(c *vmmCase, run int) (*session, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// exec: the shell becomes the VMM, so a kill reaches the VMM itself.
	cmd := exec.CommandContext(ctx, "sh", "-c", "exec "+c.command)
	cmd.Stdin = nil // /dev/null
	var console tailBuffer
	var logf *os.File
	out := io.Writer(&console)
	if cfg.logDir != "" {
		var err error
		logf, err = os.Create(filepath.Join(cfg.logDir, fmt.Sprintf("%s-%d.log", c.name, run+1)))
		if err != nil {
			return nil, err
		}
		defer logf.Close()
		out = io.MultiWriter(&console, logf)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	withConsole := func(err error) error {
		return fmt.Errorf("%v\n--- console (last lines) ---\n%s", err, console.String())
	}

	// The guest calls in; or the VMM dies first; or time runs out.
	accepted := make(chan net.Conn, 1)
	go func() {
		if tl, ok := cfg.ctl.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now().Add(cfg.bootTimeout))
		}
		conn, err := cfg.ctl.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()
	var conn net.Conn
	select {
	case conn = <-accepted:
		if conn == nil {
			cancel()
			<-exited
			return nil, withConsole(fmt.Errorf("the guest did not call in within %v", cfg.bootTimeout))
		}
	case err := <-exited:
		// Unblock the accept goroutine; a late guest cannot exist now.
		if tl, ok := cfg.ctl.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now())
		}
		<-accepted
		return nil, withConsole(fmt.Errorf("the VMM exited (%v) before its guest called in", err))
	}
	defer conn.Close()
	s, serr := cfg.serve(conn, cmd.Process.Pid, fmt.Sprintf("%s-%d", c.name, run+1))
	if serr != nil {
		// The guest stopped answering while its VMM may still run:
		// leave evidence of which side is stuck before it is killed.
		select {
		case err := <-exited:
			exited <- err // for the wait below; the channel holds one
		default:
			fmt.Fprintf(out, "\n--- guestbench host: %v; diagnosing ---\n", serr)
			probeGuest(out, conn.RemoteAddr())
			// A Go VMM prints every goroutine's stack on SIGQUIT and
			// exits; others just exit.
			_ = cmd.Process.Signal(syscall.SIGQUIT)
		}
	}

	select {
	case err := <-exited:
		if err != nil && serr == nil {
			serr = fmt.Errorf("the VMM exited with %v", err)
		}
	case <-time.After(cfg.exitTimeout):
		cancel()
		<-exited
		if serr == nil {
			serr = fmt.Errorf("the VMM did not exit within %v after the guest was done", cfg.exitTimeout)
		}
	}
	if serr == nil && !strings.Contains(console.String(), "GOVMM_RUN_STATUS=0") {
		serr = errors.New("the guest's script did not report GOVMM_RUN_STATUS=0")
	}
	if serr != nil {
		return nil, withConsole(serr)
	}
	return s, nil
}

// serve speaks the control protocol with one guest, whose VMM is process
// vmm; label names the run in trace files.
func (cfg *hostConfig) serve(conn net.Conn, vmm int, label string) (*session, error) {
	r := bufio.NewReader(conn)
	// Generous: a phase runs -seconds, plus whatever a slow guest needs.
	deadline := func() {
		_ = conn.SetDeadline(time.Now().Add(time.Duration(cfg.seconds*float64(time.Second)) + 2*time.Minute))
	}
	recv := func() (string, error) {
		deadline()
		line, err := r.ReadString('\n')
		line = strings.TrimSpace(line)
		if err != nil {
			return "", fmt.Errorf("control connection: %v", err)
		}
		if rest, ok := strings.CutPrefix(line, "error "); ok {
			return "", fmt.Errorf("guest: %s", rest)
		}
		return line, nil
	}
	send := func(format string, args ...any) error {
		deadline()
		_, err := fmt.Fprintf(conn, format+"\n", args...)
		return err
	}
	s := &session{phases: map[string]*phaseResult{}}
	hello, err := recv()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(hello, "hello ") {
		return nil, fmt.Errorf("want hello from the guest, got %q", hello)
	}
	s.hello = strings.TrimPrefix(hello, "hello ")
	if err := send("config seconds=%g threads=%d tx=%d rx=%d phases=%s",
		cfg.seconds, cfg.threads, cfg.txPort, cfg.rxPort, strings.Join(cfg.phases, ",")); err != nil {
		return nil, err
	}
	for {
		line, err := recv()
		if err != nil {
			return nil, err
		}
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "begin":
			before, _ := readCounters(cfg.kvmStats)
			var allBefore map[string]uint64
			if cfg.detail {
				allBefore = readAllCounters(cfg.kvmStats)
				addProcCounters(allBefore, "vmm_", vmm)
				addProcCounters(allBefore, "bench_", os.Getpid())
				addInterruptCounters(allBefore, "l1_irq_")
			}
			if err := send("go"); err != nil {
				return nil, err
			}
			var traced *window
			if cfg.trace != nil && cfg.trace.phases[rest] {
				traced = cfg.trace.record(label+"-"+rest, time.Duration(cfg.seconds*float64(time.Second)))
			}
			line, err := recv()
			if err != nil {
				return nil, err
			}
			after, _ := readCounters(cfg.kvmStats)
			var allAfter map[string]uint64
			if cfg.detail {
				allAfter = readAllCounters(cfg.kvmStats)
				addProcCounters(allAfter, "vmm_", vmm)
				addProcCounters(allAfter, "bench_", os.Getpid())
				addInterruptCounters(allAfter, "l1_irq_")
			}
			name, kvs, _ := strings.Cut(strings.TrimPrefix(line, "end "), " ")
			if !strings.HasPrefix(line, "end ") || name != rest {
				return nil, fmt.Errorf("want end %s, got %q", rest, line)
			}
			f := fields(kvs)
			p := &phaseResult{delta: map[string]uint64{}}
			p.ops, _ = strconv.ParseUint(f["ops"], 10, 64)
			p.bytes, _ = strconv.ParseUint(f["bytes"], 10, 64)
			ns, _ := strconv.ParseInt(f["ns"], 10, 64)
			p.elapsed = time.Duration(ns)
			if before != nil && after != nil {
				for _, k := range counters {
					p.delta[k] = after[k] - before[k]
				}
			}
			s.phases[rest] = p
			if cfg.detail {
				// The guest counted its own virtio interrupts.
				for k, v := range f {
					if n, err := strconv.ParseUint(v, 10, 64); err == nil && strings.HasPrefix(k, guestIRQPrefix) {
						allBefore[k], allAfter[k] = 0, n
					}
				}
				printDetail(rest, p.ops, allBefore, allAfter)
			}
			if traced != nil {
				// After the phase, so that perf script's work does not
				// count in it. A trace that fails costs the run nothing.
				out, err := traced.report(rest, vmm, p.ops, p.elapsed)
				if err != nil {
					out = fmt.Sprintf("guestbench host: trace %s: %v\n", rest, err)
				}
				fmt.Fprint(os.Stderr, out)
			}
			if err := send("ok"); err != nil {
				return nil, err
			}
		case "done":
			_ = send("bye")
			for _, p := range cfg.phases {
				if s.phases[p] == nil {
					return nil, fmt.Errorf("the guest skipped %s", p)
				}
			}
			return s, nil
		default:
			return nil, fmt.Errorf("unexpected %q from the guest", line)
		}
	}
}

// readCounters reads KVM's statistics files; nil and an error if any is
// missing (debugfs not mounted, or not root).
func readCounters(dir string) (map[string]uint64, error) {
	m := map[string]uint64{}
	for _, k := range counters {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
		m[k] = v
	}
	return m, nil
}

// probeGuest writes to w whether the guest at addr answers pings and what
// the host's interfaces counted, to tell a dead network path (the device or
// its tap) from a stuck guest program.
func probeGuest(w io.Writer, addr net.Addr) {
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for seq := 1; seq <= 3; seq++ {
		rtt, err := ping(host, seq, time.Second)
		if err != nil {
			fmt.Fprintf(w, "ping %s seq %d: %v\n", host, seq, err)
		} else {
			fmt.Fprintf(w, "ping %s seq %d: reply in %v\n", host, seq, rtt)
		}
	}
	fmt.Fprintln(w, "$ ip -s link show")
	c := exec.Command("ip", "-s", "link", "show")
	c.Stdout, c.Stderr = w, w
	if err := c.Run(); err != nil {
		fmt.Fprintf(w, "(%v)\n", err)
	}
}

// ICMP echo (RFC 792): type 8 asks, type 0 answers; the header is type,
// code, checksum, identifier and sequence number.
const (
	icmpEchoRequest = 8
	icmpEchoReply   = 0
	icmpHeaderLen   = 8
	ipv4MinHeader   = 20
)

// ping sends one ICMP echo request to host over a raw socket (the benchmark
// runs as root) and waits up to timeout for the reply.
func ping(host string, seq int, timeout time.Duration) (time.Duration, error) {
	c, err := net.Dial("ip4:icmp", host)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	id := os.Getpid() & 0xffff
	msg := make([]byte, icmpHeaderLen+8)
	msg[0] = icmpEchoRequest
	binary.BigEndian.PutUint16(msg[4:], uint16(id))
	binary.BigEndian.PutUint16(msg[6:], uint16(seq))
	binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	start := time.Now()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, err
		}
		b := buf[:n]
		// A raw IPv4 socket returns the IP header too (raw(7)).
		if len(b) >= ipv4MinHeader && b[0]>>4 == 4 {
			b = b[int(b[0]&0x0f)*4:]
		}
		if len(b) >= icmpHeaderLen && b[0] == icmpEchoReply &&
			binary.BigEndian.Uint16(b[4:]) == uint16(id) && binary.BigEndian.Uint16(b[6:]) == uint16(seq) {
			return time.Since(start), nil
		}
	}
}

// inetChecksum is the Internet checksum (RFC 1071): the ones' complement
// of the ones' complement sum of the 16-bit words.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// readAllCounters reads every numeric file in KVM's statistics directory
// (halt_wakeup, irq_injections, nmi_window_exits, ...), for -detail. Files
// it cannot read or parse are left out.
func readAllCounters(dir string) map[string]uint64 {
	m := map[string]uint64{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return m
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			m[e.Name()] = v
		}
	}
	return m
}

// clockTicksPerSecond is USER_HZ, the unit of utime and stime in
// /proc/PID/stat (proc(5)): 100 on every Linux architecture Go supports.
const clockTicksPerSecond = 100

// addInterruptCounters adds to m, for -detail, this machine's interrupts
// from /proc/interrupts (parseInterrupts), each name after prefix: in the
// test bed, L1's timer ticks and IPIs, which interrupt the guest when they
// hit the CPU it runs on (KVM's irq_exits).
func addInterruptCounters(m map[string]uint64, prefix string) {
	for name, n := range readInterrupts() {
		m[prefix+name] = n
	}
}

// addProcCounters adds to m, for -detail, what process pid has cost the
// machine so far, each under prefix, from proc(5):
//   - user_us and sys_us: its threads' CPU time in microseconds
//     (/proc/PID/stat fields 14 and 15). Linux counts the time a vCPU
//     thread runs its guest as user time;
//   - guest_us: of that, the time in the guest (field 43, guest_time);
//   - nonvcpu_us: the CPU time of its threads that never ran a guest, the
//     VMM's device and runtime threads: all of it, less that of the threads
//     that did (/proc/PID/task/TID/stat), which live as long as the VM,
//     where helper threads may come and go;
//   - vol_cs and invol_cs: its threads' voluntary and involuntary context
//     switches (/proc/PID/task/TID/status).
//
// Under the test bed's few, oversubscribed CPUs, what the VMM spends is
// taken from the guest and the benchmark's receiver. What cannot be read
// is left out.
func addProcCounters(m map[string]uint64, prefix string, pid int) {
	const utime, stime, guestTime = 14, 15, 43
	f := statFields(fmt.Sprintf("/proc/%d/stat", pid))
	if f == nil {
		return
	}
	m[prefix+"user_us"] = f[utime] * 1e6 / clockTicksPerSecond
	m[prefix+"sys_us"] = f[stime] * 1e6 / clockTicksPerSecond
	m[prefix+"guest_us"] = f[guestTime] * 1e6 / clockTicksPerSecond
	total := f[utime] + f[stime]
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return
	}
	var vol, invol, vcpu uint64
	for _, t := range tasks {
		if f := statFields(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name())); f != nil && f[guestTime] != 0 {
			vcpu += f[utime] + f[stime]
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			switch k {
			case "voluntary_ctxt_switches":
				vol += n
			case "nonvoluntary_ctxt_switches":
				invol += n
			}
		}
	}
	m[prefix+"vol_cs"] = vol
	m[prefix+"invol_cs"] = invol
	m[prefix+"nonvcpu_us"] = (total - min(vcpu, total)) * 1e6 / clockTicksPerSecond
}

// statFields parses a /proc stat file into its numeric fields, indexed as
// proc(5) numbers them from 1 (fields 1 to 3, pid, comm and state, read as
// 0); nil if it cannot be read or has fewer than 43 fields.
func statFields(path string) []uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	// The command name, field 2, is in parentheses and may hold spaces:
	// count from after its closing one, which field 3 follows.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	rest := strings.Fields(string(b[i+1:]))
	const first = 3
	f := make([]uint64, first+len(rest))
	for j, s := range rest {
		f[first+j], _ = strconv.ParseUint(s, 10, 64)
	}
	if len(f) <= 43 {
		return nil
	}
	return f
}

// printDetail prints, on one line, each counter that moved during a phase,
// divided by the phase's requests, largest first.
func printDetail(phase string, ops uint64, before, after map[string]uint64) {
	if ops == 0 {
		return
	}
	type kv struct {
		k string
		v float64
	}
	var moved []kv
	for k, a := range after {
		if b, ok := before[k]; ok && a > b {
			moved = append(moved, kv{k, float64(a-b) / float64(ops)})
		}
	}
	sort.Slice(moved, func(i, j int) bool { return moved[i].v > moved[j].v })
	var sb strings.Builder
	for _, m := range moved {
		fmt.Fprintf(&sb, " %s=%.2f", m.k, m.v)
	}
	fmt.Fprintf(os.Stderr, "guestbench host: detail %s, per request:%s\n", phase, sb.String())
}

// serveTx counts what each guest stream sends and, when the guest
// half-closes, answers "received N".
func serveTx(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
			n, _ := io.Copy(io.Discard, c)
			fmt.Fprintf(c, "received %d\n", n)
		}()
	}
}

// serveRx streams to each guest that connects for d, then closes.
func serveRx(l net.Listener, d time.Duration) {
	buf := make([]byte, netChunk)
	for i := range buf {
		buf[i] = byte(i * 3)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(d + time.Minute))
			for start := time.Now(); time.Since(start) < d; {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// tailBuffer keeps the last lines of a VMM's console for error reports
// (and the whole of it, for the status marker check, up to a limit).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 256<<10 {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-128<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func (s *session) summary() string {
	var b strings.Builder
	b.WriteString(s.hello)
	for _, p := range phases {
		if r := s.phases[p]; r != nil {
			fmt.Fprintf(&b, "; %s %s", p, figure(p, r))
		}
	}
	return b.String()
}

// --- the report ------------------------------------------------------------

// figure is a phase's headline number with its unit.
func figure(phase string, r *phaseResult) string {
	v, unit := value(phase, r)
	return fmt.Sprintf("%.0f %s", v, unit)
}

func value(phase string, r *phaseResult) (float64, string) {
	secs := r.elapsed.Seconds()
	if secs <= 0 {
		return 0, ""
	}
	if phase == "rand-read" {
		return float64(r.ops) / secs, "IOPS"
	}
	return float64(r.bytes) / secs / 1e6, "MB/s"
}

// perOp is the counter increase per request: a 1 MiB request for the
// sequential phases, a 4 KiB read for rand-read, a MiB on the wire for TCP.
func perOp(r *phaseResult, keys ...string) (float64, bool) {
	if r.ops == 0 || len(r.delta) == 0 {
		return 0, false
	}
	var n uint64
	for _, k := range keys {
		n += r.delta[k]
	}
	return float64(n) / float64(r.ops), true
}

var phaseTitle = map[string]string{
	"seq-write": "sequential write, 1 MiB O_DIRECT",
	"seq-read":  "sequential read, 1 MiB O_DIRECT",
	"rand-read": "random read, 4 KiB O_DIRECT",
	"tcp-tx":    "TCP guest → host",
	"tcp-rx":    "TCP host → guest",
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(w io.Writer, cases caseList, baseline string, cfg *hostConfig) {
	var base *vmmCase
	for _, c := range cases {
		if c.name == baseline {
			base = c
		}
	}
	fmt.Fprintf(w, "\nMedians over the runs that succeeded; each workload ran %gs; %d random readers.\n", cfg.seconds, cfg.threads)
	fmt.Fprintln(w, "exits/req: all VM exits per request (1 MiB for sequential I/O and TCP, one 4 KiB read for random I/O);")
	fmt.Fprintln(w, "pio/req: port I/O exits, also those an ioeventfd ends in the kernel (io_exits);")
	fmt.Fprintln(w, "mmio/req: MMIO exits that reached the VMM's userspace (mmio_exits); halt/req: HLT exits.")
	fmt.Fprintln(w)
	hdr := "| figure |"
	sep := "| --- |"
	for _, c := range cases {
		hdr += " " + c.name + " |"
		sep += " ---: |"
	}
	for _, c := range cases {
		if c != base && base != nil {
			hdr += fmt.Sprintf(" %s/%s |", c.name, base.name)
			sep += " ---: |"
		}
	}
	for _, c := range cases {
		hdr += fmt.Sprintf(" exits/req %s | pio/req %s | mmio/req %s | halt/req %s |", c.name, c.name, c.name, c.name)
		sep += " ---: | ---: | ---: | ---: |"
	}
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, sep)
	for _, p := range cfg.phases {
		med := map[*vmmCase]float64{}
		unit := ""
		row := "| " + phaseTitle[p] + " |"
		for _, c := range cases {
			var vs []float64
			for _, s := range c.runs {
				v, u := value(p, s.phases[p])
				vs = append(vs, v)
				unit = u
			}
			med[c] = median(vs)
			if len(vs) == 0 {
				row += " — |"
			} else {
				row += fmt.Sprintf(" %.0f %s |", med[c], unit)
			}
		}
		for _, c := range cases {
			if c != base && base != nil {
				if med[c] > 0 && med[base] > 0 {
					row += fmt.Sprintf(" %.2f |", med[c]/med[base])
				} else {
					row += " — |"
				}
			}
		}
		for _, c := range cases {
			for _, keys := range [][]string{{"exits"}, {"io_exits"}, {"mmio_exits"}, {"halt_exits"}} {
				var vs []float64
				for _, s := range c.runs {
					if v, ok := perOp(s.phases[p], keys...); ok {
						vs = append(vs, v)
					}
				}
				if len(vs) == 0 {
					row += " — |"
				} else {
					row += fmt.Sprintf(" %.1f |", median(vs))
				}
			}
		}
		fmt.Fprintln(w, row)
	}
	fmt.Fprintln(w)
	for _, c := range cases {
		fmt.Fprintf(w, "%s: %d runs ok", c.name, len(c.runs))
		if len(c.runs) > 0 {
			fmt.Fprintf(w, " (guest: %s)", c.runs[0].hello)
		}
		fmt.Fprintln(w)
		for _, f := range c.failures {
			first, _, _ := strings.Cut(f, "\n")
			fmt.Fprintf(w, "  failed %s\n", first)
		}
	}
	if !cfg.haveCounters {
		fmt.Fprintf(w, "exit counts unavailable: %s\n", cfg.counterMissed)
	}
}

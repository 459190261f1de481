// Command bootbench times VMMs booting the same guest: from launch to the
// first console line containing a marker (the guest's init has run), and
// to the VMM's exit. It interleaves the VMMs run by run, so that drift in
// the machine's speed hits all of them alike, and prints the medians and
// the ratio of each VMM to the baseline as a Markdown table.
//
//	bootbench -runs 5 -baseline qemu \
//	  -case 'cloud/govmm=bin/govmm boot --kernel ...' \
//	  -case 'cloud/qemu=qemu-system-x86_64 -M pc ...'
//
// Cases are GUEST/VMM=COMMAND. COMMAND is one simple command (the shell
// execs it, so that killing it kills the VMM), run with stdin from
// /dev/null. It is a benchmark, not a test: nothing here asserts a time.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

type benchCase struct {
	guest, vmm, command string
	toMarker, toExit    []time.Duration
	failures            int
}

type caseList []*benchCase

func (c *caseList) String() string { return fmt.Sprint(len(*c)) }
func (c *caseList) Set(s string) error {
	name, cmd, ok := strings.Cut(s, "=")
	guest, vmm, ok2 := strings.Cut(name, "/")
	if !ok || !ok2 || cmd == "" {
		return fmt.Errorf("case %q: want GUEST/VMM=COMMAND", s)
	}
	*c = append(*c, &benchCase{guest: guest, vmm: vmm, command: cmd})
	return nil
}

func main() {
	var cases caseList
	runs := flag.Int("runs", 5, "runs of each case")
	marker := flag.String("marker", "GOVMM_INIT_OK", "console text that means the guest's init ran")
	baseline := flag.String("baseline", "qemu", "the VMM the others are compared with")
	timeout := flag.Duration("timeout", 3*time.Minute, "limit for one boot")
	exitGrace := flag.Duration("exit-grace", 20*time.Second, "how long to wait for the VMM to exit after the marker before killing it")
	flag.Var(&cases, "case", "GUEST/VMM=COMMAND (repeatable)")
	flag.Parse()
	if len(cases) == 0 {
		fmt.Fprintln(os.Stderr, "bootbench: no -case given")
		os.Exit(2)
	}
	for run := 0; run < *runs; run++ {
		order := append(caseList(nil), cases...)
		if run%2 == 1 { // alternate which VMM goes first
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, c := range order {
			m, e, err := once(c.command, *marker, *timeout, *exitGrace)
			if err != nil {
				c.failures++
				fmt.Fprintf(os.Stderr, "bootbench: run %d %s/%s: %v\n", run+1, c.guest, c.vmm, err)
				continue
			}
			c.toMarker = append(c.toMarker, m)
			if e > 0 {
				c.toExit = append(c.toExit, e)
			}
			fmt.Fprintf(os.Stderr, "bootbench: run %d %s/%s: marker %v, exit %v\n", run+1, c.guest, c.vmm, m.Round(time.Millisecond), e.Round(time.Millisecond))
		}
	}
	report(os.Stdout, cases, *baseline, *runs)
}

// once runs one boot and returns the time to the marker and, if the VMM
// exited by itself within the grace period, the time to its exit (else 0).
func once(command, marker string, timeout, grace time.Duration) (toMarker, toExit time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// exec: the shell becomes the VMM, so a kill reaches the VMM itself.
	cmd := exec.CommandContext(ctx, "sh", "-c", "exec "+command)
	cmd.Stdin = nil // /dev/null
	cmd.Stderr = io.Discard
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	found := make(chan time.Duration, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), marker) {
				seen = true
				found <- time.Since(start)
			}
		}
		if !seen {
			close(found)
		}
	}()
	exited := make(chan error, 1)
	var m time.Duration
	select {
	case d, ok := <-found:
		if !ok {
			err := cmd.Wait()
			return 0, 0, fmt.Errorf("exited without printing %q (%v)", marker, err)
		}
		m = d
	case <-ctx.Done():
		cmd.Wait()
		return 0, 0, fmt.Errorf("no %q within %v", marker, timeout)
	}
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
		return m, time.Since(start), nil
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
		return m, 0, nil
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// report prints, per guest, each VMM's medians and its ratio to the
// baseline VMM.
func report(w io.Writer, cases caseList, baseline string, runs int) {
	fmt.Fprintf(w, "| guest | VMM | launch → init marker (median) | launch → VMM exit (median) | marker ratio to %s | runs ok |\n", baseline)
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- |")
	base := map[string]*benchCase{}
	for _, c := range cases {
		if c.vmm == baseline {
			base[c.guest] = c
		}
	}
	for _, c := range cases {
		r := "—"
		if b := base[c.guest]; b != nil {
			r = ratio(median(c.toMarker), median(b.toMarker))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d/%d |\n", c.guest, c.vmm,
			secs(median(c.toMarker)), secs(median(c.toExit)), r, len(c.toMarker), runs)
	}
	var failed []string
	for _, c := range cases {
		if c.failures > 0 {
			failed = append(failed, fmt.Sprintf("%s/%s failed %d times", c.guest, c.vmm, c.failures))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintln(w, "\nfailures: "+strings.Join(failed, "; "))
	}
}

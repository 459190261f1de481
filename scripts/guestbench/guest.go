package main

// The guest half. Only the syscall package touches files and sockets, and
// nothing waits on a Go timer: see the package comment for why.

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

func guestMain(args []string) int {
	fs := flag.NewFlagSet("guestbench guest", flag.ContinueOnError)
	server := fs.String("server", "192.0.2.1:5200", "the host half's control address")
	disk := fs.String("disk", "/dev/vdb", "the scratch block device (its contents are overwritten)")
	connect := fs.Duration("connect-timeout", 60*time.Second, "how long to retry reaching the host")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// No GC cycle means no scavenger, whose sleep is a runtime timer. The
	// guest half allocates its buffers once; the heap stays small.
	debug.SetGCPercent(-1)

	ap, err := netip.ParseAddrPort(*server)
	if err != nil || !ap.Addr().Is4() {
		return fail(nil, "bad -server %q: want IPv4:port", *server)
	}
	ctl, err := dial(ap, *connect)
	if err != nil {
		return fail(nil, "cannot reach the host at %s: %v", ap, err)
	}
	defer syscall.Close(ctl.fd)

	dfd, err := syscall.Open(*disk, syscall.O_RDWR|syscall.O_DIRECT|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fail(ctl, "open %s: %v", *disk, err)
	}
	defer syscall.Close(dfd)
	size, err := blockSize(dfd)
	if err != nil || size < 16*seqBlock {
		return fail(ctl, "size of %s: %d bytes, %v (want at least 16 MiB)", *disk, size, err)
	}

	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	ctl.send("hello kernel=%s cpus=%d disk=%d", cstr(uts.Release[:]), runtime.NumCPU(), size)
	cfg, err := ctl.expect("config")
	if err != nil {
		return fail(ctl, "%v", err)
	}
	kv := fields(cfg)
	seconds, _ := strconv.ParseFloat(kv["seconds"], 64)
	threads, _ := strconv.Atoi(kv["threads"])
	txPort, _ := strconv.Atoi(kv["tx"])
	rxPort, _ := strconv.Atoi(kv["rx"])
	if seconds <= 0 || threads <= 0 || txPort <= 0 || rxPort <= 0 {
		return fail(ctl, "bad config %q", cfg)
	}
	todo, err := parsePhases(kv["phases"])
	if err != nil {
		return fail(ctl, "bad config %q: %v", cfg, err)
	}
	d := time.Duration(seconds * float64(time.Second))
	// Blocking syscalls hold their P; one P per reader (and one to spare)
	// keeps every reader's request in flight at once instead of waiting
	// for sysmon to hand the P over.
	runtime.GOMAXPROCS(threads + 1)

	w := workload{disk: dfd, size: size, d: d, threads: threads,
		tx: netip.AddrPortFrom(ap.Addr(), uint16(txPort)),
		rx: netip.AddrPortFrom(ap.Addr(), uint16(rxPort))}
	for _, p := range todo {
		ctl.send("begin %s", p)
		if _, err := ctl.expect("go"); err != nil {
			return fail(ctl, "%v", err)
		}
		irqBefore := virtioInterrupts()
		r, err := w.run(p)
		if err != nil {
			return fail(ctl, "%s: %v", p, err)
		}
		irqs := irqDeltas(irqBefore, virtioInterrupts())
		fmt.Printf("guestbench: %-9s %8d ops %12d bytes in %v\n", p, r.ops, r.bytes, r.elapsed.Round(time.Millisecond))
		ctl.send("end %s ops=%d bytes=%d ns=%d%s", p, r.ops, r.bytes, r.elapsed.Nanoseconds(), irqs)
		if _, err := ctl.expect("ok"); err != nil {
			return fail(ctl, "%v", err)
		}
	}
	ctl.send("done")
	_, _ = ctl.expect("bye")
	return 0
}

// fail reports to the console and, if connected, to the host.
func fail(c *conn, format string, args ...any) int {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, "guestbench: "+msg)
	if c != nil {
		c.send("error %s", msg)
	}
	return 1
}

type result struct {
	ops, bytes uint64
	elapsed    time.Duration
}

type workload struct {
	disk    int
	size    int64
	d       time.Duration
	threads int
	tx, rx  netip.AddrPort
}

func (w *workload) run(phase string) (result, error) {
	switch phase {
	case "seq-write":
		return w.seq(true)
	case "seq-read":
		return w.seq(false)
	case "rand-read":
		return w.randRead()
	case "tcp-tx":
		return w.tcpTx()
	case "tcp-rx":
		return w.tcpRx()
	}
	return result{}, fmt.Errorf("unknown phase")
}

// alignedBuf is n bytes of page-aligned anonymous memory, as O_DIRECT wants.
func alignedBuf(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS)
}

// seq writes or reads the disk front to back in 1 MiB requests, wrapping
// around, for the phase's duration; a write phase ends with fdatasync (a
// virtio-blk flush), inside the timed span.
func (w *workload) seq(write bool) (result, error) {
	buf, err := alignedBuf(seqBlock)
	if err != nil {
		return result{}, err
	}
	defer syscall.Munmap(buf)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zeros: nothing on the way may shortcut them
	}
	blocks := w.size / seqBlock
	var r result
	start := time.Now()
	for off := int64(0); time.Since(start) < w.d; off = (off + 1) % blocks {
		var n int
		if write {
			n, err = syscall.Pwrite(w.disk, buf, off*seqBlock)
		} else {
			n, err = syscall.Pread(w.disk, buf, off*seqBlock)
		}
		if err != nil {
			return r, err
		}
		if n != seqBlock {
			return r, fmt.Errorf("short transfer: %d bytes at block %d", n, off)
		}
		r.ops++
		r.bytes += uint64(n)
	}
	if write {
		if err := syscall.Fdatasync(w.disk); err != nil {
			return r, err
		}
	}
	r.elapsed = time.Since(start)
	return r, nil
}

// randRead issues 4 KiB reads at random aligned offsets from w.threads
// threads at once: a queue depth of w.threads.
func (w *workload) randRead() (result, error) {
	var (
		mu    sync.Mutex
		total result
		first error
		wg    sync.WaitGroup
	)
	blocks := uint64(w.size / randBlock)
	start := time.Now()
	for t := 0; t < w.threads; t++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			var ops uint64
			var err error
			buf, err := alignedBuf(randBlock)
			if err == nil {
				defer syscall.Munmap(buf)
				x := seed*0x9E3779B97F4A7C15 | 1
				for time.Since(start) < w.d {
					// xorshift64: cheap, and each thread its own sequence.
					x ^= x << 13
					x ^= x >> 7
					x ^= x << 17
					var n int
					n, err = syscall.Pread(w.disk, buf, int64(x%blocks)*randBlock)
					if err != nil {
						break
					}
					if n != randBlock {
						err = fmt.Errorf("short read: %d bytes", n)
						break
					}
					ops++
				}
			}
			mu.Lock()
			total.ops += ops
			if err != nil && first == nil {
				first = err
			}
			mu.Unlock()
		}(uint64(t + 1))
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	total.bytes = total.ops * randBlock
	return total, first
}

// tcpTx streams to the host for the phase's duration, half-closes, and
// waits for the host's count of what arrived: the time includes draining
// the last bytes, and the count is the host's.
func (w *workload) tcpTx() (result, error) {
	c, err := dial(w.tx, 10*time.Second)
	if err != nil {
		return result{}, err
	}
	defer syscall.Close(c.fd)
	buf := make([]byte, netChunk)
	for i := range buf {
		buf[i] = byte(i)
	}
	var r result
	start := time.Now()
	for time.Since(start) < w.d {
		n, err := syscall.Write(c.fd, buf)
		if err != nil {
			return r, err
		}
		r.bytes += uint64(n)
	}
	if err := syscall.Shutdown(c.fd, syscall.SHUT_WR); err != nil {
		return r, err
	}
	line, err := c.expect("received")
	if err != nil {
		return r, err
	}
	r.elapsed = time.Since(start)
	got, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "received")), 10, 64)
	if got != r.bytes {
		return r, fmt.Errorf("sent %d bytes, the host received %d", r.bytes, got)
	}
	r.ops = r.bytes / seqBlock
	return r, nil
}

// tcpRx reads what the host streams until it closes.
func (w *workload) tcpRx() (result, error) {
	c, err := dial(w.rx, 10*time.Second)
	if err != nil {
		return result{}, err
	}
	defer syscall.Close(c.fd)
	buf := make([]byte, netChunk)
	var r result
	start := time.Now()
	for {
		n, err := syscall.Read(c.fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return r, err
		}
		if n == 0 {
			break
		}
		r.bytes += uint64(n)
	}
	r.elapsed = time.Since(start)
	r.ops = r.bytes / seqBlock
	return r, nil
}

// --- a line-oriented TCP connection on raw syscalls --------------------------

type conn struct {
	fd int
	r  *bufio.Reader
}

func (c *conn) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(c.fd, p)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, errors.New("connection closed by the host")
		}
		return n, nil
	}
}

func (c *conn) send(format string, args ...any) {
	b := []byte(fmt.Sprintf(format, args...) + "\n")
	for len(b) > 0 {
		n, err := syscall.Write(c.fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // the next expect reports the broken connection
		}
		b = b[n:]
	}
}

// expect reads one line and checks that it starts with word.
func (c *conn) expect(word string) (string, error) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("waiting for %q: %v", word, err)
	}
	line = strings.TrimSpace(line)
	if line != word && !strings.HasPrefix(line, word+" ") {
		return "", fmt.Errorf("want %q from the host, got %q", word, line)
	}
	return line, nil
}

// dial connects over TCP, retrying while the network comes up (the
// interface may still be configuring, the host not listening yet).
func dial(ap netip.AddrPort, timeout time.Duration) (*conn, error) {
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	deadline := time.Now().Add(timeout)
	for {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		err = syscall.Connect(fd, sa)
		if err == nil {
			c := &conn{fd: fd}
			c.r = bufio.NewReader(c)
			return c, nil
		}
		syscall.Close(fd)
		if time.Now().After(deadline) {
			return nil, err
		}
		// A plain nanosleep: a Go timer would start the network poller.
		ts := syscall.NsecToTimespec(int64(200 * time.Millisecond))
		_ = syscall.Nanosleep(&ts, nil)
	}
}

// blockSize asks the block device its size in bytes (BLKGETSIZE64).
func blockSize(fd int) (int64, error) {
	const blkGetSize64 = 0x80081272
	var size int64
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), blkGetSize64, uintptr(unsafe.Pointer(&size))); e != 0 {
		return 0, e
	}
	return size, nil
}

func cstr(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// fields parses "word k=v k=v ..." into a map of the k=v pairs.
func fields(line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// guestIRQPrefix marks, in an "end" line, how many interrupts one of the
// guest's virtio interrupt lines took during the phase: guest_irq_NAME=N,
// NAME as /proc/interrupts names it (virtio1-input.0, virtio1-output.0,
// virtio0-req.0, ...). The host prints them with -detail: which queue's
// interrupts a workload costs, seen from the guest, whatever the VMM.
const guestIRQPrefix = "guest_irq_"

// virtioInterrupts returns the count of each of the guest's virtio
// interrupt lines, summed over CPUs; nil if /proc/interrupts cannot be
// read.
func virtioInterrupts() map[string]uint64 {
	all := readInterrupts()
	if all == nil {
		return nil
	}
	counts := map[string]uint64{}
	for name, n := range all {
		if strings.HasPrefix(name, "virtio") {
			counts[name] = n
		}
	}
	return counts
}

// readInterrupts reads /proc/interrupts with the syscall package (see the
// package comment); nil if it cannot.
func readInterrupts() map[string]uint64 {
	fd, err := syscall.Open("/proc/interrupts", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	var text []byte
	buf := make([]byte, 16<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		text = append(text, buf[:n]...)
	}
	return parseInterrupts(string(text))
}

// parseInterrupts parses /proc/interrupts: a header naming the CPUs, then
// a line per interrupt with its label, a count per CPU, and for a
// numbered interrupt the controller and the device's name last. It
// returns each interrupt's count summed over the CPUs, by device name
// for numbered interrupts (virtio0-input.0) and by label for the
// others (LOC, RES, CAL, TLB: local timer, rescheduling, function call
// and TLB shootdown IPIs).
func parseInterrupts(text string) map[string]uint64 {
	counts := map[string]uint64{}
	lines := strings.Split(text, "\n")
	cpus := len(strings.Fields(lines[0])) // the header: CPU0 CPU1 ...
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		label := strings.TrimSuffix(f[0], ":")
		name := label
		if _, err := strconv.Atoi(label); err == nil {
			if len(f) < cpus+2 {
				continue
			}
			name = f[len(f)-1]
		}
		var sum uint64
		for _, c := range f[1:min(1+cpus, len(f))] {
			n, err := strconv.ParseUint(c, 10, 64)
			if err != nil {
				break
			}
			sum += n
		}
		counts[name] += sum
	}
	return counts
}

// irqDeltas formats the lines that moved between two virtioInterrupts
// readings as " guest_irq_NAME=N" fields, sorted by name.
func irqDeltas(before, after map[string]uint64) string {
	var names []string
	for name, a := range after {
		if a > before[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var sb strings.Builder
	for _, name := range names {
		fmt.Fprintf(&sb, " %s%s=%d", guestIRQPrefix, name, after[name]-before[name])
	}
	return sb.String()
}

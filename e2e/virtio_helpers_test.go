package e2e

// Helpers for the virtio tests (virtio_test.go): a govmm run that the test
// can talk to while it runs, the root disk image, e2fsprogs' debugfs for
// reading and writing images without mounting them, and tap devices.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer that a running govmm writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// vm is a govmm boot running in the background.
type vm struct {
	t       *testing.T
	name    string
	cmd     *exec.Cmd
	cancel  context.CancelFunc
	ctx     context.Context
	console syncBuffer
	stderr  syncBuffer
	start   time.Time
	done    chan struct{}
	err     error
}

// startVM runs bin/govmm boot with args; the run is killed at bootTimeout
// and when the test ends. govmm logs at level info, so that stderr says how
// the guest ended (and, after a triple fault, in what state).
func startVM(t *testing.T, name string, args ...string) *vm {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	v := &vm{t: t, name: name, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	v.cmd = exec.CommandContext(ctx, filepath.Join(repoRoot(t), "bin", "govmm"), append([]string{"boot", "--log-level", "info"}, args...)...)
	v.cmd.Stdout, v.cmd.Stderr = &v.console, &v.stderr
	// A hung govmm is sent SIGQUIT first, for its goroutines' stacks.
	v.cmd.Cancel = quitForStacks(v.cmd)
	// After that, stop waiting for output a leftover child may still hold.
	v.cmd.WaitDelay = 10 * time.Second
	v.start = time.Now()
	require.NoError(t, v.cmd.Start(), "starting govmm")
	go func() {
		v.err = v.cmd.Wait()
		close(v.done)
	}()
	t.Cleanup(func() {
		cancel()
		v.reaped()
	})
	return v
}

// killGrace is how long a killed govmm may take to go. A process that
// outlives SIGKILL by that much is stuck in the kernel (in the nested test
// bed: an L1 CPU that entered the guest and does not come back); waiting
// longer would hang the whole test run instead of failing one test.
const killGrace = 30 * time.Second

// reaped waits for govmm to be gone after a kill, for killGrace at most.
func (v *vm) reaped() bool {
	select {
	case <-v.done:
		return true
	case <-time.After(killGrace):
		return false
	}
}

// exited reports whether govmm has ended.
func (v *vm) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// waitFor polls the console until it contains marker; false if govmm ends
// first or d passes.
func (v *vm) waitFor(marker string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(v.console.String(), marker) {
			return true
		}
		if v.exited() {
			return strings.Contains(v.console.String(), marker)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// wait waits for govmm to end and returns the run like boot does.
func (v *vm) wait() bootResult {
	v.t.Helper()
	r, hung := v.result()
	if hung {
		v.t.Fatalf("govmm did not finish within %v\nconsole:\n%s\nstderr:\n%s", bootTimeout, tail(r.console), r.stderr)
	}
	return r
}

// result is wait that reports a run killed at bootTimeout as hung
// instead of failing the test.
func (v *vm) result() (r bootResult, hung bool) {
	t := v.t
	t.Helper()
	select {
	case <-v.done:
	case <-v.ctx.Done(): // bootTimeout: exec kills govmm
		if !v.reaped() {
			t.Fatalf("govmm did not finish within %v and was still there %v after SIGKILL (stuck in the kernel)\nconsole:\n%s\nstderr:\n%s",
				bootTimeout, killGrace, tail(v.console.String()), v.stderr.String())
		}
	}
	r = bootResult{console: v.console.String(), stderr: v.stderr.String(), elapsed: time.Since(v.start)}
	var ee *exec.ExitError
	switch {
	case v.ctx.Err() == context.DeadlineExceeded:
		return r, true
	case errors.As(v.err, &ee):
		r.status = ee.ExitCode()
	case v.err != nil:
		t.Fatalf("running govmm: %v", v.err)
	}
	t.Logf("%s: status %d after %v", v.name, r.status, r.elapsed.Round(time.Millisecond))
	return r, false
}

// fail ends the test with what the guest and govmm said.
func (v *vm) fail(format string, args ...any) {
	v.t.Helper()
	v.t.Fatalf("%s\nconsole:\n%s\nstderr:\n%s", fmt.Sprintf(format, args...), tail(v.console.String()), v.stderr.String())
}

// --- images ---------------------------------------------------------------

// rootfsCopy is a private copy of build/guests/rootfs/rootfs.img
// (scripts/rootfs.sh) in the test's temporary directory: tests write to
// their disks, so none may share one.
func rootfsCopy(t *testing.T) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "build", "guests", "rootfs", "rootfs.img")
	need(t, src)
	dst := filepath.Join(t.TempDir(), "rootfs.img")
	copyFile(t, src, dst)
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(dst)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256Hex(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// e2fsTool finds an e2fsprogs program (debugfs, e2fsck). They live in
// /sbin, which a user's PATH may lack. Inside the nested test bed they come
// from the host's root file system (scripts/e2e.sh uses --host-root).
func e2fsTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	need(t, "/usr/sbin/"+name) // fails (or skips) naming the program
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// debugfs runs one debugfs request on an image and returns its standard
// output. debugfs reads and writes ext4 without mounting it (and exits 0
// even when a request fails: callers check what they get).
func debugfs(t *testing.T, img string, write bool, request string) string {
	t.Helper()
	args := []string{"-R", request, img}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.Command(e2fsTool(t, "debugfs"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "debugfs %q %s: %s", request, img, stderr.String())
	return stdout.String()
}

// catFromImage returns the content of path in the ext4 image.
func catFromImage(t *testing.T, img, path string) string {
	t.Helper()
	return debugfs(t, img, false, "cat "+path)
}

// addScript puts a script into the image as /govmm-tests/NAME, for the
// guest init's govmm.run=NAME.
func addScript(t *testing.T, img, name, script string) {
	t.Helper()
	local := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(local, []byte(script), 0o755))
	debugfs(t, img, true, fmt.Sprintf("write %s /govmm-tests/%s", local, name))
	require.Equal(t, script, catFromImage(t, img, "/govmm-tests/"+name), "the script landed in the image")
}

// fsck checks that the guest left the file system clean and consistent.
func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command(e2fsTool(t, "e2fsck"), "-f", "-n", img).CombinedOutput()
	require.NoError(t, err, "e2fsck -fn %s:\n%s", img, out)
}

// --- markers ------------------------------------------------------------------

// marker returns the value of KEY=VALUE printed on the console (the last
// one); "" if absent.
func marker(console, key string) string {
	m := regexp.MustCompile(regexp.QuoteMeta(key)+`=(\S*)`).FindAllStringSubmatch(console, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// --- tap devices and the host's end of the guest network ---------------------

// Addresses from TEST-NET-1 (RFC 5737): the host end of the tap and the guest.
var (
	hostIP  = net.IPv4(192, 0, 2, 1).To4()
	guestIP = "192.0.2.2"
)

// tapName is a name no other test (or test run) uses at the same time.
func tapName(tag string) string {
	return fmt.Sprintf("gv%s%d", tag, os.Getpid()%100000)
}

// tunSetIff attaches fd to tap name, as a VMM does.
func tunSetIff(fd int, name string) error {
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TAP | unix.IFF_NO_PI
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req)))
	if e != 0 {
		return e
	}
	return nil
}

// persistentTap creates tap name with TUNSETPERSIST, so it outlives our
// file descriptor and govmm attaches to it, and removes it when the test
// ends. (busybox's ip has no tuntap command; this needs no tool.)
func persistentTap(t *testing.T, name string) {
	t.Helper()
	setPersist := func(on uintptr) error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := tunSetIff(fd, name); err != nil {
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		return unix.IoctlSetInt(fd, unix.TUNSETPERSIST, int(on))
	}
	require.NoError(t, setPersist(1), "creating tap %s", name)
	t.Cleanup(func() {
		if err := setPersist(0); err != nil {
			t.Logf("removing tap %s: %v", name, err)
		}
	})
}

// ifFlags reads an interface's flags (SIOCGIFFLAGS).
func ifFlags(sock int, name string) (uint16, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(sock, unix.SIOCGIFFLAGS, ifr); err != nil {
		return 0, err
	}
	return ifr.Uint16(), nil
}

// hostAddress waits for interface name to exist (govmm creates the tap
// when it starts) and gives it 192.0.2.1/24, the one thing the host does
// for guest networking. With wantUp it also waits for the link to be up,
// which govmm's contract promises; otherwise it brings the link up itself
// (a persistent tap the test made).
func hostAddress(t *testing.T, v *vm, name string, wantUp bool) {
	t.Helper()
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(sock)
	fail := t.Fatalf
	if v != nil {
		fail = v.fail
	}
	deadline := time.Now().Add(time.Minute)
	for {
		flags, err := ifFlags(sock, name)
		if err == nil && (!wantUp || flags&unix.IFF_UP != 0) {
			break
		}
		if v != nil && v.exited() {
			fail("govmm ended before tap %s was there and up (%v)", name, err)
		}
		if time.Now().After(deadline) {
			if err == nil {
				fail("govmm created tap %s but did not bring its link up", name)
			}
			fail("tap %s did not appear: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	set := func(req uint, ip net.IP) {
		ifr, err := unix.NewIfreq(name)
		require.NoError(t, err)
		require.NoError(t, ifr.SetInet4Addr(ip))
		err = unix.IoctlIfreq(sock, req, ifr)
		if req == unix.SIOCSIFADDR && errors.Is(err, unix.EEXIST) {
			return
		}
		require.NoError(t, err, "setting the address of %s", name)
	}
	set(unix.SIOCSIFADDR, hostIP)
	set(unix.SIOCSIFNETMASK, net.IPv4(255, 255, 255, 0).To4())
	if !wantUp {
		flags, err := ifFlags(sock, name)
		require.NoError(t, err)
		ifr, err := unix.NewIfreq(name)
		require.NoError(t, err)
		ifr.SetUint16(flags | unix.IFF_UP)
		require.NoError(t, unix.IoctlIfreq(sock, unix.SIOCSIFFLAGS, ifr), "bringing %s up", name)
	}
}

// listenHost listens on 192.0.2.1:port before the address exists
// (IP_FREEBIND): the guest may connect as soon as the tap has it.
func listenHost(t *testing.T, port int) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp4", net.JoinHostPort(hostIP.String(), fmt.Sprint(port)))
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// streamResult is what one TCP connection carried.
type streamResult struct {
	bytes int64
	sha   string
	err   error
}

// receiveOne accepts one connection on l, reads it to EOF (the guest's nc
// half-closes when its input ends), and reports size and SHA-256.
func receiveOne(l net.Listener) <-chan streamResult {
	ch := make(chan streamResult, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- streamResult{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(bootTimeout))
		h := sha256.New()
		n, err := io.Copy(h, c)
		ch <- streamResult{bytes: n, sha: hex.EncodeToString(h.Sum(nil)), err: err}
	}()
	return ch
}

// sendOne accepts one connection on l, writes data and closes it.
func sendOne(l net.Listener, data []byte) <-chan error {
	ch := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- err
			return
		}
		_ = c.SetDeadline(time.Now().Add(bootTimeout))
		_, err = c.Write(data)
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		ch <- err
	}()
	return ch
}

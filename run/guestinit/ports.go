package guestinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// virtioPortsClass is the sysfs class directory of virtio-console ports.
// Linux's virtio_console creates one device per port, vportNpM for port M
// of device N, each with a "name" attribute holding the name the host
// gave the port (drivers/char/virtio_console.c, show_port_name). udev
// would turn the names into /dev/virtio-ports/NAME links, but there is no
// udev in the guest, so the init reads sysfs itself.
const virtioPortsClass = "/sys/class/virtio-ports"

// devDir is where devtmpfs creates the port's character device, under the
// same name as its sysfs directory.
const devDir = "/dev"

// deviceTimeout is how long the init waits for a device to show up: a
// virtio-console port or a block device. Devices appear asynchronously:
// the host names a port with a control message after the port exists,
// and a disk's node appears once its driver has probed it.
const deviceTimeout = 10 * time.Second

// pollInterval is how often the init looks again for a device that has
// not appeared yet.
const pollInterval = 5 * time.Millisecond

// findPort looks in classDir (normally virtioPortsClass) for the port
// named name and returns its device name, such as "vport0p1". With no
// such port it returns "" and a description of the ports it saw, for the
// error message. A missing classDir is not an error: it appears when
// virtio_console is loaded.
func findPort(classDir, name string) (dev string, seen []string, err error) {
	entries, err := os.ReadDir(classDir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("listing virtio-console ports: %w", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(classDir, e.Name(), "name"))
		if err != nil {
			// The port may be going away, or be too new to have
			// its attributes: look again on the next poll.
			continue
		}
		// The attribute is the name and a newline; a port the host
		// has not named yet reads "(null)" (sprintf of a NULL %s).
		got := strings.TrimSuffix(string(b), "\n")
		if got == name {
			return e.Name(), nil, nil
		}
		seen = append(seen, fmt.Sprintf("%s=%q", e.Name(), got))
	}
	return "", seen, nil
}

// waitForPort polls classDir every interval until a port named name
// appears, or timeout passes. The error names the port and lists the
// ports that were there.
func waitForPort(classDir, name string, timeout, interval time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		dev, seen, err := findPort(classDir, name)
		if err != nil {
			return "", err
		}
		if dev != "" {
			return dev, nil
		}
		if time.Now().After(deadline) {
			have := "none"
			if len(seen) > 0 {
				have = strings.Join(seen, ", ")
			}
			return "", fmt.Errorf("virtio-console port %q did not appear in %s within %v (ports there: %s)",
				name, classDir, timeout, have)
		}
		time.Sleep(interval)
	}
}

// waitForPath polls every interval until path exists, or timeout passes.
// what names the thing for the error message.
func waitForPath(path, what string, timeout, interval time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %s: %w", what, path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s did not appear within %v", what, path, timeout)
		}
		time.Sleep(interval)
	}
}

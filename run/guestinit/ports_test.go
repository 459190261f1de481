package guestinit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// addPort makes a fake sysfs port directory, as virtio_console does:
// vportNpM/name holding the name and a newline.
func addPort(t *testing.T, class, dev, name string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Join(class, dev), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(class, dev, "name"), []byte(name+"\n"), 0o644))
}

func TestFindPort(t *testing.T) {
	class := filepath.Join(t.TempDir(), "virtio-ports")

	// Before virtio_console is loaded there is no class directory.
	dev, seen, err := findPort(class, "govmm.ctl")
	require.NoError(t, err)
	assert.Empty(t, dev)
	assert.Empty(t, seen)

	addPort(t, class, "vport0p0", "(null)") // not named yet
	addPort(t, class, "vport0p1", "govmm.stdin")
	require.NoError(t, os.MkdirAll(filepath.Join(class, "vport0p3"), 0o755)) // no attributes yet
	dev, seen, err = findPort(class, "govmm.ctl")
	require.NoError(t, err)
	assert.Empty(t, dev)
	assert.Equal(t, []string{`vport0p0="(null)"`, `vport0p1="govmm.stdin"`}, seen)

	addPort(t, class, "vport0p2", "govmm.ctl")
	dev, _, err = findPort(class, "govmm.ctl")
	require.NoError(t, err)
	assert.Equal(t, "vport0p2", dev)
	dev, _, err = findPort(class, "govmm.stdin")
	require.NoError(t, err)
	assert.Equal(t, "vport0p1", dev)

	// A prefix is not a match.
	dev, _, err = findPort(class, "govmm")
	require.NoError(t, err)
	assert.Empty(t, dev)
}

func TestWaitForPortAppearsLater(t *testing.T) {
	class := filepath.Join(t.TempDir(), "virtio-ports")
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(30 * time.Millisecond)
		addPort(t, class, "vport1p1", "govmm.ctl")
	}()
	dev, err := waitForPort(class, "govmm.ctl", 5*time.Second, time.Millisecond)
	<-done
	require.NoError(t, err)
	assert.Equal(t, "vport1p1", dev)
}

func TestWaitForPortTimeout(t *testing.T) {
	class := filepath.Join(t.TempDir(), "virtio-ports")
	_, err := waitForPort(class, "govmm.ctl", 20*time.Millisecond, time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `virtio-console port "govmm.ctl" did not appear in `+class+` within 20ms (ports there: none)`)

	addPort(t, class, "vport0p1", "other")
	_, err = waitForPort(class, "govmm.ctl", 10*time.Millisecond, time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `(ports there: vport0p1="other")`)
}

func TestWaitForPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "vda")
	err := waitForPath(p, "block device", 10*time.Millisecond, time.Millisecond)
	require.Error(t, err)
	assert.Equal(t, "block device "+p+" did not appear within 10ms", err.Error())

	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = os.WriteFile(p, nil, 0o644)
	}()
	require.NoError(t, waitForPath(p, "block device", 5*time.Second, time.Millisecond))
}

//go:build linux

package guestinit

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// Wait statuses as the kernel encodes them (see the W* macros in glibc's
// bits/waitstatus.h): an exit code in bits 8-15, or a signal number in
// bits 0-6 with bit 7 set for a core dump; 0x7f in bits 0-7 for a stop.
const (
	exitShift = 8
	coreFlag  = 0x80
	stopped   = 0x7f
)

func TestExitStatusOf(t *testing.T) {
	for name, tc := range map[string]struct {
		ws   unix.WaitStatus
		want wire.ExitStatus
	}{
		"success":      {0, wire.ExitStatus{Status: 0}},
		"exit 3":       {3 << exitShift, wire.ExitStatus{Status: 3}},
		"exit 255":     {255 << exitShift, wire.ExitStatus{Status: 255}},
		"SIGKILL":      {unix.WaitStatus(unix.SIGKILL), wire.ExitStatus{Status: 137, Signal: 9}},
		"SIGSEGV+core": {unix.WaitStatus(unix.SIGSEGV) | coreFlag, wire.ExitStatus{Status: 139, Signal: 11}},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, exitStatusOf(tc.ws))
		})
	}
	st := exitStatusOf(unix.WaitStatus(unix.SIGSTOP)<<exitShift | stopped)
	assert.Equal(t, wire.StatusInitError, st.Status)
	assert.Contains(t, st.InitError, "unexpected wait status")
}

func TestModuleFlags(t *testing.T) {
	assert.Equal(t, 0, moduleFlags("/lib/modules/virtio_console.ko"))
	for _, p := range []string{"/m/9p.ko.xz", "/m/9p.ko.zst", "/m/9p.ko.gz"} {
		assert.Equal(t, unix.MODULE_INIT_COMPRESSED_FILE, moduleFlags(p), p)
	}
}

func TestErrnoName(t *testing.T) {
	assert.Equal(t, "ENOEXEC", errnoName(fmt.Errorf("wrapped: %w", unix.ENOEXEC)))
	assert.Equal(t, "plain", errnoName(errors.New("plain")))
}

func TestLoadModuleMissingFile(t *testing.T) {
	// Opening fails before any privileged call.
	err := loadModule(t.TempDir() + "/nothere.ko")
	assert.ErrorIs(t, err, unix.ENOENT)
	assert.Contains(t, err.Error(), "nothere.ko")
}

package kvm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func fakeHost(t *testing.T, modules []string, flags string) (sys, proc string) {
	t.Helper()
	root := t.TempDir()
	sys, proc = filepath.Join(root, "sys"), filepath.Join(root, "proc")
	for _, m := range modules {
		require.NoError(t, os.MkdirAll(filepath.Join(sys, "module", m), 0o755))
	}
	require.NoError(t, os.MkdirAll(proc, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(proc, "cpuinfo"),
		[]byte("processor\t: 0\nflags\t\t: fpu "+flags+" sse2\n"), 0o644))
	return sys, proc
}

func TestDetectBackend(t *testing.T) {
	for _, c := range []struct {
		modules []string
		flags   string
		want    Backend
	}{
		{[]string{"kvm", "kvm_pvm"}, "", BackendPVM},
		{[]string{"kvm", "kvm_intel"}, "vmx", BackendVMX},
		{[]string{"kvm", "kvm_amd"}, "svm", BackendSVM},
		{nil, "svm", BackendSVM},
		{nil, "vmx", BackendVMX},
		{nil, "", BackendUnknown},
	} {
		sys, proc := fakeHost(t, c.modules, c.flags)
		assert.Equal(t, c.want, DetectBackend(sys, proc), "modules %v flags %q", c.modules, c.flags)
	}
	assert.True(t, BackendSVM.HardwareAssisted())
	assert.False(t, BackendPVM.HardwareAssisted())
}

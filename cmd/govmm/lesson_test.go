package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/govmm/govmm/examples/lessons"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCLILessonList(t *testing.T) {
	status, out, _ := runCLI(t, "lesson")
	assert.Zero(t, status)
	for _, l := range lessons.All {
		assert.Contains(t, out, l.Name)
	}
	status, out, _ = runCLI(t, "lesson", "--help")
	assert.Zero(t, status)
	assert.Contains(t, out, "govmm lesson NAME")
}

func TestCLILessonBadInputs(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown lesson", []string{"lesson", "nope"}, `no lesson called "nope"`},
		{"flag before name", []string{"lesson", "--stats"}, "expected a lesson name"},
		{"kernel given", []string{"lesson", "hello", "--kernel", "x"}, "--kernel cannot be used"},
		{"build without names", []string{"lesson", "--build", t.TempDir()}, "needs a directory and at least one lesson name"},
		{"build unknown", []string{"lesson", "--build", t.TempDir(), "nope"}, `no lesson called "nope"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, stdout, stderr := runCLI(t, c.args...)
			assert.Equal(t, exitUsage, status)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, c.want)
		})
	}
}

func needBinutils(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"as", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: the lessons need GNU %s: %v", tool, err)
		}
	}
}

// TestCLILessonFile runs a changed copy of lesson 1, as a student would.
func TestCLILessonFile(t *testing.T) {
	needBinutils(t)
	needKVMDevice(t)
	src, err := lessons.Source("hello")
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "mine.S")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(string(src), "Hello from", "Greetings from", 1)), 0o644))
	status, out, stderr := runCLI(t, "lesson", path)
	require.Zero(t, status, stderr)
	assert.True(t, strings.HasPrefix(out, "Greetings from a real-mode guest"), out)

	status, _, stderr = runCLI(t, "lesson", filepath.Join(t.TempDir(), "missing.S"))
	assert.Equal(t, exitError, status)
	assert.Contains(t, stderr, "missing.S")
}

func needKVMDevice(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("skipping: needs /dev/kvm: %v", err)
	}
	f.Close()
}

func TestCLILessonBuild(t *testing.T) {
	needBinutils(t)
	dir := t.TempDir()
	status, out, stderr := runCLI(t, "lesson", "--build", dir, "hello", "longmode")
	require.Zero(t, status, stderr)
	assert.Equal(t, filepath.Join(dir, "hello.bin")+"\n"+filepath.Join(dir, "longmode.bin")+"\n", out)
	for _, n := range []string{"hello", "longmode"} {
		fi, err := os.Stat(filepath.Join(dir, n+".bin"))
		require.NoError(t, err)
		assert.NotZero(t, fi.Size())
	}
}

// TestCLILessonRun boots lesson 1 through the command line: it prints its
// two lines and powers off, and govmm exits 0.
func TestCLILessonRun(t *testing.T) {
	needBinutils(t)
	needKVMDevice(t)
	status, out, stderr := runCLI(t, "lesson", "hello", "--log-level", "info")
	require.Zero(t, status, stderr)
	assert.True(t, strings.HasPrefix(out, "Hello from a real-mode guest at 0000:7C00!\r\n"), out)
	assert.Contains(t, stderr, `detail="ACPI S5"`)
}

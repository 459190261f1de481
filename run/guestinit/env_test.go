package guestinit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/run/wire"
)

func TestBuildEnv(t *testing.T) {
	assert.Equal(t, defaultEnv, buildEnv(nil))

	got := buildEnv([]string{"CI=1", "HOME=/home/ci", "A=1", "A=2", "EMPTY="})
	assert.Equal(t, []string{
		"CI=1", "HOME=/home/ci", "A=2", "EMPTY=",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"TERM=dumb",
	}, got)

	// An empty value still counts as set.
	got = buildEnv([]string{"PATH=", "TERM=xterm"})
	assert.Equal(t, []string{"PATH=", "TERM=xterm", "HOME=/root"}, got)
}

func TestGetenv(t *testing.T) {
	env := []string{"A=1", "PATH=/bin:/usr/bin", "B=x=y"}
	assert.Equal(t, "/bin:/usr/bin", getenv(env, "PATH"))
	assert.Equal(t, "x=y", getenv(env, "B"))
	assert.Equal(t, "", getenv(env, "C"))
}

// writeFile makes a file with the given mode under dir.
func writeFile(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("#!/bin/sh\n"), mode))
	require.NoError(t, os.Chmod(p, mode)) // past the umask
	return p
}

func TestLookPath(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeFile(t, a, "plain", 0o644) // found first, but not executable
	writeFile(t, b, "plain", 0o755) // so this one wins
	writeFile(t, a, "onlyread", 0o644)
	writeFile(t, b, "tool", 0o700)
	require.NoError(t, os.Mkdir(filepath.Join(a, "adir"), 0o755))
	path := a + ":" + b

	for name, tc := range map[string]struct {
		name, path string
		want       string
		status     int
		errText    string
	}{
		"in second dir":         {"tool", path, b + "/tool", 0, ""},
		"skips non-executable":  {"plain", path, b + "/plain", 0, ""},
		"only non-executable":   {"onlyread", path, "", wire.StatusNotExecutable, a + "/onlyread: permission denied"},
		"not found":             {"nothere", path, "", wire.StatusNotFound, "not found"},
		"directory is skipped":  {"adir", path, "", wire.StatusNotFound, "not found"},
		"empty PATH":            {"tool", "", "", wire.StatusNotFound, "not found"},
		"slash: used as is":     {b + "/tool", "", b + "/tool", 0, ""},
		"slash: missing":        {a + "/nothere", path, "", wire.StatusNotFound, "not found"},
		"slash: not executable": {a + "/onlyread", path, "", wire.StatusNotExecutable, "permission denied"},
		"slash: directory":      {a + "/adir", path, "", wire.StatusNotExecutable, "is a directory"},
	} {
		t.Run(name, func(t *testing.T) {
			got, status, err := lookPath(tc.name, tc.path)
			assert.Equal(t, tc.status, status)
			if tc.errText == "" {
				require.NoError(t, err)
				assert.Equal(t, tc.want, got)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.errText)
		})
	}
}

func TestLookPathEmptyEntryIsCurrentDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "here", 0o755)
	t.Chdir(dir)
	got, _, err := lookPath("here", "/nonexistent::/also-not")
	require.NoError(t, err)
	assert.Equal(t, "./here", got)
}

func TestCheckWorkDir(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "f", 0o644)
	assert.NoError(t, checkWorkDir(""))
	assert.NoError(t, checkWorkDir(dir))
	err := checkWorkDir(dir + "/missing")
	require.Error(t, err)
	assert.Equal(t, "working directory "+dir+"/missing does not exist in the guest", err.Error())
	err = checkWorkDir(file)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is not a directory")
}

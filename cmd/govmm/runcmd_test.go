package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/govmm/govmm/internal/clitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runStatusError is `govmm run`'s status for a setup error, written out
// so the test does not lean on the constant.
const runStatusError = 125

func TestCLIRunBadInputs(t *testing.T) {
	const unset = "GOVMM_TEST_UNSET_VAR_XYZ"
	_, isSet := os.LookupEnv(unset)
	require.False(t, isSet, "%s must not be set", unset)
	t.Setenv("TMPDIR", t.TempDir()) // where a console log would go
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-bzImage")
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	k := []string{"run", "--kernel", missing}
	with := func(args ...string) []string { return append(append([]string{}, k...), args...) }

	for _, c := range []struct {
		name string
		args []string
		want []string // fragments of the one line
	}{
		{"no command", []string{"run", "--kernel", missing}, []string{"no command to run"}},
		{"no command after --", []string{"run", "--kernel", missing, "--"}, []string{"no command to run"}},
		{"nothing at all", []string{"run"}, []string{"no command to run"}},
		{"no kernel", []string{"run", "--", "true"}, []string{"--kernel is required"}},
		{"missing kernel", with("--", "true"), []string{"cannot read kernel " + missing, "no such file or directory"}},
		{"kernel is a file of text", []string{"run", "--kernel", file, "--", "true"}, []string{file}},
		{"timeout not a duration", with("--timeout", "abc", "--", "true"), []string{`--timeout "abc"`, "not a duration"}},
		{"timeout without a unit", with("--timeout", "30", "--", "true"), []string{"not a duration"}},
		{"negative timeout", with("--timeout", "-5s", "--", "true"), []string{`--timeout "-5s"`, "negative"}},
		{"zero boot timeout", with("--boot-timeout", "0s", "--", "true"), []string{"--boot-timeout", "positive"}},
		{"missing share", with("--share", "/nonexistent-govmm-share", "--", "true"),
			[]string{"/nonexistent-govmm-share", "no such directory"}},
		{"share of a file", with("--share", file, "--", "true"), []string{"not a directory"}},
		{"share on the guest's root", with("--share", dir+":/", "--", "true"), []string{"--rootfs"}},
		{"env without a name", with("--env", "=x", "--", "true"), []string{`--env "=x"`, "K=V"}},
		{"env not set", with("--env", unset, "--", "true"), []string{unset, "not set"}},
		{"missing rootfs", with("--rootfs", "/nonexistent-govmm-root", "--", "true"),
			[]string{"--rootfs /nonexistent-govmm-root", "not a directory"}},
		{"rootfs is a file", with("--rootfs", file, "--", "true"), []string{"--rootfs " + file}},
		{"zero CPUs", with("--cpus", "0", "--", "true"), []string{"--cpus 0", "between 1 and 64"}},
		{"too many CPUs", with("--cpus", "65", "--", "true"), []string{"--cpus 65"}},
		{"CPUs not a number", with("--cpus", "two", "--", "true"), []string{"--cpus"}},
		{"bad memory size", with("--mem", "12X", "--", "true"), []string{"--mem", "12X"}},
		{"too little memory", with("--mem", "16M", "--", "true"), []string{"--mem 16M"}},
		{"bad log level", with("--log-level", "loud", "--", "true"), []string{"--log-level"}},
		{"bad disk option", with("--disk", file+",rx", "--", "true"), []string{"rx"}},
		{"net without tap", with("--net", "mac=02:00:00:00:00:01", "--", "true"), []string{"--net"}},
		{"unknown flag", with("--frobnicate", "--", "true"), []string{"unknown flag", "--frobnicate"}},
		{"rootfs and disk", with("--rootfs", "/", "--disk", file, "--", "true"), []string{"--rootfs and --disk"}},
		// Valid flags reach the kernel check.
		{"good flags, missing kernel", with("--timeout", "1m", "--env", "A=b", "--share", dir+":/mnt:ro",
			"--cpus", "2", "--mem", "512M", "--", "sh", "-c", "exit 3"), []string{"cannot read kernel " + missing}},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, stdout, stderr := runCLI(t, c.args...)
			assert.Equal(t, runStatusError, status)
			assert.Empty(t, stdout)
			clitest.AssertOneLine(t, stderr, c.want...)
		})
	}
	left, err := filepath.Glob(filepath.Join(os.Getenv("TMPDIR"), "*"))
	require.NoError(t, err)
	assert.Empty(t, left, "refused runs leave nothing behind")
}

// TestCLIRunCommandFlagsAreTheCommands: flags after COMMAND belong to it,
// not to govmm.
func TestCLIRunCommandFlagsAreTheCommands(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "bzImage")
	status, _, stderr := runCLI(t, "run", "--kernel", missing, "ls", "--cpus", "0", "--frobnicate")
	assert.Equal(t, runStatusError, status)
	clitest.AssertOneLine(t, stderr, "cannot read kernel "+missing)
}

func TestCLIRunHelp(t *testing.T) {
	for _, args := range [][]string{{"run", "--help"}, {"run", "-h"}, {"run", "--kernel", "x", "--help", "--", "true"}} {
		status, stdout, stderr := runCLI(t, args...)
		assert.Equal(t, 0, status, "%v", args)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "Usage: govmm run --kernel PATH")
		assert.NotContains(t, stderr, "govmm: ", "help is no error")
		for _, st := range []string{"121", "122", "124", "125", "126", "127"} {
			assert.Regexp(t, regexp.MustCompile(`(?m)^\s+`+st+`\s+\S`), stderr, "exit status %s is listed", st)
		}
		for _, flag := range []string{"--kernel", "--modules", "--rootfs", "--share", "--timeout", "--boot-timeout", "--console-log"} {
			assert.Contains(t, stderr, flag)
		}
	}
}

// TestCLIRunModulesOfAnotherKernel: --modules holding another kernel's
// tree is refused before any VM starts, naming both releases.
func TestCLIRunModulesOfAnotherKernel(t *testing.T) {
	guest := filepath.Join("..", "..", "build", "guests", "debian-generic")
	kernel := filepath.Join(guest, "vmlinuz")
	if _, err := os.Stat(kernel); err != nil {
		t.Skipf("needs %s (make the debian-generic guest)", kernel)
	}
	rel, err := os.ReadFile(filepath.Join(guest, "kernel-release"))
	require.NoError(t, err)
	release := strings.TrimSpace(string(rel))
	require.NotEmpty(t, release)
	require.NotEqual(t, "9.9.9-other", release)

	mods := t.TempDir()
	other := filepath.Join(mods, "lib", "modules", "9.9.9-other")
	require.NoError(t, os.MkdirAll(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, "modules.dep"), nil, 0o644))

	for _, c := range []struct{ name, flag string }{
		{"a root above lib/modules", mods},
		{"a lib/modules directory", filepath.Join(mods, "lib", "modules")},
		{"the release directory", other},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, stdout, stderr := runCLI(t, "run", "--kernel", kernel, "--modules", c.flag, "--", "true")
			assert.Equal(t, runStatusError, status)
			assert.Empty(t, stdout)
			clitest.AssertOneLine(t, stderr, "9.9.9-other", release)
		})
	}
}

// Package clitest holds checks shared by the tests of govmm's command-line
// surfaces (cmd/govmm and the packages behind its commands).
package clitest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// AssertOneLine checks that stderr is exactly one "govmm: ..." line, with
// no Go stack trace or panic, holding each of want: the form every bad
// input must be reported in.
func AssertOneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	assert.True(t, strings.HasPrefix(stderr, "govmm: "), "a govmm: line: %q", stderr)
	assert.True(t, strings.HasSuffix(stderr, "\n"), "%q", stderr)
	assert.NotContains(t, stderr, "goroutine")
	assert.NotContains(t, stderr, "panic:")
	for _, w := range want {
		assert.Contains(t, stderr, w)
	}
}

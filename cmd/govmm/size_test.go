package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"256M": 256 << 20, "1G": 1 << 30, "8G": 8 << 30, "512": 512 << 20,
		"64MiB": 64 << 20, "2g": 2 << 30, "4096K": 4 << 20, "1T": 1 << 40, "1GB": 1 << 30,
	} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "M", "12X", "-1G", "1.5G", "abc", "99999999999999999999G", "18014398509481984G"} {
		_, err := parseSize(in)
		assert.Error(t, err, in)
	}
}

package net

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseNetFlag(t *testing.T) {
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		require.NoError(t, err)
		return m
	}
	for _, tc := range []struct {
		in   string
		want Options
	}{
		{"tap=gv0", Options{TapName: "gv0"}},
		{"tap=tap-vm.1_x", Options{TapName: "tap-vm.1_x"}},
		{"tap=gv0,mac=02:00:5e:10:00:01", Options{TapName: "gv0", MAC: mac("02:00:5e:10:00:01")}},
		{"mac=52-54-00-12-34-56,tap=gv0", Options{TapName: "gv0", MAC: mac("52:54:00:12:34:56")}},
		{"tap=gv0,mac=0200.5e10.0001", Options{TapName: "gv0", MAC: mac("02:00:5e:10:00:01")}},
		{"tap=123456789012345", Options{TapName: "123456789012345"}},
	} {
		got, err := ParseNetFlag(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseNetFlagErrorsNameTheBadPart(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // substrings of the error
	}{
		{"", []string{"not KEY=VALUE"}},
		{"gv0", []string{`"gv0" is not KEY=VALUE`}},
		{"mac=02:00:00:00:00:01", []string{"tap=NAME is required"}},
		{"tap=", []string{"tap name is empty"}},
		{"tap=gv0,tap=gv1", []string{"tap= given twice"}},
		{"tap=gv0,mac=02:00:00:00:00:01,mac=02:00:00:00:00:02", []string{"mac= given twice"}},
		{"tap=gv0,bridge=br0", []string{`unknown key "bridge"`}},
		{"tap=gv0,", []string{`"" is not KEY=VALUE`}},
		{"tap=1234567890123456", []string{"IFNAMSIZ", "16 bytes"}},
		{"tap=a/b", []string{`contains '/'`}},
		{"tap=a b", []string{`contains ' '`}},
		{"tap=a:b", []string{`contains ':'`}},
		{"tap=tap%d", []string{`contains '%'`}},
		{"tap=..", []string{"not allowed"}},
		{"tap=gv0,mac=zz:00:00:00:00:01", []string{"mac=zz:00:00:00:00:01 is not a MAC address"}},
		{"tap=gv0,mac=01:00:5e:00:00:01", []string{"multicast"}},
		{"tap=gv0,mac=ff:ff:ff:ff:ff:ff", []string{"multicast"}},
		{"tap=gv0,mac=00:00:00:00:00:00", []string{"all zeros"}},
		{"tap=gv0,mac=02:00:00:00:00:00:00:01", []string{"not a 6-byte"}},
	} {
		_, err := ParseNetFlag(tc.in)
		require.Error(t, err, "%q", tc.in)
		for _, w := range tc.want {
			assert.Contains(t, err.Error(), w, "%q", tc.in)
		}
		assert.True(t, strings.Contains(err.Error(), tc.in), "error for %q quotes the flag: %v", tc.in, err)
	}
}

func TestMACFromName(t *testing.T) {
	a, b := MACFromName("gv0"), MACFromName("gv1")
	assert.Equal(t, a, MACFromName("gv0"), "stable")
	assert.NotEqual(t, a, b)
	for _, name := range []string{"gv0", "gv1", "tap0", "x", "123456789012345"} {
		m := MACFromName(name)
		require.Len(t, m, macLen)
		assert.Zero(t, m[0]&macGroupBit, "%s: unicast", m)
		assert.NotZero(t, m[0]&macLocalBit, "%s: locally administered", m)
		assert.NoError(t, checkMAC(m))
	}
	// The documented rule, spelled out for one name: SHA-256("gv0") starts
	// with 58 a7 8c ff c7 6e (printf gv0 | sha256sum); 0x58 with the group
	// bit cleared and the local bit set is 0x5a.
	assert.Equal(t, "5a:a7:8c:ff:c7:6e", MACFromName("gv0").String())
}

package wire

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/virtio/p9"
)

// fullConfig uses every field.
func fullConfig() *Config {
	return &Config{
		Args:     []string{"make", "-C", "/src", "test"},
		Env:      []string{"CI=1", "EMPTY="},
		Dir:      "/src",
		Modules:  []string{"/lib/modules/virtio_console.ko", "/lib/modules/9pnet.ko.xz"},
		Root:     &Root{Kind: RootBlock, Source: "/dev/vda", FSType: "ext4", ReadOnly: true},
		Tmpfs:    []string{"/tmp", "/run"},
		Shares:   []Share{{Tag: "src", Path: "/src"}, {Tag: "out", Path: "/src/out", ReadOnly: true}},
		Hostname: "ci-runner",
	}
}

func TestConfigRoundTrip(t *testing.T) {
	for _, c := range []*Config{
		fullConfig(),
		{Args: []string{"true"}},
		{Args: []string{"sh", "-c", "echo hi"}, Root: &Root{Kind: Root9P, Source: "root"}},
	} {
		data, err := json.Marshal(c)
		require.NoError(t, err)
		got, err := ParseConfig(data)
		require.NoError(t, err, "%s", data)
		assert.Equal(t, c, got)
	}
}

func TestConfigJSONNames(t *testing.T) {
	// The names the host writes and a person reads in config.json.
	data, err := json.Marshal(fullConfig())
	require.NoError(t, err)
	for _, name := range []string{`"args"`, `"env"`, `"dir"`, `"modules"`, `"root"`, `"kind"`,
		`"source"`, `"fstype"`, `"read_only"`, `"tmpfs"`, `"shares"`, `"tag"`, `"path"`, `"hostname"`} {
		assert.Contains(t, string(data), name)
	}
}

func TestParseConfigRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		json string
		want string
	}{
		"not JSON":      {`{"args": [`, "wire: config"},
		"unknown field": {`{"args":["x"],"argz":["y"]}`, `unknown field "argz"`},
		"trailing data": {`{"args":["x"]} {}`, "data after the JSON object"},
		"invalid":       {`{"args":[]}`, "no command"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err := ParseConfig([]byte("{\"args\":[\"x\"]}\n\t "))
	assert.NoError(t, err, "trailing white space is fine")
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		edit func(c *Config)
		want string
	}{
		"no args":          {func(c *Config) { c.Args = nil }, "no command"},
		"empty args[0]":    {func(c *Config) { c.Args[0] = "" }, "args[0]) is empty"},
		"NUL in arg":       {func(c *Config) { c.Args[2] = "a\x00b" }, "args[2]"},
		"env without =":    {func(c *Config) { c.Env = []string{"CI"} }, `env[0]: "CI" is not KEY=VALUE`},
		"env empty key":    {func(c *Config) { c.Env = []string{"=x"} }, "empty key"},
		"env NUL":          {func(c *Config) { c.Env = []string{"A=\x00"} }, "NUL"},
		"relative dir":     {func(c *Config) { c.Dir = "src" }, `dir: path "src" is not absolute`},
		"unclean dir":      {func(c *Config) { c.Dir = "/src/../etc" }, `not clean (want "/etc")`},
		"relative module":  {func(c *Config) { c.Modules[1] = "9p.ko" }, "modules[1]"},
		"unknown root":     {func(c *Config) { c.Root.Kind = "nfs" }, `root: unknown kind "nfs"`},
		"block relative":   {func(c *Config) { c.Root.Source = "vda" }, "root: block device"},
		"bad fstype":       {func(c *Config) { c.Root.FSType = "ext4,ro" }, `fstype "ext4,ro"`},
		"9p with fstype":   {func(c *Config) { c.Root.Kind = Root9P; c.Root.Source = "r" }, "fstype"},
		"9p empty tag":     {func(c *Config) { *c.Root = Root{Kind: Root9P} }, "empty 9p mount tag"},
		"tmpfs relative":   {func(c *Config) { c.Tmpfs[0] = "tmp" }, "tmpfs[0]"},
		"tmpfs over /":     {func(c *Config) { c.Tmpfs[0] = "/" }, "cannot mount over /"},
		"tmpfs twice":      {func(c *Config) { c.Tmpfs[1] = "/tmp" }, `tmpfs[1]: path "/tmp" is already the mount point of tmpfs[0]`},
		"share over tmpfs": {func(c *Config) { c.Shares[0].Path = "/tmp" }, "already the mount point of tmpfs[0]"},
		"share tag space":  {func(c *Config) { c.Shares[1].Tag = "a b" }, `shares[1]: 9p mount tag "a b"`},
		"share tag long":   {func(c *Config) { c.Shares[1].Tag = strings.Repeat("t", MaxTagLen+1) }, "longer than 64"},
		"share relative":   {func(c *Config) { c.Shares[0].Path = "src" }, `shares[0] (tag "src")`},
		"share over /":     {func(c *Config) { c.Shares[0].Path = "/" }, "cannot mount over /"},
		"hostname":         {func(c *Config) { c.Hostname = "a b" }, `hostname "a b"`},
		"hostname long":    {func(c *Config) { c.Hostname = strings.Repeat("h", MaxHostnameLen+1) }, "longer than 64"},
	} {
		t.Run(name, func(t *testing.T) {
			c := fullConfig()
			tc.edit(c)
			err := c.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	require.NoError(t, fullConfig().Validate())
}

func TestMaxTagLenMatchesDevice(t *testing.T) {
	// A tag the config accepts must be one the device can serve.
	assert.Equal(t, p9.MaxTagLen, MaxTagLen)
}

func TestDecodeExit(t *testing.T) {
	for _, good := range []ExitStatus{
		{Status: 0},
		{Status: 255},
		{Status: 137, Signal: 9},
		{Status: StatusInitError, InitError: "mounting the root: no such device"},
	} {
		p, err := json.Marshal(good)
		require.NoError(t, err)
		got, err := DecodeExit(p)
		require.NoError(t, err)
		assert.Equal(t, good, got)
	}
	for payload, want := range map[string]string{
		`{"status":256}`:             "status 256 is not in 0..255",
		`{"status":-1}`:              "status -1",
		`{"status":193,"signal":65}`: "signal 65 is not in 0..64",
		`{"status":1,"signal":9}`:    "does not match signal 9 (want 137)",
		`[1]`:                        "Exit payload",
		``:                           "Exit payload",
	} {
		_, err := DecodeExit([]byte(payload))
		require.Error(t, err, payload)
		assert.Contains(t, err.Error(), want, payload)
	}
}

func TestDecodeHello(t *testing.T) {
	h, err := DecodeHello([]byte(`{"kernel":"6.1.0-56-cloud-amd64"}`))
	require.NoError(t, err)
	assert.Equal(t, "6.1.0-56-cloud-amd64", h.Kernel)
	for payload, want := range map[string]string{
		`{"kernel":""}`: "kernel release of 0 bytes",
		`{"kernel":"` + strings.Repeat("k", 65) + `"}`: "kernel release of 65 bytes",
		`{"kernel":"6.1\u001b[2J"}`:                    "unprintable",
		`{"kernel":5}`:                                 "Hello payload",
	} {
		_, err := DecodeHello([]byte(payload))
		require.Error(t, err, payload)
		assert.Contains(t, err.Error(), want, payload)
	}
}

// FuzzParseConfig checks that ParseConfig never panics, and that a
// config it accepts survives encoding and parsing again unchanged.
func FuzzParseConfig(f *testing.F) {
	data, _ := json.Marshal(fullConfig())
	f.Add(data)
	f.Add([]byte(`{"args":["true"]}`))
	f.Add([]byte(`{"args":["sh"],"root":{"kind":"9p","source":"root"},"shares":[{"tag":"a","path":"/a"}]}`))
	f.Add([]byte(`{"args":["x"],"tmpfs":["/tmp","/tmp"]}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := ParseConfig(in)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config Validate rejects: %v", err)
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(again)
		if err != nil {
			t.Fatalf("re-encoded config %s rejected: %v", again, err)
		}
		// JSON turns an empty slice into nothing (omitempty), so
		// compare encodings rather than structs.
		again2, _ := json.Marshal(c2)
		if string(again) != string(again2) {
			t.Fatalf("config changed: %s then %s", again, again2)
		}
	})
}

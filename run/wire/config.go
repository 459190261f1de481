package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Root kinds: where the command's root file system comes from.
const (
	// Root9P mounts a host directory over virtio-9p; Root.Source is
	// its mount tag.
	Root9P = "9p"

	// RootBlock mounts a virtio-blk disk; Root.Source is its device
	// node, such as /dev/vda.
	RootBlock = "block"
)

// DefaultBlockFSType is the file system a block root is mounted as when
// Root.FSType is empty.
const DefaultBlockFSType = "ext4"

// MaxTagLen is the longest 9p mount tag a Config may name. It is the
// limit govmm's virtio-9p device puts on the tags it serves
// (virtio/p9.MaxTagLen); a test keeps the two equal.
const MaxTagLen = 64

// MaxHostnameLen is the longest host name Linux accepts: HOST_NAME_MAX,
// __NEW_UTS_LEN in include/uapi/linux/utsname.h (man 2 sethostname).
const MaxHostnameLen = 64

// MaxFSTypeLen bounds Root.FSType. Linux file system type names are short
// ("ext4", "btrfs"); the bound only keeps error messages readable.
const MaxFSTypeLen = 32

// Config is what the host asks the guest init to do: which root to mount,
// which modules to load, and which command to run. The host writes it as
// JSON to ConfigPath; ParseConfig reads and validates it.
type Config struct {
	// Args is the command and its arguments. Args[0] is looked up in
	// PATH (from Env) inside the guest root, as a shell would.
	Args []string `json:"args"`

	// Env holds "KEY=VALUE" entries. The init adds
	// PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin,
	// HOME=/root and TERM=dumb when they are absent.
	Env []string `json:"env,omitempty"`

	// Dir is the command's working directory inside the guest; "" means
	// "/". The init fails with a clear error if it does not exist.
	Dir string `json:"dir,omitempty"`

	// Modules are kernel module files inside the initramfs, in load
	// order: dependencies first.
	Modules []string `json:"modules,omitempty"`

	// Root is the command's root file system; nil runs the command in
	// the initramfs itself.
	Root *Root `json:"root,omitempty"`

	// Tmpfs lists directories of the new root that get a fresh tmpfs,
	// such as /tmp, /run and /var/tmp. They are mounted before Shares.
	Tmpfs []string `json:"tmpfs,omitempty"`

	// Shares are host directories mounted over virtio-9p.
	Shares []Share `json:"shares,omitempty"`

	// Hostname is the guest's host name; "" leaves the kernel's default.
	Hostname string `json:"hostname,omitempty"`
}

// Root describes the file system the command runs in.
type Root struct {
	// Kind is Root9P or RootBlock.
	Kind string `json:"kind"`

	// Source is the 9p mount tag (Root9P) or the block device node,
	// such as /dev/vda (RootBlock).
	Source string `json:"source"`

	// FSType is the file system on a block device; "" means
	// DefaultBlockFSType. It must be empty for a 9p root.
	FSType string `json:"fstype,omitempty"`

	// ReadOnly mounts the root read-only.
	ReadOnly bool `json:"read_only,omitempty"`
}

// Share is a host directory the guest mounts over virtio-9p.
type Share struct {
	// Tag is the mount tag of the virtio-9p device serving the
	// directory.
	Tag string `json:"tag"`

	// Path is the absolute mount point in the guest. The init creates
	// it when it is missing.
	Path string `json:"path"`

	// ReadOnly mounts the share read-only.
	ReadOnly bool `json:"read_only,omitempty"`
}

// ParseConfig decodes a JSON Config and validates it. Fields it does not
// know are an error: the host and the init come from one binary, so an
// unknown field is a bug, not a newer version.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("wire: config: %w", err)
	}
	// Decode stops after the first JSON value; anything but white space
	// after it means the file is not what the host wrote.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("wire: config: data after the JSON object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks that the init can carry out c: a command, absolute
// clean paths, known root kind, valid mount tags, and no two mounts at
// one path. The error names the field and value at fault.
func (c *Config) Validate() error {
	if len(c.Args) == 0 {
		return errors.New("wire: config: no command (args is empty)")
	}
	if c.Args[0] == "" {
		return errors.New("wire: config: the command name (args[0]) is empty")
	}
	for i, a := range c.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("wire: config: args[%d] %q contains a NUL byte", i, a)
		}
	}
	for i, kv := range c.Env {
		if err := checkEnv(kv); err != nil {
			return fmt.Errorf("wire: config: env[%d]: %w", i, err)
		}
	}
	if c.Dir != "" {
		if err := checkPath(c.Dir); err != nil {
			return fmt.Errorf("wire: config: dir: %w", err)
		}
	}
	for i, m := range c.Modules {
		if err := checkPath(m); err != nil {
			return fmt.Errorf("wire: config: modules[%d]: %w", i, err)
		}
	}
	if c.Root != nil {
		if err := c.Root.validate(); err != nil {
			return fmt.Errorf("wire: config: root: %w", err)
		}
	}
	// Every mount point may appear once, among Tmpfs and Shares
	// together: a second mount at the same path would hide the first.
	seen := map[string]string{}
	claim := func(p, what string) error {
		if p == "/" {
			return fmt.Errorf("%s: cannot mount over / (use root for that)", what)
		}
		if other, ok := seen[p]; ok {
			return fmt.Errorf("%s: path %q is already the mount point of %s", what, p, other)
		}
		seen[p] = what
		return nil
	}
	for i, p := range c.Tmpfs {
		what := fmt.Sprintf("tmpfs[%d]", i)
		if err := checkPath(p); err != nil {
			return fmt.Errorf("wire: config: %s: %w", what, err)
		}
		if err := claim(p, what); err != nil {
			return fmt.Errorf("wire: config: %w", err)
		}
	}
	for i, s := range c.Shares {
		what := fmt.Sprintf("shares[%d] (tag %q)", i, s.Tag)
		if err := checkTag(s.Tag); err != nil {
			return fmt.Errorf("wire: config: shares[%d]: %w", i, err)
		}
		if err := checkPath(s.Path); err != nil {
			return fmt.Errorf("wire: config: %s: %w", what, err)
		}
		if err := claim(s.Path, what); err != nil {
			return fmt.Errorf("wire: config: %w", err)
		}
	}
	if c.Hostname != "" {
		if err := checkHostname(c.Hostname); err != nil {
			return fmt.Errorf("wire: config: %w", err)
		}
	}
	return nil
}

// validate checks a Root.
func (r *Root) validate() error {
	switch r.Kind {
	case Root9P:
		if r.FSType != "" {
			return fmt.Errorf("fstype %q given for a 9p root (only block roots have one)", r.FSType)
		}
		return checkTag(r.Source)
	case RootBlock:
		if err := checkPath(r.Source); err != nil {
			return fmt.Errorf("block device: %w", err)
		}
		return checkFSType(r.FSType)
	default:
		return fmt.Errorf("unknown kind %q (want %q or %q)", r.Kind, Root9P, RootBlock)
	}
}

// checkPath accepts absolute, clean paths without NUL bytes. Clean means
// no "..", "." or doubled slashes, so a mount point cannot climb out of
// the new root it is joined to.
func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	case !path.IsAbs(p):
		return fmt.Errorf("path %q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (want %q)", p, path.Clean(p))
	}
	return nil
}

// checkTag accepts what govmm's virtio-9p device serves: 1 to MaxTagLen
// bytes of printable ASCII without spaces. Linux matches the tag given as
// the mount source against each device's tag with strcmp
// (net/9p/trans_virtio.c, p9_virtio_create).
func checkTag(tag string) error {
	if tag == "" {
		return errors.New("empty 9p mount tag")
	}
	if len(tag) > MaxTagLen {
		return fmt.Errorf("9p mount tag %.20q... is %d bytes, longer than %d", tag, len(tag), MaxTagLen)
	}
	for _, b := range []byte(tag) {
		if b <= ' ' || b > '~' {
			return fmt.Errorf("9p mount tag %q: only printable ASCII without spaces", tag)
		}
	}
	return nil
}

// checkFSType accepts "" or a short name of letters, digits, '.', '_' and
// '-', the characters of Linux's file system type names.
func checkFSType(t string) error {
	if len(t) > MaxFSTypeLen {
		return fmt.Errorf("fstype %.20q... is longer than %d bytes", t, MaxFSTypeLen)
	}
	for _, r := range t {
		if !isNameChar(r) {
			return fmt.Errorf("fstype %q: %q is not a letter, digit, '.', '_' or '-'", t, r)
		}
	}
	return nil
}

// checkEnv accepts "KEY=VALUE" with a non-empty key and no NUL byte
// (execve(2) passes the environment as NUL-terminated strings).
func checkEnv(kv string) error {
	if strings.IndexByte(kv, 0) >= 0 {
		return fmt.Errorf("%q contains a NUL byte", kv)
	}
	k, _, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("%q is not KEY=VALUE", kv)
	}
	if k == "" {
		return fmt.Errorf("%q has an empty key", kv)
	}
	return nil
}

// checkHostname accepts 1 to MaxHostnameLen bytes of letters, digits,
// '.', '_' and '-'.
func checkHostname(h string) error {
	if len(h) > MaxHostnameLen {
		return fmt.Errorf("hostname %.20q... is %d bytes, longer than %d", h, len(h), MaxHostnameLen)
	}
	for _, r := range h {
		if !isNameChar(r) {
			return fmt.Errorf("hostname %q: %q is not a letter, digit, '.', '_' or '-'", h, r)
		}
	}
	return nil
}

// isNameChar reports whether r is an ASCII letter, digit, '.', '_' or '-'.
func isNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		r == '.' || r == '_' || r == '-'
}

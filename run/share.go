package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Share is a host directory the guest mounts over virtio-9p.
type Share struct {
	Host     string // absolute path on the host
	Guest    string // absolute path in the guest
	ReadOnly bool
}

// ParseShare parses a --share value, HOST[:GUEST][:ro]: the host
// directory, where the guest sees it (the same path if left out), and ro
// for a read-only share (rw, the default, may be written too). HOST must
// be an existing directory; a relative HOST is taken from the current
// directory.
func ParseShare(s string) (Share, error) {
	parts := strings.Split(s, ":")
	var sh Share
	switch last := parts[len(parts)-1]; {
	case len(parts) > 1 && last == "ro":
		sh.ReadOnly = true
		parts = parts[:len(parts)-1]
	case len(parts) > 1 && last == "rw":
		parts = parts[:len(parts)-1]
	}
	if len(parts) > 2 {
		return Share{}, fmt.Errorf("--share %q: want HOST[:GUEST][:ro]", s)
	}
	if parts[0] == "" {
		return Share{}, fmt.Errorf("--share %q: the host directory is empty", s)
	}
	host, err := filepath.Abs(parts[0])
	if err != nil {
		return Share{}, fmt.Errorf("--share %q: %w", s, err)
	}
	fi, err := os.Stat(host)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return Share{}, fmt.Errorf("--share %s: no such directory on the host", parts[0])
	case err != nil:
		return Share{}, fmt.Errorf("--share %s: %w", parts[0], err)
	case !fi.IsDir():
		return Share{}, fmt.Errorf("--share %s: not a directory (only directories can be shared)", parts[0])
	}
	sh.Host = host
	sh.Guest = host
	if len(parts) == 2 {
		if !filepath.IsAbs(parts[1]) {
			return Share{}, fmt.Errorf("--share %q: the guest path %q must be absolute", s, parts[1])
		}
		sh.Guest = filepath.Clean(parts[1])
	}
	if sh.Guest == "/" {
		return Share{}, fmt.Errorf("--share %q: cannot mount a share on the guest's /; use --rootfs", s)
	}
	return sh, nil
}

// guestDir is the guest's working directory for the host directory cwd:
// the same place seen through a share (the deepest share holding it), or
// cwd itself when the guest root is the host's own /, or "/".
func guestDir(cwd, rootfs string, shares []Share) string {
	best := -1
	for i, sh := range shares {
		if within(cwd, sh.Host) && (best < 0 || len(sh.Host) > len(shares[best].Host)) {
			best = i
		}
	}
	if best >= 0 {
		rel, _ := filepath.Rel(shares[best].Host, cwd)
		return filepath.Join(shares[best].Guest, rel)
	}
	if rootfs == "/" {
		return cwd
	}
	return "/"
}

// hiddenByTmpfs reports whether the host directory cwd, which the guest
// would see under --rootfs /, falls under one of the fresh tmpfs
// directories of such a root (/tmp, say) and in no share: the guest would
// find an empty directory there, or none.
func hiddenByTmpfs(cwd, rootfs string, shares []Share) bool {
	if rootfs != "/" {
		return false
	}
	for _, sh := range shares {
		if within(cwd, sh.Host) {
			return false
		}
	}
	for _, dir := range rootfsTmpfs {
		if within(cwd, dir) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

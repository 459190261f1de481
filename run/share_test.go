package run

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseShare(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(host, 0o755))
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	t.Chdir(dir) // for the relative HOST

	for _, c := range []struct {
		name string
		in   string
		want Share
	}{
		{"host alone", host, Share{Host: host, Guest: host}},
		{"host and guest", host + ":/mnt/data", Share{Host: host, Guest: "/mnt/data"}},
		{"host read-only", host + ":ro", Share{Host: host, Guest: host, ReadOnly: true}},
		{"host, guest, read-only", host + ":/mnt/data:ro", Share{Host: host, Guest: "/mnt/data", ReadOnly: true}},
		{"host, guest, read-write", host + ":/mnt/data:rw", Share{Host: host, Guest: "/mnt/data"}},
		{"host read-write", host + ":rw", Share{Host: host, Guest: host}},
		{"guest path cleaned", host + ":/mnt//x/../data/", Share{Host: host, Guest: "/mnt/data"}},
		{"relative host", "data", Share{Host: host, Guest: host}},
		{"relative host with dot", "./data/:/d:ro", Share{Host: host, Guest: "/d", ReadOnly: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseShare(c.in)
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
			assert.True(t, filepath.IsAbs(got.Host), "host %q is absolute", got.Host)
		})
	}
}

func TestParseShareErrors(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "data")
	require.NoError(t, os.Mkdir(host, 0o755))
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	missing := filepath.Join(dir, "missing")

	for _, c := range []struct {
		name string
		in   string
		want string // fragment of the message
	}{
		{"missing host", missing, "no such directory"},
		{"missing host with guest", missing + ":/mnt:ro", "no such directory"},
		{"host is a file", file, "not a directory"},
		{"relative guest", host + ":mnt/data", "must be absolute"},
		{"empty guest", host + ":", "must be absolute"},
		{"guest is the root", host + ":/", "use --rootfs"},
		{"guest cleans to the root", host + ":/mnt/..:ro", "use --rootfs"},
		{"too many colons", host + ":/a:/b", "want HOST[:GUEST][:ro]"},
		{"too many colons with ro", host + ":/a:/b:ro", "want HOST[:GUEST][:ro]"},
		{"empty host", ":/mnt", "host directory is empty"},
		{"empty string", "", "host directory is empty"},
		{"only ro", ":ro", "host directory is empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseShare(c.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.Equal(t, Share{}, got)
		})
	}
	// The missing directory is named as the user wrote it.
	_, err := ParseShare(missing + ":/mnt")
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)
}

func TestGuestDir(t *testing.T) {
	shares := []Share{
		{Host: "/home/u", Guest: "/h"},
		{Host: "/home/u/src/proj", Guest: "/work"},
		{Host: "/a/b", Guest: "/mnt/b"},
	}
	for _, c := range []struct {
		name, cwd, rootfs string
		shares            []Share
		want              string
	}{
		{"at a share's root", "/a/b", "", shares, "/mnt/b"},
		{"below a share", "/a/b/c/d", "", shares, "/mnt/b/c/d"},
		{"deepest share wins", "/home/u/src/proj/pkg", "", shares, "/work/pkg"},
		{"deepest share wins, in either order", "/home/u/src/proj/pkg", "",
			[]Share{shares[1], shares[0]}, "/work/pkg"},
		{"outer share only", "/home/u/src/other", "", shares, "/h/src/other"},
		{"a prefix of the name is not a parent", "/a/bc", "", shares, "/"},
		{"a prefix of the name is not a parent, with rootfs /", "/a/bc", "/", shares, "/a/bc"},
		{"a dotted name below the share", "/a/b/..c", "", shares, "/mnt/b/..c"},
		{"a share beats the host's root", "/a/b/c", "/", shares, "/mnt/b/c"},
		{"rootfs / keeps cwd", "/srv/x", "/", nil, "/srv/x"},
		{"other rootfs", "/srv/x", "/srv", nil, "/"},
		{"no root, no share", "/srv/x", "", nil, "/"},
		{"outside every share", "/srv/x", "", shares, "/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, guestDir(c.cwd, c.rootfs, c.shares))
		})
	}
}

func TestHiddenByTmpfs(t *testing.T) {
	shares := []Share{{Host: "/tmp/shared", Guest: "/data"}}
	for _, c := range []struct {
		cwd, rootfs string
		want        bool
	}{
		{"/tmp/project", "/", true},
		{"/tmp", "/", true},
		{"/var/tmp/x", "/", true},
		{"/tmp/shared/sub", "/", false}, // visible through the share
		{"/home/me/project", "/", false},
		{"/tmpfoo", "/", false}, // a sibling of /tmp, not under it
		{"/tmp/project", "/srv/root", false},
		{"/tmp/project", "", false},
	} {
		assert.Equal(t, c.want, hiddenByTmpfs(c.cwd, c.rootfs, shares), "%s under --rootfs %q", c.cwd, c.rootfs)
	}
}

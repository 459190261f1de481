package run

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/run/kmod"
	"github.com/govmm/govmm/run/wire"
)

// newcEntry is one entry of a newc archive, as the test reads it.
type newcEntry struct {
	name       string
	mode       uint32
	rmaj, rmin uint32
	data       []byte
}

// File types of c_mode (include/uapi/linux/stat.h), written out here so
// the test does not lean on package cpio.
const (
	sIFMT  = 0o170000
	sIFDIR = 0o040000
	sIFCHR = 0o020000
	sIFREG = 0o100000
)

// readNewc parses the newc archive that starts at b[0] and ends with
// TRAILER!!! (buffer-format.rst): each entry a 110-byte header of "070701"
// and 13 8-hex-digit fields, the NUL-terminated name, NULs to a multiple
// of 4, the data, NULs to a multiple of 4. It returns the entries before
// the trailer and the offset just after it.
func readNewc(b []byte) ([]newcEntry, int, error) {
	var out []newcEntry
	off := 0
	pad := func() error {
		for off%4 != 0 {
			if off >= len(b) || b[off] != 0 {
				return fmt.Errorf("bad padding at %d", off)
			}
			off++
		}
		return nil
	}
	for {
		if len(b)-off < 110 {
			return nil, 0, fmt.Errorf("header at %d: only %d bytes left", off, len(b)-off)
		}
		if m := string(b[off : off+6]); m != "070701" {
			return nil, 0, fmt.Errorf("header at %d: magic %q", off, m)
		}
		var f [13]uint32
		for i := range f {
			s := string(b[off+6+8*i : off+14+8*i])
			v, err := strconv.ParseUint(s, 16, 32)
			if err != nil {
				return nil, 0, fmt.Errorf("header at %d, field %d: %v", off, i, err)
			}
			f[i] = uint32(v)
		}
		off += 110
		namesize, size := int(f[11]), int(f[6])
		if namesize < 1 || len(b)-off < namesize || b[off+namesize-1] != 0 {
			return nil, 0, fmt.Errorf("bad name at %d", off)
		}
		e := newcEntry{name: string(b[off : off+namesize-1]), mode: f[1], rmaj: f[9], rmin: f[10]}
		off += namesize
		if err := pad(); err != nil {
			return nil, 0, err
		}
		if len(b)-off < size {
			return nil, 0, fmt.Errorf("entry %q: data runs past the end", e.name)
		}
		e.data = b[off : off+size]
		off += size
		if err := pad(); err != nil {
			return nil, 0, err
		}
		if e.name == "TRAILER!!!" {
			return out, off, nil
		}
		out = append(out, e)
	}
}

// fakeModules makes .ko files and the plan that packs them.
func fakeModules(t *testing.T) *modulePlan {
	t.Helper()
	dir := t.TempDir()
	p := &modulePlan{}
	for i, name := range []string{"virtio_pci_modern_dev", "virtio_pci", "virtio_console", "9pnet"} {
		rel := "kernel/drivers/" + name + ".ko"
		file := filepath.Join(dir, name+".ko")
		// Lengths that are not multiples of 4: the data needs padding.
		require.NoError(t, os.WriteFile(file, bytes.Repeat([]byte{byte('a' + i)}, 1001+i), 0o600))
		m := kmod.Module{Name: name, Path: file, RelPath: rel}
		p.files = append(p.files, m)
		p.guestPaths = append(p.guestPaths, guestModulePath(i, m))
	}
	return p
}

func TestBuildInitramfs(t *testing.T) {
	self, err := os.ReadFile("/proc/self/exe")
	require.NoError(t, err)
	mods := fakeModules(t)
	cfg := &wire.Config{
		Args:     []string{"sh", "-c", "echo hi"},
		Env:      []string{"A=b"},
		Dir:      "/work",
		Modules:  mods.guestPaths,
		Root:     &wire.Root{Kind: wire.Root9P, Source: rootTag, ReadOnly: true},
		Tmpfs:    rootfsTmpfs,
		Shares:   []wire.Share{{Tag: shareTagPrefix + "0", Path: "/work"}},
		Hostname: "vm",
	}
	require.NoError(t, cfg.Validate())

	for _, c := range []struct {
		name      string
		user      []byte
		archiveAt int
	}{
		{"no user initrd", nil, 0},
		{"odd user initrd", []byte("abcde"), 8},
		{"user initrd of 7 bytes", []byte("abcdefg"), 8},
		{"aligned user initrd", []byte("abcdefgh"), 8},
		{"user initrd of 1 byte", []byte("z"), 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			img, err := buildInitramfs(c.user, cfg, mods)
			require.NoError(t, err)
			require.Greater(t, len(img), c.archiveAt)
			assert.True(t, bytes.Equal(c.user, img[:len(c.user)]), "the user's archive comes first, unchanged")
			assert.Equal(t, make([]byte, c.archiveAt-len(c.user)), img[len(c.user):c.archiveAt],
				"zero padding up to a multiple of 4")
			assert.Equal(t, "070701", string(img[c.archiveAt:c.archiveAt+6]), "govmm's archive starts aligned")

			entries, end, err := readNewc(img[c.archiveAt:])
			require.NoError(t, err)
			assert.Equal(t, len(img), c.archiveAt+end, "nothing after the trailer")

			byName := map[string]newcEntry{}
			for _, e := range entries {
				_, dup := byName[e.name]
				assert.False(t, dup, "%q twice", e.name)
				// Parents before children.
				if dir := path.Dir(e.name); dir != "." {
					p, ok := byName[dir]
					if assert.True(t, ok, "the parent of %q comes before it", e.name) {
						assert.Equal(t, uint32(sIFDIR), p.mode&sIFMT, "%q is a directory", dir)
					}
				}
				assert.False(t, path.IsAbs(e.name), "%q is relative", e.name)
				byName[e.name] = e
			}

			cons, ok := byName["dev/console"]
			if assert.True(t, ok, "dev/console") {
				assert.Equal(t, uint32(sIFCHR), cons.mode&sIFMT, "a character device")
				assert.Equal(t, [2]uint32{5, 1}, [2]uint32{cons.rmaj, cons.rmin})
			}

			ini, ok := byName["govmm-init"]
			if assert.True(t, ok, "govmm-init") {
				assert.Equal(t, uint32(sIFREG), ini.mode&sIFMT, "a regular file")
				assert.Equal(t, uint32(0o111), ini.mode&0o111, "executable")
				assert.True(t, bytes.Equal(self, ini.data), "govmm-init is this binary (%d bytes, want %d)",
					len(ini.data), len(self))
			}

			conf, ok := byName["govmm/config.json"]
			if assert.True(t, ok, "govmm/config.json") {
				assert.Equal(t, uint32(sIFREG), conf.mode&sIFMT)
				got, err := wire.ParseConfig(conf.data)
				require.NoError(t, err)
				assert.Equal(t, cfg, got)
			}

			for _, d := range []string{"dev", "proc", "sys", "tmp", "newroot", "govmm", "govmm/modules"} {
				e, ok := byName[d]
				if assert.True(t, ok, "directory %s", d) {
					assert.Equal(t, uint32(sIFDIR), e.mode&sIFMT, "%s is a directory", d)
				}
			}

			for i, m := range mods.files {
				name := mods.guestPaths[i][1:]
				assert.Equal(t, fmt.Sprintf("govmm/modules/%02d-%s.ko", i, m.Name), name)
				e, ok := byName[name]
				if assert.True(t, ok, "module %s", name) {
					want, err := os.ReadFile(m.Path)
					require.NoError(t, err)
					assert.Equal(t, want, e.data)
					assert.Equal(t, uint32(sIFREG), e.mode&sIFMT)
				}
			}
		})
	}
}

func TestBuildInitramfsMissingModule(t *testing.T) {
	mods := fakeModules(t)
	require.NoError(t, os.Remove(mods.files[2].Path))
	cfg := &wire.Config{Args: []string{"true"}, Modules: mods.guestPaths}
	_, err := buildInitramfs(nil, cfg, mods)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "module virtio_console")
	assert.Contains(t, err.Error(), mods.files[2].Path)
}

func TestGuestModulePath(t *testing.T) {
	assert.Equal(t, "/govmm/modules/00-virtio_pci.ko",
		guestModulePath(0, kmod.Module{Path: "/lib/modules/6.1/kernel/drivers/virtio/virtio_pci.ko"}))
	assert.Equal(t, "/govmm/modules/12-9p.ko.xz",
		guestModulePath(12, kmod.Module{Path: "/x/9p.ko.xz", Compressed: "xz"}))
}

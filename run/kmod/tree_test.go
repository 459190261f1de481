package kmod

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleRelease and sampleDep model a Debian tree in miniature: the lines
// are copied in form (not in full) from 6.1.0-56-amd64's modules.dep, with
// some files compressed to cover every suffix.
const sampleRelease = "6.1.0-56-amd64"

const sampleDep = `kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko.zst: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/misc/pvpanic/pvpanic.ko.xz:
kernel/drivers/misc/pvpanic/pvpanic-pci.ko.xz: kernel/drivers/misc/pvpanic/pvpanic.ko.xz
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/lib/crc16.ko.gz:
`

const sampleBuiltin = `kernel/drivers/char/virtio_console.ko
kernel/fs/ext4/ext4.ko
kernel/fs/jbd2/jbd2.ko
`

// writeTree creates root/<sub>/<release> with the given modules.dep and,
// unless builtin is "-", modules.builtin, and an empty file for every
// module path in dep. It returns the release directory.
func writeTree(t *testing.T, root, sub, release, dep, builtin string) string {
	t.Helper()
	dir := filepath.Join(root, sub, release)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644))
	if builtin != "-" {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(builtin), 0o644))
	}
	for line := range strings.Lines(dep) {
		mod, _, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSpace(mod)))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("module "+mod), 0o644))
	}
	return dir
}

func sampleTree(t *testing.T) *Tree {
	t.Helper()
	dir := writeTree(t, t.TempDir(), "lib/modules", sampleRelease, sampleDep, sampleBuiltin)
	tr, err := Open(dir)
	require.NoError(t, err)
	return tr
}

func names(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// checkPlan checks Resolve's promise independently of its walk: every
// module comes after each module its own modules.dep line lists, and
// appears once.
func checkPlan(t *testing.T, tr *Tree, plan Plan) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range plan.Load {
		_, dup := pos[m.RelPath]
		assert.False(t, dup, "%s is in the plan twice", m.RelPath)
		pos[m.RelPath] = i
	}
	for i, m := range plan.Load {
		idx, ok := tr.deps.byName[m.Name]
		require.True(t, ok, m.Name)
		for _, d := range tr.deps.mods[idx].deps {
			dep := tr.deps.mods[d].rel
			j, ok := pos[dep]
			if assert.True(t, ok, "%s needs %s, which is not in the plan", m.Name, dep) {
				assert.Less(t, j, i, "%s is loaded before %s, which it needs", m.Name, dep)
			}
		}
	}
}

func TestResolve9p(t *testing.T) {
	tr := sampleTree(t)
	plan, err := tr.Resolve("9p")
	require.NoError(t, err)
	assert.Equal(t, []string{"netfs", "fscache", "9pnet", "9p"}, names(plan.Load))
	assert.Empty(t, plan.Builtin)
	last := plan.Load[3]
	assert.Equal(t, "kernel/fs/9p/9p.ko", last.RelPath)
	assert.Equal(t, filepath.Join(tr.Dir(), "kernel", "fs", "9p", "9p.ko"), last.Path)
	assert.True(t, filepath.IsAbs(last.Path))
	assert.Equal(t, "", last.Compressed)
	checkPlan(t, tr, plan)
}

func TestResolveGuestSet(t *testing.T) {
	tr := sampleTree(t)
	plan, err := tr.Resolve("virtio_pci", "virtio_console", "9pnet_virtio", "9p", "pvpanic-pci", "virtio_blk",
		"ext4", "virtio-pci", "ext4", "crc16")
	require.NoError(t, err)
	// modprobe's order: each line's list from its end, then the module.
	assert.Equal(t, []string{
		"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
		"9pnet", "9pnet_virtio",
		"netfs", "fscache", "9p",
		"pvpanic", "pvpanic_pci",
		"virtio_blk",
		"crc16",
	}, names(plan.Load))
	assert.Equal(t, []string{"virtio_console", "ext4"}, plan.Builtin, "built in, once each, in request order")
	checkPlan(t, tr, plan)

	kinds := map[string]string{}
	for _, m := range plan.Load {
		kinds[m.Name] = m.Compressed
		assert.FileExists(t, m.Path)
		assert.Equal(t, filepath.Join(tr.Dir(), filepath.FromSlash(m.RelPath)), m.Path)
	}
	assert.Equal(t, "xz", kinds["pvpanic_pci"])
	assert.Equal(t, "zst", kinds["virtio_blk"])
	assert.Equal(t, "gz", kinds["crc16"])
	assert.Equal(t, "", kinds["virtio"])

	plan, err = tr.Resolve()
	require.NoError(t, err)
	assert.Empty(t, plan.Load)
	assert.Empty(t, plan.Builtin)
}

func TestHas(t *testing.T) {
	tr := sampleTree(t)
	for name, want := range map[string]bool{
		"9p": true, "virtio_pci": true, "virtio-pci": true, "pvpanic_pci": true, "pvpanic-pci": true,
		"virtio_console": true, "ext4": true, // built in
		"nosuch": false, "": false, "9p.ko": false, "kernel/fs/9p/9p.ko": false,
	} {
		assert.Equal(t, want, tr.Has(name), "Has(%q)", name)
	}
	assert.Equal(t, sampleRelease, tr.Release())
}

func TestResolveErrors(t *testing.T) {
	tr := sampleTree(t)
	_, err := tr.Resolve("virtio_pci", "nosuch")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `module "nosuch" is neither in `+filepath.Join(tr.Dir(), "modules.dep"))
	assert.Contains(t, err.Error(), "kernel "+sampleRelease+" does not have it")

	_, err = tr.Resolve("")
	assert.ErrorContains(t, err, "empty module name")

	// A file listed but missing.
	require.NoError(t, os.Remove(filepath.Join(tr.Dir(), "kernel/fs/netfs/netfs.ko")))
	_, err = tr.Resolve("9p")
	assert.ErrorContains(t, err, "module netfs: modules.dep lists "+filepath.Join(tr.Dir(), "kernel/fs/netfs/netfs.ko")+
		", but the file is missing")
	_, err = tr.Resolve("virtio_pci")
	assert.NoError(t, err, "other modules still resolve")

	// Listed, but a directory.
	require.NoError(t, os.Mkdir(filepath.Join(tr.Dir(), "kernel/fs/netfs/netfs.ko"), 0o755))
	_, err = tr.Resolve("9p")
	assert.ErrorContains(t, err, "is not a regular file")
}

func TestNoBuiltinFile(t *testing.T) {
	dir := writeTree(t, t.TempDir(), "", "6.1.192", sampleDep, "-")
	tr, err := Open(dir)
	require.NoError(t, err)
	assert.False(t, tr.Has("ext4"))
	_, err = tr.Resolve("ext4")
	assert.ErrorContains(t, err, "the tree has no modules.builtin")
	plan, err := tr.Resolve("virtio_blk")
	require.NoError(t, err)
	assert.Equal(t, []string{"virtio_ring", "virtio", "virtio_blk"}, names(plan.Load))
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir)
	assert.ErrorContains(t, err, "has no modules.dep: it is not a lib/modules/<release> directory")

	require.NoError(t, os.Mkdir(filepath.Join(dir, "modules.dep"), 0o755))
	_, err = Open(dir)
	assert.ErrorContains(t, err, "is not a regular file")

	big := t.TempDir()
	f, err := os.Create(filepath.Join(big, "modules.dep"))
	require.NoError(t, err)
	require.NoError(t, f.Truncate(64<<20+1)) // sparse: no disk used
	require.NoError(t, f.Close())
	_, err = Open(big)
	assert.ErrorContains(t, err, "is over 64 MiB")

	bad := writeTree(t, t.TempDir(), "", "x", sampleDep, "kernel/fs/ext4/ext4.o\n")
	_, err = Open(bad)
	assert.ErrorContains(t, err, filepath.Join(bad, "modules.builtin")+":1: module path \"kernel/fs/ext4/ext4.o\" does not end in .ko")

	bad = writeTree(t, t.TempDir(), "", "x", "a.ko: b.ko\n", "")
	_, err = Open(bad)
	assert.ErrorContains(t, err, filepath.Join(bad, "modules.dep")+":1: a.ko needs b.ko, which has no line of its own")
}

func TestParseDepErrors(t *testing.T) {
	cases := []struct{ name, dep, msg string }{
		{"no colon", "a.ko\n", "f:1: no ':'"},
		{"no colon later", "a.ko:\n\nb.ko b.ko\n", "f:3: no ':'"},
		{"absolute", "/lib/modules/x/a.ko:\n", `"/lib/modules/x/a.ko" is absolute`},
		{"absolute dep", "a.ko: /b.ko\n", "f:1: dependency of a.ko: module path \"/b.ko\" is absolute"},
		{"dotdot", "kernel/../../etc/a.ko:\n", "leaves the module tree"},
		{"suffix", "kernel/a.o:\n", "does not end in .ko, .ko.xz, .ko.zst or .ko.gz"},
		{"bzip2", "kernel/a.ko.bz2:\n", "does not end in .ko"},
		{"no name", "kernel/.ko:\n", "has no module name"},
		{"empty path", ": a.ko\n", "empty module path"},
		{"backslash", "a\\b.ko:\n", "backslash"},
		{"NUL", "a\x00.ko:\n", "NUL"},
		{"space in head", "a b.ko:\n", "white space"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseDep("f", []byte(c.dep))
			assert.ErrorContains(t, err, c.msg)
		})
	}

	// What parses: blank lines, CRLF, tabs, no final newline.
	lines, err := parseDep("f", []byte("\n a.ko:\tb.ko  c.ko.xz\r\n\nb.ko:\r\nc.ko.xz:"))
	require.NoError(t, err)
	require.Len(t, lines, 3)
	assert.Equal(t, depLine{path: "a.ko", deps: []string{"b.ko", "c.ko.xz"}, line: 2}, lines[0])
	assert.Equal(t, depLine{path: "b.ko", line: 4}, lines[1])
	assert.Equal(t, depLine{path: "c.ko.xz", line: 5}, lines[2])
}

func TestDepIndexErrors(t *testing.T) {
	cases := []struct{ name, dep, msg string }{
		{"same path twice", "a/x.ko:\nb.ko:\na/x.ko:\n", "f:3: a/x.ko is listed a second time (first on line 1)"},
		{"same name twice", "a/x-y.ko:\nb/x_y.ko.xz:\n",
			"f:2: module x_y is listed a second time, as b/x_y.ko.xz (first as a/x-y.ko on line 1)"},
		{"dangling dependency", "a.ko: b.ko c.ko\nb.ko:\n", "f:1: a.ko needs c.ko, which has no line of its own"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lines, err := parseDep("f", []byte(c.dep))
			require.NoError(t, err)
			_, err = newDepIndex("f", lines)
			assert.ErrorContains(t, err, c.msg)
		})
	}
}

func TestCycles(t *testing.T) {
	cases := []struct{ name, dep, want, msg string }{
		{"self", "a.ko: a.ko\n", "a", "a -> a"},
		{"two", "a.ko: b.ko\nb.ko: a.ko\n", "a", "a -> b -> a"},
		{"three, entered midway", "x.ko: a.ko\na.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n", "x", "a -> b -> c -> a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTree(t, t.TempDir(), "", "r", c.dep, "")
			tr, err := Open(dir)
			require.NoError(t, err, "cycles are found when resolving")
			_, err = tr.Resolve(c.want)
			require.ErrorContains(t, err, "cycle, "+c.msg+", so no load order exists")
			assert.ErrorContains(t, err, filepath.Join(dir, "modules.dep"))
		})
	}
}

// TestLongChain: a hand-made file where each module lists only its direct
// dependency, 200000 deep. The walk must not recurse on the goroutine's
// stack and must still load every module after the one it needs.
func TestLongChain(t *testing.T) {
	const n = 200000
	var b strings.Builder
	for i := range n {
		if i == 0 {
			fmt.Fprintf(&b, "m0.ko:\n")
		} else {
			fmt.Fprintf(&b, "m%d.ko: m%d.ko\n", i, i-1)
		}
	}
	lines, err := parseDep("f", []byte(b.String()))
	require.NoError(t, err)
	idx, err := newDepIndex("f", lines)
	require.NoError(t, err)
	order, err := idx.loadOrder(n-1, make([]uint8, n), nil)
	require.NoError(t, err)
	require.Len(t, order, n)
	for i, m := range order {
		if m != i {
			t.Fatalf("position %d holds m%d, want m%d", i, m, i)
		}
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	relDir := writeTree(t, root, "lib/modules", sampleRelease, sampleDep, sampleBuiltin)
	usrRoot := t.TempDir()
	usrDir := writeTree(t, usrRoot, "usr/lib/modules", sampleRelease, sampleDep, sampleBuiltin)

	for _, c := range []struct{ name, flag, wantDir string }{
		{"release directory", relDir, relDir},
		{"lib/modules", filepath.Join(root, "lib/modules"), relDir},
		{"root", root, relDir},
		{"merged-/usr root", usrRoot, usrDir},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr, err := Find(c.flag, sampleRelease)
			require.NoError(t, err)
			assert.Equal(t, c.wantDir, tr.Dir())
			assert.Equal(t, sampleRelease, tr.Release())
			assert.True(t, tr.Has("9p"))
		})
	}

	t.Run("relative path", func(t *testing.T) {
		t.Chdir(root)
		tr, err := Find("lib/modules", sampleRelease)
		require.NoError(t, err)
		assert.Equal(t, relDir, tr.Dir(), "Dir is absolute")
	})

	const other = "6.1.0-55-amd64"
	t.Run("release directory of another kernel", func(t *testing.T) {
		_, err := Find(relDir, other)
		assert.EqualError(t, err, "--modules "+relDir+": holds modules for 6.1.0-56-amd64, but the kernel is "+
			other+"; pass the lib/modules tree of the kernel you boot")
	})
	t.Run("root of another kernel", func(t *testing.T) {
		_, err := Find(root, other)
		assert.EqualError(t, err, "--modules "+root+": holds modules for 6.1.0-56-amd64, but the kernel is "+
			other+"; pass the lib/modules tree of the kernel you boot")
	})
	t.Run("several other kernels", func(t *testing.T) {
		writeTree(t, root, "lib/modules", "6.1.0-54-amd64", sampleDep, sampleBuiltin)
		require.NoError(t, os.MkdirAll(filepath.Join(root, "lib/modules", "no-depmod"), 0o755))
		_, err := Find(filepath.Join(root, "lib/modules"), other)
		assert.ErrorContains(t, err, "holds modules for 6.1.0-54-amd64, 6.1.0-56-amd64, but the kernel is "+other)
	})
	t.Run("empty directory", func(t *testing.T) {
		empty := t.TempDir()
		_, err := Find(empty, sampleRelease)
		assert.EqualError(t, err, "--modules "+empty+": found no modules.dep in it, nor in 6.1.0-56-amd64, "+
			"lib/modules/6.1.0-56-amd64 or usr/lib/modules/6.1.0-56-amd64 below it; pass the "+
			"lib/modules/6.1.0-56-amd64 directory of the kernel you boot, or a root that holds it "+
			"(such as an unpacked linux-image package)")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Find(filepath.Join(root, "nosuch"), sampleRelease)
		assert.EqualError(t, err, "--modules "+filepath.Join(root, "nosuch")+": no such directory")
	})
	t.Run("a file", func(t *testing.T) {
		f := filepath.Join(relDir, "modules.dep")
		_, err := Find(f, sampleRelease)
		assert.ErrorContains(t, err, "--modules "+f+": not a directory")
	})
	t.Run("bad release", func(t *testing.T) {
		_, err := Find(root, "../../etc")
		assert.ErrorContains(t, err, "cannot name a lib/modules directory")
		_, err = Find(root, "")
		assert.ErrorContains(t, err, "release is empty")
	})
	t.Run("broken modules.dep", func(t *testing.T) {
		broken := writeTree(t, t.TempDir(), "", sampleRelease, "nonsense\n", "")
		_, err := Find(broken, sampleRelease)
		assert.ErrorContains(t, err, "--modules "+broken+": "+filepath.Join(broken, "modules.dep")+":1: no ':'")
	})
}

func TestFindInstalled(t *testing.T) {
	root := t.TempDir()
	host := filepath.Join(root, "lib/modules")
	relDir := writeTree(t, root, "lib/modules", sampleRelease, sampleDep, sampleBuiltin)
	tr, err := find("", sampleRelease, host)
	require.NoError(t, err)
	assert.Equal(t, relDir, tr.Dir())

	_, err = find("", "6.1.0-55-amd64", host)
	assert.EqualError(t, err, "no modules for kernel 6.1.0-55-amd64 in "+filepath.Join(host, "6.1.0-55-amd64")+
		": pass --modules DIR, the lib/modules directory of that kernel (for example from its unpacked "+
		"linux-image package)")
}

// unpackedTrees finds the module trees of the Debian kernel packages the
// scripts unpack (build/ is not in git).
func unpackedTrees(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("../../build/cache/unpacked/linux-image-*/lib/modules/*")
	require.NoError(t, err)
	if len(dirs) == 0 {
		t.Skip("no unpacked linux-image package under build/cache/unpacked (scripts/guest-assets.sh makes them)")
	}
	return dirs
}

func TestRealTrees(t *testing.T) {
	for _, dir := range unpackedTrees(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			tr, err := Open(dir)
			require.NoError(t, err)
			assert.Equal(t, filepath.Base(dir), tr.Release())
			t.Logf("%s: %d modules, %d built in", tr.Release(), len(tr.deps.mods), len(tr.builtin))
			assert.Greater(t, len(tr.deps.mods), 100)
			assert.NotEmpty(t, tr.builtin)

			// Find from the package's root, as `--modules` would get it.
			pkgRoot := filepath.Dir(filepath.Dir(filepath.Dir(dir)))
			found, err := Find(pkgRoot, tr.Release())
			require.NoError(t, err)
			assert.Equal(t, tr.Dir(), found.Dir())

			if strings.HasSuffix(tr.Release(), "-cloud-amd64") {
				checkCloudTree(t, tr)
			} else {
				checkGenericTree(t, tr)
			}
		})
	}
}

// assertBeforeVirtioPCI checks that virtio_ring and virtio, which
// virtio_pci needs, are loaded before it. Neither of the two needs the
// other, so their own order is modules.dep's, which changes between
// kernel builds; checkModprobeOrder checks it against modprobe's.
func assertBeforeVirtioPCI(t *testing.T, got []string) {
	t.Helper()
	pci := slices.Index(got, "virtio_pci")
	require.GreaterOrEqual(t, pci, 0, "virtio_pci is loaded")
	for _, m := range []string{"virtio_ring", "virtio"} {
		i := slices.Index(got, m)
		if assert.GreaterOrEqual(t, i, 0, "%s is loaded", m) {
			assert.Less(t, i, pci, "%s is loaded before virtio_pci", m)
		}
	}
}

// checkGenericTree: Debian's generic kernel has 9p and virtio as modules.
func checkGenericTree(t *testing.T, tr *Tree) {
	plan, err := tr.Resolve("9p")
	require.NoError(t, err)
	assert.Equal(t, []string{"netfs", "fscache", "9pnet", "9p"}, names(plan.Load))

	plan, err = tr.Resolve("virtio_pci", "virtio_console", "9pnet_virtio", "9p", "pvpanic_pci", "virtio_blk", "ext4")
	require.NoError(t, err)
	got := names(plan.Load)
	t.Logf("load order: %v, built in: %v", got, plan.Builtin)
	assertBeforeVirtioPCI(t, got)
	for _, m := range []string{"virtio_ring", "virtio", "virtio_console", "9pnet_virtio", "pvpanic", "pvpanic_pci",
		"virtio_blk", "ext4", "jbd2", "mbcache", "crc16"} {
		assert.Contains(t, got, m)
	}
	assert.Empty(t, plan.Builtin)
	checkPlan(t, tr, plan)
	checkModprobeOrder(t, tr)
}

// checkCloudTree: Debian's cloud kernel has no 9p at all, builds ext4 in,
// and still has virtio as modules.
func checkCloudTree(t *testing.T, tr *Tree) {
	assert.False(t, tr.Has("9p"), "the cloud kernel has no 9p")
	assert.False(t, tr.Has("9pnet_virtio"))
	_, err := tr.Resolve("9p")
	assert.ErrorContains(t, err, `module "9p" is neither in`)

	plan, err := tr.Resolve("virtio_pci", "virtio_console", "pvpanic_pci", "virtio_blk", "ext4")
	require.NoError(t, err)
	t.Logf("load order: %v, built in: %v", names(plan.Load), plan.Builtin)
	got := names(plan.Load)
	assertBeforeVirtioPCI(t, got)
	assert.Equal(t, []string{"ext4"}, plan.Builtin)
	checkPlan(t, tr, plan)
	checkModprobeOrder(t, tr)
}

// checkModprobeOrder resolves every module of a real tree alone and checks
// that the order is the module's own modules.dep line read from its end,
// then the module: what the walk promises for files depmod wrote.
func checkModprobeOrder(t *testing.T, tr *Tree) {
	for _, m := range tr.deps.mods {
		plan, err := tr.Resolve(m.name)
		require.NoError(t, err, m.name)
		var want []string
		for k := len(m.deps) - 1; k >= 0; k-- {
			want = append(want, tr.deps.mods[m.deps[k]].name)
		}
		want = append(want, m.name)
		if !assert.Equal(t, want, names(plan.Load), "order for %s", m.name) {
			return
		}
	}
}

// FuzzParseDep: no modules.dep may panic or hang the parser, the index or
// the walk; whatever resolves is a valid load order.
func FuzzParseDep(f *testing.F) {
	f.Add([]byte(sampleDep))
	f.Add([]byte("a.ko: a.ko\n"))
	f.Add([]byte("a.ko: b.ko\nb.ko: a.ko\n"))
	f.Add([]byte("x.ko: a.ko\na.ko: b.ko\nb.ko: c.ko\nc.ko:\n"))
	f.Add([]byte("a.ko:\nb.ko\n"))
	f.Add([]byte("/abs.ko:\n../x.ko:\n"))
	f.Add([]byte("a-b.ko:\na_b.ko.xz:\n"))
	f.Add([]byte(":\n::\n\x00\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := parseDep("f", data)
		if err != nil {
			return
		}
		for _, l := range lines {
			require.NoError(t, checkModulePath(l.path))
		}
		idx, err := newDepIndex("f", lines)
		if err != nil {
			return
		}
		state := make([]uint8, len(idx.mods))
		var order []int
		for i := range idx.mods {
			order, err = idx.loadOrder(i, state, order)
			if err != nil {
				require.ErrorContains(t, err, "cycle")
				return
			}
		}
		require.Len(t, order, len(idx.mods), "each module once")
		pos := make([]int, len(idx.mods))
		for p, m := range order {
			pos[m] = p
		}
		for i, m := range idx.mods {
			for _, d := range m.deps {
				require.Less(t, pos[d], pos[i], "%s before %s, which it needs", m.name, idx.mods[d].name)
			}
		}
	})
}

// FuzzParseBuiltin: no modules.builtin may panic the parser, and every
// name it returns is a normalised module name.
func FuzzParseBuiltin(f *testing.F) {
	f.Add([]byte(sampleBuiltin))
	f.Add([]byte("kernel/a/b-c.ko\n\n"))
	f.Add([]byte("kernel/a/b.o\n"))
	f.Add([]byte("/x.ko\n"))
	f.Add([]byte(".ko\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		names, err := parseBuiltin("f", data)
		if err != nil {
			return
		}
		for _, n := range names {
			require.NotEmpty(t, n)
			require.False(t, strings.ContainsAny(n, "-/.\x00 \t\r\n\v\f"), "name %q", n)
		}
	})
}

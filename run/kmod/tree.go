package kmod

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Names of the files and directories depmod and the kernel build use.
const (
	// DepFile is the text list of modules and their dependencies
	// (modules.dep(5)); its presence marks a lib/modules/<release>
	// directory.
	DepFile = "modules.dep"
	// BuiltinFile lists the modules built into the kernel image.
	BuiltinFile = "modules.builtin"
	// HostModulesDir is where an installed kernel's modules live (kmod's
	// default module directory; /lib is /usr/lib on merged-/usr systems).
	HostModulesDir = "/lib/modules"
	// libModules is HostModulesDir relative to a root such as an unpacked
	// linux-image package.
	libModules = "lib/modules"
	// usrLibModules is where packages for merged-/usr systems (Debian 13
	// and later) put the same tree.
	usrLibModules = "usr/lib/modules"
)

// maxIndexSize caps how much of modules.dep or modules.builtin is read. A
// distribution kernel's modules.dep is about 500 KiB; anything past 64 MiB
// is not a real one, and reading it whole would only waste memory.
const maxIndexSize = 64 << 20

// Tree is the module directory of one kernel, lib/modules/<release>, with
// its modules.dep and modules.builtin parsed. It is read-only after Open
// and safe for concurrent use.
type Tree struct {
	dir     string // absolute
	release string
	deps    *depIndex
	// builtin holds the normalised names from modules.builtin.
	builtin map[string]bool
	// hasBuiltin reports whether modules.builtin exists, for messages.
	hasBuiltin bool
}

// Open reads the module tree in dir, a lib/modules/<release> directory
// that holds modules.dep. modules.builtin is read when present (kernels
// before 2.6.33 and trees made by hand lack it; then nothing counts as
// built in).
func Open(dir string) (*Tree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("module tree %s: %w", dir, err)
	}
	depPath := filepath.Join(abs, DepFile)
	data, err := readIndex(depPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("module tree %s has no %s: it is not a lib/modules/<release> directory, "+
			"or depmod was never run for it (run depmod -b ROOT RELEASE)", dir, DepFile)
	}
	if err != nil {
		return nil, err
	}
	lines, err := parseDep(depPath, data)
	if err != nil {
		return nil, err
	}
	idx, err := newDepIndex(depPath, lines)
	if err != nil {
		return nil, err
	}
	t := &Tree{dir: abs, release: filepath.Base(abs), deps: idx, builtin: map[string]bool{}}

	builtinPath := filepath.Join(abs, BuiltinFile)
	data, err = readIndex(builtinPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		names, err := parseBuiltin(builtinPath, data)
		if err != nil {
			return nil, err
		}
		t.hasBuiltin = true
		for _, n := range names {
			t.builtin[n] = true
		}
	}
	return t, nil
}

// Release returns the kernel release the tree is for: the name of its
// directory, which depmod and modprobe take to be the release.
func (t *Tree) Release() string { return t.release }

// Dir returns the tree's directory, as an absolute path.
func (t *Tree) Dir() string { return t.dir }

// Find opens the module tree for the kernel release release, given what
// the user passed to --modules. modulesFlag may name
//
//   - the lib/modules/<release> directory itself (it holds modules.dep),
//   - a lib/modules directory, which holds <release>/modules.dep,
//   - a root such as an unpacked linux-image package, which holds
//     lib/modules/<release> or usr/lib/modules/<release>.
//
// An empty modulesFlag means the installed kernel's tree,
// /lib/modules/<release>. The errors say what to pass instead.
func Find(modulesFlag, release string) (*Tree, error) {
	return find(modulesFlag, release, HostModulesDir)
}

// find is Find with the host's module directory as a parameter, for tests.
func find(modulesFlag, release, hostDir string) (*Tree, error) {
	if err := checkRelease(release); err != nil {
		return nil, err
	}
	if modulesFlag == "" {
		dir := filepath.Join(hostDir, release)
		ok, err := hasDepFile(dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("no modules for kernel %s in %s: pass --modules DIR, the lib/modules "+
				"directory of that kernel (for example from its unpacked linux-image package)", release, dir)
		}
		return Open(dir)
	}

	st, err := os.Stat(modulesFlag)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("--modules %s: no such directory", modulesFlag)
	case err != nil:
		return nil, fmt.Errorf("--modules %s: %w", modulesFlag, err)
	case !st.IsDir():
		return nil, fmt.Errorf("--modules %s: not a directory; pass the lib/modules/%s directory of the kernel",
			modulesFlag, release)
	}

	// (a) The release directory itself.
	ok, err := hasDepFile(modulesFlag)
	if err != nil {
		return nil, err
	}
	if ok {
		t, err := Open(modulesFlag)
		if err != nil {
			return nil, fmt.Errorf("--modules %s: %w", modulesFlag, err)
		}
		if t.Release() != release {
			return nil, mismatch(modulesFlag, []string{t.Release()}, release)
		}
		return t, nil
	}
	// (b) a lib/modules directory, (c) a root above one.
	parents := []string{
		modulesFlag,
		filepath.Join(modulesFlag, libModules),
		filepath.Join(modulesFlag, usrLibModules),
	}
	for _, p := range parents {
		dir := filepath.Join(p, release)
		ok, err := hasDepFile(dir)
		if err != nil {
			return nil, err
		}
		if ok {
			t, err := Open(dir)
			if err != nil {
				return nil, fmt.Errorf("--modules %s: %w", modulesFlag, err)
			}
			return t, nil
		}
	}
	// Nothing for this release: say what is there instead.
	var others []string
	for _, p := range parents {
		rels, err := releasesIn(p)
		if err != nil {
			return nil, err
		}
		others = append(others, rels...)
	}
	if len(others) > 0 {
		return nil, mismatch(modulesFlag, others, release)
	}
	return nil, fmt.Errorf("--modules %s: found no %s in it, nor in %s, %s/%s or %s/%s below it; "+
		"pass the lib/modules/%s directory of the kernel you boot, or a root that holds it "+
		"(such as an unpacked linux-image package)",
		modulesFlag, DepFile, release, libModules, release, usrLibModules, release, release)
}

// mismatch is the error for a --modules tree built for other kernels.
func mismatch(flag string, releases []string, want string) error {
	return fmt.Errorf("--modules %s: holds modules for %s, but the kernel is %s; "+
		"pass the lib/modules tree of the kernel you boot", flag, strings.Join(releases, ", "), want)
}

// releasesIn lists the subdirectories of dir that hold modules.dep, sorted.
// A dir that does not exist holds none.
func releasesIn(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		ok, err := hasDepFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// hasDepFile reports whether dir holds a modules.dep file. A missing dir
// holds none; anything else that stops the check is an error.
func hasDepFile(dir string) (bool, error) {
	p := filepath.Join(dir, DepFile)
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("checking for %s: %w", p, err)
	case !st.Mode().IsRegular():
		return false, fmt.Errorf("%s is not a regular file; a module tree's %s is the text file depmod writes",
			p, DepFile)
	}
	return true, nil
}

// readIndex reads one of depmod's text files, refusing anything that is
// not a regular file or is larger than maxIndexSize.
func readIndex(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file; depmod writes a plain text file there", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIndexSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxIndexSize {
		return nil, fmt.Errorf("%s is over %d MiB, far larger than any real one; is it the right file?",
			path, maxIndexSize>>20)
	}
	return data, nil
}

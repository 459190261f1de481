package kmod

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// Suffixes of module files and the compression each means. The kernel
// build compresses modules when CONFIG_MODULE_COMPRESS_{GZIP,XZ,ZSTD} is
// set, and depmod lists the files under their real names
// (modules.dep(5) shows paths, whatever they end in).
var moduleSuffixes = []struct{ suffix, compression string }{
	{".ko", ""},
	{".ko.xz", "xz"},
	{".ko.zst", "zst"},
	{".ko.gz", "gz"},
}

// asciiSpace is the white space bytes.Fields and bytes.TrimSpace split at
// in ASCII text.
const asciiSpace = " \t\n\v\f\r"

// depLine is one line of modules.dep: a module file and the files it
// needs, as written.
type depLine struct {
	path string
	deps []string
	line int // 1-based, for messages
}

// parseDep parses modules.dep. Each line is
//
//	kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko
//
// a module's path relative to the tree, a colon, and the paths of every
// module it needs, directly or not, separated by spaces. Blank lines are
// skipped; anything else malformed is an error naming file and line.
func parseDep(file string, data []byte) ([]depLine, error) {
	var out []depLine
	for n, line := range lines(data) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		head, tail, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("%s:%d: no ':' after the module's path; a line of %s reads "+
				"\"MODULE: DEPENDENCIES\"", file, n, DepFile)
		}
		mod := string(bytes.TrimSpace(head))
		if err := checkModulePath(mod); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		l := depLine{path: mod, line: n}
		for _, f := range bytes.Fields(tail) {
			dep := string(f)
			if err := checkModulePath(dep); err != nil {
				return nil, fmt.Errorf("%s:%d: dependency of %s: %w", file, n, mod, err)
			}
			l.deps = append(l.deps, dep)
		}
		out = append(out, l)
	}
	return out, nil
}

// parseBuiltin parses modules.builtin: one module path per line, such as
// kernel/drivers/virtio/virtio.ko, for each module built into the kernel.
// It returns their normalised names. Blank lines are skipped.
func parseBuiltin(file string, data []byte) ([]string, error) {
	var out []string
	for n, line := range lines(data) {
		p := string(bytes.TrimSpace(line))
		if p == "" {
			continue
		}
		if err := checkModulePath(p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		out = append(out, moduleName(p))
	}
	return out, nil
}

// lines yields the lines of data with their 1-based numbers, without the
// "\n".
func lines(data []byte) func(yield func(int, []byte) bool) {
	return func(yield func(int, []byte) bool) {
		n := 0
		for len(data) > 0 {
			n++
			line, rest, _ := bytes.Cut(data, []byte("\n"))
			if !yield(n, line) {
				return
			}
			data = rest
		}
	}
}

// checkModulePath checks a module path from modules.dep or
// modules.builtin: relative to the tree, inside it, ending in a module
// suffix and naming a module.
func checkModulePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty module path")
	case strings.ContainsAny(p, "\x00\\"):
		return fmt.Errorf("module path %q holds a NUL or a backslash", p)
	case strings.ContainsAny(p, asciiSpace):
		// modules.dep separates paths with spaces, so none can hold one.
		return fmt.Errorf("module path %q holds white space", p)
	case path.IsAbs(p):
		// kmod accepts absolute paths, but the tree being read may be
		// another system's (an unpacked package): an absolute path would
		// pick a file of this host.
		return fmt.Errorf("module path %q is absolute; only paths inside the module tree are supported", p)
	}
	for elem := range strings.SplitSeq(p, "/") {
		if elem == ".." {
			return fmt.Errorf("module path %q leaves the module tree (\"..\")", p)
		}
	}
	if _, ok := compression(p); !ok {
		return fmt.Errorf("module path %q does not end in .ko, .ko.xz, .ko.zst or .ko.gz", p)
	}
	if moduleName(p) == "" {
		return fmt.Errorf("module path %q has no module name before its suffix", p)
	}
	return nil
}

// compression returns how the module file p is compressed: "" for a plain
// .ko, "xz", "zst" or "gz". ok is false when p is not a module file.
func compression(p string) (kind string, ok bool) {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(p, s.suffix) {
			return s.compression, true
		}
	}
	return "", false
}

// moduleName turns a module path into the module's name the way kmod
// does (libkmod's modname_normalize): the file name up to its first '.',
// with every '-' turned into '_', the form the kernel itself uses for the
// name (scripts/Makefile.lib passes KBUILD_MODNAME with '-' replaced).
func moduleName(p string) string {
	base, _, _ := strings.Cut(path.Base(p), ".")
	return normalize(base)
}

// normalize makes a module name as the user typed it comparable: kmod
// treats '-' and '_' in module names as the same character.
func normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

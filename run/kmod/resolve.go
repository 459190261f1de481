package kmod

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Module is one module file to load into the guest.
type Module struct {
	// Name is the module's name as the kernel knows it ('-' written as
	// '_'), such as "virtio_pci".
	Name string
	// Path is the file's absolute path on the host.
	Path string
	// RelPath is the path as modules.dep lists it, relative to the tree,
	// such as "kernel/drivers/virtio/virtio_pci.ko".
	RelPath string
	// Compressed is how the file is compressed, from its suffix: "" (.ko),
	// "xz" (.ko.xz), "zst" (.ko.zst) or "gz" (.ko.gz).
	Compressed string
}

// Plan is what it takes to get a set of modules into a running kernel.
type Plan struct {
	// Load lists the module files to load, in order: each module comes
	// after every module it needs, and appears once.
	Load []Module
	// Builtin names the requested modules that are built into the kernel
	// and need no file.
	Builtin []string
}

// depIndex is modules.dep as a graph.
type depIndex struct {
	file   string // path of modules.dep, for messages
	mods   []depMod
	byName map[string]int
}

// depMod is one module of modules.dep.
type depMod struct {
	name string
	rel  string
	// deps indexes the modules it needs, in the order listed.
	deps []int
}

// newDepIndex builds the graph from the parsed lines of file. Every
// module must have one line of its own, and every dependency must be a
// module with a line: depmod writes both, so anything else is a damaged or
// hand-made file.
func newDepIndex(file string, lines []depLine) (*depIndex, error) {
	idx := &depIndex{file: file, mods: make([]depMod, 0, len(lines)), byName: make(map[string]int, len(lines))}
	byPath := make(map[string]int, len(lines))
	for _, l := range lines {
		if j, dup := byPath[l.path]; dup {
			return nil, fmt.Errorf("%s:%d: %s is listed a second time (first on line %d); "+
				"depmod lists each module once", file, l.line, l.path, lines[j].line)
		}
		name := moduleName(l.path)
		if j, dup := idx.byName[name]; dup {
			return nil, fmt.Errorf("%s:%d: module %s is listed a second time, as %s (first as %s on line %d); "+
				"depmod lists each module once", file, l.line, name, l.path, lines[j].path, lines[j].line)
		}
		byPath[l.path] = len(idx.mods)
		idx.byName[name] = len(idx.mods)
		idx.mods = append(idx.mods, depMod{name: name, rel: l.path})
	}
	for i, l := range lines {
		deps := make([]int, 0, len(l.deps))
		for _, d := range l.deps {
			j, ok := byPath[d]
			if !ok {
				return nil, fmt.Errorf("%s:%d: %s needs %s, which has no line of its own; "+
					"the file is incomplete (regenerate it with depmod)", file, l.line, l.path, d)
			}
			deps = append(deps, j)
		}
		idx.mods[i].deps = deps
	}
	return idx, nil
}

// Visit states of a module during Resolve's depth-first walk.
const (
	unvisited = iota
	visiting  // on the walk's stack: meeting it again is a cycle
	visited   // in the plan already
)

// frame is one module on the walk's stack and how many of its
// dependencies the walk has taken.
type frame struct {
	mod, taken int
}

// loadOrder appends to out the modules that module i needs and then i,
// each after all it needs, skipping those state marks visited. The walk
// uses its own stack, so a long chain in a hostile file cannot exhaust
// the goroutine's.
//
// A module's line lists everything it needs such that loading the list
// from its end backwards loads each module after its own dependencies:
// `9p.ko: 9pnet.ko fscache.ko netfs.ko`, where fscache needs netfs (kmod's
// depmod sorts them so; modprobe loads them last first). The walk takes
// the dependencies last first too, so for a file depmod wrote the order
// is the one modprobe uses; it also checks every module's own line, so a
// file that lists too little, or lists a cycle, cannot produce a wrong
// order.
func (d *depIndex) loadOrder(i int, state []uint8, out []int) ([]int, error) {
	if state[i] == visited {
		return out, nil
	}
	state[i] = visiting
	stack := []frame{{mod: i}}
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		deps := d.mods[top.mod].deps
		if top.taken == len(deps) {
			state[top.mod] = visited
			out = append(out, top.mod)
			stack = stack[:len(stack)-1]
			continue
		}
		dep := deps[len(deps)-1-top.taken]
		top.taken++
		switch state[dep] {
		case visited:
			continue
		case visiting:
			return nil, d.cycle(stack, dep)
		}
		state[dep] = visiting
		stack = append(stack, frame{mod: dep})
	}
	return out, nil
}

// cycle is the error for a dependency cycle: dep is on the stack already.
func (d *depIndex) cycle(stack []frame, dep int) error {
	var names []string
	for k := len(stack) - 1; k >= 0; k-- {
		names = append(names, d.mods[stack[k].mod].name)
		if stack[k].mod == dep {
			break
		}
	}
	// names runs from the top of the stack back to dep; print it forward.
	for a, b := 0, len(names)-1; a < b; a, b = a+1, b-1 {
		names[a], names[b] = names[b], names[a]
	}
	names = append(names, d.mods[dep].name)
	return fmt.Errorf("%s: modules depend on each other in a cycle, %s, so no load order exists; "+
		"depmod never writes one: regenerate the file with depmod", d.file, strings.Join(names, " -> "))
}

// Resolve returns the plan to load the modules named, with everything they
// depend on. Names may be written with '-' or '_' (kmod treats them as the
// same). A module that is built into the kernel goes into Plan.Builtin
// instead. It is an error if a name is neither a module file nor built
// in, or if a file the plan needs is missing from the tree.
func (t *Tree) Resolve(names ...string) (Plan, error) {
	var plan Plan
	state := make([]uint8, len(t.deps.mods))
	var order []int
	builtinSeen := map[string]bool{}
	for _, raw := range names {
		name := normalize(raw)
		if name == "" {
			return Plan{}, fmt.Errorf("empty module name")
		}
		if i, ok := t.deps.byName[name]; ok {
			var err error
			if order, err = t.deps.loadOrder(i, state, order); err != nil {
				return Plan{}, err
			}
			continue
		}
		if t.builtin[name] {
			if !builtinSeen[name] {
				builtinSeen[name] = true
				plan.Builtin = append(plan.Builtin, name)
			}
			continue
		}
		return Plan{}, t.unknown(raw)
	}
	for _, i := range order {
		m := t.deps.mods[i]
		kind, _ := compression(m.rel) // checked by parseDep
		mod := Module{Name: m.name, Path: filepath.Join(t.dir, filepath.FromSlash(m.rel)), RelPath: m.rel,
			Compressed: kind}
		if err := t.checkFile(mod); err != nil {
			return Plan{}, err
		}
		plan.Load = append(plan.Load, mod)
	}
	return plan, nil
}

// Has reports whether the kernel has the module name, as a file or built
// in, so a caller can leave out optional modules the kernel lacks.
func (t *Tree) Has(name string) bool {
	name = normalize(name)
	_, ok := t.deps.byName[name]
	return ok || t.builtin[name]
}

// unknown is the error for a module name the tree does not have.
func (t *Tree) unknown(name string) error {
	dep := filepath.Join(t.dir, DepFile)
	if !t.hasBuiltin {
		return fmt.Errorf("module %q is not in %s, and the tree has no %s to list the modules built "+
			"into kernel %s; check the name, or add the kernel's %s to the tree", name, dep, BuiltinFile,
			t.release, BuiltinFile)
	}
	return fmt.Errorf("module %q is neither in %s nor in %s: kernel %s does not have it; "+
		"check the name, or boot a kernel that has the module", name, dep, BuiltinFile, t.release)
}

// checkFile checks that a module file the plan needs is in the tree.
func (t *Tree) checkFile(m Module) error {
	st, err := os.Stat(m.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("module %s: %s lists %s, but the file is missing; the tree is incomplete "+
			"(unpack or install the whole kernel package)", m.Name, DepFile, m.Path)
	case err != nil:
		return fmt.Errorf("module %s: %w", m.Name, err)
	case !st.Mode().IsRegular():
		return fmt.Errorf("module %s: %s is not a regular file", m.Name, m.Path)
	}
	return nil
}

// Package docs holds govmm's guides (tour.md, concepts.md, benchmarks.md)
// and the code that keeps them honest: docs_test.go checks that every
// relative link in the repository's Markdown resolves, down to the Go
// symbol or Markdown heading it names, and runs the shell commands the
// guides show. The functions here are exported so that other tests (the
// end-to-end tests, which can boot Linux) can run the commands that need a
// real kernel.
//
// # Link convention
//
// A link into Go code names the file and, after #, the declaration:
//
//	[machine.New](../machine/machine.go#New)                 a func, type, const or var
//	[Machine.Run](../machine/machine.go#Machine.Run)         a method: Receiver.Method
//	[vcpu.handleExit](../machine/vcpu.go#vcpu.handleExit)    unexported ones too
//	[Config.Stats](../machine/machine.go#Config.Stats)       a struct field or interface method
//
// The receiver is the type's name without * or type parameters. GitHub
// ignores the fragment and opens the file; the test parses the file with
// go/parser and fails unless the name is declared in it. A link into a
// Markdown file may name a heading with GitHub's slug (#vm-exits). Links
// with a scheme (https:) are not checked.
//
// # Command blocks
//
// In the guides, every fenced block whose info string is sh, bash or shell
// is a command block and must be tagged by HTML comments on the lines just
// above the fence (no blank line in between):
//
//	<!-- runs: local -->         runs on any usable /dev/kvm, with as and ld
//	<!-- runs: e2e -->           needs to boot Linux: hardware-assisted KVM
//	                             and the guest assets of `make guests`
//	<!-- expect: REGEX -->       optional, repeatable: the output must match
//
// A block runs as one `bash -e -o pipefail` script from the repository root,
// with a freshly built govmm first on PATH and stdin from /dev/null. It
// passes when it exits with status 0 and its combined stdout and stderr
// match every expect regexp (Go syntax, (?m) implied). The blocks run in
// the order of Pages and, within a page, from top to bottom, as a reader
// would run them: a block may use a file an earlier one made (section 0 of
// the tour builds build/tiny-bzImage). Output examples use plain ```
// fences and are never run.
package docs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unicode"
)

// Pages are the guides whose command blocks are checked and run, relative
// to the repository root.
var Pages = []string{"docs/tour.md", "docs/concepts.md"}

// Link is a Markdown link found in a file.
type Link struct {
	File   string // the Markdown file
	Line   int    // 1-based
	Target string // as written, e.g. ../machine/machine.go#Machine.Run
}

// inlineLink matches [text](target) and ![alt](target), with an optional
// "title"; the target is group 1. Link text may hold one level of nested
// brackets.
var inlineLink = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)

// refDef matches a reference definition: [label]: target.
var refDef = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$`)

// inlineCode matches a code span, whose contents are not Markdown.
var inlineCode = regexp.MustCompile("`+[^`]*`+")

// fence reports whether line opens or closes a fenced code block, and with
// what marker (``` or ~~~, of any length) and info string.
func fence(line string) (marker, info string, ok bool) {
	t := strings.TrimLeft(line, " ")
	if len(line)-len(t) > 3 {
		return "", "", false
	}
	for _, c := range []string{"```", "~~~"} {
		if strings.HasPrefix(t, c) {
			n := len(t) - len(strings.TrimLeft(t, c[:1]))
			return t[:n], strings.TrimSpace(t[n:]), true
		}
	}
	return "", "", false
}

// scan calls fn for each line of a Markdown file outside fenced code
// blocks.
func scan(path string, fn func(lineNo int, line string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	open := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m, _, ok := fence(line); ok {
			switch {
			case open == "":
				open = m
				continue
			case m[0] == open[0] && len(m) >= len(open):
				open = ""
				continue
			}
		}
		if open == "" {
			fn(n, line)
		}
	}
	return sc.Err()
}

// Links returns the links of a Markdown file, outside code blocks and code
// spans.
func Links(path string) ([]Link, error) {
	var links []Link
	err := scan(path, func(n int, line string) {
		if m := refDef.FindStringSubmatch(line); m != nil {
			links = append(links, Link{File: path, Line: n, Target: m[1]})
			return
		}
		line = inlineCode.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			links = append(links, Link{File: path, Line: n, Target: m[1]})
		}
	})
	return links, err
}

// external reports whether a link target has a URL scheme (https:, mailto:).
var external = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// CheckLink checks one link: a relative target must name an existing file
// or directory, and a fragment must name a declared Go symbol (in a .go
// file) or a heading (in a .md file, or in the linking file itself when
// the target is only a fragment). External links pass unchecked.
func CheckLink(l Link) error {
	if external.MatchString(l.Target) {
		return nil
	}
	path, frag, _ := strings.Cut(l.Target, "#")
	if strings.HasPrefix(path, "/") {
		return fmt.Errorf("absolute link %q: use a path relative to %s", l.Target, filepath.Base(l.File))
	}
	file := l.File
	if path != "" {
		file = filepath.Join(filepath.Dir(l.File), filepath.FromSlash(path))
		fi, err := os.Stat(file)
		if err != nil {
			return fmt.Errorf("link %q: %s does not exist", l.Target, file)
		}
		if frag != "" && fi.IsDir() {
			return fmt.Errorf("link %q: a directory has no #%s", l.Target, frag)
		}
	}
	if frag == "" {
		return nil
	}
	switch filepath.Ext(file) {
	case ".go":
		syms, err := GoSymbols(file)
		if err != nil {
			return fmt.Errorf("link %q: %w", l.Target, err)
		}
		if !syms[frag] {
			return fmt.Errorf("link %q: %s declares no %s (anchors into Go files are Name or Type.Method)", l.Target, file, frag)
		}
	case ".md":
		anchors, err := HeadingAnchors(file)
		if err != nil {
			return fmt.Errorf("link %q: %w", l.Target, err)
		}
		if !anchors[frag] {
			return fmt.Errorf("link %q: %s has no heading with anchor #%s", l.Target, file, frag)
		}
	default:
		return fmt.Errorf("link %q: anchors are checked only into .go and .md files", l.Target)
	}
	return nil
}

// GoSymbols returns the names a Go file declares at package level: funcs,
// types, consts and vars by name, methods as Receiver.Method, and struct
// fields and interface methods as Type.Field.
func GoSymbols(path string) (map[string]bool, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	syms := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			name := d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				name = receiverName(d.Recv.List[0].Type) + "." + name
			}
			syms[name] = true
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					syms[s.Name.Name] = true
					addMembers(syms, s.Name.Name, s.Type)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						syms[n.Name] = true
					}
				}
			}
		}
	}
	return syms, nil
}

// receiverName is the type name of a method receiver: T for T, *T, T[P]
// and *T[P, Q].
func receiverName(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.ParenExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// addMembers records the fields of a struct type and the methods of an
// interface type as Type.Name; embedded fields by their type's name.
func addMembers(syms map[string]bool, typ string, e ast.Expr) {
	var fields *ast.FieldList
	switch t := e.(type) {
	case *ast.StructType:
		fields = t.Fields
	case *ast.InterfaceType:
		fields = t.Methods
	default:
		return
	}
	for _, f := range fields.List {
		if len(f.Names) == 0 {
			if n := receiverName(f.Type); n != "" {
				syms[typ+"."+n] = true
			} else if sel, ok := f.Type.(*ast.SelectorExpr); ok {
				syms[typ+"."+sel.Sel.Name] = true
			} else if st, ok := f.Type.(*ast.StarExpr); ok {
				if sel, ok := st.X.(*ast.SelectorExpr); ok {
					syms[typ+"."+sel.Sel.Name] = true
				}
			}
			continue
		}
		for _, n := range f.Names {
			syms[typ+"."+n.Name] = true
		}
	}
}

// atxHeading matches a Markdown ATX heading; group 1 is its text.
var atxHeading = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)

// mdLink matches an inline link, to keep only its text.
var mdLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// htmlTag matches an inline HTML tag.
var htmlTag = regexp.MustCompile(`<[^>]+>`)

// HeadingAnchors returns the anchors GitHub gives the headings of a
// Markdown file.
func HeadingAnchors(path string) (map[string]bool, error) {
	anchors := map[string]bool{}
	seen := map[string]int{}
	err := scan(path, func(_ int, line string) {
		m := atxHeading.FindStringSubmatch(line)
		if m == nil {
			return
		}
		s := Slug(m[1])
		if n := seen[s]; n > 0 {
			seen[s] = n + 1
			s = fmt.Sprintf("%s-%d", s, n)
		} else {
			seen[s] = 1
		}
		anchors[s] = true
	})
	return anchors, err
}

// Slug turns a heading's Markdown text into its anchor as GitHub does:
// the rendered text in lower case, without punctuation other than hyphens
// and underscores, spaces turned into hyphens.
func Slug(heading string) string {
	text := mdLink.ReplaceAllString(heading, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	text = strings.NewReplacer("`", "", "*", "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Where a command block may run.
const (
	RunsLocal = "local" // any usable /dev/kvm
	RunsE2E   = "e2e"   // hardware-assisted KVM and the Linux guest assets
)

// Block is a tagged command block of a guide.
type Block struct {
	File   string
	Line   int      // of the opening fence
	Runs   string   // RunsLocal or RunsE2E
	Expect []string // regexps the output must match
	Script string   // the commands, one per line
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

// directive matches <!-- key: value -->.
var directive = regexp.MustCompile(`^\s*<!--\s*([a-z]+):\s*(.*?)\s*-->\s*$`)

// commandInfo are the fence info strings of command blocks.
var commandInfo = map[string]bool{"sh": true, "bash": true, "shell": true}

// CommandBlocks returns the command blocks of a guide. Untagged command
// blocks, unknown directives, bad regexps and directives that tag no block
// are errors.
func CommandBlocks(path string) ([]Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(data), "\n")
	var blocks []Block
	var errs []error
	bad := func(n int, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...)))
	}
	for i := 0; i < len(lines); i++ {
		marker, info, ok := fence(lines[i])
		if !ok {
			if m := directive.FindStringSubmatch(lines[i]); m != nil && (m[1] == "runs" || m[1] == "expect") {
				// Directives must sit right above a fence, which the
				// fence's own look-back consumes; one reached here tags
				// nothing.
				j := i
				for j < len(lines) && directive.MatchString(lines[j]) {
					j++
				}
				if j == len(lines) {
					bad(i+1, "%q tags no code block", strings.TrimSpace(lines[i]))
				} else if _, _, ok := fence(lines[j]); !ok {
					bad(i+1, "%q tags no code block: put it on the line just above the fence", strings.TrimSpace(lines[i]))
				}
				i = j - 1
			}
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines); i++ {
			if m, _, ok := fence(lines[i]); ok && m[0] == marker[0] && len(m) >= len(marker) {
				break
			}
			body = append(body, lines[i])
		}
		if i == len(lines) {
			bad(start+1, "code block is not closed")
		}
		word, _, _ := strings.Cut(info, " ")
		b := Block{File: path, Line: start + 1, Script: strings.Join(body, "\n")}
		for j := start - 1; j >= 0; j-- {
			m := directive.FindStringSubmatch(lines[j])
			if m == nil {
				break
			}
			switch m[1] {
			case "runs":
				if m[2] != RunsLocal && m[2] != RunsE2E {
					bad(j+1, "runs: %q: want %s or %s", m[2], RunsLocal, RunsE2E)
				}
				if b.Runs != "" {
					bad(j+1, "two runs: directives")
				}
				b.Runs = m[2]
			case "expect":
				if _, err := regexp.Compile(m[2]); err != nil {
					bad(j+1, "expect: %v", err)
				}
				b.Expect = append([]string{m[2]}, b.Expect...)
			default:
				bad(j+1, "unknown directive %q (want runs or expect)", m[1])
			}
		}
		switch {
		case commandInfo[word] && b.Runs == "":
			bad(start+1, "```%s block without a <!-- runs: local --> or <!-- runs: e2e --> line above it: every command shown must run in CI", word)
		case !commandInfo[word] && (b.Runs != "" || len(b.Expect) > 0):
			bad(start+1, "runs:/expect: on a ```%s block, which is not a command block (use ```sh)", info)
		case commandInfo[word]:
			blocks = append(blocks, b)
		}
	}
	return blocks, errors.Join(errs...)
}

// CheckOutput checks a block's output against its expect regexps.
func (b Block) CheckOutput(out []byte) error {
	var errs []error
	for _, e := range b.Expect {
		re, err := regexp.Compile("(?m)" + e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !re.Match(out) {
			errs = append(errs, fmt.Errorf("output does not match %q", e))
		}
	}
	return errors.Join(errs...)
}

// Cmd returns the command that runs the block: its script under
// `bash -e -o pipefail`, in root (the repository root), with bindir (where
// a govmm binary is) first on PATH and stdin from /dev/null. Run it with
// CombinedOutput and pass the output to CheckOutput.
func (b Block) Cmd(ctx context.Context, root, bindir string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "bash", "-e", "-o", "pipefail", "-c", b.Script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PATH="+bindir+string(os.PathListSeparator)+os.Getenv("PATH"))
	// Its own process group, so that a timeout ends govmm too, not
	// only bash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

package docs

// The documentation is checked, not trusted.
//
// Link convention (see the package comment in mdcheck.go for the whole
// story): a link into Go code is the file plus, after #, the declaration it
// is about, written Name for a func, type, const or var and Type.Name for a
// method, a struct field or an interface method:
//
//	[Machine.Run](../machine/machine.go#Machine.Run)
//	[vcpu.handleExit](../machine/vcpu.go#vcpu.handleExit)
//	[memory.RAMLayout](../machine/memory/layout.go#RAMLayout)
//
// A link into Markdown may end in a GitHub heading anchor (#vm-exits).
//
//   - TestCodeLinksResolve: every relative link in README.md, docs/*.md and
//     examples/**/README.md points at an existing file or directory; a
//     #Symbol into a .go file names a declaration of that file (parsed with
//     go/parser); a #anchor into a .md file names one of its headings.
//   - TestCommandBlocksTagged: every ```sh block of tour.md and concepts.md
//     says where it runs (<!-- runs: local --> or <!-- runs: e2e -->), and
//     the repository paths its commands name exist.
//   - TestCommandsRun: builds govmm into a temporary directory and runs the
//     `local` blocks from the repository root with it first on PATH,
//     checking exit status 0 and the <!-- expect: REGEX --> lines. It skips
//     without a usable /dev/kvm or without GNU as and ld. The `e2e` blocks
//     boot Linux; the end-to-end tests run them (docs.CommandBlocks,
//     Block.Cmd, Block.CheckOutput).
//   - TestCheckerCatchesMistakes: the checks themselves fail on broken
//     links, missing symbols and headings, untagged blocks and output that
//     does not match.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockTimeout bounds one local command block. They run tiny guests and
// finish in seconds, also on a software KVM.
const blockTimeout = 3 * time.Minute

// repoRoot is the repository root: the test runs in docs/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "go.mod"))
	require.NoError(t, err, "the docs tests must run in docs/, below go.mod")
	return root
}

// markdownFiles lists the Markdown files whose links are checked.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{filepath.Join(root, "README.md")}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	files = append(files, docs...)
	err = filepath.WalkDir(filepath.Join(root, "examples"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "README.md" {
			files = append(files, p)
		}
		return err
	})
	require.NoError(t, err)
	return files
}

func TestCodeLinksResolve(t *testing.T) {
	root := repoRoot(t)
	files := markdownFiles(t, root)
	for _, p := range Pages {
		assert.Contains(t, files, filepath.Join(root, p), "guide %s is missing", p)
	}
	n := 0
	for _, f := range files {
		links, err := Links(f)
		require.NoError(t, err)
		for _, l := range links {
			n++
			if err := CheckLink(l); err != nil {
				rel, _ := filepath.Rel(root, l.File)
				t.Errorf("%s:%d: %v", rel, l.Line, err)
			}
		}
	}
	t.Logf("%d links in %d files", n, len(files))
	// The guides link into the code on nearly every paragraph; a parser
	// that silently found nothing would pass everything.
	assert.Greater(t, n, 100, "suspiciously few links found")
}

// repoPath matches a token that looks like a path into the repository.
var repoPath = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.*-]+)+/?$`)

// ignoredDirs hold build outputs: a command may name files in them that
// an earlier command (or `make guests`) creates.
var ignoredDirs = map[string]bool{"build": true, "bin": true}

func TestCommandBlocksTagged(t *testing.T) {
	root := repoRoot(t)
	count := map[string]int{}
	for _, p := range Pages {
		blocks, err := CommandBlocks(filepath.Join(root, p))
		require.NoError(t, err)
		for _, b := range blocks {
			count[b.Runs]++
			for _, tok := range strings.Fields(b.Script) {
				tok = strings.Trim(tok, `'"`)
				if _, v, ok := strings.Cut(tok, "="); ok && strings.HasPrefix(tok, "-") {
					tok = v
				}
				if !repoPath.MatchString(tok) {
					continue
				}
				top, _, _ := strings.Cut(tok, "/")
				if ignoredDirs[top] {
					continue
				}
				if fi, err := os.Stat(filepath.Join(root, top)); err != nil || !fi.IsDir() {
					continue // not a repository path (e.g. a Go package pattern's tail)
				}
				_, err := os.Stat(filepath.Join(root, strings.TrimSuffix(tok, "/...")))
				assert.NoError(t, err, "%s:%d: the command block names %s, which does not exist", p, b.Line, tok)
			}
		}
	}
	t.Logf("command blocks: %d local, %d e2e", count[RunsLocal], count[RunsE2E])
	assert.NotZero(t, count[RunsLocal])
	assert.NotZero(t, count[RunsE2E])
}

// needLocalTools skips unless this machine can run the local blocks: a
// /dev/kvm this user can open, and GNU as and ld for the lessons.
func needLocalTools(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("the local command blocks need a usable /dev/kvm: %v", err)
	}
	f.Close()
	for _, tool := range []string{"as", "ld", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the local command blocks need %s (binutils): %v", tool, err)
		}
	}
}

func TestCommandsRun(t *testing.T) {
	root := repoRoot(t)
	var blocks []Block
	for _, p := range Pages {
		bs, err := CommandBlocks(filepath.Join(root, p))
		require.NoError(t, err)
		blocks = append(blocks, bs...)
	}
	needLocalTools(t)

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "govmm"), "./cmd/govmm")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build ./cmd/govmm:\n%s", out)

	ran := 0
	for _, b := range blocks {
		if b.Runs != RunsLocal {
			continue
		}
		rel, _ := filepath.Rel(root, b.File)
		t.Run(strings.ReplaceAll(rel, "/", "_")+":"+strconv.Itoa(b.Line), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
			defer cancel()
			out, err := b.Cmd(ctx, root, bin).CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("%s:%d did not finish within %v:\n%s\noutput:\n%s", rel, b.Line, blockTimeout, b.Script, out)
			}
			if err != nil {
				t.Fatalf("%s:%d failed: %v\n%s\noutput:\n%s", rel, b.Line, err, b.Script, out)
			}
			if err := b.CheckOutput(out); err != nil {
				t.Fatalf("%s:%d: %v\n%s\noutput:\n%s", rel, b.Line, err, b.Script, out)
			}
		})
		ran++
	}
	assert.NotZero(t, ran, "no local command blocks")
}

// TestCheckerCatchesMistakes shows that the checks can fail: a small tree
// with one good and one broken link of each kind, and guides with the
// mistakes CommandBlocks must refuse.
func TestCheckerCatchesMistakes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	write("code/a.go", `package a

type T struct{ Field int; *Embedded }
type I interface{ Method() }
type G[P any] struct{}
func New() *T { return nil }
func (t *T) Run() {}
func (g *G[P]) Get() {}
const C = 1
var V, W = 1, 2
`)
	write("code/other.md", "# Other page\n\n## VM exits: who emulates what\n\n## VM exits: who emulates what\n")
	page := write("page.md", "# Page\n\n## A `code` heading\n\n"+
		"[ok](code/a.go) [ok](code/a.go#New) [ok](code/a.go#T.Run) [ok](code/a.go#T.Field)\n"+
		"[ok](code/a.go#T.Embedded) [ok](code/a.go#I.Method) [ok](code/a.go#G.Get) [ok](code/a.go#C)\n"+
		"[ok](code/a.go#W) [ok](code/) [ok](#a-code-heading) [ok](https://example.com/x#y)\n"+
		"[ok](code/other.md#vm-exits-who-emulates-what-1) [ok](code/other.md#other-page)\n"+
		"`[not a link](nowhere.go)`\n"+
		"```\n[not a link](nowhere.go)\n```\n"+
		"[bad](code/b.go) [bad](code/a.go#Run) [bad](code/a.go#T.Walk) [bad](code/a.go#Nothing)\n"+
		"[bad](#no-such-heading) [bad](code/other.md#vm-exits-who-emulates-what-2) [bad](code/#x)\n"+
		"[bad](/abs/path.go) [bad](page.md#nope)\n"+
		"[bad]: code/missing.go\n")
	links, err := Links(page)
	require.NoError(t, err)
	var good, bad []string
	for _, l := range links {
		if err := CheckLink(l); err != nil {
			bad = append(bad, l.Target)
		} else {
			good = append(good, l.Target)
		}
	}
	assert.Len(t, good, 14, "good links: %v", good)
	assert.Equal(t, []string{
		"code/b.go", "code/a.go#Run", "code/a.go#T.Walk", "code/a.go#Nothing",
		"#no-such-heading", "code/other.md#vm-exits-who-emulates-what-2", "code/#x",
		"/abs/path.go", "page.md#nope", "code/missing.go",
	}, bad)

	// Command blocks.
	guide := write("guide.md", "<!-- runs: local -->\n<!-- expect: ^hello$ -->\n```sh\necho hello\n```\n\n"+
		"```\noutput, not run\n```\n\n"+
		"<!-- runs: e2e -->\n```sh\ngovmm boot --kernel build/x\n```\n")
	blocks, err := CommandBlocks(guide)
	require.NoError(t, err)
	require.Len(t, blocks, 2)
	assert.Equal(t, Block{File: guide, Line: 3, Runs: RunsLocal, Expect: []string{"^hello$"}, Script: "echo hello"}, blocks[0])
	assert.Equal(t, RunsE2E, blocks[1].Runs)
	assert.NoError(t, blocks[0].CheckOutput([]byte("x\nhello\n")))
	assert.Error(t, blocks[0].CheckOutput([]byte("hello world\n")))

	for name, text := range map[string]string{
		"untagged":   "```sh\necho hi\n```\n",
		"bad tag":    "<!-- runs: sometimes -->\n```sh\necho hi\n```\n",
		"bad regexp": "<!-- runs: local -->\n<!-- expect: ( -->\n```sh\necho hi\n```\n",
		"unknown":    "<!-- runs: local -->\n<!-- timeout: 5s -->\n```sh\necho hi\n```\n",
		"detached":   "<!-- runs: local -->\n\n```sh\necho hi\n```\n",
		"on output":  "<!-- runs: local -->\n```\nhi\n```\n",
		"unclosed":   "<!-- runs: local -->\n```sh\necho hi\n",
	} {
		_, err := CommandBlocks(write(strings.ReplaceAll(name, " ", "-")+".md", text))
		assert.Error(t, err, name)
	}

	// A failing block fails.
	fail := Block{Script: "echo partial; false; echo never"}
	out, err := fail.Cmd(context.Background(), dir, dir).CombinedOutput()
	assert.Error(t, err)
	assert.Equal(t, "partial\n", string(out))
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Lesson 1: hello — real mode, a UART, and powering off": "lesson-1-hello--real-mode-a-uart-and-powering-off",
		"VM exits: who emulates what":                           "vm-exits-who-emulates-what",
		"4. The `boot_params` handoff":                          "4-the-boot_params-handoff",
		"[Linked](x.md) *emphasis* and <b>tags</b>":             "linked-emphasis-and-tags",
	} {
		assert.Equal(t, want, Slug(heading), heading)
	}
}

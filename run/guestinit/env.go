package guestinit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/govmm/govmm/run/wire"
)

// defaultEnv holds the variables the command gets when the config does
// not set them, in the order they are added. The PATH is Debian's
// default for root (/etc/login.defs, ENV_SUPATH); HOME is root's home,
// since the command runs as root; TERM=dumb tells programs the output is
// not a terminal they can drive with escape sequences.
var defaultEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TERM=dumb",
}

// buildEnv returns the command's environment: env, in which the last of
// several entries with one key wins (as with os/exec), followed by each
// of defaultEnv whose key env does not set.
func buildEnv(env []string) []string {
	// Walk backwards so the last entry for a key is the one kept, then
	// put the kept entries back in their order.
	seen := map[string]bool{}
	var kept []string
	for i := len(env) - 1; i >= 0; i-- {
		k, _, _ := strings.Cut(env[i], "=")
		if seen[k] {
			continue
		}
		seen[k] = true
		kept = append(kept, env[i])
	}
	out := make([]string, 0, len(kept)+len(defaultEnv))
	for i := len(kept) - 1; i >= 0; i-- {
		out = append(out, kept[i])
	}
	for _, kv := range defaultEnv {
		k, _, _ := strings.Cut(kv, "=")
		if !seen[k] {
			out = append(out, kv)
		}
	}
	return out
}

// getenv returns the value of key in env, a list of "KEY=VALUE" entries
// with unique keys, or "".
func getenv(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// errNotFound and errNotExecutable are what lookPath reports, worded as a
// shell words them.
var (
	errNotFound      = errors.New("not found")
	errNotExecutable = errors.New("permission denied")
	errIsDir         = errors.New("is a directory")
)

// lookPath finds the program to execute for the command name, as a POSIX
// shell does (Shell Command Language, §2.9.1.1 "Command Search and
// Execution"): a name with a slash is used as it is; otherwise each
// directory of pathEnv is tried in order, an empty entry meaning the
// current directory, and the first executable regular file wins;
// directories are passed over.
//
// On failure it returns the exit status a shell gives: wire.StatusNotFound
// when there is no such file, wire.StatusNotExecutable when there is one
// but it is a directory or has no execute permission. exec.LookPath cannot
// be used: it searches the init's own PATH and does not tell the two
// cases apart.
func lookPath(name, pathEnv string) (string, int, error) {
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", wire.StatusNotFound, errNotFound
			}
			return "", wire.StatusNotExecutable, err
		}
		return name, 0, nil
	}
	notExec := "" // the first match that was found but is not executable
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		err := checkExecutable(p)
		if err == nil {
			return p, 0, nil
		}
		// A directory of the same name is passed over, as if
		// absent; a file without execute permission is kept for
		// the error message.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errIsDir) && notExec == "" {
			notExec = p
		}
	}
	if notExec != "" {
		// Like bash, report the file that would have run had it been
		// executable, so the message points at it.
		return "", wire.StatusNotExecutable, fmt.Errorf("%s: %w", notExec, errNotExecutable)
	}
	return "", wire.StatusNotFound, errNotFound
}

// checkExecutable reports whether p is a regular file with an execute
// bit set: what execve(2) requires of root (capabilities(7),
// CAP_DAC_OVERRIDE grants execute only when some execute bit is set). It
// returns an error wrapping fs.ErrNotExist when p does not exist.
func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fs.ErrNotExist
		}
		return err
	}
	if fi.IsDir() {
		return errIsDir
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&anyExecBits == 0 {
		return errNotExecutable
	}
	return nil
}

// anyExecBits are the execute permission bits of user, group and others.
const anyExecBits = 0o111

// checkWorkDir checks that the working directory dir ("" means "/")
// exists in the guest and is a directory, so that a wrong --dir is
// reported as such rather than as a failing command.
func checkWorkDir(dir string) error {
	if dir == "" {
		return nil
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("working directory %s does not exist in the guest", dir)
	}
	if err != nil {
		return fmt.Errorf("working directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("working directory %s is not a directory", dir)
	}
	return nil
}

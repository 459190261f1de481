// Command govmm is a small type-2 hypervisor on Linux KVM.
//
//	govmm boot --kernel bzImage [--initrd FILE] [--append CMDLINE] [--mem SIZE] [--cpus N]
//	govmm run --kernel bzImage [options] -- COMMAND [ARGS...]
//	govmm probe
//	govmm lesson [NAME]
//	govmm version
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/govmm/govmm/run/guestinit"
	"github.com/govmm/govmm/run/wire"

	"github.com/spf13/pflag"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // a setup error or a guest that failed
	exitUsage = 2 // bad command-line usage
)

const usage = `govmm: a small, fast type-2 hypervisor on Linux KVM

Usage:
  govmm boot --kernel PATH [--initrd PATH] [--append CMDLINE] [--mem SIZE] [--cpus N]
  govmm run --kernel PATH [options] -- COMMAND [ARGS...]
                       run COMMAND in a throwaway VM; its output and exit status are govmm's
  govmm probe          say whether this host's KVM is hardware-backed, and what it supports
  govmm lesson [NAME]  list the lesson guests, or assemble one and boot it
  govmm version

Run 'govmm COMMAND --help' for a command's options.
`

// usageError is a command-line mistake: exit status 2.
type usageError struct{ error }

func main() {
	// `govmm run` packs this very binary into the guest's initramfs as
	// its init: there it is PID 1, started under the init's name.
	if os.Getpid() == 1 && filepath.Base(os.Args[0]) == filepath.Base(wire.InitPath) {
		guestinit.Main() // never returns
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one govmm command and returns the exit status. Errors are
// printed as one line, "govmm: ...", never as a Go stack trace.
func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	status := exitOK
	switch cmd := args[0]; cmd {
	case "boot":
		status, err = cmdBoot(args[1:], stdin, stdout, stderr)
	case "run":
		status = cmdRun(args[1:], stdin, stdout, stderr)
	case "probe":
		err = cmdProbe(args[1:], stdout)
	case "lesson":
		status, err = cmdLesson(args[1:], stdin, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "govmm %s\n", versionString())
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = usageError{fmt.Errorf("unknown command %q (try 'govmm help')", cmd)}
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "govmm: %s\n", oneLine(err))
		var u usageError
		if errors.As(err, &u) {
			return exitUsage
		}
		return exitError
	}
	return status
}

// oneLine keeps the first line of an error; the rest (a register dump, say)
// is printed by whoever produced it.
func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func versionString() string {
	v := version
	bi, ok := debug.ReadBuildInfo()
	if v == "" {
		v = "devel"
		if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	goVersion := "unknown Go"
	if ok {
		goVersion = bi.GoVersion
	}
	return fmt.Sprintf("%s (%s)", v, goVersion)
}

// newLogger makes the diagnostics logger: text to stderr at the given level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

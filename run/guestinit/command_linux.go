//go:build linux

package guestinit

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// runCommand runs the command args with the environment env and returns
// how it ended. Its standard input is stdin; its standard output and
// error are pipes whose contents go to w as Stdout and Stderr frames.
// After the command exits, runCommand copies its output for at most grace
// more (see outputGrace) and then returns; no frame of the command's is
// written to w after that, so the caller can send Exit.
//
// A command that is not found or cannot be executed gets a shell's exit
// status (127 or 126) and a "govmm-init: NAME: REASON" line on its
// standard error, not an InitError: the init did its part.
//
// runCommand waits for every child of the process, not only the command
// (reapUntil), as PID 1 must; elsewhere, call it only where no other
// child is being waited for.
func runCommand(w *wire.Writer, args, env []string, stdin *os.File, grace time.Duration,
	logf func(format string, args ...any)) wire.ExitStatus {
	// commandFailed reports a command that did not start.
	commandFailed := func(status int, err error) wire.ExitStatus {
		msg := fmt.Sprintf("%s%s: %v", wire.ConsolePrefix, args[0], err)
		logf("%s", msg[len(wire.ConsolePrefix):])
		_ = w.WriteFrame(wire.Stderr, []byte(msg+"\n"))
		return wire.ExitStatus{Status: status}
	}

	prog, status, err := lookPath(args[0], getenv(env, "PATH"))
	if err != nil {
		return commandFailed(status, err)
	}

	// One pipe per stream. os.Pipe makes both ends close-on-exec; the
	// child gets the write ends as its fd 1 and 2 through dup2, which
	// clears that flag on the copies. Fd puts a write end back in
	// blocking mode, which is what the command expects of its output
	// (os.Pipe makes both ends non-blocking for Go's poller); the read
	// ends stay with the poller, so that closing them wakes a blocked
	// read (waitOutput).
	outR, outW, err := os.Pipe()
	if err != nil {
		return initFailure(fmt.Errorf("creating the command's stdout pipe: %w", err))
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outR.Close()
		_ = outW.Close()
		return initFailure(fmt.Errorf("creating the command's stderr pipe: %w", err))
	}
	pid, err := startCommand(prog, args, env, [3]uintptr{stdin.Fd(), outW.Fd(), errW.Fd()})
	// The init's copies of the write ends must go, whether or not the
	// command started: the pipes reach end of file only when every
	// write end is closed.
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		_ = outR.Close()
		_ = errR.Close()
		// execve(2) fails with ENOENT also when the file exists but
		// its interpreter (#! line) or dynamic loader does not; a
		// shell says 127 for both.
		if errors.Is(err, unix.ENOENT) {
			return commandFailed(wire.StatusNotFound, fmt.Errorf("%s: %w (a missing #! interpreter or dynamic loader?)", prog, err))
		}
		return commandFailed(wire.StatusNotExecutable, fmt.Errorf("%s: %w", prog, err))
	}

	stdout := startCopier(w, wire.Stdout, outR)
	stderr := startCopier(w, wire.Stderr, errR)
	ws, waitErr := reapUntil(pid)
	cut, errs := waitOutput(grace, stdout, stderr)
	for _, t := range cut {
		logf("the command's %v was still open %v after it exited (a process it left running holds it); the rest of it is lost", t, grace)
	}
	for _, err := range errs {
		logf("%v", err)
	}
	if waitErr != nil {
		return initFailure(waitErr)
	}
	return exitStatusOf(ws)
}

// initFailure is the exit status for a failure of the init's own while
// it runs the command.
func initFailure(err error) wire.ExitStatus {
	return wire.ExitStatus{Status: wire.StatusInitError, InitError: err.Error()}
}

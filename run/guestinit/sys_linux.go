//go:build linux

package guestinit

// The system calls of the init, each in a thin function. Most of them
// need root, and some (reboot, switching root) make sense only in PID 1
// of a VM; the tests do not call them.

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/govmm/govmm/run/wire"
)

// doMount carries out one step of the plan: mount(2) with the step's
// source, target, type, flags and options. It does not create the target.
// With retryNoEnt set it retries, every pollInterval for up to
// deviceTimeout, while mount fails with ENOENT.
func doMount(s mountStep) error {
	deadline := time.Now().Add(deviceTimeout)
	for {
		err := unix.Mount(s.source, s.target, s.fstype, s.flags, s.data)
		if err == nil || !s.retryNoEnt || !errors.Is(err, unix.ENOENT) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// moduleFlags returns the finit_module(2) flags for the module file path:
// MODULE_INIT_COMPRESSED_FILE for a compressed module, which asks the
// kernel to decompress it (Linux 5.17 and later, with
// CONFIG_MODULE_DECOMPRESS; include/uapi/linux/module.h), and 0 for a
// plain .ko.
func moduleFlags(path string) int {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(path, ext) {
			return unix.MODULE_INIT_COMPRESSED_FILE
		}
	}
	return 0
}

// errAlreadyLoaded is what loadModule returns for a module the kernel
// already has: not an error for the init.
var errAlreadyLoaded = errors.New("already loaded")

// loadModule loads the kernel module in the file path with
// finit_module(2), which takes the module from an open file rather than
// from memory, with no parameters. finit_module fails with EEXIST for a
// module already loaded (built in, or loaded twice); loadModule returns
// errAlreadyLoaded then.
func loadModule(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening module %s: %w", path, err)
	}
	defer unix.Close(fd)
	err = unix.FinitModule(fd, "", moduleFlags(path))
	if errors.Is(err, unix.EEXIST) {
		return errAlreadyLoaded
	}
	if err != nil {
		return fmt.Errorf("loading module %s: finit_module: %s (%w)", path, errnoName(err), err)
	}
	return nil
}

// errnoName returns the symbolic name of an errno, such as "ENOEXEC", or
// the error's text for any other error.
func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

// openPort opens a virtio-console port's device node. The descriptor is
// left in blocking mode (os.NewFile keeps it so, where os.OpenFile would
// hand a character device to Go's poller in non-blocking mode): the
// command inherits the stdin port as its fd 0 and must see the ordinary
// blocking reads a program expects.
func openPort(path string, flags int) (*os.File, error) {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// kernelRelease returns the running kernel's release, as uname -r prints
// it (uname(2)).
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// switchRoot makes dir, the mount point of the new root, the root of the
// file system, the way Documentation/filesystems/ramfs-rootfs-initramfs.rst
// describes: "cd /newmount; mount --move . /; chroot .". The initramfs is
// rootfs, which can be neither unmounted nor pivot_root'ed away from, so
// the new root is moved on top of it instead; chroot then makes the
// moved mount the process's root, and chdir("/") leaves the init inside
// it. The document also suggests deleting the initramfs's files first to
// free their memory; the init leaves them, since they are a few MiB at
// most and the VM is short-lived.
func switchRoot(dir string) error {
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("switching root: chdir %s: %w", dir, err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switching root: moving the mount %s to /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("switching root: chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("switching root: chdir /: %w", err)
	}
	return nil
}

// sethostname sets the guest's host name (sethostname(2)).
func sethostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("setting the host name to %q: %w", name, err)
	}
	return nil
}

// startCommand starts prog with args and env, its standard input, output
// and error on the descriptors in stdio, and returns its pid. The command
// gets its own session (setsid(2)): it has no controlling terminal, and
// its process group is its own. The init uses syscall.ForkExec rather
// than os/exec because it waits for all its children itself (reapUntil).
func startCommand(prog string, args, env []string, stdio [3]uintptr) (int, error) {
	return syscall.ForkExec(prog, args, &syscall.ProcAttr{
		Env:   env,
		Files: stdio[:],
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
}

// reapUntil waits for children until pid exits, and returns its status.
//
// As PID 1, the init is the parent of every orphan in the VM: a process
// whose parent exits is reparented to it (man 2 _exit), and each one
// that exits stays a zombie until its parent waits for it (man 2 wait,
// NOTES). So the init waits for any child
// (pid -1) and recognises the command by its pid. Doing all the waiting
// in this one loop is what keeps it correct: a second waiter, such as
// os/exec's Cmd.Wait, could lose the command's status to a wait4(-1) here,
// or reap an orphan it does not know.
func reapUntil(pid int) (unix.WaitStatus, error) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("waiting for the command (pid %d): %w", pid, err)
		}
		if got == pid {
			return ws, nil
		}
		// An orphan has exited, and wait4 has reaped it.
	}
}

// exitStatusOf turns the command's wait status into the Exit frame's
// payload, with the shell's convention for a signal: status 128+N.
func exitStatusOf(ws unix.WaitStatus) wire.ExitStatus {
	switch {
	case ws.Exited():
		return wire.ExitStatus{Status: ws.ExitStatus()}
	case ws.Signaled():
		sig := int(ws.Signal())
		return wire.ExitStatus{Status: wire.StatusSignalBase + sig, Signal: sig}
	}
	// Only a stopped or continued child gives another status, and
	// wait4 reports those only with WUNTRACED or WCONTINUED.
	return wire.ExitStatus{Status: wire.StatusInitError,
		InitError: fmt.Sprintf("unexpected wait status %#x for the command", uint32(ws))}
}

// powerOff ends the VM and never returns. reboot(2) with
// LINUX_REBOOT_CMD_POWER_OFF stops the system and asks the machine to
// turn itself off (through ACPI, which govmm emulates); a kernel with no
// way to do that halts instead (kernel/reboot.c turns the command into
// LINUX_REBOOT_CMD_HALT). man 2 reboot warns that it does not sync, so
// the init syncs first. reboot returns only on an error, such as EPERM;
// then the init tries to halt, and failing that sleeps for ever: PID 1
// must not exit, or the kernel panics.
func powerOff(logf func(format string, args ...any)) {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	logf("power off failed (%v); halting", err)
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_HALT)
	logf("halt failed (%v); sleeping", err)
	for {
		time.Sleep(time.Hour)
	}
}

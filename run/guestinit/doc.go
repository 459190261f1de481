// Package guestinit is the init `govmm run` puts in the guest: the first
// process the kernel starts (PID 1), from the initramfs the host builds.
// The host packs govmm's own static binary in as wire.InitPath and names
// it on the kernel command line with rdinit=; govmm's main calls Main when
// it finds itself running as PID 1 under that name.
//
// Main does, in order:
//
//  1. print wire.StartedLine on the console, so the host knows the kernel
//     reached userspace;
//  2. mount devtmpfs, proc and sysfs, and read the wire.Config the host
//     left at wire.ConfigPath;
//  3. load the kernel modules the config lists (virtio_console, 9p and
//     friends are modules in Debian's kernels);
//  4. find the virtio-console ports wire.ControlPort and wire.StdinPort
//     by name in sysfs, open them, and send wire.Hello;
//  5. mount the command's root (a 9p share or a block device) on
//     /newroot, with tmpfs directories, /dev, /proc, /sys and the 9p
//     shares inside it, and switch to it;
//  6. set the host name, build the environment, change to the working
//     directory;
//  7. run the command in its own session, with its standard input on the
//     stdin port and its output copied into Stdout and Stderr frames;
//  8. reap every process that exits meanwhile (PID 1 inherits orphans),
//     keeping the command's own status;
//  9. sync, send wire.Exit, and power the VM off.
//
// An init failure at any step is printed on the console and, once the
// control port is open, sent as a Log frame and an Exit frame with
// InitError set; then the VM powers off. PID 1 never exits: if it did,
// the kernel would panic ("Attempted to kill init!").
//
// The logic that needs neither root nor PID 1 — the environment, the
// search of PATH, the mount plan, the port lookup in sysfs, the wait
// status mapping and the output copiers — lives in small functions that
// the tests run on the host; the system calls that need PID 1 are kept
// in thin functions in sys_linux.go.
package guestinit

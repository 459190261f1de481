// Package kmod finds the kernel modules a guest kernel needs, on the host,
// so they can be packed into the guest's initramfs and loaded by its init.
//
// It reads what depmod(8) writes into a kernel's lib/modules/<release>
// directory:
//
//   - modules.dep: one line per module file, "path: dep dep ...", paths
//     relative to the directory (modules.dep(5));
//   - modules.builtin: one line per module compiled into the kernel image,
//     written by the kernel build (Documentation/kbuild/kbuild.rst,
//     "modules.builtin"), which therefore needs no file.
//
// modules.dep(5) calls the text files a convenience for humans (modprobe
// reads the .bin indexes next to them) and warns that the format may
// change, so this package parses it strictly and names the file and line
// of anything it does not understand.
//
// The release string that picks the directory comes from the kernel image
// itself (KernelRelease), so a mismatched module tree is caught before the
// guest fails to load modules built for another kernel.
package kmod

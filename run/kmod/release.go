package kmod

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/govmm/govmm/bootloader"
)

// Facts about the version string of a bzImage.
const (
	// versionPtrBias: Linux Documentation/arch/x86/boot.rst, "kernel_version":
	// "If set to a nonzero value, contains a pointer to a NUL-terminated
	// human-readable kernel version number string, less 0x200." The
	// pointer counts from the start of the setup code, which follows the
	// 512-byte boot sector in the file, so the string is at file offset
	// kernel_version + 0x200.
	versionPtrBias = 0x200
	// maxVersionLen bounds the search for the NUL. The string is
	// arch/x86/boot/version.c's UTS_RELEASE " (" LINUX_COMPILE_BY "@"
	// LINUX_COMPILE_HOST ") " UTS_VERSION, each part at most 64 bytes:
	// Debian's is about 100 bytes.
	maxVersionLen = 256
	// maxReleaseLen is __NEW_UTS_LEN (include/uapi/linux/utsname.h), the
	// size of utsname's release field without its NUL.
	maxReleaseLen = 64
	// Printable ASCII, the only bytes the version string is made of.
	firstPrintable = 0x20
	lastPrintable  = 0x7e
)

// KernelRelease returns the release of a Linux bzImage, the string
// `uname -r` prints in the booted kernel and the name of its
// lib/modules/<release> directory, such as "6.1.0-56-amd64".
//
// It reads the setup header's kernel_version pointer (boot protocol 2.00
// and later) and takes the first word of the string it points at.
// bzImage is untrusted: KernelRelease never panics and bounds every read.
func KernelRelease(bzImage []byte) (string, error) {
	h, err := bootloader.ParseSetupHeader(bzImage)
	if err != nil {
		return "", fmt.Errorf("reading the kernel release: %w", err)
	}
	if h.KernelVersion == 0 {
		return "", fmt.Errorf("kernel image has no version string (kernel_version is 0); pass --modules DIR " +
			"naming the lib/modules/<release> directory of this kernel")
	}
	// boot.rst: "This value should be less than (0x200*setup_sects)",
	// i.e. the string lies in the setup code. SetupSize counts the boot
	// sector too, hence the bias.
	start := uint64(h.KernelVersion) + versionPtrBias
	if start >= h.SetupSize() {
		return "", fmt.Errorf("kernel image's kernel_version %#x points past its %d setup bytes; "+
			"the image is damaged", h.KernelVersion, h.SetupSize())
	}
	// SetupSize is at most (255+1)*512 and ParseSetupHeader checked the
	// file holds it, so these offsets fit in an int and in bzImage.
	region := bzImage[start:h.SetupSize()]
	region = region[:min(len(region), maxVersionLen)]
	end := bytes.IndexByte(region, 0)
	if end < 0 {
		return "", fmt.Errorf("kernel image's version string at offset %#x has no NUL within %d bytes; "+
			"the image is damaged", start, len(region))
	}
	version := region[:end]
	for i, c := range version {
		if c < firstPrintable || c > lastPrintable {
			return "", fmt.Errorf("kernel image's version string at offset %#x holds the byte %#x at %d, "+
				"which is not printable ASCII; the image is damaged", start, c, i)
		}
	}
	// The release is everything up to the first space (version.c puts
	// " (" after UTS_RELEASE).
	release, _, _ := strings.Cut(string(version), " ")
	if err := checkRelease(release); err != nil {
		return "", fmt.Errorf("kernel image's version string %q: %w", version, err)
	}
	return release, nil
}

// checkRelease checks that release can be a kernel release and a directory
// name below lib/modules.
func checkRelease(release string) error {
	switch {
	case release == "":
		return fmt.Errorf("the kernel release is empty")
	case len(release) > maxReleaseLen:
		return fmt.Errorf("the kernel release %q is %d bytes, longer than Linux allows (%d)",
			release, len(release), maxReleaseLen)
	case release == "." || release == ".." || strings.ContainsAny(release, "/\x00"):
		return fmt.Errorf("the kernel release %q cannot name a lib/modules directory", release)
	}
	return nil
}

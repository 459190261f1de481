package kmod

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/bootloader"
)

// Layout of the synthetic bzImages, from boot.rst's header table, written
// as literal numbers so the test does not lean on the code's constants.
const (
	fakeSetupSects = 8                          // setup code: 8 sectors after the boot sector
	fakeSetupSize  = (fakeSetupSects + 1) * 512 // 4608 bytes
	fakePayload    = 4096                       // protected-mode bytes
)

// fakeBzImage returns the smallest image bootloader.ParseSetupHeader
// accepts (protocol 2.15, 64-bit entry), with kernel_version = ptr and
// version, NUL-terminated, at file offset ptr+0x200 where that fits.
func fakeBzImage(ptr uint16, version string) []byte {
	img := make([]byte, fakeSetupSize+fakePayload)
	le := binary.LittleEndian
	img[0x1f1] = fakeSetupSects
	le.PutUint32(img[0x1f4:], fakePayload/16) // syssize
	le.PutUint16(img[0x1fe:], 0xaa55)         // boot_flag
	img[0x200] = 0xeb                         // jmp short ...
	img[0x201] = 0x6a                         // ... to 0x26c, the header's end
	copy(img[0x202:], "HdrS")
	le.PutUint16(img[0x206:], 0x020f) // protocol 2.15
	le.PutUint16(img[0x20e:], ptr)    // kernel_version
	img[0x211] = 0x01                 // loadflags: LOADED_HIGH
	le.PutUint16(img[0x236:], 0x01)   // xloadflags: XLF_KERNEL_64
	le.PutUint32(img[0x260:], 1<<20)  // init_size
	if start := int(ptr) + 0x200; ptr != 0 && start < len(img) {
		copy(img[start:], version+"\x00")
	}
	return img
}

const debianVersion = "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-11-16)"

func TestKernelReleaseSynthetic(t *testing.T) {
	// Where a real Debian kernel has it: 0x42c0 + 0x200.
	img := fakeBzImage(0x0e00, debianVersion)
	rel, err := KernelRelease(img)
	require.NoError(t, err)
	assert.Equal(t, "6.1.0-56-amd64", rel)

	rel, err = KernelRelease(fakeBzImage(0x100, "6.1.192"))
	require.NoError(t, err, "a version string that is only the release")
	assert.Equal(t, "6.1.192", rel)

	// The longest string the bound allows: 255 bytes and the NUL.
	long := "6.1.0-56-amd64 " + strings.Repeat("x", 255-15)
	require.Len(t, long, 255)
	rel, err = KernelRelease(fakeBzImage(0x100, long))
	require.NoError(t, err)
	assert.Equal(t, "6.1.0-56-amd64", rel)

	// The last place the string may start: the last byte of the setup
	// code holds an empty string.
	last := uint16(fakeSetupSize - 0x200 - 1)
	_, err = KernelRelease(fakeBzImage(last, ""))
	require.ErrorContains(t, err, "release is empty")
	// The release may run up to the end of the setup code.
	img = fakeBzImage(last-7, "6.1.192")
	rel, err = KernelRelease(img)
	require.NoError(t, err)
	assert.Equal(t, "6.1.192", rel)
}

func TestKernelReleaseErrors(t *testing.T) {
	endOfSetup := uint16(fakeSetupSize - 0x200)
	noNUL := fakeBzImage(0x100, "")
	copy(noNUL[0x300:], strings.Repeat("6", 256)) // 256 bytes, no NUL in reach
	cutAtSetupEnd := fakeBzImage(endOfSetup-4, "")
	copy(cutAtSetupEnd[fakeSetupSize-4:], "6.1.0-56") // runs into the payload
	cases := []struct {
		name string
		img  []byte
		msg  string
	}{
		{"no version string", fakeBzImage(0, ""), "kernel image has no version string (kernel_version is 0)"},
		{"pointer past the setup code", fakeBzImage(endOfSetup, "6.1"), "points past its 4608 setup bytes"},
		{"far pointer", fakeBzImage(0xffff, ""), "points past"},
		{"no NUL within 256 bytes", noNUL, "no NUL within 256 bytes"},
		{"no NUL before the setup code ends", cutAtSetupEnd, "no NUL within 4 bytes"},
		{"control byte", fakeBzImage(0x100, "6.1.0\x01-56 (x)"), "byte 0x1 at 5, which is not printable"},
		{"high byte", fakeBzImage(0x100, "6.1.0-56 (caf\xe9)"), "byte 0xe9"},
		{"empty release", fakeBzImage(0x100, " (root@vm) #1"), "release is empty"},
		{"empty string", fakeBzImage(0x100, ""), "release is empty"},
		{"long release", fakeBzImage(0x100, strings.Repeat("6", 65)+" (x)"), "longer than Linux allows (64)"},
		{"slash", fakeBzImage(0x100, "6.1/../../etc (x)"), "cannot name a lib/modules directory"},
		{"dotdot", fakeBzImage(0x100, ".. (x)"), "cannot name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rel, err := KernelRelease(c.img)
			require.ErrorContains(t, err, c.msg)
			assert.Empty(t, rel)
		})
	}

	// A 64-byte release is still fine.
	rel, err := KernelRelease(fakeBzImage(0x100, strings.Repeat("6", 64)+" (x)"))
	require.NoError(t, err)
	assert.Len(t, rel, 64)

	// Not a bzImage at all: bootloader's errors come through.
	_, err = KernelRelease([]byte("\x7fELF\x02\x01\x01 a vmlinux"))
	assert.ErrorIs(t, err, bootloader.ErrELFVmlinux)
	_, err = KernelRelease(nil)
	assert.ErrorIs(t, err, bootloader.ErrNotBzImage)
	_, err = KernelRelease(make([]byte, 8192))
	assert.ErrorIs(t, err, bootloader.ErrNotBzImage)
}

// realImages are the guest kernels govmm's scripts build or download, next
// to the kernel-release file the scripts write for each. build/ is not in
// git: each one is skipped where it is absent.
var realImages = []struct{ image, releaseFile string }{
	{"../../build/guests/debian-generic/vmlinuz", "../../build/guests/debian-generic/kernel-release"},
	{"../../build/guests/debian-cloud/vmlinuz", "../../build/guests/debian-cloud/kernel-release"},
	{"../../build/guests/minimal/bzImage", "../../build/guests/minimal/kernel-release"},
}

func TestKernelReleaseReal(t *testing.T) {
	for _, ri := range realImages {
		t.Run(filepath.Base(filepath.Dir(ri.image)), func(t *testing.T) {
			img := readOrSkip(t, ri.image)
			want := strings.TrimSpace(string(readOrSkip(t, ri.releaseFile)))
			rel, err := KernelRelease(img)
			require.NoError(t, err)
			assert.Equal(t, want, rel)
		})
	}
}

func readOrSkip(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s does not exist (made by scripts/guest-assets.sh; run it to test with real kernels)", path)
	}
	require.NoError(t, err)
	return b
}

// FuzzKernelRelease builds images around a fuzzed kernel_version pointer
// and version string: no input may panic, and an accepted release must be
// the printable, space-free start of the string, short enough for utsname
// and usable as a directory name.
func FuzzKernelRelease(f *testing.F) {
	f.Add(uint16(0x0e00), []byte(debianVersion))
	f.Add(uint16(0x100), []byte("6.1.192 (root@vm) #1 SMP"))
	f.Add(uint16(0), []byte("x"))
	f.Add(uint16(0xffff), []byte("6.1"))
	f.Add(uint16(fakeSetupSize-0x200-1), []byte{})
	f.Add(uint16(0x100), []byte("6.1\x00 junk"))
	f.Add(uint16(0x100), []byte("../x y"))
	f.Fuzz(func(t *testing.T, ptr uint16, version []byte) {
		img := fakeBzImage(0, "")
		le := binary.LittleEndian
		le.PutUint16(img[0x20e:], ptr)
		start := int(ptr) + 0x200
		if ptr != 0 && start < len(img) {
			copy(img[start:], version)
		}
		rel, err := KernelRelease(img)
		if err != nil {
			assert.Empty(t, rel)
			return
		}
		require.NotEmpty(t, rel)
		assert.LessOrEqual(t, len(rel), 64)
		assert.Less(t, start+len(rel), fakeSetupSize, "the release lies in the setup code")
		assert.Equal(t, rel, string(img[start:start+len(rel)]), "the release is the string's start")
		next := img[start+len(rel)]
		assert.True(t, next == 0 || next == ' ', "the release ends at a NUL or a space, not %#x", next)
		for _, c := range []byte(rel) {
			assert.True(t, c > ' ' && c < 0x7f && c != '/', "byte %#x in release %q", c, rel)
		}
		assert.NotContains(t, []string{".", ".."}, rel)
	})
}

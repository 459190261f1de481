package bootloader

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/govmm/govmm/machine/memory"
)

// realKernels are the guest kernels govmm's scripts build or download; the
// tests run only where they exist (build/ is not in git).
var realKernels = []string{
	"../build/guests/debian-cloud/vmlinuz",
	"../build/guests/debian-generic/vmlinuz",
	"../build/guests/minimal/bzImage",
}

func readOrSkip(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s does not exist (built by scripts/; run them to test with a real kernel)", path)
	}
	require.NoError(t, err)
	return b
}

func TestRealKernels(t *testing.T) {
	for _, path := range realKernels {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			kernel := readOrSkip(t, path)
			h, err := ParseSetupHeader(kernel)
			require.NoError(t, err)
			t.Logf("%s: protocol %s, setup_sects %d, syssize %d (%d KiB), init_size %d MiB, "+
				"pref_address %#x, kernel_alignment %#x, relocatable %d, xloadflags %#x, "+
				"cmdline_size %d, initrd_addr_max %#x, header length %#x",
				path, h.ProtocolString(), h.SetupSects, h.SysSize, h.ProtectedModeSize()>>10,
				h.InitSize>>20, h.PrefAddress, h.KernelAlignment, h.RelocatableKernel,
				h.XLoadFlags, h.CmdlineSize, h.InitrdAddrMax, h.Len())

			assert.GreaterOrEqual(t, h.Version, uint16(0x020c))
			assert.NotZero(t, h.XLoadFlags&XLFKernel64)
			assert.NotZero(t, h.LoadFlags&LoadedHigh)
			assert.Equal(t, uint32(0x100000), h.Code32Start, "default load address")
			// Debian's kernels are relocatable; a minimal one may be built
			// without CONFIG_RELOCATABLE and then runs at pref_address.
			if h.Relocatable() {
				assert.True(t, isPowerOfTwo(uint64(h.KernelAlignment)))
				assert.GreaterOrEqual(t, h.KernelAlignment, uint32(2<<20))
			}
			assert.GreaterOrEqual(t, h.CmdlineSize, uint32(255))
			assert.GreaterOrEqual(t, uint64(h.InitSize), h.ProtectedModeSize(), "init_size covers the image")
			assert.GreaterOrEqual(t, h.PrefAddress, uint64(1<<20))
			assert.Less(t, h.PrefAddress, uint64(1<<32))
			// bzImages are padded to exactly the announced size (tools/build.c);
			// signed images carry the signature after it.
			assert.GreaterOrEqual(t, uint64(len(kernel)), h.SetupSize()+h.ProtectedModeSize())
			// The protected-mode payload begins with the decompressor; the
			// compressed kernel lies inside it (payload_offset/length).
			assert.LessOrEqual(t, uint64(h.PayloadOffset)+uint64(h.PayloadLength), h.ProtectedModeSize())

			// And it loads into a 512 MiB guest, with its initrd if there is
			// one next to it.
			initrd, err := os.ReadFile(filepath.Join(filepath.Dir(path), "initramfs.cpio.gz"))
			if err != nil {
				initrd = nil
			}
			mem, err := memory.New(memory.RAMLayout(512 << 20))
			require.NoError(t, err)
			defer mem.Close()
			cmdline := "console=ttyS0 panic=-1"
			info, err := Load(mem, kernel, initrd, cmdline, LoadOptions{})
			require.NoError(t, err)
			checkLoadInvariants(t, mem, info, kernel, initrd, cmdline)
			t.Logf("runs at %#x, needs memory up to %#x; initrd %d KiB at %#x",
				info.RuntimeAddr, info.KernelEnd, info.InitrdSize>>10, info.InitrdAddr)
			if !h.Relocatable() {
				assert.Equal(t, h.PrefAddress, info.RuntimeAddr)
			}

			// The 64-bit entry point (startup_64) begins with "cld; cli"
			// (arch/x86/boot/compressed/head_64.S).
			entry := readGuest(t, mem, info.CPU.RIP, 2)
			assert.Equal(t, []byte{0xfc, 0xfa}, entry, "cld; cli at the 64-bit entry")
		})
	}
}

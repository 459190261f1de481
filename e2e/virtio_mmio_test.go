package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVirtioMMIO boots with every device on the virtio-mmio transport
// (--virtio-transport mmio), two vCPUs, root on vda, a raw data disk as vdb
// and the entropy source, in both ways a kernel finds virtio-mmio devices:
//
//   - the minimal kernel, without ACPI, from the virtio_mmio.device=
//     parameters on its command line (platform devices virtio-mmio.N);
//   - Debian's stock kernel, whose virtio_mmio is a module without
//     command-line devices, from the DSDT (platform devices LNRO0005:NN),
//     through its initramfs.
//
// The guest checks that every virtio device it has sits on such a window
// and interrupts through an edge-triggered line, reads a known pattern
// from vdb, writes a record the host finds, and reads random bytes from
// virtio-rng. In the test bed a boot that never reached its init is tried
// once more, on fresh images, as in TestVirtioRootDisk.
func TestVirtioMMIO(t *testing.T) {
	for _, c := range []struct {
		guest  string
		initrd bool
		action string
		mem    string
		parent string // the platform device in the sysfs path, a shell pattern
	}{
		{"minimal", false, "reboot", "256M", "virtio-mmio.[0-9]*"},
		{"debian-generic", true, "poweroff", "768M", "LNRO0005:[0-9]*"},
	} {
		t.Run(c.guest, func(t *testing.T) {
			const cpus = 2
			const size, patternLen, recordAt = 16 << 20, 4 << 20, 8 << 20
			attempt := func() (r bootResult, hung bool, img, data string, pattern []byte) {
				img = rootfsCopy(t)
				data, pattern = patternDisk(t, "mmio", size, patternLen)
				addScript(t, img, "mmio", fmt.Sprintf(`
fail() { echo "MMIO_CHECK_FAILED=$*"; exit 1; }
n=0
for d in /sys/bus/virtio/devices/*; do
  case "$(readlink -f "$d")" in
  */%s/virtio[0-9]*) n=$((n + 1)) ;;
  *) fail "$d-is-not-on-virtio-mmio:$(readlink -f "$d")" ;;
  esac
done
echo "MMIO_DEVICES=$n"
echo "MMIO_EDGE_LINES=$(grep -c -- '-edge *virtio' /proc/interrupts)"
echo "VDB_SHA=$(dd if=/dev/vdb bs=1M count=%d 2>/dev/null | sha256sum | cut -d' ' -f1)"
printf 'govmm-mmio-record\n' | dd of=/dev/vdb bs=512 seek=%d conv=notrunc,fsync 2>/dev/null || fail "write-to-vdb"
echo "RNG_CURRENT=$(cat /sys/class/misc/hw_random/rng_current)"
echo "RNG_BYTES=$(dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')"
`, c.parent, patternLen>>20, recordAt/512))
				args := append(kernelArgs(t, c.guest, c.initrd), "--virtio-transport", "mmio",
					"--cpus", fmt.Sprint(cpus), "--mem", c.mem,
					"--disk", img, "--disk", data, "--append", cmdline(c.action, "mmio"))
				r, hung = startVM(t, t.Name(), args...).result()
				return r, hung, img, data, pattern
			}
			r, hung, img, data, pattern := attempt()
			if lostBoot(t, r, hung) {
				r, hung, img, data, pattern = attempt()
			}
			if hung {
				t.Fatalf("govmm did not finish within %v\nconsole:\n%s\nstderr:\n%s", bootTimeout, tail(r.console), r.stderr)
			}
			checkDiskBoot(t, r, cpus, c.action, true)
			assert.Empty(t, marker(r.console, "MMIO_CHECK_FAILED"))
			assert.Equal(t, "3", marker(r.console, "MMIO_DEVICES"), "vda, vdb and virtio-rng, all on virtio-mmio")
			assert.Equal(t, "3", marker(r.console, "MMIO_EDGE_LINES"), "one edge-triggered line per device")
			assert.Equal(t, sha256Hex(pattern), marker(r.console, "VDB_SHA"), "the pattern the guest read from vdb")
			assert.Equal(t, "virtio_rng.0", marker(r.console, "RNG_CURRENT"))
			random := marker(r.console, "RNG_BYTES")
			assert.Len(t, random, 64, "32 bytes from virtio-rng, in hex")
			assert.NotEqual(t, strings.Repeat("0", 64), random)

			got, err := os.ReadFile(data)
			require.NoError(t, err)
			assert.True(t, bytes.HasPrefix(got[recordAt:], []byte("govmm-mmio-record\n")), "the guest's record is in the host's vdb image")
			assert.True(t, bytes.Equal(pattern, got[:patternLen]), "the pattern is intact")
			fsck(t, img)
		})
	}
}

package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/govmm/govmm/machine"
	"github.com/stretchr/testify/assert"
)

func TestDriverHint(t *testing.T) {
	vda := machine.UnclaimedDevice{Name: "virtio-blk vda", Driver: "virtio_blk"}
	vdb := machine.UnclaimedDevice{Name: "virtio-blk vdb", Driver: "virtio_blk"}
	nic := machine.UnclaimedDevice{Name: "virtio-net 0 (tap t0, 52:54:00:12:34:56)", Driver: "virtio_net"}
	odd := machine.UnclaimedDevice{Name: "virtio-9p", Driver: ""}
	for _, c := range []struct {
		name      string
		reason    machine.Reason
		unclaimed []machine.UnclaimedDevice
		transport machine.VirtioTransport
		want      string
	}{
		{"every device claimed", machine.PowerOff, nil, machine.VirtioPCI, ""},
		{"stopped by the host", machine.Stopped, []machine.UnclaimedDevice{vda}, machine.VirtioPCI, ""},
		{"failed", machine.Failed, []machine.UnclaimedDevice{vda}, machine.VirtioPCI, ""},
		{"one disk after a reset", machine.Reset, []machine.UnclaimedDevice{vda}, machine.VirtioPCI,
			"govmm: no driver in the guest started virtio-blk vda: the guest kernel needs virtio_pci and virtio_blk, built in or loaded from its initramfs (--initrd)"},
		{"two disks and a card, halted", machine.Halted, []machine.UnclaimedDevice{vda, vdb, nic, odd}, machine.VirtioPCI,
			"govmm: no driver in the guest started virtio-blk vda, virtio-blk vdb, virtio-net 0 (tap t0, 52:54:00:12:34:56), virtio-9p: the guest kernel needs virtio_pci, virtio_blk and virtio_net, built in or loaded from its initramfs (--initrd)"},
		{"mmio", machine.PowerOff, []machine.UnclaimedDevice{vda}, machine.VirtioMMIO,
			"govmm: no driver in the guest started virtio-blk vda: the guest kernel needs virtio_mmio and virtio_blk, built in or loaded from its initramfs (--initrd); a kernel without ACPI finds virtio-mmio devices only with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y"},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, driverHint(c.reason, c.unclaimed, c.transport))
		})
	}
}

func TestJoinAnd(t *testing.T) {
	assert.Equal(t, "", joinAnd(nil))
	assert.Equal(t, "a", joinAnd([]string{"a"}))
	assert.Equal(t, "a and b", joinAnd([]string{"a", "b"}))
	assert.Equal(t, "a, b and c", joinAnd([]string{"a", "b", "c"}))
}

// TestCLIRawImageGetsNoDriverHint: a flat image is no Linux kernel, so a
// disk it never drove earns no advice about Linux drivers.
func TestCLIRawImageGetsNoDriverHint(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("needs /dev/kvm")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "reset.bin")
	assert.NoError(t, os.WriteFile(img, []byte{
		0xB0, 0xFE, 0xE6, 0x64, // mov al, 0xfe; out 0x64, al: reset
		0xF4, // hlt
	}, 0o644))
	disk := filepath.Join(dir, "disk.img")
	assert.NoError(t, os.WriteFile(disk, make([]byte, 1<<20), 0o644))
	status, _, stderr := runCLI(t, "boot", "--raw", "--kernel", img, "--mem", "64M", "--disk", disk)
	assert.Zero(t, status, stderr)
	assert.NotContains(t, stderr, "no driver")
}

package machine

import (
	"encoding/binary"
	"testing"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/virtio/virtiopci"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// notifyPortGuest is a real-mode program that does what a virtio driver
// does to notify queue 0 through the notify port: it reads the port from
// BAR 1 of the virtio function in slot firstVirtioSlot (the entropy
// device, with no disks or cards) through configuration mechanism #1,
// writes the queue index 0 there, then writes 7, an index no queue has,
// and halts with interrupts off.
func notifyPortGuest() []byte {
	// CONFIG_ADDRESS: enable bit, bus 0, the slot, BAR 1's register
	// (PCI 3.0 §3.2.2.3.2).
	const enable = 1 << 31
	bar1 := uint32(pci.RegBAR0 + 4*virtiopci.NotifyIOBARIndex)
	addr := binary.LittleEndian.AppendUint32(nil, enable|firstVirtioSlot<<11|bar1)
	return append(append([]byte{
		0x66, 0xB8}, addr...), // mov eax, CONFIG_ADDRESS value
		0xBA, 0xF8, 0x0C, //     mov dx, 0xcf8
		0x66, 0xEF, //           out dx, eax
		0xBA, 0xFC, 0x0C, //     mov dx, 0xcfc
		0x66, 0xED, //           in eax, dx          ; BAR 1
		0x24, 0xFC, //           and al, 0xfc        ; less the I/O BAR's flag bits
		0x89, 0xC2, //           mov dx, ax
		0x31, 0xC0, //           xor ax, ax          ; queue 0
		0xEF,             //     out dx, ax
		0xB8, 0x07, 0x00, //     mov ax, 7           ; no such queue
		0xEF, //                 out dx, ax
		0xFA, //                 cli
		0xF4, //                 hlt
	)
}

// TestSmokeNotifyPort: a 16-bit write of a queue's index to a virtio
// function's notify port reaches the queue's Kick eventfd inside KVM
// (the datamatch ioeventfd) without exiting to userspace; a write naming
// no queue exits, reaches the transport, and kicks nothing.
func TestSmokeNotifyPort(t *testing.T) {
	needKVM(t)
	m, err := New(Config{Kernel: notifyPortGuest(), RealMode: true, MemSize: 64 << 20, CPUs: 1, Stats: true})
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, m.virtio, 1)
	tr := m.virtio[0].pci
	region, ok := tr.Config().MappedRegion(virtiopci.NotifyIOBARIndex)
	require.True(t, ok, "the firmware placed and enabled the notify port")

	r := m.Run()
	require.NoError(t, r.Err)
	assert.Equal(t, Halted, r.Reason)

	kicks := map[uint64]uint64{} // by queue
	for _, d := range tr.Doorbells() {
		if !d.Match {
			continue
		}
		var b [8]byte
		if n, err := unix.Read(d.FD, b[:]); err == nil && n == 8 {
			kicks[d.Data] = binary.NativeEndian.Uint64(b[:])
		}
	}
	assert.Equal(t, map[uint64]uint64{0: 1}, kicks, "queue 0 kicked once")

	var exits uint64
	for _, p := range m.Stats().Ports {
		if p.Addr == region.Addr {
			assert.Equal(t, "virtio-rng", p.Device)
			exits = p.Writes
		}
	}
	assert.EqualValues(t, 1, exits, "only the write of 7 left KVM")
}

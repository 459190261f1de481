package machine

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiommio"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// mmioNotifyGuest is 64-bit code for bzImage, on govmm's boot page tables
// (which map the first 4 GiB 1:1, the MMIO hole included). It does what
// Linux's virtio_mmio does to find a device and notify its queue 0: it
// reads MagicValue from the first virtio-mmio window and prints its four
// bytes on COM1 ("virt"), writes the queue index 0 to QueueNotify, then
// 7, an index no queue has, and halts with interrupts off.
func mmioNotifyGuest() []byte {
	base := binary.LittleEndian.AppendUint32(nil, uint32(memory.VirtioMMIOBase))
	return append(append([]byte{
		0xB9}, base...), //         mov ecx, VirtioMMIOBase
		0x8B, 0x01, //              mov eax, [rcx]       ; MagicValue
		0xBA, 0xF8, 0x03, 0, 0, //  mov edx, 0x3f8
		0xEE,             //        out dx, al           ; 'v'
		0xC1, 0xE8, 0x08, //        shr eax, 8
		0xEE,             //        out dx, al           ; 'i'
		0xC1, 0xE8, 0x08, //        shr eax, 8
		0xEE,             //        out dx, al           ; 'r'
		0xC1, 0xE8, 0x08, //        shr eax, 8
		0xEE,       //              out dx, al           ; 't'
		0x31, 0xC0, //              xor eax, eax         ; queue 0
		0x89, 0x41, 0x50, //        mov [rcx+0x50], eax  ; QueueNotify
		0xB8, 0x07, 0, 0, 0, //     mov eax, 7           ; no such queue
		0x89, 0x41, 0x50, //        mov [rcx+0x50], eax
		0xFA, //                    cli
		0xF4, //                    hlt
	)
}

// TestSmokeVirtioMMIONotify: the guest finds the device's registers at the
// first window, a 32-bit write of a queue's index to QueueNotify reaches
// the queue's Kick eventfd inside KVM (the datamatch ioeventfd) without
// exiting, and a write naming no queue exits, reaches the transport and
// kicks nothing.
func TestSmokeVirtioMMIONotify(t *testing.T) {
	needKVM(t)
	var out devicetest.Buffer
	m, err := New(Config{Kernel: bzImage(mmioNotifyGuest()), MemSize: 64 << 20, CPUs: 1,
		VirtioTransport: VirtioMMIO, Console: &out, Stats: true})
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, m.virtio, 1)
	d := m.virtio[0].mmio
	require.NotNil(t, d)
	assert.Nil(t, m.virtio[0].pci)

	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	var r Result
	select {
	case r = <-done:
	case <-time.After(smokeTimeout):
		m.Stop("test timeout")
		<-done
		t.Fatalf("guest did not finish within %v; console so far: %q", smokeTimeout, out.String())
	}
	require.NoError(t, r.Err)
	assert.Equal(t, Halted, r.Reason)
	assert.Equal(t, "virt", out.String())

	var b [8]byte
	n, err := unix.Read(d.transport.Doorbells()[0].FD, b[:])
	require.NoError(t, err, "queue 0 was kicked")
	require.Equal(t, 8, n)
	assert.EqualValues(t, 1, binary.NativeEndian.Uint64(b[:]), "queue 0 kicked once")

	var reads, writes uint64
	for _, a := range m.Stats().MMIO {
		if a.Device == "virtio-rng" {
			reads += a.Reads
			writes += a.Writes
		}
	}
	assert.EqualValues(t, 1, reads, "MagicValue")
	assert.EqualValues(t, 1, writes, "only the write of 7 left KVM")
}

// diskImageSize is the size of the test's disk images: one sector.
const diskImageSize = 512

// blankDisks makes n zeroed disk images of diskImageSize in the test's
// temporary directory.
func blankDisks(t *testing.T, n int) []Disk {
	t.Helper()
	dir := t.TempDir()
	var disks []Disk
	for i := range n {
		path := filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		require.NoError(t, os.WriteFile(path, make([]byte, diskImageSize), 0o600))
		disks = append(disks, Disk{Path: path})
	}
	return disks
}

// TestSmokeVirtioMMIOCmdline: each device is announced on the kernel
// command line, in window order, with its own window and a free ISA IRQ.
func TestSmokeVirtioMMIOCmdline(t *testing.T) {
	disks := blankDisks(t, 2)
	r, out := runGuest(t, Config{Kernel: bzImage(printCmdlineAndPowerOff), Cmdline: "console=ttyS0",
		Disks: disks, VirtioTransport: VirtioMMIO})
	require.NoError(t, r.Err)
	assert.Equal(t, PowerOff, r.Reason)
	assert.Equal(t, "console=ttyS0"+
		" virtio_mmio.device=4K@0xfeb00000:5"+ // vda
		" virtio_mmio.device=4K@0xfeb01000:6"+ // vdb
		" virtio_mmio.device=4K@0xfeb02000:7"+ // virtio-rng
		"\r\n", out)
}

func TestParseVirtioTransport(t *testing.T) {
	for _, tr := range []VirtioTransport{VirtioPCI, VirtioMMIO} {
		got, err := ParseVirtioTransport(tr.String())
		require.NoError(t, err)
		assert.Equal(t, tr, got)
	}
	_, err := ParseVirtioTransport("ccw")
	assert.ErrorContains(t, err, `"ccw"`)
}

// Registers of a virtio-mmio window (virtio 1.2 §4.2.2, Table 4.1) that
// driverStart writes.
const (
	mmioDriverFeatures    = 0x020
	mmioDriverFeaturesSel = 0x024
	mmioQueueSel          = 0x030
	mmioQueueNum          = 0x038
	mmioQueueReady        = 0x044
	mmioStatus            = 0x070
	mmioQueueDescLow      = 0x080
	mmioQueueDriverLow    = 0x090
	mmioQueueDeviceLow    = 0x0A0
)

// driverStart does what Linux's virtio_mmio and a device driver do to
// start the device behind w (§3.1.1): acknowledge it, accept
// VIRTIO_F_VERSION_1 only, set up a queue 0 of 16 entries in the zeroed
// guest RAM at rings, and set DRIVER_OK.
func driverStart(w *virtiommio.Transport, rings uint64) {
	write := func(off uint64, v uint32) { w.WriteMMIO(off, binary.LittleEndian.AppendUint32(nil, v)) }
	status := uint32(virtio.VIRTIO_CONFIG_S_ACKNOWLEDGE | virtio.VIRTIO_CONFIG_S_DRIVER)
	write(mmioStatus, status)
	// Feature bits go 32 at a time: DriverFeaturesSel picks the word.
	write(mmioDriverFeaturesSel, virtio.VIRTIO_F_VERSION_1/32)
	write(mmioDriverFeatures, 1<<(virtio.VIRTIO_F_VERSION_1%32))
	status |= virtio.VIRTIO_CONFIG_S_FEATURES_OK
	write(mmioStatus, status)
	write(mmioQueueSel, 0)
	write(mmioQueueNum, 16)
	write(mmioQueueDescLow, uint32(rings))          // 16 descriptors of 16 bytes
	write(mmioQueueDriverLow, uint32(rings+0x1000)) // the available ring
	write(mmioQueueDeviceLow, uint32(rings+0x2000)) // the used ring
	write(mmioQueueReady, 1)
	write(mmioStatus, status|virtio.VIRTIO_CONFIG_S_DRIVER_OK)
}

// TestSmokeDevicesWithoutDriver: after a run, the disks that no driver
// started are listed with the Linux driver they need, govmm's own
// virtio-rng is not, and a disk whose driver reached DRIVER_OK is not.
func TestSmokeDevicesWithoutDriver(t *testing.T) {
	needKVM(t)
	disks := blankDisks(t, 2)
	var out devicetest.Buffer
	m, err := New(Config{Kernel: bzImage(printCmdlineAndPowerOff), MemSize: 64 << 20, CPUs: 1,
		Disks: disks, VirtioTransport: VirtioMMIO, Console: &out})
	require.NoError(t, err)
	defer m.Close()
	require.Len(t, m.virtio, 3)
	driverStart(m.virtio[1].mmio.transport, 32<<20) // vdb's driver starts
	require.True(t, m.virtio[1].mmio.transport.Activated())

	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	select {
	case r := <-done:
		require.NoError(t, r.Err)
		require.Equal(t, PowerOff, r.Reason)
	case <-time.After(smokeTimeout):
		m.Stop("test timeout")
		<-done
		t.Fatalf("guest did not finish within %v; console so far: %q", smokeTimeout, out.String())
	}
	assert.Equal(t, []UnclaimedDevice{{Name: "virtio-blk vda", Driver: "virtio_blk"}}, m.DevicesWithoutDriver())
}

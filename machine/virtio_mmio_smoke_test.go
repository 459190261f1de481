package machine

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/govmm/govmm/machine/memory"
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

// TestSmokeVirtioMMIOCmdline: each device is announced on the kernel
// command line, in window order, with its own window and a free ISA IRQ.
func TestSmokeVirtioMMIOCmdline(t *testing.T) {
	dir := t.TempDir()
	var disks []Disk
	for _, name := range []string{"a.img", "b.img"} {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, make([]byte, diskImageSize), 0o600))
		disks = append(disks, Disk{Path: path})
	}
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

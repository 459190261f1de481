package virtiommio_test

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiommio"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The guest's view of a virtio-mmio device, written out here from the
// specification (virtio 1.2 §4.2.2, Table 4.1; Linux's
// include/uapi/linux/virtio_mmio.h) rather than taken from the package
// under test, so that a wrong constant there fails these tests.
const (
	mMagic         = 0x000
	mVersion       = 0x004
	mDeviceID      = 0x008
	mVendorID      = 0x00C
	mDevFeatures   = 0x010
	mDevFeatSel    = 0x014
	mDrvFeatures   = 0x020
	mDrvFeatSel    = 0x024
	mQueueSel      = 0x030
	mQueueNumMax   = 0x034
	mQueueNum      = 0x038
	mQueueReady    = 0x044
	mQueueNotify   = 0x050
	mIntStatus     = 0x060
	mIntACK        = 0x064
	mStatus        = 0x070
	mDescLow       = 0x080
	mDescHigh      = 0x084
	mDriverLow     = 0x090
	mDriverHigh    = 0x094
	mDeviceLow     = 0x0A0
	mDeviceHigh    = 0x0A4
	mSHMSel        = 0x0AC
	mSHMLenLow     = 0x0B0
	mSHMLenHigh    = 0x0B4
	mConfigGen     = 0x0FC
	mConfig        = 0x100
	mWindow        = 0x1000
	magicVirt      = 0x74726976 // "virt"
	intVring       = 1
	intConfig      = 2
	sAcknowledge   = 1
	sDriver        = 2
	sDriverOK      = 4
	sFeaturesOK    = 8
	sNeedsReset    = 64
	fIndirectDesc  = 28
	fEventIdx      = 29
	fVersion1      = 32
	fRingPacked    = 34
	ramStart       = 0x100000
	ramSize        = 1 << 20
	defaultFeats   = 1<<fVersion1 | 1<<fIndirectDesc | 1<<fEventIdx
	eventuallyWait = 10 * time.Second
)

var le = binary.LittleEndian

// rig is one device behind its register window, with fake guest RAM, and
// a count of the edges on its interrupt line.
type rig struct {
	t     testing.TB
	tr    *virtiommio.Transport
	mem   *memory.Guest
	edges atomic.Int64
}

func newRig(t testing.TB, dev virtio.Device) *rig {
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	r := &rig{t: t, mem: mem}
	tr, err := virtiommio.New(virtiommio.Config{
		Device:    dev,
		Mem:       mem,
		Interrupt: func() { r.edges.Add(1) },
		Name:      "test",
	})
	require.NoError(t, err)
	r.tr = tr
	t.Cleanup(func() { tr.Close() })
	return r
}

func (r *rig) read(off uint64) uint32 {
	b := make([]byte, 4)
	r.tr.ReadMMIO(off, b)
	return le.Uint32(b)
}

func (r *rig) write(off uint64, v uint32) {
	r.tr.WriteMMIO(off, le.AppendUint32(nil, v))
}

func (r *rig) addStatus(bits uint32) { r.write(mStatus, r.read(mStatus)|bits) }

// negotiate does steps 1 to 6 of §3.1.1 as Linux's virtio_mmio does, and
// reports whether the device kept FEATURES_OK.
func (r *rig) negotiate(features uint64) bool {
	r.write(mStatus, 0)
	r.addStatus(sAcknowledge)
	r.addStatus(sDriver)
	r.write(mDrvFeatSel, 0)
	r.write(mDrvFeatures, uint32(features))
	r.write(mDrvFeatSel, 1)
	r.write(mDrvFeatures, uint32(features>>32))
	r.addStatus(sFeaturesOK)
	return r.read(mStatus)&sFeaturesOK != 0
}

// setupQueue programs queue i with a ring of size entries at base, as
// Linux's vm_setup_vq does, and returns the driver for it.
func (r *rig) setupQueue(i uint32, size uint16, base uint64, features uint64) *virtiotest.Driver {
	r.write(mQueueSel, i)
	require.Zero(r.t, r.read(mQueueReady), "queue %d already set up", i)
	require.GreaterOrEqual(r.t, r.read(mQueueNumMax), uint32(size))
	cfg, end := virtiotest.Layout(base, size, virtio.Features(features))
	r.write(mQueueNum, uint32(size))
	r.write(mDescLow, uint32(cfg.DescTable))
	r.write(mDescHigh, uint32(cfg.DescTable>>32))
	r.write(mDriverLow, uint32(cfg.AvailRing))
	r.write(mDriverHigh, uint32(cfg.AvailRing>>32))
	r.write(mDeviceLow, uint32(cfg.UsedRing))
	r.write(mDeviceHigh, uint32(cfg.UsedRing>>32))
	r.write(mQueueReady, 1)
	return virtiotest.NewDriver(r.mem, cfg, memory.Range{Start: end, Size: ramStart + ramSize - end})
}

// bringUp takes the device to DRIVER_OK with queue 0 set up.
func (r *rig) bringUp() *virtiotest.Driver {
	require.True(r.t, r.negotiate(defaultFeats))
	d := r.setupQueue(0, 16, ramStart, defaultFeats)
	r.addStatus(sDriverOK)
	require.EqualValues(r.t, sAcknowledge|sDriver|sFeaturesOK|sDriverOK, r.read(mStatus))
	return d
}

func TestIdentity(t *testing.T) {
	r := newRig(t, rng.New())
	assert.EqualValues(t, magicVirt, r.read(mMagic))
	assert.EqualValues(t, 2, r.read(mVersion), "the modern interface")
	assert.EqualValues(t, virtio.VIRTIO_ID_RNG, r.read(mDeviceID))
	assert.NotZero(t, r.read(mVendorID))
	// No shared memory regions: length -1 (§4.2.2).
	r.write(mSHMSel, 0)
	assert.EqualValues(t, 0xFFFF_FFFF, r.read(mSHMLenLow))
	assert.EqualValues(t, 0xFFFF_FFFF, r.read(mSHMLenHigh))
	// Write-only registers read 0.
	r.write(mQueueNum, 8)
	assert.Zero(t, r.read(mQueueNum))
}

func TestNewRejectsBadDevices(t *testing.T) {
	mem, _ := virtiotest.NewRAM(ramStart, ramSize)
	for name, d := range map[string]*virtiotest.FakeDevice{
		"no queues":      {ID: 4},
		"size not pow 2": {ID: 4, Sizes: []uint16{12}},
		"id 0":           {ID: 0, Sizes: []uint16{8}},
	} {
		_, err := virtiommio.New(virtiommio.Config{Device: d, Mem: mem})
		assert.Error(t, err, name)
	}
	_, err := virtiommio.New(virtiommio.Config{Mem: mem})
	assert.Error(t, err, "no device")
	_, err = virtiommio.New(virtiommio.Config{Device: virtiotest.NewFakeDevice()})
	assert.Error(t, err, "no memory")
}

// Only aligned 32-bit accesses reach the control registers (§4.2.2.2);
// others read 0 and change nothing.
func TestControlRegisterWidths(t *testing.T) {
	r := newRig(t, rng.New())
	b := make([]byte, 2)
	r.tr.ReadMMIO(mMagic, b)
	assert.Equal(t, []byte{0, 0}, b)
	r.tr.ReadMMIO(mMagic+1, make([]byte, 4))
	r.tr.WriteMMIO(mStatus, []byte{sAcknowledge})
	assert.Zero(t, r.read(mStatus), "a byte write to Status")
	r.tr.WriteMMIO(mStatus, le.AppendUint64(nil, sAcknowledge))
	assert.Zero(t, r.read(mStatus), "an 8-byte write to Status")
	r.write(mStatus, sAcknowledge)
	assert.EqualValues(t, sAcknowledge, r.read(mStatus))
}

func TestRNG(t *testing.T) {
	r := newRig(t, rng.New())
	d := r.bringUp()
	d.EnableInterrupts()
	a, b := d.Writable(64), d.Writable(32)
	h1 := d.AddChain(a)
	h2 := d.AddChain(d.Readable([]byte("no room")))
	h3 := d.AddChain(b)
	d.Publish()
	r.write(mQueueNotify, 0)

	got := map[uint32]uint32{}
	require.Eventually(t, func() bool {
		for {
			id, n, ok := d.GetUsed()
			if !ok {
				return len(got) == 3
			}
			got[id] = n
		}
	}, eventuallyWait, time.Millisecond)
	assert.Equal(t, map[uint32]uint32{uint32(h1): 64, uint32(h2): 0, uint32(h3): 32}, got)
	assert.NotEqual(t, make([]byte, 32), d.ReadMem(b.Addr, 32), "random bytes")

	require.Eventually(t, func() bool { return r.edges.Load() > 0 }, eventuallyWait, time.Millisecond)
	assert.EqualValues(t, intVring, r.read(mIntStatus), "a used buffer notification")
	r.write(mIntACK, intVring)
	assert.Zero(t, r.read(mIntStatus), "acknowledged")
}

// KVM signals a doorbell's eventfd for a 32-bit write of the queue's index
// at QueueNotify; that works like the write reaching the transport.
func TestDoorbells(t *testing.T) {
	r := newRig(t, rng.New())
	dbs := r.tr.Doorbells()
	require.Len(t, dbs, 1)
	assert.EqualValues(t, mQueueNotify, dbs[0].Offset)
	assert.Equal(t, 4, dbs[0].Size)
	assert.EqualValues(t, 0, dbs[0].Queue)

	d := r.bringUp()
	d.EnableInterrupts()
	buf := d.Writable(16)
	d.AddChain(buf)
	d.Publish()
	_, err := unix.Write(dbs[0].FD, le.AppendUint64(nil, 1))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return d.UsedIdx() == 1 }, eventuallyWait, time.Millisecond)

	// A notification for a queue the device does not have is ignored.
	r.write(mQueueNotify, 7)
}

func TestFeatureNegotiation(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	// A device bit, and one the transport does not implement, which it
	// must not offer.
	dev.Offered = virtio.Features(1<<5 | 1<<fRingPacked)
	r := newRig(t, dev)
	r.write(mDevFeatSel, 0)
	assert.EqualValues(t, 1<<5|1<<fIndirectDesc|1<<fEventIdx, r.read(mDevFeatures))
	r.write(mDevFeatSel, 1)
	assert.EqualValues(t, 1<<(fVersion1-32), r.read(mDevFeatures), "VERSION_1, not RING_PACKED")
	r.write(mDevFeatSel, 9)
	assert.Zero(t, r.read(mDevFeatures))

	assert.False(t, r.negotiate(1<<fIndirectDesc), "no VERSION_1")
	assert.False(t, r.negotiate(defaultFeats|1<<fRingPacked), "a feature not offered")
	require.True(t, r.negotiate(defaultFeats|1<<5))
	// Settled: later writes change nothing.
	r.write(mDrvFeatSel, 0)
	r.write(mDrvFeatures, 0)
	r.setupQueue(0, 8, ramStart, defaultFeats)
	r.addStatus(sDriverOK)
	a := dev.Activation()
	require.NotNil(t, a)
	assert.True(t, a.Features.Has(5) && a.Features.Has(virtio.VIRTIO_F_VERSION_1))
}

func TestQueueRegisters(t *testing.T) {
	dev := virtiotest.NewFakeDevice(16, 64)
	r := newRig(t, dev)
	r.write(mQueueSel, 1)
	assert.EqualValues(t, 64, r.read(mQueueNumMax))
	// "If the returned value is zero (0x0) the queue is not available"
	// (§4.2.2).
	for _, sel := range []uint32{2, 0xFFFF, 0x10000, 0xFFFF_FFFF} {
		r.write(mQueueSel, sel)
		assert.Zero(t, r.read(mQueueNumMax), "QueueSel %#x", sel)
		r.write(mQueueReady, 1)
		assert.Zero(t, r.read(mQueueReady), "QueueSel %#x", sel)
	}

	// Before DRIVER_OK the driver may take a queue back (Linux does,
	// after a reset, in vm_del_vq) and set it up again.
	require.True(t, r.negotiate(defaultFeats))
	r.setupQueue(0, 8, ramStart, defaultFeats)
	r.write(mQueueReady, 0)
	assert.Zero(t, r.read(mQueueReady))
	r.setupQueue(0, 16, ramStart+0x10000, defaultFeats)
	r.addStatus(sDriverOK)
	a := dev.Activation()
	require.NotNil(t, a)
	require.NotNil(t, a.Queues[0])
	assert.Nil(t, a.Queues[1], "queue 1 was never made ready")
	assert.EqualValues(t, 16, a.Queues[0].Virtqueue.Size())

	// Once live, the queue's registers are frozen.
	r.write(mQueueSel, 1)
	r.write(mQueueReady, 1)
	assert.Zero(t, r.read(mQueueReady))
}

// A driver that stops a queue of the running device: the device cannot
// stop one queue alone, so it stops as a whole, before QueueReady reads 0,
// and asks for a reset (§4.2.2.1: "The device MUST NOT access virtual queue
// contents when QueueReady is zero").
func TestQueueReadyZeroWhileRunning(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp()
	require.NotNil(t, dev.Activation())
	edges := r.edges.Load()
	r.write(mQueueSel, 0)
	r.write(mQueueReady, 0)
	assert.Nil(t, dev.Activation(), "the device stopped")
	assert.Zero(t, r.read(mQueueReady))
	assert.NotZero(t, r.read(mStatus)&sNeedsReset)
	assert.EqualValues(t, intConfig, r.read(mIntStatus), "a configuration change notification (§2.1.2)")
	assert.Equal(t, edges+1, r.edges.Load())
}

func TestConfigChange(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp()
	a := dev.Activation()
	gen := r.read(mConfigGen)
	done := make(chan struct{})
	go func() { // from a device goroutine
		defer close(done)
		a.ConfigChanged()
	}()
	<-done
	assert.Equal(t, gen+1, r.read(mConfigGen))
	assert.EqualValues(t, intConfig, r.read(mIntStatus))
	assert.EqualValues(t, 1, r.edges.Load())
	a.Queues[0].Interrupt()
	assert.EqualValues(t, intConfig|intVring, r.read(mIntStatus))
	assert.EqualValues(t, 2, r.edges.Load())
	// The driver acknowledges only what it handled.
	r.write(mIntACK, intConfig)
	assert.EqualValues(t, intVring, r.read(mIntStatus))
	// Every event sends an edge, even with its bit still set.
	a.Queues[0].Interrupt()
	assert.EqualValues(t, 3, r.edges.Load())
}

func TestFail(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp()
	dev.Activation().Fail(errors.New("backend gone"))
	assert.NotZero(t, r.read(mStatus)&sNeedsReset)
	assert.EqualValues(t, intConfig, r.read(mIntStatus))
	// DRIVER_OK again does not restart a broken device.
	r.addStatus(sDriverOK)
	act, _ := dev.Counts()
	assert.Equal(t, 1, act)
}

func TestActivateErrorAndBadQueue(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	dev.ActivateErr = errors.New("no backend")
	r := newRig(t, dev)
	require.True(t, r.negotiate(defaultFeats))
	r.setupQueue(0, 16, ramStart, defaultFeats)
	r.addStatus(sDriverOK)
	assert.NotZero(t, r.read(mStatus)&sNeedsReset)

	dev = virtiotest.NewFakeDevice()
	r = newRig(t, dev)
	require.True(t, r.negotiate(defaultFeats))
	r.write(mQueueSel, 0)
	r.write(mQueueNum, 32) // above QueueNumMax
	r.write(mQueueReady, 1)
	r.addStatus(sDriverOK)
	assert.NotZero(t, r.read(mStatus)&sNeedsReset)
	assert.Nil(t, dev.Activation())
}

// Activated turns true when a driver starts the device and stays true
// across a reset; a start that fails does not count.
func TestActivated(t *testing.T) {
	r := newRig(t, virtiotest.NewFakeDevice())
	assert.False(t, r.tr.Activated(), "before any driver")
	require.True(t, r.negotiate(defaultFeats))
	r.setupQueue(0, 16, ramStart, defaultFeats)
	assert.False(t, r.tr.Activated(), "before DRIVER_OK")
	r.addStatus(sDriverOK)
	assert.True(t, r.tr.Activated())
	r.write(mStatus, 0)
	assert.True(t, r.tr.Activated(), "after a reset")

	dev := virtiotest.NewFakeDevice()
	dev.ActivateErr = errors.New("no backend")
	r = newRig(t, dev)
	require.True(t, r.negotiate(defaultFeats))
	r.setupQueue(0, 16, ramStart, defaultFeats)
	r.addStatus(sDriverOK)
	require.NotZero(t, r.read(mStatus)&sNeedsReset)
	assert.False(t, r.tr.Activated(), "Activate failed")

	r = newRig(t, virtiotest.NewFakeDevice())
	r.write(mStatus, sAcknowledge|sDriver|sDriverOK) // without FEATURES_OK
	assert.False(t, r.tr.Activated(), "DRIVER_OK without FEATURES_OK")
}

// A reset stops the device, clears InterruptStatus and every QueueReady
// (§4.2.2.1), and makes the old activation's callbacks inert.
func TestReset(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp()
	a := dev.Activation()
	a.Queues[0].Interrupt()
	require.NotZero(t, r.read(mIntStatus))
	_, resets := dev.Counts()
	r.write(mStatus, 0)
	assert.Zero(t, r.read(mStatus))
	assert.Zero(t, r.read(mIntStatus))
	r.write(mQueueSel, 0)
	assert.Zero(t, r.read(mQueueReady))
	assert.EqualValues(t, 16, r.read(mQueueNumMax))
	_, after := dev.Counts()
	assert.Equal(t, resets+1, after)

	edges := r.edges.Load()
	a.Queues[0].Interrupt()
	a.ConfigChanged()
	a.Fail(errors.New("late"))
	assert.Zero(t, r.read(mIntStatus), "stale callbacks do nothing")
	assert.Zero(t, r.read(mStatus))
	assert.Equal(t, edges, r.edges.Load())
}

func TestDeviceConfigAccess(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	b := make([]byte, 8)
	r.tr.ReadMMIO(mConfig, b)
	assert.Equal(t, []byte{1, 2, 3, 4, 5, 6, 7, 8}, b)
	// Fields are accessed at their own widths (§4.2.2.2).
	one := make([]byte, 1)
	r.tr.ReadMMIO(mConfig+5, one)
	assert.EqualValues(t, 6, one[0])
	r.tr.WriteMMIO(mConfig+2, []byte{0xAA, 0xBB})
	assert.EqualValues(t, 0x0605BBAA, r.read(mConfig+2))
	// An access that runs past the window reaches the device only with
	// the window's bytes.
	r.tr.WriteMMIO(mWindow-4, make([]byte, 8))
	r.tr.ReadMMIO(mWindow-2, b)
	assert.EqualValues(t, mWindow-mConfig, dev.MaxConfigEnd())
	r.tr.ReadMMIO(mWindow+0x100, b)
	assert.Equal(t, make([]byte, 8), b)
}

func TestClose(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp()
	require.NoError(t, r.tr.Close())
	require.NoError(t, r.tr.Close(), "twice")
	assert.Nil(t, dev.Activation())
	r.write(mStatus, sAcknowledge)
	assert.Zero(t, r.read(mStatus), "registers are dead after Close")
	r.write(mQueueNotify, 0) // the closed eventfd: nothing happens
}

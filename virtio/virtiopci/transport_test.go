package virtiopci_test

import (
	"bytes"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiopci"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestIdentityAndCapabilities(t *testing.T) {
	r := newRig(t, rng.New())
	r.probe()

	assert.EqualValues(t, 0x1044, r.cfgRead(regDeviceID, 2), "0x1040 + VIRTIO_ID_RNG")
	assert.GreaterOrEqual(t, r.cfgRead(regRevisionID, 1), uint32(1), "non-transitional: revision >= 1")
	assert.EqualValues(t, 0xFF0000, r.cfgRead(regClassCode, 4)&0xFFFFFF)
	assert.EqualValues(t, pciVendorRedHat, r.cfgRead(regSubsystemVID, 2))
	assert.GreaterOrEqual(t, r.cfgRead(regSubsystemID, 2), uint32(0x40), "§4.1.2.1 subsystem ID")
	assert.EqualValues(t, 1, r.cfgRead(regInterruptPin, 1), "INTA#")

	common := r.caps[capCommonCfg]
	assert.GreaterOrEqual(t, common.length, uint32(0x38), "sizeof(struct virtio_pci_common_cfg)")
	assert.GreaterOrEqual(t, r.caps[capISRCfg].length, uint32(1))
	assert.NotZero(t, r.caps[capDeviceCfg].length)
	// Two notify structures, in order of preference (§4.1.4.1): one
	// port that every queue shares, then an address per queue in BAR 0.
	require.Len(t, r.notifyCaps, 2)
	pio, mmio := r.notifyCaps[0], r.notifyCaps[1]
	assert.Equal(t, r.caps[capNotifyCfg], pio.capInfo, "Linux takes the first")
	assert.Contains(t, r.ioBARs, pio.bar, "the first is in an I/O BAR")
	assert.Zero(t, pio.mul, "one shared port")
	assert.EqualValues(t, 0, mmio.bar)
	assert.EqualValues(t, 4, mmio.mul)
	for _, c := range r.notifyCaps {
		assert.EqualValues(t, 20, r.cfgRead(c.pos+capLen, 1), "sizeof(struct virtio_pci_notify_cap)")
		// Linux checks that the notify address of the last queue, 2
		// bytes, lies inside the structure (vp_modern_map_vq_notify).
		assert.GreaterOrEqual(t, c.length, 0*c.mul+2)
	}
	assert.EqualValues(t, 20, r.cfgRead(r.caps[capPCICfg].pos+capLen, 1), "sizeof(struct virtio_pci_cfg_cap)")

	// Every structure and the MSI-X table and PBA are on pages of their
	// own.
	pages := map[uint64]string{}
	add := func(name string, off uint64) {
		p := off / 4096
		if other, ok := pages[p]; ok {
			t.Errorf("%s shares page %d with %s", name, p, other)
		}
		pages[p] = name
	}
	for typ, name := range map[uint8]string{capCommonCfg: "common", capISRCfg: "isr", capDeviceCfg: "device"} {
		add(name, uint64(r.caps[typ].offset))
	}
	add("notify", uint64(mmio.offset))
	add("msix table", uint64(r.tableOff))
	add("msix pba", uint64(r.cfgRead(r.msixCap+msixCapPBA, 4)&^msixBIRMask))

	// One vector per queue plus one for the configuration.
	assert.EqualValues(t, 2, r.msixTableSize())
	assert.EqualValues(t, 1, r.read16(commonNumQ))
	assert.EqualValues(t, rng.QueueSize, r.read16(commonQSize))
	assert.EqualValues(t, noVector, r.read16(commonMSIX))
	assert.EqualValues(t, noVector, r.read16(commonQMSIX))
}

func TestLogName(t *testing.T) {
	var buf syncBuffer
	tr, err := virtiopci.New(virtiopci.Config{
		Device: virtiotest.NewFakeDevice(),
		Mem:    memory.NewFromBytes(),
		Log:    slog.New(slog.NewTextHandler(&buf, nil)),
		Name:   "virtio-test disk0",
	})
	require.NoError(t, err)
	defer tr.Close()
	// DRIVER_OK without FEATURES_OK logs; reach the common configuration
	// through BAR 0's handler directly.
	b, ok := tr.Config().BAR(virtiopci.BARIndex)
	require.True(t, ok)
	b.Handler.WriteMMIO(virtiopci.CommonCfgOffset+commonStatus, []byte{sDriverOK})
	assert.Contains(t, buf.String(), `device="virtio-test disk0"`)
}

func TestClassCodes(t *testing.T) {
	for id, class := range map[uint16]uint32{
		virtio.VIRTIO_ID_NET:     0x020000,
		virtio.VIRTIO_ID_BLOCK:   0x010000,
		virtio.VIRTIO_ID_CONSOLE: 0x078000,
		virtio.VIRTIO_ID_RNG:     0xFF0000,
		0x20:                     0xFF0000,
	} {
		d := virtiotest.NewFakeDevice()
		d.ID = id
		tr, err := virtiopci.New(virtiopci.Config{Device: d, Mem: memory.NewFromBytes()})
		require.NoError(t, err)
		assert.EqualValues(t, class, tr.Config().ClassCode(), "device %d", id)
		assert.EqualValues(t, 0x1040+id, tr.Config().DeviceID())
		require.NoError(t, tr.Close())
	}
}

func TestNewRejectsBadDevices(t *testing.T) {
	mem := memory.NewFromBytes()
	for name, d := range map[string]*virtiotest.FakeDevice{
		"no queues":      {ID: 4},
		"size not pow 2": {ID: 4, Sizes: []uint16{12}},
		"size 0":         {ID: 4, Sizes: []uint16{0}},
		"too many":       {ID: 4, Sizes: make([]uint16, 256)},
		"id 0":           {ID: 0, Sizes: []uint16{8}},
		"id too big":     {ID: 0x40, Sizes: []uint16{8}},
	} {
		if name == "too many" {
			for i := range d.Sizes {
				d.Sizes[i] = 8
			}
		}
		_, err := virtiopci.New(virtiopci.Config{Device: d, Mem: mem})
		assert.Error(t, err, name)
	}
	_, err := virtiopci.New(virtiopci.Config{Mem: mem})
	assert.Error(t, err)
	_, err = virtiopci.New(virtiopci.Config{Device: virtiotest.NewFakeDevice()})
	assert.Error(t, err)
}

// randomBytesIn reports whether b looks like output of a random source:
// not all one value (for 32 bytes or more the chance is 2^-248).
func randomBytesIn(b []byte) bool {
	for _, v := range b[1:] {
		if v != b[0] {
			return true
		}
	}
	return false
}

func TestRNGOverMSIX(t *testing.T) {
	r := newRig(t, rng.New())
	d := r.bringUp(defaultFeatures)
	d.EnableInterrupts()

	a := d.Writable(64)
	b1, b2 := d.Writable(32), d.Writable(48)
	ro := d.Readable([]byte("no room for an answer"))
	h1 := d.AddChain(a)
	h2 := d.AddChain(ro)
	h3 := d.AddChain(d.Readable([]byte{1}), b1, b2)
	d.Publish()
	r.notify(0)
	r.router.waitCount(t, 0, 1)

	got := map[uint32]uint32{}
	for len(got) < 3 {
		id, n, ok := d.GetUsed()
		if !ok {
			require.Eventually(t, func() bool { return d.UsedIdx() != 0 }, 10*time.Second, time.Millisecond)
			continue
		}
		got[id] = n
	}
	assert.Equal(t, map[uint32]uint32{uint32(h1): 64, uint32(h2): 0, uint32(h3): 80}, got)
	x, y := d.ReadMem(a.Addr, 64), d.ReadMem(b1.Addr, 32)
	assert.True(t, randomBytesIn(x) && randomBytesIn(y), "random bytes in the buffers")
	assert.NotEqual(t, x[:32], y, "two requests, two answers")
	assert.True(t, randomBytesIn(d.ReadMem(b2.Addr, 48)))

	assert.Zero(t, r.router.count(1), "no configuration interrupt")
	assert.False(t, r.intx().Level(), "no INTx# with MSI-X on")
	assert.Zero(t, r.readISR(), "ISR unused with MSI-X on")
}

// A doorbell signalled by KVM (here: the test, through the eventfd) works
// like the notify write reaching the transport.
func TestDoorbells(t *testing.T) {
	dev := virtiotest.NewFakeDevice(8, 8, 8)
	r := newRig(t, dev)
	r.probe()
	require.Len(t, r.notifyCaps, 2)
	pio, mmio := r.notifyCaps[0], r.notifyCaps[1]
	all := r.tr.Doorbells()
	require.Len(t, all, 6, "two per queue")
	// bells[i] is queue i's doorbell in BAR 0, ports[i] on the port.
	var bells, ports []pci.Doorbell
	for _, b := range all {
		if b.BAR == 0 {
			bells = append(bells, b)
		} else {
			ports = append(ports, b)
		}
	}
	require.Len(t, bells, 3)
	require.Len(t, ports, 3)
	for i, b := range bells {
		assert.EqualValues(t, uint64(mmio.offset)+uint64(i)*uint64(mmio.mul), b.Offset,
			"doorbell %d at the queue's notify address", i)
		assert.Zero(t, b.Size, "any width")
		assert.False(t, b.Match)
		assert.Positive(t, b.FD)
	}
	for i, p := range ports {
		assert.EqualValues(t, pio.bar, p.BAR)
		assert.EqualValues(t, pio.offset, p.Offset, "the shared port")
		assert.Equal(t, 2, p.Size, "a 16-bit write")
		assert.True(t, p.Match)
		assert.EqualValues(t, i, p.Data, "of the queue's index")
		assert.Equal(t, bells[i].FD, p.FD, "signals the same eventfd")
	}
	require.True(t, r.negotiate(defaultFeatures))
	for i := range uint16(3) {
		r.setupQueue(i, 8, noVector, ramStart+uint64(i)*0x10000, defaultFeatures)
	}
	r.addStatus(sDriverOK)
	a := dev.Activation()
	require.NotNil(t, a)
	for i, q := range a.Queues {
		require.NotNil(t, q)
		assert.Equal(t, bells[i].FD, q.Kick.FD(), "queue %d's Kick is its doorbell", i)
	}

	// KVM's ioeventfd writes the eventfd counter.
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	_, err := unix.Write(bells[2].FD, one)
	require.NoError(t, err)
	n, err := a.Queues[2].Kick.Wait()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)

	// A notify write that reaches the transport, through either
	// structure, signals the same eventfd, and only that queue's.
	for _, c := range r.notifyCaps {
		r.notifyVia(c, 1)
		n, err = a.Queues[1].Kick.Wait()
		require.NoError(t, err)
		assert.EqualValues(t, 1, n)
		for _, q := range []int{0, 2} {
			_, err := unix.Read(bells[q].FD, make([]byte, 8))
			assert.ErrorIs(t, err, unix.EAGAIN, "queue %d not kicked", q)
		}
	}

	// On the port, the value names the queue: writes that name no queue,
	// or are too narrow to name one, kick nothing; a wider write names
	// the queue in its low 16 bits.
	port := r.ioBARs[pio.bar] + uint64(pio.offset)
	r.portWrite(port, 2, 3)
	r.portWrite(port, 2, 0xFFFF)
	r.portWrite(port, 1, 0)
	r.portWrite(port+1, 1, 0)
	for q := range 3 {
		_, err := unix.Read(bells[q].FD, make([]byte, 8))
		assert.ErrorIs(t, err, unix.EAGAIN, "queue %d not kicked", q)
	}
	r.portWrite(port, 4, 2)
	n, err = a.Queues[2].Kick.Wait()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n)
}

func TestRNGOverINTx(t *testing.T) {
	r := newRig(t, rng.New())
	r.probe()
	require.True(t, r.negotiate(defaultFeatures))
	d := r.setupQueue(0, 8, noVector, ramStart, defaultFeatures)
	r.addStatus(sDriverOK)
	d.EnableInterrupts()
	buf := d.Writable(16)
	d.AddChain(buf)
	d.Publish()
	r.notify(0)

	line := r.intx()
	require.Eventually(t, line.Level, 10*time.Second, time.Millisecond, "INTx# asserted")
	assert.NotZero(t, r.cfgRead(regStatus, 2)&statusInterrupt, "Status.Interrupt")
	assert.EqualValues(t, isrQueue, r.readISR())
	assert.False(t, line.Level(), "reading the ISR deasserts INTx#")
	assert.Zero(t, r.readISR(), "and clears it")
	assert.Zero(t, r.cfgRead(regStatus, 2)&statusInterrupt)
	id, n, ok := d.GetUsed()
	require.True(t, ok)
	assert.EqualValues(t, 0, id)
	assert.EqualValues(t, 16, n)
	assert.True(t, randomBytesIn(d.ReadMem(buf.Addr, 16)))
	assert.Zero(t, r.router.total(), "no MSI with MSI-X off")
}

func TestConfigChange(t *testing.T) {
	t.Run("MSI-X", func(t *testing.T) {
		dev := virtiotest.NewFakeDevice()
		r := newRig(t, dev)
		r.bringUp(defaultFeatures)
		a := dev.Activation()
		require.NotNil(t, a)
		gen := r.read8(commonCfgGen)
		done := make(chan struct{})
		go func() { // from a device goroutine
			defer close(done)
			a.ConfigChanged()
		}()
		<-done
		r.router.waitCount(t, 1, 1)
		assert.Equal(t, gen+1, r.read8(commonCfgGen), "config_generation changes")
		assert.Zero(t, r.router.count(0))
		// §4.1.4.5.1: the configuration bit is set in the ISR even
		// with MSI-X, though INTx# stays quiet.
		assert.False(t, r.intx().Level())
		assert.EqualValues(t, isrConfig, r.readISR())

		// Mapped to no vector: nothing is sent, INTx# included.
		r.write16(commonMSIX, noVector)
		a.ConfigChanged()
		assert.Equal(t, 1, r.router.count(1))
		assert.False(t, r.intx().Level())
		assert.Equal(t, gen+2, r.read8(commonCfgGen))
	})
	t.Run("INTx", func(t *testing.T) {
		dev := virtiotest.NewFakeDevice()
		r := newRig(t, dev)
		r.probe()
		require.True(t, r.negotiate(defaultFeatures))
		r.setupQueue(0, 8, noVector, ramStart, defaultFeatures)
		r.addStatus(sDriverOK)
		a := dev.Activation()
		a.ConfigChanged()
		assert.True(t, r.intx().Level())
		a.Queues[0].Interrupt()
		assert.EqualValues(t, isrConfig|isrQueue, r.readISR())
		assert.False(t, r.intx().Level())
	})
}

func TestDeviceConfigAccess(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.probe()
	base := r.structure(capDeviceCfg)
	assert.EqualValues(t, 0x04030201, r.mmioRead(base, 4))
	assert.EqualValues(t, 0x0807060504030201, r.mmioRead(base, 8))
	r.mmioWrite(base+2, 2, 0xBBAA)
	assert.EqualValues(t, 0x0605BBAA, r.mmioRead(base+2, 4), "bytes 2-5")
	assert.Zero(t, r.mmioRead(base+100, 4), "past the device's structure")
	// An access that runs past the page reaches the device only with
	// the page's bytes.
	r.mmioWrite(base+0xFFC, 8, 0x1122334455667788)
	r.mmioRead(base+0xFFE, 8)
	assert.EqualValues(t, 0x1000, dev.MaxConfigEnd())
}

func TestFeatureNegotiation(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	// A device bit, and one the transport does not implement, which it
	// must not offer.
	dev.Offered = virtio.Features(1<<5 | 1<<fRingPacked)
	r := newRig(t, dev)
	r.probe()

	offered := r.deviceFeatures()
	assert.Equal(t, uint64(1<<5|1<<fVersion1|1<<fIndirectDesc|1<<fEventIdx), offered)
	r.write32(commonDFSelect, 2)
	assert.Zero(t, r.read32(commonDF), "bits 64-95 not offered")

	for name, features := range map[string]uint64{
		"not offered":       1<<fVersion1 | 1<<3,
		"no VERSION_1":      1 << 5,
		"packed":            1<<fVersion1 | 1<<fRingPacked,
		"nothing":           0,
		"VERSION_1 missing": 1<<fIndirectDesc | 1<<fEventIdx,
	} {
		assert.False(t, r.negotiate(features), name)
		assert.EqualValues(t, sAcknowledge|sDriver, r.read8(commonStatus), name)
	}
	// A bit above 63 the device did not offer.
	r.reset()
	r.addStatus(sAcknowledge | sDriver)
	r.write32(commonGFSelect, 1)
	r.write32(commonGF, 1) // VERSION_1
	r.write32(commonGFSelect, 2)
	r.write32(commonGF, 1)
	r.addStatus(sFeaturesOK)
	assert.Zero(t, r.read8(commonStatus)&sFeaturesOK, "feature 64 not offered")

	want := uint64(1<<5 | 1<<fVersion1 | 1<<fEventIdx)
	require.True(t, r.negotiate(want))
	// Features are frozen once accepted.
	r.write32(commonGFSelect, 0)
	r.write32(commonGF, 0xFFFFFFFF)
	assert.EqualValues(t, uint32(want), r.read32(commonGF))
	r.setupQueue(0, 8, noVector, ramStart, want)
	r.addStatus(sDriverOK)
	a := dev.Activation()
	require.NotNil(t, a)
	assert.Equal(t, virtio.Features(want), a.Features)
}

// waitLog waits until the transport's log contains all of subs.
func (r *rig) waitLog(subs ...string) {
	r.t.Helper()
	ok := assert.Eventually(r.t, func() bool {
		s := r.logBuf.String()
		for _, sub := range subs {
			if !bytes.Contains([]byte(s), []byte(sub)) {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond)
	if !ok {
		r.t.Logf("log: %s", r.logBuf.String())
	}
}

func TestBadQueuesAtDriverOK(t *testing.T) {
	for name, tc := range map[string]struct {
		size              uint16
		desc, avail, used uint64
		log               string
	}{
		"outside RAM":      {size: 8, desc: 0x1000, avail: ramStart + 0x1000, used: ramStart + 0x2000, log: "out of range"},
		"past RAM end":     {size: 8, desc: ramStart, avail: ramStart + 0x1000, used: ramStart + ramSize - 8, log: "out of range"},
		"not power of 2":   {size: 12, desc: ramStart, avail: ramStart + 0x1000, used: ramStart + 0x2000, log: "power of 2"},
		"above maximum":    {size: 32, desc: ramStart, avail: ramStart + 0x1000, used: ramStart + 0x2000, log: "maximum"},
		"size 0":           {size: 0, desc: ramStart, avail: ramStart + 0x1000, used: ramStart + 0x2000, log: "power of 2"},
		"misaligned desc":  {size: 8, desc: ramStart + 8, avail: ramStart + 0x1000, used: ramStart + 0x2000, log: "misaligned"},
		"misaligned used":  {size: 8, desc: ramStart, avail: ramStart + 0x1000, used: ramStart + 0x2002, log: "misaligned"},
		"address overflow": {size: 8, desc: 1<<64 - 16, avail: ramStart + 0x1000, used: ramStart + 0x2000, log: "out of range"},
	} {
		t.Run(name, func(t *testing.T) {
			dev := virtiotest.NewFakeDevice(16)
			r := newRig(t, dev)
			r.probe()
			require.True(t, r.negotiate(defaultFeatures))
			r.enableMSIX(2)
			r.write16(commonMSIX, 1)
			r.write16(commonQSelect, 0)
			r.write16(commonQSize, tc.size)
			r.write64(commonQDescLo, tc.desc)
			r.write64(commonQAvailLo, tc.avail)
			r.write64(commonQUsedLo, tc.used)
			r.write16(commonQMSIX, 0)
			r.write16(commonQEnable, 1)
			r.addStatus(sDriverOK)
			assert.EqualValues(t, sAcknowledge|sDriver|sFeaturesOK|sDriverOK|sNeedsReset, r.read8(commonStatus))
			assert.Equal(t, 1, r.router.count(1), "configuration change interrupt")
			act, _ := dev.Counts()
			assert.Zero(t, act, "device not activated")
			r.waitLog("virtio-32", "queue 0", tc.log)

			// A reset recovers.
			r.reset()
			assert.Zero(t, r.read8(commonStatus))
		})
	}
}

func TestDriverOKWithoutFeaturesOK(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.probe()
	r.reset()
	r.addStatus(sAcknowledge | sDriver)
	r.write32(commonGFSelect, 1)
	r.write32(commonGF, 1)
	r.addStatus(sDriverOK)
	assert.NotZero(t, r.read8(commonStatus)&sNeedsReset)
	act, _ := dev.Counts()
	assert.Zero(t, act)
}

func TestActivateError(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	dev.ActivateErr = errors.New("no backend")
	r := newRig(t, dev)
	r.probe()
	require.True(t, r.negotiate(defaultFeatures))
	r.enableMSIX(2)
	r.write16(commonMSIX, 1)
	r.setupQueue(0, 8, 0, ramStart, defaultFeatures)
	r.addStatus(sDriverOK)
	assert.NotZero(t, r.read8(commonStatus)&sNeedsReset)
	assert.Equal(t, 1, r.router.count(1))
	r.waitLog("no backend", "virtio-32")
}

func TestFail(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp(defaultFeatures)
	a := dev.Activation()
	require.NotNil(t, a)
	go a.Fail(errors.New("descriptor loop"))
	r.router.waitCount(t, 1, 1)
	assert.EqualValues(t, sAcknowledge|sDriver|sFeaturesOK|sDriverOK|sNeedsReset, r.read8(commonStatus))
	r.waitLog("descriptor loop", "device=virtio-32")

	// After a reset, the old activation's callbacks do nothing.
	r.reset()
	a.Fail(errors.New("late"))
	a.ConfigChanged()
	a.Queues[0].Interrupt()
	assert.Zero(t, r.read8(commonStatus))
	assert.Equal(t, 1, r.router.total())
	assert.Zero(t, r.readISR())
}

func TestVectorMapping(t *testing.T) {
	r := newRig(t, virtiotest.NewFakeDevice(8, 8)) // 3 vectors
	r.probe()
	r.write16(commonMSIX, 2)
	assert.EqualValues(t, 2, r.read16(commonMSIX))
	r.write16(commonMSIX, 3)
	assert.EqualValues(t, noVector, r.read16(commonMSIX), "vector outside the table")
	r.write16(commonQSelect, 1)
	r.write16(commonQMSIX, 0)
	assert.EqualValues(t, 0, r.read16(commonQMSIX))
	r.write16(commonQMSIX, 0x7FF)
	assert.EqualValues(t, noVector, r.read16(commonQMSIX))

	// A queue that does not exist.
	r.write16(commonQSelect, 2)
	assert.Zero(t, r.read16(commonQSize), "queue 2 is unavailable")
	assert.EqualValues(t, noVector, r.read16(commonQMSIX))
	r.write16(commonQMSIX, 1)
	r.write16(commonQSize, 4)
	r.write16(commonQEnable, 1)
	assert.Zero(t, r.read16(commonQSize))
	assert.Zero(t, r.read16(commonQEnable))
	r.write16(commonQSelect, 0xFFFF)
	assert.Zero(t, r.read16(commonQSize))
	r.write16(commonQSelect, 1)
	assert.EqualValues(t, 8, r.read16(commonQSize), "other queues untouched")
	assert.Zero(t, r.read16(commonQEnable))
}

// A queue's MSI-X vector decides where its interrupts go.
func TestQueueInterruptRouting(t *testing.T) {
	dev := virtiotest.NewFakeDevice(8, 8)
	r := newRig(t, dev)
	r.probe()
	require.True(t, r.negotiate(defaultFeatures))
	r.enableMSIX(3)
	r.setupQueue(0, 8, 2, ramStart, defaultFeatures)
	r.setupQueue(1, 8, noVector, ramStart+0x10000, defaultFeatures)
	r.addStatus(sDriverOK)
	a := dev.Activation()
	a.Queues[0].Interrupt()
	a.Queues[1].Interrupt()
	assert.Equal(t, 1, r.router.total())
	assert.Equal(t, 1, r.router.count(2))
	assert.False(t, r.intx().Level(), "NO_VECTOR with MSI-X on: nothing")

	// A masked vector keeps the message pending in the PBA.
	e := r.barAddr + uint64(r.tableOff) + 2*msixEntrySize
	r.mmioWrite(e+msixVectorCtlOff, 4, 1)
	a.Queues[0].Interrupt()
	assert.Equal(t, 1, r.router.count(2))
	assert.True(t, r.tr.MSIX().Pending(2))
	r.mmioWrite(e+msixVectorCtlOff, 4, 0)
	assert.Equal(t, 2, r.router.count(2), "sent on unmask")

	// Bus mastering off: MSI-X writes cannot happen.
	r.cfgWrite(regCommand, 2, cmdMemory)
	a.Queues[0].Interrupt()
	assert.Equal(t, 2, r.router.count(2))
}

// sharingDevice is a virtiotest.FakeDevice that asks for one interrupt for
// all its queues, or, with share false, implements
// virtio.QueueInterruptSharer but declines.
type sharingDevice struct {
	*virtiotest.FakeDevice
	share bool
}

func (d sharingDevice) ShareQueueInterrupt() bool { return d.share }

// A device that shares its queues' interrupt gets two MSI-X vectors, so
// that Linux gives up on a vector per queue and maps every queue to the
// second one (vp_find_vqs); interrupts from every queue then go there.
func TestSharedQueueVector(t *testing.T) {
	const configVector, queueVector = 0, 1
	dev := sharingDevice{virtiotest.NewFakeDevice(8, 8, 8), true}
	r := newRig(t, dev)
	r.probe()
	require.EqualValues(t, 2, r.msixTableSize(), "table size")
	require.True(t, r.negotiate(defaultFeatures))
	r.enableMSIX(2)
	r.write16(commonMSIX, configVector)
	for i := range uint16(3) {
		r.setupQueue(i, 8, queueVector, ramStart+uint64(i)*0x10000, defaultFeatures)
	}
	// The per-queue layout Linux tries first does not fit.
	r.write16(commonQSelect, 2)
	r.write16(commonQMSIX, 3)
	assert.EqualValues(t, noVector, r.read16(commonQMSIX), "vector 3 is outside the table")
	r.write16(commonQMSIX, queueVector)
	r.addStatus(sDriverOK)

	a := dev.Activation()
	require.NotNil(t, a)
	for _, q := range a.Queues {
		q.Interrupt()
	}
	assert.Equal(t, 3, r.router.count(queueVector))
	assert.Equal(t, 3, r.router.total())

	assert.True(t, a.Queues[0].SharesInterrupt(a.Queues[2]), "one vector, one line")

	// Declining keeps a vector per queue.
	r = newRig(t, sharingDevice{virtiotest.NewFakeDevice(8, 8, 8), false})
	r.probe()
	assert.EqualValues(t, 4, r.msixTableSize(), "table size")
}

// A queue's interrupt line is the vector the driver mapped it to, and
// INTx#, shared by all queues, while MSI-X is off.
func TestQueueInterruptLines(t *testing.T) {
	dev := virtiotest.NewFakeDevice(8, 8, 8)
	r := newRig(t, dev)
	r.probe()
	require.True(t, r.negotiate(defaultFeatures))
	for i, vector := range []uint16{1, 2, 2} {
		r.setupQueue(uint16(i), 8, vector, ramStart+uint64(i)*0x10000, defaultFeatures)
	}
	r.addStatus(sDriverOK)
	a := dev.Activation()
	require.NotNil(t, a)
	q0, q1, q2 := a.Queues[0], a.Queues[1], a.Queues[2]
	assert.True(t, q0.SharesInterrupt(q1), "MSI-X off: every queue raises INTx#")
	q0.Interrupt()
	assert.True(t, r.intx().Level())
	assert.EqualValues(t, isrQueue, r.readISR(), "the queue bit, for any queue")

	r.enableMSIX(3)
	assert.False(t, q0.SharesInterrupt(q1), "vectors 1 and 2")
	assert.True(t, q1.SharesInterrupt(q2), "both on vector 2")
	assert.True(t, q2.SharesInterrupt(q1))
	q1.Interrupt()
	q2.Interrupt()
	assert.Equal(t, 2, r.router.count(2))
	assert.Zero(t, r.router.count(1))

	// The driver may move a queue to another vector; the line follows.
	r.write16(commonQSelect, 2)
	r.write16(commonQMSIX, 1)
	assert.True(t, q0.SharesInterrupt(q2), "queue 2 moved to vector 1")
	assert.False(t, q1.SharesInterrupt(q2))
}

func TestResetRestoresDefaults(t *testing.T) {
	dev := virtiotest.NewFakeDevice(16, 8)
	r := newRig(t, dev)
	r.probe()
	require.True(t, r.negotiate(defaultFeatures))
	r.write16(commonMSIX, 1)
	r.setupQueue(0, 8, 1, ramStart, defaultFeatures)
	r.setupQueue(1, 4, 2, ramStart+0x10000, defaultFeatures)
	r.addStatus(sDriverOK)
	a := dev.Activation()
	require.NotNil(t, a)
	a.Queues[0].Interrupt() // MSI-X is off: ISR and INTx#
	require.True(t, r.intx().Level())
	r.write32(commonDFSelect, 1)

	_, resetsBefore := dev.Counts()
	r.write8(commonStatus, 0)
	_, resets := dev.Counts()
	assert.Equal(t, resetsBefore+1, resets, "Device.Reset called")
	assert.Nil(t, dev.Activation())
	assert.Zero(t, r.read8(commonStatus), "status reads 0 at once")
	assert.False(t, r.intx().Level(), "INTx# deasserted")
	assert.Zero(t, r.readISR())
	assert.EqualValues(t, noVector, r.read16(commonMSIX))
	assert.Zero(t, r.read32(commonDFSelect))
	assert.Zero(t, r.read32(commonGF))
	assert.Zero(t, r.read16(commonQSelect))
	for i, max := range []uint16{16, 8} {
		r.write16(commonQSelect, uint16(i))
		assert.Equal(t, max, r.read16(commonQSize), "queue %d size back to the maximum", i)
		assert.EqualValues(t, noVector, r.read16(commonQMSIX))
		assert.Zero(t, r.read16(commonQEnable))
		for _, off := range []uint64{commonQDescLo, commonQDescHi, commonQAvailLo, commonQAvailHi, commonQUsedLo, commonQUsedHi} {
			assert.Zero(t, r.read32(off))
		}
	}
	// And it can be brought up again.
	require.True(t, r.negotiate(defaultFeatures))
	r.setupQueue(0, 16, noVector, ramStart, defaultFeatures)
	r.addStatus(sDriverOK)
	assert.NotNil(t, dev.Activation())
	assert.Nil(t, dev.Activation().Queues[1], "queue 1 not enabled this time")
}

func TestStatusBitsOnlyAccumulate(t *testing.T) {
	r := newRig(t, virtiotest.NewFakeDevice())
	r.probe()
	r.reset()
	r.write8(commonStatus, sAcknowledge|sDriver)
	r.write8(commonStatus, sAcknowledge)
	assert.EqualValues(t, sAcknowledge|sDriver, r.read8(commonStatus), "bits are not cleared")
	r.write8(commonStatus, sNeedsReset)
	assert.EqualValues(t, sAcknowledge|sDriver, r.read8(commonStatus), "the driver cannot set NEEDS_RESET")
	r.write8(commonStatus, sFailed)
	assert.EqualValues(t, sAcknowledge|sDriver|sFailed, r.read8(commonStatus))
}

func TestAccessWidths(t *testing.T) {
	r := newRig(t, virtiotest.NewFakeDevice(16, 16))
	r.probe()
	r.reset()

	// A 64-bit register written in one access, read in halves and whole.
	r.mmioWrite(r.common(commonQDescLo), 8, 0x1122334455667000)
	assert.EqualValues(t, 0x55667000, r.read32(commonQDescLo))
	assert.EqualValues(t, 0x11223344, r.read32(commonQDescHi))
	assert.EqualValues(t, 0x1122334455667000, r.mmioRead(r.common(commonQDescLo), 8))
	// Halves independently.
	r.write32(commonQAvailHi, 0xAB)
	r.write32(commonQAvailLo, 0xCD00)
	assert.EqualValues(t, 0xAB0000CD00, r.mmioRead(r.common(commonQAvailLo), 8))
	// One byte of a 16-bit register keeps the other.
	r.write16(commonQSize, 0x0102)
	r.mmioWrite(r.common(commonQSize), 1, 0x08)
	assert.EqualValues(t, 0x0108, r.read16(commonQSize))
	// One access over two registers: queue_select and queue_size.
	r.mmioWrite(r.common(commonQSelect), 4, 0x0004_0001)
	assert.EqualValues(t, 1, r.read16(commonQSelect))
	assert.EqualValues(t, 4, r.read16(commonQSize), "queue 1's size")
	r.write16(commonQSelect, 0)
	assert.EqualValues(t, 0x0108, r.read16(commonQSize), "queue 0's untouched")
	// Read-only registers ignore writes.
	r.write16(commonNumQ, 9)
	r.write32(commonDF, 0)
	r.write8(commonCfgGen, 7)
	r.write16(commonQNotifyOff, 5)
	r.write16(commonQNData, 5)
	r.write16(commonQReset, 1)
	assert.EqualValues(t, 2, r.read16(commonNumQ))
	assert.NotZero(t, r.deviceFeatures())
	assert.Zero(t, r.read8(commonCfgGen))
	assert.Zero(t, r.read16(commonQNotifyOff))
	assert.Zero(t, r.read16(commonQNData))
	assert.Zero(t, r.read16(commonQReset))
	// Past the structure: zeros, and writes are dropped.
	assert.Zero(t, r.mmioRead(r.common(0x3C), 4))
	r.mmioWrite(r.common(0x3E), 8, ^uint64(0))
	assert.Zero(t, r.mmioRead(r.common(0x800), 8))
	// Straddling the end of the structure.
	assert.EqualValues(t, 0, r.mmioRead(r.common(0x3A), 8))
	// The ISR only at its byte; notify reads 0.
	assert.Zero(t, r.mmioRead(r.structure(capISRCfg)+1, 4))
	assert.Zero(t, r.mmioRead(r.barAddr+uint64(r.notifyCaps[1].offset), 4))
}

func TestQueueRegistersFreezeOnceEnabled(t *testing.T) {
	dev := virtiotest.NewFakeDevice(16)
	r := newRig(t, dev)
	r.probe()
	require.True(t, r.negotiate(defaultFeatures))
	d := r.setupQueue(0, 8, noVector, ramStart, defaultFeatures)
	r.write16(commonQSize, 4)
	r.write64(commonQDescLo, 0xDEAD000)
	assert.EqualValues(t, 8, r.read16(commonQSize))
	assert.EqualValues(t, d.Cfg.DescTable, r.mmioRead(r.common(commonQDescLo), 8))
	r.write16(commonQEnable, 0) // not allowed without RING_RESET: ignored
	assert.EqualValues(t, 1, r.read16(commonQEnable))
	r.addStatus(sDriverOK)
	assert.EqualValues(t, 8, dev.Activation().Queues[0].Size())
}

// The VIRTIO_PCI_CAP_PCI_CFG window reaches the BAR's registers through
// configuration space alone, with the BAR not even decoding.
func TestPCICfgWindow(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.probe()
	r.cfgWrite(regCommand, 2, 0) // memory decoding off
	_, _, mapped := r.mapper.find(barBase)
	require.False(t, mapped)

	cap := r.caps[capPCICfg].pos
	common := r.caps[capCommonCfg]
	access := func(bar uint8, off uint32, n uint32) {
		r.cfgWrite(cap+capBar, 1, uint32(bar))
		r.cfgWrite(cap+capOffset, 4, off)
		r.cfgWrite(cap+capLength, 4, n)
	}
	// device_feature_select = 1, then device_feature: VERSION_1 is bit 0
	// of the high word.
	access(0, common.offset+commonDFSelect, 4)
	r.cfgWrite(cap+capCfgData, 4, 1)
	access(0, common.offset+commonDF, 4)
	assert.EqualValues(t, 1, r.cfgRead(cap+capCfgData, 4))

	// device_status through a byte window.
	access(0, common.offset+commonStatus, 1)
	r.cfgWrite(cap+capCfgData, 1, sAcknowledge|sDriver)
	assert.EqualValues(t, sAcknowledge|sDriver, r.cfgRead(cap+capCfgData, 1))
	// num_queues through a 2-byte window.
	access(0, common.offset+commonNumQ, 2)
	assert.EqualValues(t, 1, r.cfgRead(cap+capCfgData, 2))
	// The device-specific configuration.
	access(0, r.caps[capDeviceCfg].offset+4, 4)
	assert.EqualValues(t, 0x08070605, r.cfgRead(cap+capCfgData, 4))

	// Accesses the driver must not make do nothing: misaligned, a bad
	// length, another BAR, past the BAR. Each writes 0, which would reset
	// the device if it reached device_status.
	for _, bad := range []struct {
		bar    uint8
		off, n uint32
	}{
		{0, common.offset + commonStatus - 1, 2},
		{0, common.offset + commonStatus, 3},
		{0, common.offset + commonStatus, 8},
		{0, common.offset + commonStatus, 0},
		{2, common.offset + commonStatus, 1},
		{0, 0xFFFF_FFFC, 4},
		{1, 4, 2}, // past the notify port's I/O BAR
	} {
		access(bad.bar, bad.off, bad.n)
		r.cfgWrite(cap+capCfgData, 4, 0)
		r.cfgRead(cap+capCfgData, 4)
	}
	access(0, common.offset+commonStatus, 1)
	assert.EqualValues(t, sAcknowledge|sDriver, r.cfgRead(cap+capCfgData, 1), "status untouched")

	// The ISR through the window: the read returns and clears it.
	r.cfgWrite(regCommand, 2, cmdMemory|cmdBusMaster)
	require.True(t, r.negotiate(defaultFeatures))
	r.setupQueue(0, 8, noVector, ramStart, defaultFeatures)
	r.addStatus(sDriverOK)
	r.cfgWrite(regCommand, 2, cmdBusMaster) // decoding off again
	dev.Activation().Queues[0].Interrupt()
	require.True(t, r.intx().Level())
	access(0, r.caps[capISRCfg].offset, 1)
	assert.EqualValues(t, isrQueue, r.cfgRead(cap+capCfgData, 1))
	assert.False(t, r.intx().Level())
	assert.Zero(t, r.cfgRead(cap+capCfgData, 1))

	// A notify write through the window kicks the queue, whichever
	// notify structure it reaches.
	for _, c := range r.notifyCaps {
		access(c.bar, c.offset, 2)
		r.cfgWrite(cap+capCfgData, 2, 0)
		n, err := dev.Activation().Queues[0].Kick.Wait()
		require.NoError(t, err)
		assert.EqualValues(t, 1, n, "through BAR %d", c.bar)
	}
}

func TestClose(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp(defaultFeatures)
	_, resets := dev.Counts()
	require.NoError(t, r.tr.Close())
	_, after := dev.Counts()
	assert.Equal(t, resets+1, after, "Close resets the device")
	require.NoError(t, r.tr.Close(), "twice")

	// The guest's writes do nothing now.
	assert.False(t, r.negotiate(defaultFeatures))
	r.addStatus(sDriverOK)
	act, _ := dev.Counts()
	assert.Equal(t, 1, act, "no activation after Close")
	r.notify(0) // no panic
}

// Interrupt on the MSI-X path is what a device calls for every batch of
// completions: it must not allocate.
func TestQueueInterruptDoesNotAllocate(t *testing.T) {
	dev := virtiotest.NewFakeDevice()
	r := newRig(t, dev)
	r.bringUp(defaultFeatures)
	q := dev.Activation().Queues[0]
	r.router.countOnly.Store(true)
	allocs := testing.AllocsPerRun(100, q.Interrupt)
	assert.Zero(t, allocs)
	assert.EqualValues(t, 101, r.router.counted.Load())
}

// Resetting the device while its worker is busy with a driver that keeps
// posting and notifying: under the race detector, no access of the worker
// may race with the reset, and the device must come back each time.
func TestResetWhileBusy(t *testing.T) {
	r := newRig(t, rng.New())
	r.probe()
	for round := range 5 {
		require.True(t, r.negotiate(defaultFeatures))
		r.enableMSIX(2)
		d := r.setupQueue(0, 16, 0, ramStart, defaultFeatures)
		r.addStatus(sDriverOK)
		d.EnableInterrupts()

		// One buffer per descriptor, reused: at most that many chains
		// are in flight.
		bufs := make([]virtiotest.Buf, 16)
		for i := range bufs {
			bufs[i] = d.Writable(64)
		}
		next := 0
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the guest's driver, on another vCPU
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for d.FreeDescriptors() > 0 {
					d.AddChain(bufs[next%len(bufs)])
					next++
				}
				if d.Publish() {
					r.notify(0)
				}
				for {
					if _, _, ok := d.GetUsed(); !ok {
						break
					}
				}
				if d.FreeDescriptors() == 0 {
					// Everything in flight; if the device is gone, give
					// the chains up.
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Microsecond):
					}
				}
			}
		}()
		before := r.router.count(0)
		r.router.waitCount(t, 0, before+1)
		r.reset() // while the worker runs
		close(stop)
		wg.Wait()
		assert.Zero(t, r.read8(commonStatus), "round %d", round)
	}
}

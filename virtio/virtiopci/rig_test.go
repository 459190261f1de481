package virtiopci_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/devices/devicetest"
	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiopci"
	"github.com/govmm/govmm/virtio/virtiotest"
	"github.com/stretchr/testify/require"
)

// The guest's view of a virtio PCI function, written out here from the
// specifications (virtio 1.2 §4.1, Linux's include/uapi/linux/virtio_pci.h
// and virtio_config.h, PCI 3.0 §6) rather than taken from the package under
// test, so that a wrong constant there fails these tests.
const (
	pciVendorRedHat = 0x1AF4
	pciCapIDVendor  = 0x09
	pciCapIDMSIX    = 0x11

	// Configuration header (PCI 3.0 §6.1).
	regVendorID     = 0x00
	regDeviceID     = 0x02
	regCommand      = 0x04
	regStatus       = 0x06
	regRevisionID   = 0x08
	regClassCode    = 0x09
	regBAR0         = 0x10
	numBARs         = 6
	cmdIO           = 1 << 0
	regSubsystemVID = 0x2C
	regSubsystemID  = 0x2E
	regCapPointer   = 0x34
	regInterruptPin = 0x3D
	cmdMemory       = 1 << 1
	cmdBusMaster    = 1 << 2
	cmdIntxDisable  = 1 << 10
	statusCapList   = 1 << 4
	statusInterrupt = 1 << 3
	barMemFlagsMask = 0xF
	barIOSpace      = 1 << 0
	barIOFlagsMask  = 0x3
	msixCtlEnable   = 1 << 15
	msixCtlFuncMask = 1 << 14
	msixCapControl  = 2
	// msixTableSizeMask is Message Control's Table Size field: the
	// number of vectors minus one (PCI 3.0 §6.8.2.3).
	msixTableSizeMask = 0x7FF
	msixCapTable      = 4
	msixCapPBA        = 8
	msixBIRMask       = 7
	msixEntrySize     = 16
	msixVectorCtlOff  = 12
	msiAddressBase    = 0xFEE0_0000
	msiDataBase       = 0x40

	// cfg_type (§4.1.4).
	capCommonCfg = 1
	capNotifyCfg = 2
	capISRCfg    = 3
	capDeviceCfg = 4
	capPCICfg    = 5

	// struct virtio_pci_cap (§4.1.4), from cap_vndr.
	capLen      = 2
	capCfgType  = 3
	capBar      = 4
	capOffset   = 8
	capLength   = 12
	capNotifyMu = 16 // notify_off_multiplier
	capCfgData  = 16 // pci_cfg_data

	// struct virtio_pci_common_cfg (§4.1.4.3).
	commonDFSelect   = 0x00
	commonDF         = 0x04
	commonGFSelect   = 0x08
	commonGF         = 0x0C
	commonMSIX       = 0x10
	commonNumQ       = 0x12
	commonStatus     = 0x14
	commonCfgGen     = 0x15
	commonQSelect    = 0x16
	commonQSize      = 0x18
	commonQMSIX      = 0x1A
	commonQEnable    = 0x1C
	commonQNotifyOff = 0x1E
	commonQDescLo    = 0x20
	commonQDescHi    = 0x24
	commonQAvailLo   = 0x28
	commonQAvailHi   = 0x2C
	commonQUsedLo    = 0x30
	commonQUsedHi    = 0x34
	commonQNData     = 0x38
	commonQReset     = 0x3A

	noVector = 0xFFFF

	// Device status (§2.1).
	sAcknowledge = 1
	sDriver      = 2
	sDriverOK    = 4
	sFeaturesOK  = 8
	sNeedsReset  = 64
	sFailed      = 128

	// Feature bits (§6).
	fIndirectDesc = 28
	fEventIdx     = 29
	fVersion1     = 32
	fRingPacked   = 34

	// ISR status bits (§4.1.4.5).
	isrQueue  = 1
	isrConfig = 2

	// Where the test firmware puts BAR 0 and the first I/O BAR.
	barBase   = pci.MMIO32WindowBase
	ioBARBase = pci.IOWindowBase
	slot      = 3
	// Fake guest RAM.
	ramStart = 0x100000
	ramSize  = 1 << 20
)

var le = binary.LittleEndian

// router is a fake pci.MSIRouter: it records messages sent, by vector.
type router struct {
	mu      sync.Mutex
	sent    []int
	updates []string
	cond    chan struct{} // closed and replaced on every send

	// countOnly makes SendMSI only count, without allocating.
	countOnly atomic.Bool
	counted   atomic.Int64
}

func newRouter() *router { return &router{cond: make(chan struct{})} }

func (r *router) UpdateVector(vector int, msg pci.MSIMessage, masked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = append(r.updates, fmt.Sprintf("%d:%#x/%#x masked=%v", vector, msg.Address, msg.Data, masked))
}

func (r *router) SendMSI(vector int, msg pci.MSIMessage) {
	if r.countOnly.Load() {
		r.counted.Add(1)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, vector)
	close(r.cond)
	r.cond = make(chan struct{})
}

// count returns how many messages went out on vector.
func (r *router) count(vector int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.sent {
		if v == vector {
			n++
		}
	}
	return n
}

// total returns how many messages went out.
func (r *router) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent)
}

// waitCount waits until vector has had at least n messages.
func (r *router) waitCount(t testing.TB, vector, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		c := r.cond
		r.mu.Unlock()
		if r.count(vector) >= n {
			return
		}
		select {
		case <-c:
		case <-deadline:
			t.Fatalf("timed out waiting for MSI %d on vector %d (have %d)", n, vector, r.count(vector))
		}
	}
}

// mapper is the machine's BARMapper: it remembers where each BAR decodes
// so that guest MMIO can be dispatched to its handler.
type mapper struct {
	mu      sync.Mutex
	regions map[int]pci.Region
}

func (m *mapper) MapBAR(_ pci.Device, r pci.Region) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.regions[r.Index] = r
}

func (m *mapper) UnmapBAR(_ pci.Device, r pci.Region) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.regions, r.Index)
}

// find returns the handler and offset for guest-physical addr.
func (m *mapper) find(addr uint64) (pci.MMIOHandler, uint64, bool) {
	return m.lookup(addr, true)
}

// findPort returns the handler and offset for I/O port port.
func (m *mapper) findPort(port uint64) (pci.MMIOHandler, uint64, bool) {
	return m.lookup(port, false)
}

func (m *mapper) lookup(addr uint64, memory bool) (pci.MMIOHandler, uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.regions {
		if r.Kind.IsMemory() == memory && addr >= r.Addr && addr < r.End() {
			return r.Handler, addr - r.Addr, true
		}
	}
	return nil, 0, false
}

// capInfo is one virtio structure capability as the driver reads it.
type capInfo struct {
	pos            uint16 // its offset in configuration space
	bar            uint8
	offset, length uint32
}

// rig is a machine with one virtio PCI function on its bus, and a guest
// driver for it that works the way Linux's virtio_pci_modern does.
type rig struct {
	t      testing.TB
	dev    virtio.Device
	tr     *virtiopci.Transport
	bus    *pci.Bus
	mapper *mapper
	router *router
	lines  map[uint32]*devicetest.IRQRecorder
	mem    *memory.Guest
	ram    []byte
	logBuf *syncBuffer

	// What probe finds.
	caps       map[uint8]capInfo // the first of each type, Linux's choice
	notifyCaps []notifyCap       // every notify capability, in list order
	msixCap    uint16
	tableOff   uint32
	barAddr    uint64           // BAR 0's address
	ioBARs     map[uint8]uint64 // the I/O BARs' ports, by BAR
	features   uint64           // offered
}

// notifyCap is one VIRTIO_PCI_CAP_NOTIFY_CFG capability.
type notifyCap struct {
	capInfo
	mul uint32 // notify_off_multiplier
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newRig builds the machine around dev and attaches the function at slot.
func newRig(t testing.TB, dev virtio.Device) *rig {
	t.Helper()
	mem, ram := virtiotest.NewRAM(ramStart, ramSize)
	return newRigWithRAM(t, dev, mem, ram)
}

// newRigWithRAM is newRig with the given guest RAM.
func newRigWithRAM(t testing.TB, dev virtio.Device, mem *memory.Guest, ram []byte) *rig {
	t.Helper()
	r := &rig{
		t:      t,
		dev:    dev,
		mapper: &mapper{regions: map[int]pci.Region{}},
		router: newRouter(),
		lines:  map[uint32]*devicetest.IRQRecorder{},
		mem:    mem,
		ram:    ram,
		logBuf: &syncBuffer{},
	}
	r.bus = pci.NewBus(pci.BusConfig{Mapper: r.mapper, IRQ: func(gsi uint32) devices.IRQLine {
		l := &devicetest.IRQRecorder{}
		r.lines[gsi] = l
		return l
	}})
	tr, err := virtiopci.New(virtiopci.Config{
		Device: dev,
		Mem:    mem,
		Router: r.router,
		Log:    slog.New(slog.NewTextHandler(r.logBuf, nil)),
	})
	require.NoError(t, err)
	r.tr = tr
	t.Cleanup(func() { _ = tr.Close() })
	require.NoError(t, r.bus.Attach(slot, tr))
	return r
}

// intx returns the interrupt line the function's INTA# drives.
func (r *rig) intx() *devicetest.IRQRecorder {
	gsi, ok := pci.INTxGSI(slot, pci.PinINTA)
	require.True(r.t, ok)
	return r.lines[gsi]
}

// Configuration space accesses through the bus.

func (r *rig) cfgRead(off uint16, n int) uint32 {
	b := make([]byte, 4)
	r.bus.ReadConfig(pci.Address{Device: slot, Register: off}, b[:n])
	return le.Uint32(b)
}

func (r *rig) cfgWrite(off uint16, n int, v uint32) {
	b := le.AppendUint32(nil, v)
	r.bus.WriteConfig(pci.Address{Device: slot, Register: off}, b[:n])
}

// portWrite is an OUT to an I/O port, as a vCPU's would reach the machine.
func (r *rig) portWrite(port uint64, n int, v uint64) {
	if h, off, ok := r.mapper.findPort(port); ok {
		h.WriteMMIO(off, le.AppendUint64(nil, v)[:n])
	}
}

// MMIO at a guest-physical address, as a vCPU's load or store would reach
// the machine. Nothing there reads all ones.
func (r *rig) mmioRead(addr uint64, n int) uint64 {
	b := make([]byte, 8)
	h, off, ok := r.mapper.find(addr)
	if !ok {
		for i := range n {
			b[i] = 0xFF
		}
	} else {
		h.ReadMMIO(off, b[:n])
	}
	return le.Uint64(b)
}

func (r *rig) mmioWrite(addr uint64, n int, v uint64) {
	if h, off, ok := r.mapper.find(addr); ok {
		h.WriteMMIO(off, le.AppendUint64(nil, v)[:n])
	}
}

// structure returns the guest-physical address of a virtio structure.
func (r *rig) structure(cfgType uint8) uint64 {
	c, ok := r.caps[cfgType]
	require.True(r.t, ok, "no capability of type %d", cfgType)
	require.EqualValues(r.t, 0, c.bar, "structure in BAR %d", c.bar)
	return r.barAddr + uint64(c.offset)
}

func (r *rig) common(off uint64) uint64 { return r.structure(capCommonCfg) + off }

func (r *rig) read8(off uint64) uint8   { return uint8(r.mmioRead(r.common(off), 1)) }
func (r *rig) read16(off uint64) uint16 { return uint16(r.mmioRead(r.common(off), 2)) }
func (r *rig) read32(off uint64) uint32 { return uint32(r.mmioRead(r.common(off), 4)) }
func (r *rig) write8(off uint64, v uint8) {
	r.mmioWrite(r.common(off), 1, uint64(v))
}
func (r *rig) write16(off uint64, v uint16) {
	r.mmioWrite(r.common(off), 2, uint64(v))
}
func (r *rig) write32(off uint64, v uint32) {
	r.mmioWrite(r.common(off), 4, uint64(v))
}

// write64 writes a 64-bit register as Linux's vp_iowrite64_twopart does:
// low half, then high half.
func (r *rig) write64(off uint64, v uint64) {
	r.write32(off, uint32(v))
	r.write32(off+4, uint32(v>>32))
}

// probe does what the PCI core and virtio_pci_modern's probe do: check the
// IDs, walk the capability list for the virtio structures and MSI-X, size
// BAR 0 and the I/O BARs and give them addresses, and enable memory and
// I/O decoding and bus mastering.
func (r *rig) probe() {
	t := r.t
	t.Helper()
	require.EqualValues(t, pciVendorRedHat, r.cfgRead(regVendorID, 2))
	did := r.cfgRead(regDeviceID, 2)
	require.True(t, did >= 0x1040 && did <= 0x107F, "modern virtio device ID %#x", did)
	require.EqualValues(t, 0x1040+uint32(r.dev.DeviceID()), did)

	r.caps = map[uint8]capInfo{}
	require.NotZero(t, r.cfgRead(regStatus, 2)&statusCapList)
	pos := uint16(r.cfgRead(regCapPointer, 1))
	for hops := 0; pos >= 0x40 && hops < 48; hops++ {
		pos &^= 3
		id := uint8(r.cfgRead(pos, 1))
		switch id {
		case pciCapIDVendor:
			require.GreaterOrEqual(t, r.cfgRead(pos+capLen, 1), uint32(16), "cap_len")
			cfgType := uint8(r.cfgRead(pos+capCfgType, 1))
			// Linux takes the first capability of each type.
			if _, seen := r.caps[cfgType]; !seen {
				r.caps[cfgType] = capInfo{
					pos:    pos,
					bar:    uint8(r.cfgRead(pos+capBar, 1)),
					offset: r.cfgRead(pos+capOffset, 4),
					length: r.cfgRead(pos+capLength, 4),
				}
			}
			if cfgType == capNotifyCfg {
				r.notifyCaps = append(r.notifyCaps, notifyCap{
					capInfo: capInfo{
						pos:    pos,
						bar:    uint8(r.cfgRead(pos+capBar, 1)),
						offset: r.cfgRead(pos+capOffset, 4),
						length: r.cfgRead(pos+capLength, 4),
					},
					mul: r.cfgRead(pos+capNotifyMu, 4),
				})
			}
		case pciCapIDMSIX:
			r.msixCap = pos
		}
		pos = uint16(r.cfgRead(pos+1, 1))
	}
	for _, c := range []uint8{capCommonCfg, capNotifyCfg, capISRCfg, capDeviceCfg, capPCICfg} {
		require.Contains(t, r.caps, c, "virtio capability type %d", c)
	}
	require.NotZero(t, r.msixCap, "MSI-X capability")

	// Size BAR 0 with decoding off, then place it (PCI 3.0 §6.2.5.1).
	r.cfgWrite(regCommand, 2, 0)
	r.cfgWrite(regBAR0, 4, 0xFFFF_FFFF)
	sz := r.cfgRead(regBAR0, 4)
	require.Zero(t, sz&barMemFlagsMask, "32-bit non-prefetchable memory BAR")
	size := uint64(^(sz &^ barMemFlagsMask) + 1)
	for typ, c := range r.caps {
		if typ != capPCICfg && c.bar == 0 {
			require.LessOrEqual(t, uint64(c.offset)+uint64(c.length), size, "structure inside the BAR")
		}
	}
	r.cfgWrite(regBAR0, 4, uint32(barBase))
	r.barAddr = barBase

	// The I/O BARs, placed one after the other from ioBARBase.
	r.ioBARs = map[uint8]uint64{}
	next := uint64(ioBARBase)
	ioSizes := map[uint8]uint64{}
	for i := uint8(1); i < numBARs; i++ {
		reg := regBAR0 + 4*uint16(i)
		r.cfgWrite(reg, 4, 0xFFFF_FFFF)
		v := r.cfgRead(reg, 4)
		if v == 0 || v&barIOSpace == 0 {
			continue
		}
		size := uint64(^(v&^barIOFlagsMask)+1) & 0xFFFF
		require.NotZero(t, size, "I/O BAR %d's size", i)
		next = (next + size - 1) &^ (size - 1)
		r.cfgWrite(reg, 4, uint32(next))
		r.ioBARs[i], ioSizes[i] = next, size
		next += size
	}
	for _, c := range r.notifyCaps {
		if c.bar == 0 {
			continue
		}
		require.Contains(t, r.ioBARs, c.bar, "the notify capability's BAR %d is an I/O BAR", c.bar)
		require.LessOrEqual(t, uint64(c.offset)+uint64(c.length), ioSizes[c.bar], "notify structure inside BAR %d", c.bar)
	}
	r.cfgWrite(regCommand, 2, cmdMemory|cmdIO|cmdBusMaster)
	_, _, ok := r.mapper.find(barBase)
	require.True(t, ok, "BAR 0 decodes after enabling memory space")
	for i, port := range r.ioBARs {
		_, _, ok := r.mapper.findPort(port)
		require.True(t, ok, "I/O BAR %d decodes after enabling I/O space", i)
	}

	tbl := r.cfgRead(r.msixCap+msixCapTable, 4)
	require.Zero(t, tbl&msixBIRMask, "MSI-X table in BAR 0")
	r.tableOff = tbl &^ msixBIRMask
}

// reset resets the device and waits for the status to read 0, as
// vp_reset does.
func (r *rig) reset() {
	r.write8(commonStatus, 0)
	for range 1000 {
		if r.read8(commonStatus) == 0 {
			return
		}
	}
	r.t.Fatal("device_status does not read 0 after reset")
}

// addStatus sets status bits, as virtio_add_status does.
func (r *rig) addStatus(bits uint8) {
	r.write8(commonStatus, r.read8(commonStatus)|bits)
}

// deviceFeatures reads the offered features (vp_get_features).
func (r *rig) deviceFeatures() uint64 {
	r.write32(commonDFSelect, 0)
	lo := r.read32(commonDF)
	r.write32(commonDFSelect, 1)
	hi := r.read32(commonDF)
	return uint64(hi)<<32 | uint64(lo)
}

// negotiate runs §3.1.1 steps 1 to 6 accepting features and reports
// whether the device set FEATURES_OK.
func (r *rig) negotiate(features uint64) bool {
	r.reset()
	r.addStatus(sAcknowledge)
	r.addStatus(sDriver)
	r.features = r.deviceFeatures()
	r.write32(commonGFSelect, 0)
	r.write32(commonGF, uint32(features))
	r.write32(commonGFSelect, 1)
	r.write32(commonGF, uint32(features>>32))
	r.addStatus(sFeaturesOK)
	return r.read8(commonStatus)&sFeaturesOK != 0
}

// msixTableSize returns the number of MSI-X vectors the function offers.
func (r *rig) msixTableSize() int {
	return int(r.cfgRead(r.msixCap+msixCapControl, 2)&msixTableSizeMask) + 1
}

// enableMSIX turns MSI-X on and programs and unmasks vectors 0 to n-1
// (what pci_alloc_irq_vectors and request_irq do).
func (r *rig) enableMSIX(n int) {
	ctl := r.msixCap + msixCapControl
	r.cfgWrite(ctl, 2, r.cfgRead(ctl, 2)|msixCtlEnable)
	for v := range n {
		e := r.barAddr + uint64(r.tableOff) + uint64(v)*msixEntrySize
		r.mmioWrite(e, 4, msiAddressBase)
		r.mmioWrite(e+4, 4, 0)
		r.mmioWrite(e+8, 4, uint64(msiDataBase+v))
		r.mmioWrite(e+msixVectorCtlOff, 4, 0)
	}
}

// setupQueue programs queue i as vp_modern's setup_vq does and returns a
// driver for its rings in fake RAM. vector is its MSI-X vector (noVector
// for none). The queue is laid out at base.
func (r *rig) setupQueue(i uint16, size uint16, vector uint16, base uint64, features uint64) *virtiotest.Driver {
	t := r.t
	t.Helper()
	r.write16(commonQSelect, i)
	max := r.read16(commonQSize)
	require.NotZero(t, max, "queue %d exists", i)
	require.LessOrEqual(t, size, max)
	require.EqualValues(t, i, r.read16(commonQNotifyOff), "notify_off is the queue index")
	cfg, end := virtiotest.Layout(base, size, virtio.Features(features))
	d := virtiotest.NewDriver(r.mem, cfg, memory.Range{Start: end, Size: 64 << 10})
	r.write16(commonQSize, size)
	r.write64(commonQDescLo, cfg.DescTable)
	r.write64(commonQAvailLo, cfg.AvailRing)
	r.write64(commonQUsedLo, cfg.UsedRing)
	r.write16(commonQMSIX, vector)
	require.EqualValues(t, vector, r.read16(commonQMSIX), "vector accepted")
	r.write16(commonQEnable, 1)
	return d
}

// notify writes queue i's notify address (vp_notify: iowrite16 of the
// queue index) in the notify structure Linux chose: the first whose BAR it
// could assign (virtio_pci_find_capability), and probe assigned every BAR.
func (r *rig) notify(i uint16) { r.notifyVia(r.notifyCaps[0], i) }

// notifyVia writes queue i's notify address in the structure c describes.
func (r *rig) notifyVia(c notifyCap, i uint16) {
	off := uint64(c.offset) + uint64(i)*uint64(c.mul)
	if port, ok := r.ioBARs[c.bar]; ok {
		r.portWrite(port+off, 2, uint64(i))
		return
	}
	require.EqualValues(r.t, 0, c.bar)
	r.mmioWrite(r.barAddr+off, 2, uint64(i))
}

// readISR reads the ISR status register (vp_interrupt).
func (r *rig) readISR() uint8 {
	return uint8(r.mmioRead(r.structure(capISRCfg), 1))
}

// defaultFeatures is what a driver for a device without feature bits of
// its own accepts: everything the transport offers that Linux implements.
const defaultFeatures = 1<<fVersion1 | 1<<fIndirectDesc | 1<<fEventIdx

// bringUp takes the device from reset to DRIVER_OK with one queue on
// vector 0 and the configuration on vector 1, MSI-X on.
func (r *rig) bringUp(features uint64) *virtiotest.Driver {
	r.t.Helper()
	r.probe()
	require.True(r.t, r.negotiate(features), "FEATURES_OK")
	r.enableMSIX(2)
	r.write16(commonMSIX, 1)
	require.EqualValues(r.t, 1, r.read16(commonMSIX))
	d := r.setupQueue(0, 16, 0, ramStart, features)
	r.addStatus(sDriverOK)
	require.EqualValues(r.t, sAcknowledge|sDriver|sFeaturesOK|sDriverOK, r.read8(commonStatus))
	return d
}

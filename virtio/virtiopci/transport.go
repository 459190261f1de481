package virtiopci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
)

// le is the byte order of every virtio structure: the modern interface's
// registers are little-endian (§4.1.3).
var le = binary.LittleEndian

// Config is what a Transport is built from.
type Config struct {
	// Device is the virtio device the function presents.
	Device virtio.Device
	// Mem is guest RAM, where the driver puts the virtqueues.
	Mem *memory.Guest
	// Router delivers the function's MSI-X messages (the machine gives
	// each function its own); nil drops them.
	Router pci.MSIRouter
	// Log receives the device's errors; nil discards them. Every record
	// gets a "device" attribute with Name.
	Log *slog.Logger
	// Name names the device in logs, e.g. "virtio-blk vda"; empty means
	// the name of its type, e.g. "virtio-rng".
	Name string
}

// queueRegs are the registers of one virtqueue (§4.1.4.3, the second half
// of struct virtio_pci_common_cfg), as the driver programs them through
// queue_select.
type queueRegs struct {
	size   uint16 // queue_size
	enable bool   // queue_enable
	desc   uint64 // queue_desc: the Descriptor Area
	driver uint64 // queue_driver: the Driver Area (available ring)
	device uint64 // queue_device: the Device Area (used ring)
	// msixVector is queue_msix_vector. Device goroutines read it on
	// every interrupt, so it is atomic rather than guarded by mu.
	msixVector atomic.Uint32
}

// Transport is a virtio device on the PCI bus: the PCI function's
// configuration space and BAR 0 with the virtio structures in it. It
// implements pci.Device and pci.DoorbellDevice.
type Transport struct {
	dev      virtio.Device
	mem      *memory.Guest
	log      *slog.Logger // names the device in every record
	maxSizes []uint16     // the device's maximum queue sizes
	offered  [featureWords]uint32

	cs        *pci.ConfigSpace
	bar       *pci.Mux        // BAR 0's handler
	notifyIO  pci.MMIOHandler // the notify port's handler (NotifyIOBARIndex)
	msix      *pci.MSIXTable
	pciCfgCap uint16 // offset of the VIRTIO_PCI_CAP_PCI_CFG capability

	// kicks are the queues' Kick eventfds. They live as long as the
	// Transport, so that the machine can attach ioeventfds to them once.
	kicks []*eventfd.EventFD

	// State shared with the device's goroutines, which interrupt, fail
	// and change the configuration without taking mu.
	//
	// epoch counts resets. The callbacks an Activation gets remember the
	// epoch they were made in and do nothing once it has passed, so a
	// late call from a stopped device cannot touch the next activation.
	epoch atomic.Uint64
	// status is device_status (§2.1). The driver changes it through the
	// common configuration, the device sets DEVICE_NEEDS_RESET.
	status atomic.Uint32
	// configGeneration is config_generation (§4.1.4.3): bumped on every
	// configuration change, so that a driver that reads a multi-field
	// configuration can tell that it changed under it.
	configGeneration atomic.Uint32
	configVector     atomic.Uint32 // config_msix_vector

	// isrMu orders changes to isr with the INTx# level that follows it.
	isrMu sync.Mutex
	isr   uint8 // ISR status (§4.1.4.5)

	// mu serialises the driver's register accesses (vCPU goroutines) and
	// guards what follows.
	mu                  sync.Mutex
	closed              bool
	deviceFeatureSelect uint32
	driverFeatureSelect uint32
	driverFeatures      [featureWords]uint32 // driver_feature, by select
	queueSelect         uint16
	queues              []queueRegs
}

// Interface checks.
var (
	_ pci.Device         = (*Transport)(nil)
	_ pci.DoorbellDevice = (*Transport)(nil)
)

// New builds the PCI function of cfg.Device: its configuration space with
// the virtio capabilities and MSI-X, BAR 0 and the queues' Kick eventfds.
// The device starts reset, as after power-on.
func New(cfg Config) (*Transport, error) {
	if cfg.Device == nil {
		return nil, errors.New("virtiopci: no device")
	}
	if cfg.Mem == nil {
		return nil, errors.New("virtiopci: no guest memory")
	}
	id := cfg.Device.DeviceID()
	name := cfg.Name
	if name == "" {
		name = deviceName(id)
	}
	if id == 0 || id > MaxVirtioDeviceID {
		return nil, fmt.Errorf("virtiopci: %s: device ID %d does not fit the PCI device ID range", name, id)
	}
	sizes := append([]uint16(nil), cfg.Device.QueueMaxSizes()...)
	if len(sizes) == 0 || len(sizes) > MaxQueues {
		return nil, fmt.Errorf("virtiopci: %s: %d queues, want 1 to %d", name, len(sizes), MaxQueues)
	}
	for i, s := range sizes {
		if s == 0 || s > virtio.MaxQueueSize || s&(s-1) != 0 {
			return nil, fmt.Errorf("virtiopci: %s: queue %d: maximum size %d is not a power of 2 up to %d",
				name, i, s, virtio.MaxQueueSize)
		}
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		dev:      cfg.Device,
		mem:      cfg.Mem,
		log:      log.With("device", name),
		maxSizes: sizes,
		queues:   make([]queueRegs, len(sizes)),
		bar:      &pci.Mux{},
	}
	offered := cfg.Device.Features()&deviceTypeFeatures | transportFeatures
	t.offered[0], t.offered[1] = uint32(offered), uint32(offered>>32)

	if err := t.buildConfigSpace(id, cfg.Router); err != nil {
		return nil, fmt.Errorf("virtiopci: %s: %w", name, err)
	}
	for range sizes {
		k, err := eventfd.New()
		if err != nil {
			t.closeKicks()
			return nil, fmt.Errorf("virtiopci: %s: %w", name, err)
		}
		t.kicks = append(t.kicks, k)
	}
	t.mu.Lock()
	t.resetRegistersLocked()
	t.mu.Unlock()
	return t, nil
}

// sharedQueueVectors is the size of the MSI-X table of a device whose
// queues share one interrupt (virtio.QueueInterruptSharer): a vector for
// configuration changes and one that all the queues share.
const sharedQueueVectors = 2

// msixVectors returns how many MSI-X vectors the function offers. Linux's
// virtio_pci asks first for one vector per queue that has a callback plus
// one for configuration changes, and when the table is smaller than that,
// for two: one for configuration changes and one that every queue shares,
// whose handler looks at every queue (vp_find_vqs and vp_vring_interrupt
// in drivers/virtio/virtio_pci_common.c). So a device gets one vector per
// queue and one more, unless it asks to share, and then two.
func (t *Transport) msixVectors() int {
	if s, ok := t.dev.(virtio.QueueInterruptSharer); ok && s.ShareQueueInterrupt() {
		return sharedQueueVectors
	}
	return len(t.maxSizes) + 1
}

// deviceName names a device type for logs.
func deviceName(id uint16) string {
	switch id {
	case virtio.VIRTIO_ID_NET:
		return "virtio-net"
	case virtio.VIRTIO_ID_BLOCK:
		return "virtio-blk"
	case virtio.VIRTIO_ID_CONSOLE:
		return "virtio-console"
	case virtio.VIRTIO_ID_RNG:
		return "virtio-rng"
	}
	return fmt.Sprintf("virtio-%d", id)
}

// buildConfigSpace creates the configuration space: the header, BAR 0 and
// the capabilities that describe what is in it.
func (t *Transport) buildConfigSpace(id uint16, router pci.MSIRouter) error {
	cs, err := pci.NewConfigSpace(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceIDBase + id,
		RevisionID:        RevisionID,
		ClassCode:         classCode(id),
		SubsystemVendorID: SubsystemVendorID,
		SubsystemID:       SubsystemID,
		// INTA#: the interrupt of a function that uses one (PCI 3.0
		// §6.2.4), for drivers that do not enable MSI-X (§4.1.5.3).
		InterruptPin: pci.PinINTA,
	})
	if err != nil {
		return err
	}
	t.cs = cs
	if err := cs.SetBAR(BARIndex, pci.BAR{Kind: pci.BARMemory32, Size: BARSize, Handler: t.bar}); err != nil {
		return err
	}
	t.notifyIO = handler{readZero, t.writeNotifyIO}
	if err := cs.SetBAR(NotifyIOBARIndex, pci.BAR{Kind: pci.BARIO, Size: NotifyIOBARSize, Handler: t.notifyIO}); err != nil {
		return err
	}

	// The virtio structure capabilities (§4.1.4). The device must
	// present a common configuration, a notification and an ISR status
	// capability, a device-specific configuration capability if its type
	// has a configuration (all of ours may), and a PCI configuration
	// access capability (§4.1.4.3 to §4.1.4.6, §4.1.4.9).
	notifyLength := uint32(len(t.maxSizes)) * NotifyOffMultiplier
	// The two notify capabilities come in the order of preference
	// (§4.1.4.1): port I/O first (see NotifyIOBARIndex).
	caps := []struct {
		cfgType        uint8
		bar            uint8
		offset, length uint32
		extra          []byte
	}{
		{VIRTIO_PCI_CAP_COMMON_CFG, BARIndex, CommonCfgOffset, commonCfgSize, nil},
		{VIRTIO_PCI_CAP_NOTIFY_CFG, NotifyIOBARIndex, 0, notifyIOLength, le.AppendUint32(nil, NotifyIOOffMultiplier)},
		{VIRTIO_PCI_CAP_NOTIFY_CFG, BARIndex, NotifyOffset, notifyLength, le.AppendUint32(nil, NotifyOffMultiplier)},
		{VIRTIO_PCI_CAP_ISR_CFG, BARIndex, ISROffset, isrLength, nil},
		{VIRTIO_PCI_CAP_DEVICE_CFG, BARIndex, DeviceCfgOffset, deviceCfgLength, nil},
		// The PCI configuration access capability points at nothing
		// until the driver programs bar, offset and length (§4.1.4.9).
		{VIRTIO_PCI_CAP_PCI_CFG, BARIndex, 0, 0, make([]byte, pciCfgDataSize)},
	}
	for _, c := range caps {
		off, err := cs.AddVendorCapability(virtioPCICap(c.cfgType, c.bar, c.offset, c.length, c.extra))
		if err != nil {
			return err
		}
		if c.cfgType == VIRTIO_PCI_CAP_PCI_CFG {
			t.pciCfgCap = uint16(off)
		}
	}
	if err := t.setupPCICfgWindow(); err != nil {
		return err
	}

	// MSI-X (§4.1.5.1.2 maps events to vectors).
	t.msix, err = pci.AddMSIX(cs, pci.MSIXConfig{
		Vectors:     t.msixVectors(),
		TableBAR:    BARIndex,
		TableOffset: MSIXTableOffset,
		PBABAR:      BARIndex,
		PBAOffset:   MSIXPBAOffset,
		Router:      router,
	})
	if err != nil {
		return err
	}

	// BAR 0: each structure on its page. A Mux sends an access to the
	// structure its first byte falls in; each handler below ignores what
	// runs past its page.
	for _, r := range []struct {
		offset uint64
		h      pci.MMIOHandler
	}{
		{CommonCfgOffset, handler{t.readCommon, t.writeCommon}},
		{ISROffset, handler{t.readISR, ignoreWrite}},
		{DeviceCfgOffset, handler{t.readDeviceCfg, t.writeDeviceCfg}},
		{NotifyOffset, handler{readZero, t.writeNotify}},
		{MSIXTableOffset, t.msix},
		{MSIXPBAOffset, t.msix.PBA()},
	} {
		if err := t.bar.Add(r.offset, regionSize, r.h); err != nil {
			return err
		}
	}
	return nil
}

// virtioPCICap returns the data of a struct virtio_pci_cap from cfg_type
// on (AddVendorCapability adds cap_vndr, cap_next and cap_len), followed
// by extra: the notify capability's notify_off_multiplier or the PCI
// configuration access capability's pci_cfg_data.
func virtioPCICap(cfgType, bar uint8, offset, length uint32, extra []byte) []byte {
	b := make([]byte, virtioPCICapSize-capHeaderSize, virtioPCICapSize-capHeaderSize+len(extra))
	b[capCfgType-capHeaderSize] = cfgType
	b[capBAR-capHeaderSize] = bar
	// id tells apart structures of one type only for types that define
	// its meaning (shared memory, §4.1.4.7); for the rest it is 0 and the
	// list's order states the preference (§4.1.4.1).
	b[capID-capHeaderSize] = 0
	le.PutUint32(b[capOffset-capHeaderSize:], offset)
	le.PutUint32(b[capLength-capHeaderSize:], length)
	return append(b, extra...)
}

// handler makes an MMIOHandler of two functions.
type handler struct {
	read, write func(offset uint64, data []byte)
}

func (h handler) ReadMMIO(offset uint64, data []byte)  { h.read(offset, data) }
func (h handler) WriteMMIO(offset uint64, data []byte) { h.write(offset, data) }

func readZero(_ uint64, data []byte) { clear(data) }
func ignoreWrite(uint64, []byte)     {}

// Config returns the function's configuration space (pci.Device).
func (t *Transport) Config() *pci.ConfigSpace { return t.cs }

// MSIX returns the function's MSI-X table.
func (t *Transport) MSIX() *pci.MSIXTable { return t.msix }

// Doorbells returns each queue's two notify registers as doorbells for
// KVM's ioeventfd (pci.DoorbellDevice), both signalling the queue's Kick
// eventfd: its own address in BAR 0, where a write of any width counts,
// and the notify port that all queues share, where only a 16-bit write of
// the queue's index counts (§4.1.5.2).
func (t *Transport) Doorbells() []pci.Doorbell {
	d := make([]pci.Doorbell, 0, 2*len(t.kicks))
	for i, k := range t.kicks {
		d = append(d,
			pci.Doorbell{BAR: BARIndex, Offset: notifyAddress(i), Size: 0, FD: k.FD()},
			pci.Doorbell{BAR: NotifyIOBARIndex, Offset: 0, Size: notifyIOLength, Match: true, Data: uint64(i), FD: k.FD()})
	}
	return d
}

// notifyAddress is queue i's notify address in BAR 0: "cap.offset +
// queue_notify_off * notify_off_multiplier" (§4.1.4.4), with
// queue_notify_off = i.
func notifyAddress(i int) uint64 { return NotifyOffset + uint64(i)*NotifyOffMultiplier }

// Close resets the device, which stops it, and closes the Kick eventfds.
// The machine must remove the ioeventfds on them first. Register accesses
// after Close do nothing. Close may be called more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.resetLocked()
	return t.closeKicks()
}

func (t *Transport) closeKicks() error {
	var errs []error
	for _, k := range t.kicks {
		errs = append(errs, k.Close())
	}
	return errors.Join(errs...)
}

// readISR reads the ISR status register (§4.1.4.5), the only byte of its
// structure: "The device MUST reset ISR status to 0 on driver read"
// (§4.1.4.5.1), and with it the INTx# it asserted. A read that does not
// cover the register reads zeros and changes nothing.
func (t *Transport) readISR(offset uint64, data []byte) {
	clear(data)
	if offset != 0 || len(data) == 0 {
		return
	}
	t.isrMu.Lock()
	defer t.isrMu.Unlock()
	data[0] = t.isr
	t.isr = 0
	t.cs.SetINTx(false)
}

// readDeviceCfg and writeDeviceCfg pass accesses to the device-specific
// configuration (§4.1.4.6) to the device, clipped to their page.
func (t *Transport) readDeviceCfg(offset uint64, data []byte) {
	clear(data)
	data = clip(offset, data)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(data) > 0 && !t.closed {
		t.dev.ReadConfig(offset, data)
	}
}

func (t *Transport) writeDeviceCfg(offset uint64, data []byte) {
	data = clip(offset, data)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(data) > 0 && !t.closed {
		t.dev.WriteConfig(offset, data)
	}
}

// clip returns the part of an access at offset inside a structure's page.
func clip(offset uint64, data []byte) []byte {
	if offset >= regionSize {
		return nil
	}
	return data[:min(uint64(len(data)), regionSize-offset)]
}

// writeNotify takes a write to the notify structure (§4.1.5.2): one at a
// queue's notify address is an available buffer notification for it,
// whatever the value (without VIRTIO_F_NOTIFICATION_DATA the driver writes
// the queue index, which the address already tells). It signals the
// queue's Kick eventfd, exactly what KVM does when the machine attached an
// ioeventfd there and the write never reaches userspace.
func (t *Transport) writeNotify(offset uint64, data []byte) {
	if len(data) == 0 || offset%NotifyOffMultiplier != 0 {
		return
	}
	i := offset / NotifyOffMultiplier
	if i >= uint64(len(t.kicks)) {
		return
	}
	// After Close the file is closed and Signal fails; nothing to do.
	_ = t.kicks[i].Signal()
}

// writeNotifyIO takes a write to the notify port of NotifyIOBARIndex: the
// driver writes the index of the queue it notifies, 16 bits without
// VIRTIO_F_NOTIFICATION_DATA (§4.1.5.2). A wider write names the queue in
// its low 16 bits; a narrower one, or an index that is no queue, is
// ignored. KVM normally handles the writes that count without an exit.
func (t *Transport) writeNotifyIO(offset uint64, data []byte) {
	if offset != 0 || len(data) < notifyIOLength {
		return
	}
	i := le.Uint16(data)
	if int(i) >= len(t.kicks) {
		return
	}
	_ = t.kicks[i].Signal()
}

package virtiopci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/transport"
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

// Transport is a virtio device on the PCI bus: the PCI function's
// configuration space and BAR 0 with the virtio structures in it. It
// implements pci.Device and pci.DoorbellDevice. The registers all
// transports share live in a transport.Core; the Transport adds where PCI
// puts them and how it interrupts.
type Transport struct {
	core *transport.Core
	log  *slog.Logger // names the device in every record

	cs        *pci.ConfigSpace
	bar       *pci.Mux        // BAR 0's handler
	notifyIO  pci.MMIOHandler // the notify port's handler (NotifyIOBARIndex)
	msix      *pci.MSIXTable
	pciCfgCap uint16 // offset of the VIRTIO_PCI_CAP_PCI_CFG capability

	// State shared with the device's goroutines, which interrupt without
	// taking mu.
	//
	// configVector is config_msix_vector and queueVectors each queue's
	// queue_msix_vector (§4.1.4.3). Device goroutines read them on every
	// interrupt, so they are atomic rather than guarded by mu.
	configVector atomic.Uint32
	queueVectors []atomic.Uint32

	// isrMu orders changes to isr with the INTx# level that follows it.
	isrMu sync.Mutex
	isr   uint8 // ISR status (§4.1.4.5)

	// mu serialises the driver's register accesses (vCPU goroutines) and
	// guards core's registers.
	mu sync.Mutex
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
	id := cfg.Device.DeviceID()
	name := cfg.Name
	if name == "" {
		name = virtio.DeviceName(id)
	}
	if id == 0 || id > MaxVirtioDeviceID {
		return nil, fmt.Errorf("virtiopci: %s: device ID %d does not fit the PCI device ID range", name, id)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		log: log.With("device", name),
		bar: &pci.Mux{},
	}
	core, err := transport.New(transport.Config{
		Device:    cfg.Device,
		Mem:       cfg.Mem,
		Log:       t.log,
		MaxQueues: MaxQueues,
		Interrupts: transport.Interrupts{
			Queue:  t.queueInterrupt,
			Line:   t.queueLine,
			Config: t.configInterrupt,
		},
		OnReset: t.resetInterrupts,
	})
	if err != nil {
		return nil, fmt.Errorf("virtiopci: %s: %w", name, err)
	}
	t.core = core
	t.queueVectors = make([]atomic.Uint32, core.NumQueues())
	if err := t.buildConfigSpace(id, cfg.Router); err != nil {
		// Not Close: that resets the function, which has no
		// configuration space yet; no driver has touched the device.
		for _, k := range core.Kicks() {
			k.Close()
		}
		return nil, fmt.Errorf("virtiopci: %s: %w", name, err)
	}
	t.mu.Lock()
	t.resetInterrupts()
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
	if s, ok := t.core.Device().(virtio.QueueInterruptSharer); ok && s.ShareQueueInterrupt() {
		return sharedQueueVectors
	}
	return t.core.NumQueues() + 1
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
	notifyLength := uint32(t.core.NumQueues()) * NotifyOffMultiplier
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

// Activated reports whether a guest driver has ever started the device
// (transport.Core.Activated).
func (t *Transport) Activated() bool { return t.core.Activated() }

// Doorbells returns each queue's two notify registers as doorbells for
// KVM's ioeventfd (pci.DoorbellDevice), both signalling the queue's Kick
// eventfd: its own address in BAR 0, where a write of any width counts,
// and the notify port that all queues share, where only a 16-bit write of
// the queue's index counts (§4.1.5.2).
func (t *Transport) Doorbells() []pci.Doorbell {
	kicks := t.core.Kicks()
	d := make([]pci.Doorbell, 0, 2*len(kicks))
	for i, k := range kicks {
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
	return t.core.Close()
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
	if len(data) > 0 && !t.core.Closed() {
		t.core.Device().ReadConfig(offset, data)
	}
}

func (t *Transport) writeDeviceCfg(offset uint64, data []byte) {
	data = clip(offset, data)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(data) > 0 && !t.core.Closed() {
		t.core.Device().WriteConfig(offset, data)
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
	t.core.Kick(offset / NotifyOffMultiplier)
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
	t.core.Kick(uint64(le.Uint16(data)))
}

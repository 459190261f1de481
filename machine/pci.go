package machine

import (
	"errors"
	"fmt"
	"sync"

	"github.com/govmm/govmm/devices"
	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/kvm"
)

// pciHost is the machine's PCI side: bus 0 behind a host bridge, reached
// through configuration mechanism #1 at ports 0xCF8-0xCFF and through the
// ECAM window, plus the KVM plumbing its functions need: the BAR mapper
// that puts BARs on the MMIO bus, doorbells as ioeventfds, and MSI-X
// vectors as GSI routes with irqfds. See devices/pci for the model itself.
type pciHost struct {
	m       *Machine
	bus     *pci.Bus
	conf1   *pci.Conf1
	ecam    *pci.ECAM
	routing *irqRouting
	// anyLength says KVM matches MMIO ioeventfds of any width
	// (KVM_CAP_IOEVENTFD_ANY_LENGTH).
	anyLength bool

	mu        sync.Mutex
	doorbells map[barKey][]registeredDoorbell
	// ioBARs are the I/O BARs registered on the port bus, by where.
	ioBARs  map[barKey]portRange
	routers []*msiRouter
	names   map[pci.Device]string
}

// barKey names one BAR of one function.
type barKey struct {
	dev pci.Device
	bar int
}

// registeredDoorbell is one KVM_IOEVENTFD as it was assigned; removing it
// takes the same arguments.
type registeredDoorbell struct {
	fd        int
	addr      uint64
	size      uint32
	datamatch uint64
	flags     uint32
}

// portRange is an I/O BAR's place on the port bus.
type portRange struct{ base, size uint16 }

// doorbellFallbackSize is the write width an ioeventfd matches when KVM
// cannot match any width: virtio drivers notify with 16-bit writes of the
// queue index (Linux drivers/virtio/virtio_pci_modern.c, vp_notify:
// iowrite16). Writes of other widths exit and reach the BAR's handler,
// which signals the same eventfd.
const doorbellFallbackSize = 2

// setupPCI creates the bus and its two configuration mechanisms. The reset
// control register at 0xCF9 lies inside CONFIG_ADDRESS's four ports, so it
// is reached through Conf1, which forwards byte accesses to it.
func (m *Machine) setupPCI(reset devices.PortDevice) error {
	for _, c := range []struct {
		cap  int
		name string
	}{
		{kvm.CapIRQRouting, "KVM_CAP_IRQ_ROUTING"},
		{kvm.CapIRQFD, "KVM_CAP_IRQFD"},
		{kvm.CapIOEventFD, "KVM_CAP_IOEVENTFD"},
		{kvm.CapSignalMSI, "KVM_CAP_SIGNAL_MSI"},
	} {
		if m.sys.CheckExtension(c.cap) == 0 {
			return fmt.Errorf("this host's KVM lacks %s, which PCI devices need", c.name)
		}
	}
	h := &pciHost{
		m:         m,
		routing:   newIRQRouting(m.vm, m.log),
		anyLength: m.sys.CheckExtension(kvm.CapIOEventFDAnyLen) != 0,
		doorbells: map[barKey][]registeredDoorbell{},
		ioBARs:    map[barKey]portRange{},
		names:     map[pci.Device]string{},
	}
	h.bus = pci.NewBus(pci.BusConfig{Mapper: h, IRQ: m.gsiLine})
	h.conf1 = pci.NewConf1(h.bus, reset)
	var err error
	if h.ecam, err = pci.NewECAM(h.bus, pci.ECAMBusCount); err != nil {
		return err
	}
	if err := m.mmio.Register("PCI ECAM", pci.ECAMBase, h.ecam.Size(), h.ecam); err != nil {
		return err
	}
	for _, r := range []struct {
		name       string
		base, size uint16
		dev        devices.PortDevice
	}{
		{"PCI CONFIG_ADDRESS", pci.ConfigAddressPort, pci.ConfigAddressPorts, h.conf1.AddressPort()},
		{"PCI CONFIG_DATA", pci.ConfigDataPort, pci.ConfigDataPorts, h.conf1.DataPort()},
	} {
		if err := m.ports.Register(r.name, r.base, r.size, r.dev); err != nil {
			return fmt.Errorf("PCI: %w", err)
		}
	}
	m.pci = h
	return nil
}

// newMSIRouter returns the MSI-X router for one function.
func (h *pciHost) newMSIRouter(name string) *msiRouter {
	r := &msiRouter{routing: h.routing, name: name}
	h.mu.Lock()
	h.routers = append(h.routers, r)
	h.mu.Unlock()
	return r
}

// attach puts dev in slot under name (for logs and statistics).
func (h *pciHost) attach(slot int, name string, dev pci.Device) error {
	h.mu.Lock()
	h.names[dev] = name
	h.mu.Unlock()
	if err := h.bus.Attach(slot, dev); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// assignResources places every BAR in the PCI windows, the firmware's job
// before the OS starts. Linux keeps these assignments (it reassigns only
// what conflicts), so the guest starts with working BARs.
func (h *pciHost) assignResources() error {
	_, err := h.bus.AssignResources(pci.DefaultWindows())
	return err
}

func (h *pciHost) name(dev pci.Device) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, ok := h.names[dev]; ok {
		return n
	}
	return "PCI device"
}

// MapBAR implements pci.BARMapper: the BAR now decodes at r. Its handler
// goes on the MMIO bus or, for an I/O BAR, on the port bus, and its
// doorbells become ioeventfds. A BAR the guest placed over another
// device's registers is refused with a warning: it stays dark, and the
// other device keeps its addresses.
func (h *pciHost) MapBAR(dev pci.Device, r pci.Region) {
	if r.Handler != nil && !h.mapHandler(dev, r) {
		return
	}
	db, ok := dev.(pci.DoorbellDevice)
	if !ok {
		return
	}
	var flags uint32
	if !r.Kind.IsMemory() {
		flags = kvm.IOEventFDFlagPIO
	}
	var regs []registeredDoorbell
	for _, d := range db.Doorbells() {
		if d.BAR != r.Index || d.Offset >= r.Size {
			continue
		}
		rd := registeredDoorbell{fd: d.FD, addr: r.Addr + d.Offset, size: uint32(d.Size), flags: flags}
		if rd.size == 0 && !h.anyLength {
			rd.size = doorbellFallbackSize
		}
		if d.Match {
			rd.datamatch = d.Data
			rd.flags |= kvm.IOEventFDFlagDatamatch
		}
		if err := h.m.vm.IOEventFD(rd.fd, rd.addr, rd.size, rd.datamatch, rd.flags); err != nil {
			// The write still reaches the handler through an exit.
			h.m.log.Warn("doorbell stays a userspace exit", "device", h.name(dev), "bar", r.String(),
				"addr", fmt.Sprintf("%#x", rd.addr), "err", err)
			continue
		}
		regs = append(regs, rd)
	}
	h.mu.Lock()
	h.doorbells[barKey{dev, r.Index}] = regs
	h.mu.Unlock()
}

// mapHandler registers the BAR's handler where r says and reports whether
// it could.
func (h *pciHost) mapHandler(dev pci.Device, r pci.Region) bool {
	name := h.name(dev)
	if r.Kind.IsMemory() {
		if err := h.m.mmio.Register(name, r.Addr, r.Size, r.Handler); err != nil {
			h.m.log.Warn("cannot map BAR", "device", name, "bar", r.String(), "err", err)
			return false
		}
		return true
	}
	// The bus decodes an I/O BAR only below port 0xFFFF
	// (pci.ConfigSpace), so the range fits the 16-bit port space.
	pr := portRange{base: uint16(r.Addr), size: uint16(r.Size)}
	if r.Addr+r.Size > 1<<16 {
		h.m.log.Warn("cannot map BAR: beyond the last I/O port", "device", name, "bar", r.String())
		return false
	}
	if err := h.m.ports.Register(name, pr.base, pr.size, pci.IOPortDevice(r.Handler)); err != nil {
		h.m.log.Warn("cannot map BAR", "device", name, "bar", r.String(), "err", err)
		return false
	}
	h.mu.Lock()
	h.ioBARs[barKey{dev, r.Index}] = pr
	h.mu.Unlock()
	return true
}

// UnmapBAR implements pci.BARMapper: the BAR no longer decodes at r.
func (h *pciHost) UnmapBAR(dev pci.Device, r pci.Region) {
	key := barKey{dev, r.Index}
	h.mu.Lock()
	regs := h.doorbells[key]
	delete(h.doorbells, key)
	pr, isPort := h.ioBARs[key]
	delete(h.ioBARs, key)
	h.mu.Unlock()
	for _, rd := range regs {
		if err := h.m.vm.RemoveIOEventFD(rd.fd, rd.addr, rd.size, rd.datamatch, rd.flags); err != nil {
			h.m.log.Warn("cannot remove doorbell", "device", h.name(dev), "addr", fmt.Sprintf("%#x", rd.addr), "err", err)
		}
	}
	switch {
	case isPort:
		h.m.ports.Unregister(pr.base, pr.size)
	case r.Kind.IsMemory() && r.Handler != nil:
		h.m.mmio.Unregister(r.Addr, r.Handler)
	}
}

// close removes every ioeventfd and irqfd; the devices must have stopped.
func (h *pciHost) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for k, regs := range h.doorbells {
		for _, rd := range regs {
			errs = append(errs, h.m.vm.RemoveIOEventFD(rd.fd, rd.addr, rd.size, rd.datamatch, rd.flags))
		}
		delete(h.doorbells, k)
	}
	for _, r := range h.routers {
		r.close()
	}
	h.routers = nil
	return errors.Join(errs...)
}

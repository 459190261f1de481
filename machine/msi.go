package machine

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/kvm"
)

// KVM's interrupt routing. Each GSI (global system interrupt number) that
// userspace or an irqfd raises is routed to one or more targets: a pin of
// the in-kernel 8259 PICs or I/O APIC, or an MSI message. KVM starts with
// a default table (arch/x86/kvm/irq_comm.c, kvm_setup_default_irq_routing)
// that KVM_SET_GSI_ROUTING replaces as a whole, so the table govmm sets
// repeats the default entries before adding one GSI per MSI-X vector.
const (
	// ioapicPins is the number of inputs of KVM's I/O APIC
	// (KVM_IOAPIC_NUM_PINS); GSI n is pin n.
	ioapicPins = 24
	// picPins is the number of inputs of the two cascaded 8259s; GSI n
	// below 16 is also PIC input n.
	picPins = 16
	// pinsPerPIC: GSIs 0-7 go to the master, 8-15 to the slave.
	pinsPerPIC = 8
	// The irqchip numbers of KVM_IRQ_ROUTING_IRQCHIP entries
	// (KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC).
	irqchipPICMaster = 0
	irqchipPICSlave  = 1
	irqchipIOAPIC    = 2
	// firstMSIGSI is the first GSI free for MSI routes: above the I/O
	// APIC's pins.
	firstMSIGSI = ioapicPins
)

// defaultIRQRoutes is KVM's default routing table: GSIs 0-15 to both the
// PICs and the I/O APIC, 16-23 to the I/O APIC alone.
func defaultIRQRoutes() []kvm.IRQRoutingEntry {
	var e []kvm.IRQRoutingEntry
	for gsi := uint32(0); gsi < ioapicPins; gsi++ {
		if gsi < picPins {
			chip := uint32(irqchipPICMaster)
			if gsi >= pinsPerPIC {
				chip = irqchipPICSlave
			}
			e = append(e, kvm.IRQRoutingEntry{GSI: gsi, Type: kvm.IRQRoutingIRQChip, U: [8]uint32{chip, gsi % pinsPerPIC}})
		}
		e = append(e, kvm.IRQRoutingEntry{GSI: gsi, Type: kvm.IRQRoutingIRQChip, U: [8]uint32{irqchipIOAPIC, gsi}})
	}
	return e
}

// irqRouting owns the VM's GSI routing table.
type irqRouting struct {
	vm  *kvm.VM
	log *slog.Logger

	mu      sync.Mutex
	nextGSI uint32
	msi     map[uint32]pci.MSIMessage // GSI → its MSI route
}

func newIRQRouting(vm *kvm.VM, log *slog.Logger) *irqRouting {
	return &irqRouting{vm: vm, log: log, nextGSI: firstMSIGSI, msi: map[uint32]pci.MSIMessage{}}
}

// allocGSI reserves a GSI for an MSI route.
func (r *irqRouting) allocGSI() uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	gsi := r.nextGSI
	r.nextGSI++
	return gsi
}

// setMSI routes gsi to msg and hands KVM the whole table.
func (r *irqRouting) setMSI(gsi uint32, msg pci.MSIMessage) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msi[gsi] = msg
	table := defaultIRQRoutes()
	for g, m := range r.msi {
		table = append(table, kvm.IRQRoutingEntry{GSI: g, Type: kvm.IRQRoutingMSI,
			U: [8]uint32{uint32(m.Address), uint32(m.Address >> 32), m.Data}})
	}
	return r.vm.SetGSIRouting(table)
}

// msiVector is one MSI-X vector's delivery path: a GSI whose route is the
// vector's message and an irqfd that raises it.
type msiVector struct {
	gsi    uint32
	irqfd  *eventfd.Notifier
	msg    pci.MSIMessage
	routed bool // the GSI's route carries msg
}

// msiRouter is the pci.MSIRouter of one PCI function. An unmasked vector
// gets a GSI routed to its message and an irqfd bound to that GSI, so that
// a device goroutine delivers an interrupt with one eventfd write: KVM
// injects it without a vCPU exit or an ioctl (Documentation/virt/kvm/
// api.rst, KVM_IRQFD). Masking needs no KVM change: the MSI-X table holds
// back the messages of a masked vector and never calls SendMSI for it.
//
// The MSIXTable calls both methods with its lock held, which serialises
// them.
type msiRouter struct {
	routing *irqRouting
	name    string
	vectors []msiVector
}

// UpdateVector implements pci.MSIRouter.
func (r *msiRouter) UpdateVector(vector int, msg pci.MSIMessage, masked bool) {
	if masked || vector < 0 {
		return
	}
	for len(r.vectors) <= vector {
		r.vectors = append(r.vectors, msiVector{})
	}
	v := &r.vectors[vector]
	if v.irqfd == nil {
		efd, err := eventfd.NewNotifier()
		if err != nil {
			r.routing.log.Warn("MSI-X vector falls back to KVM_SIGNAL_MSI", "device", r.name, "vector", vector, "err", err)
			return
		}
		gsi := r.routing.allocGSI()
		// The route must exist before the irqfd is bound to the GSI.
		if err := r.routing.setMSI(gsi, msg); err != nil {
			r.routing.log.Warn("cannot route MSI-X vector", "device", r.name, "vector", vector, "err", err)
			efd.Close()
			return
		}
		if err := r.routing.vm.IRQFD(efd.FD(), gsi); err != nil {
			r.routing.log.Warn("cannot bind irqfd", "device", r.name, "vector", vector, "err", err)
			efd.Close()
			return
		}
		*v = msiVector{gsi: gsi, irqfd: efd, msg: msg, routed: true}
		return
	}
	if v.msg != msg || !v.routed {
		v.routed = r.routing.setMSI(v.gsi, msg) == nil
		v.msg = msg
	}
}

// SendMSI implements pci.MSIRouter.
func (r *msiRouter) SendMSI(vector int, msg pci.MSIMessage) {
	if vector >= 0 && vector < len(r.vectors) {
		if v := &r.vectors[vector]; v.routed && v.msg == msg {
			if err := v.irqfd.Signal(); err == nil {
				return
			}
		}
	}
	// No route yet, or a stale one: inject the message directly.
	if err := r.routing.vm.SignalMSI(kvm.MSI{AddressLo: uint32(msg.Address), AddressHi: uint32(msg.Address >> 32), Data: msg.Data}); err != nil {
		r.routing.log.Warn("cannot deliver MSI", "device", r.name, "vector", vector, "err", err)
	}
}

// close unbinds and closes the irqfds.
func (r *msiRouter) close() {
	for _, v := range r.vectors {
		if v.irqfd != nil {
			_ = r.routing.vm.RemoveIRQFD(v.irqfd.FD(), v.gsi)
			v.irqfd.Close()
		}
	}
	r.vectors = nil
}

// String names the router for logs.
func (r *msiRouter) String() string { return fmt.Sprintf("MSI-X of %s", r.name) }

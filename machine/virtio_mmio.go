package machine

import (
	"errors"
	"fmt"
	"strings"

	"github.com/govmm/govmm/bootloader/acpi/aml"
	"github.com/govmm/govmm/internal/eventfd"
	"github.com/govmm/govmm/kvm"
	"github.com/govmm/govmm/machine/memory"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/virtiommio"
)

// VirtioTransport is how the machine presents its virtio devices.
type VirtioTransport int

const (
	// VirtioPCI puts each device on the PCI bus (virtio 1.2 §4.1), where
	// every kernel with virtio_pci finds it: Debian's stock kernels
	// included. The default.
	VirtioPCI VirtioTransport = iota
	// VirtioMMIO gives each device a window of registers (§4.2),
	// described twice: in the DSDT, where a kernel with ACPI finds it
	// (Debian's stock kernels, with virtio_mmio loaded from their
	// initramfs), and on the kernel command line, for minimal kernels
	// built without ACPI or PCI (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES).
	VirtioMMIO
)

func (t VirtioTransport) String() string {
	switch t {
	case VirtioPCI:
		return "pci"
	case VirtioMMIO:
		return "mmio"
	}
	return fmt.Sprintf("VirtioTransport(%d)", int(t))
}

// ParseVirtioTransport parses "pci" or "mmio".
func ParseVirtioTransport(s string) (VirtioTransport, error) {
	for _, t := range []VirtioTransport{VirtioPCI, VirtioMMIO} {
		if s == t.String() {
			return t, nil
		}
	}
	return 0, fmt.Errorf("virtio transport %q: want pci or mmio", s)
}

// Where the virtio-mmio devices are: one register window (a page) after
// another from memory.VirtioMMIOBase, each with an ISA interrupt line.
const (
	// MaxVirtioMMIODevices is how many windows fit below the I/O APIC.
	MaxVirtioMMIODevices = memory.VirtioMMIOSize / virtiommio.Window
)

// virtioMMIOIRQs are the ISA IRQs no device of the machine uses (see the
// irq* constants of platform.go, and IRQ 2, the 8259 cascade; IRQ 3 is
// COM2's and IRQ 13 the FPU's by convention). The MP table and the MADT
// describe ISA IRQs as identity-mapped, active-high and edge-triggered,
// which suits virtio-mmio's one interrupt per device: each event is an
// edge. Devices past the seventh share lines, which Linux allows
// (virtio_mmio requests its IRQ with IRQF_SHARED, and every handler on the
// line reads its own InterruptStatus).
var virtioMMIOIRQs = [...]uint32{5, 6, 7, 10, 11, 14, 15}

// mmioDevice is the machine's side of one virtio-mmio device: its window,
// its line, and what it registered with KVM.
type mmioDevice struct {
	base      uint64
	irq       uint32
	irqfd     *eventfd.Notifier
	irqfdOn   bool
	doorbells []registeredDoorbell
	transport *virtiommio.Transport
}

// addVirtioMMIO gives dev the index-th window and a line, wires its
// doorbells and interrupt into KVM and puts its registers on the MMIO bus.
func (m *Machine) addVirtioMMIO(index int, name string, dev virtio.Device) (*mmioDevice, error) {
	if index >= MaxVirtioMMIODevices {
		return nil, fmt.Errorf("%s: more than %d virtio-mmio devices", name, MaxVirtioMMIODevices)
	}
	d := &mmioDevice{
		base: memory.VirtioMMIOBase + uint64(index)*virtiommio.Window,
		irq:  virtioMMIOIRQs[index%len(virtioMMIOIRQs)],
	}
	var err error
	if d.irqfd, err = eventfd.NewNotifier(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// An irqfd on a GSI routed to the interrupt controllers' pins (KVM's
	// default routing for GSIs below 24) raises and lowers the pin at
	// each signal: one edge (Documentation/virt/kvm/api.rst, KVM_IRQFD).
	if err := m.vm.IRQFD(d.irqfd.FD(), d.irq); err != nil {
		d.close(m)
		return nil, fmt.Errorf("%s: irqfd on IRQ %d: %w", name, d.irq, err)
	}
	d.irqfdOn = true
	log := m.log
	d.transport, err = virtiommio.New(virtiommio.Config{
		Device: dev,
		Mem:    m.mem,
		Interrupt: func() {
			if err := d.irqfd.Signal(); err != nil {
				log.Warn("cannot raise interrupt", "device", name, "irq", d.irq, "err", err)
			}
		},
		Log:  m.log,
		Name: name,
	})
	if err != nil {
		d.close(m)
		return nil, err
	}
	for _, db := range d.transport.Doorbells() {
		rd := registeredDoorbell{fd: db.FD, addr: d.base + db.Offset, size: uint32(db.Size),
			datamatch: db.Queue, flags: kvm.IOEventFDFlagDatamatch}
		if err := m.vm.IOEventFD(rd.fd, rd.addr, rd.size, rd.datamatch, rd.flags); err != nil {
			// The write still reaches the transport through an exit.
			m.log.Warn("doorbell stays a userspace exit", "device", name, "queue", db.Queue, "err", err)
			continue
		}
		d.doorbells = append(d.doorbells, rd)
	}
	if err := m.mmio.Register(name, d.base, virtiommio.Window, d.transport); err != nil {
		d.close(m)
		return nil, err
	}
	return d, nil
}

// close removes the device's ioeventfds and irqfd from KVM, then closes
// the transport and the irqfd's eventfd. The vCPUs must have stopped.
func (d *mmioDevice) close(m *Machine) error {
	var errs []error
	for _, rd := range d.doorbells {
		errs = append(errs, m.vm.RemoveIOEventFD(rd.fd, rd.addr, rd.size, rd.datamatch, rd.flags))
	}
	d.doorbells = nil
	if d.transport != nil {
		m.mmio.Unregister(d.base, d.transport)
		errs = append(errs, d.transport.Close())
	}
	if d.irqfdOn {
		errs = append(errs, m.vm.RemoveIRQFD(d.irqfd.FD(), d.irq))
		d.irqfdOn = false
	}
	if d.irqfd != nil {
		errs = append(errs, d.irqfd.Close())
	}
	return errors.Join(errs...)
}

// virtioMMIOACPIID is the ACPI hardware ID of a virtio-mmio device: the ID
// Linaro registered for it, which Linux's virtio_mmio matches
// (drivers/virtio/virtio_mmio.c, virtio_mmio_acpi_match), as QEMU's
// microvm and Firecracker describe theirs.
const virtioMMIOACPIID = "LNRO0005"

// acpiName is the device's name in the DSDT: VR and its window's index in
// hexadecimal, a four-character NameSeg (ACPI 6.5 §20.2.2) for each of the
// MaxVirtioMMIODevices windows.
func (d *mmioDevice) acpiName() string {
	return fmt.Sprintf("VR%02X", d.index())
}

// index is the device's window number counted from memory.VirtioMMIOBase.
func (d *mmioDevice) index() int {
	return int((d.base - memory.VirtioMMIOBase) / virtiommio.Window)
}

// virtioMMIODSDT describes the virtio-mmio devices in \_SB, one platform
// device each: _HID LNRO0005, a _UID unique among them (ACPI 6.5 §6.1.12),
// and in _CRS the register window and the ISA interrupt, edge-triggered and
// active-high as the MADT leaves ISA IRQs, marked shared where devices past
// the seventh share a line. Linux's ACPI scan turns each into a platform
// device (LNRO0005:00, ...) in this order, which is window order, so the
// first disk is /dev/vda as on the command line.
func (m *Machine) virtioMMIODSDT() []aml.Node {
	var devs []*mmioDevice
	users := map[uint32]int{}
	for _, f := range m.virtio {
		if f.mmio != nil {
			devs = append(devs, f.mmio)
			users[f.mmio.irq]++
		}
	}
	nodes := make([]aml.Node, 0, len(devs))
	for _, d := range devs {
		nodes = append(nodes, aml.Device(d.acpiName(),
			aml.Name("_HID", aml.String(virtioMMIOACPIID)),
			aml.Name("_UID", aml.Integer(d.index())),
			aml.Name("_CRS", aml.ResourceTemplate(
				aml.Memory32Fixed{ReadWrite: true, Base: uint32(d.base), Length: virtiommio.Window},
				aml.IRQ{IRQs: []uint8{uint8(d.irq)}, Shared: users[d.irq] > 1},
			)),
		))
	}
	return nodes
}

// cmdlineParam announces the device to Linux: "virtio_mmio.device=
// <size>@<baseaddr>:<irq>" (drivers/virtio/virtio_mmio.c, vm_cmdline_set;
// the size is parsed by memparse, so 4K is 0x1000).
func (d *mmioDevice) cmdlineParam() string {
	return fmt.Sprintf("virtio_mmio.device=%dK@%#x:%d", virtiommio.Window/memparseK, d.base, d.irq)
}

// memparseK is the unit of memparse's K suffix.
const memparseK = 1 << 10

// withVirtioMMIO returns cmdline with the devices' announcements appended,
// in window order: Linux registers them in that order, and virtio-blk
// names disks in probe order, so the first disk is /dev/vda.
//
// A kernel that has ACPI has already made the devices from the DSDT
// (acpi_init is a subsys_initcall; virtio_mmio parses its device=
// parameters at the device initcall level, device_param_cb), so when it
// also has CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES each announcement finds its
// window taken and logs "failed to claim resource": noise, not a second
// device. A kernel without that option ignores the parameters.
func (m *Machine) withVirtioMMIO(cmdline string) string {
	var params []string
	for _, f := range m.virtio {
		if f.mmio != nil {
			params = append(params, f.mmio.cmdlineParam())
		}
	}
	if len(params) == 0 {
		return cmdline
	}
	return strings.TrimSpace(cmdline + " " + strings.Join(params, " "))
}

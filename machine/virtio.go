package machine

import (
	"errors"
	"fmt"
	gonet "net"
	"regexp"
	"strings"

	"github.com/govmm/govmm/devices/pci"
	"github.com/govmm/govmm/devices/pvpanic"
	"github.com/govmm/govmm/virtio"
	"github.com/govmm/govmm/virtio/blk"
	"github.com/govmm/govmm/virtio/net"
	"github.com/govmm/govmm/virtio/rng"
	"github.com/govmm/govmm/virtio/virtiopci"
)

// Disk is a virtio-blk disk: a raw image file.
type Disk struct {
	Path     string
	ReadOnly bool
}

// NIC is a virtio-net card on a tap device.
type NIC struct {
	Tap string
	// MAC is the card's address; nil derives a stable one from Tap.
	MAC gonet.HardwareAddr
}

// VirtioDevice is a virtio device the caller builds and owns (Config.Devices).
type VirtioDevice struct {
	// Name names the device in logs, statistics and traces.
	Name   string
	Device virtio.Device
}

// MaxDisks is how many disks fit on bus 0 next to the other devices, and
// how far Linux's virtio-blk names go with one letter (vda to vdz).
const MaxDisks = 26

// MaxNICs is how many network cards fit on bus 0 next to the disks: 31
// device slots, minus 26 disks and the entropy source.
const MaxNICs = 4

// virtioFunction is one virtio device, on the PCI bus or behind a
// virtio-mmio window (Config.VirtioTransport).
type virtioFunction struct {
	name   string
	dev    virtio.Device
	pci    *virtiopci.Transport // with VirtioPCI
	mmio   *mmioDevice          // with VirtioMMIO
	closer func() error         // releases the device's host resources, or nil
	// own marks a device govmm adds by itself (virtio-rng), which a
	// guest may well run without a driver for; the rest are the
	// caller's (DevicesWithoutDriver).
	own bool
}

// activated reports whether a guest driver has ever started the device.
func (f *virtioFunction) activated() bool {
	if f.mmio != nil {
		return f.mmio.transport.Activated()
	}
	return f.pci.Activated()
}

// UnclaimedDevice is a device that no guest driver started during a run
// (DevicesWithoutDriver).
type UnclaimedDevice struct {
	Name string // as in logs and statistics: "virtio-blk vda"
	// Driver is the Linux driver that would have claimed it, such as
	// "virtio_blk", or "" for a device type govmm has no name for.
	Driver string
}

// linuxDriver names Linux's driver for virtio device type id, or "" for
// a type govmm has no name for. Linux names each driver after its device,
// with an underscore: virtio_net, virtio_blk, virtio_console, virtio_rng
// (drivers/net/virtio_net.c, drivers/block/virtio_blk.c, ...).
func linuxDriver(id uint16) string {
	switch id {
	case virtio.VIRTIO_ID_NET, virtio.VIRTIO_ID_BLOCK, virtio.VIRTIO_ID_CONSOLE, virtio.VIRTIO_ID_RNG:
		return strings.ReplaceAll(virtio.DeviceName(id), "-", "_")
	}
	return ""
}

// DevicesWithoutDriver lists the devices the caller asked for (the disks,
// network cards and Config.Devices) that no driver in the guest started
// during the run. When a run that the guest ended leaves one unclaimed,
// its kernel most likely lacks that device's driver or the transport's
// (virtio_pci, virtio_mmio), built in or loaded from an initramfs:
// Debian's kernel booted without its initramfs, for one, has neither
// virtio_pci nor virtio_blk, and panics for want of a root disk. govmm's
// own virtio-rng is left out. Call it after Run, before Close.
func (m *Machine) DevicesWithoutDriver() []UnclaimedDevice {
	var list []UnclaimedDevice
	for _, f := range m.virtio {
		if !f.own && !f.activated() {
			list = append(list, UnclaimedDevice{Name: f.name, Driver: linuxDriver(f.dev.DeviceID())})
		}
	}
	return list
}

// firstVirtioSlot is the slot of the first virtio device; slot 0 is the
// host bridge. Linux probes bus 0 in slot order and names virtio disks in
// probe order, so the disks come first, in the order given: the first is
// /dev/vda.
const firstVirtioSlot = 1

// diskName is the name Linux gives the i-th virtio disk: vda, vdb, ...
func diskName(i int) string { return "vd" + string(rune('a'+i)) }

// setupVirtio creates the virtio devices and puts them on the PCI bus, or
// behind virtio-mmio windows: the disks, the network cards, the caller's
// devices, then the entropy source.
func (m *Machine) setupVirtio() error {
	if len(m.cfg.Disks) > MaxDisks {
		return fmt.Errorf("%d disks: govmm supports up to %d", len(m.cfg.Disks), MaxDisks)
	}
	if len(m.cfg.NICs) > MaxNICs {
		return fmt.Errorf("%d network cards: govmm supports up to %d", len(m.cfg.NICs), MaxNICs)
	}
	need := len(m.cfg.Disks) + len(m.cfg.NICs) + len(m.cfg.Devices) + 1 // + virtio-rng
	mmio := m.cfg.VirtioTransport == VirtioMMIO
	if mmio && need > MaxVirtioMMIODevices {
		return fmt.Errorf("%d virtio devices: govmm has room for %d virtio-mmio devices", need, MaxVirtioMMIODevices)
	}
	if mmio {
		need = 0 // only pvpanic goes on the PCI bus
	}
	if m.cfg.OnPanic != nil {
		need++
	}
	if firstVirtioSlot+need > pci.MaxSlots {
		return fmt.Errorf("%d PCI devices (%d disks, %d network cards, %d others): bus 0 has room for %d",
			need, len(m.cfg.Disks), len(m.cfg.NICs), need-len(m.cfg.Disks)-len(m.cfg.NICs), pci.MaxSlots-firstVirtioSlot)
	}
	slot := firstVirtioSlot
	add := func(name string, dev virtio.Device, closer func() error) error {
		if mmio {
			d, err := m.addVirtioMMIO(len(m.virtio), name, dev)
			if err != nil {
				if closer != nil {
					closer()
				}
				return err
			}
			m.virtio = append(m.virtio, &virtioFunction{name: name, dev: dev, mmio: d, closer: closer})
			return nil
		}
		t, err := virtiopci.New(virtiopci.Config{
			Device: dev,
			Mem:    m.mem,
			Router: m.pci.newMSIRouter(name),
			Log:    m.log,
			Name:   name,
		})
		if err != nil {
			if closer != nil {
				closer()
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		m.virtio = append(m.virtio, &virtioFunction{name: name, dev: dev, pci: t, closer: closer})
		if err := m.pci.attach(slot, name, t); err != nil {
			return err
		}
		slot++
		return nil
	}
	for i, d := range m.cfg.Disks {
		dev, err := blk.Open(d.Path, blk.Options{ReadOnly: d.ReadOnly, NumQueues: m.cfg.CPUs})
		if err != nil {
			return err
		}
		if err := add("virtio-blk "+diskName(i), dev, dev.Close); err != nil {
			return err
		}
	}
	for i, n := range m.cfg.NICs {
		tap, err := net.OpenTap(n.Tap)
		if err != nil {
			return err
		}
		dev, err := net.New(net.Options{TapName: n.Tap, MAC: n.MAC}, tap)
		if err != nil {
			tap.Close()
			return fmt.Errorf("tap %s: %w", n.Tap, err)
		}
		name := fmt.Sprintf("virtio-net %d (tap %s, %s)", i, n.Tap, dev.MAC())
		if err := add(name, dev, dev.Close); err != nil {
			return err
		}
	}
	for _, d := range m.cfg.Devices {
		if err := add(d.Name, d.Device, nil); err != nil {
			return err
		}
	}
	if err := add("virtio-rng", rng.New(), nil); err != nil {
		return err
	}
	m.virtio[len(m.virtio)-1].own = true
	if m.cfg.OnPanic != nil {
		dev, err := pvpanic.New(m.cfg.OnPanic)
		if err != nil {
			return fmt.Errorf("pvpanic: %w", err)
		}
		if err := m.pci.attach(slot, "pvpanic", dev); err != nil {
			return err
		}
		slot++
	}
	return m.pci.assignResources()
}

// stopVirtio stops every device's goroutines: called once the vCPUs have
// stopped, so nothing touches guest memory any more.
func (m *Machine) stopVirtio() {
	for _, f := range m.virtio {
		f.dev.Reset()
	}
}

// closeVirtio releases the devices. The ioeventfds and irqfds must be gone
// before the transports close the eventfds behind them: pciHost.close
// removes those of the PCI functions, mmioDevice.close its own first.
func (m *Machine) closeVirtio() error {
	var errs []error
	for _, f := range m.virtio {
		if f.pci != nil {
			errs = append(errs, f.pci.Close())
		}
		if f.mmio != nil {
			errs = append(errs, f.mmio.close(m))
		}
		if f.closer != nil {
			errs = append(errs, f.closer())
		}
	}
	m.virtio = nil
	return errors.Join(errs...)
}

// rootParam matches a root= parameter on a kernel command line.
var rootParam = regexp.MustCompile(`(^|\s)root=`)

// defaultRootArgs is what govmm appends to a command line without root=
// when there are disks: the root filesystem is on the first one.
const defaultRootArgs = "root=/dev/vda rw"

// WithRootDisk returns cmdline with "root=/dev/vda rw" appended when the
// machine has disks and cmdline names no root device.
func WithRootDisk(cmdline string, disks int) string {
	if disks == 0 || rootParam.MatchString(cmdline) {
		return cmdline
	}
	return strings.TrimSpace(cmdline + " " + defaultRootArgs)
}

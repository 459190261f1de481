// Package virtiommio is the virtio over MMIO transport (virtio 1.2 §4.2),
// version 2, the modern interface: a Transport presents any virtio.Device
// to the guest as a window of memory-mapped registers that Linux's
// virtio_mmio driver (drivers/virtio/virtio_mmio.c) binds to.
//
// It is govmm's second transport, for kernels that do without a PCI bus.
// virtio-mmio has no bus to enumerate, so the machine describes each
// device twice: in the ACPI DSDT as a platform device with hardware ID
// LNRO0005, which virtio_mmio matches in any kernel with ACPI (Debian's
// stock kernels load it as a module), and on the kernel command line as
// virtio_mmio.device=<size>@<base>:<irq>, for minimal kernels without
// ACPI (which needs CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES). The device logic,
// the feature negotiation, the status state machine and the queue
// registers are the same as over PCI: they live in the virtio packages and
// in virtio/transport. Only the register layout and the interrupt are this
// package's.
//
// # What the guest sees
//
// A page of registers (Window), all 32 bits wide, the device-specific
// configuration space from ConfigOffset on (§4.2.2, Table 4.1):
//
//	0x000 MagicValue "virt"      0x044 QueueReady          0x090 QueueDriverLow/High
//	0x004 Version 2              0x050 QueueNotify         0x0A0 QueueDeviceLow/High
//	0x008 DeviceID               0x060 InterruptStatus     0x0AC SHMSel, 0x0B0.. SHMLen/Base
//	0x00C VendorID               0x064 InterruptACK        0x0FC ConfigGeneration
//	0x010 DeviceFeatures(Sel)    0x070 Status              0x100 device configuration
//	0x020 DriverFeatures(Sel)    0x080 QueueDescLow/High
//	0x030 QueueSel, 0x034 QueueNumMax, 0x038 QueueNum
//
// # Notifications
//
// The driver notifies a queue by writing its index to QueueNotify. The
// machine lets KVM match those writes, one ioeventfd per queue with the
// index as its data (see Doorbells), so they never leave the kernel.
//
// The device has one interrupt line for everything. An event sets its bit
// in InterruptStatus, VIRTIO_MMIO_INT_VRING for used buffers in any queue
// or VIRTIO_MMIO_INT_CONFIG for a configuration change, and sends an edge
// on the line (Config.Interrupt, the machine's irqfd). The driver reads
// InterruptStatus, writes the bits it saw to InterruptACK and looks at
// every queue (§4.2.3.4).
//
// # Concurrency
//
// As in virtio/virtiopci: register accesses come from vCPU goroutines and
// are serialised by the Transport's lock; interrupts, failures and
// configuration changes come from the device's goroutines and never take
// it.
package virtiommio

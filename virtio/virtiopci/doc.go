// Package virtiopci is the virtio over PCI bus transport (virtio 1.2 §4.1)
// in its modern, non-transitional form: a Transport presents any
// virtio.Device to the guest as a PCI function that Linux's virtio_pci
// driver (drivers/virtio/virtio_pci_modern.c) binds to.
//
// # What the guest sees
//
// The function is identified by vendor 0x1AF4 and device ID 0x1040 plus the
// virtio device ID (§4.1.2), revision 1 so that no legacy driver claims it.
// Almost everything else lives in one 32-bit memory BAR, BAR 0, which the
// capability list of configuration space describes. Each structure gets a
// 4 KiB page of its own, so that the machine could map or trap each one
// separately:
//
//	BAR 0 offset   size      structure                        capability
//	0x0000         0x3C      struct virtio_pci_common_cfg     VIRTIO_PCI_CAP_COMMON_CFG
//	0x1000         1         ISR status                       VIRTIO_PCI_CAP_ISR_CFG
//	0x2000         0x1000    device-specific configuration    VIRTIO_PCI_CAP_DEVICE_CFG
//	0x3000         4 × N     notify addresses, one per queue  VIRTIO_PCI_CAP_NOTIFY_CFG
//	0x4000         16 × V    MSI-X table                      MSI-X (PCI 3.0 §6.8.2)
//	0x5000         8 × ⌈V/64⌉ MSI-X Pending Bit Array
//
// N is the number of virtqueues and V = N + 1 the number of MSI-X vectors:
// one per queue and one for configuration changes, the layout Linux asks
// for first (vp_find_vqs_msix with per_vq_vectors). A device whose queues
// are better served by one interrupt (virtio.QueueInterruptSharer, such as
// virtio-net) gets V = 2 instead, and Linux then takes its second layout:
// one vector for configuration changes and one shared by every queue.
//
// A fifth virtio capability, VIRTIO_PCI_CAP_PCI_CFG, is a window in
// configuration space through which the driver can reach any of the BAR's
// registers without mapping the BAR (§4.1.4.9).
//
// The notify structure has a second, preferred home: BAR 1, an I/O BAR of
// four ports, whose first two are one 16-bit notify register shared by
// every queue (notify_off_multiplier 0). Its capability comes first in the
// list, so Linux uses it. A port write exits with its port and value
// already decoded by the CPU; an MMIO write on AMD SVM leaves KVM to
// decode the instruction (see NotifyIOBARIndex).
//
// # Driving the device
//
// The driver resets the device by writing 0 to device_status, sets
// ACKNOWLEDGE and DRIVER, reads device_feature, writes the subset it
// understands to driver_feature, sets FEATURES_OK and reads it back (the
// device clears it if it cannot live with that subset), programs each
// queue through queue_select and the queue_* registers, and finally sets
// DRIVER_OK (§3.1.1). Only then does the Transport build the virtqueues and
// call Device.Activate.
//
// The driver tells the device about new buffers by writing the queue's
// index to its notify address (an available buffer notification,
// §4.1.5.2). The machine
// normally lets KVM turn those writes into a signal on the queue's Kick
// eventfd (see Doorbells) so that they never leave the kernel; a write that
// does reach the Transport signals the same eventfd. The device tells the
// driver about used buffers and configuration changes with an interrupt:
// the MSI-X vector the driver chose, or, while MSI-X is off, a bit in the
// ISR status register and the function's INTx# pin (§4.1.5.3, §4.1.5.4).
//
// # Concurrency
//
// Register accesses come from vCPU goroutines and are serialised by the
// Transport's lock. Interrupts, failures and configuration changes come
// from the device's goroutines and never take that lock: a vCPU that
// resets the device holds it while Device.Reset waits for those goroutines
// to finish, so they must be able to finish without it.
//
// # Wiring a machine
//
//	t, err := virtiopci.New(virtiopci.Config{Device: dev, Mem: mem, Router: router, Log: log, Name: "virtio-blk vda"})
//	bus.Attach(slot, t)
//	for _, d := range t.Doorbells() { /* KVM_IOEVENTFD on d.BAR's address + d.Offset while it decodes */ }
//	...
//	// shutdown: remove the ioeventfds and the MSI routes, then
//	t.Close()
package virtiopci

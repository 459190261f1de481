package virtiopci

// Notifications from the device to the driver (§4.1.5.3, §4.1.5.4). These
// run on the device's goroutines (and on vCPU goroutines when the
// transport itself fails the device) and never take t.mu.

// queueInterrupt sends a used buffer notification for queue i
// (transport.Interrupts.Queue). On the MSI-X path it allocates nothing.
func (t *Transport) queueInterrupt(i int) {
	t.notify(t.queueVectors[i].Load(), VIRTIO_PCI_ISR_QUEUE)
}

// lineINTx is queueLine's answer while MSI-X is disabled. It lies above
// every MSI-X vector number, which are 16-bit (VIRTIO_MSI_NO_VECTOR is the
// largest).
const lineINTx = 1 << 16

// queueLine is Queue.InterruptLine for queue i: the MSI-X vector the
// driver mapped the queue to, or lineINTx while MSI-X is disabled. Then
// every queue's notification asserts INTx# and sets the one queue bit of
// the ISR status, after which the driver checks all its queues (§4.1.4.5,
// §4.1.5.4). Two queues mapped to VIRTIO_MSI_NO_VECTOR share that line
// too: no interrupt reaches the driver for either.
func (t *Transport) queueLine(i int) uint32 {
	if !t.msix.Enabled() {
		return lineINTx
	}
	return t.queueVectors[i].Load()
}

// configInterrupt sends a configuration change notification. "The device
// MUST set the Device Configuration Interrupt bit in ISR status before
// sending a device configuration change notification to the driver"
// (§4.1.4.5.1), with or without MSI-X; only the queue bit is for INTx#
// alone.
func (t *Transport) configInterrupt() {
	t.isrMu.Lock()
	t.isr |= VIRTIO_PCI_ISR_CONFIG
	t.isrMu.Unlock()
	t.notify(t.configVector.Load(), VIRTIO_PCI_ISR_CONFIG)
}

// notify sends a notification whose MSI-X vector is vector and whose ISR
// bit is isrBit.
//
// With MSI-X enabled, the event goes out as its vector's message, and not
// at all if the driver mapped it to VIRTIO_MSI_NO_VECTOR (§4.1.5.3,
// §4.1.5.4: "If queue_msix_vector is not NO_VECTOR, request the
// appropriate MSI-X interrupt message"). MSIXTable.Signal also handles a
// masked vector, by setting its Pending bit.
//
// With MSI-X disabled, the device sets the event's bit in the ISR status
// and asserts INTx#, which stays asserted until the driver reads the ISR
// status: the Interrupt Status bit of the PCI Status register is "the
// logical OR of all bits in ISR status" (§4.1.4.5.1).
func (t *Transport) notify(vector uint32, isrBit uint8) {
	if t.msix.Signal(int(vector)) {
		return
	}
	// Signal refuses a vector outside the table and any vector while
	// MSI-X is disabled; only the second falls back to INTx#.
	if t.msix.Enabled() {
		return
	}
	t.isrMu.Lock()
	defer t.isrMu.Unlock()
	t.isr |= isrBit
	t.cs.SetINTx(true)
}

package pci

// Doorbell is a register in a BAR whose writes carry no data the device
// needs beyond, at most, which queue to look at: a virtio notify register
// (virtio 1.2 §4.1.4.4), for one. The machine may let KVM turn such writes
// into a signal on the eventfd FD (KVM_IOEVENTFD) while the BAR decodes,
// so that they never exit to userspace. The BAR's Handler must still
// accept the writes and signal FD itself, for a machine that does not.
//
// In a memory BAR the doorbell is an MMIO address; in an I/O BAR it is a
// port, and KVM matches it on the port I/O bus (KVM_IOEVENTFD_FLAG_PIO).
type Doorbell struct {
	BAR    int    // the BAR's index
	Offset uint64 // the register's offset in the BAR
	// Size is the width of the writes to match, 1, 2, 4 or 8; 0 matches
	// writes of any width (KVM_CAP_IOEVENTFD_ANY_LENGTH), which on Intel
	// VMX lets KVM skip instruction decoding entirely.
	Size int
	// Match makes only writes of the value Data ring this doorbell
	// (KVM_IOEVENTFD_FLAG_DATAMATCH), so that several doorbells can
	// share one register, each answering its own value; it needs a
	// Size. Several virtio queues share one notify port that way, the
	// driver writing the queue's index.
	Match bool
	Data  uint64
	FD    int // the eventfd to signal
}

// DoorbellDevice is a Device with doorbell registers.
type DoorbellDevice interface {
	Device
	Doorbells() []Doorbell
}

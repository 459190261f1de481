package pci

// Doorbell is a register in a memory BAR whose writes carry no data the
// device needs: they only say "look at your queue", like a virtio notify
// register (virtio 1.2 §4.1.4.4). The machine may let KVM turn such writes
// into a signal on the eventfd FD (KVM_IOEVENTFD) while the BAR decodes,
// so that they never exit to userspace. The BAR's Handler must still
// accept the writes and signal FD itself, for a machine that does not.
type Doorbell struct {
	BAR    int    // the BAR's index
	Offset uint64 // the register's offset in the BAR
	// Size is the width of the writes to match, 1, 2, 4 or 8; 0 matches
	// writes of any width (KVM_CAP_IOEVENTFD_ANY_LENGTH), which on Intel
	// VMX lets KVM skip instruction decoding entirely.
	Size int
	FD   int // the eventfd to signal
}

// DoorbellDevice is a Device with doorbell registers.
type DoorbellDevice interface {
	Device
	Doorbells() []Doorbell
}

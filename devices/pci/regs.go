package pci

// Configuration space sizes.
const (
	// ConfigSpaceSize is the configuration space of a conventional PCI
	// function: a 64-byte predefined header and 192 bytes for
	// capabilities and device-specific registers (PCI 3.0 §6.1).
	ConfigSpaceSize = 256
	// ExtendedConfigSpaceSize is a PCI Express function's configuration
	// space; the part above ConfigSpaceSize is reachable only through
	// ECAM (PCIe §7.2.2).
	ExtendedConfigSpaceSize = 4096
	// HeaderSize is the size of the predefined header (PCI 3.0 §6.1);
	// the capability list lives after it.
	HeaderSize = 0x40
)

// Offsets of the type 0 configuration header (PCI 3.0 §6.1, Figure 6-1).
// All multi-byte fields are little-endian.
const (
	RegVendorID            = 0x00 // 16 bits, read-only (§6.2.1)
	RegDeviceID            = 0x02 // 16 bits, read-only (§6.2.1)
	RegCommand             = 0x04 // 16 bits (§6.2.2)
	RegStatus              = 0x06 // 16 bits (§6.2.3)
	RegRevisionID          = 0x08 // 8 bits, read-only (§6.2.1)
	RegClassCode           = 0x09 // 24 bits: programming interface, sub-class, base class (§6.2.1)
	RegCacheLineSize       = 0x0C // 8 bits, read/write (§6.2.4)
	RegLatencyTimer        = 0x0D // 8 bits; read-only 0 here, as PCIe requires (PCIe §7.5.1.1.6)
	RegHeaderType          = 0x0E // 8 bits, read-only (§6.2.1)
	RegBIST                = 0x0F // 8 bits; 0: no built-in self test (§6.2.4)
	RegBAR0                = 0x10 // six 32-bit Base Address Registers, 0x10-0x27 (§6.2.5.1)
	RegCardbusCISPointer   = 0x28 // 32 bits; 0: no CardBus (§6.2.5.3)
	RegSubsystemVendorID   = 0x2C // 16 bits, read-only (§6.2.4)
	RegSubsystemID         = 0x2E // 16 bits, read-only (§6.2.4)
	RegExpansionROM        = 0x30 // 32 bits; 0: no expansion ROM (§6.2.5.2)
	RegCapabilitiesPointer = 0x34 // 8 bits, read-only (§6.7)
	RegInterruptLine       = 0x3C // 8 bits, read/write scratch for software (§6.2.4)
	RegInterruptPin        = 0x3D // 8 bits, read-only (§6.2.4)
	RegMinGnt              = 0x3E // 8 bits; 0 (§6.2.4)
	RegMaxLat              = 0x3F // 8 bits; 0 (§6.2.4)
)

// NumBARs is the number of Base Address Registers in a type 0 header
// (PCI 3.0 §6.2.5.1); a 64-bit BAR takes two of them.
const NumBARs = 6

// barRegSize is the width of one Base Address Register.
const barRegSize = 4

// Command register bits (PCI 3.0 §6.2.2, Figure 6-2).
const (
	CommandIOSpace             = 1 << 0  // respond to I/O space accesses (I/O BARs decode)
	CommandMemorySpace         = 1 << 1  // respond to memory space accesses (memory BARs decode)
	CommandBusMaster           = 1 << 2  // the function may master the bus: DMA and MSI/MSI-X writes
	CommandSpecialCycles       = 1 << 3  // hardwired 0: special cycles are ignored
	CommandMWIEnable           = 1 << 4  // hardwired 0: no Memory Write and Invalidate
	CommandVGAPaletteSnoop     = 1 << 5  // hardwired 0: not a VGA device
	CommandParityErrorResponse = 1 << 6  // read/write, no effect: there are no parity errors
	CommandSERREnable          = 1 << 8  // read/write, no effect: SERR# is never signalled
	CommandFastBackToBack      = 1 << 9  // hardwired 0
	CommandInterruptDisable    = 1 << 10 // when set, the function may not assert INTx# (§6.2.2)
)

// commandWritable are the Command bits the guest can change; all others
// are hardwired to 0, which PCI 3.0 §6.2.2 allows for features a function
// lacks and PCIe §7.5.1.1.3 requires for bits 3, 4, 5, 7 and 9.
const commandWritable = CommandIOSpace | CommandMemorySpace | CommandBusMaster |
	CommandParityErrorResponse | CommandSERREnable | CommandInterruptDisable

// Status register bits (PCI 3.0 §6.2.3, Figure 6-3).
const (
	StatusInterrupt             = 1 << 3  // read-only: the function's INTx# is asserted (ignoring Interrupt Disable)
	StatusCapabilitiesList      = 1 << 4  // read-only: RegCapabilitiesPointer is valid (§6.7)
	Status66MHz                 = 1 << 5  // read-only 0: a 33 MHz bus
	StatusFastBackToBack        = 1 << 7  // read-only 0
	StatusMasterDataParityError = 1 << 8  // write 1 to clear
	StatusDEVSELTiming          = 3 << 9  // read-only 0: fast DEVSEL#
	StatusSignaledTargetAbort   = 1 << 11 // write 1 to clear
	StatusReceivedTargetAbort   = 1 << 12 // write 1 to clear
	StatusReceivedMasterAbort   = 1 << 13 // write 1 to clear
	StatusSignaledSystemError   = 1 << 14 // write 1 to clear
	StatusDetectedParityError   = 1 << 15 // write 1 to clear
)

// statusW1C are the error bits that "can be reset, but not set, by
// software": writing 1 clears them, writing 0 has no effect (PCI 3.0
// §6.2.3).
const statusW1C = StatusMasterDataParityError | StatusSignaledTargetAbort | StatusReceivedTargetAbort |
	StatusReceivedMasterAbort | StatusSignaledSystemError | StatusDetectedParityError

// Header Type register (PCI 3.0 §6.2.1): bits 6:0 select the layout of
// bytes 0x10-0x3F, bit 7 says the device has more than one function.
const (
	HeaderTypeNormal        = 0x00 // type 0: an endpoint ("normal" device)
	HeaderTypeMultiFunction = 0x80 // never set here: function 0 only
)

// Class codes (PCI Code and ID Assignment Specification 1.x, §1): base
// class << 16 | sub-class << 8 | programming interface.
const (
	// ClassBridgeHost is a host bridge (base class 06h, sub-class 00h).
	ClassBridgeHost = 0x060000
)

// Vendor IDs with a meaning of their own (PCI 3.0 §6.2.1).
const (
	// InvalidVendorID is never a real vendor: it is what reading an
	// absent function returns, so software uses it to detect absence.
	InvalidVendorID = 0xFFFF
)

// Capability IDs (PCI Code and ID Assignment Specification, §2; PCI 3.0
// Appendix H).
const (
	CapabilityVendorSpecific = 0x09 // vendor-specific: ID, next, length, then free-form (virtio uses these)
	CapabilityMSIX           = 0x11 // MSI-X (PCI 3.0 §6.8.2)
)

// Capability list layout (PCI 3.0 §6.7): each capability starts with an
// ID byte and a next-pointer byte; pointers are DWORD aligned, their two
// low bits reserved, and a next pointer of 0 ends the list.
const (
	capabilityHeaderSize = 2
	capabilityAlign      = 4
	capabilityNext       = 1    // offset of the next pointer inside a capability
	capabilityPtrMask    = 0xFC // the low two bits of a pointer are reserved
	// vendorCapabilityLength is the offset of the length byte of a
	// vendor-specific capability, which counts the whole structure,
	// ID and next pointer included (PCI 3.0 Appendix H, ID 09h).
	vendorCapabilityLength = 2
	// invalidCapabilityID is never a capability: 0xFF is what absent
	// configuration space reads as, and Linux stops a list walk there
	// (drivers/pci/pci.c, __pci_find_next_cap_ttl).
	invalidCapabilityID = 0xFF
)

// Register values with a meaning of their own.
const (
	// allOnes is what the host bridge returns for a configuration read
	// that no function claims (PCI 3.0 §6.1: master abort).
	allOnes = 0xFF
)

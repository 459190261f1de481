package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/govmm/govmm/devices"
)

// le is the byte order of every configuration register (PCI 3.0 §6.1:
// "All multi-byte numeric fields follow little-endian ordering").
var le = binary.LittleEndian

// Header is the identity of a type 0 function: the read-only fields of its
// predefined header (PCI 3.0 §6.2.1 and §6.2.4).
type Header struct {
	// VendorID and DeviceID name the function; InvalidVendorID is not
	// allowed (it means "absent").
	VendorID uint16
	DeviceID uint16
	// RevisionID is the device-specific revision.
	RevisionID uint8
	// ClassCode is base class << 16 | sub-class << 8 | programming
	// interface, e.g. ClassBridgeHost.
	ClassCode uint32
	// SubsystemVendorID and SubsystemID name the board or product the
	// function is part of (PCI 3.0 §6.2.4).
	SubsystemVendorID uint16
	SubsystemID       uint16
	// InterruptPin is the INTx# pin the function uses, PinNone for none.
	InterruptPin Pin
	// Extended gives the function a 4 KiB PCI Express configuration
	// space instead of 256 bytes. The bytes above 256 are read-only zero:
	// an extended capability header of zeros at 0x100 says there are no
	// extended capabilities (PCIe §7.6.3). A conventional function's
	// space ends at 256, and reads beyond it return all ones, which is
	// how Linux tells the two apart (drivers/pci/probe.c,
	// pci_cfg_space_size_ext).
	Extended bool
}

// maxClassCode is the largest 24-bit class code.
const maxClassCode = 1<<24 - 1

// AccessHook is called for a guest configuration access that touches a
// watched range; offset and size describe the whole access.
type AccessHook func(offset uint16, size int)

// hook is a watched range [start, end) of configuration space.
type hook struct {
	start, end int
	fn         AccessHook
}

// mapEvent is a change in what one BAR decodes.
type mapEvent struct {
	region Region
	mapped bool // true: now decodes region; false: stopped decoding it
}

// ConfigSpace is the configuration space of one PCI function with a type 0
// header: the registers, which bits of them the guest may write, and the
// behaviour behind them (BAR decoding, INTx, the capability list).
//
// Two kinds of access reach it. The guest's, through ReadConfig and
// WriteConfig (the bus calls them), obey the write masks: read-only bits
// keep their value, read/write bits take the written value, and
// write-1-to-clear bits are cleared by writing 1 (PCI 3.0 §6.2.3). The
// device model's own, through the typed getters and SetUint8/16/32, see and
// change the registers directly.
//
// A ConfigSpace is itself the simplest Device; devices with behaviour of
// their own embed or wrap one.
type ConfigSpace struct {
	mu sync.Mutex

	regs  []byte // register contents
	wmask []byte // bits a guest write may change
	w1c   []byte // bits a guest write of 1 clears

	bars     [NumBARs]BAR  // BAR definitions by index; zero Kind: unused
	barUpper [NumBARs]bool // the register is the upper half of the 64-bit BAR below it
	mapped   [NumBARs]struct {
		region Region
		ok     bool
	} // what each BAR decoded when last reported

	lastCap uint8 // offset of the last capability in the list, 0 for none
	capEnd  int   // first byte after the last capability

	readHooks  []hook
	writeHooks []hook

	attached bool
	notify   func(r Region, mapped bool) // the bus's BARMapper, nil if none

	intxLine     devices.IRQLine // the routed INTx# line, nil if not wired
	intxAsserted bool            // the device asserts its interrupt (Status bit 3)
	intxDriven   bool            // the line is driven: asserted and not disabled
}

// NewConfigSpace returns the configuration space of a function identified
// by h, with no BARs and no capabilities. Command starts at 0: the
// function decodes nothing and masters nothing until software enables it
// (PCI 3.0 §6.2.2: the reset value of Command is 0).
func NewConfigSpace(h Header) (*ConfigSpace, error) {
	if h.VendorID == InvalidVendorID {
		return nil, fmt.Errorf("pci: vendor ID %#04x is reserved for absent functions", h.VendorID)
	}
	if h.ClassCode > maxClassCode {
		return nil, fmt.Errorf("pci: class code %#x does not fit in 24 bits", h.ClassCode)
	}
	if h.InterruptPin > PinINTD {
		return nil, fmt.Errorf("pci: interrupt pin %d is not INTA#-INTD#", h.InterruptPin)
	}
	size := ConfigSpaceSize
	if h.Extended {
		size = ExtendedConfigSpaceSize
	}
	c := &ConfigSpace{
		regs:   make([]byte, size),
		wmask:  make([]byte, size),
		w1c:    make([]byte, size),
		capEnd: HeaderSize,
	}
	le.PutUint16(c.regs[RegVendorID:], h.VendorID)
	le.PutUint16(c.regs[RegDeviceID:], h.DeviceID)
	c.regs[RegRevisionID] = h.RevisionID
	c.regs[RegClassCode] = byte(h.ClassCode)
	c.regs[RegClassCode+1] = byte(h.ClassCode >> 8)
	c.regs[RegClassCode+2] = byte(h.ClassCode >> 16)
	c.regs[RegHeaderType] = HeaderTypeNormal
	le.PutUint16(c.regs[RegSubsystemVendorID:], h.SubsystemVendorID)
	le.PutUint16(c.regs[RegSubsystemID:], h.SubsystemID)
	c.regs[RegInterruptPin] = byte(h.InterruptPin)

	le.PutUint16(c.wmask[RegCommand:], commandWritable)
	le.PutUint16(c.w1c[RegStatus:], statusW1C)
	// Cache Line Size is read/write (PCI 3.0 §6.2.4; PCIe §7.5.1.1.7
	// keeps it for compatibility, with no effect). Interrupt Line is a
	// read/write scratch register that firmware fills with the interrupt
	// controller input the pin is routed to (PCI 3.0 §6.2.4).
	c.wmask[RegCacheLineSize] = 0xFF
	c.wmask[RegInterruptLine] = 0xFF
	return c, nil
}

// Config returns c, making a bare ConfigSpace a Device.
func (c *ConfigSpace) Config() *ConfigSpace { return c }

// Size returns the size of the configuration space: ConfigSpaceSize or
// ExtendedConfigSpaceSize.
func (c *ConfigSpace) Size() int { return len(c.regs) }

// ReadConfig performs a guest read of len(data) bytes at offset. Bytes
// beyond the configuration space read as all ones. Read hooks that watch
// any of the bytes run first, so that they can refresh them.
func (c *ConfigSpace) ReadConfig(offset uint16, data []byte) {
	for _, fn := range c.hooksFor(&c.readHooks, offset, len(data)) {
		fn(offset, len(data))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		o := int(offset) + i
		if o >= len(c.regs) {
			data[i] = allOnes
			continue
		}
		data[i] = c.regs[o]
	}
}

// WriteConfig performs a guest write of data at offset, bit by bit as the
// write masks allow; bytes beyond the configuration space are dropped. It
// then reports BARs that started or stopped decoding to the bus's
// BARMapper and runs the write hooks that watch any of the bytes, in that
// order, without holding c's lock. Guest writes must come one at a time,
// as the Bus makes them: the reports of concurrent writes could otherwise
// arrive out of order.
func (c *ConfigSpace) WriteConfig(offset uint16, data []byte) {
	c.mu.Lock()
	for i, v := range data {
		o := int(offset) + i
		if o >= len(c.regs) {
			break
		}
		m := c.wmask[o]
		c.regs[o] = c.regs[o]&^m | v&m
		c.regs[o] &^= v & c.w1c[o]
	}
	c.driveINTxLocked()
	events := c.syncMappingsLocked()
	notify := c.notify
	hooks := matchHooks(c.writeHooks, offset, len(data))
	c.mu.Unlock()

	if notify != nil {
		for _, e := range events {
			notify(e.region, e.mapped)
		}
	}
	for _, fn := range hooks {
		fn(offset, len(data))
	}
}

// hooksFor returns the functions of the hooks in *list that overlap the
// access.
func (c *ConfigSpace) hooksFor(list *[]hook, offset uint16, size int) []AccessHook {
	c.mu.Lock()
	defer c.mu.Unlock()
	return matchHooks(*list, offset, size)
}

// matchHooks returns the functions of the hooks that overlap [offset,
// offset+size).
func matchHooks(hooks []hook, offset uint16, size int) []AccessHook {
	var fns []AccessHook
	start, end := int(offset), int(offset)+size
	for _, h := range hooks {
		if start < h.end && h.start < end {
			fns = append(fns, h.fn)
		}
	}
	return fns
}

// OnRead makes fn run before every guest read that touches [offset,
// offset+length), for registers whose value the device computes on
// demand (fn refreshes them with SetUint8/16/32). It may only watch
// bytes after the predefined header.
func (c *ConfigSpace) OnRead(offset, length uint16, fn AccessHook) error {
	return c.addHook(&c.readHooks, offset, length, fn)
}

// OnWrite makes fn run after every guest write that touches [offset,
// offset+length), once the write has taken effect, for registers whose
// writes have side effects. It may only watch bytes after the predefined
// header.
func (c *ConfigSpace) OnWrite(offset, length uint16, fn AccessHook) error {
	return c.addHook(&c.writeHooks, offset, length, fn)
}

func (c *ConfigSpace) addHook(list *[]hook, offset, length uint16, fn AccessHook) error {
	if fn == nil {
		return errors.New("pci: nil access hook")
	}
	if err := c.checkDeviceRange(offset, int(length)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	*list = append(*list, hook{start: int(offset), end: int(offset) + int(length), fn: fn})
	return nil
}

// checkDeviceRange checks that [offset, offset+n) is a non-empty range of
// the device-specific part of configuration space, after the header.
func (c *ConfigSpace) checkDeviceRange(offset uint16, n int) error {
	if n <= 0 || int(offset) < HeaderSize || int(offset)+n > len(c.regs) {
		return fmt.Errorf("pci: configuration range [%#x, %#x) is not inside [%#x, %#x)",
			offset, int(offset)+n, HeaderSize, len(c.regs))
	}
	return nil
}

// SetWriteMask makes the bits set in mask, for the bytes from offset on,
// read/write for the guest, and the others read-only. It may only be used
// after the predefined header, whose masks the specification fixes.
func (c *ConfigSpace) SetWriteMask(offset uint16, mask []byte) error {
	if err := c.checkDeviceRange(offset, len(mask)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.wmask[offset:], mask)
	return nil
}

// SetW1CMask makes the bits set in mask, for the bytes from offset on,
// write-1-to-clear: the device sets them, a guest write of 1 clears them,
// a write of 0 leaves them (as the error bits of Status, PCI 3.0 §6.2.3).
// A bit should not be in both masks.
func (c *ConfigSpace) SetW1CMask(offset uint16, mask []byte) error {
	if err := c.checkDeviceRange(offset, len(mask)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(c.w1c[offset:], mask)
	return nil
}

// Uint8 returns the byte register at offset as the device sees it (all
// ones outside the space).
func (c *ConfigSpace) Uint8(offset uint16) uint8 {
	var b [1]byte
	c.rawRead(offset, b[:])
	return b[0]
}

// Uint16 returns the 16-bit register at offset.
func (c *ConfigSpace) Uint16(offset uint16) uint16 {
	var b [2]byte
	c.rawRead(offset, b[:])
	return le.Uint16(b[:])
}

// Uint32 returns the 32-bit register at offset.
func (c *ConfigSpace) Uint32(offset uint16) uint32 {
	var b [4]byte
	c.rawRead(offset, b[:])
	return le.Uint32(b[:])
}

// SetUint8 sets the byte register at offset from the device side: masks,
// hooks and BAR decoding are bypassed. It is for registers the device
// itself owns, such as capability contents.
func (c *ConfigSpace) SetUint8(offset uint16, v uint8) { c.rawWrite(offset, []byte{v}) }

// SetUint16 sets the 16-bit register at offset from the device side.
func (c *ConfigSpace) SetUint16(offset uint16, v uint16) {
	c.rawWrite(offset, le.AppendUint16(nil, v))
}

// SetUint32 sets the 32-bit register at offset from the device side.
func (c *ConfigSpace) SetUint32(offset uint16, v uint32) {
	c.rawWrite(offset, le.AppendUint32(nil, v))
}

func (c *ConfigSpace) rawRead(offset uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range data {
		data[i] = c.byteLocked(int(offset) + i)
	}
}

func (c *ConfigSpace) rawWrite(offset uint16, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		if o := int(offset) + i; o < len(c.regs) {
			c.regs[o] = v
		}
	}
}

func (c *ConfigSpace) byteLocked(o int) byte {
	if o >= len(c.regs) {
		return allOnes
	}
	return c.regs[o]
}

func (c *ConfigSpace) u16Locked(o int) uint16 { return le.Uint16(c.regs[o:]) }
func (c *ConfigSpace) u32Locked(o int) uint32 { return le.Uint32(c.regs[o:]) }

// Typed getters for the predefined header (PCI 3.0 §6.2).

// VendorID returns the Vendor ID register.
func (c *ConfigSpace) VendorID() uint16 { return c.Uint16(RegVendorID) }

// DeviceID returns the Device ID register.
func (c *ConfigSpace) DeviceID() uint16 { return c.Uint16(RegDeviceID) }

// Command returns the Command register.
func (c *ConfigSpace) Command() uint16 { return c.Uint16(RegCommand) }

// Status returns the Status register.
func (c *ConfigSpace) Status() uint16 { return c.Uint16(RegStatus) }

// RevisionID returns the Revision ID register.
func (c *ConfigSpace) RevisionID() uint8 { return c.Uint8(RegRevisionID) }

// ClassCode returns the 24-bit Class Code register.
func (c *ConfigSpace) ClassCode() uint32 { return c.Uint32(RegRevisionID) >> 8 }

// HeaderType returns the Header Type register.
func (c *ConfigSpace) HeaderType() uint8 { return c.Uint8(RegHeaderType) }

// BARRegister returns Base Address Register index (0-5) as the guest reads
// it: address bits and type bits.
func (c *ConfigSpace) BARRegister(index int) uint32 {
	if index < 0 || index >= NumBARs {
		return 0
	}
	return c.Uint32(barOffset(index))
}

// SubsystemVendorID returns the Subsystem Vendor ID register.
func (c *ConfigSpace) SubsystemVendorID() uint16 { return c.Uint16(RegSubsystemVendorID) }

// SubsystemID returns the Subsystem ID register.
func (c *ConfigSpace) SubsystemID() uint16 { return c.Uint16(RegSubsystemID) }

// CapabilitiesPointer returns the offset of the first capability, 0 if
// there is none.
func (c *ConfigSpace) CapabilitiesPointer() uint8 { return c.Uint8(RegCapabilitiesPointer) }

// InterruptLine returns the Interrupt Line register, as software wrote it.
func (c *ConfigSpace) InterruptLine() uint8 { return c.Uint8(RegInterruptLine) }

// InterruptPin returns the Interrupt Pin register.
func (c *ConfigSpace) InterruptPin() Pin { return Pin(c.Uint8(RegInterruptPin)) }

// BusMaster reports whether the guest has let the function master the
// bus (Command bit 2, PCI 3.0 §6.2.2). A device must not read or write
// guest memory, nor send MSI-X messages, while it is clear.
func (c *ConfigSpace) BusMaster() bool { return c.Command()&CommandBusMaster != 0 }

// INTx returns the function's INTx# output as a devices.IRQLine: the
// device model drives it with SetLevel (see SetINTx).
func (c *ConfigSpace) INTx() devices.IRQLine { return intxOutput{c} }

type intxOutput struct{ c *ConfigSpace }

func (o intxOutput) SetLevel(high bool) { o.c.SetINTx(high) }

// SetINTx sets the state of the function's interrupt: Status bit 3
// (Interrupt Status) follows it, and the INTx# pin is asserted while it is
// set and Command bit 10 (Interrupt Disable) is clear (PCI 3.0 §6.2.2 and
// §6.2.3). The pin is a level: it stays asserted until cleared.
func (c *ConfigSpace) SetINTx(asserted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.intxAsserted = asserted
	st := c.u16Locked(RegStatus) &^ StatusInterrupt
	if asserted {
		st |= StatusInterrupt
	}
	le.PutUint16(c.regs[RegStatus:], st)
	c.driveINTxLocked()
}

// driveINTxLocked updates the pin after a change to the interrupt state
// or to Interrupt Disable, calling the line only on changes.
func (c *ConfigSpace) driveINTxLocked() {
	want := c.intxAsserted && c.u16Locked(RegCommand)&CommandInterruptDisable == 0
	if want == c.intxDriven {
		return
	}
	c.intxDriven = want
	if c.intxLine != nil {
		c.intxLine.SetLevel(want)
	}
}

// attach connects the function to a bus: notify receives BAR decoding
// changes and line is its routed INTx# (either may be nil). The BARs that
// already decode are reported at once.
func (c *ConfigSpace) attach(notify func(Region, bool), line devices.IRQLine) error {
	c.mu.Lock()
	if c.attached {
		c.mu.Unlock()
		return errors.New("pci: configuration space is already attached to a bus")
	}
	c.attached = true
	c.notify = notify
	c.intxLine = line
	if line != nil && c.intxDriven {
		line.SetLevel(true)
	}
	for i := range c.mapped {
		c.mapped[i].ok = false
	}
	events := c.syncMappingsLocked()
	c.mu.Unlock()
	if notify != nil {
		for _, e := range events {
			notify(e.region, e.mapped)
		}
	}
	return nil
}

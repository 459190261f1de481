package pci

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// BARKind is the address space and width of a Base Address Register.
type BARKind uint8

// The kinds of BAR (PCI 3.0 §6.2.5.1).
const (
	// BARMemory32 maps memory anywhere in the 32-bit address space.
	BARMemory32 BARKind = iota + 1
	// BARMemory64 maps memory anywhere in the 64-bit address space. It
	// takes two consecutive registers: the low dword at its index, the
	// high dword at index+1.
	BARMemory64
	// BARIO maps I/O ports.
	BARIO
)

// String names the kind as lspci does.
func (k BARKind) String() string {
	switch k {
	case BARMemory32:
		return "32-bit memory"
	case BARMemory64:
		return "64-bit memory"
	case BARIO:
		return "I/O"
	}
	return fmt.Sprintf("BARKind(%d)", uint8(k))
}

// IsMemory reports whether the BAR maps memory rather than I/O ports.
func (k BARKind) IsMemory() bool { return k == BARMemory32 || k == BARMemory64 }

// Base Address Register layout (PCI 3.0 §6.2.5.1, Figures 6-4 and 6-5).
// The low bits of a BAR are read-only and say what it maps; the address
// bits below the BAR's size are read-only zero, which is what makes sizing
// work: software writes all ones and reads back ~(size-1) | type bits.
const (
	barIOSpace      = 1 << 0 // bit 0: 1 = I/O space, 0 = memory space
	barMemType64    = 2 << 1 // bits 2:1 = 10b: 64-bit memory BAR (00b: 32-bit)
	barMemTypeMask  = 3 << 1 // bits 2:1: memory type
	barPrefetchable = 1 << 3 // bit 3: the memory has no read side effects
	barMemFlagsMask = 0xF    // bits 3:0 of a memory BAR are its read-only type bits
	barIOFlagsMask  = 0x3    // bits 1:0 of an I/O BAR: the space bit and a reserved 0

	// MinMemoryBARSize is the smallest memory BAR: the four type bits
	// leave bit 4 the lowest address bit. PCI 3.0 §6.2.5.1 recommends
	// 4 KiB for memory holding registers, so that each function can be
	// mapped (and trapped) by pages.
	MinMemoryBARSize = 1 << 4
	// MinIOBARSize is the smallest I/O BAR: bits 1:0 are not address
	// bits.
	MinIOBARSize = 1 << 2
	// MaxIOBARSize is the largest I/O BAR: functions "must not consume
	// more than 256 bytes per I/O Base Address register" (PCI 3.0
	// §6.2.5.1).
	MaxIOBARSize = 256
	// max32BitBARSize is the largest 32-bit memory BAR: bit 31 is its
	// highest address bit.
	max32BitBARSize = 1 << 31
	// ioSpaceLimit is the last x86 I/O port: IN and OUT take 16-bit port
	// numbers (Intel SDM Vol. 1 §19.3). The upper 16 bits of an I/O BAR
	// are therefore hardwired to 0, as on PC-compatible devices; Linux
	// masks I/O BARs to IO_SPACE_LIMIT (0xFFFF on x86) when sizing them
	// (drivers/pci/probe.c, __pci_read_base).
	ioSpaceLimit = 0xFFFF
)

// BAR describes one Base Address Register of a function: what kind of
// address space it decodes, how much, and who answers accesses inside it.
type BAR struct {
	Kind BARKind
	// Size is the decoded size in bytes, a power of two: at least
	// MinMemoryBARSize (at most 2 GiB for BARMemory32) for memory, from
	// MinIOBARSize to MaxIOBARSize for I/O.
	Size uint64
	// Prefetchable sets bit 3 of a memory BAR: reads have no side
	// effects and writes may be merged (PCI 3.0 §6.2.5.1). Register
	// blocks are not prefetchable.
	Prefetchable bool
	// Handler answers accesses inside the BAR, at offsets from its start.
	// The bus never calls it; the machine's BARMapper registers it where
	// the guest placed the BAR (for an I/O BAR through IOPortDevice). It
	// may be nil for a BAR that only reserves space.
	Handler MMIOHandler
}

// validate checks the definition against PCI 3.0 §6.2.5.1.
func (b BAR) validate() error {
	if b.Size == 0 || bits.OnesCount64(b.Size) != 1 {
		return fmt.Errorf("pci: BAR size %#x is not a power of two", b.Size)
	}
	switch b.Kind {
	case BARMemory32:
		if b.Size < MinMemoryBARSize || b.Size > max32BitBARSize {
			return fmt.Errorf("pci: 32-bit memory BAR size %#x is not in [%#x, %#x]", b.Size, MinMemoryBARSize, max32BitBARSize)
		}
	case BARMemory64:
		if b.Size < MinMemoryBARSize {
			return fmt.Errorf("pci: 64-bit memory BAR size %#x is below %#x", b.Size, MinMemoryBARSize)
		}
	case BARIO:
		if b.Size < MinIOBARSize || b.Size > MaxIOBARSize {
			return fmt.Errorf("pci: I/O BAR size %#x is not in [%#x, %#x]", b.Size, MinIOBARSize, MaxIOBARSize)
		}
		if b.Prefetchable {
			return errors.New("pci: an I/O BAR cannot be prefetchable")
		}
	default:
		return fmt.Errorf("pci: unknown BAR kind %d", b.Kind)
	}
	return nil
}

// typeBits returns the read-only low bits of the BAR's (low) register.
func (b BAR) typeBits() uint32 {
	switch b.Kind {
	case BARIO:
		return barIOSpace
	case BARMemory64:
		if b.Prefetchable {
			return barMemType64 | barPrefetchable
		}
		return barMemType64
	}
	if b.Prefetchable {
		return barPrefetchable
	}
	return 0
}

// Region is where a BAR decodes: the definition and the guest-physical
// address (or I/O port) the guest programmed.
type Region struct {
	Index int // the BAR's number, 0-5 (its low register for a 64-bit BAR)
	BAR
	Addr uint64
}

// End returns the first address after the region.
func (r Region) End() uint64 { return r.Addr + r.Size }

// String describes the region for logs.
func (r Region) String() string {
	return fmt.Sprintf("BAR%d %v [%#x, %#x)", r.Index, r.Kind, r.Addr, r.End())
}

// barOffset returns the configuration offset of Base Address Register i.
func barOffset(i int) uint16 { return uint16(RegBAR0 + barRegSize*i) }

// SetBAR defines Base Address Register index (0-5); a BARMemory64 also
// takes index+1. Define BARs before attaching the function to a bus.
//
// The register reads back the type bits in its low bits, zeros in the
// address bits below Size, and the programmed address above: writing all
// ones and reading back gives ~(Size-1) | type bits, from which software
// computes the size (PCI 3.0 §6.2.5.1, "Address Maps"). The address starts
// at 0, unassigned.
func (c *ConfigSpace) SetBAR(index int, b BAR) error {
	if err := b.validate(); err != nil {
		return err
	}
	regs := 1
	if b.Kind == BARMemory64 {
		regs = 2
	}
	if index < 0 || index+regs > NumBARs {
		return fmt.Errorf("pci: %v BAR %d does not fit in BARs 0-%d", b.Kind, index, NumBARs-1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for j := index; j < index+regs; j++ {
		if c.bars[j].Kind != 0 || c.barUpper[j] {
			return fmt.Errorf("pci: BAR %d is already defined", j)
		}
	}
	c.bars[index] = b
	off := barOffset(index)
	le.PutUint32(c.regs[off:], b.typeBits())
	addrBits := ^(b.Size - 1) // the writable address bits: those at and above the size
	switch b.Kind {
	case BARIO:
		le.PutUint32(c.wmask[off:], uint32(addrBits)&ioSpaceLimit&^barIOFlagsMask)
	case BARMemory32:
		le.PutUint32(c.wmask[off:], uint32(addrBits)&^barMemFlagsMask)
	case BARMemory64:
		le.PutUint32(c.wmask[off:], uint32(addrBits)&^barMemFlagsMask)
		le.PutUint32(c.wmask[off+barRegSize:], uint32(addrBits>>32))
		c.barUpper[index+1] = true
	}
	return nil
}

// BAR returns the definition of BAR index; ok is false if it is unused or
// the upper half of a 64-bit BAR.
func (c *ConfigSpace) BAR(index int) (b BAR, ok bool) {
	if index < 0 || index >= NumBARs {
		return BAR{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bars[index], c.bars[index].Kind != 0
}

// BARAddress returns the address the guest programmed into BAR index,
// whether or not it decodes.
func (c *ConfigSpace) BARAddress(index int) uint64 {
	if index < 0 || index >= NumBARs {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.barAddressLocked(index)
}

func (c *ConfigSpace) barAddressLocked(i int) uint64 {
	lo := c.u32Locked(int(barOffset(i)))
	switch c.bars[i].Kind {
	case BARIO:
		return uint64(lo &^ barIOFlagsMask)
	case BARMemory32:
		return uint64(lo &^ barMemFlagsMask)
	case BARMemory64:
		hi := c.u32Locked(int(barOffset(i + 1)))
		return uint64(hi)<<32 | uint64(lo&^barMemFlagsMask)
	}
	return 0
}

// MappedRegion returns where BAR index decodes now; ok is false if it
// does not decode (BARMapper says when a BAR decodes).
func (c *ConfigSpace) MappedRegion(index int) (r Region, ok bool) {
	if index < 0 || index >= NumBARs {
		return Region{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.decodeLocked(index)
}

// decodeLocked computes where BAR i decodes. A BAR decodes when its space
// is enabled in Command (PCI 3.0 §6.2.2: I/O Space, Memory Space) and it
// holds a usable address. Two placements are not usable and decode
// nothing, as in QEMU (hw/pci/pci.c, pci_bar_address):
//   - address 0, the reset value, which software uses for "unassigned";
//   - a range that wraps or reaches the last address the BAR can hold
//     (4 GiB - 1 for 32-bit memory, 0xFFFF for I/O, 2^64 - 1 for 64-bit).
//     Among these is the value that sizing leaves behind, all address bits
//     set, so a guest that sizes a BAR without first turning decoding off
//     does not map it over the top of the address space.
func (c *ConfigSpace) decodeLocked(i int) (Region, bool) {
	b := c.bars[i]
	cmd := c.u16Locked(RegCommand)
	var limit uint64
	switch b.Kind {
	case BARIO:
		if cmd&CommandIOSpace == 0 {
			return Region{}, false
		}
		limit = ioSpaceLimit
	case BARMemory32:
		if cmd&CommandMemorySpace == 0 {
			return Region{}, false
		}
		limit = math.MaxUint32
	case BARMemory64:
		if cmd&CommandMemorySpace == 0 {
			return Region{}, false
		}
		limit = math.MaxUint64
	default:
		return Region{}, false
	}
	addr := c.barAddressLocked(i)
	last := addr + b.Size - 1
	if addr == 0 || last < addr || last >= limit {
		return Region{}, false
	}
	return Region{Index: i, BAR: b, Addr: addr}, true
}

// syncMappingsLocked compares what every BAR decodes with what was last
// reported and returns the changes: for a BAR that moved, an unmap of the
// old region, then a map of the new one.
func (c *ConfigSpace) syncMappingsLocked() []mapEvent {
	var events []mapEvent
	for i := range c.bars {
		if c.bars[i].Kind == 0 && !c.mapped[i].ok {
			continue
		}
		r, ok := c.decodeLocked(i)
		prev := &c.mapped[i]
		if ok == prev.ok && (!ok || r.Addr == prev.region.Addr) {
			continue
		}
		if prev.ok {
			events = append(events, mapEvent{region: prev.region, mapped: false})
		}
		if ok {
			events = append(events, mapEvent{region: r, mapped: true})
		}
		prev.region, prev.ok = r, ok
	}
	return events
}

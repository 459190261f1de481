package pci

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Window is a range of addresses that BARs can be assigned from: [Base,
// Base+Size).
type Window struct {
	Base uint64
	Size uint64
}

// End returns the first address after the window.
func (w Window) End() uint64 { return w.Base + w.Size }

// Windows are the address ranges the host bridge forwards to bus 0, from
// which firmware assigns BARs. The machine describes the same ranges in
// the host bridge's _CRS in the DSDT: Linux keeps a firmware assignment
// only if it lies inside one of them (drivers/pci/setup-res.c,
// pci_claim_resource) and otherwise reassigns the BAR itself.
type Windows struct {
	// IO is for I/O BARs.
	IO Window
	// Mem32 is for 32-bit memory BARs, and 64-bit ones when Mem64 is
	// empty; it must lie below 4 GiB.
	Mem32 Window
	// Mem64 is for 64-bit memory BARs; it may be empty.
	Mem64 Window
}

// The default windows, in the 32-bit MMIO hole of machine/memory
// (0xC000_0000 to 4 GiB) and the upper quarter of the I/O space.
const (
	// MMIO32WindowBase is the bottom of the MMIO hole
	// (memory.MMIOHoleStart).
	MMIO32WindowBase = 0xC000_0000
	// MMIO32WindowSize is the 512 MiB up to the ECAM window at ECAMBase:
	// ample for virtio devices, whose BARs take a few pages each.
	MMIO32WindowSize = ECAMBase - MMIO32WindowBase
	// IOWindowBase and IOWindowSize are ports 0xC000-0xFFFF, where
	// SeaBIOS also puts PCI I/O BARs: far above the ISA range (below
	// 0x1000, whose ports are aliased every 1 KiB by 10-bit ISA decoders)
	// and the platform's own ports (the highest is the PM timer at
	// 0x608).
	IOWindowBase = 0xC000
	IOWindowSize = 0x4000
)

// DefaultWindows returns the windows govmm's host bridge forwards: the
// I/O window and the 32-bit MMIO window, and no 64-bit window (64-bit
// BARs are assigned below 4 GiB, which they can address too).
func DefaultWindows() Windows {
	return Windows{
		IO:    Window{Base: IOWindowBase, Size: IOWindowSize},
		Mem32: Window{Base: MMIO32WindowBase, Size: MMIO32WindowSize},
	}
}

// Assignment is an address AssignResources gave a BAR.
type Assignment struct {
	Slot  int
	Index int // the BAR (its low register for a 64-bit BAR)
	Kind  BARKind
	Addr  uint64
	Size  uint64
}

// AssignResources does what PC firmware does to the bus before the
// operating system starts (as SeaBIOS's pciinit.c does): it sizes every
// BAR of every device through configuration cycles, assigns each an
// address from w, enables the devices' decoding of the spaces they use,
// and writes each INTx# pin's GSI to Interrupt Line. The guest then finds
// the BARs programmed and keeps them.
//
// BARs are placed largest first, each aligned to its size (a BAR decodes a
// naturally aligned range, PCI 3.0 §6.2.5.1), which packs power-of-two
// sizes without gaps. It fails, leaving the BARs as they were and decoding
// off, if a window is too small. Run it before the vCPUs start.
func (b *Bus) AssignResources(w Windows) ([]Assignment, error) {
	if w.Mem32.End() > math.MaxUint32+1 {
		return nil, fmt.Errorf("pci: 32-bit MMIO window [%#x, %#x) crosses 4 GiB", w.Mem32.Base, w.Mem32.End())
	}
	if w.IO.End() > ioSpaceLimit+1 {
		return nil, fmt.Errorf("pci: I/O window [%#x, %#x) runs past port %#x", w.IO.Base, w.IO.End(), ioSpaceLimit)
	}
	// Sizing writes all ones to the BARs; turn decoding off first so that
	// nothing is mapped at the values sizing leaves behind (Linux does the
	// same, drivers/pci/probe.c, __pci_read_base).
	var reqs []Assignment
	for slot := range MaxSlots {
		if b.Device(slot) == nil {
			continue
		}
		cmd := address(slot, RegCommand)
		b.write16(cmd, b.read16(cmd)&^(CommandIOSpace|CommandMemorySpace))
		reqs = append(reqs, b.sizeBARs(slot)...)
	}

	slices.SortStableFunc(reqs, func(x, y Assignment) int { return cmp.Compare(y.Size, x.Size) })
	io, mem32, mem64 := &cursor{Window: w.IO}, &cursor{Window: w.Mem32}, &cursor{Window: w.Mem64}
	for i := range reqs {
		r := &reqs[i]
		c := mem32
		switch {
		case r.Kind == BARIO:
			c = io
		case r.Kind == BARMemory64 && w.Mem64.Size > 0:
			c = mem64
		}
		addr, ok := c.take(r.Size)
		if !ok {
			return nil, fmt.Errorf("pci: no room for %v BAR %d of slot %d (%#x bytes) in [%#x, %#x)",
				r.Kind, r.Index, r.Slot, r.Size, c.Base, c.End())
		}
		r.Addr = addr
	}

	decode := map[int]uint16{}
	for _, r := range reqs {
		reg := address(r.Slot, barOffset(r.Index))
		b.write32(reg, uint32(r.Addr))
		if r.Kind == BARMemory64 {
			b.write32(address(r.Slot, barOffset(r.Index+1)), uint32(r.Addr>>32))
		}
		if r.Kind == BARIO {
			decode[r.Slot] |= CommandIOSpace
		} else {
			decode[r.Slot] |= CommandMemorySpace
		}
	}
	for slot := range MaxSlots {
		dev := b.Device(slot)
		if dev == nil {
			continue
		}
		if gsi, ok := INTxGSI(slot, dev.Config().InterruptPin()); ok {
			b.WriteConfig(address(slot, RegInterruptLine), []byte{byte(gsi)})
		}
		if decode[slot] != 0 {
			cmd := address(slot, RegCommand)
			b.write16(cmd, b.read16(cmd)|decode[slot])
		}
	}
	slices.SortFunc(reqs, func(x, y Assignment) int { return cmp.Or(cmp.Compare(x.Slot, y.Slot), cmp.Compare(x.Index, y.Index)) })
	return reqs, nil
}

// sizeBARs sizes the BARs of the device in slot the way PCI 3.0 §6.2.5.1
// prescribes: save the register, write all ones, read back, restore. An
// all-zero readback is an unimplemented BAR. A 64-bit BAR's upper register
// is sized too, and skipped as a BAR of its own.
func (b *Bus) sizeBARs(slot int) []Assignment {
	var reqs []Assignment
	probe := func(reg Address) uint32 {
		saved := b.read32(reg)
		b.write32(reg, math.MaxUint32)
		v := b.read32(reg)
		b.write32(reg, saved)
		return v
	}
	for i := 0; i < NumBARs; i++ {
		lo := probe(address(slot, barOffset(i)))
		if lo == 0 {
			continue
		}
		var mask uint64
		kind := BARMemory32
		switch {
		case lo&barIOSpace != 0:
			kind = BARIO
			mask = uint64(lo&^barIOFlagsMask) & ioSpaceLimit
		case lo&barMemTypeMask == barMemType64 && i+1 < NumBARs:
			kind = BARMemory64
			hi := probe(address(slot, barOffset(i+1)))
			mask = uint64(hi)<<32 | uint64(lo&^barMemFlagsMask)
		default:
			mask = uint64(lo &^ barMemFlagsMask)
		}
		if mask == 0 {
			continue
		}
		// The size is the lowest writable address bit.
		reqs = append(reqs, Assignment{Slot: slot, Index: i, Kind: kind, Size: mask & -mask})
		if kind == BARMemory64 {
			i++
		}
	}
	return reqs
}

// cursor hands out a window's addresses from the bottom up.
type cursor struct {
	Window
	used uint64 // bytes below the next free address
}

// take returns the lowest free address aligned to size, a power of two,
// with size bytes free above it.
func (c *cursor) take(size uint64) (addr uint64, ok bool) {
	next := c.Base + c.used
	addr = (next + size - 1) &^ (size - 1)
	if addr < next || addr+size < addr || addr+size > c.End() {
		return 0, false
	}
	c.used = addr + size - c.Base
	return addr, true
}

func address(slot int, reg uint16) Address { return Address{Device: uint8(slot), Register: reg} }

func (b *Bus) read16(a Address) uint16 {
	var v [2]byte
	b.ReadConfig(a, v[:])
	return le.Uint16(v[:])
}

func (b *Bus) write16(a Address, v uint16) { b.WriteConfig(a, le.AppendUint16(nil, v)) }

func (b *Bus) read32(a Address) uint32 {
	var v [4]byte
	b.ReadConfig(a, v[:])
	return le.Uint32(v[:])
}

func (b *Bus) write32(a Address, v uint32) { b.WriteConfig(a, le.AppendUint32(nil, v)) }

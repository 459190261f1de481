package machine

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/govmm/govmm/devices/pci"
)

// mmioPageShift groups unclaimed MMIO accesses by 4 KiB page for logging.
const mmioPageShift = 12

// mmioRange is one device's window of guest-physical address space.
type mmioRange struct {
	name       string
	base, size uint64
	h          pci.MMIOHandler
}

func (r *mmioRange) contains(addr uint64) bool { return addr >= r.base && addr-r.base < r.size }

// mmioBus handles KVM_EXIT_MMIO: loads and stores to guest-physical
// addresses with no RAM behind them and no in-kernel device (the local
// APICs and the IOAPIC are in the kernel). Devices claim ranges: the PCI
// ECAM window, and the memory BARs wherever the guest places them.
// Accesses nobody claims read all ones, as an empty bus does on a PC, and
// drop writes; each such page is logged once.
//
// The ranges change while vCPUs run (a guest moves a BAR on one vCPU while
// another uses a device), so lookups read an immutable slice through an
// atomic pointer and changes copy it: an exit never waits for a lock.
type mmioBus struct {
	log    *slog.Logger
	mu     sync.Mutex // serialises changes
	ranges atomic.Pointer[[]mmioRange]
	logged sync.Map // page number → struct{}
}

// Register claims [base, base+size) for h. Ranges may overlap (a guest can
// program BARs on top of each other); the most recently registered wins.
func (b *mmioBus) Register(name string, base, size uint64, h pci.MMIOHandler) error {
	if size == 0 || base+size < base || h == nil {
		return fmt.Errorf("MMIO range %q [%#x, +%#x) is empty or wraps", name, base, size)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var old []mmioRange
	if p := b.ranges.Load(); p != nil {
		old = *p
	}
	ranges := append([]mmioRange{{name: name, base: base, size: size, h: h}}, old...)
	b.ranges.Store(&ranges)
	return nil
}

// Unregister removes the range at base that h claimed.
func (b *mmioBus) Unregister(base uint64, h pci.MMIOHandler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.ranges.Load()
	if p == nil {
		return
	}
	ranges := slices.DeleteFunc(slices.Clone(*p), func(r mmioRange) bool { return r.base == base && r.h == h })
	b.ranges.Store(&ranges)
}

// find returns the range containing addr, or nil.
func (b *mmioBus) find(addr uint64) *mmioRange {
	p := b.ranges.Load()
	if p == nil {
		return nil
	}
	for i := range *p {
		if r := &(*p)[i]; r.contains(addr) {
			return r
		}
	}
	return nil
}

// Lookup names the device at addr, for statistics and logs.
func (b *mmioBus) Lookup(addr uint64) (name string, ok bool) {
	if r := b.find(addr); r != nil {
		return r.name, true
	}
	return "", false
}

func (b *mmioBus) unclaimed(addr uint64, write bool, n int) {
	if _, seen := b.logged.LoadOrStore(addr>>mmioPageShift, struct{}{}); !seen && b.log != nil {
		b.log.Debug("unclaimed MMIO access", "addr", fmt.Sprintf("%#x", addr), "write", write, "size", n)
	}
}

// Read fills data for a guest load from addr.
func (b *mmioBus) Read(addr uint64, data []byte) {
	if r := b.find(addr); r != nil {
		r.h.ReadMMIO(addr-r.base, data)
		return
	}
	for i := range data {
		data[i] = 0xFF
	}
	b.unclaimed(addr, false, len(data))
}

// Write takes a guest store to addr.
func (b *mmioBus) Write(addr uint64, data []byte) {
	if r := b.find(addr); r != nil {
		r.h.WriteMMIO(addr-r.base, data)
		return
	}
	b.unclaimed(addr, true, len(data))
}

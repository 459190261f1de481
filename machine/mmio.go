package machine

import (
	"fmt"
	"log/slog"
	"sync"
)

// mmioPageShift groups unclaimed MMIO accesses by 4 KiB page for logging.
const mmioPageShift = 12

// mmioBus handles KVM_EXIT_MMIO: loads and stores to guest-physical
// addresses with no RAM behind them and no in-kernel device (the local
// APICs and the IOAPIC are in the kernel). No userspace MMIO device exists
// yet, so every access is unclaimed: reads return all ones, as an empty
// bus does on a PC, and writes are dropped. Each page is logged once.
type mmioBus struct {
	log    *slog.Logger
	logged sync.Map // page number → struct{}
}

func (b *mmioBus) unclaimed(addr uint64, write bool, n int) {
	if _, seen := b.logged.LoadOrStore(addr>>mmioPageShift, struct{}{}); !seen && b.log != nil {
		b.log.Debug("unclaimed MMIO access", "addr", fmt.Sprintf("%#x", addr), "write", write, "size", n)
	}
}

// Read fills data for a guest load from addr.
func (b *mmioBus) Read(addr uint64, data []byte) {
	for i := range data {
		data[i] = 0xFF
	}
	b.unclaimed(addr, false, len(data))
}

// Write takes a guest store to addr.
func (b *mmioBus) Write(addr uint64, data []byte) { b.unclaimed(addr, true, len(data)) }

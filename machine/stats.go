package machine

import (
	"sync/atomic"

	"github.com/govmm/govmm/kvm"
)

// maxCountedExit bounds the exit reasons counted individually; higher
// numbers share the last slot.
const maxCountedExit = 64

// exitStats counts VM exits by reason. The counters are atomics, so vCPU
// goroutines update them without a lock.
type exitStats struct {
	byReason [maxCountedExit]atomic.Uint64
}

func (s *exitStats) count(r kvm.ExitReason) {
	if r >= maxCountedExit {
		r = maxCountedExit - 1
	}
	s.byReason[r].Add(1)
}

// ExitCounts returns the number of exits of each reason seen so far.
func (m *Machine) ExitCounts() map[kvm.ExitReason]uint64 {
	out := map[kvm.ExitReason]uint64{}
	for i := range m.stats.byReason {
		if n := m.stats.byReason[i].Load(); n > 0 {
			out[kvm.ExitReason(i)] = n
		}
	}
	return out
}

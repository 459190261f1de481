package pci

import (
	"sync"
	"testing"
)

// Guest vCPUs and device goroutines use the bus at the same time: vCPUs
// make configuration and MSI-X table accesses while devices raise INTx
// and MSI-X. Run under -race, this checks the locking; the fuzz rig's
// invariants must still hold at the end.
func TestConcurrentAccess(t *testing.T) {
	r := newFuzzRig(t)
	r.concurrent = true
	const iterations = 500
	var wg sync.WaitGroup
	inputs := [][]byte{
		{0, 1, 4, 0, 2, 0, 2, 3, 1, 0x04, 0x00, 0, 1},    // conf1 and ECAM on slot 1
		{3, 2, 0x04, 0x00, 1, 2, 0x06, 0x00, 6, 0, 0, 2}, // ECAM on slot 4, table reads
		{5, 0x0C, 0x00, 2, 0, 0, 0, 0, 5, 0x0C, 0x00, 2, 1, 0, 0, 0},
	}
	for _, in := range inputs {
		wg.Go(func() {
			for range iterations {
				data := fuzzInput(in)
				for len(data) > 0 {
					r.step(&data)
				}
			}
		})
	}
	wg.Go(func() { // a device goroutine
		for i := range iterations {
			r.msix.Signal(i % 8)
			r.a.INTx().SetLevel(i%2 == 0)
			r.b.SetINTx(i%3 == 0)
		}
	})
	wg.Wait()
	r.check()
}

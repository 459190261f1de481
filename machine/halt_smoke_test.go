package machine

import (
	"testing"
	"time"

	"github.com/govmm/govmm/devices/devicetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tiny 64-bit guests for the halt watchdog (entered with interrupts off,
// as the boot protocol leaves them).
var (
	spinGuest = []byte{0xEB, 0xFE}             // jmp $: busy for ever
	haltGuest = []byte{0xFA, 0xF4, 0xEB, 0xFD} // cli; hlt; jmp back to hlt
)

// TestSmokeHaltedTogetherBusyGuest: a round of haltedTogether stops every
// vCPU outside KVM_RUN at once (the busy one and the application
// processor still waiting for SIPI), finds the busy one runnable, and lets
// both go on; the guest keeps running until it is stopped.
func TestSmokeHaltedTogetherBusyGuest(t *testing.T) {
	needKVM(t)
	var out devicetest.Buffer
	m, err := New(Config{Kernel: bzImage(spinGuest), MemSize: 64 << 20, CPUs: 2, Console: &out})
	require.NoError(t, err)
	defer m.Close()
	done := make(chan Result, 1)
	go func() { done <- m.Run() }()
	for i := 0; i < 5; i++ {
		halted, complete := m.haltedTogether(nil)
		assert.True(t, complete, "round %d: every vCPU stopped within %v", i, haltRoundTimeout)
		assert.False(t, halted, "round %d: a spinning vCPU is not halted", i)
	}
	select {
	case r := <-done:
		t.Fatalf("the guest ended (%v: %s) while it was busy", r.Reason, r.Detail)
	case <-time.After(3 * haltCheckInterval):
	}
	m.Stop("test over")
	r := <-done
	assert.Equal(t, Stopped, r.Reason)
}

// TestSmokeHaltWatchdogTwoVCPUs: with one vCPU halted with interrupts off
// and the other never started, the confirming round agrees and the run
// ends as Halted (TestSmokeHaltWithInterruptsOff has the one-vCPU case).
func TestSmokeHaltWatchdogTwoVCPUs(t *testing.T) {
	r, _ := runGuest(t, Config{Kernel: bzImage(haltGuest), CPUs: 2})
	require.NoError(t, r.Err)
	assert.Equal(t, Halted, r.Reason)
}
